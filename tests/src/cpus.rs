//! Where threads run: the CPUs kysod's threads may use, and holding a test's thread to one.

use crate::Daemon;

/// The allowed-CPU list of kysod's connection threads (`Cpus_allowed_list`).
pub fn connection_cpus(daemon: &Daemon) -> Vec<String> {
    thread_cpus(daemon, "kysod-conn")
}

/// The allowed-CPU lists of kysod's threads named `name`.
pub fn thread_cpus(daemon: &Daemon, name: &str) -> Vec<String> {
    let pid = daemon.pid().expect("kysod pid");
    let mut lists = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let status =
            std::fs::read_to_string(task.expect("task").path().join("status")).unwrap_or_default();
        if !status.lines().any(|l| l == format!("Name:\t{name}")) {
            continue;
        }
        if let Some(list) = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:\t"))
        {
            lists.push(list.to_string());
        }
    }
    lists
}

/// The CPUs of a `Cpus_allowed_list` (`0-2,5`).
pub fn cpu_list(list: &str) -> Vec<usize> {
    list.split(',')
        .filter(|r| !r.is_empty())
        .flat_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            a.parse::<usize>().expect("a CPU")..=b.parse::<usize>().expect("a CPU")
        })
        .collect()
}

/// Holds the calling thread to the last CPU it may use; returns that CPU.
pub fn hold_to_last_cpu() -> usize {
    // SAFETY: cpu_set_t is plain data; the calls act on the calling thread only.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, size, &mut allowed), 0);
        let last = (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&c| libc::CPU_ISSET(c, &allowed))
            .expect("an allowed CPU");
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(last, &mut one);
        assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
        last
    }
}
