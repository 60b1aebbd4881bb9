//! Small frames through two pages the application and kysod share; the pipes carry the rest.
//!
//! Why: a frame through the pipes costs a `write` on one side and a `read` on the other, and a
//! side waiting for its frame checks with a `read` each round. Measured first in C on the 2-CPU
//! VM, two processes taking turns on one CPU: a round trip costs 5.3 µs over two pipes, 3.3 µs
//! through shared memory. A signature is one round trip.
//!
//! How: kysod makes a sealed memory file of two pages for each connection and hands it over
//! with the pipes (see [`crate::channel`]). The first page carries requests (the application
//! writes, kysod reads), the second answers. Each page is a mailbox: a state, a length, and
//! room for one frame of up to [`CAPACITY`] bytes. The states:
//!
//! - `EMPTY`: nothing in the box. Only the sender leaves it for `FULL` (a frame is in the box)
//!   or `PIPE` (a frame too big for the box is on its way through the pipe), and only the
//!   receiver for `ASLEEP` (it is about to sleep on the pipe), each by compare-and-swap: of a
//!   sender and a receiver meeting there, exactly one moves.
//! - A sender that finds the box anything but `EMPTY` writes its frame to the pipe: a sleeping
//!   receiver is woken by it, as before there was a box.
//! - The receiver empties the box once it has taken the frame, or once it is awake again.
//!
//! A waiting side thus checks for its frame by reading one word, without a system call, and
//! the sender puts it there without one; a side that sleeps is woken through the pipe, where
//! it also learns that its peer is gone (the pipe's or the socket's end).
//!
//! Trust: kysod reads what the application writes as it reads the pipe: any state it does not
//! expect means "read the pipe" (where a sleeping read ends when the application leaves), a
//! length over the box's room is an error, and the bytes are copied out of the box before they
//! are decoded, so a change behind kysod's back cannot alter what it checked. The file is
//! sealed before it is handed over (no shrinking, no growing), so the application cannot take
//! the memory away under kysod. The receiver clears the box after taking a frame, and a sender
//! that could not post its frame clears what it wrote: frames carry PINs.
//!
//! All access to the pages is through atomics: the other process may write them at any time.
#![allow(unsafe_code)]

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// One mailbox: a page.
const PAGE: usize = 4096;
/// The state and the length, on a cache line of their own.
const HEADER: usize = 64;
/// How many bytes of a frame's payload fit in a box: every request and answer of the signing
/// path, most of the others. A frame that does not fit goes through the pipe.
pub const CAPACITY: usize = PAGE - HEADER;
const WORDS: usize = CAPACITY / 8;
/// The file's size: the request box, then the answer box.
pub const SIZE: usize = 2 * PAGE;

const EMPTY: u32 = 0;
const FULL: u32 = 1;
const PIPE: u32 = 2;
const ASLEEP: u32 = 3;

/// Which side of the connection a mapping belongs to: kysod reads requests and writes answers,
/// the application the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Daemon,
    Application,
}

/// One connection's two mailboxes, mapped.
pub struct Shared {
    base: NonNull<u8>,
    side: Side,
}

// SAFETY: `Shared` owns its mapping, which stays valid until it is dropped, and every access
// to the mapped bytes goes through atomics; nothing in it is tied to the thread that made it.
unsafe impl Send for Shared {}
// SAFETY: as above: shared references only ever perform atomic operations on the mapping.
unsafe impl Sync for Shared {}

