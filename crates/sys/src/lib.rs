//! plumb's thin syscall layer: fork, waitpid, pipes, poll, signal dispositions, sendfile,
//! rlimits, CPU affinity. This is the only crate in plumb with `unsafe`; every block says why
//! it is sound. Everything returns `io::Result` with the OS error intact.
//!
//! The shape follows mio's `sys/unix`: a `syscall!` macro turns the C convention (-1 and
//! `errno`) into `io::Error`, and each wrapper is a few lines over one call.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub use libc::pid_t;

/// Calls a libc function and maps `-1` to `io::Error::last_os_error()`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller of the macro passes arguments that satisfy the C contract of
        // `$fn`; each call site documents why.
        #[allow(unused_unsafe)]
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

// After `syscall!`, which the module uses (macro_rules are textually scoped).
pub mod ipc;
pub mod process;
pub mod tcp;

pub use process::pidfd_open;

/// Which side of `fork` we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    Parent(pid_t),
    Child,
}

/// `fork(2)`.
///
/// # Safety
/// The process must be single-threaded when this is called (no other thread may hold a lock
/// the child would need), and the child may only serve, exec or `_exit`. plumb's process models
/// call it from their single-threaded parent loops only.
///
/// # Errors
/// `EAGAIN`/`ENOMEM` when the kernel cannot create another process.
pub unsafe fn fork() -> io::Result<Fork> {
    let pid = syscall!(fork())?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid)
    })
}

/// `_exit(2)`: leave without running atexit handlers or flushing stdio buffers the parent owns.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

/// `waitpid(pid, WNOHANG)` for `pid` (or any child with -1). `Ok(None)` when no child has
/// changed state; `ECHILD` when there is no child at all.
///
/// # Errors
/// `ECHILD` when there is no such child.
pub fn try_wait(pid: pid_t) -> io::Result<Option<(pid_t, ExitStatus)>> {
    wait_inner(pid, libc::WNOHANG)
}

