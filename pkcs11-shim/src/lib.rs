//! `libkyso_pkcs11.so`: the PKCS#11 module applications load. It keeps no token state of its
//! own; every call is forwarded to `kysod` over its Unix socket (kyso-proto's blocking
//! client), one request and its answer at a time per connection, with no runtime inside the
//! host application.
//!
//! Layers, outside in: this file (function lists and interfaces) → `entry` (the `C_*`
//! functions) → `ffi`/`convert` (application pointers ↔ values) → `client` (connection
//! pool, reconnects) → kyso-proto frames. `state` holds the per-process lifecycle.
//!
//! Behaviour worth knowing when kysod is not there:
//! - `C_Initialize` succeeds without a daemon; the socket is `KYSO_SOCKET`, else
//!   `$XDG_RUNTIME_DIR/kyso/kysod.sock`, else `/run/user/<uid>/kyso/kysod.sock`.
//! - `C_GetSlotList` then answers `CKR_OK` with no slots (an application shows "no token");
//!   `C_GetSlotInfo` → `CKR_DEVICE_ERROR`; token calls and `C_OpenSession` →
//!   `CKR_TOKEN_NOT_PRESENT`; session calls → `CKR_DEVICE_REMOVED`; a blocking
//!   `C_WaitForSlotEvent` → `CKR_FUNCTION_FAILED`. Nothing waits: a missing socket refuses at
//!   once, a dead one shows as the end of its stream. Never `SIGPIPE`: every frame is sent
//!   with `MSG_NOSIGNAL`.
//! - Slot, token, open-session and slot-event calls make one connect attempt each once the
//!   link broke; other calls fail at once. Sessions of a previous daemon are unknown to the
//!   next one (`CKR_SESSION_HANDLE_INVALID`).
//! - After `fork`, the child gets `CKR_CRYPTOKI_NOT_INITIALIZED` until it calls `C_Initialize`,
//!   and never talks on the parent's connections.

mod client;
mod convert;
mod entry;
mod error;
mod ffi;
mod os;
mod state;
#[cfg(test)]
mod tests;

use std::ffi::{c_void, CStr};

use cryptoki_sys::{
    CK_FLAGS, CK_FUNCTION_LIST, CK_FUNCTION_LIST_3_0, CK_INTERFACE, CK_RV, CK_ULONG, CK_UTF8CHAR,
    CK_VERSION,
};

pub use entry::crypto::*;
pub use entry::general::*;
pub use entry::object::*;
pub use entry::session::*;
pub use entry::slot::*;
pub use entry::unsupported::*;

use entry::guard;
use error::Error;

