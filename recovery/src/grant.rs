//! Issuing a grant (helpdesk) and checking and opening it (kysod).
//!
//! The SO PINs and the receipt key are sealed with HPKE base mode (X25519-HKDF-SHA256,
//! HKDF-SHA256, ChaCha20-Poly1305) to the request's ephemeral key; the serial, nonce, expiry and
//! request digest are the AEAD's associated data, and the whole body is signed with the
//! helpdesk's Ed25519 key.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core::TryRngCore;
use zeroize::Zeroizing;

use crate::artefact::{
    decode_b64, decode_fixed, encode_b64, Grant, GrantBody, ParseError, RecoveryRequest,
    GRANT_KIND, VERSION,
};

const HPKE_INFO: &[u8] = b"kyso recovery grant v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(
        "the grant is not signed by a helpdesk key this workstation trusts (forged or altered)"
    )]
    Untrusted,
    #[error("the grant is for token {grant}, but the request was made for token {request}")]
    WrongSerial { grant: String, request: String },
    #[error("the grant answers a request other than the one this workstation made (the request file was changed before the helpdesk approved it); make a new request")]
    WrongRequest,
    #[error("the grant expired at {}; ask the helpdesk for a new one", kyso_proto::dates::rfc3339(*.0))]
    Expired(i64),
    #[error(
        "the grant cannot be opened with this request's key (altered, or made for another request)"
    )]
    Sealing,
    #[error("the sealed secrets are malformed")]
    Secrets,
}

/// What a grant carries sealed: zeroized on drop, never printed.
pub struct GrantSecrets {
    pub current_so_pin: Zeroizing<Vec<u8>>,
    pub new_so_pin: Zeroizing<Vec<u8>>,
    pub receipt_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for GrantSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantSecrets(..)")
    }
}

impl GrantSecrets {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            2 + self.current_so_pin.len() + self.new_so_pin.len() + 32,
        ));
        for pin in [&self.current_so_pin, &self.new_so_pin] {
            out.push(pin.len().min(255) as u8);
            out.extend_from_slice(&pin[..pin.len().min(255)]);
        }
        out.extend_from_slice(&*self.receipt_key);
        out
    }

    fn decode(bytes: &[u8]) -> Result<GrantSecrets, GrantError> {
        let take = |rest: &[u8]| -> Result<(Zeroizing<Vec<u8>>, usize), GrantError> {
            let n = *rest.first().ok_or(GrantError::Secrets)? as usize;
            let pin = rest.get(1..1 + n).ok_or(GrantError::Secrets)?;
            Ok((Zeroizing::new(pin.to_vec()), 1 + n))
        };
        let (current_so_pin, a) = take(bytes)?;
        let (new_so_pin, b) = take(&bytes[a..])?;
        let key: [u8; 32] = bytes[a + b..].try_into().map_err(|_| GrantError::Secrets)?;
        Ok(GrantSecrets {
            current_so_pin,
            new_so_pin,
            receipt_key: Zeroizing::new(key),
        })
    }
}

/// A fresh ephemeral X25519 key pair: (private, public).
pub fn ephemeral_keypair() -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let ikm = Zeroizing::new(crate::random::<32>());
    let (private, public) = X25519HkdfSha256::derive_keypair(&*ikm);
    let mut sk = Zeroizing::new([0u8; 32]);
    sk.copy_from_slice(&private.to_bytes());
    let mut pk = [0u8; 32];
    pk.copy_from_slice(&public.to_bytes());
    (sk, pk)
}

fn aad(body: &GrantBody) -> Vec<u8> {
    format!(
        "{}\n{}\n{}\n{}",
        body.serial, body.nonce, body.expires, body.request_sha256
    )
    .into_bytes()
}

/// What the helpdesk decided, to be sealed and signed.
pub struct Approval<'a> {
    pub case_ref: &'a str,
    pub operator: &'a str,
    pub lifetime_secs: i64,
    /// The generation of the current SO PIN in the secrets.
    pub so_generation: &'a str,
}

/// The helpdesk's side: seals `secrets` to the request's key and signs the grant.
pub fn issue(
    request: &RecoveryRequest,
    request_bytes: &[u8],
    secrets: &GrantSecrets,
    approval: &Approval<'_>,
    key: &SigningKey,
) -> Result<Grant, GrantError> {
    let pk = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&request.public_key_bytes()?)
        .map_err(|_| ParseError::Field("public_key"))?;
    let issued = crate::now();
    let mut body = GrantBody {
        serial: request.serial.clone(),
        nonce: request.nonce.clone(),
        request_sha256: crate::sha256_hex(request_bytes),
        case_ref: approval.case_ref.into(),
        operator: approval.operator.into(),
        issued,
        expires: issued + approval.lifetime_secs,
        enc: String::new(),
        sealed: String::new(),
        so_generation: Some(approval.so_generation.into()),
    };
    let mut rng = rand_core::OsRng.unwrap_err();
    let (enc, sealed) =
        hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &pk,
            HPKE_INFO,
            &secrets.encode(),
            &aad(&body),
            &mut rng,
        )
        .map_err(|_| GrantError::Sealing)?;
    body.enc = encode_b64(&enc.to_bytes());
    body.sealed = encode_b64(&sealed);
    let signature = key.sign(&body.signed_bytes());
    Ok(Grant {
        kind: GRANT_KIND.into(),
        version: VERSION,
        body,
        signature: encode_b64(&signature.to_bytes()),
    })
}

