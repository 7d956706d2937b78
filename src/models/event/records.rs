//! Connection records leave the event loops in batches. Sending each record straight to the
//! collector thread wakes it once per connection, and on a busy core the woken thread
//! preempts the loop: a context switch per connection, which profiles showed costing a
//! third of the CPU in the `Connection: close` benchmark. Instead the loops append their
//! records to one shared queue (an uncontended lock, no system call), and a forwarder thread
//! moves the queue to the collector at most every [`BATCH_INTERVAL`], sleeping while it is
//! empty. Logs therefore lag by up to that interval; nothing is lost, since the forwarder
//! drains the queue before it ends.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crate::report::{Record, Reporter};

/// How long records may wait before they reach the collector.
const BATCH_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Queue {
    records: Vec<Record>,
    closed: bool,
}

/// The loops' end of the queue (cheap to clone).
#[derive(Clone, Default)]
pub(super) struct Batcher {
    shared: Arc<(Mutex<Queue>, Condvar)>,
}

impl Batcher {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves `records` to the queue (leaving it empty), waking the forwarder if it sleeps.
    pub(super) fn push(&self, records: &mut Vec<Record>) {
        if records.is_empty() {
            return;
        }
        let mut q = self.lock();
        let was_empty = q.records.is_empty();
        q.records.append(records);
        drop(q);
        if was_empty {
            self.shared.1.notify_one();
        }
    }

    /// Runs the forwarder until [`Batcher::close`]; returns once everything queued reached
    /// `reporter`.
    pub(super) fn forward(&self, reporter: &Reporter) {
        loop {
            let mut q = self.lock();
            while q.records.is_empty() && !q.closed {
                q = self.shared.1.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            let batch = std::mem::take(&mut q.records);
            let closed = q.closed;
            drop(q);
            for r in batch {
                reporter.send(r);
            }
            if closed {
                // Records pushed after the last take (there are none once every loop has
                // ended, which is when close is called) would still be picked up here.
                for r in std::mem::take(&mut self.lock().records) {
                    reporter.send(r);
                }
                return;
            }
            thread::sleep(BATCH_INTERVAL);
        }
    }

    /// No more records will come: the forwarder drains the queue and returns.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.shared.1.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn every_record_reaches_the_collector_in_order() {
        let (tx, rx) = mpsc::channel();
        let reporter = Reporter::Channel(tx);
        let batcher = Batcher::default();
        thread::scope(|s| {
            let fwd = batcher.clone();
            s.spawn(move || fwd.forward(&reporter));
            for i in 0..5u64 {
                let mut batch: Vec<Record> = (0..100)
                    .map(|j| Record::Error(format!("{}", i * 100 + j)))
                    .collect();
                batcher.push(&mut batch);
                assert!(batch.is_empty());
            }
            batcher.close();
        });
        let got: Vec<u64> = rx
            .try_iter()
            .map(|r| match r {
                Record::Error(s) => s.parse().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, (0..500).collect::<Vec<_>>());
    }
}
