//! Whether a connection's calls at the token are long, which decides how the next one is
//! served (see `kyso_proto::wait` and `Response::long`).

use std::time::{Duration, Instant};

/// Whether a connection's calls at the token are long (`Response::long`): calls kysod's
/// thread spends mostly asleep in, waiting on a device (a USB token's card), or calls of over
/// 3 ms of CPU (RSA-4096 with a software token). Such calls are served on any CPU, the caller
/// asleep: for the first, the caller's CPU is free for others; for the second, a caller
/// yielding its CPU through the whole wait budget (1 ms) before it sleeps takes CPU from the
/// signature. The others, RSA-2048 with a software token (~600 µs of CPU) among them, are
/// served on the caller's CPU while the caller yields it to kysod's thread.
///
/// The caller cannot tell: it sees only how long the answer took, and that doubles for an
/// RSA-2048 signature (~600 µs of CPU) when two callers and their kysod threads meet on one
/// CPU. The shim judged so until stop 21, and such a meeting then lasted: the callers went to
/// sleep, each woke on the CPU its answer was written on, and its next request woke kysod's
/// thread there too, while the other CPU idled (traced with `perf` at RSA-2048 2T: spells of
/// 20–200 ms at half the rate, CPU 0 idle 20–80 % of the time). Served on the callers' CPUs,
/// the callers keep yielding, the scheduler moves one of them to the idle CPU and kysod's
/// thread follows it with its next request.
///
/// The time asleep is what the call took less the thread's CPU time and its time waiting for
/// a CPU (see `Usage`), read only for a call after one that took over a millisecond. On a
/// loaded machine a thread also sleeps on a lock whose holder lost its CPU, and is charged
/// more CPU time than the work takes (an RSA-2048 signature measured 1.6 ms), so it takes two
/// long calls in a row to make the calls long.
#[derive(Default)]
pub(crate) struct Pace {
    long: bool,
    /// The last call at the token took over a millisecond: the next one is measured.
    measuring: bool,
    /// Measured calls in a row that were long.
    streak: u32,
}

/// When a call at the token started, and the thread's usage then if it is measured.
pub(crate) struct Started {
    at: Instant,
    usage: Option<Usage>,
}

impl Pace {
    /// A call that takes longer has the next one measured.
    const LONG: Duration = Duration::from_millis(1);
    /// A call that took more CPU is long.
    const HEAVY: Duration = Duration::from_millis(3);
    /// How many measured long calls in a row make the calls long.
    const STREAK: u32 = 2;

    pub(crate) fn start(&self, at_token: bool) -> Option<Started> {
        at_token.then(|| Started {
            at: Instant::now(),
            usage: self.measuring.then(Usage::now).flatten(),
        })
    }

    /// Whether the calls are long, after the call `started` (if it worked at the token).
    pub(crate) fn finish(&mut self, started: Option<Started>) -> bool {
        let Some(started) = started else {
            return self.long;
        };
        let took = started.at.elapsed();
        if took <= Self::LONG {
            self.long = false;
            self.streak = 0;
            self.measuring = false;
            return false;
        }
        // An unmeasured long call leaves the judgement as it was; the next one is measured.
        if let (Some(before), Some(after)) = (started.usage, Usage::now()) {
            let working = after.cpu.saturating_sub(before.cpu);
            let queued = after.queued.saturating_sub(before.queued);
            let asleep = took.saturating_sub(working + queued);
            let this = asleep * 2 > took || working > Self::HEAVY;
            self.streak = if this { self.streak + 1 } else { 0 };
            let long = self.streak >= Self::STREAK;
            if long != self.long {
                tracing::debug!(
                    long,
                    took_us = took.as_micros() as u64,
                    cpu_us = working.as_micros() as u64,
                    queued_us = queued.as_micros() as u64,
                    "calls at the token judged anew"
                );
            }
            self.long = long;
        }
        self.measuring = true;
        self.long
    }
}

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) and its time spent waiting for
/// a CPU (the second figure of `/proc/thread-self/schedstat`, up to date for a running thread;
/// the CPU time there is not, it moves at the scheduler's ticks and switches). ~6 µs on the
/// 2-CPU VM, opening the file each time: a thread that kept it open would hold a descriptor
/// for as long as its connection lasts. `None` where the kernel keeps no schedstat, and then
/// no call is judged long.
#[derive(Clone, Copy)]
struct Usage {
    cpu: Duration,
    queued: Duration,
}

