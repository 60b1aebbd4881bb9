//! Which CPUs kysod's threads run on: a connection's thread follows its caller's CPU (see
//! `server`), and the thread preparing signatures keeps off the CPU of the thread that hands
//! it work (see `prepared`).

use std::sync::OnceLock;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet as Set};
use nix::unistd::Pid;

/// A set of CPUs.
#[derive(Clone, Copy)]
pub struct CpuSet(Set);

impl CpuSet {
    /// The CPUs the process may run on: its main thread's set, which kysod never narrows (a
    /// thread started by a connection's thread would otherwise inherit one CPU).
    pub fn of_process() -> Option<CpuSet> {
        static PROCESS: OnceLock<Option<CpuSet>> = OnceLock::new();
        *PROCESS.get_or_init(|| sched_getaffinity(Pid::this()).ok().map(CpuSet))
    }

    pub fn contains(&self, cpu: u32) -> bool {
        self.0.is_set(cpu as usize).unwrap_or(false)
    }

    /// The set of `cpu` alone.
    pub fn only(cpu: u32) -> Option<CpuSet> {
        let mut one = Set::new();
        one.set(cpu as usize).ok()?;
        Some(CpuSet(one))
    }

    /// This set without `cpu`, unless that leaves it empty.
    pub fn without(&self, cpu: u32) -> Option<CpuSet> {
        let mut rest = self.0;
        // A CPU beyond the set's size is in no set: nothing to take out.
        let _ = rest.unset(cpu as usize);
        (0..Set::count())
            .any(|c| rest.is_set(c).unwrap_or(false))
            .then_some(CpuSet(rest))
    }

    /// Puts the thread `tid` (`None`: the calling thread) on these CPUs.
    pub fn apply(&self, tid: Option<Pid>) -> bool {
        sched_setaffinity(tid.unwrap_or(Pid::from_raw(0)), &self.0).is_ok()
    }
}
