//! The pipe semantics the material describes, proven through plumb's own sys layer
//! (`plumb_sys::{pipe, read, write, poll, pipe_capacity, ...}`):
//!
//! - a read blocks while the pipe is empty, and returns end of file only once the *last*
//!   write end is closed — including a copy inherited by a child process (the classic
//!   forgotten close);
//! - a write to a pipe with no reader fails with `EPIPE` and does not kill the process
//!   (SIGPIPE ignored);
//! - the capacity is reported, and a writer blocks (or gets `EAGAIN`) exactly when it is full;
//! - writes of up to `PIPE_BUF` bytes are atomic when several writers share a pipe.
//!
//! The test process never forks: the child holding an inherited write end is started with
//! `std::process::Command`, the end handed over as its stdout. Every wait has a deadline; the
//! only fixed waits are the windows in which something must *not* happen.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use plumb_sys::{PIPE_BUF, PollFd, events};

/// How long any wait for something that must happen may take.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long we watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

fn poll_readable(fd: &OwnedFd, timeout: Duration) -> Option<i16> {
    let mut fds = [PollFd::new(fd.as_raw_fd(), events::READ)];
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // poll reports EINTR as 0 ready; retry until the deadline.
        if plumb_sys::poll(&mut fds, Some(left)).unwrap() > 0 {
            return Some(fds[0].revents());
        }
        if left.is_zero() {
            return None;
        }
    }
}

fn wait_with_deadline(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "child {} did not exit",
            child.id()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn read_blocks_while_the_pipe_is_empty_then_returns_the_data() {
    let (r, w) = plumb_sys::pipe().unwrap();

    // Nothing to read: poll times out instead of reporting readable.
    assert_eq!(poll_readable(&r, QUIET), None);

    // A blocking reader on another thread stays blocked until a write arrives.
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 16];
        let n = plumb_sys::read(&r, &mut buf).unwrap();
        tx.send(buf[..n].to_vec()).unwrap();
        r
    });
    assert_eq!(
        rx.recv_timeout(QUIET),
        Err(mpsc::RecvTimeoutError::Timeout),
        "read returned although the pipe is empty and a writer exists"
    );
    plumb_sys::write_all(&w, b"late").unwrap();
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), b"late");
    let r = reader.join().unwrap();

    // Empty again with a writer alive: a non-blocking read says "try again", not EOF.
    plumb_sys::set_nonblocking(&r, true).unwrap();
    let err = plumb_sys::read(&r, &mut [0u8; 1]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EAGAIN));
}

#[test]
fn eof_only_after_the_last_write_end_is_closed() {
    let (r, w) = plumb_sys::pipe().unwrap();
    let w2 = w.try_clone().unwrap();
    plumb_sys::write_all(&w, b"x").unwrap();
    drop(w);
    let mut buf = [0u8; 8];
    assert_eq!(plumb_sys::read(&r, &mut buf).unwrap(), 1);
    // One write end (the duplicate) is still open: no EOF, the read would block.
    assert_eq!(poll_readable(&r, QUIET), None);
    drop(w2);
    // The last one is closed: readable at once, and the read returns 0 (end of file).
    let revents = poll_readable(&r, DEADLINE).expect("EOF makes the pipe readable");
    assert_ne!(revents & events::HUP, 0, "poll reports the hang-up");
    assert_eq!(plumb_sys::read(&r, &mut buf).unwrap(), 0);
}

/// The classic forgotten close: a child process that inherited the write end keeps the reader
/// from ever seeing end of file, however many times the parent closes its own copy.
#[test]
fn a_write_end_inherited_by_a_child_holds_off_eof_until_the_child_exits() {
    let (r, w) = plumb_sys::pipe().unwrap();
    // The child's stdin is a second pipe we control: `cat` runs until we close its write end.
    let (hold_r, hold_w) = plumb_sys::pipe().unwrap();
    // The child inherits a copy of our write end as its stdout (std dup2s it onto fd 1, which
    // clears close-on-exec for the child only; our own descriptors stay close-on-exec, so no
    // other test's child can inherit them).
    let mut child = Command::new("cat")
        .stdin(Stdio::from(hold_r))
        .stdout(Stdio::from(w.try_clone().unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cat");
    // The parent closes its write end, as it should. The child's copy remains.
    drop(w);

    assert_eq!(
        poll_readable(&r, QUIET),
        None,
        "no EOF while the child holds an inherited write end"
    );
    plumb_sys::set_nonblocking(&r, true).unwrap();
    let err = plumb_sys::read(&r, &mut [0u8; 1]).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EAGAIN),
        "an empty pipe with a live writer says 'try again', not end of file"
    );
    plumb_sys::set_nonblocking(&r, false).unwrap();

    // Let the child go: it sees EOF on its stdin, exits, and its stdout (our write end) closes.
    drop(hold_w);
    assert!(wait_with_deadline(&mut child).success());
    poll_readable(&r, DEADLINE).expect("EOF once the child is gone");
    assert_eq!(plumb_sys::read(&r, &mut [0u8; 1]).unwrap(), 0);
}