impl Usage {
    fn now() -> Option<Usage> {
        use nix::time::{clock_gettime, ClockId};
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let queued = text.split_ascii_whitespace().nth(1)?.parse::<u64>().ok()?;
        let cpu = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
        Some(Usage {
            cpu: Duration::from(cpu),
            queued: Duration::from_nanos(queued),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpus::CpuSet;

    fn call(pace: &mut Pace, work: impl FnOnce()) -> bool {
        let started = pace.start(true);
        work();
        pace.finish(started)
    }

    fn spin_for(cpu: Duration) {
        let start = Usage::now().expect("usage").cpu;
        while Usage::now().expect("usage").cpu - start < cpu {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn calls_asleep_are_told_from_calls_at_work() {
        let mut pace = Pace::default();
        assert!(!call(&mut pace, || ()));
        // Asleep in the module (a device): long, once measured twice.
        let sleep = || std::thread::sleep(Duration::from_millis(30));
        assert!(
            !call(&mut pace, sleep),
            "an unmeasured call changes nothing"
        );
        assert!(!call(&mut pace, sleep), "one measured wait is not enough");
        assert!(call(&mut pace, sleep), "two measured waits are long");
        assert!(call(&mut pace, sleep));
        assert!(!call(&mut pace, || ()), "a quick call is short");
        assert!(!call(&mut pace, sleep), "the count of waits starts again");
        // Two milliseconds of CPU: not long, and ends the count.
        let work = |ms| move || spin_for(Duration::from_millis(ms));
        assert!(!call(&mut pace, work(2)));
        assert!(!call(&mut pace, sleep));
        assert!(call(&mut pace, sleep));
        assert!(!call(&mut pace, work(2)));
        // Five milliseconds of CPU, twice: long.
        assert!(!call(&mut pace, work(5)));
        assert!(call(&mut pace, work(5)));
        assert!(
            call(&mut pace, sleep),
            "a wait after a long call keeps them long"
        );
        assert!(!call(&mut pace, work(2)));
        // A quick call ends the measuring (on a loaded machine one may take over 1 ms).
        assert!(pace.start(true).expect("at the token").usage.is_some());
        let mut quick = 0;
        while pace.measuring && quick < 1000 {
            assert!(!call(&mut pace, || ()));
            quick += 1;
        }
        assert!(pace.start(true).expect("at the token").usage.is_none());
        assert!(pace.start(false).is_none());
    }

    /// A call that takes long only because another thread had its CPU is short: that is what
    /// two callers and their kysod threads on one CPU look like.
    #[test]
    fn a_call_slowed_by_a_shared_cpu_is_short() {
        let Some(cpu) = first_cpu() else {
            return;
        };
        let stop = &std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let one = CpuSet::only(cpu).expect("a CPU set");
            scope.spawn(move || {
                assert!(one.apply(None));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
            assert!(one.apply(None));
            let mut pace = Pace {
                measuring: true,
                ..Pace::default()
            };
            // Yielding to the busy thread: over a millisecond passes, little of it on this
            // thread's CPU, the rest waiting for it.
            let yielding = || {
                let started = Instant::now();
                while started.elapsed() < Duration::from_millis(3) {
                    nix::sched::sched_yield().expect("sched_yield");
                }
            };
            let long = [call(&mut pace, yielding), call(&mut pace, yielding)];
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(
                long, [false; 2],
                "calls slowed by a shared CPU were judged long"
            );
            // Calls that waited: long.
            let sleep = || std::thread::sleep(Duration::from_millis(30));
            assert!(!call(&mut pace, sleep));
            assert!(call(&mut pace, sleep));
        });
    }

    fn first_cpu() -> Option<u32> {
        let allowed = CpuSet::of_process()?;
        (0..1024).find(|&c| allowed.contains(c))
    }
}