/// The common part of both function lists, with the `C_GetInfo` each one reports through.
macro_rules! function_list {
    ($list:ident { version: ($major:literal, $minor:literal), C_GetInfo: $get_info:expr $(, $extra:ident)* $(,)? }) => {
        $list {
            version: CK_VERSION { major: $major, minor: $minor },
            C_Initialize: Some(C_Initialize),
            C_Finalize: Some(C_Finalize),
            C_GetInfo: Some($get_info),
            C_GetFunctionList: Some(C_GetFunctionList),
            C_GetSlotList: Some(C_GetSlotList),
            C_GetSlotInfo: Some(C_GetSlotInfo),
            C_GetTokenInfo: Some(C_GetTokenInfo),
            C_GetMechanismList: Some(C_GetMechanismList),
            C_GetMechanismInfo: Some(C_GetMechanismInfo),
            C_InitToken: Some(C_InitToken),
            C_InitPIN: Some(C_InitPIN),
            C_SetPIN: Some(C_SetPIN),
            C_OpenSession: Some(C_OpenSession),
            C_CloseSession: Some(C_CloseSession),
            C_CloseAllSessions: Some(C_CloseAllSessions),
            C_GetSessionInfo: Some(C_GetSessionInfo),
            C_GetOperationState: Some(C_GetOperationState),
            C_SetOperationState: Some(C_SetOperationState),
            C_Login: Some(C_Login),
            C_Logout: Some(C_Logout),
            C_CreateObject: Some(C_CreateObject),
            C_CopyObject: Some(C_CopyObject),
            C_DestroyObject: Some(C_DestroyObject),
            C_GetObjectSize: Some(C_GetObjectSize),
            C_GetAttributeValue: Some(C_GetAttributeValue),
            C_SetAttributeValue: Some(C_SetAttributeValue),
            C_FindObjectsInit: Some(C_FindObjectsInit),
            C_FindObjects: Some(C_FindObjects),
            C_FindObjectsFinal: Some(C_FindObjectsFinal),
            C_EncryptInit: Some(C_EncryptInit),
            C_Encrypt: Some(C_Encrypt),
            C_EncryptUpdate: Some(C_EncryptUpdate),
            C_EncryptFinal: Some(C_EncryptFinal),
            C_DecryptInit: Some(C_DecryptInit),
            C_Decrypt: Some(C_Decrypt),
            C_DecryptUpdate: Some(C_DecryptUpdate),
            C_DecryptFinal: Some(C_DecryptFinal),
            C_DigestInit: Some(C_DigestInit),
            C_Digest: Some(C_Digest),
            C_DigestUpdate: Some(C_DigestUpdate),
            C_DigestKey: Some(C_DigestKey),
            C_DigestFinal: Some(C_DigestFinal),
            C_SignInit: Some(C_SignInit),
            C_Sign: Some(C_Sign),
            C_SignUpdate: Some(C_SignUpdate),
            C_SignFinal: Some(C_SignFinal),
            C_SignRecoverInit: Some(C_SignRecoverInit),
            C_SignRecover: Some(C_SignRecover),
            C_VerifyInit: Some(C_VerifyInit),
            C_Verify: Some(C_Verify),
            C_VerifyUpdate: Some(C_VerifyUpdate),
            C_VerifyFinal: Some(C_VerifyFinal),
            C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
            C_VerifyRecover: Some(C_VerifyRecover),
            C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
            C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
            C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
            C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
            C_GenerateKey: Some(C_GenerateKey),
            C_GenerateKeyPair: Some(C_GenerateKeyPair),
            C_WrapKey: Some(C_WrapKey),
            C_UnwrapKey: Some(C_UnwrapKey),
            C_DeriveKey: Some(C_DeriveKey),
            C_SeedRandom: Some(C_SeedRandom),
            C_GenerateRandom: Some(C_GenerateRandom),
            C_GetFunctionStatus: Some(C_GetFunctionStatus),
            C_CancelFunction: Some(C_CancelFunction),
            C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
            $($extra: Some($extra),)*
        }
    };
}

static FUNCTION_LIST: CK_FUNCTION_LIST = function_list!(CK_FUNCTION_LIST {
    version: (2, 40),
    C_GetInfo: C_GetInfo,
});

static FUNCTION_LIST_3_0: CK_FUNCTION_LIST_3_0 = function_list!(CK_FUNCTION_LIST_3_0 {
    version: (3, 0),
    C_GetInfo: get_info_v3,
    C_GetInterfaceList,
    C_GetInterface,
    C_LoginUser,
    C_SessionCancel,
    C_MessageEncryptInit,
    C_EncryptMessage,
    C_EncryptMessageBegin,
    C_EncryptMessageNext,
    C_MessageEncryptFinal,
    C_MessageDecryptInit,
    C_DecryptMessage,
    C_DecryptMessageBegin,
    C_DecryptMessageNext,
    C_MessageDecryptFinal,
    C_MessageSignInit,
    C_SignMessage,
    C_SignMessageBegin,
    C_SignMessageNext,
    C_MessageSignFinal,
    C_MessageVerifyInit,
    C_VerifyMessage,
    C_VerifyMessageBegin,
    C_VerifyMessageNext,
    C_MessageVerifyFinal,
});

