//! C structs ↔ kyso-proto types: templates and mechanisms in (reading the application's
//! pointers through [`crate::ffi`]), info structs out (blank-padded fixed-size strings).

use std::mem::size_of;

use cryptoki_sys::{
    CKF_ARRAY_ATTRIBUTE, CKR_ATTRIBUTE_TYPE_INVALID, CKR_MECHANISM_PARAM_INVALID,
    CKR_PIN_LEN_RANGE, CK_ATTRIBUTE, CK_GCM_PARAMS, CK_INFO, CK_MECHANISM, CK_MECHANISM_INFO,
    CK_RSA_PKCS_OAEP_PARAMS, CK_SESSION_INFO, CK_SLOT_INFO, CK_TOKEN_INFO, CK_ULONG, CK_VERSION,
};
use kyso_proto::mechanism::{param_shape, Mechanism, MechanismParam, ParamShape};
use kyso_proto::{Attribute, MechanismInfo, Pin, SessionInfo, SlotInfo, TokenInfo, Version};

use crate::error::{Error, Result};
use crate::ffi;

/// A template (`CK_ATTRIBUTE_PTR`, count) as values. Array attributes (`CKA_WRAP_TEMPLATE`, …)
/// hold pointers into this process and are refused rather than sent.
///
/// # Safety
/// A non-NULL `ptr` points at `count` attributes whose non-NULL `pValue`s are readable for
/// their `ulValueLen`.
pub(crate) unsafe fn template(ptr: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<Vec<Attribute>> {
    // SAFETY: the caller's contract.
    let attrs = unsafe { ffi::array(ptr, count) }?;
    attrs
        .iter()
        .map(|a| {
            if a.type_ & CKF_ARRAY_ATTRIBUTE != 0 {
                return Err(Error::Rv(CKR_ATTRIBUTE_TYPE_INVALID));
            }
            let value = if a.pValue.is_null() {
                None
            } else {
                // SAFETY: a non-NULL pValue is readable for ulValueLen bytes (caller's contract).
                Some(unsafe { ffi::bytes(a.pValue.cast(), a.ulValueLen) }?.to_vec())
            };
            Ok(Attribute {
                kind: a.type_,
                value,
            })
        })
        .collect()
}

/// A `CK_MECHANISM` as the wire carries it, by the shape of its parameter.
///
/// # Safety
/// `ptr` is NULL or points at a `CK_MECHANISM` whose parameter is what the mechanism
/// type says, `ulParameterLen` bytes long.
pub(crate) unsafe fn mechanism(ptr: *const CK_MECHANISM) -> Result<Mechanism> {
    // SAFETY: the caller's contract.
    let m = unsafe { ffi::required(ptr) }?;
    let param_invalid = |_| Error::Rv(CKR_MECHANISM_PARAM_INVALID);
    let param = if m.pParameter.is_null() || m.ulParameterLen == 0 {
        MechanismParam::None
    } else {
        match param_shape(m.mechanism) {
            ParamShape::Flat => {
                // SAFETY: pParameter is readable for ulParameterLen bytes (caller's contract).
                let raw = unsafe { ffi::bytes(m.pParameter.cast(), m.ulParameterLen) };
                MechanismParam::Flat(raw.map_err(param_invalid)?.to_vec())
            }
            ParamShape::RsaOaep => {
                // SAFETY: for RSA-OAEP the parameter is a CK_RSA_PKCS_OAEP_PARAMS (size checked).
                let p: &CK_RSA_PKCS_OAEP_PARAMS = unsafe { param_struct(m) }?;
                // SAFETY: pSourceData is readable for ulSourceDataLen bytes per PKCS#11.
                let source = unsafe { ffi::bytes(p.pSourceData.cast(), p.ulSourceDataLen) };
                MechanismParam::RsaOaep {
                    hash: p.hashAlg,
                    mgf: p.mgf,
                    source: p.source,
                    source_data: source.map_err(param_invalid)?.to_vec(),
                }
            }
            ParamShape::Gcm => {
                // SAFETY: for AES-GCM the parameter is a CK_GCM_PARAMS (size checked).
                let p: &CK_GCM_PARAMS = unsafe { param_struct(m) }?;
                // SAFETY: pIv is readable for ulIvLen bytes per PKCS#11.
                let iv = unsafe { ffi::bytes(p.pIv, p.ulIvLen) }.map_err(param_invalid)?;
                // SAFETY: pAAD is readable for ulAADLen bytes per PKCS#11.
                let aad = unsafe { ffi::bytes(p.pAAD, p.ulAADLen) }.map_err(param_invalid)?;
                MechanismParam::Gcm {
                    iv: iv.to_vec(),
                    iv_bits: p.ulIvBits,
                    aad: aad.to_vec(),
                    tag_bits: p.ulTagBits,
                }
            }
            ParamShape::Unsupported => return Err(Error::Rv(CKR_MECHANISM_PARAM_INVALID)),
        }
    };
    let mechanism = Mechanism {
        kind: m.mechanism,
        param,
    };
    if !mechanism.is_well_formed() {
        return Err(Error::Rv(CKR_MECHANISM_PARAM_INVALID));
    }
    Ok(mechanism)
}

/// A mechanism parameter of struct type `T`, refused unless its length is exactly `T`'s.
///
/// # Safety
/// When `ulParameterLen` equals `size_of::<T>()`, `pParameter` points at a `T`.
unsafe fn param_struct<'a, T>(m: &CK_MECHANISM) -> Result<&'a T> {
    if m.ulParameterLen != size_of::<T>() as CK_ULONG {
        return Err(Error::Rv(CKR_MECHANISM_PARAM_INVALID));
    }
    // SAFETY: the caller's contract.
    unsafe { ffi::required(m.pParameter.cast::<T>()) }
        .map_err(|_| Error::Rv(CKR_MECHANISM_PARAM_INVALID))
}

/// A PIN argument: NULL means "no PIN" (kysod asks on the protected authentication path).
///
/// # Safety
/// A non-NULL `ptr` is readable for `len` bytes.
pub(crate) unsafe fn pin(ptr: *const u8, len: CK_ULONG) -> Result<Option<Pin>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract. The application's bytes are copied into a zeroizing Pin.
    let bytes = unsafe { ffi::bytes(ptr, len) }.map_err(|e| match e {
        Error::TooLarge => Error::Rv(CKR_PIN_LEN_RANGE),
        other => other,
    })?;
    Ok(Some(Pin::new(bytes)))
}

