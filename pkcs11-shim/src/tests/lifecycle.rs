//! `C_Initialize` / `C_Finalize` rules, the per-initialisation instance, and fork.

use std::ffi::c_void;
use std::ptr;

use cryptoki_sys::*;
use kyso_proto::Call;

use super::fake_daemon::{standard, FakeDaemon};
use super::{assert_rv, serial, Initialised, TestDir};
use crate::*;

fn init_with(args: &mut CK_C_INITIALIZE_ARGS) -> CK_RV {
    unsafe { C_Initialize((args as *mut CK_C_INITIALIZE_ARGS).cast()) }
}

fn finalize() -> CK_RV {
    unsafe { C_Finalize(ptr::null_mut()) }
}

unsafe extern "C" fn create_mutex(_: *mut *mut c_void) -> CK_RV {
    CKR_OK
}
unsafe extern "C" fn mutex_op(_: *mut c_void) -> CK_RV {
    CKR_OK
}

#[test]
fn initialize_and_finalize_are_guarded() {
    let _serial = serial();
    let dir = TestDir::new();
    let _daemon = FakeDaemon::start(&dir.socket(), standard);
    std::env::set_var("KYSO_SOCKET", dir.socket());

    let mut count: CK_ULONG = 0;
    assert_rv(
        unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_CRYPTOKI_NOT_INITIALIZED,
    );
    assert_rv(finalize(), CKR_CRYPTOKI_NOT_INITIALIZED);

    assert_rv(unsafe { C_Initialize(ptr::null_mut()) }, CKR_OK);
    assert_rv(
        unsafe { C_Initialize(ptr::null_mut()) },
        CKR_CRYPTOKI_ALREADY_INITIALIZED,
    );
    let mut reserved = 0u8;
    assert_rv(
        unsafe { C_Finalize((&mut reserved as *mut u8).cast()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    assert_rv(finalize(), CKR_OK);
    assert_rv(finalize(), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(
        unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_CRYPTOKI_NOT_INITIALIZED,
    );
}

#[test]
fn initialize_arguments_are_checked() {
    let _serial = serial();
    let dir = TestDir::new();
    let _daemon = FakeDaemon::start(&dir.socket(), standard);
    std::env::set_var("KYSO_SOCKET", dir.socket());

    let mut args = CK_C_INITIALIZE_ARGS {
        flags: CKF_OS_LOCKING_OK,
        ..CK_C_INITIALIZE_ARGS::default()
    };
    assert_rv(init_with(&mut args), CKR_OK);
    assert_rv(finalize(), CKR_OK);

    // Mutex callbacks without CKF_OS_LOCKING_OK: kyso uses its own locks all the same.
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: Some(create_mutex),
        DestroyMutex: Some(mutex_op),
        LockMutex: Some(mutex_op),
        UnlockMutex: Some(mutex_op),
        flags: 0,
        pReserved: ptr::null_mut(),
    };
    assert_rv(init_with(&mut args), CKR_OK);
    assert_rv(finalize(), CKR_OK);

    args.UnlockMutex = None;
    assert_rv(init_with(&mut args), CKR_ARGUMENTS_BAD);

    let mut reserved = 0u8;
    let mut args = CK_C_INITIALIZE_ARGS {
        pReserved: (&mut reserved as *mut u8).cast(),
        ..CK_C_INITIALIZE_ARGS::default()
    };
    assert_rv(init_with(&mut args), CKR_ARGUMENTS_BAD);
    assert_rv(finalize(), CKR_CRYPTOKI_NOT_INITIALIZED);
}

#[test]
fn connections_of_one_initialisation_share_an_instance() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), standard);
    let first = {
        let _init = Initialised::at(&dir.socket());
        let hellos = daemon.hellos();
        assert_eq!(
            hellos.len(),
            1,
            "C_Initialize opens the connection that anchors the client"
        );
        assert_eq!(hellos[0].version, kyso_proto::PROTOCOL_VERSION);
        // Parallel calls need more connections; they present the same instance.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mut info = CK_SESSION_INFO::default();
                    for _ in 0..20 {
                        assert_rv(unsafe { C_GetSessionInfo(1, &mut info) }, CKR_OK);
                    }
                });
            }
        });
        let instances: Vec<u64> = daemon.hellos().iter().map(|h| h.instance).collect();
        assert!(instances.iter().all(|&i| i == instances[0]));
        instances[0]
    };
    let _init = Initialised::at(&dir.socket());
    let last = daemon.hellos().last().unwrap().instance;
    assert_ne!(last, first, "a new C_Initialize is a new client");
}

#[test]
fn a_forked_child_must_initialise_again_and_never_uses_the_parents_connections() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), standard);
    let _init = Initialised::at(&dir.socket());
    let mut count: CK_ULONG = 0;
    assert_rv(
        unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    let parent = daemon.hellos()[0].instance;
    let parent_calls = daemon.calls().len();

    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // The child: report through the exit status only, and never return into the harness.
        let mut info = CK_SESSION_INFO::default();
        let mut status = 0;
        if unsafe { C_GetSessionInfo(1, &mut info) } != CKR_CRYPTOKI_NOT_INITIALIZED {
            status |= 1;
        }
        if unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) } != CKR_CRYPTOKI_NOT_INITIALIZED
        {
            status |= 2;
        }
        if finalize() != CKR_CRYPTOKI_NOT_INITIALIZED {
            status |= 4;
        }
        if unsafe { C_Initialize(ptr::null_mut()) } != CKR_OK {
            status |= 8;
        }
        if unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) } != CKR_OK || count != 3 {
            status |= 16;
        }
        if finalize() != CKR_OK {
            status |= 32;
        }
        unsafe { libc::_exit(status) };
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status));
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child checks failed (bit mask)"
    );

    let calls = daemon.calls();
    let from_parent = calls.iter().filter(|(i, _)| *i == parent).count();
    assert_eq!(
        from_parent, parent_calls,
        "the child never talked on the parent's client"
    );
    let child: Vec<_> = calls.iter().filter(|(i, _)| *i != parent).collect();
    assert!(matches!(child.as_slice(), [(_, Call::GetSlotList { .. })]));

    // The parent is unaffected.
    assert_rv(
        unsafe { C_GetSlotList(0, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
}
