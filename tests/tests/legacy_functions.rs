//! The legacy parallel-function calls answer as PKCS#11 says: `C_GetFunctionStatus` and
//! `C_CancelFunction` return `CKR_FUNCTION_NOT_PARALLEL`, through the shim as from SoftHSM2
//! itself, and never reach kysod's tokens.

use cryptoki_sys::{CKR_CRYPTOKI_NOT_INITIALIZED, CKR_FUNCTION_NOT_PARALLEL, CK_RV};
use kyso_tests::{shim_path, Daemon, Fixture, Module, RawModule};

/// `C_GetFunctionStatus` and `C_CancelFunction` on `session`.
fn legacy(raw: &RawModule, session: u64) -> [CK_RV; 2] {
    let list = raw.list();
    let status = list.C_GetFunctionStatus.expect("C_GetFunctionStatus");
    let cancel = list.C_CancelFunction.expect("C_CancelFunction");
    // SAFETY: both take a session handle only, which they may refuse.
    unsafe { [status(session), cancel(session)] }
}

#[test]
fn legacy_parallel_functions_are_not_parallel() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let softhsm = Module::softhsm(&fx);
    let direct = softhsm.session(fx.serial_a());
    assert_eq!(
        legacy(softhsm.raw(), direct.handle()),
        [CKR_FUNCTION_NOT_PARALLEL; 2],
        "SoftHSM2"
    );

    let shim = Module::shim(&daemon);
    let s = shim.session(fx.serial_a());
    assert_eq!(
        legacy(shim.raw(), s.handle()),
        [CKR_FUNCTION_NOT_PARALLEL; 2]
    );
    // Still a working session afterwards.
    assert!(s.get_session_info().is_ok());
}

#[test]
fn legacy_functions_need_an_initialised_library() {
    let raw = RawModule::load(&shim_path());
    assert_eq!(legacy(&raw, 1), [CKR_CRYPTOKI_NOT_INITIALIZED; 2]);
}
