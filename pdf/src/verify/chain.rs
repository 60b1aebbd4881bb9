//! The certification path from a signing certificate to a trust anchor, through the
//! certificates the signature carries: each one's signature by its issuer's key, each issuer a
//! CA, every certificate valid at the time the path is judged at.

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::Certificate;

use super::crypto;
use super::words;

const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// Longest path looked for.
const MAX_DEPTH: usize = 8;
/// Most certificates of a signature considered as issuers, bounding the work a hostile
/// signature can cause.
const MAX_POOL: usize = 32;

/// A path, signer first.
pub struct Path {
    /// The signer, its issuers, and last the anchor when one was reached.
    pub certificates: Vec<Certificate>,
    /// The path ends at one of the trust anchors.
    pub anchored: bool,
    /// Why the path is not trusted; Vietnamese / English.
    pub problems: Vec<String>,
}

/// Builds and checks the path from `leaf` through `pool` to one of `anchors`, judging the
/// validity of the issuers at `at` (the leaf's own validity is the caller's to judge).
pub fn build(
    leaf: &Certificate,
    pool: &[Certificate],
    anchors: &[Certificate],
    at: OffsetDateTime,
) -> Path {
    let mut certificates = vec![leaf.clone()];
    let mut anchored = false;
    let mut problems = Vec::new();
    while certificates.len() <= MAX_DEPTH {
        let current = certificates.last().expect("the path starts with the leaf");
        if anchors.iter().any(|a| a == current) {
            anchored = true;
            break;
        }
        if let Some(anchor) = anchors.iter().find(|a| issued_by(current, a)) {
            certificates.push(anchor.clone());
            anchored = true;
            break;
        }
        let next = pool
            .iter()
            .take(MAX_POOL)
            .filter(|c| !certificates.contains(c))
            .find(|c| issued_by(current, c));
        match next {
            Some(issuer) => certificates.push(issuer.clone()),
            None => break,
        }
    }
    if !anchored {
        problems.push(words::reason(
            "Không xây dựng được đường dẫn chứng thực tới một chứng thư số gốc tin cậy",
            "No certification path leads to a trusted root certificate",
        ));
    }
    for (i, cert) in certificates.iter().enumerate().skip(1) {
        let subject = cert.tbs_certificate.subject.to_string();
        if !valid_at(cert, at) {
            problems.push(format!(
                "Chứng thư số của tổ chức cấp {subject} không có hiệu lực tại thời điểm ký / The issuing CA certificate {subject} was not valid at signing time"
            ));
        }
        let is_anchor = anchored && i == certificates.len() - 1;
        match extension::<BasicConstraints>(cert, BASIC_CONSTRAINTS) {
            Some(bc) if bc.ca => {}
            None if is_anchor => {}
            _ => problems.push(format!(
                "Chứng thư số {subject} không phải của tổ chức cung cấp dịch vụ chứng thực (CA) / The certificate {subject} is not a CA certificate"
            )),
        }
        if let Some(ku) = extension::<KeyUsage>(cert, KEY_USAGE) {
            if !ku.0.contains(KeyUsages::KeyCertSign) {
                problems.push(format!(
                    "Chứng thư số {subject} không được phép ký chứng thư số khác / The certificate {subject} may not sign certificates"
                ));
            }
        }
    }
    Path {
        certificates,
        anchored,
        problems,
    }
}

/// Whether `issuer` names and signed `cert`.
pub fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return false;
    }
    let Ok(tbs) = cert.tbs_certificate.to_der() else {
        return false;
    };
    let Some(signature) = cert.signature.as_bytes() else {
        return false;
    };
    crypto::verify_message(
        &issuer.tbs_certificate.subject_public_key_info,
        &cert.signature_algorithm,
        &tbs,
        signature,
    )
    .is_ok()
}

/// Whether `at` lies within the certificate's validity period.
pub fn valid_at(cert: &Certificate, at: OffsetDateTime) -> bool {
    let (from, to) = validity(cert);
    from <= at && at <= to
}

/// notBefore and notAfter.
pub fn validity(cert: &Certificate) -> (OffsetDateTime, OffsetDateTime) {
    let v = &cert.tbs_certificate.validity;
    let t = |d: std::time::Duration| {
        OffsetDateTime::from_unix_timestamp(d.as_secs() as i64)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    (
        t(v.not_before.to_unix_duration()),
        t(v.not_after.to_unix_duration()),
    )
}

/// A certificate extension, decoded.
pub fn extension<'a, T: Decode<'a>>(cert: &'a Certificate, oid: ObjectIdentifier) -> Option<T> {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == oid)
        .and_then(|e| T::from_der(e.extn_value.as_bytes()).ok())
}
