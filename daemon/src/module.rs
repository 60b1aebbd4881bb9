//! A vendor PKCS#11 module loaded into kysod: the one place in the daemon that calls C.
//!
//! The module is reached through its raw function list (`cryptoki-sys` types) rather than
//! `cryptoki`'s typed layer, because kysod forwards calls: attribute values, mechanism
//! parameters and output-buffer sizes must reach the module exactly as the application gave
//! them, so that size queries, `CKR_BUFFER_TOO_SMALL`, per-attribute results and vendor
//! mechanisms behave as they would in process.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::ptr;

use cryptoki_sys as ck;
use kyso_proto::mechanism::{Mechanism, MechanismParam};
use kyso_proto::{Attribute, AttributeQuery, AttributeValue, Operation, OutBuf, Ulong, MAX_FRAME};
use parking_lot::{Mutex, MutexGuard};

use crate::error::Rv;

/// Largest output buffer kysod allocates on behalf of one call: what fits in a reply frame.
const MAX_OUTPUT: usize = MAX_FRAME - 4096;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot load {path}: {source}")]
    Open {
        path: PathBuf,
        source: libloading::Error,
    },
    #[error("{path} has no C_GetFunctionList: {source}")]
    NoEntry {
        path: PathBuf,
        source: libloading::Error,
    },
    #[error("{path}: C_GetFunctionList failed with {rv}")]
    FunctionList { path: PathBuf, rv: Rv },
    #[error("{path}: C_Initialize failed with {rv}")]
    Initialize { path: PathBuf, rv: Rv },
}

/// A loaded, initialised PKCS#11 module.
pub struct Module {
    path: PathBuf,
    list: *const ck::CK_FUNCTION_LIST,
    /// Held around every call when the module cannot do its own locking.
    serial: Option<Mutex<()>>,
    // Keeps the code behind `list` mapped; dropped last.
    _library: libloading::Library,
}

// SAFETY: the function list is immutable after C_GetFunctionList, and the module was
// initialised for multi-threaded use (CKF_OS_LOCKING_OK) or every call is serialised.
unsafe impl Send for Module {}
// SAFETY: as above.
unsafe impl Sync for Module {}

/// Calls a function of the module's list, serialised if the module needs it.
macro_rules! ckcall {
    ($m:expr, $f:ident $(, $arg:expr)* $(,)?) => {{
        let _guard = $m.lock();
        // SAFETY: `list` points at the module's function list, valid while `_library` is loaded.
        match unsafe { (*$m.list).$f } {
            // SAFETY: the arguments follow the PKCS#11 signature of this function; buffers and
            // lengths are built together in this file.
            Some(f) => unsafe { f($($arg),*) },
            None => ck::CKR_FUNCTION_NOT_SUPPORTED,
        }
    }};
}

fn check(rv: ck::CK_RV) -> Result<(), Rv> {
    if rv == ck::CKR_OK {
        Ok(())
    } else {
        Err(Rv(rv))
    }
}