impl Shared {
    /// kysod's side: a new sealed memory file, mapped, and the descriptor to hand over.
    pub fn create() -> io::Result<(Shared, OwnedFd)> {
        let fd = memfd_create(
            c"kyso-frames",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        nix::unistd::ftruncate(&fd, SIZE as i64)?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
        let shared = Shared::map(&fd, Side::Daemon)?;
        Ok((shared, fd))
    }

    /// The application's side, from the descriptor that came with the welcome: a memory file
    /// of at least [`SIZE`] bytes that cannot shrink, or an error.
    pub fn join(fd: &OwnedFd) -> io::Result<Shared> {
        let seals = SealFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GET_SEALS)?);
        let size = nix::sys::stat::fstat(fd)?.st_size;
        if !seals.contains(SealFlag::F_SEAL_SHRINK) || size < SIZE as i64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the daemon handed over memory that may shrink or is too small",
            ));
        }
        Shared::map(fd, Side::Application)
    }

    fn map(fd: impl AsFd, side: Side) -> io::Result<Shared> {
        let len = NonZeroUsize::new(SIZE).expect("SIZE is not zero");
        // SAFETY: a new mapping at an address the kernel chooses, so no existing memory is
        // affected; the file is at least `SIZE` bytes and sealed against shrinking (checked by
        // both `create` and `join`), so every mapped byte stays backed.
        let base = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }?;
        Ok(Shared {
            base: base.cast(),
            side,
        })
    }

    /// The box this side takes frames from.
    pub fn inbox(&self) -> Mailbox<'_> {
        self.mailbox(match self.side {
            Side::Daemon => 0,
            Side::Application => 1,
        })
    }

    /// The box this side posts frames to.
    pub fn outbox(&self) -> Mailbox<'_> {
        self.mailbox(match self.side {
            Side::Daemon => 1,
            Side::Application => 0,
        })
    }

    fn mailbox(&self, page: usize) -> Mailbox<'_> {
        debug_assert!(page < SIZE / PAGE);
        // SAFETY: the mapping is `SIZE` bytes, page-aligned (so every offset used here is
        // aligned for its atomic type) and lives as long as `self`, which the references
        // borrow. The bytes are only ever accessed through these atomics, in this process and
        // (by contract, or as an adversary whose writes are then only odd values) in the other.
        unsafe {
            let page = self.base.as_ptr().add(page * PAGE);
            Mailbox {
                state: &*page.cast::<AtomicU32>(),
                len: &*page.add(4).cast::<AtomicU32>(),
                words: std::slice::from_raw_parts(page.add(HEADER).cast::<AtomicU64>(), WORDS),
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this address and length, and no reference
        // into it outlives `self` (mailboxes borrow it).
        let _ = unsafe { munmap(self.base.cast(), SIZE) };
    }
}

/// One direction's box.
pub struct Mailbox<'a> {
    state: &'a AtomicU32,
    len: &'a AtomicU32,
    words: &'a [AtomicU64],
}

/// What a receiver found in its box.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// A frame's payload, copied out into the caller's buffer.
    Frame,
    /// The frame comes through the pipe; `asleep` says the receiver marked the box so and
    /// calls [`Mailbox::awake`] once it has read it.
    Pipe { asleep: bool },
    /// A length the box cannot hold: only a peer that wrote the box itself leaves one.
    Malformed(usize),
}

