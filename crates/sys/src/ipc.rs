//! Syscalls the IPC instrument (`plumb ipc`) and the pipe-semantics tests need beyond the
//! core layer: the checked `fork` ([`fork_run`], re-exported from [`crate::process`]), a prepared `execv` that allocates nothing
//! after `fork` ([`Exec`]), named pipes ([`mkfifo`]), pipe resizing ([`set_pipe_capacity`]) and
//! file-change notification ([`Inotify`]) so a reader can follow a growing file without
//! spinning.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use crate::process::{fork_run, thread_count};

/// A program and its arguments, converted to C strings ahead of time so that running it after
/// `fork` allocates nothing: the child of a fork should do as little as possible before
/// `execv`.
#[derive(Debug)]
pub struct Exec {
    // Owns the strings `argv` points into.
    _args: Vec<CString>,
    path: CString,
    argv: Vec<*const libc::c_char>,
}

impl Exec {
    /// Prepares `path` with `args` (`args[0]` is the program name the program sees).
    ///
    /// # Errors
    /// `InvalidInput` when a string contains a NUL byte.
    pub fn new(path: &Path, args: &[&OsStr]) -> io::Result<Exec> {
        let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in an argument");
        let path = CString::new(path.as_os_str().as_bytes()).map_err(nul)?;
        let args = args
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(nul))
            .collect::<io::Result<Vec<_>>>()?;
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        Ok(Exec {
            _args: args,
            path,
            argv,
        })
    }

    /// `execv(2)`: replaces this process with the program, keeping the environment. Returns
    /// only when that fails, with the reason.
    pub fn run(&self) -> io::Error {
        // SAFETY: `path` is NUL-terminated and `argv` is a null-terminated array of pointers
        // into C strings owned by `self`, all alive for the call.
        unsafe { libc::execv(self.path.as_ptr(), self.argv.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// `mkfifo(3)`: creates a named pipe at `path` with permission bits `mode`.
///
/// # Errors
/// `EEXIST` when the path exists, `ENOENT`/`EACCES` for a bad directory, `InvalidInput` for a
/// path with a NUL byte.
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    syscall!(mkfifo(c.as_ptr(), mode as libc::mode_t)).map(drop)
}

/// Resizes the pipe behind `fd` (`F_SETPIPE_SZ`); returns the capacity the kernel actually
/// chose (it rounds up to a power-of-two number of pages).
///
/// # Errors
/// `EBUSY` when the pipe holds more than the new size, `EPERM` above
/// `/proc/sys/fs/pipe-max-size` without privilege, `EBADF` when `fd` is not a pipe.
pub fn set_pipe_capacity(fd: &impl AsRawFd, bytes: usize) -> io::Result<usize> {
    let bytes = libc::c_int::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pipe size too large"))?;
    // SAFETY: F_SETPIPE_SZ takes an int argument, no pointers.
    syscall!(fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes)).map(|n| n as usize)
}

/// An inotify instance: lets a reader that hit end of file sleep until the file changes, the
/// way `tail -f` follows a log, instead of spinning on `read` returning 0.
///
/// Create it in the process that waits (an inotify descriptor shared across `fork` is one
/// queue, so parent and child would steal each other's events).
#[derive(Debug)]
pub struct Inotify {
    fd: OwnedFd,
    events: Vec<u8>,
}

impl Inotify {
    /// `inotify_init1(IN_CLOEXEC)`.
    ///
    /// # Errors
    /// `EMFILE` when the per-user instance limit is reached.
    pub fn new() -> io::Result<Inotify> {
        let fd = syscall!(inotify_init1(libc::IN_CLOEXEC))?;
        Ok(Inotify {
            // SAFETY: inotify_init1 succeeded, so `fd` is open and owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            // Room for many events at once, so one read drains the queue.
            events: vec![0; 4096],
        })
    }

    /// Watches `path` for writes (`IN_MODIFY`).
    ///
    /// # Errors
    /// `ENOENT` when the path does not exist, `ENOSPC` when out of watches.
    pub fn watch_writes(&self, path: &Path) -> io::Result<()> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))?;
        // SAFETY: `c` is a NUL-terminated string alive for the call.
        syscall!(inotify_add_watch(
            self.fd.as_raw_fd(),
            c.as_ptr(),
            libc::IN_MODIFY
        ))
        .map(drop)
    }

    /// Blocks until at least one watched file has changed since the last call (events queued
    /// meanwhile count, so a write between a reader's `read` and this call is never lost), and
    /// drains the queue.
    ///
    /// # Errors
    /// Whatever `read` reports on the inotify descriptor.
    pub fn wait(&mut self) -> io::Result<()> {
        crate::read(&self.fd, &mut self.events).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_thread_is_counted() {
        // The test harness runs tests on their own threads, so at least this one plus main.
        assert!(thread_count().unwrap() >= 1);
    }

    #[test]
    fn fork_run_refuses_in_a_threaded_process() {
        // The harness has a main thread and this test's thread, so a fork must be refused
        // (and no child may exist afterwards).
        let err = fork_run(|| 0).unwrap_err();
        assert!(err.to_string().contains("refusing to fork"), "{err}");
    }

    #[test]
    fn exec_rejects_nul_bytes() {
        let err = Exec::new(Path::new("/bin/tr\0ue"), &[]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn pipe_can_be_resized() {
        let (r, _w) = crate::pipe().unwrap();
        let got = set_pipe_capacity(&r, 4 * 4096).unwrap();
        assert!(got >= 4 * 4096);
        assert_eq!(crate::pipe_capacity(&r).unwrap(), got);
    }

    #[test]
    fn mkfifo_makes_a_fifo_and_refuses_an_existing_path() {
        use std::os::unix::fs::FileTypeExt;
        let dir = std::env::temp_dir().join(format!("plumb-sys-fifo-{}", crate::getpid()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let _ = std::fs::remove_file(&path);
        mkfifo(&path, 0o600).unwrap();
        assert!(std::fs::metadata(&path).unwrap().file_type().is_fifo());
        assert_eq!(
            mkfifo(&path, 0o600).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inotify_wakes_on_a_write_made_before_the_wait() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("plumb-sys-inotify-{}", crate::getpid()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let mut f = std::fs::File::create(&path).unwrap();
        let mut ino = Inotify::new().unwrap();
        ino.watch_writes(&path).unwrap();
        f.write_all(b"x").unwrap();
        // Queued before the wait, so this returns at once instead of blocking forever.
        ino.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
