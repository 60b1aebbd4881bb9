//! Raw `CK_FUNCTION_LIST` calls, for the C-level semantics `cryptoki` hides: size queries,
//! too-small buffers, invalid handles.

use std::path::Path;
use std::ptr;

use cryptoki_sys::{
    CK_ATTRIBUTE, CK_ATTRIBUTE_TYPE, CK_FUNCTION_LIST, CK_MECHANISM, CK_MECHANISM_TYPE,
    CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_SESSION_INFO, CK_ULONG,
    CK_UNAVAILABLE_INFORMATION,
};

type GetFunctionList = unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV;

/// A module's function list, obtained through its own `C_GetFunctionList`. Loading the same
/// path as a [`cryptoki::context::Pkcs11`] gives the same library instance (and state).
pub struct RawModule {
    list: *const CK_FUNCTION_LIST,
    _lib: libloading::Library,
}

// SAFETY: the function list is immutable static data of the loaded library, which `_lib` keeps
// loaded; PKCS#11 modules initialised with CKF_OS_LOCKING_OK may be called from any thread.
unsafe impl Send for RawModule {}
// SAFETY: as above; nothing here is mutated after construction.
unsafe impl Sync for RawModule {}

/// One template entry after a raw `C_GetAttributeValue`: `ulValueLen` and the bytes written.
pub type AttributeResult = (CK_ULONG, Option<Vec<u8>>);

/// Result of a raw `C_Sign`/`C_SignFinal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSign {
    pub rv: CK_RV,
    /// `*pulSignatureLen` after the call.
    pub len: CK_ULONG,
    /// The signature, when a buffer was given and the call succeeded.
    pub signature: Option<Vec<u8>>,
}

macro_rules! func {
    ($self:ident, $name:ident) => {
        $self.list().$name.expect(concat!(
            stringify!($name),
            " missing from the function list"
        ))
    };
}

impl RawModule {
    /// Loads `path` and asks it for its function list.
    pub fn load(path: &Path) -> RawModule {
        // SAFETY: loading a PKCS#11 module runs its initialisers; the modules under test are
        // ours or SoftHSM2, which are meant to be dlopen()ed.
        let lib = unsafe { libloading::Library::new(path) }
            .unwrap_or_else(|e| panic!("dlopen {}: {e}", path.display()));
        let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: C_GetFunctionList has this signature in every PKCS#11 module; the symbol is
        // used while `lib` is alive.
        let rv = unsafe {
            let f = lib
                .get::<GetFunctionList>(b"C_GetFunctionList")
                .unwrap_or_else(|e| panic!("{}: C_GetFunctionList: {e}", path.display()));
            f(&mut list)
        };
        assert_eq!(rv, 0, "{}: C_GetFunctionList rv {rv:#x}", path.display());
        assert!(!list.is_null(), "C_GetFunctionList gave NULL");
        RawModule { list, _lib: lib }
    }

    /// The function list.
    pub fn list(&self) -> &CK_FUNCTION_LIST {
        // SAFETY: checked non-null at load; static data of a library we keep loaded.
        unsafe { &*self.list }
    }

    /// `C_GetAttributeValue` with one template entry per `(type, buffer)`: `None` asks for
    /// the length (NULL `pValue`), `Some(n)` passes an `n`-byte buffer. Returns the call's rv
    /// and, per entry, `ulValueLen` after the call and the bytes written (when a buffer was
    /// given and its length is not `CK_UNAVAILABLE_INFORMATION`).
    pub fn get_attribute_value(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        query: &[(CK_ATTRIBUTE_TYPE, Option<usize>)],
    ) -> (CK_RV, Vec<AttributeResult>) {
        let mut bufs: Vec<Option<Vec<u8>>> =
            query.iter().map(|(_, n)| n.map(|n| vec![0u8; n])).collect();
        let mut template: Vec<CK_ATTRIBUTE> = query
            .iter()
            .zip(bufs.iter_mut())
            .map(|((t, _), b)| CK_ATTRIBUTE {
                type_: *t,
                pValue: b
                    .as_mut()
                    .map_or(ptr::null_mut(), |b| b.as_mut_ptr().cast()),
                ulValueLen: b.as_ref().map_or(0, |b| b.len() as CK_ULONG),
            })
            .collect();
        let f = func!(self, C_GetAttributeValue);
        // SAFETY: every pValue is NULL or points to a live buffer of ulValueLen bytes.
        let rv = unsafe {
            f(
                session,
                object,
                template.as_mut_ptr(),
                template.len() as CK_ULONG,
            )
        };
        let out = template
            .iter()
            .zip(bufs)
            .map(|(a, b)| {
                let len = a.ulValueLen;
                let value = b.and_then(|mut b| {
                    if len == CK_UNAVAILABLE_INFORMATION || len as usize > b.len() {
                        None
                    } else {
                        b.truncate(len as usize);
                        Some(b)
                    }
                });
                (len, value)
            })
            .collect();
        (rv, out)
    }

