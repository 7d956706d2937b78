//! Signal dispositions: ignore, default, and death with the parent.

use std::io;

// Signal numbers used by plumb, re-exported so callers need not depend on libc.
pub const SIGINT: i32 = libc::SIGINT;
pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGKILL: i32 = libc::SIGKILL;
pub const SIGPIPE: i32 = libc::SIGPIPE;
pub const SIGCHLD: i32 = libc::SIGCHLD;
pub const SIGHUP: i32 = libc::SIGHUP;

/// Sets the disposition of `sig` to ignore (`SIG_IGN`): used for SIGPIPE, so a write to a
/// closed socket or pipe fails with `EPIPE` instead of killing the process.
///
/// # Errors
/// `EINVAL` for an uncatchable signal.
pub fn ignore_signal(sig: i32) -> io::Result<()> {
    set_disposition(sig, libc::SIG_IGN)
}

/// Restores the default disposition of `sig` (`SIG_DFL`): a forked child undoes the handlers
/// it inherited from the parent.
///
/// # Errors
/// `EINVAL` for an uncatchable signal.
pub fn default_signal(sig: i32) -> io::Result<()> {
    set_disposition(sig, libc::SIG_DFL)
}

fn set_disposition(sig: i32, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; SIG_IGN and SIG_DFL
    // are not functions, so no handler code can run in a bad context.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    // SAFETY: `act` is initialised and the old-action pointer may be null.
    syscall!(sigaction(sig, &act, std::ptr::null_mut())).map(drop)
}

/// Asks the kernel to send `sig` to this process when its parent dies (`PR_SET_PDEATHSIG`),
/// so a forked worker never outlives a killed server.
///
/// # Errors
/// `EINVAL` for a bad signal.
pub fn die_with_parent(sig: i32) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    syscall!(prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0)).map(drop)
}