/// Whether one of `trusted` signed the grant.
pub fn check_signature(grant: &Grant, trusted: &[VerifyingKey]) -> Result<(), GrantError> {
    let signature = Signature::from_bytes(&grant.signature_bytes()?);
    let signed = grant.body.signed_bytes();
    if trusted
        .iter()
        .any(|k| k.verify(&signed, &signature).is_ok())
    {
        Ok(())
    } else {
        Err(GrantError::Untrusted)
    }
}

/// The request a grant must answer, as kysod kept it when it made the request.
pub struct Made<'a> {
    pub serial: &'a str,
    /// SHA-256 (hex) of the request file as kysod wrote it.
    pub sha256: &'a str,
    pub private_key: &'a [u8; 32],
}

/// kysod's side: signature, serial, the request the helpdesk approved (byte for byte the one
/// made here, so nothing in it was changed on the way), expiry, then the sealed secrets with
/// the request's private key. The caller has found the request by the grant's nonce.
pub fn open(
    grant: &Grant,
    trusted: &[VerifyingKey],
    request: &Made<'_>,
    now: i64,
) -> Result<GrantSecrets, GrantError> {
    check_signature(grant, trusted)?;
    if grant.body.serial != request.serial {
        return Err(GrantError::WrongSerial {
            grant: grant.body.serial.clone(),
            request: request.serial.into(),
        });
    }
    if !grant
        .body
        .request_sha256
        .eq_ignore_ascii_case(request.sha256)
    {
        return Err(GrantError::WrongRequest);
    }
    if now >= grant.body.expires {
        return Err(GrantError::Expired(grant.body.expires));
    }
    let sk = <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(request.private_key)
        .map_err(|_| GrantError::Sealing)?;
    let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&decode_fixed::<32>(
        &grant.body.enc,
        "enc",
    )?)
    .map_err(|_| GrantError::Sealing)?;
    let sealed = decode_b64(&grant.body.sealed, "sealed")?;
    let plain = Zeroizing::new(
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &sk,
            &enc,
            HPKE_INFO,
            &sealed,
            &aad(&grant.body),
        )
        .map_err(|_| GrantError::Sealing)?,
    );
    GrantSecrets::decode(&plain)
}

/// A verifying key from its file form: 32 bytes base64 (what `kyso-helpdesk pubkey` prints).
pub fn parse_verifying_key(text: &str) -> Result<VerifyingKey, ParseError> {
    let bytes = decode_fixed::<32>(text.trim(), "public key")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| ParseError::Field("public key"))
}

/// A signing key from its 32 secret bytes.
pub fn signing_key(secret: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artefact::REQUEST_KIND;

    fn request(pk: &[u8; 32]) -> RecoveryRequest {
        RecoveryRequest {
            kind: REQUEST_KIND.into(),
            version: 1,
            serial: "0123".into(),
            label: "A".into(),
            model: "M".into(),
            certificates: vec![],
            nonce: "ab".repeat(16),
            public_key: encode_b64(pk),
            min_pin_len: 4,
            max_pin_len: 8,
            created: 0,
            expires: i64::MAX,
        }
    }

    fn secrets() -> GrantSecrets {
        GrantSecrets {
            current_so_pin: Zeroizing::new(b"87654321".to_vec()),
            new_so_pin: Zeroizing::new(b"13572468".to_vec()),
            receipt_key: Zeroizing::new([9; 32]),
        }
    }

    #[test]
    fn sealed_secrets_open_only_for_the_request_and_the_trusted_key() {
        let (sk, pk) = ephemeral_keypair();
        let key = signing_key(&[5; 32]);
        let approval = Approval {
            case_ref: "12/CV",
            operator: "op",
            lifetime_secs: 60,
            so_generation: "escrow",
        };
        let grant = issue(&request(&pk), b"req", &secrets(), &approval, &key).unwrap();
        let trusted = [key.verifying_key()];
        let now = crate::now();
        let digest = crate::sha256_hex(b"req");
        let made = |serial, private_key| Made {
            serial,
            sha256: &digest,
            private_key,
        };
        let opened = open(&grant, &trusted, &made("0123", &sk), now).unwrap();
        assert_eq!(&*opened.new_so_pin, b"13572468");
        assert_eq!(&*opened.current_so_pin, b"87654321");
        assert_eq!(*opened.receipt_key, [9; 32]);

        let other = [signing_key(&[6; 32]).verifying_key()];
        assert_eq!(
            open(&grant, &other, &made("0123", &sk), now).unwrap_err(),
            GrantError::Untrusted
        );
        assert!(matches!(
            open(&grant, &trusted, &made("9999", &sk), now),
            Err(GrantError::WrongSerial { .. })
        ));
        assert!(matches!(
            open(&grant, &trusted, &made("0123", &sk), now + 61),
            Err(GrantError::Expired(_))
        ));
        let (other_sk, _) = ephemeral_keypair();
        assert_eq!(
            open(&grant, &trusted, &made("0123", &other_sk), now).unwrap_err(),
            GrantError::Sealing
        );
        let other_digest = crate::sha256_hex(b"another request");
        let elsewhere = Made {
            serial: "0123",
            sha256: &other_digest,
            private_key: &sk,
        };
        assert_eq!(
            open(&grant, &trusted, &elsewhere, now).unwrap_err(),
            GrantError::WrongRequest
        );
        let mut tampered = grant.clone();
        tampered.body.expires += 1000;
        assert_eq!(
            open(&tampered, &trusted, &made("0123", &sk), now).unwrap_err(),
            GrantError::Untrusted
        );
    }
}