    /// `C_SignInit` with a parameterless mechanism.
    pub fn sign_init(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let mut mech = CK_MECHANISM {
            mechanism,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        let f = func!(self, C_SignInit);
        // SAFETY: `mech` is a valid mechanism without parameters.
        unsafe { f(session, &mut mech, key) }
    }

    /// `C_Sign` with an output buffer of `out` bytes (`None`: NULL, a length query).
    pub fn sign(&self, session: CK_SESSION_HANDLE, data: &[u8], out: Option<usize>) -> RawSign {
        let mut buf = out.map(|n| vec![0u8; n]);
        let mut len = buf.as_ref().map_or(0, |b| b.len() as CK_ULONG);
        let f = func!(self, C_Sign);
        // SAFETY: data is read-only input of the given length (the C API takes a mutable
        // pointer but never writes through it); the output is NULL or a buffer of `len` bytes.
        let rv = unsafe {
            f(
                session,
                data.as_ptr() as *mut u8,
                data.len() as CK_ULONG,
                buf.as_mut().map_or(ptr::null_mut(), |b| b.as_mut_ptr()),
                &mut len,
            )
        };
        let signature = match buf {
            Some(mut b) if rv == 0 && len as usize <= b.len() => {
                b.truncate(len as usize);
                Some(b)
            }
            _ => None,
        };
        RawSign { rv, len, signature }
    }

    /// `C_GetSessionInfo`: the rv (and the info when it succeeded).
    pub fn get_session_info(&self, session: CK_SESSION_HANDLE) -> (CK_RV, Option<CK_SESSION_INFO>) {
        let mut info = CK_SESSION_INFO {
            slotID: 0,
            state: 0,
            flags: 0,
            ulDeviceError: 0,
        };
        let f = func!(self, C_GetSessionInfo);
        // SAFETY: `info` is a valid out-pointer.
        let rv = unsafe { f(session, &mut info) };
        (rv, (rv == 0).then_some(info))
    }

    /// `C_CloseSession`.
    pub fn close_session(&self, session: CK_SESSION_HANDLE) -> CK_RV {
        let f = func!(self, C_CloseSession);
        // SAFETY: plain value arguments.
        unsafe { f(session) }
    }

    /// `C_GenerateRandom` of `n` bytes.
    pub fn generate_random(&self, session: CK_SESSION_HANDLE, n: usize) -> (CK_RV, Vec<u8>) {
        let mut buf = vec![0u8; n];
        let f = func!(self, C_GenerateRandom);
        // SAFETY: `buf` has `n` writable bytes.
        let rv = unsafe { f(session, buf.as_mut_ptr(), n as CK_ULONG) };
        (rv, buf)
    }

    /// `C_GetSlotList(tokenPresent)` by the two-call idiom: rv and slot IDs.
    pub fn get_slot_list(&self, token_present: bool) -> (CK_RV, Vec<u64>) {
        let f = func!(self, C_GetSlotList);
        let mut n: CK_ULONG = 0;
        // SAFETY: NULL list with a valid count pointer is the size query.
        let rv = unsafe { f(token_present as u8, ptr::null_mut(), &mut n) };
        if rv != 0 {
            return (rv, Vec::new());
        }
        let mut slots = vec![0 as CK_ULONG; n as usize];
        // SAFETY: `slots` has room for `n` entries.
        let rv = unsafe { f(token_present as u8, slots.as_mut_ptr(), &mut n) };
        slots.truncate(n as usize);
        (rv, slots)
    }
}
