//! plumb's thin syscall layer, one file per mechanism: [`process`] (fork, waitpid, kill,
//! pidfd), [`pipe`], [`poll`], [`signal`], [`limits`], [`sendfile`], [`splice`], [`affinity`], [`tcp`]
//! socket options, [`timerfd`], and [`ipc`] for the IPC instrument. This is the only crate in plumb with `unsafe`; every block says why
//! it is sound. Everything returns `io::Result` with the OS error intact.
//!
//! The shape follows mio's `sys/unix`: a `syscall!` macro turns the C convention (-1 and
//! `errno`) into `io::Error`, and each wrapper is a few lines over one call.

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
pub mod activation;
pub mod affinity;
pub mod ipc;
pub mod ktls;
pub mod limits;
pub mod pipe;
pub mod poll;
pub mod process;
pub mod sendfile;
pub mod signal;
pub mod splice;
pub mod tcp;
pub mod timerfd;

pub use affinity::pin_to_cpus;
pub use limits::{max_rss_kib, nofile_limit, raise_nofile_limit};
pub use pipe::{PIPE_BUF, pipe, pipe_capacity, pipe_flags, read, write, write_all, writev};
pub use poll::{PollFd, events, poll, set_nonblocking};
pub use process::{
    ExecImage, ExitStatus, Fork, cloexec_from, exec_on_socket, exit_now, getpid, gettid, kill,
    peer_cred, pidfd_open, try_wait, wait,
};
pub use sendfile::sendfile;
pub use signal::{default_signal, die_with_parent, ignore_signal};
pub use splice::{set_pipe_capacity, splice};
pub use tcp::unsent_bytes;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

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
