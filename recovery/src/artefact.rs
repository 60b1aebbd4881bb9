//! The recovery artefacts as they are written to files (JSON), and their parsers. Parsing is
//! total and pure: any bytes give an artefact or a [`ParseError`], never a panic, and nothing
//! here checks signatures, expiry or keys (see [`crate::grant`] and [`crate::receipt`]).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub const REQUEST_KIND: &str = "kyso-recovery-request";
pub const GRANT_KIND: &str = "kyso-recovery-grant";
pub const RECEIPT_KIND: &str = "kyso-recovery-receipt";
pub const VERSION: u32 = 1;
/// Largest artefact accepted (a request with a few certificates is a few kilobytes).
pub const MAX_LEN: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("the file is too large to be a recovery artefact ({0} bytes)")]
    TooLarge(usize),
    #[error("not a valid recovery file: {0}")]
    Json(String),
    #[error("this is a {found}, not a {expected}")]
    Kind {
        expected: &'static str,
        found: String,
    },
    #[error("unsupported version {0} of the recovery format")]
    Version(u32),
    #[error("field {0} is malformed")]
    Field(&'static str),
    #[error("the grant is not signed")]
    Unsigned,
    #[error("certificate {0} of the request does not match its description (serial, holder or validity)")]
    Certificate(usize),
}

/// A certificate on the token: the certificate itself, and what the helpdesk reads of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCertificate {
    /// `CN, O` of the subject.
    pub holder: String,
    /// Serial number, lowercase hex without leading zeros.
    pub serial: String,
    /// `personal`, `organisation` or `other`, as kysod's policy classes it.
    pub class: String,
    pub not_before: i64,
    pub not_after: i64,
    /// The certificate (DER, base64), as issued by the CA: the description above must match it.
    pub der: String,
}

impl RequestCertificate {
    /// A certificate (DER) described from itself; `class` is how kysod's policy classes it.
    /// `None` when it is not an X.509 certificate.
    pub fn from_der(der: &[u8], class: &str) -> Option<RequestCertificate> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        // The form kysod's policy and `kyso status` give serials: the two must agree.
        let serial = kyso_proto::normalise_serial(&crate::hex(cert.raw_serial()));
        let subject = cert.subject();
        let cn = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok());
        let o = subject
            .iter_organization()
            .next()
            .and_then(|a| a.as_str().ok());
        let holder = [cn, o].into_iter().flatten().collect::<Vec<_>>().join(", ");
        Some(RequestCertificate {
            holder,
            serial,
            class: class.into(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            der: encode_b64(der),
        })
    }

    /// Whether holder, serial and validity are those of the certificate itself.
    fn matches_certificate(&self) -> bool {
        B64.decode(&self.der)
            .ok()
            .and_then(|der| RequestCertificate::from_der(&der, &self.class))
            .is_some_and(|described| described == *self)
    }
}

/// `kyso recover request`: made on the workstation, read by `kyso-helpdesk approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRequest {
    pub kind: String,
    pub version: u32,
    pub serial: String,
    pub label: String,
    pub model: String,
    pub certificates: Vec<RequestCertificate>,
    /// 16 random bytes, hex.
    pub nonce: String,
    /// The ephemeral X25519 public key (32 bytes, base64) kysod holds the private half of.
    pub public_key: String,
    /// The token's user PIN length limits: the new SO PIN must fit them too.
    pub min_pin_len: u64,
    pub max_pin_len: u64,
    pub created: i64,
    pub expires: i64,
}

impl RecoveryRequest {
    pub fn public_key_bytes(&self) -> Result<[u8; 32], ParseError> {
        decode_fixed(&self.public_key, "public_key")
    }
}

