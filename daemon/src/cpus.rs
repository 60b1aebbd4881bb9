//! Which CPUs kysod's threads run on: a connection's thread follows its caller's CPU (see
//! `server`), and the thread preparing signatures keeps off the CPU of the thread that hands
//! it work (see `prepared`).

use std::sync::OnceLock;

/// A set of CPUs.
#[derive(Clone, Copy)]
pub struct CpuSet(libc::cpu_set_t);

impl CpuSet {
    /// The CPUs the process may run on: its main thread's set, which kysod never narrows (a
    /// thread started by a connection's thread would otherwise inherit one CPU).
    pub fn of_process() -> Option<CpuSet> {
        static PROCESS: OnceLock<Option<CpuSet>> = OnceLock::new();
        *PROCESS.get_or_init(|| {
            // SAFETY: cpu_set_t is plain data, filled in by the call; the pid names the main
            // thread.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                (libc::sched_getaffinity(
                    libc::getpid(),
                    std::mem::size_of::<libc::cpu_set_t>(),
                    &mut set,
                ) == 0)
                    .then_some(CpuSet(set))
            }
        })
    }

    fn in_range(cpu: u32) -> Option<usize> {
        let cpu = cpu as usize;
        (cpu < libc::CPU_SETSIZE as usize).then_some(cpu)
    }

    pub fn contains(&self, cpu: u32) -> bool {
        // SAFETY: the index is below CPU_SETSIZE.
        Self::in_range(cpu).is_some_and(|c| unsafe { libc::CPU_ISSET(c, &self.0) })
    }

    /// The set of `cpu` alone.
    pub fn only(cpu: u32) -> Option<CpuSet> {
        let c = Self::in_range(cpu)?;
        // SAFETY: `c` is below CPU_SETSIZE; cpu_set_t is plain data.
        unsafe {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(c, &mut one);
            Some(CpuSet(one))
        }
    }

    /// This set without `cpu`, unless that leaves it empty.
    pub fn without(&self, cpu: u32) -> Option<CpuSet> {
        let mut rest = *self;
        if let Some(c) = Self::in_range(cpu) {
            // SAFETY: `c` is below CPU_SETSIZE.
            unsafe { libc::CPU_CLR(c, &mut rest.0) };
        }
        // SAFETY: plain data.
        (unsafe { libc::CPU_COUNT(&rest.0) } > 0).then_some(rest)
    }

    /// Puts the thread `tid` (0: the calling thread) on these CPUs.
    pub fn apply(&self, tid: libc::pid_t) -> bool {
        // SAFETY: a valid cpu_set_t; the call acts on one thread of this process.
        unsafe {
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &self.0) == 0
        }
    }
}

/// The CPU the calling thread runs on now.
pub fn current() -> Option<u32> {
    // SAFETY: no preconditions.
    u32::try_from(unsafe { libc::sched_getcpu() }).ok()
}

/// The calling thread's id.
pub fn thread_id() -> libc::pid_t {
    // SAFETY: no preconditions.
    unsafe { libc::gettid() }
}