impl Module {
    /// Loads the module at `path` and initialises it for calls from several threads
    /// (`CKF_OS_LOCKING_OK`), or with every call serialised for a module that cannot lock.
    pub fn load(path: &Path) -> Result<Module, LoadError> {
        // SAFETY: loading a PKCS#11 module runs its initialisers; that is what loading a
        // module means, and the path comes from the administrator's configuration.
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|source| LoadError::Open {
                path: path.into(),
                source,
            })?;
        let mut list: *mut ck::CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: C_GetFunctionList has this signature in every PKCS#11 module.
        let rv = unsafe {
            let entry: libloading::Symbol<
                unsafe extern "C" fn(*mut *mut ck::CK_FUNCTION_LIST) -> ck::CK_RV,
            > = library
                .get(b"C_GetFunctionList\0")
                .map_err(|source| LoadError::NoEntry {
                    path: path.into(),
                    source,
                })?;
            entry(&mut list)
        };
        if rv != ck::CKR_OK || list.is_null() {
            return Err(LoadError::FunctionList {
                path: path.into(),
                rv: Rv(rv),
            });
        }
        let mut module = Module {
            path: path.into(),
            list,
            serial: None,
            _library: library,
        };
        let mut args = ck::CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: ck::CKF_OS_LOCKING_OK,
            pReserved: ptr::null_mut(),
        };
        let mut rv = ckcall!(module, C_Initialize, &mut args as *mut _ as *mut c_void);
        if rv == ck::CKR_CANT_LOCK {
            module.serial = Some(Mutex::new(()));
            rv = ckcall!(module, C_Initialize, ptr::null_mut());
        }
        match rv {
            ck::CKR_OK | ck::CKR_CRYPTOKI_ALREADY_INITIALIZED => Ok(module),
            rv => Err(LoadError::Initialize {
                path: path.into(),
                rv: Rv(rv),
            }),
        }
    }

    /// Whether kysod calls the module from one thread at a time (it cannot lock).
    pub fn serialised(&self) -> bool {
        self.serial.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> Option<MutexGuard<'_, ()>> {
        self.serial.as_ref().map(|m| m.lock())
    }

    pub fn slot_list(&self, token_present: bool) -> Result<Vec<ck::CK_SLOT_ID>, Rv> {
        let present = token_present as ck::CK_BBOOL;
        loop {
            let mut count: ck::CK_ULONG = 0;
            check(ckcall!(
                self,
                C_GetSlotList,
                present,
                ptr::null_mut(),
                &mut count
            ))?;
            let mut slots = vec![0; count as usize];
            match ckcall!(self, C_GetSlotList, present, slots.as_mut_ptr(), &mut count) {
                // Slots may appear between the two calls; ask again.
                ck::CKR_BUFFER_TOO_SMALL => continue,
                rv => check(rv)?,
            }
            slots.truncate(count as usize);
            return Ok(slots);
        }
    }

    pub fn slot_info(&self, slot: ck::CK_SLOT_ID) -> Result<ck::CK_SLOT_INFO, Rv> {
        // SAFETY: CK_SLOT_INFO is plain data; all-zero is a valid value.
        let mut info: ck::CK_SLOT_INFO = unsafe { std::mem::zeroed() };
        check(ckcall!(self, C_GetSlotInfo, slot, &mut info))?;
        Ok(info)
    }

    pub fn token_info(&self, slot: ck::CK_SLOT_ID) -> Result<ck::CK_TOKEN_INFO, Rv> {
        // SAFETY: CK_TOKEN_INFO is plain data; all-zero is a valid value.
        let mut info: ck::CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        check(ckcall!(self, C_GetTokenInfo, slot, &mut info))?;
        Ok(info)
    }

    pub fn mechanism_list(&self, slot: ck::CK_SLOT_ID) -> Result<Vec<Ulong>, Rv> {
        loop {
            let mut count: ck::CK_ULONG = 0;
            check(ckcall!(
                self,
                C_GetMechanismList,
                slot,
                ptr::null_mut(),
                &mut count
            ))?;
            let mut list = vec![0; count as usize];
            match ckcall!(
                self,
                C_GetMechanismList,
                slot,
                list.as_mut_ptr(),
                &mut count
            ) {
                ck::CKR_BUFFER_TOO_SMALL => continue,
                rv => check(rv)?,
            }
            list.truncate(count as usize);
            return Ok(list);
        }
    }

    pub fn mechanism_info(
        &self,
        slot: ck::CK_SLOT_ID,
        mechanism: Ulong,
    ) -> Result<ck::CK_MECHANISM_INFO, Rv> {
        let mut info = ck::CK_MECHANISM_INFO {
            ulMinKeySize: 0,
            ulMaxKeySize: 0,
            flags: 0,
        };
        check(ckcall!(
            self,
            C_GetMechanismInfo,
            slot,
            mechanism,
            &mut info
        ))?;
        Ok(info)
    }

    pub fn init_token(
        &self,
        slot: ck::CK_SLOT_ID,
        so_pin: Option<&[u8]>,
        label: &[u8; 32],
    ) -> Result<(), Rv> {
        let (pin, len) = pin_ptr(so_pin);
        check(ckcall!(
            self,
            C_InitToken,
            slot,
            pin,
            len,
            label.as_ptr() as *mut u8
        ))
    }

    pub fn init_pin(&self, session: ck::CK_SESSION_HANDLE, pin: Option<&[u8]>) -> Result<(), Rv> {
        let (pin, len) = pin_ptr(pin);
        check(ckcall!(self, C_InitPIN, session, pin, len))
    }

    pub fn set_pin(
        &self,
        session: ck::CK_SESSION_HANDLE,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<(), Rv> {
        let (old, old_len) = pin_ptr(old);
        let (new, new_len) = pin_ptr(new);
        check(ckcall!(self, C_SetPIN, session, old, old_len, new, new_len))
    }

    pub fn open_session(
        &self,
        slot: ck::CK_SLOT_ID,
        flags: Ulong,
    ) -> Result<ck::CK_SESSION_HANDLE, Rv> {
        let mut session = 0;
        check(ckcall!(
            self,
            C_OpenSession,
            slot,
            flags,
            ptr::null_mut(),
            None,
            &mut session
        ))?;
        Ok(session)
    }

    /// The session's state (`CKS_*`), which says whether the token is logged in.
    pub fn session_state(&self, session: ck::CK_SESSION_HANDLE) -> Result<Ulong, Rv> {
        // SAFETY: CK_SESSION_INFO is plain data; all-zero is a valid value.
        let mut info: ck::CK_SESSION_INFO = unsafe { std::mem::zeroed() };
        check(ckcall!(self, C_GetSessionInfo, session, &mut info))?;
        Ok(info.state)
    }

    pub fn close_session(&self, session: ck::CK_SESSION_HANDLE) -> Result<(), Rv> {
        check(ckcall!(self, C_CloseSession, session))
    }

    pub fn login(
        &self,
        session: ck::CK_SESSION_HANDLE,
        user: Ulong,
        pin: Option<&[u8]>,
    ) -> Result<(), Rv> {
        let (pin, len) = pin_ptr(pin);
        check(ckcall!(self, C_Login, session, user, pin, len))
    }

    pub fn logout(&self, session: ck::CK_SESSION_HANDLE) -> Result<(), Rv> {
        check(ckcall!(self, C_Logout, session))
    }

    pub fn create_object(
        &self,
        session: ck::CK_SESSION_HANDLE,
        template: &[Attribute],
    ) -> Result<Ulong, Rv> {
        let mut raw = RawTemplate::new(template)?;
        let mut object = 0;
        check(ckcall!(
            self,
            C_CreateObject,
            session,
            raw.ptr(),
            raw.len(),
            &mut object
        ))?;
        Ok(object)
    }

    pub fn copy_object(
        &self,
        session: ck::CK_SESSION_HANDLE,
        object: Ulong,
        template: &[Attribute],
    ) -> Result<Ulong, Rv> {
        let mut raw = RawTemplate::new(template)?;
        let mut copy = 0;
        check(ckcall!(
            self,
            C_CopyObject,
            session,
            object,
            raw.ptr(),
            raw.len(),
            &mut copy
        ))?;
        Ok(copy)
    }

    pub fn destroy_object(&self, session: ck::CK_SESSION_HANDLE, object: Ulong) -> Result<(), Rv> {
        check(ckcall!(self, C_DestroyObject, session, object))
    }

    pub fn object_size(&self, session: ck::CK_SESSION_HANDLE, object: Ulong) -> Result<Ulong, Rv> {
        let mut size = 0;
        check(ckcall!(self, C_GetObjectSize, session, object, &mut size))?;
        Ok(size)
    }

    /// `C_GetAttributeValue` with the application's own buffer shapes; returns the module's
    /// return value together with every attribute's result, which PKCS#11 fills in even when
    /// the call as a whole fails.
    pub fn get_attributes(
        &self,
        session: ck::CK_SESSION_HANDLE,
        object: Ulong,
        queries: &[AttributeQuery],
    ) -> (Rv, Vec<AttributeValue>) {
        let mut total = 0usize;
        let mut buffers: Vec<Option<Vec<u8>>> = Vec::with_capacity(queries.len());
        for q in queries {
            if is_array_attribute(q.kind) {
                return (Rv(ck::CKR_ATTRIBUTE_TYPE_INVALID), Vec::new());
            }
            buffers.push(q.len.map(|n| {
                let n = (n as usize).min(MAX_OUTPUT.saturating_sub(total));
                total += n;
                vec![0u8; n]
            }));
        }
        let mut raw: Vec<ck::CK_ATTRIBUTE> = queries
            .iter()
            .zip(buffers.iter_mut())
            .map(|(q, b)| match b {
                Some(b) => ck::CK_ATTRIBUTE {
                    type_: q.kind,
                    pValue: b.as_mut_ptr().cast(),
                    ulValueLen: b.len() as Ulong,
                },
                None => ck::CK_ATTRIBUTE {
                    type_: q.kind,
                    pValue: ptr::null_mut(),
                    ulValueLen: 0,
                },
            })
            .collect();
        let rv = ckcall!(
            self,
            C_GetAttributeValue,
            session,
            object,
            raw.as_mut_ptr(),
            raw.len() as Ulong
        );
        let values = raw
            .iter()
            .zip(buffers)
            .map(|(a, b)| {
                let len = a.ulValueLen;
                let value = b.and_then(|mut b| {
                    if len == ck::CK_UNAVAILABLE_INFORMATION || len as usize > b.len() {
                        None
                    } else {
                        b.truncate(len as usize);
                        Some(b)
                    }
                });
                AttributeValue { len, value }
            })
            .collect();
        (Rv(rv), values)
    }

    pub fn set_attributes(
        &self,
        session: ck::CK_SESSION_HANDLE,
        object: Ulong,
        template: &[Attribute],
    ) -> Result<(), Rv> {
        let mut raw = RawTemplate::new(template)?;
        check(ckcall!(
            self,
            C_SetAttributeValue,
            session,
            object,
            raw.ptr(),
            raw.len()
        ))
    }

    pub fn find_init(
        &self,
        session: ck::CK_SESSION_HANDLE,
        template: &[Attribute],
    ) -> Result<(), Rv> {
        let mut raw = RawTemplate::new(template)?;
        check(ckcall!(
            self,
            C_FindObjectsInit,
            session,
            raw.ptr(),
            raw.len()
        ))
    }

    pub fn find(&self, session: ck::CK_SESSION_HANDLE, max: usize) -> Result<Vec<Ulong>, Rv> {
        let mut found = vec![0; max];
        let mut count = 0;
        check(ckcall!(
            self,
            C_FindObjects,
            session,
            found.as_mut_ptr(),
            max as Ulong,
            &mut count
        ))?;
        found.truncate((count as usize).min(max));
        Ok(found)
    }

    pub fn find_final(&self, session: ck::CK_SESSION_HANDLE) -> Result<(), Rv> {
        check(ckcall!(self, C_FindObjectsFinal, session))
    }

    pub fn operation_init(
        &self,
        session: ck::CK_SESSION_HANDLE,
        op: Operation,
        mechanism: &Mechanism,
        key: Ulong,
    ) -> Result<(), Rv> {
        let mut mech = RawMechanism::new(mechanism)?;
        let m = mech.as_ptr();
        check(match op {
            Operation::Encrypt => ckcall!(self, C_EncryptInit, session, m, key),
            Operation::Decrypt => ckcall!(self, C_DecryptInit, session, m, key),
            Operation::Digest => ckcall!(self, C_DigestInit, session, m),
            Operation::Sign => ckcall!(self, C_SignInit, session, m, key),
            Operation::Verify => ckcall!(self, C_VerifyInit, session, m, key),
            Operation::SignRecover => ckcall!(self, C_SignRecoverInit, session, m, key),
            Operation::VerifyRecover => ckcall!(self, C_VerifyRecoverInit, session, m, key),
        })
    }

    /// Single-part `C_Encrypt`/`C_Decrypt`/`C_Digest`/`C_Sign`/`C_SignRecover`/`C_VerifyRecover`.
    pub fn operate(
        &self,
        session: ck::CK_SESSION_HANDLE,
        op: Operation,
        data: &[u8],
        out: OutBuf,
    ) -> Output {
        let input = data.as_ptr() as *mut u8;
        let n = data.len() as Ulong;
        Output::run(out, |buf, len| match op {
            Operation::Encrypt => ckcall!(self, C_Encrypt, session, input, n, buf, len),
            Operation::Decrypt => ckcall!(self, C_Decrypt, session, input, n, buf, len),
            Operation::Digest => ckcall!(self, C_Digest, session, input, n, buf, len),
            Operation::Sign => ckcall!(self, C_Sign, session, input, n, buf, len),
            Operation::SignRecover => ckcall!(self, C_SignRecover, session, input, n, buf, len),
            Operation::VerifyRecover => ckcall!(self, C_VerifyRecover, session, input, n, buf, len),
            Operation::Verify => ck::CKR_FUNCTION_NOT_SUPPORTED,
        })
    }

    /// `C_*Update`: encrypt and decrypt produce output, the others consume only.
    pub fn update(
        &self,
        session: ck::CK_SESSION_HANDLE,
        op: Operation,
        data: &[u8],
        out: OutBuf,
    ) -> Output {
        let input = data.as_ptr() as *mut u8;
        let n = data.len() as Ulong;
        match op {
            Operation::Encrypt => Output::run(out, |buf, len| {
                ckcall!(self, C_EncryptUpdate, session, input, n, buf, len)
            }),
            Operation::Decrypt => Output::run(out, |buf, len| {
                ckcall!(self, C_DecryptUpdate, session, input, n, buf, len)
            }),
            Operation::Digest => Output::rv(ckcall!(self, C_DigestUpdate, session, input, n)),
            Operation::Sign => Output::rv(ckcall!(self, C_SignUpdate, session, input, n)),
            Operation::Verify => Output::rv(ckcall!(self, C_VerifyUpdate, session, input, n)),
            Operation::SignRecover | Operation::VerifyRecover => {
                Output::rv(ck::CKR_FUNCTION_NOT_SUPPORTED)
            }
        }
    }

    /// `C_EncryptFinal`/`C_DecryptFinal`/`C_DigestFinal`/`C_SignFinal`.
    pub fn finish(&self, session: ck::CK_SESSION_HANDLE, op: Operation, out: OutBuf) -> Output {
        Output::run(out, |buf, len| match op {
            Operation::Encrypt => ckcall!(self, C_EncryptFinal, session, buf, len),
            Operation::Decrypt => ckcall!(self, C_DecryptFinal, session, buf, len),
            Operation::Digest => ckcall!(self, C_DigestFinal, session, buf, len),
            Operation::Sign => ckcall!(self, C_SignFinal, session, buf, len),
            _ => ck::CKR_FUNCTION_NOT_SUPPORTED,
        })
    }

    pub fn verify(
        &self,
        session: ck::CK_SESSION_HANDLE,
        data: &[u8],
        signature: &[u8],
    ) -> Result<(), Rv> {
        check(ckcall!(
            self,
            C_Verify,
            session,
            data.as_ptr() as *mut u8,
            data.len() as Ulong,
            signature.as_ptr() as *mut u8,
            signature.len() as Ulong
        ))
    }

    pub fn verify_final(&self, session: ck::CK_SESSION_HANDLE, signature: &[u8]) -> Result<(), Rv> {
        check(ckcall!(
            self,
            C_VerifyFinal,
            session,
            signature.as_ptr() as *mut u8,
            signature.len() as Ulong
        ))
    }

    pub fn digest_key(&self, session: ck::CK_SESSION_HANDLE, key: Ulong) -> Result<(), Rv> {
        check(ckcall!(self, C_DigestKey, session, key))
    }

    pub fn generate_key(
        &self,
        session: ck::CK_SESSION_HANDLE,
        mechanism: &Mechanism,
        template: &[Attribute],
    ) -> Result<Ulong, Rv> {
        let mut mech = RawMechanism::new(mechanism)?;
        let mut raw = RawTemplate::new(template)?;
        let mut key = 0;
        check(ckcall!(
            self,
            C_GenerateKey,
            session,
            mech.as_ptr(),
            raw.ptr(),
            raw.len(),
            &mut key
        ))?;
        Ok(key)
    }

    pub fn generate_key_pair(
        &self,
        session: ck::CK_SESSION_HANDLE,
        mechanism: &Mechanism,
        public: &[Attribute],
        private: &[Attribute],
    ) -> Result<(Ulong, Ulong), Rv> {
        let mut mech = RawMechanism::new(mechanism)?;
        let mut public = RawTemplate::new(public)?;
        let mut private = RawTemplate::new(private)?;
        let (mut pub_key, mut priv_key) = (0, 0);
        check(ckcall!(
            self,
            C_GenerateKeyPair,
            session,
            mech.as_ptr(),
            public.ptr(),
            public.len(),
            private.ptr(),
            private.len(),
            &mut pub_key,
            &mut priv_key
        ))?;
        Ok((pub_key, priv_key))
    }

    pub fn generate_random(
        &self,
        session: ck::CK_SESSION_HANDLE,
        len: usize,
    ) -> Result<Vec<u8>, Rv> {
        let mut out = vec![0u8; len];
        check(ckcall!(
            self,
            C_GenerateRandom,
            session,
            out.as_mut_ptr(),
            len as Ulong
        ))?;
        Ok(out)
    }

    pub fn seed_random(&self, session: ck::CK_SESSION_HANDLE, seed: &[u8]) -> Result<(), Rv> {
        check(ckcall!(
            self,
            C_SeedRandom,
            session,
            seed.as_ptr() as *mut u8,
            seed.len() as Ulong
        ))
    }
}

