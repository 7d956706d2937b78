//! Resource limits and usage: descriptors (`RLIMIT_NOFILE`) and peak memory.

use std::io;

/// The soft and hard `RLIMIT_NOFILE`.
///
/// # Errors
/// Never in practice.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer.
    syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim))?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
///
/// # Errors
/// `EPERM` is not possible for a soft raise up to the hard limit; others are passed on.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (cur, max) = nofile_limit()?;
    if cur >= max {
        return Ok(cur);
    }
    let lim = libc::rlimit {
        rlim_cur: max as libc::rlim_t,
        rlim_max: max as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid in-pointer.
    syscall!(setrlimit(libc::RLIMIT_NOFILE, &lim))?;
    Ok(max)
}

/// Peak resident set size of this process (`ru_maxrss`), or of its waited-for children.
///
/// # Errors
/// Never in practice.
pub fn max_rss_kib(children: bool) -> io::Result<u64> {
    // SAFETY: a zeroed rusage is a valid out value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: `ru` is a valid out-pointer.
    syscall!(getrusage(who, &mut ru))?;
    Ok(ru.ru_maxrss as u64)
}