impl Mailbox<'_> {
    /// Sender: posts `payload` if it fits and the box is empty. `false`: the frame goes through
    /// the pipe (the receiver sleeps there, or was told to read there, or the box was not
    /// free), and nothing of it stays in the box.
    pub fn post(&self, payload: &[u8]) -> bool {
        if payload.len() > CAPACITY {
            // Too big: a receiver still checking its box is told to read the pipe.
            let _ = self
                .state
                .compare_exchange(EMPTY, PIPE, Ordering::Release, Ordering::Relaxed);
            return false;
        }
        // Acquire: the receiver's clearing of its last frame is done before this writes.
        if self.state.load(Ordering::Acquire) != EMPTY {
            return false;
        }
        for (word, chunk) in self.words.iter().zip(payload.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        self.len.store(payload.len() as u32, Ordering::Relaxed);
        // Release: the receiver that sees `FULL` sees the bytes and the length.
        if self
            .state
            .compare_exchange(EMPTY, FULL, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        // The receiver went to sleep meanwhile: the pipe it is.
        self.clear(payload.len());
        false
    }

    /// Receiver: whether anything came (a frame, or word of one on the pipe), or the box holds
    /// something unexpected; either way the receiver should stop checking and [`take`] it.
    ///
    /// [`take`]: Mailbox::take
    pub fn stirred(&self) -> bool {
        self.state.load(Ordering::Relaxed) != EMPTY
    }

    /// Receiver, done checking: takes the frame from the box into `payload`, or says that it
    /// comes through the pipe. With nothing there yet the box is marked asleep, so that the
    /// sender writes to the pipe, which wakes the receiver.
    pub fn take(&self, payload: &mut Vec<u8>) -> Taken {
        let state =
            match self
                .state
                .compare_exchange(EMPTY, ASLEEP, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Taken::Pipe { asleep: true },
                Err(state) => state,
            };
        match state {
            FULL => {
                let len = self.len.load(Ordering::Relaxed) as usize;
                if len > CAPACITY {
                    self.state.store(EMPTY, Ordering::Release);
                    return Taken::Malformed(len);
                }
                payload.clear();
                payload.reserve(len);
                for word in &self.words[..len.div_ceil(8)] {
                    payload.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
                }
                payload.truncate(len);
                self.clear(len);
                // Release: the clearing is done before the sender may write the box again.
                self.state.store(EMPTY, Ordering::Release);
                Taken::Frame
            }
            PIPE => {
                self.state.store(EMPTY, Ordering::Release);
                Taken::Pipe { asleep: false }
            }
            // Asleep already (a wait that ended without a frame), or a state only a peer that
            // wrote the box itself leaves: the pipe, where the peer's end also shows.
            _ => Taken::Pipe { asleep: false },
        }
    }

    /// Receiver: awake again after a frame from the pipe; the sender may post to the box.
    pub fn awake(&self) {
        let _ = self
            .state
            .compare_exchange(ASLEEP, EMPTY, Ordering::Release, Ordering::Relaxed);
    }

    /// Writes the state and the length as a peer could, whatever they are (tests of what the
    /// receiver makes of them).
    #[cfg(test)]
    pub(crate) fn scribble(&self, state: u32, len: u32) {
        self.len.store(len, Ordering::Relaxed);
        self.state.store(state, Ordering::Release);
    }

    /// Clears the first `len` bytes of the box.
    fn clear(&self, len: usize) {
        for word in &self.words[..len.min(CAPACITY).div_ceil(8)] {
            word.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both sides' mappings of one file, as kysod and the application have them.
    fn pair() -> (Shared, Shared) {
        let (daemon, fd) = Shared::create().unwrap();
        let app = Shared::join(&fd).unwrap();
        (daemon, app)
    }

    fn raw_words(mailbox: &Mailbox<'_>) -> Vec<u64> {
        mailbox
            .words
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn a_posted_frame_is_taken_whole_and_leaves_the_box_clear() {
        let (daemon, app) = pair();
        let mut payload = Vec::new();
        for len in [0, 1, 7, 8, 9, 300, CAPACITY] {
            let frame: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            assert!(app.outbox().post(&frame), "{len} bytes");
            assert!(daemon.inbox().stirred());
            assert_eq!(daemon.inbox().take(&mut payload), Taken::Frame);
            assert_eq!(payload, frame, "{len} bytes");
            assert!(!daemon.inbox().stirred());
            assert!(raw_words(&daemon.inbox()).iter().all(|w| *w == 0));
        }
        // And the other way.
        assert!(daemon.outbox().post(b"answer"));
        assert_eq!(app.inbox().take(&mut payload), Taken::Frame);
        assert_eq!(payload, b"answer");
    }

    #[test]
    fn a_frame_too_big_is_announced_for_the_pipe() {
        let (daemon, app) = pair();
        assert!(!app.outbox().post(&vec![1; CAPACITY + 1]));
        assert!(daemon.inbox().stirred());
        assert_eq!(
            daemon.inbox().take(&mut Vec::new()),
            Taken::Pipe { asleep: false }
        );
        // Read from the pipe, the box is free again.
        assert!(app.outbox().post(b"small"));
    }

    #[test]
    fn a_sleeping_receiver_gets_its_frame_through_the_pipe() {
        let (daemon, app) = pair();
        let mut payload = Vec::new();
        assert_eq!(
            daemon.inbox().take(&mut payload),
            Taken::Pipe { asleep: true }
        );
        // The sender finds it asleep: the frame goes to the pipe, and not a byte into the box.
        assert!(!app.outbox().post(b"1234 the PIN"));
        assert!(raw_words(&daemon.inbox()).iter().all(|w| *w == 0));
        daemon.inbox().awake();
        assert!(app.outbox().post(b"next"));
        assert_eq!(daemon.inbox().take(&mut payload), Taken::Frame);
        assert_eq!(payload, b"next");
    }

    #[test]
    fn whatever_the_peer_writes_the_receiver_reads_the_pipe_or_errs() {
        let (daemon, app) = pair();
        let theirs = app.inbox();
        let mut payload = Vec::new();
        // A length over the room.
        theirs.len.store(u32::MAX, Ordering::Relaxed);
        theirs.state.store(FULL, Ordering::Release);
        assert_eq!(
            daemon.outbox().state.load(Ordering::Relaxed),
            FULL,
            "the application's box for answers is the daemon's outbox"
        );
        let mine = app.outbox();
        mine.len.store(CAPACITY as u32 + 1, Ordering::Relaxed);
        mine.state.store(FULL, Ordering::Release);
        assert_eq!(
            daemon.inbox().take(&mut payload),
            Taken::Malformed(CAPACITY + 1)
        );
        // States that mean nothing: read the pipe.
        for state in [ASLEEP, 4, u32::MAX] {
            mine.state.store(state, Ordering::Release);
            assert!(daemon.inbox().stirred());
            assert_eq!(
                daemon.inbox().take(&mut payload),
                Taken::Pipe { asleep: false }
            );
        }
        // A box left in a state only a sender sets is no box to post to: the pipe.
        theirs.state.store(7, Ordering::Release);
        assert!(!daemon.outbox().post(b"answer"));
    }

    proptest::proptest! {
        /// Whatever the application leaves in kysod's box, kysod takes a frame that fits the
        /// box, or is sent to the pipe, or gets an error; it never reads past the box.
        #[test]
        fn any_box_contents_are_taken_or_refused(
            state in proptest::prop_oneof![0u32..6, proptest::num::u32::ANY],
            len in proptest::prop_oneof![0u32..=CAPACITY as u32 + 8, proptest::num::u32::ANY],
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..CAPACITY),
        ) {
            let (daemon, app) = pair();
            let theirs = app.outbox();
            // The bytes in place, then whatever state and length over them.
            proptest::prop_assert!(theirs.post(&bytes));
            theirs.scribble(state, len);
            let mut payload = Vec::new();
            match daemon.inbox().take(&mut payload) {
                Taken::Frame => {
                    proptest::prop_assert_eq!(state, FULL);
                    proptest::prop_assert_eq!(payload.len(), len as usize);
                    // What it took is cleared.
                    let taken = (len as usize).div_ceil(8);
                    proptest::prop_assert!(raw_words(&daemon.inbox())[..taken].iter().all(|w| *w == 0));
                }
                Taken::Malformed(n) => proptest::prop_assert!(n > CAPACITY),
                Taken::Pipe { asleep } => proptest::prop_assert_eq!(asleep, state == EMPTY),
            }
        }
    }

    #[test]
    fn memory_that_may_shrink_is_refused() {
        let fd = memfd_create(c"unsealed", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, SIZE as i64).unwrap();
        assert!(Shared::join(&fd).is_err());
        let (_, fd) = Shared::create().unwrap();
        // Sealed: nobody can shrink it, the application included.
        assert!(nix::unistd::ftruncate(&fd, 0).is_err());
    }

    #[test]
    fn frames_cross_between_threads_in_both_directions() {
        let (daemon, app) = pair();
        let echo = std::thread::spawn(move || {
            let mut payload = Vec::new();
            let mut served = 0;
            loop {
                while !daemon.inbox().stirred() {
                    std::hint::spin_loop();
                }
                assert_eq!(daemon.inbox().take(&mut payload), Taken::Frame);
                if payload.is_empty() {
                    return served;
                }
                while !daemon.outbox().post(&payload) {
                    std::hint::spin_loop();
                }
                served += 1;
            }
        });
        let mut payload = Vec::new();
        for i in 1..=10_000u32 {
            let frame = i.to_le_bytes().repeat((i % 50) as usize + 1);
            assert!(app.outbox().post(&frame));
            while !app.inbox().stirred() {
                std::hint::spin_loop();
            }
            assert_eq!(app.inbox().take(&mut payload), Taken::Frame);
            assert_eq!(payload, frame);
        }
        assert!(app.outbox().post(&[]));
        assert_eq!(echo.join().unwrap(), 10_000);
    }
}