/// What an output-producing call gave back: its return value, the length it reported, and
/// the bytes when it wrote them.
pub struct Output {
    pub rv: Rv,
    pub len: Ulong,
    pub data: Option<Vec<u8>>,
}

impl Output {
    fn rv(rv: ck::CK_RV) -> Output {
        Output {
            rv: Rv(rv),
            len: 0,
            data: None,
        }
    }

    /// Runs `call` with a buffer shaped like the application's: none for a size query, else
    /// one of the application's size (capped at what a reply frame can hold).
    fn run(out: OutBuf, call: impl FnOnce(*mut u8, *mut Ulong) -> ck::CK_RV) -> Output {
        match out {
            None => {
                let mut len: Ulong = 0;
                let rv = call(ptr::null_mut(), &mut len);
                Output {
                    rv: Rv(rv),
                    len,
                    data: None,
                }
            }
            Some(n) => {
                let mut buf = vec![0u8; (n as usize).min(MAX_OUTPUT)];
                let mut len = buf.len() as Ulong;
                let rv = call(buf.as_mut_ptr(), &mut len);
                let data = (rv == ck::CKR_OK && len as usize <= buf.len()).then(|| {
                    buf.truncate(len as usize);
                    buf
                });
                Output {
                    rv: Rv(rv),
                    len,
                    data,
                }
            }
        }
    }
}

