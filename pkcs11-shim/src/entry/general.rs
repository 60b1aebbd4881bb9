//! Library-wide functions: `C_Initialize`, `C_Finalize`, `C_GetInfo`, `C_WaitForSlotEvent`.

use std::ffi::c_void;

use cryptoki_sys::{
    CKF_DONT_BLOCK, CK_C_INITIALIZE_ARGS, CK_FLAGS, CK_INFO, CK_RV, CK_SLOT_ID, CK_VERSION,
};
use kyso_proto::{Call, Reply};

use super::{entry, guard, reply};
use crate::error::{Error, Result};
use crate::{convert, ffi, state};

/// `C_Initialize`. NULL arguments, `CKF_OS_LOCKING_OK` and application mutex callbacks are all
/// accepted: kyso always uses its own OS locks and never calls the callbacks.
///
/// # Safety
/// `init_args` is NULL or points at a `CK_C_INITIALIZE_ARGS`.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_Initialize(init_args: *mut c_void) -> CK_RV {
    guard(|| {
        // SAFETY: PKCS#11 makes a non-NULL pInitArgs point at a CK_C_INITIALIZE_ARGS.
        if let Some(args) = unsafe { ffi::optional(init_args.cast::<CK_C_INITIALIZE_ARGS>()) }? {
            check_init_args(args)?;
        }
        state::initialize()
    })
}

fn check_init_args(args: &CK_C_INITIALIZE_ARGS) -> Result<()> {
    if !args.pReserved.is_null() {
        return Err(Error::ArgumentsBad);
    }
    let given = [
        args.CreateMutex.is_some(),
        args.DestroyMutex.is_some(),
        args.LockMutex.is_some(),
        args.UnlockMutex.is_some(),
    ];
    // All four callbacks or none (PKCS#11 §5.4). Whether CKF_OS_LOCKING_OK is set or not,
    // OS locking is what the shim does, which the standard allows.
    if given.contains(&true) && given.contains(&false) {
        return Err(Error::ArgumentsBad);
    }
    Ok(())
}

/// `C_Finalize`: closes every connection to kysod (which ends this client's sessions there)
/// and wakes threads blocked in `C_WaitForSlotEvent`.
///
/// # Safety
/// Never dereferences `reserved`.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    guard(|| {
        if !reserved.is_null() {
            return Err(Error::ArgumentsBad);
        }
        state::finalize()
    })
}

/// `C_GetInfo` of the 3.0 function list: the same answer with cryptoki version 3.0. Not
/// exported by name (the exported `C_GetInfo` is the 2.40 one).
///
/// # Safety
/// `info` is NULL or points at room for a `CK_INFO`.
pub(crate) unsafe extern "C" fn get_info_v3(info: *mut CK_INFO) -> CK_RV {
    guard(|| {
        state::client()?;
        // SAFETY: pInfo points at room for a CK_INFO (PKCS#11).
        let out = unsafe { ffi::Out::new(info) }?;
        out.set(convert::library_info(CK_VERSION { major: 3, minor: 0 }));
        Ok(())
    })
}

entry! {
    /// `C_GetInfo` of the 2.40 function list, answered locally.
    fn C_GetInfo(info: *mut CK_INFO) |_client| {
        // SAFETY: pInfo points at room for a CK_INFO (PKCS#11).
        let out = unsafe { ffi::Out::new(info) }?;
        out.set(convert::library_info(CK_VERSION { major: 2, minor: 40 }));
        Ok(())
    }

    /// `C_WaitForSlotEvent`. With `CKF_DONT_BLOCK` an ordinary call (`CKR_NO_EVENT` when
    /// nothing happened); without, the thread waits on a connection of its own until a slot
    /// changes or `C_Finalize` wakes it (`CKR_CRYPTOKI_NOT_INITIALIZED`).
    fn C_WaitForSlotEvent(flags: CK_FLAGS, slot: *mut CK_SLOT_ID, reserved: *mut c_void) |client| {
        if !reserved.is_null() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: pSlot points at room for a CK_SLOT_ID (PKCS#11).
        let out = unsafe { ffi::Out::new(slot) }?;
        let answer = if flags & CKF_DONT_BLOCK != 0 {
            client.call(Call::WaitForSlotEvent { block: false })?
        } else {
            client.wait_for_slot_event()?
        };
        out.set(reply!(answer, Reply::Slot(s) => s)?);
        Ok(())
    }
}