/// `src` in a fixed-size, blank-padded PKCS#11 string field: truncated (at a UTF-8
/// character boundary) or padded with spaces, never NUL-terminated.
pub(crate) fn padded<const N: usize>(src: &[u8]) -> [u8; N] {
    let mut out = [b' '; N];
    let mut n = src.len().min(N);
    while n < src.len() && n > 0 && src[n] & 0xC0 == 0x80 {
        n -= 1;
    }
    out[..n].copy_from_slice(&src[..n]);
    out
}

pub(crate) fn version(v: Version) -> CK_VERSION {
    CK_VERSION {
        major: v.major,
        minor: v.minor,
    }
}

/// `C_GetInfo`, answered locally: the library, not a token.
pub(crate) fn library_info(cryptoki_version: CK_VERSION) -> CK_INFO {
    CK_INFO {
        cryptokiVersion: cryptoki_version,
        manufacturerID: padded(b"kyso"),
        flags: 0,
        libraryDescription: padded(b"kyso PKCS#11 middleware"),
        libraryVersion: CK_VERSION {
            major: parse_u8(env!("CARGO_PKG_VERSION_MAJOR")),
            minor: parse_u8(env!("CARGO_PKG_VERSION_MINOR")),
        },
    }
}

fn parse_u8(digits: &str) -> u8 {
    digits.parse().unwrap_or(u8::MAX)
}

pub(crate) fn slot_info(s: SlotInfo) -> CK_SLOT_INFO {
    CK_SLOT_INFO {
        slotDescription: padded(&s.description),
        manufacturerID: padded(&s.manufacturer),
        flags: s.flags,
        hardwareVersion: version(s.hardware_version),
        firmwareVersion: version(s.firmware_version),
    }
}

pub(crate) fn token_info(t: TokenInfo) -> CK_TOKEN_INFO {
    CK_TOKEN_INFO {
        label: padded(&t.label),
        manufacturerID: padded(&t.manufacturer),
        model: padded(&t.model),
        serialNumber: padded(&t.serial),
        flags: t.flags,
        ulMaxSessionCount: t.max_session_count,
        ulSessionCount: t.session_count,
        ulMaxRwSessionCount: t.max_rw_session_count,
        ulRwSessionCount: t.rw_session_count,
        ulMaxPinLen: t.max_pin_len,
        ulMinPinLen: t.min_pin_len,
        ulTotalPublicMemory: t.total_public_memory,
        ulFreePublicMemory: t.free_public_memory,
        ulTotalPrivateMemory: t.total_private_memory,
        ulFreePrivateMemory: t.free_private_memory,
        hardwareVersion: version(t.hardware_version),
        firmwareVersion: version(t.firmware_version),
        utcTime: padded(&t.utc_time),
    }
}

pub(crate) fn session_info(s: SessionInfo) -> CK_SESSION_INFO {
    CK_SESSION_INFO {
        slotID: s.slot,
        state: s.state,
        flags: s.flags,
        ulDeviceError: s.device_error,
    }
}

pub(crate) fn mechanism_info(m: MechanismInfo) -> CK_MECHANISM_INFO {
    CK_MECHANISM_INFO {
        ulMinKeySize: m.min_key_size,
        ulMaxKeySize: m.max_key_size,
        flags: m.flags,
    }
}
