//! Digests and signature checks: RSA (PKCS#1 v1.5 and PSS) and ECDSA on P-256 and P-384,
//! always over a digest computed beforehand, so large inputs are hashed once.

use const_oid::db::rfc5912 as oids;
use const_oid::ObjectIdentifier;
use der::asn1::AnyRef;
use der::{Decode, Encode, Tagged};
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use super::asn1;

/// `id-RSASSA-PSS`.
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const ECDSA_WITH_SHA_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// A digest algorithm a signature may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The algorithm an identifier names, `None` for any other.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Hash> {
        match *oid {
            oids::ID_SHA_1 => Some(Hash::Sha1),
            oids::ID_SHA_256 => Some(Hash::Sha256),
            oids::ID_SHA_384 => Some(Hash::Sha384),
            oids::ID_SHA_512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    /// The digest of the concatenation of `parts`.
    pub fn digest_parts(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha1 => run::<sha1::Sha1>(parts),
            Hash::Sha256 => run::<sha2::Sha256>(parts),
            Hash::Sha384 => run::<sha2::Sha384>(parts),
            Hash::Sha512 => run::<sha2::Sha512>(parts),
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        self.digest_parts(&[data])
    }
}

/// The digest a signature algorithm uses: named by the algorithm itself, or by `hint` (the
/// SignerInfo's digest algorithm) when the identifier names only the key type.
pub fn hash_of(alg: &AlgorithmIdentifierOwned, hint: Option<Hash>) -> Result<Hash, String> {
    let hash = match alg.oid {
        oids::SHA_1_WITH_RSA_ENCRYPTION | ECDSA_WITH_SHA_1 => Some(Hash::Sha1),
        oids::SHA_256_WITH_RSA_ENCRYPTION | oids::ECDSA_WITH_SHA_256 => Some(Hash::Sha256),
        oids::SHA_384_WITH_RSA_ENCRYPTION | oids::ECDSA_WITH_SHA_384 => Some(Hash::Sha384),
        oids::SHA_512_WITH_RSA_ENCRYPTION | oids::ECDSA_WITH_SHA_512 => Some(Hash::Sha512),
        oids::RSA_ENCRYPTION | oids::ID_EC_PUBLIC_KEY => hint,
        RSASSA_PSS => Some(pss_params(alg)?.0),
        _ => return Err(format!("signature algorithm {} is not supported", alg.oid)),
    };
    hash.ok_or_else(|| format!("no digest algorithm for {}", alg.oid))
}

/// The digest and salt length of RSASSA-PSS parameters (RFC 4055; SHA-1 and 20 by default).
fn pss_params(alg: &AlgorithmIdentifierOwned) -> Result<(Hash, usize), String> {
    let mut hash = Hash::Sha1;
    let mut salt = 20usize;
    if let Some(params) = &alg.parameters {
        let any: AnyRef<'_> = params.into();
        for item in asn1::items(any.value())? {
            let inner = asn1::first(item.value())?;
            match item.tag().octet() {
                0xa0 => {
                    let id = AlgorithmIdentifierOwned::from_der(&asn1::encoding(inner)?)
                        .map_err(|e| e.to_string())?;
                    hash = Hash::from_oid(&id.oid).ok_or("unknown PSS digest")?;
                }
                0xa2 => {
                    salt = inner.decode_as::<u32>().map_err(|e| e.to_string())? as usize;
                }
                _ => {}
            }
        }
    }
    Ok((hash, salt))
}

/// Checks `signature` over a message whose digest (by the algorithm [`hash_of`] gives) is
/// `digest`, with the key of `spki`.
pub fn verify_digest(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    hash: Hash,
    digest: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let key_der = spki.to_der().map_err(|e| e.to_string())?;
    match spki.algorithm.oid {
        oids::RSA_ENCRYPTION => {
            use rsa::pkcs8::DecodePublicKey;
            let key = rsa::RsaPublicKey::from_public_key_der(&key_der)
                .map_err(|e| format!("RSA key: {e}"))?;
            let result = if alg.oid == RSASSA_PSS {
                let (_, salt) = pss_params(alg)?;
                let scheme = match hash {
                    Hash::Sha1 => rsa::Pss::new_with_salt::<sha1::Sha1>(salt),
                    Hash::Sha256 => rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
                    Hash::Sha384 => rsa::Pss::new_with_salt::<sha2::Sha384>(salt),
                    Hash::Sha512 => rsa::Pss::new_with_salt::<sha2::Sha512>(salt),
                };
                key.verify(scheme, digest, signature)
            } else {
                let scheme = match hash {
                    Hash::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                };
                key.verify(scheme, digest, signature)
            };
            result.map_err(|_| "the RSA signature does not verify".into())
        }
        oids::ID_EC_PUBLIC_KEY => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            let point = spki.subject_public_key.raw_bytes();
            let bad = |_| "the ECDSA signature does not verify".to_string();
            match curve {
                Some(SECP256R1) => {
                    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                        .map_err(|e| format!("P-256 key: {e}"))?;
                    let sig = p256::ecdsa::Signature::from_der(signature).map_err(bad)?;
                    key.verify_prehash(digest, &sig).map_err(bad)
                }
                Some(SECP384R1) => {
                    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                        .map_err(|e| format!("P-384 key: {e}"))?;
                    let sig = p384::ecdsa::Signature::from_der(signature).map_err(bad)?;
                    key.verify_prehash(digest, &sig).map_err(bad)
                }
                _ => Err("the EC curve is not supported".into()),
            }
        }
        other => Err(format!("key type {other} is not supported")),
    }
}

/// Checks `signature` over `message` (hashed here).
pub fn verify_message(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let hash = hash_of(alg, None)?;
    verify_digest(spki, alg, hash, &hash.digest(message), signature)
}
