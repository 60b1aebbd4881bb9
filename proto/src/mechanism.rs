//! Mechanisms on the wire. A `CK_MECHANISM` parameter is a C struct that may hold pointers, so
//! it cannot cross a process boundary as raw bytes in general. Each mechanism is classified by
//! the shape of its parameter: flat (no pointers, copied byte for byte), one of the pointer
//! shapes kyso knows how to carry, or unsupported (refused with `CKR_MECHANISM_PARAM_INVALID`
//! rather than handing a module a dangling pointer).

use cryptoki_sys as ck;
use serde::{Deserialize, Serialize};

use crate::Ulong;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mechanism {
    pub kind: Ulong,
    pub param: MechanismParam,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MechanismParam {
    /// `pParameter == NULL`.
    None,
    /// A parameter without pointers (PSS parameters, an IV, CTR parameters), byte for byte.
    Flat(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `CK_RSA_PKCS_OAEP_PARAMS`.
    RsaOaep {
        hash: Ulong,
        mgf: Ulong,
        source: Ulong,
        #[serde(with = "serde_bytes")]
        source_data: Vec<u8>,
    },
    /// `CK_GCM_PARAMS` (PKCS#11 3.0 layout: `pIv, ulIvLen, ulIvBits, pAAD, ulAADLen, ulTagBits`).
    Gcm {
        #[serde(with = "serde_bytes")]
        iv: Vec<u8>,
        iv_bits: Ulong,
        #[serde(with = "serde_bytes")]
        aad: Vec<u8>,
        tag_bits: Ulong,
    },
}

/// How a mechanism's parameter is laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamShape {
    /// No pointers inside: safe to copy as bytes (or absent).
    Flat,
    RsaOaep,
    Gcm,
    /// Holds pointers kyso does not know how to carry.
    Unsupported,
}

/// The parameter shape of a mechanism type.
pub fn param_shape(kind: Ulong) -> ParamShape {
    match kind as ck::CK_MECHANISM_TYPE {
        ck::CKM_RSA_PKCS_OAEP => ParamShape::RsaOaep,
        ck::CKM_AES_GCM => ParamShape::Gcm,
        // Mechanisms whose parameter is known to be pointer-free (or that take none).
        ck::CKM_RSA_PKCS
        | ck::CKM_RSA_X_509
        | ck::CKM_RSA_PKCS_KEY_PAIR_GEN
        | ck::CKM_RSA_PKCS_PSS
        | ck::CKM_SHA1_RSA_PKCS
        | ck::CKM_SHA224_RSA_PKCS
        | ck::CKM_SHA256_RSA_PKCS
        | ck::CKM_SHA384_RSA_PKCS
        | ck::CKM_SHA512_RSA_PKCS
        | ck::CKM_SHA1_RSA_PKCS_PSS
        | ck::CKM_SHA224_RSA_PKCS_PSS
        | ck::CKM_SHA256_RSA_PKCS_PSS
        | ck::CKM_SHA384_RSA_PKCS_PSS
        | ck::CKM_SHA512_RSA_PKCS_PSS
        | ck::CKM_EC_KEY_PAIR_GEN
        | ck::CKM_ECDSA
        | ck::CKM_ECDSA_SHA1
        | ck::CKM_ECDSA_SHA224
        | ck::CKM_ECDSA_SHA256
        | ck::CKM_ECDSA_SHA384
        | ck::CKM_ECDSA_SHA512
        | ck::CKM_EC_EDWARDS_KEY_PAIR_GEN
        | ck::CKM_SHA_1
        | ck::CKM_SHA224
        | ck::CKM_SHA256
        | ck::CKM_SHA384
        | ck::CKM_SHA512
        | ck::CKM_MD5
        | ck::CKM_SHA_1_HMAC
        | ck::CKM_SHA256_HMAC
        | ck::CKM_SHA384_HMAC
        | ck::CKM_SHA512_HMAC
        | ck::CKM_GENERIC_SECRET_KEY_GEN
        | ck::CKM_AES_KEY_GEN
        | ck::CKM_AES_ECB
        | ck::CKM_AES_CBC
        | ck::CKM_AES_CBC_PAD
        | ck::CKM_AES_CTR
        | ck::CKM_AES_CMAC
        | ck::CKM_DES3_KEY_GEN
        | ck::CKM_DES3_ECB
        | ck::CKM_DES3_CBC
        | ck::CKM_DES3_CBC_PAD => ParamShape::Flat,
        // EdDSA takes no parameter or a CK_EDDSA_PARAMS with a context pointer; only the
        // parameter-less form is carried (checked where the parameter is decoded).
        ck::CKM_EDDSA => ParamShape::Flat,
        _ => ParamShape::Unsupported,
    }
}

impl Mechanism {
    pub fn new(kind: Ulong) -> Self {
        Mechanism {
            kind,
            param: MechanismParam::None,
        }
    }

    /// Whether the parameter's variant matches what the mechanism's shape allows. A mechanism
    /// of unknown shape may only travel without a parameter.
    pub fn is_well_formed(&self) -> bool {
        match (&self.param, param_shape(self.kind)) {
            (MechanismParam::None, _) => true,
            (MechanismParam::Flat(_), ParamShape::Flat) => {
                self.kind as ck::CK_MECHANISM_TYPE != ck::CKM_EDDSA
            }
            (MechanismParam::RsaOaep { .. }, ParamShape::RsaOaep) => true,
            (MechanismParam::Gcm { .. }, ParamShape::Gcm) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_parameters_are_not_flat() {
        assert_eq!(
            param_shape(ck::CKM_RSA_PKCS_OAEP as Ulong),
            ParamShape::RsaOaep
        );
        assert_eq!(
            param_shape(ck::CKM_ECDH1_DERIVE as Ulong),
            ParamShape::Unsupported
        );
        let bad = Mechanism {
            kind: ck::CKM_ECDH1_DERIVE as Ulong,
            param: MechanismParam::Flat(vec![0; 40]),
        };
        assert!(!bad.is_well_formed());
        let ok = Mechanism {
            kind: ck::CKM_SHA256_RSA_PKCS_PSS as Ulong,
            param: MechanismParam::Flat(vec![0; 24]),
        };
        assert!(ok.is_well_formed());
    }
}
