//! kysod absent, dying and coming back; blocked waiters and C_Finalize; parallel callers.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use kyso_proto::{Call, Reply};

use super::fake_daemon::{standard, FakeDaemon};
use super::{assert_rv, serial, Initialised, TestDir};
use crate::*;

/// "Fails fast": far below a second; generous for a loaded CI machine.
const FAST: Duration = Duration::from_millis(250);

#[track_caller]
fn fast(what: &str, rv: impl FnOnce() -> CK_RV, want: CK_RV) {
    let start = Instant::now();
    assert_rv(rv(), want);
    assert!(start.elapsed() < FAST, "{what} took {:?}", start.elapsed());
}

#[test]
fn without_a_daemon_calls_fail_fast_and_slot_lists_are_empty() {
    let _serial = serial();
    let dir = TestDir::new();
    let start = Instant::now();
    let _init = Initialised::at(&dir.socket());
    assert!(start.elapsed() < FAST, "C_Initialize waits for nobody");

    let mut count: CK_ULONG = 9;
    fast(
        "C_GetSlotList",
        || unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    assert_eq!(count, 0);
    let mut slot_info = CK_SLOT_INFO::default();
    fast(
        "C_GetSlotInfo",
        || unsafe { C_GetSlotInfo(1, &mut slot_info) },
        CKR_DEVICE_ERROR,
    );
    let mut token_info = CK_TOKEN_INFO::default();
    fast(
        "C_GetTokenInfo",
        || unsafe { C_GetTokenInfo(1, &mut token_info) },
        CKR_TOKEN_NOT_PRESENT,
    );
    let mut session = 0;
    fast(
        "C_OpenSession",
        || unsafe { C_OpenSession(1, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut session) },
        CKR_TOKEN_NOT_PRESENT,
    );
    let mut info = CK_SESSION_INFO::default();
    fast(
        "C_GetSessionInfo",
        || unsafe { C_GetSessionInfo(1, &mut info) },
        CKR_DEVICE_REMOVED,
    );
    fast("C_Logout", || unsafe { C_Logout(1) }, CKR_DEVICE_REMOVED);
    let mut slot = 0;
    fast(
        "C_WaitForSlotEvent",
        || unsafe { C_WaitForSlotEvent(0, &mut slot, ptr::null_mut()) },
        CKR_FUNCTION_FAILED,
    );
    let mut lib_info = CK_INFO::default();
    fast("C_GetInfo", || unsafe { C_GetInfo(&mut lib_info) }, CKR_OK);
}

fn default_sigpipe() -> libc::sighandler_t {
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) }
}

