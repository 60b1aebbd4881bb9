//! How both ends wait for the next frame: a short spin before blocking.
//!
//! On the small virtual machines kyso runs on, waking a thread blocked on another CPU costs
//! tens of microseconds (an inter-processor interrupt through the hypervisor), more than a
//! PKCS#11 call itself. Checking the socket for a short while before blocking turns most round
//! trips into a few microseconds. The spin yields regularly so that runnable work on the same
//! CPU (often the very thread that will answer) is not held up, and it is bounded, so an idle
//! peer costs nothing once the budget is spent. At most half the CPUs' worth of threads of a
//! process spin at once; the others block at once, so that spinning never takes the CPUs away
//! from the threads doing the actual work (signatures in kysod, the application's own).

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};

/// Returns once `fd` has something to read (data, end of stream or an error), or once
/// `budget` has passed; the caller's blocking read follows either way.
pub fn spin_until_readable(fd: BorrowedFd<'_>, budget: Duration) {
    if budget.is_zero() {
        return;
    }
    let Some(_slot) = SpinSlot::take() else {
        return;
    };
    let start = Instant::now();
    let mut byte = [0u8; 1];
    let mut round = 0u32;
    loop {
        match recv(
            fd.as_raw_fd(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            _ => return,
        }
        if start.elapsed() >= budget {
            return;
        }
        round = round.wrapping_add(1);
        if round.is_multiple_of(8) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Threads of this process spinning right now.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// A place among the spinning threads, given back when dropped.
struct SpinSlot;

impl SpinSlot {
    fn take() -> Option<SpinSlot> {
        static LIMIT: OnceLock<usize> = OnceLock::new();
        let limit = *LIMIT.get_or_init(|| {
            std::thread::available_parallelism()
                .map(|n| (n.get() / 2).max(1))
                .unwrap_or(1)
        });
        SPINNING
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| SpinSlot)
    }
}

impl Drop for SpinSlot {
    fn drop(&mut self) {
        SPINNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A spin budget from the environment variable `name` (microseconds), else `default`.
pub fn budget_from_env(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_micros)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::sync::Mutex;

    /// The spin slots are per process: tests that spin take turns.
    static TURN: Mutex<()> = Mutex::new(());

    #[test]
    fn returns_at_once_when_data_is_waiting() {
        let _turn = TURN.lock().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"x").unwrap();
        let t = Instant::now();
        spin_until_readable(b.as_fd(), Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn gives_up_after_the_budget() {
        let _turn = TURN.lock().unwrap();
        let (_a, b) = UnixStream::pair().unwrap();
        let t = Instant::now();
        spin_until_readable(b.as_fd(), Duration::from_millis(20));
        let spent = t.elapsed();
        assert!(
            spent >= Duration::from_millis(20) && spent < Duration::from_secs(2),
            "{spent:?}"
        );
    }

    #[test]
    fn returns_on_hang_up() {
        let _turn = TURN.lock().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let t = Instant::now();
        spin_until_readable(b.as_fd(), Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
