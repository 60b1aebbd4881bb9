//! Whether a connection's calls at the token are long, which decides how the next one is
//! served (see `kyso_proto::wait` and `Response::long`).

use std::time::{Duration, Instant};

/// Whether a connection's calls at the token are long (`Response::long`): over a millisecond
/// of CPU each, or waiting on a device (a USB token's card). Short ones are served on the
/// caller's CPU while the caller yields it to kysod's thread; long ones anywhere, the caller
/// asleep.
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
/// The CPU time comes from `getrusage` (~0.3 µs a call on the 2-CPU VM), so it is read only
/// for the calls after one that took over a millisecond.
#[derive(Default)]
pub(crate) struct Pace {
    long: bool,
    /// Calls at the token still to measure since the last one that took over a millisecond.
    measuring: u32,
}

/// When a call at the token started, and the thread's usage then if it is measured.
pub(crate) struct Started {
    at: Instant,
    usage: Option<Usage>,
}

impl Pace {
    /// What counts as long (as the shim's default wait for an answer).
    const LONG: Duration = Duration::from_millis(1);
    /// How many calls after a long one are measured.
    const MEASURED: u32 = 64;

    pub(crate) fn start(&self, at_token: bool) -> Option<Started> {
        at_token.then(|| Started {
            at: Instant::now(),
            usage: (self.measuring > 0).then(Usage::now).flatten(),
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
            self.measuring = self.measuring.saturating_sub(1);
            return false;
        }
        // An unmeasured long call leaves the judgement as it was; the next ones are measured.
        // Waiting on a device is mostly asleep: a short wait for a lock while the CPU's share
        // went to another thread is not that.
        if let (Some(before), Some(after)) = (started.usage, Usage::now()) {
            let cpu = after.cpu.saturating_sub(before.cpu);
            self.long = cpu > Self::LONG || (after.waits > before.waits && cpu * 4 < took);
        }
        self.measuring = Self::MEASURED;
        self.long
    }
}

/// The calling thread's CPU time and how often it has waited (voluntary context switches).
#[derive(Clone, Copy)]
struct Usage {
    cpu: Duration,
    waits: i64,
}

impl Usage {
    fn now() -> Option<Usage> {
        use nix::sys::resource::{getrusage, UsageWho};
        let usage = getrusage(UsageWho::RUSAGE_THREAD).ok()?;
        let time = |t: nix::sys::time::TimeVal| {
            Duration::new(t.tv_sec().max(0) as u64, 0)
                + Duration::from_micros(t.tv_usec().max(0) as u64)
        };
        Some(Usage {
            cpu: time(usage.user_time()) + time(usage.system_time()),
            waits: usage.voluntary_context_switches(),
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
    fn short_work_waits_and_long_work_are_told_apart() {
        let mut pace = Pace::default();
        assert!(!call(&mut pace, || ()));
        // Asleep in the module (a device): long, once measured.
        let sleep = || std::thread::sleep(Duration::from_millis(3));
        assert!(
            !call(&mut pace, sleep),
            "an unmeasured call changes nothing"
        );
        assert!(call(&mut pace, sleep), "a measured wait is long");
        assert!(!call(&mut pace, || ()), "a quick call is short");
        // Two milliseconds of CPU: long.
        assert!(call(&mut pace, || spin_for(Duration::from_millis(2))));
        assert!(!call(&mut pace, || ()));
        // Calls that stay quick stop being measured.
        for _ in 0..Pace::MEASURED {
            assert!(!call(&mut pace, || ()));
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
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let one = CpuSet::only(cpu).expect("a CPU set");
            scope.spawn(|| {
                assert!(CpuSet::only(cpu).expect("a CPU set").apply(None));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
            assert!(one.apply(None));
            let mut pace = Pace {
                long: false,
                measuring: Pace::MEASURED,
            };
            // Yielding to the busy thread: over a millisecond passes, little of it on this
            // thread's CPU, and no wait of its own (a yield is not one).
            let started = Instant::now();
            let long = call(&mut pace, || {
                while started.elapsed() < Duration::from_millis(3) {
                    nix::sched::sched_yield().expect("sched_yield");
                }
            });
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(!long, "a call slowed by a shared CPU was judged long");
            // The same for a call that waited: long.
            assert!(call(&mut pace, || std::thread::sleep(
                Duration::from_millis(3)
            )));
        });
    }

    fn first_cpu() -> Option<u32> {
        (0..1024).find(|&c| CpuSet::of_process().is_some_and(|s| s.contains(c)))
    }
}