const INTERFACE_NAME: &CStr = c"PKCS 11";

/// The interfaces offered, preferred first, with the version each list declares.
struct Interfaces([(CK_VERSION, CK_INTERFACE); 2]);

// SAFETY: the pointers inside point at immutable statics and are never written through.
unsafe impl Sync for Interfaces {}

static INTERFACES: Interfaces = Interfaces([
    (
        FUNCTION_LIST_3_0.version,
        CK_INTERFACE {
            pInterfaceName: INTERFACE_NAME.as_ptr().cast_mut().cast(),
            pFunctionList: &FUNCTION_LIST_3_0 as *const CK_FUNCTION_LIST_3_0 as *mut c_void,
            flags: 0,
        },
    ),
    (
        FUNCTION_LIST.version,
        CK_INTERFACE {
            pInterfaceName: INTERFACE_NAME.as_ptr().cast_mut().cast(),
            pFunctionList: &FUNCTION_LIST as *const CK_FUNCTION_LIST as *mut c_void,
            flags: 0,
        },
    ),
]);

/// `C_GetFunctionList`: the PKCS#11 2.40 function list. Needs no initialisation.
///
/// # Safety
/// `list` is NULL or points at room for a pointer.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    guard(|| {
        // SAFETY: ppFunctionList points at room for a pointer (PKCS#11).
        let out = unsafe { ffi::Out::new(list) }?;
        // The list is read-only; PKCS#11's signature just lacks the `const`.
        out.set(&FUNCTION_LIST as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST);
        Ok(())
    })
}

/// `C_GetInterfaceList` (PKCS#11 3.0): "PKCS 11" 3.0, then "PKCS 11" 2.40.
///
/// # Safety
/// `count` points at a `CK_ULONG`; a non-NULL `list` has room for `*count` interfaces.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_GetInterfaceList(
    list: *mut CK_INTERFACE,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard(|| {
        // SAFETY: pulCount points at a CK_ULONG; a non-NULL list has room for *pulCount entries.
        let out = unsafe { ffi::OutList::new(list, count) }?;
        let interfaces = INTERFACES.0.map(|(_, interface)| interface);
        out.fill(&interfaces)
    })
}

/// `C_GetInterface` (PKCS#11 3.0): the first interface matching the name (NULL: any), the
/// version (NULL: any) and carrying all requested `flags`; with NULL name and version that
/// is the 3.0 interface. No match is `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `version` is NULL or points at a `CK_VERSION`;
/// `interface` points at room for a pointer.
#[no_mangle]
#[allow(non_snake_case)]
pub unsafe extern "C" fn C_GetInterface(
    name: *mut CK_UTF8CHAR,
    version: *mut CK_VERSION,
    interface: *mut *mut CK_INTERFACE,
    flags: CK_FLAGS,
) -> CK_RV {
    guard(|| {
        // SAFETY: ppInterface points at room for a pointer (PKCS#11).
        let out = unsafe { ffi::Out::new(interface) }?;
        // SAFETY: a non-NULL pVersion points at a CK_VERSION (PKCS#11).
        let version = unsafe { ffi::optional(version.cast_const()) }?;
        let name_matches = name.is_null()
            // SAFETY: a non-NULL pInterfaceName is a NUL-terminated string (PKCS#11).
            || unsafe { CStr::from_ptr(name.cast_const().cast()) } == INTERFACE_NAME;
        let found = INTERFACES.0.iter().find(|(v, i)| {
            name_matches
                && version.is_none_or(|want| (want.major, want.minor) == (v.major, v.minor))
                && i.flags & flags == flags
        });
        let (_, found) = found.ok_or(Error::ArgumentsBad)?;
        out.set(found as *const CK_INTERFACE as *mut CK_INTERFACE);
        Ok(())
    })
}