/// What the helpdesk signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantBody {
    pub serial: String,
    /// The request's nonce.
    pub nonce: String,
    /// SHA-256 (hex) of the request file the grant answers.
    pub request_sha256: String,
    /// The agency's case reference (công văn number).
    pub case_ref: String,
    pub operator: String,
    pub issued: i64,
    pub expires: i64,
    /// HPKE encapsulated key (base64).
    pub enc: String,
    /// HPKE ciphertext of the SO PINs and the receipt key (base64).
    pub sealed: String,
    /// The generation of the SO PIN sealed as current (the grant digest that installed it, or
    /// `escrow`): kysod refuses, without a try, a grant whose SO PIN is not the generation it
    /// installed on the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub so_generation: Option<String>,
}

/// `kyso-helpdesk approve`: read by `kyso recover apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub kind: String,
    pub version: u32,
    pub body: GrantBody,
    /// Ed25519 signature (base64) over [`GrantBody::signed_bytes`].
    pub signature: String,
}

impl GrantBody {
    /// The bytes the signature covers: a domain label, then the body's JSON.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"kyso recovery grant v1\n".to_vec();
        // Serialising a struct of strings and integers cannot fail.
        out.extend(serde_json::to_vec(self).unwrap_or_default());
        out
    }

    /// The grant's identity: SHA-256 (hex) of the signed bytes. It names the SO PIN the grant
    /// installs (its "generation") and binds the receipt to the grant.
    pub fn digest(&self) -> String {
        crate::sha256_hex(&self.signed_bytes())
    }
}

impl Grant {
    pub fn signature_bytes(&self) -> Result<[u8; 64], ParseError> {
        decode_fixed(&self.signature, "signature")
    }
}

/// `kyso recover apply`: proves the rotation to `kyso-helpdesk close`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub kind: String,
    pub version: u32,
    pub serial: String,
    pub nonce: String,
    /// [`GrantBody::digest`] of the grant applied.
    pub grant_sha256: String,
    pub applied: i64,
    /// HMAC-SHA256 (hex) under the grant's receipt key; see [`crate::receipt`].
    pub mac: String,
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ParseError> {
    if bytes.len() > MAX_LEN {
        return Err(ParseError::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))
}

fn check_header(kind: &str, version: u32, expected: &'static str) -> Result<(), ParseError> {
    if kind != expected {
        return Err(ParseError::Kind {
            expected,
            found: kind.chars().take(64).collect(),
        });
    }
    if version != VERSION {
        return Err(ParseError::Version(version));
    }
    Ok(())
}

fn check_nonce(nonce: &str) -> Result<(), ParseError> {
    if nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ParseError::Field("nonce"))
    }
}

fn check_serial(serial: &str) -> Result<(), ParseError> {
    if serial.is_empty() || serial.len() > 64 || serial.chars().any(char::is_control) {
        Err(ParseError::Field("serial"))
    } else {
        Ok(())
    }
}

pub fn decode_fixed<const N: usize>(
    text: &str,
    field: &'static str,
) -> Result<[u8; N], ParseError> {
    B64.decode(text)
        .ok()
        .and_then(|v| <[u8; N]>::try_from(v.as_slice()).ok())
        .ok_or(ParseError::Field(field))
}

pub fn decode_b64(text: &str, field: &'static str) -> Result<Vec<u8>, ParseError> {
    B64.decode(text).map_err(|_| ParseError::Field(field))
}

pub fn encode_b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn parse_request(bytes: &[u8]) -> Result<RecoveryRequest, ParseError> {
    let r: RecoveryRequest = parse(bytes)?;
    check_header(&r.kind, r.version, REQUEST_KIND)?;
    check_serial(&r.serial)?;
    check_nonce(&r.nonce)?;
    r.public_key_bytes()?;
    if let Some(i) = r.certificates.iter().position(|c| !c.matches_certificate()) {
        return Err(ParseError::Certificate(i + 1));
    }
    Ok(r)
}

