//! glibc's per-thread cache of freed memory, enlarged for the modules kysod calls.
//!
//! glibc keeps up to 7 freed chunks of each size per thread (its `tcache`) and hands the rest
//! back to the arena they came from, under that arena's lock. OpenSSL, under SoftHSM2, frees
//! dozens of chunks of one size at a time in every signature, and kysod's preparing thread
//! allocates the operations its connection threads free (see `prepared`): with the default,
//! most of those frees and the allocations after them went through the arenas, the threads
//! contending for their locks. Measured at ECDSA P-256, three runs of one benchmark with both
//! builds: kysod's and the application's CPU per signature 83–87 µs with 64 chunks against
//! 93–99 µs with 7 (2T 82–87 against 87–97 µs); 16 and 32 chunks made no difference, 48 some,
//! 64 to 1000 about the same.
//!
//! glibc reads the size from `GLIBC_TUNABLES` when a program starts and never after, so kysod
//! runs itself again, first thing, with `glibc.malloc.tcache_count` added. The process stays
//! the same (`exec`: same pid, same descriptors, systemd's sockets too). A size already set
//! in `GLIBC_TUNABLES` is left as it is. It runs its program by its path, not through
//! `/proc/self/exe`: the process's name (`comm`, what `ps`, `pgrep` and the journal show) is
//! taken from the path a program is run by, and would read `exe`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;

/// The glibc tunable, and the size kysod asks for.
const TUNABLE: &str = "glibc.malloc.tcache_count";
const CHUNKS: u32 = 64;

/// Runs kysod again with the larger thread cache, unless `GLIBC_TUNABLES` sets its size
/// already. Returns only when it does, or when kysod cannot run itself again (it then goes on
/// with glibc's default, and says so on stderr).
pub fn enlarge_thread_cache() {
    let Some(tunables) = with_thread_cache(std::env::var_os("GLIBC_TUNABLES").as_deref()) else {
        return;
    };
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(error) => {
            eprintln!("kysod: cannot find its own program ({error}); going on with glibc's default thread cache");
            return;
        }
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "kysod".into());
    let error = std::process::Command::new(program)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    eprintln!("kysod: cannot run again with glibc's larger thread cache ({error}); going on");
}

/// Logs the glibc tunables kysod runs with (after [`enlarge_thread_cache`]).
pub fn log_tunables() {
    let tunables = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
    tracing::debug!(tunables = %tunables.to_string_lossy(), "glibc tunables");
}

/// `GLIBC_TUNABLES` with the thread cache's size added, or `None` when it sets one already.
fn with_thread_cache(tunables: Option<&OsStr>) -> Option<OsString> {
    let tunables = tunables.unwrap_or_default();
    let named = tunables
        .as_bytes()
        .split(|&b| b == b':')
        .any(|t| t.split(|&b| b == b'=').next() == Some(TUNABLE.as_bytes()));
    if named {
        return None;
    }
    let mut out = tunables.to_os_string();
    if !out.is_empty() {
        out.push(":");
    }
    out.push(format!("{TUNABLE}={CHUNKS}"));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_is_added_to_what_is_there() {
        assert_eq!(
            with_thread_cache(None).unwrap(),
            "glibc.malloc.tcache_count=64"
        );
        assert_eq!(
            with_thread_cache(Some(OsStr::new(""))).unwrap(),
            "glibc.malloc.tcache_count=64"
        );
        assert_eq!(
            with_thread_cache(Some(OsStr::new("glibc.malloc.check=3"))).unwrap(),
            "glibc.malloc.check=3:glibc.malloc.tcache_count=64"
        );
    }

    #[test]
    fn a_size_already_set_is_kept() {
        for set in [
            "glibc.malloc.tcache_count=7",
            "glibc.malloc.check=3:glibc.malloc.tcache_count=0",
            "glibc.malloc.tcache_count",
        ] {
            assert_eq!(with_thread_cache(Some(OsStr::new(set))), None, "{set}");
        }
        // Another tunable whose name only starts alike does not count.
        assert!(with_thread_cache(Some(OsStr::new("glibc.malloc.tcache_count_x=1"))).is_some());
    }
}
