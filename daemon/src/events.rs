//! Slot events: every change of a token's presence gets a sequence number; each client keeps a
//! cursor, so `C_WaitForSlotEvent` reports each change once per client, blocking or not.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use kyso_proto::Ulong;

/// Changes older than this many events are forgotten (a client that far behind sees the rest).
const KEEP: usize = 256;

#[derive(Default)]
pub struct SlotEvents {
    log: Mutex<EventLog>,
    changed: Condvar,
}

#[derive(Default)]
struct EventLog {
    /// Sequence number of the last event published.
    last: u64,
    recent: VecDeque<(u64, Ulong)>,
}

impl SlotEvents {
    /// The cursor of a client that has seen everything so far.
    pub fn cursor(&self) -> u64 {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).last
    }

    pub fn publish(&self, slot: Ulong) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.last += 1;
        let seq = log.last;
        log.recent.push_back((seq, slot));
        if log.recent.len() > KEEP {
            log.recent.pop_front();
        }
        drop(log);
        self.changed.notify_all();
    }

    /// The first event after `cursor`, advancing it.
    pub fn poll(&self, cursor: &mut u64) -> Option<Ulong> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        Self::next(&log, cursor)
    }

    /// Waits up to `timeout` for an event after `cursor`.
    pub fn wait(&self, cursor: &mut u64, timeout: Duration) -> Option<Ulong> {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = Self::next(&log, cursor) {
            return Some(slot);
        }
        log = self
            .changed
            .wait_timeout(log, timeout)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        Self::next(&log, cursor)
    }

    fn next(log: &EventLog, cursor: &mut u64) -> Option<Ulong> {
        let (seq, slot) = *log.recent.iter().find(|(seq, _)| *seq > *cursor)?;
        *cursor = seq;
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn each_client_sees_each_event_once() {
        let ev = SlotEvents::default();
        let (mut a, mut b) = (ev.cursor(), ev.cursor());
        ev.publish(3);
        ev.publish(4);
        assert_eq!(ev.poll(&mut a), Some(3));
        assert_eq!(ev.poll(&mut a), Some(4));
        assert_eq!(ev.poll(&mut a), None);
        assert_eq!(ev.poll(&mut b), Some(3));
        let mut late = ev.cursor();
        assert_eq!(ev.poll(&mut late), None);
    }

    #[test]
    fn a_waiter_wakes_on_publish() {
        let ev = Arc::new(SlotEvents::default());
        let mut cursor = ev.cursor();
        let publisher = {
            let ev = ev.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                ev.publish(9);
            })
        };
        let t = std::time::Instant::now();
        let mut got = None;
        while got.is_none() && t.elapsed() < Duration::from_secs(5) {
            got = ev.wait(&mut cursor, Duration::from_secs(5));
        }
        assert_eq!(got, Some(9));
        publisher.join().unwrap();
    }
}
