//! A PKCS#11 module for fault tests: SoftHSM2 (or the module named by
//! `KYSO_SLOW_MODULE_TARGET`) with one change. When the file named by `KYSO_SLOW_MODULE_GATE`
//! exists, the next `C_Sign` to arrive claims it (renames it to `<gate>.held`) and then waits
//! inside the module, as a wedged token would, until the test removes `<gate>.held` (or 60 s
//! pass); then it signs. Every other call goes straight to the real module, so a test can
//! check that one call stuck in a module stalls no other token, session or client.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cryptoki_sys::{
    CKR_ARGUMENTS_BAD, CKR_GENERAL_ERROR, CKR_OK, CK_BYTE_PTR, CK_FUNCTION_LIST,
    CK_FUNCTION_LIST_PTR_PTR, CK_RV, CK_SESSION_HANDLE, CK_ULONG, CK_ULONG_PTR,
};

const DEFAULT_TARGET: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Longest time a held call waits for its release.
const HOLD_LIMIT: Duration = Duration::from_secs(60);

struct Forwarder {
    /// The real module's function list.
    real: &'static CK_FUNCTION_LIST,
    /// The same list with `C_Sign` replaced: what applications get.
    ours: CK_FUNCTION_LIST,
    /// Kept loaded for the life of the process.
    _library: libloading::Library,
}

// SAFETY: the function lists are tables of function pointers, read-only after creation.
unsafe impl Send for Forwarder {}
// SAFETY: as above; nothing in them is mutated after `load`.
unsafe impl Sync for Forwarder {}

static FORWARDER: OnceLock<Option<Forwarder>> = OnceLock::new();

fn load() -> Option<Forwarder> {
    let target = std::env::var_os("KYSO_SLOW_MODULE_TARGET")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_TARGET.into());
    // SAFETY: loading a PKCS#11 module runs its initialisers, which such modules keep benign.
    let library = unsafe { libloading::Library::new(&target) }.ok()?;
    let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: the symbol has the PKCS#11 C_GetFunctionList signature; `list` is a valid out
    // pointer.
    let rv = unsafe {
        let get: libloading::Symbol<unsafe extern "C" fn(CK_FUNCTION_LIST_PTR_PTR) -> CK_RV> =
            library.get(b"C_GetFunctionList\0").ok()?;
        get(&mut list)
    };
    if rv != CKR_OK || list.is_null() {
        return None;
    }
    // SAFETY: the module returned a non-NULL list that lives as long as it stays loaded,
    // which is forever here (the library is kept in a static).
    let real: &'static CK_FUNCTION_LIST = unsafe { &*list };
    let mut ours = *real;
    ours.C_Sign = Some(held_sign);
    Some(Forwarder {
        real,
        ours,
        _library: library,
    })
}

fn forwarder() -> Option<&'static Forwarder> {
    FORWARDER.get_or_init(load).as_ref()
}

/// Waits while this call holds the gate (see the crate docs).
fn hold_if_gated() {
    let Some(gate) = std::env::var_os("KYSO_SLOW_MODULE_GATE").map(PathBuf::from) else {
        return;
    };
    let mut held = gate.clone().into_os_string();
    held.push(".held");
    let held = PathBuf::from(held);
    if std::fs::rename(&gate, &held).is_err() {
        return;
    }
    let start = Instant::now();
    while held.exists() && start.elapsed() < HOLD_LIMIT {
        std::thread::sleep(Duration::from_millis(10));
    }
}

extern "C" fn held_sign(
    session: CK_SESSION_HANDLE,
    data: CK_BYTE_PTR,
    data_len: CK_ULONG,
    signature: CK_BYTE_PTR,
    signature_len: CK_ULONG_PTR,
) -> CK_RV {
    let Some(sign) = forwarder().and_then(|f| f.real.C_Sign) else {
        return CKR_GENERAL_ERROR;
    };
    // Only a real signature waits: size queries (NULL output) pass at once.
    if !signature.is_null() && std::panic::catch_unwind(hold_if_gated).is_err() {
        return CKR_GENERAL_ERROR;
    }
    // SAFETY: the caller's arguments go unchanged to the real module's C_Sign.
    unsafe { sign(session, data, data_len, signature, signature_len) }
}

/// The module's entry point: the real module's function list with `C_Sign` held.
///
/// # Safety
/// `list` must be NULL or valid for writing one pointer (the PKCS#11 contract).
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    if list.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    match forwarder() {
        // SAFETY: `list` is non-NULL and valid for a write (caller contract); the table is
        // in a static and never freed.
        Some(f) => unsafe {
            *list = &f.ours as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST;
            CKR_OK
        },
        None => CKR_GENERAL_ERROR,
    }
}
