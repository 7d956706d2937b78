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

/// The process at the other end of a connected UNIX socket, as the kernel recorded it when
/// the connection was made (`SO_PEERCRED`): (pid, uid, gid).
///
/// # Errors
/// `ENOTSOCK`/`ENOPROTOOPT` when `fd` is not a UNIX stream socket.
pub fn peer_cred(fd: RawFd) -> io::Result<(u32, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid out-pointers of the size passed.
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_PEERCRED,
        (&raw mut cred).cast(),
        &mut len
    ))?;
    Ok((cred.pid as u32, cred.uid, cred.gid))
}

/// A program to run in place of the calling process, prepared before `fork` or at least
/// before anything irreversible happens: every string is a C string already, so
/// [`exec_on_socket`] does nothing between its `dup2`s and `execvp` that could fail halfway.
#[derive(Debug, Clone)]
pub struct ExecImage {
    program: std::ffi::CString,
    argv: Vec<std::ffi::CString>,
    /// The whole environment, as `NAME=VALUE`.
    env: Vec<std::ffi::CString>,
}

impl ExecImage {
    /// `program` (looked up in `PATH` when it has no slash) with `args`, and the environment:
    /// `base` (the current one unless cleared) with `set` applied on top.
    ///
    /// # Errors
    /// `InvalidInput` when a string holds a NUL byte.
    pub fn new(
        program: &str,
        args: &[String],
        base: impl IntoIterator<Item = (String, String)>,
        set: &[(String, String)],
    ) -> io::Result<ExecImage> {
        use std::ffi::CString;
        let c = |s: &str| {
            CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte"))
        };
        let mut vars: Vec<(String, String)> = base
            .into_iter()
            .filter(|(k, _)| !set.iter().any(|(s, _)| s == k))
            .collect();
        vars.extend(set.iter().cloned());
        Ok(ExecImage {
            program: c(program)?,
            argv: std::iter::once(program)
                .chain(args.iter().map(String::as_str))
                .map(c)
                .collect::<io::Result<_>>()?,
            env: vars
                .iter()
                .map(|(k, v)| c(&format!("{k}={v}")))
                .collect::<io::Result<_>>()?,
        })
    }
}

/// Becomes `image` with the connected socket `socket` as its stdin and stdout and `stderr` as
/// its stderr (as inetd does), in a process group of its own (so a kill reaches whatever it
/// starts). Every other descriptor is marked close-on-exec first, so the program inherits
/// exactly 0, 1 and 2. Returns only on failure.
///
/// Meant for a freshly forked child of a single-threaded process: the caller then `_exit`s.
pub fn exec_on_socket(image: &ExecImage, socket: RawFd, stderr: RawFd) -> io::Error {
    let mut argv: Vec<*const libc::c_char> = image.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = image.env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let steps = || -> io::Result<()> {
        // SAFETY: setpgid(0, 0) makes the caller a group leader; no pointers.
        syscall!(setpgid(0, 0))?;
        // dup2 onto 0, 1, 2 clears close-on-exec on the targets. stderr first, in case the
        // socket is 2 itself (it never is: the listener and stdio come first).
        if stderr != 2 {
            // SAFETY: plain descriptor numbers.
            syscall!(dup2(stderr, 2))?;
        }
        for target in [0, 1] {
            if socket != target {
                // SAFETY: plain descriptor numbers.
                syscall!(dup2(socket, target))?;
            } else {
                // The socket already sits on 0 or 1: clear its close-on-exec flag.
                // SAFETY: fcntl on a descriptor number with an int argument.
                syscall!(fcntl(target, libc::F_SETFD, 0))?;
            }
        }
        // Everything from 3 up closes at exec: the listeners, the record pipe, the
        // shutdown pipes, the socket's original number.
        cloexec_from(3)?;
        // Signals the server ignores or blocks would be inherited: give the program defaults.
        // SAFETY: an empty set, filled and installed; no handler pointers.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            // Handlers reset at exec by themselves; ignored signals would stay ignored.
            for sig in [libc::SIGPIPE, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        Ok(())
    };
    if let Err(e) = steps() {
        return e;
    }
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into CStrings that `image`
    // keeps alive for the duration of the call; execvpe returns only on failure.
    unsafe { libc::execvpe(image.program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// Marks every descriptor from `first` up close-on-exec (`close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC`, Linux 5.11): a server calls it at start-up so that descriptors it
/// inherited without the flag (a build tool's jobserver pipe, a parent's leak) never reach the
/// programs it runs.
///
/// # Errors
/// `ENOSYS` on kernels before 5.11, `EINVAL`.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets descriptor flags; no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
