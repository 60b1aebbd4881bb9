//! How both ends wait for the next frame: on the CPU they share, giving it to each other.
//!
//! On the small virtual machines kyso runs on, waking a thread blocked on another CPU costs
//! tens of microseconds (an inter-processor interrupt through the hypervisor, ~30 µs per
//! wake-up on the 2-CPU test machine), more than a PKCS#11 call itself; a hand-off between two
//! threads on one CPU costs a few. So a request that works at the token (a signature, not too
//! long last time) names the CPU the calling thread runs on and kysod serves it on that CPU;
//! while one side works, the other waits by checking for its frame and yielding the CPU at once
//! (to the very thread that will answer). The other CPUs stay free for the rest of the work:
//! the application's other threads, and the signature operations kysod initialises ahead (see
//! kysod's `prepared`). Other calls are short and are served wherever kysod's thread is, the
//! caller checking in a tight loop. Either way the wait is bounded before the thread blocks,
//! so an idle peer costs nothing once the budget is spent. A call at the token after one kysod
//! found long (`Response::long`: a USB token's signature, RSA-4096 with a software token) is
//! served anywhere while the caller sleeps: the wake-up is a small share of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Returns once `ready` says the peer's frame (or its end) is there, or once `budget` has
/// passed; the caller's sleeping read follows either way. `ready` is called once per round:
/// it checks and takes what came in one read (see `crate::channel`).
///
/// `shared_cpu` says the peer works on this thread's CPU (a call served on the caller's CPU):
/// the thread then yields the CPU before every check, so the peer runs at once. Otherwise the
/// peer is on another CPU and the thread checks in a tight loop, yielding every few rounds
/// only, so that a quick answer is seen within a microsecond.
pub fn until(budget: Duration, shared_cpu: bool, mut ready: impl FnMut() -> bool) {
    if budget.is_zero() {
        return;
    }
    // A thread checking in a tight loop holds a CPU; at most half of them are held so.
    let _slot = if shared_cpu {
        None
    } else {
        match SpinSlot::take() {
            Some(slot) => Some(slot),
            None => return,
        }
    };
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        if shared_cpu || round.is_multiple_of(8) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        round = round.wrapping_add(1);
        if ready() || start.elapsed() >= budget {
            return;
        }
    }
}

/// The CPU the calling thread runs on now, if the system says: what a request that works at
/// the token carries, and what kysod keeps its preparing thread off.
pub fn current_cpu() -> Option<u32> {
    nix::sched::sched_getcpu()
        .ok()
        .and_then(|cpu| u32::try_from(cpu).ok())
}

/// Threads of this process checking in a tight loop right now.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// A place among the threads checking in a tight loop, given back when dropped.
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
    use std::sync::Mutex;

    /// The tight-loop places are per process: tests that take one take turns.
    static TURN: Mutex<()> = Mutex::new(());

    #[test]
    fn returns_as_soon_as_ready_says_so() {
        for shared_cpu in [false, true] {
            let _turn = TURN.lock().unwrap();
            let mut checks = 0;
            let t = Instant::now();
            until(Duration::from_secs(5), shared_cpu, || {
                checks += 1;
                checks == 3
            });
            assert_eq!(checks, 3);
            assert!(t.elapsed() < Duration::from_secs(1));
        }
    }

    #[test]
    fn gives_up_after_the_budget() {
        let t = Instant::now();
        let mut checks = 0;
        until(Duration::from_millis(20), true, || {
            checks += 1;
            false
        });
        let spent = t.elapsed();
        assert!(
            spent >= Duration::from_millis(20) && spent < Duration::from_secs(2),
            "{spent:?}"
        );
        assert!(checks > 1, "checked {checks} times");
    }

    #[test]
    fn no_budget_checks_nothing() {
        until(Duration::ZERO, false, || panic!("checked without a budget"));
    }
}
