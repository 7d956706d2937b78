//! The channels `plumb ipc` measures, each made as a connected pair of ends (one for the
//! parent, one for the forked child): anonymous pipes, named pipes (FIFOs), UNIX stream and
//! datagram socketpairs, TCP over loopback with `TCP_NODELAY`, and a regular file that one side
//! appends to while the other follows it like `tail -f`.
//!
//! Every end reads and writes plain descriptors through `plumb_sys::{read, write}`: the
//! material's point that all of these "look like file I/O" is literally how they are driven.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};

use plumb_sys::ipc::Inotify;

/// A kind of channel between two processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Pipe,
    Fifo,
    UnixStream,
    UnixDatagram,
    Tcp,
    File,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Pipe,
        Channel::Fifo,
        Channel::UnixStream,
        Channel::UnixDatagram,
        Channel::Tcp,
        Channel::File,
    ];

    /// The short name used on the command line and in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Pipe => "pipe",
            Channel::Fifo => "fifo",
            Channel::UnixStream => "unix",
            Channel::UnixDatagram => "unix-dgram",
            Channel::Tcp => "tcp",
            Channel::File => "file",
        }
    }

    /// One line on what the channel is, for the table.
    pub fn describe(self) -> &'static str {
        match self {
            Channel::Pipe => "two anonymous pipes (pipe2)",
            Channel::Fifo => "two named pipes (mkfifo)",
            Channel::UnixStream => "socketpair(AF_UNIX, SOCK_STREAM)",
            Channel::UnixDatagram => "socketpair(AF_UNIX, SOCK_DGRAM)",
            Channel::Tcp => "TCP over 127.0.0.1, TCP_NODELAY",
            Channel::File => "regular files, appended and followed (inotify)",
        }
    }

    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One side's ends of a channel, before it is put to use: where it reads, where it writes,
/// and for the file channel the path to follow.
#[derive(Debug)]
pub struct End {
    rx: OwnedFd,
    tx: OwnedFd,
    follow: Option<PathBuf>,
}

/// The two sides of a freshly made channel. The parent keeps `parent` and the forked child
/// `child`; each must close the other's ends, or EOF never arrives (the classic forgotten
/// close).
#[derive(Debug)]
pub struct Pair {
    pub parent: End,
    pub child: End,
}

impl Pair {
    /// Makes a connected pair of `kind`. FIFOs and files are created in `dir`.
    ///
    /// # Errors
    /// Whatever creating the pipes, sockets or files reports.
    pub fn new(kind: Channel, dir: &Path) -> io::Result<Pair> {
        match kind {
            Channel::Pipe => {
                let (child_rx, parent_tx) = plumb_sys::pipe()?;
                let (parent_rx, child_tx) = plumb_sys::pipe()?;
                Ok(Pair::plain(parent_rx, parent_tx, child_rx, child_tx))
            }
            Channel::Fifo => {
                let (child_rx, parent_tx) = fifo(&dir.join("to-child"))?;
                let (parent_rx, child_tx) = fifo(&dir.join("to-parent"))?;
                Ok(Pair::plain(parent_rx, parent_tx, child_rx, child_tx))
            }
            Channel::UnixStream => {
                let (p, c) = UnixStream::pair()?;
                Pair::one_socket_each(p.into(), c.into())
            }
            Channel::UnixDatagram => {
                let (p, c) = UnixDatagram::pair()?;
                Pair::one_socket_each(p.into(), c.into())
            }
            Channel::Tcp => {
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
                let p = TcpStream::connect(listener.local_addr()?)?;
                let (c, _) = listener.accept()?;
                p.set_nodelay(true)?;
                c.set_nodelay(true)?;
                Pair::one_socket_each(p.into(), c.into())
            }
            Channel::File => {
                let to_child = dir.join("to-child.log");
                let to_parent = dir.join("to-parent.log");
                let (child_rx, parent_tx) = appended_file(&to_child)?;
                let (parent_rx, child_tx) = appended_file(&to_parent)?;
                Ok(Pair {
                    parent: End {
                        rx: parent_rx,
                        tx: parent_tx,
                        follow: Some(to_parent),
                    },
                    child: End {
                        rx: child_rx,
                        tx: child_tx,
                        follow: Some(to_child),
                    },
                })
            }
        }
    }

    fn plain(parent_rx: OwnedFd, parent_tx: OwnedFd, child_rx: OwnedFd, child_tx: OwnedFd) -> Pair {
        Pair {
            parent: End {
                rx: parent_rx,
                tx: parent_tx,
                follow: None,
            },
            child: End {
                rx: child_rx,
                tx: child_tx,
                follow: None,
            },
        }
    }

    /// A socket reads and writes on one descriptor; each end holds it twice (a `dup`) so every
    /// channel has the same shape.
    fn one_socket_each(parent: OwnedFd, child: OwnedFd) -> io::Result<Pair> {
        let parent_tx = parent.try_clone()?;
        let child_tx = child.try_clone()?;
        Ok(Pair::plain(parent, parent_tx, child, child_tx))
    }
}

