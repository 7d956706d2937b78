//! The I/O surface the pump works on: per peer, `try_read`, `try_write`, `try_sendfile` and
//! `shutdown_write`, each returning a count or `WouldBlock`. A plain socket ([`Stream`]) and
//! a child's pipe ([`Pipe`]) implement it; a TLS session over a socket is one more
//! implementation (rustls keeps records in user space, so it answers `try_sendfile` with
//! `Unsupported` and the pump falls back to reading the body into a buffer).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::net::Stream;

/// One descriptor of a connection, as the pump drives it. Every call is non-blocking:
/// "not now" is an error of kind [`io::ErrorKind::WouldBlock`].
pub trait Surface: AsFd + Send + std::fmt::Debug {
    /// Reads what is there (0 at EOF).
    ///
    /// # Errors
    /// `WouldBlock` when nothing is there yet; the OS error otherwise.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes a prefix of `buf`; `last` when the connection ends after these bytes (a socket
    /// may then send them with its FIN).
    ///
    /// # Errors
    /// `WouldBlock` when the buffer is full; the OS error otherwise.
    fn try_write(&mut self, buf: &[u8], last: bool) -> io::Result<usize>;
    /// Copies up to `len` bytes of `from` at `offset` inside the kernel.
    ///
    /// # Errors
    /// `Unsupported` where the surface cannot take kernel copies (the pump then reads the
    /// body and writes it); `WouldBlock`; the OS error.
    fn try_sendfile(&mut self, from: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
        let _ = (from, offset, len);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Ends our direction (the peer reads EOF).
    ///
    /// # Errors
    /// The OS error (`ENOTCONN` when the peer is gone).
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// A layer with output of its own (TLS handshake messages, alerts) that the descriptor
    /// would not take: the pump then waits for it to be writable and calls `try_read` again,
    /// which sends that output first. A plain descriptor has none.
    fn wants_write(&self) -> bool {
        false
    }
    /// When the layer gives up on its peer (a TLS handshake not finished in time).
    fn deadline(&self) -> Option<std::time::Instant> {
        None
    }
    /// What a TLS layer negotiated ("TLSv1.3 TLS13_AES_128_GCM_SHA256"), for the access log.
    fn tls_info(&self) -> Option<std::sync::Arc<str>> {
        None
    }
}

impl Surface for Stream {
    /// Never blocks, even on a socket left blocking for its writes (see
    /// [`crate::drive::blocking`]).
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        plumb_sys::tcp::recv_now(&*self, buf)
    }

    fn try_write(&mut self, buf: &[u8], last: bool) -> io::Result<usize> {
        self.send(buf, last)
    }

    fn try_sendfile(&mut self, from: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
        let mut off = offset;
        plumb_sys::sendfile(&*self, &from, &mut off, len)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        Stream::shutdown_write(self)
    }
}

/// One end of a pipe to or from a child process, non-blocking.
#[derive(Debug)]
pub struct Pipe(OwnedFd);

impl Pipe {
    /// Takes a pipe end and makes it non-blocking.
    ///
    /// # Errors
    /// `EBADF` only.
    pub fn new(fd: OwnedFd) -> io::Result<Pipe> {
        plumb_sys::set_nonblocking(&fd, true)?;
        Ok(Pipe(fd))
    }
}

impl AsFd for Pipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Surface for Pipe {
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        plumb_sys::read(&self.0, buf)
    }

    fn try_write(&mut self, buf: &[u8], _last: bool) -> io::Result<usize> {
        plumb_sys::write(&self.0, buf)
    }

    fn try_sendfile(&mut self, from: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
        let mut off = offset;
        plumb_sys::sendfile(&self.0, &from, &mut off, len)
    }

    /// A pipe has one direction: ending it is closing it, which the pump does by dropping
    /// the surface.
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}