/// Blocking `waitpid(pid, 0)`, retried on `EINTR`.
///
/// # Errors
/// `ECHILD` when there is no such child.
pub fn wait(pid: pid_t) -> io::Result<(pid_t, ExitStatus)> {
    loop {
        match wait_inner(pid, 0) {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn wait_inner(pid: pid_t, flags: libc::c_int) -> io::Result<Option<(pid_t, ExitStatus)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid out-pointer for the duration of the call.
    let got = syscall!(waitpid(pid, &mut status, flags))?;
    if got == 0 {
        return Ok(None);
    }
    let st = if libc::WIFSIGNALED(status) {
        ExitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    };
    Ok(Some((got, st)))
}

/// `kill(2)`.
///
/// # Errors
/// `ESRCH` when the process is gone, `EPERM` when it is not ours.
pub fn kill(pid: pid_t, sig: i32) -> io::Result<()> {
    syscall!(kill(pid, sig)).map(drop)
}

/// `getpid(2)`.
pub fn getpid() -> pid_t {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// `gettid(2)`: the kernel's id of the calling thread (equal to the pid in a
/// single-threaded process).
pub fn gettid() -> pid_t {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() }
}

/// `pipe2(O_CLOEXEC)`: returns (read end, write end).
///
/// # Errors
/// `EMFILE`/`ENFILE` when out of descriptors.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    pipe_flags(libc::O_CLOEXEC)
}

/// `pipe2` with explicit flags (`O_CLOEXEC`, `O_NONBLOCK`, `O_DIRECT`).
///
/// # Errors
/// `EMFILE`/`ENFILE` when out of descriptors, `EINVAL` for bad flags.
pub fn pipe_flags(flags: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    syscall!(pipe2(fds.as_mut_ptr(), flags))?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `read(2)` on a raw descriptor, retried on `EINTR`.
///
/// # Errors
/// Whatever `read` reports (`EAGAIN` on an empty non-blocking descriptor).
pub fn read(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        match syscall!(read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// `write(2)` on a raw descriptor, retried on `EINTR`. One call: it may write less than asked.
///
/// # Errors
/// Whatever `write` reports (`EPIPE` when the reader is gone and SIGPIPE is ignored).
pub fn write(fd: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        match syscall!(write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len())) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// Writes all of `buf`, looping over short writes.
///
/// # Errors
/// The first failing `write`.
pub fn write_all(fd: &impl AsRawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// `writev(2)`, retried on `EINTR`: the head and body of a response in one call.
///
/// # Errors
/// Whatever `writev` reports.
pub fn writev(fd: &impl AsRawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
    loop {
        // SAFETY: IoSlice is ABI-compatible with iovec, and the slices outlive the call.
        match syscall!(writev(fd.as_raw_fd(), bufs.as_ptr().cast(), count)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// `sendfile(2)`: copies up to `len` bytes of `file` from `offset` to `sock` inside the
/// kernel, advancing `offset`. Returns how many bytes went out (0 at end of file).
///
/// # Errors
/// `EAGAIN` on a non-blocking socket (or a send timeout), `EPIPE`/`ECONNRESET` when the
/// peer has gone.
pub fn sendfile(
    sock: &impl AsRawFd,
    file: &impl AsRawFd,
    offset: &mut u64,
    len: usize,
) -> io::Result<usize> {
    let mut off = *offset as libc::off_t;
    // The kernel caps one call at 0x7ffff000 bytes anyway.
    let len = len.min(0x7fff_f000);
    loop {
        // SAFETY: `off` is a valid in/out pointer; both descriptors are open for the call.
        match syscall!(sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, len)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(n) => {
                *offset = off as u64;
                return Ok(n as usize);
            }
        }
    }
}

/// Readiness interest and result for [`poll`].
pub mod events {
    pub const READ: i16 = libc::POLLIN;
    pub const WRITE: i16 = libc::POLLOUT;
    /// Set in results: error, hang-up or invalid descriptor.
    pub const HUP: i16 = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    /// Set in results: the peer hung up (reads return what is left, then EOF).
    pub const HANGUP: i16 = libc::POLLHUP;
    /// Set in results: an error is pending, or the descriptor is not open.
    pub const ERROR: i16 = libc::POLLERR | libc::POLLNVAL;
}

/// One entry for [`poll`]: a descriptor, what to wait for, and (after the call) what happened.
#[derive(Debug, Clone, Copy)]
#[repr(transparent)]
pub struct PollFd(libc::pollfd);

impl PollFd {
    pub fn new(fd: RawFd, interest: i16) -> Self {
        PollFd(libc::pollfd {
            fd,
            events: interest,
            revents: 0,
        })
    }
    /// What happened to this descriptor in the last `poll`.
    pub fn revents(&self) -> i16 {
        self.0.revents
    }
    /// Readable, or hung up / errored (a read will then not block).
    pub fn ready(&self) -> bool {
        self.0.revents != 0
    }
}

/// `poll(2)` with an optional timeout (None waits forever). Returns the number of ready
/// entries; 0 on timeout. `EINTR` is returned as `Ok(0)` so callers re-check their state.
///
/// # Errors
/// `EINVAL`/`ENOMEM` from the kernel.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Round up so a 0.4 ms deadline does not become a busy loop of 0 ms polls.
        Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: PollFd is repr(transparent) over pollfd, and the slice is valid for the call.
    match syscall!(poll(fds.as_mut_ptr().cast(), fds.len() as libc::nfds_t, ms)) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Sets or clears `O_NONBLOCK`.
///
/// # Errors
/// `EBADF` for a closed descriptor.
pub fn set_nonblocking(fd: &impl AsRawFd, on: bool) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller owns.
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above.
        syscall!(fcntl(fd, libc::F_SETFL, new))?;
    }
    Ok(())
}

/// Signal numbers used by plumb, re-exported so callers need not depend on libc.
pub mod signal {
    pub const SIGINT: i32 = libc::SIGINT;
    pub const SIGTERM: i32 = libc::SIGTERM;
    pub const SIGKILL: i32 = libc::SIGKILL;
    pub const SIGPIPE: i32 = libc::SIGPIPE;
    pub const SIGCHLD: i32 = libc::SIGCHLD;
    pub const SIGHUP: i32 = libc::SIGHUP;
}

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

/// Pins the calling thread (or process, for a single-threaded one) to the given CPUs.
///
/// # Errors
/// `EINVAL` when no listed CPU exists.
pub fn pin_to_cpus(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no CPU {cpu}"),
            ));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE, checked above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is initialised and its size is passed.
    syscall!(sched_setaffinity(
        0,
        std::mem::size_of::<libc::cpu_set_t>(),
        &set
    ))
    .map(drop)
}

/// `PIPE_BUF`: writes of at most this many bytes to a pipe are atomic.
pub const PIPE_BUF: usize = libc::PIPE_BUF;

/// The capacity of the pipe behind `fd` (`F_GETPIPE_SZ`).
///
/// # Errors
/// `EBADF` when `fd` is not a pipe.
pub fn pipe_capacity(fd: &impl AsRawFd) -> io::Result<usize> {
    // SAFETY: F_GETPIPE_SZ takes no pointer argument.
    syscall!(fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ)).map(|n| n as usize)
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

/// Number of bytes queued in a socket's send buffer not yet acknowledged (`SIOCOUTQ`).
///
/// # Errors
/// `EBADF`/`ENOTTY` when `fd` is not a socket.
pub fn unsent_bytes(fd: &impl AsRawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int to the given pointer.
    syscall!(ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n))?;
    Ok(n as usize)
}

pub mod timerfd;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_round_trip_and_eof() {
        let (r, w) = pipe().unwrap();
        write_all(&w, b"hello").unwrap();
        drop(w);
        let mut buf = [0u8; 16];
        assert_eq!(read(&r, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(
            read(&r, &mut buf).unwrap(),
            0,
            "EOF once the only write end is closed"
        );
    }

    #[test]
    fn poll_times_out_on_empty_pipe_and_wakes_on_data() {
        let (r, w) = pipe().unwrap();
        let mut fds = [PollFd::new(r.as_raw_fd(), events::READ)];
        assert_eq!(poll(&mut fds, Some(Duration::from_millis(1))).unwrap(), 0);
        write_all(&w, b"x").unwrap();
        assert_eq!(poll(&mut fds, Some(Duration::from_secs(5))).unwrap(), 1);
        assert!(fds[0].ready());
    }

    #[test]
    fn pipe_capacity_is_reported() {
        let (r, _w) = pipe().unwrap();
        assert!(pipe_capacity(&r).unwrap() >= PIPE_BUF);
    }

    #[test]
    fn nofile_raise_is_idempotent() {
        let soft = raise_nofile_limit().unwrap();
        let (cur, max) = nofile_limit().unwrap();
        assert_eq!(cur, soft);
        assert_eq!(cur, max);
    }
}