/// Makes a FIFO and opens both of its ends here. Opening a FIFO for reading blocks until a
/// writer opens it (and the other way round), so the read end is opened non-blocking first,
/// then the write end (which succeeds because a reader now exists), then the read end is made
/// blocking again. Returns (read end, write end).
fn fifo(path: &Path) -> io::Result<(OwnedFd, OwnedFd)> {
    plumb_sys::ipc::mkfifo(path, 0o600)?;
    let rx = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let tx = OpenOptions::new().write(true).open(path)?;
    plumb_sys::set_nonblocking(&rx, false)?;
    Ok((rx.into(), tx.into()))
}

/// Creates an empty file and opens it twice: appending for the writer, reading from the start
/// for the reader. Returns (read end, write end).
fn appended_file(path: &Path) -> io::Result<(OwnedFd, OwnedFd)> {
    let tx = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)?;
    let rx = File::open(path)?;
    Ok((rx.into(), tx.into()))
}

/// An end put to use in the process that owns it.
#[derive(Debug)]
pub struct Link {
    rx: OwnedFd,
    tx: OwnedFd,
    /// Set for the file channel: where to sleep when the reader has caught up with the writer.
    follower: Option<Inotify>,
    /// Busy-poll: descriptors are non-blocking and both `EAGAIN` and "caught up" are retried at
    /// once, so no sleep or wake-up is on the measured path.
    spin: bool,
    is_file: bool,
}

impl End {
    /// Puts the end to use. Call it in the process that will use it (after `fork`): the file
    /// channel's inotify instance must belong to the reader alone.
    ///
    /// # Errors
    /// Setting `O_NONBLOCK` or creating the inotify watch can fail.
    pub fn into_link(self, spin: bool) -> io::Result<Link> {
        let is_file = self.follow.is_some();
        let follower = match (&self.follow, spin) {
            (Some(path), false) => {
                let ino = Inotify::new()?;
                ino.watch_writes(path)?;
                Some(ino)
            }
            _ => None,
        };
        if spin {
            plumb_sys::set_nonblocking(&self.rx, true)?;
            plumb_sys::set_nonblocking(&self.tx, true)?;
        }
        Ok(Link {
            rx: self.rx,
            tx: self.tx,
            follower,
            spin,
            is_file,
        })
    }
}

impl Link {
    /// One `read`: some bytes, or 0 at end of stream. A file reader that has caught up with the
    /// writer waits for the file to grow instead of reporting end of file, as `tail -f` does.
    ///
    /// # Errors
    /// Whatever `read` reports.
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match plumb_sys::read(&self.rx, buf) {
                Ok(0) if self.is_file => match &mut self.follower {
                    Some(ino) => ino.wait()?,
                    None => std::hint::spin_loop(),
                },
                Err(e) if self.spin && e.kind() == io::ErrorKind::WouldBlock => {
                    std::hint::spin_loop()
                }
                r => return r,
            }
        }
    }

    /// Fills `buf` exactly.
    ///
    /// # Errors
    /// `UnexpectedEof` when the peer closes first; whatever `read` reports.
    #[inline]
    pub fn recv_exact(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.recv(buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the other process closed the channel",
                ));
            }
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// One `write`: it may take fewer bytes than offered on a stream.
    ///
    /// # Errors
    /// Whatever `write` reports (`EPIPE` when the peer has gone).
    #[inline]
    pub fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match plumb_sys::write(&self.tx, buf) {
                Err(e) if self.spin && e.kind() == io::ErrorKind::WouldBlock => {
                    std::hint::spin_loop()
                }
                r => return r,
            }
        }
    }

    /// Writes all of `buf`.
    ///
    /// # Errors
    /// Whatever `write` reports.
    #[inline]
    pub fn send_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.send(buf)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every channel carries bytes both ways between its two ends (in one process, so without
    /// a fork: each direction is used once, small enough to fit the kernel's buffers).
    #[test]
    fn every_channel_carries_bytes_both_ways() {
        for spin in [false, true] {
            for kind in Channel::ALL {
                let dir = tempfile::tempdir().unwrap();
                let pair = Pair::new(kind, dir.path()).unwrap();
                let mut parent = pair.parent.into_link(spin).unwrap();
                let mut child = pair.child.into_link(spin).unwrap();
                parent.send_all(b"ping").unwrap();
                let mut buf = [0u8; 4];
                child.recv_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"ping", "{}", kind.name());
                child.send_all(b"pong").unwrap();
                parent.recv_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"pong", "{}", kind.name());
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in Channel::ALL {
            assert_eq!(Channel::from_name(kind.name()), Some(kind));
        }
        assert_eq!(Channel::from_name("carrier-pigeon"), None);
    }

    #[test]
    fn closing_the_writer_is_end_of_stream_for_sockets_and_pipes() {
        for kind in [
            Channel::Pipe,
            Channel::Fifo,
            Channel::UnixStream,
            Channel::Tcp,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let pair = Pair::new(kind, dir.path()).unwrap();
            let mut child = pair.child.into_link(false).unwrap();
            drop(pair.parent);
            let mut buf = [0u8; 1];
            let err = child.recv_exact(&mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{}", kind.name());
        }
    }
}