#[test]
fn writing_to_a_pipe_without_readers_is_epipe_not_death() {
    plumb_sys::ignore_signal(plumb_sys::signal::SIGPIPE).unwrap();
    let (r, w) = plumb_sys::pipe().unwrap();
    drop(r);
    let err = plumb_sys::write(&w, b"anyone?").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    // Still alive, and it keeps failing the same way.
    assert_eq!(
        plumb_sys::write(&w, b"x").unwrap_err().raw_os_error(),
        Some(libc::EPIPE)
    );
}

/// Fills a non-blocking pipe in page-sized writes; returns how much went in before `EAGAIN`.
fn fill(w: &OwnedFd) -> usize {
    let page = [7u8; 4096];
    let mut total = 0;
    loop {
        match plumb_sys::write(w, &page) {
            Ok(n) => total += n,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "{e}");
                return total;
            }
        }
    }
}

#[test]
fn a_full_pipe_refuses_more_exactly_at_its_capacity() {
    let (r, w) = plumb_sys::pipe().unwrap();
    let capacity = plumb_sys::pipe_capacity(&w).unwrap();
    assert!(capacity >= PIPE_BUF, "capacity {capacity}");
    plumb_sys::set_nonblocking(&w, true).unwrap();
    assert_eq!(fill(&w), capacity);
    assert_eq!(
        plumb_sys::write(&w, b"x").unwrap_err().raw_os_error(),
        Some(libc::EAGAIN)
    );

    // A smaller pipe is full sooner, and the new capacity is what is reported.
    let (r2, w2) = plumb_sys::pipe().unwrap();
    let small = plumb_sys::ipc::set_pipe_capacity(&w2, 4 * 4096).unwrap();
    assert_eq!(plumb_sys::pipe_capacity(&r2).unwrap(), small);
    plumb_sys::set_nonblocking(&w2, true).unwrap();
    assert_eq!(fill(&w2), small);

    // Reading one page makes room for one page again.
    let mut page = [0u8; 4096];
    assert_eq!(plumb_sys::read(&r, &mut page).unwrap(), 4096);
    assert_eq!(fill(&w), 4096);
}

#[test]
fn a_blocking_writer_waits_on_a_full_pipe_until_the_reader_drains_it() {
    let (r, w) = plumb_sys::pipe().unwrap();
    let capacity = plumb_sys::pipe_capacity(&w).unwrap();
    let total = capacity * 2;
    let (tx, rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        plumb_sys::write_all(&w, &vec![1u8; total]).unwrap();
        tx.send(()).unwrap();
    });
    // The pipe takes `capacity` bytes, then the writer blocks with the rest.
    assert_eq!(
        rx.recv_timeout(QUIET),
        Err(mpsc::RecvTimeoutError::Timeout),
        "the writer finished although the pipe holds only {capacity} bytes"
    );
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    while got < total {
        let n = plumb_sys::read(&r, &mut buf).unwrap();
        assert!(n > 0);
        got += n;
    }
    rx.recv_timeout(DEADLINE)
        .expect("the writer is done once drained");
    writer.join().unwrap();
}

#[test]
fn writes_up_to_pipe_buf_are_atomic_with_several_writers() {
    const WRITERS: u8 = 4;
    const RECORDS: usize = 400;
    let (r, w) = plumb_sys::pipe().unwrap();
    // Every writer shares the one pipe (duplicates of the same write end, like forked children
    // would), and the pipe fills, so writers queue up and wake together: the case where
    // non-atomic writes would interleave.
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let w = w.try_clone().unwrap();
            thread::spawn(move || {
                let record = [b'a' + i; PIPE_BUF];
                for _ in 0..RECORDS {
                    assert_eq!(plumb_sys::write(&w, &record).unwrap(), PIPE_BUF);
                }
            })
        })
        .collect();
    drop(w);

    // Read in odd-sized pieces so record boundaries never line up with reads by luck.
    let mut stream = Vec::with_capacity(PIPE_BUF * RECORDS * WRITERS as usize);
    let mut buf = [0u8; 1000];
    loop {
        let n = plumb_sys::read(&r, &mut buf).unwrap();
        if n == 0 {
            break; // every writer is done and every write end closed
        }
        stream.extend_from_slice(&buf[..n]);
    }
    for t in writers {
        t.join().unwrap();
    }
    assert_eq!(stream.len(), PIPE_BUF * RECORDS * WRITERS as usize);
    let mut per_writer = [0usize; WRITERS as usize];
    for (i, record) in stream.chunks(PIPE_BUF).enumerate() {
        let first = record[0];
        assert!(
            record.iter().all(|&b| b == first),
            "record {i} mixes bytes of several writers"
        );
        per_writer[usize::from(first - b'a')] += 1;
    }
    assert_eq!(per_writer, [RECORDS; WRITERS as usize]);
}
