//! Processes: `fork` (unchecked, crate-private; [`crate::ipc::fork_run`] is the checked way in),
//! `_exit`, `waitpid`, `kill`, pids and thread ids, and a descriptor for a child's exit so it
//! can be waited for with `poll`/`epoll` beside sockets.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use libc::pid_t;

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
pub(crate) unsafe fn fork() -> io::Result<Fork> {
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

/// `pidfd_open(2)`: a descriptor that becomes readable when the process `pid` exits, so a
/// child's end can be waited for with `poll`/`epoll` beside sockets (no SIGCHLD handler, no
/// reaper thread). Linux 5.3 and later.
///
/// # Errors
/// `ESRCH` when there is no such process, `ENOSYS` on older kernels, `EMFILE`.
pub fn pidfd_open(pid: pid_t) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags (0) and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// How many threads this process has right now, from the link count of `/proc/self/task`
/// (procfs reports 2 + the number of threads there). One `stat`, cheap enough to do before
/// every fork.
///
/// # Errors
/// When `/proc` is not mounted.
pub fn thread_count() -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let links = std::fs::metadata("/proc/self/task")?.nlink();
    Ok(links.saturating_sub(2) as usize)
}

/// Forks a child that runs `child` and `_exit`s with the code it returns (101 if it panics);
/// the parent gets the child's pid. This is the safe face of [`crate::fork`]: it refuses to
/// fork unless the process is single-threaded (checked with [`thread_count`]), which is what
/// makes forking sound — no other thread can hold a lock (the allocator's, stdout's) that the
/// child would then wait on forever.
///
/// The closure runs only in the child; in the parent it is dropped unrun, so anything it
/// captured by value (say the child's end of a pipe) is closed in the parent when this returns.
/// The child never returns into the caller's code: destructors of the caller's values do not
/// run there, and stdio buffers are not flushed (write through raw descriptors in the child).
///
/// # Errors
/// An `Other` error when more than one thread is alive, `EAGAIN`/`ENOMEM`
/// when the kernel cannot create another process.
pub fn fork_run(child: impl FnOnce() -> i32) -> io::Result<pid_t> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork: the process has {threads} threads, fork is only sound when it has one"
        )));
    }
    // SAFETY: the process has exactly one thread (checked just above; only this thread could
    // have started another since), and the child below only runs `child` and then `_exit`s.
    match unsafe { fork() }? {
        Fork::Parent(pid) => Ok(pid),
        Fork::Child => {
            let code = catch_unwind(AssertUnwindSafe(child)).unwrap_or(101);
            exit_now(code)
        }
    }
}
