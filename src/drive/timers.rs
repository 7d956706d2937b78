//! The deadlines of the event loop (header timeout, keep-alive idle, write stall, connect), of
//! the pool's waiting room, and of the bench engine's paced sends: a min-heap with lazy
//! invalidation. Nothing is touched per idle connection per tick: each
//! connection has at most one live entry, the loop sleeps until the earliest one, and an entry
//! whose deadline has since moved (or whose connection is gone) is recognised as stale when it
//! comes due and simply dropped.
//!
//! Entries of closed connections stay until they come due; when they outnumber the live
//! connections the loop drops them all in one pass ([`Deadlines::retain`]), so a stream of
//! short connections (each arming a header timeout) cannot grow the heap without bound.
//!
//! A deadline that moves *later* (the keep-alive idle timer after every request) pushes
//! nothing: the earlier entry fires, the connection finds nothing due and re-arms at its new
//! deadline. So a busy keep-alive connection costs one heap entry per timeout period, not one
//! per request.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// One armed deadline: when, for which slot, and which connection held that slot (slots are
/// reused, connection ids are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    pub at: Instant,
    pub slot: usize,
    pub id: u64,
}

#[derive(Debug, Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<Due>>,
}

impl Deadlines {
    pub fn push(&mut self, due: Due) {
        self.heap.push(Reverse(due));
    }

    /// The earliest armed deadline (possibly stale: waking early is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// Takes the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Due> {
        if self.next()? > now {
            return None;
        }
        let Reverse(due) = self.heap.pop()?;
        if self.heap.is_empty() && self.heap.capacity() > 4096 {
            // A burst of connections came and went: give the memory back.
            self.heap = BinaryHeap::new();
        }
        Some(due)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops the entries `keep` rejects (the loop's compaction of stale entries).
    pub fn retain(&mut self, mut keep: impl FnMut(&Due) -> bool) {
        self.heap.retain(|Reverse(d)| keep(d));
        if self.heap.len() * 4 < self.heap.capacity() {
            self.heap.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut d = Deadlines::default();
        for (ms, slot) in [(30, 3), (10, 1), (20, 2), (10, 4)] {
            d.push(Due {
                at: at(ms),
                slot,
                id: slot as u64,
            });
        }
        assert_eq!(d.next(), Some(at(10)));
        assert_eq!(d.pop_due(at(5)), None, "nothing is due yet");
        let cases: &[(u64, &[usize])] = &[(10, &[1, 4]), (15, &[]), (30, &[2, 3])];
        for &(now, want) in cases {
            let mut got = Vec::new();
            while let Some(due) = d.pop_due(at(now)) {
                got.push(due.slot);
            }
            assert_eq!(got, want, "due at {now} ms");
        }
        assert_eq!(d.len(), 0);
        assert_eq!(d.next(), None);
    }

    #[test]
    fn retain_drops_rejected_entries_and_keeps_order() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        for slot in 0..100 {
            d.push(Due {
                at: t0 + Duration::from_millis(100 - slot as u64),
                slot,
                id: 0,
            });
        }
        d.retain(|due| due.slot % 10 == 0);
        assert_eq!(d.len(), 10);
        let order: Vec<usize> = std::iter::from_fn(|| d.pop_due(t0 + Duration::from_secs(1)))
            .map(|due| due.slot)
            .collect();
        assert_eq!(order, [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]);
    }
}
