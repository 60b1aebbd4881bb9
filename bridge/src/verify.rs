//! What the bridge reads from certificates and checks without the token: the `CertInfo` of an
//! answer, and a signature over a digest (VerifyMsg).

use base64::Engine;
use serde_json::{json, Value};
use x509_parser::prelude::*;

use crate::request::Digest;
use crate::status::{Failure, Status};

fn rfc3339(t: &ASN1Time) -> String {
    kyso_proto::audit::rfc3339_utc(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.timestamp().max(0) as u64),
    )
}

/// `{"Subject", "Issuer", "SerialNumber", "Base64Data", "ValidFrom", "ValidTo"}` of a DER
/// certificate; times in RFC 3339 UTC.
pub fn cert_info(der: &[u8]) -> Result<Value, Failure> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| Failure::with(Status::BadRequest, "certificate / chứng thư số"))?;
    Ok(json!({
        "Subject": cert.subject().to_string(),
        "Issuer": cert.issuer().to_string(),
        "SerialNumber": cert.raw_serial_as_string().replace(':', "").to_uppercase(),
        "Base64Data": base64::engine::general_purpose::STANDARD.encode(der),
        "ValidFrom": rfc3339(&cert.validity().not_before),
        "ValidTo": rfc3339(&cert.validity().not_after),
    }))
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// Whether `signature` is `cert`'s key's signature over `digest`: RSA PKCS#1 v1.5, or ECDSA
/// (DER or `r || s`).
pub fn verify_digest(cert: &[u8], digest: &Digest, signature: &[u8]) -> Result<bool, Failure> {
    let bad_cert = || {
        Failure::with(
            Status::BadRequest,
            "CertBase64: not a certificate / không phải chứng thư số",
        )
    };
    let (_, cert) = X509Certificate::from_der(cert).map_err(|_| bad_cert())?;
    let spki = cert.public_key();
    let key = &spki.subject_public_key.data;
    match spki.algorithm.algorithm.to_id_string().as_str() {
        OID_RSA => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            let key = rsa::RsaPublicKey::from_pkcs1_der(key).map_err(|_| bad_cert())?;
            let info = crate::der::digest_info(digest);
            let scheme = rsa::Pkcs1v15Sign {
                hash_len: Some(digest.value.len()),
                prefix: info[..info.len() - digest.value.len()].into(),
            };
            Ok(key.verify(scheme, &digest.value, signature).is_ok())
        }
        OID_EC => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => {
                    let vk =
                        p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| bad_cert())?;
                    let sig = p256::ecdsa::Signature::from_der(signature)
                        .or_else(|_| p256::ecdsa::Signature::from_slice(signature));
                    Ok(sig.is_ok_and(|s| vk.verify_prehash(&digest.value, &s).is_ok()))
                }
                OID_P384 => {
                    let vk =
                        p384::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| bad_cert())?;
                    let sig = p384::ecdsa::Signature::from_der(signature)
                        .or_else(|_| p384::ecdsa::Signature::from_slice(signature));
                    Ok(sig.is_ok_and(|s| vk.verify_prehash(&digest.value, &s).is_ok()))
                }
                _ => Err(Failure::with(
                    Status::NotSupported,
                    "EC curve / đường cong EC",
                )),
            }
        }
        _ => Err(Failure::with(
            Status::NotSupported,
            "key algorithm / thuật toán khóa",
        )),
    }
}