pub fn parse_grant(bytes: &[u8]) -> Result<Grant, ParseError> {
    let g: Grant = parse(bytes)?;
    check_header(&g.kind, g.version, GRANT_KIND)?;
    check_serial(&g.body.serial)?;
    check_nonce(&g.body.nonce)?;
    if g.signature.is_empty() {
        return Err(ParseError::Unsigned);
    }
    g.signature_bytes()?;
    decode_fixed::<32>(&g.body.enc, "enc")?;
    decode_b64(&g.body.sealed, "sealed")?;
    Ok(g)
}

pub fn parse_receipt(bytes: &[u8]) -> Result<Receipt, ParseError> {
    let r: Receipt = parse(bytes)?;
    check_header(&r.kind, r.version, RECEIPT_KIND)?;
    check_serial(&r.serial)?;
    check_nonce(&r.nonce)?;
    if r.mac.len() != 64 || !r.mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ParseError::Field("mac"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_request(&bytes);
            let _ = parse_grant(&bytes);
            let _ = parse_receipt(&bytes);
        }

        #[test]
        fn any_json_strings_in_a_grant_parse_or_fail_cleanly(serial in ".{0,80}", nonce in ".{0,40}", sig in ".{0,100}", enc in ".{0,60}") {
            let text = serde_json::json!({
                "kind": GRANT_KIND, "version": 1, "signature": sig,
                "body": {"serial": serial, "nonce": nonce, "request_sha256": "", "case_ref": "",
                         "operator": "", "issued": 0, "expires": 1, "enc": enc, "sealed": ""}
            });
            let _ = parse_grant(text.to_string().as_bytes());
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"{}", b"[1,2", b"\xff\xfe", b"{\"kind\":1}"] {
            assert!(parse_request(bytes).is_err());
            assert!(parse_grant(bytes).is_err());
            assert!(parse_receipt(bytes).is_err());
        }
    }

    fn request(certificates: Vec<RequestCertificate>) -> RecoveryRequest {
        RecoveryRequest {
            kind: REQUEST_KIND.into(),
            version: 1,
            serial: "abc".into(),
            label: "L".into(),
            model: "M".into(),
            certificates,
            nonce: "00".repeat(16),
            public_key: encode_b64(&[7; 32]),
            min_pin_len: 4,
            max_pin_len: 8,
            created: 1,
            expires: 2,
        }
    }

    #[test]
    fn a_request_is_not_a_grant() {
        let req = request(vec![]);
        let bytes = serde_json::to_vec(&req).unwrap();
        assert_eq!(parse_request(&bytes).unwrap(), req);
        assert!(matches!(parse_grant(&bytes), Err(ParseError::Json(_))));
    }

    #[test]
    fn a_certificate_must_be_described_as_it_is() {
        // Made once with openssl: CN=NGUYEN VAN A, O=UBND Tinh Demo, serial 0x1001.
        let der = include_bytes!("../testdata/certificate.der");
        let cert = RequestCertificate::from_der(der, "personal").unwrap();
        assert_eq!(cert.holder, "NGUYEN VAN A, UBND Tinh Demo");
        assert_eq!(cert.serial, "1001");
        assert_eq!(
            cert.not_after - cert.not_before,
            365 * kyso_proto::dates::DAY
        );
        assert!(RequestCertificate::from_der(b"not a certificate", "personal").is_none());

        let good = serde_json::to_vec(&request(vec![cert.clone()])).unwrap();
        assert!(parse_request(&good).is_ok());
        let edits: [fn(&mut RequestCertificate); 5] = [
            |c| c.holder = "TRAN THI B, UBND Tinh Demo".into(),
            |c| c.serial = "1002".into(),
            |c| c.not_after += kyso_proto::dates::DAY,
            |c| c.not_before -= 1,
            |c| c.der = encode_b64(b"not a certificate"),
        ];
        for edit in edits {
            let mut other = cert.clone();
            edit(&mut other);
            let bytes = serde_json::to_vec(&request(vec![cert.clone(), other])).unwrap();
            assert_eq!(parse_request(&bytes), Err(ParseError::Certificate(2)));
        }
    }
}