fn pin_ptr(pin: Option<&[u8]>) -> (*mut u8, Ulong) {
    match pin {
        Some(p) => (p.as_ptr() as *mut u8, p.len() as Ulong),
        None => (ptr::null_mut(), 0),
    }
}

/// Attribute types whose values are arrays of `CK_ATTRIBUTE` (they hold pointers).
fn is_array_attribute(kind: Ulong) -> bool {
    kind & ck::CKF_ARRAY_ATTRIBUTE != 0
}

/// A `CK_ATTRIBUTE` array pointing into a template's values, alive as long as the template.
struct RawTemplate {
    attrs: Vec<ck::CK_ATTRIBUTE>,
}

impl RawTemplate {
    fn new(template: &[Attribute]) -> Result<RawTemplate, Rv> {
        let attrs = template
            .iter()
            .map(|a| {
                if is_array_attribute(a.kind) {
                    return Err(Rv(ck::CKR_ATTRIBUTE_TYPE_INVALID));
                }
                Ok(match &a.value {
                    // Modules only read input templates; the `*mut` is PKCS#11's signature.
                    Some(v) => ck::CK_ATTRIBUTE {
                        type_: a.kind,
                        pValue: v.as_ptr() as *mut c_void,
                        ulValueLen: v.len() as Ulong,
                    },
                    None => ck::CK_ATTRIBUTE {
                        type_: a.kind,
                        pValue: ptr::null_mut(),
                        ulValueLen: 0,
                    },
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(RawTemplate { attrs })
    }

    fn ptr(&mut self) -> *mut ck::CK_ATTRIBUTE {
        if self.attrs.is_empty() {
            ptr::null_mut()
        } else {
            self.attrs.as_mut_ptr()
        }
    }

    fn len(&self) -> Ulong {
        self.attrs.len() as Ulong
    }
}

/// A `CK_MECHANISM` with its parameter struct, built from the wire form.
struct RawMechanism<'a> {
    kind: Ulong,
    param: RawParam<'a>,
    mech: ck::CK_MECHANISM,
}

enum RawParam<'a> {
    None,
    Flat(&'a [u8]),
    Oaep(ck::CK_RSA_PKCS_OAEP_PARAMS),
    Gcm(ck::CK_GCM_PARAMS),
}

impl<'a> RawMechanism<'a> {
    fn new(m: &'a Mechanism) -> Result<RawMechanism<'a>, Rv> {
        if !m.is_well_formed() {
            return Err(Rv(ck::CKR_MECHANISM_PARAM_INVALID));
        }
        let param = match &m.param {
            MechanismParam::None => RawParam::None,
            MechanismParam::Flat(bytes) => RawParam::Flat(bytes),
            MechanismParam::RsaOaep {
                hash,
                mgf,
                source,
                source_data,
            } => RawParam::Oaep(ck::CK_RSA_PKCS_OAEP_PARAMS {
                hashAlg: *hash,
                mgf: *mgf,
                source: *source,
                pSourceData: if source_data.is_empty() {
                    ptr::null_mut()
                } else {
                    source_data.as_ptr() as *mut c_void
                },
                ulSourceDataLen: source_data.len() as Ulong,
            }),
            MechanismParam::Gcm {
                iv,
                iv_bits,
                aad,
                tag_bits,
            } => RawParam::Gcm(ck::CK_GCM_PARAMS {
                pIv: iv.as_ptr() as *mut u8,
                ulIvLen: iv.len() as Ulong,
                ulIvBits: *iv_bits,
                pAAD: if aad.is_empty() {
                    ptr::null_mut()
                } else {
                    aad.as_ptr() as *mut u8
                },
                ulAADLen: aad.len() as Ulong,
                ulTagBits: *tag_bits,
            }),
        };
        let mech = ck::CK_MECHANISM {
            mechanism: m.kind,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        Ok(RawMechanism {
            kind: m.kind,
            param,
            mech,
        })
    }

    /// Points the mechanism at its parameter; valid while `self` is neither moved nor dropped.
    fn as_ptr(&mut self) -> *mut ck::CK_MECHANISM {
        let (p, len): (*mut c_void, usize) = match &mut self.param {
            RawParam::None => (ptr::null_mut(), 0),
            RawParam::Flat(b) => (b.as_ptr() as *mut c_void, b.len()),
            RawParam::Oaep(p) => (
                p as *mut _ as *mut c_void,
                std::mem::size_of::<ck::CK_RSA_PKCS_OAEP_PARAMS>(),
            ),
            RawParam::Gcm(p) => (
                p as *mut _ as *mut c_void,
                std::mem::size_of::<ck::CK_GCM_PARAMS>(),
            ),
        };
        self.mech = ck::CK_MECHANISM {
            mechanism: self.kind,
            pParameter: p,
            ulParameterLen: len as Ulong,
        };
        &mut self.mech
    }
}
