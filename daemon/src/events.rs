//! Slot events: every change of a token's presence gets a sequence number; each client keeps a
//! cursor, so `C_WaitForSlotEvent` reports each change once per client, blocking or not.
//!
//! A blocking wait subscribes a doorbell (an eventfd) that every event rings, so the waiting
//! connection sleeps in `poll` on its doorbell and its socket at once: woken by an event or by
//! its application leaving, and by nothing else.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use kyso_proto::Ulong;
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;

/// Changes older than this many events are forgotten (a client that far behind sees the rest).
const KEEP: usize = 256;

#[derive(Default)]
pub struct SlotEvents {
    log: Mutex<EventLog>,
    doorbells: Mutex<Vec<Arc<EventFd>>>,
}

#[derive(Default)]
struct EventLog {
    /// Sequence number of the last event published.
    last: u64,
    recent: VecDeque<(u64, Ulong)>,
}

/// A blocking wait's doorbell, rung at every event until it is dropped.
pub struct Subscription<'a> {
    events: &'a SlotEvents,
    bell: Arc<EventFd>,
}

impl Subscription<'_> {
    /// Readable once an event was published since the last [`Subscription::clear`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }

    /// Silences the doorbell until the next event.
    pub fn clear(&self) {
        let _ = self.bell.read();
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.events
            .doorbells
            .lock()
            .retain(|b| !Arc::ptr_eq(b, &self.bell));
    }
}

impl SlotEvents {
    /// The cursor of a client that has seen everything so far.
    pub fn cursor(&self) -> u64 {
        self.log.lock().last
    }

    pub fn publish(&self, slot: Ulong) {
        let mut log = self.log.lock();
        log.last += 1;
        let seq = log.last;
        log.recent.push_back((seq, slot));
        if log.recent.len() > KEEP {
            log.recent.pop_front();
        }
        drop(log);
        for bell in self.doorbells.lock().iter() {
            let _ = bell.write(1);
        }
    }

    /// The first event after `cursor`, advancing it.
    pub fn poll(&self, cursor: &mut u64) -> Option<Ulong> {
        let log = self.log.lock();
        let (seq, slot) = *log.recent.iter().find(|(seq, _)| *seq > *cursor)?;
        *cursor = seq;
        Some(slot)
    }

    /// A doorbell for a blocking wait. Subscribe first, then [`SlotEvents::poll`]: an event
    /// published in between rings the bell.
    pub fn subscribe(&self) -> std::io::Result<Subscription<'_>> {
        let bell = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        self.doorbells.lock().push(bell.clone());
        Ok(Subscription { events: self, bell })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use std::time::Duration;

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

    fn rung(sub: &Subscription<'_>, timeout: u16) -> bool {
        let mut fds = [PollFd::new(sub.fd(), PollFlags::POLLIN)];
        nix::poll::poll(&mut fds, PollTimeout::from(timeout)).unwrap() == 1
    }

    #[test]
    fn a_doorbell_rings_at_each_event_and_goes_with_its_wait() {
        let ev = Arc::new(SlotEvents::default());
        let sub = ev.subscribe().unwrap();
        assert!(!rung(&sub, 0));
        let publisher = {
            let ev = ev.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                ev.publish(9);
            })
        };
        assert!(rung(&sub, 5000));
        sub.clear();
        assert!(!rung(&sub, 0), "silent until the next event");
        publisher.join().unwrap();
        drop(sub);
        assert!(ev.doorbells.lock().is_empty());
    }
}