#[test]
fn a_dying_daemon_gives_errors_not_sigpipe_and_a_new_one_is_found_again() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), |call| match call {
        Call::GetSessionInfo { session: 42 } => (CKR_OK, standard(call).1),
        Call::GetSessionInfo { .. } => (CKR_SESSION_HANDLE_INVALID, Reply::None),
        other => standard(other),
    });
    let _init = Initialised::at(&dir.socket());
    let mut session = 0;
    assert_rv(
        unsafe { C_OpenSession(1, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut session) },
        CKR_OK,
    );
    let instance = daemon.hellos()[0].instance;

    // With SIGPIPE at its default a write to the dead daemon would kill this test process,
    // as it would kill a C application that never ignored the signal.
    let previous = default_sigpipe();
    drop(daemon);
    let mut info = CK_SESSION_INFO::default();
    fast(
        "C_GetSessionInfo",
        || unsafe { C_GetSessionInfo(session, &mut info) },
        CKR_DEVICE_REMOVED,
    );
    fast(
        "C_GetSessionInfo again",
        || unsafe { C_GetSessionInfo(session, &mut info) },
        CKR_DEVICE_REMOVED,
    );
    let mut data = *b"data";
    let mut len: CK_ULONG = 0;
    fast(
        "C_Sign",
        || unsafe { C_Sign(session, data.as_mut_ptr(), 4, ptr::null_mut(), &mut len) },
        CKR_DEVICE_REMOVED,
    );
    let mut count: CK_ULONG = 0;
    fast(
        "C_GetSlotList",
        || unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    assert_eq!(count, 0);
    unsafe { libc::signal(libc::SIGPIPE, previous) };

    // kysod is back (socket activation, a restart): slot queries reconnect, old sessions are
    // unknown to the new daemon, new ones work.
    let daemon = FakeDaemon::start(&dir.socket(), |call| match call {
        Call::GetSessionInfo { session: 43 } => (CKR_OK, standard(call).1),
        Call::GetSessionInfo { .. } => (CKR_SESSION_HANDLE_INVALID, Reply::None),
        Call::OpenSession { .. } => (CKR_OK, Reply::Handle(43)),
        other => standard(other),
    });
    fast(
        "C_GetSlotList",
        || unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    assert_eq!(count, 3);
    assert_rv(
        unsafe { C_GetSessionInfo(session, &mut info) },
        CKR_SESSION_HANDLE_INVALID,
    );
    assert_rv(
        unsafe { C_OpenSession(1, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut session) },
        CKR_OK,
    );
    assert_rv(unsafe { C_GetSessionInfo(session, &mut info) }, CKR_OK);
    assert!(daemon.hellos().iter().all(|h| h.instance == instance));
}

#[test]
fn session_calls_do_not_reconnect_but_slot_queries_do() {
    let _serial = serial();
    let dir = TestDir::new();
    let _init = Initialised::at(&dir.socket());
    let daemon = FakeDaemon::start(&dir.socket(), standard);
    let mut info = CK_SESSION_INFO::default();
    assert_rv(
        unsafe { C_GetSessionInfo(1, &mut info) },
        CKR_DEVICE_REMOVED,
    );
    assert!(
        daemon.hellos().is_empty(),
        "a session call never reconnects"
    );
    let mut count: CK_ULONG = 0;
    assert_rv(
        unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    assert_eq!((count, daemon.hellos().len()), (3, 1));
    assert_rv(unsafe { C_GetSessionInfo(1, &mut info) }, CKR_OK);
}

#[test]
fn a_daemon_restarted_while_the_application_was_idle_is_found_on_the_next_slot_query() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), standard);
    let _init = Initialised::at(&dir.socket());
    let mut count: CK_ULONG = 0;
    assert_rv(
        unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    drop(daemon);
    // The pool still holds the old connection; nobody has noticed the restart yet.
    let daemon = FakeDaemon::start(&dir.socket(), standard);
    count = 0;
    fast(
        "C_GetSlotList",
        || unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    assert_eq!(count, 3, "one fresh connection replaces the dead idle one");
    assert_eq!(daemon.calls().len(), 1);
}

/// A daemon that holds blocking slot-event waits until released (or ten seconds pass).
fn holding_daemon(dir: &TestDir, released: Arc<AtomicBool>) -> FakeDaemon {
    FakeDaemon::start(&dir.socket(), move |call| match call {
        Call::WaitForSlotEvent { block: true } => {
            let until = Instant::now() + Duration::from_secs(10);
            while !released.load(Ordering::SeqCst) && Instant::now() < until {
                thread::sleep(Duration::from_millis(5));
            }
            (CKR_OK, Reply::Slot(7))
        }
        other => standard(other),
    })
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_blocked_waiter_holds_up_no_one_and_gets_its_event() {
    let _serial = serial();
    let dir = TestDir::new();
    let released = Arc::new(AtomicBool::new(false));
    let daemon = holding_daemon(&dir, released.clone());
    let _init = Initialised::at(&dir.socket());

    let waiter = thread::spawn(|| {
        let mut slot = 0;
        let rv = unsafe { C_WaitForSlotEvent(0, &mut slot, ptr::null_mut()) };
        (rv, slot)
    });
    wait_until("the wait to reach kysod", || {
        daemon
            .calls()
            .iter()
            .any(|(_, c)| *c == Call::WaitForSlotEvent { block: true })
    });
    let mut count: CK_ULONG = 0;
    fast(
        "C_GetSlotList beside a waiter",
        || unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    let mut slot = 0;
    fast(
        "non-blocking wait",
        || unsafe { C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, ptr::null_mut()) },
        CKR_NO_EVENT,
    );
    released.store(true, Ordering::SeqCst);
    assert_eq!(waiter.join().unwrap(), (CKR_OK, 7));
}

#[test]
fn finalize_wakes_a_blocked_waiter() {
    let _serial = serial();
    let dir = TestDir::new();
    let released = Arc::new(AtomicBool::new(false));
    let daemon = holding_daemon(&dir, released.clone());
    let init = Initialised::at(&dir.socket());

    let waiter = thread::spawn(|| {
        let mut slot = 0;
        let rv = unsafe { C_WaitForSlotEvent(0, &mut slot, ptr::null_mut()) };
        (rv, Instant::now())
    });
    wait_until("the wait to reach kysod", || {
        daemon
            .calls()
            .iter()
            .any(|(_, c)| *c == Call::WaitForSlotEvent { block: true })
    });
    let finalized = Instant::now();
    drop(init);
    let (rv, woke) = waiter.join().unwrap();
    assert_rv(rv, CKR_CRYPTOKI_NOT_INITIALIZED);
    assert!(woke.duration_since(finalized) < FAST);
    released.store(true, Ordering::SeqCst);
}

#[test]
fn parallel_callers_are_not_serialised() {
    const THREADS: usize = 8;
    let _serial = serial();
    let dir = TestDir::new();
    // Each GetSessionInfo is answered only once all THREADS calls are inside the daemon at
    // the same time, which cannot happen if the shim sends them one after another.
    let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
    let passed = Arc::new(AtomicUsize::new(0));
    let _daemon = {
        let (gate, passed) = (gate.clone(), passed.clone());
        FakeDaemon::start(&dir.socket(), move |call| match call {
            Call::GetSessionInfo { .. } => {
                let (count, all_in) = &*gate;
                let mut count = count.lock().unwrap();
                *count += 1;
                all_in.notify_all();
                let (count, timeout) = all_in
                    .wait_timeout_while(count, Duration::from_secs(5), |n| *n < THREADS)
                    .unwrap();
                drop(count);
                if timeout.timed_out() {
                    return (CKR_FUNCTION_FAILED, Reply::None);
                }
                passed.fetch_add(1, Ordering::SeqCst);
                standard(call)
            }
            other => standard(other),
        })
    };
    let _init = Initialised::at(&dir.socket());
    let results: Vec<CK_RV> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                s.spawn(move || {
                    let mut info = CK_SESSION_INFO::default();
                    unsafe { C_GetSessionInfo(i as CK_SESSION_HANDLE, &mut info) }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results, [CKR_OK; THREADS]);
    assert_eq!(passed.load(Ordering::SeqCst), THREADS);
}

/// Not a pass/fail test: `cargo test -p kyso-pkcs11 --release -- --ignored --nocapture
/// round_trip` prints the cost of a trivial call through the shim and the fake daemon.
#[test]
#[ignore]
fn round_trip_latency() {
    let _serial = serial();
    let dir = TestDir::new();
    let _daemon = FakeDaemon::start(&dir.socket(), standard);
    let _init = Initialised::at(&dir.socket());
    let mut info = CK_SESSION_INFO::default();
    for _ in 0..1000 {
        unsafe { C_GetSessionInfo(1, &mut info) };
    }
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        assert_rv(unsafe { C_GetSessionInfo(1, &mut info) }, CKR_OK);
    }
    println!("C_GetSessionInfo round trip: {:?}", start.elapsed() / n);
}
