//! The system calls std does not offer in the form the shim needs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// This process's id, cached: every PKCS#11 call checks it (a forked child must not use its
/// parent's connections), and `getpid` is a system call each time, a few of them per
/// signature. A handler registered with `pthread_atfork` forgets the cached id in a forked
/// child, which then reads its own. (A child made by a raw `clone`, which runs no fork
/// handlers, is not told apart; such children exec or do not call into loaded libraries.)
pub(crate) fn pid() -> u32 {
    let pid = PID.load(Ordering::Acquire);
    if pid != 0 {
        return pid;
    }
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe as a fork
        // handler must be. glibc removes the handler when this library is unloaded.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
    });
    // Read after the handler is in place: a fork from now on clears what is stored here.
    let pid = std::process::id();
    PID.store(pid, Ordering::Release);
    pid
}

static PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn forget_pid() {
    PID.store(0, Ordering::Release);
}
