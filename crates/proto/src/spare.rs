//! Spare output buffers, kept per thread so that answering a request does not allocate.
//!
//! A response is built in a buffer that leaves the session as soon as the write finishes;
//! without this, every request paid for a malloc and a free of a buffer a little over a
//! kilobyte, which glibc serves from its slower size classes (and profiles showed). A thread
//! keeps at most [`KEEP`] buffers of at most [`MAX_CAPACITY`] bytes, so a thread that serves
//! one connection (the thread-per-connection model) holds a few kilobytes, and an event loop
//! holds the same few buffers for all its connections. An idle connection holds none.

use std::cell::RefCell;

/// Buffers kept per thread.
pub const KEEP: usize = 4;
/// Larger buffers (a big listing) are freed rather than kept.
pub const MAX_CAPACITY: usize = 32 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes.
pub fn take(capacity: usize) -> Vec<u8> {
    let spare = SPARE.with_borrow_mut(Vec::pop);
    match spare {
        Some(mut v) => {
            v.reserve(capacity);
            v
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Gives a buffer back for reuse (or frees it).
pub fn give(mut v: Vec<u8>) {
    if v.capacity() == 0 || v.capacity() > MAX_CAPACITY {
        return;
    }
    v.clear();
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < KEEP {
            spare.push(v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_bounded() {
        let mut a = take(100);
        a.extend_from_slice(b"hello");
        let ptr = a.as_ptr();
        give(a);
        let b = take(10);
        assert!(b.is_empty(), "handed out empty");
        assert_eq!(b.as_ptr(), ptr, "the same allocation");
        give(b);
        give(Vec::with_capacity(MAX_CAPACITY + 1));
        for _ in 0..KEEP + 3 {
            give(Vec::with_capacity(8));
        }
        SPARE.with_borrow(|s| {
            assert!(s.len() <= KEEP);
            assert!(s.iter().all(|v| v.capacity() <= MAX_CAPACITY));
        });
    }
}
