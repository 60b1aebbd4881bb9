//! Revocation of each certificate of a path: OCSP at the responder the certificate names
//! (AIA), else the CRL at its distribution points. An answer counts only when its signature
//! verifies (OCSP by the issuer or its delegated responder, the CRL by the issuer) and it is
//! current; anything else leaves the certificate "not checked", with the reason.

use const_oid::db::rfc5912 as oids;
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AuthorityInfoAccessSyntax, CrlDistributionPoints, ExtendedKeyUsage};
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest,
};

use super::asn1;
use super::chain;
use super::crypto::{self, Hash};
use crate::net::Fetch;

const AIA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
const AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
const CRL_DP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.31");
const OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
/// Clock difference tolerated between kyso and a responder.
const SKEW: time::Duration = time::Duration::minutes(5);

/// One certificate's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Good,
    Revoked(OffsetDateTime),
    /// Why not: offline, unreachable, no URL, a bad answer. Vietnamese / English.
    NotChecked(String),
}

/// Checks every certificate of `path` that has its issuer after it in the path (all but the
/// anchor). Returns each certificate's subject with its status.
pub fn check_path(
    path: &[Certificate],
    fetch: &dyn Fetch,
    now: OffsetDateTime,
) -> Vec<(String, Status)> {
    path.windows(2)
        .map(|pair| {
            let subject = pair[0].tbs_certificate.subject.to_string();
            (subject, check(&pair[0], &pair[1], fetch, now))
        })
        .collect()
}

/// The status of `cert`, issued by `issuer`.
pub fn check(
    cert: &Certificate,
    issuer: &Certificate,
    fetch: &dyn Fetch,
    now: OffsetDateTime,
) -> Status {
    let mut failures = Vec::new();
    for url in ocsp_urls(cert) {
        match ocsp(cert, issuer, &url, fetch, now) {
            Ok(status) => return status,
            Err(e) => failures.push(format!("OCSP {url}: {e}")),
        }
    }
    for url in crl_urls(cert) {
        match crl(cert, issuer, &url, fetch, now) {
            Ok(status) => return status,
            Err(e) => failures.push(format!("CRL {url}: {e}")),
        }
    }
    let subject = cert.tbs_certificate.subject.to_string();
    if failures.is_empty() {
        Status::NotChecked(format!(
            "Chưa kiểm tra thu hồi: chứng thư số {subject} không có địa chỉ OCSP hay CRL / Revocation not checked: the certificate {subject} names no OCSP responder or CRL"
        ))
    } else {
        Status::NotChecked(format!(
            "Chưa kiểm tra thu hồi chứng thư số {subject} (không kết nối được hoặc trả lời không hợp lệ) / Revocation of {subject} not checked (unreachable or a bad answer): {}",
            failures.join("; ")
        ))
    }
}

fn http_urls(names: impl Iterator<Item = GeneralName>) -> Vec<String> {
    names
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        })
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .collect()
}

fn ocsp_urls(cert: &Certificate) -> Vec<String> {
    let Some(aia) = chain::extension::<AuthorityInfoAccessSyntax>(cert, AIA) else {
        return Vec::new();
    };
    http_urls(
        aia.0
            .into_iter()
            .filter(|ad| ad.access_method == AD_OCSP)
            .map(|ad| ad.access_location),
    )
}

fn crl_urls(cert: &Certificate) -> Vec<String> {
    let Some(dps) = chain::extension::<CrlDistributionPoints>(cert, CRL_DP) else {
        return Vec::new();
    };
    http_urls(
        dps.0
            .into_iter()
            .filter_map(|dp| match dp.distribution_point {
                Some(DistributionPointName::FullName(names)) => Some(names),
                _ => None,
            })
            .flatten(),
    )
}

fn ocsp(
    cert: &Certificate,
    issuer: &Certificate,
    url: &str,
    fetch: &dyn Fetch,
    now: OffsetDateTime,
) -> Result<Status, String> {
    let e = |e: der::Error| e.to_string();
    let issuer_name = issuer.tbs_certificate.subject.to_der().map_err(e)?;
    let issuer_key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let cert_id = CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: oids::ID_SHA_1,
            parameters: Some(der::asn1::Null.into()),
        },
        issuer_name_hash: OctetString::new(Hash::Sha1.digest(&issuer_name)).map_err(e)?,
        issuer_key_hash: OctetString::new(Hash::Sha1.digest(issuer_key)).map_err(e)?,
        serial_number: cert.tbs_certificate.serial_number.clone(),
    };
    let request = OcspRequest {
        tbs_request: TbsRequest {
            version: Default::default(),
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(e)?;
    let body = fetch.post(url, "application/ocsp-request", &request)?;
    let response = OcspResponse::from_der(&body).map_err(e)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(format!(
            "the responder answered {:?}",
            response.response_status
        ));
    }
    let bytes = response.response_bytes.ok_or("no response")?;
    if bytes.response_type != OCSP_BASIC {
        return Err("not a basic OCSP response".into());
    }
    let raw = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(raw).map_err(e)?;
    let tbs = asn1::encoding(
        *asn1::items(asn1::first(raw)?.value())?
            .first()
            .ok_or("empty response")?,
    )?;
    let signature = basic.signature.as_bytes().ok_or("bad signature bits")?;
    let by = |signer: &Certificate| {
        crypto::verify_message(
            &signer.tbs_certificate.subject_public_key_info,
            &basic.signature_algorithm,
            &tbs,
            signature,
        )
        .is_ok()
    };
    let delegated = |c: &&Certificate| {
        chain::issued_by(c, issuer)
            && chain::valid_at(c, now)
            && chain::extension::<ExtendedKeyUsage>(c, ObjectIdentifier::new_unwrap("2.5.29.37"))
                .is_some_and(|eku| eku.0.contains(&KP_OCSP_SIGNING))
    };
    let signed = by(issuer) || basic.certs.iter().flatten().filter(delegated).any(by);
    if !signed {
        return Err("the answer is not signed by the issuer or its responder".into());
    }
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| {
            r.cert_id.serial_number == cert.tbs_certificate.serial_number
                && Hash::from_oid(&r.cert_id.hash_algorithm.oid).is_some_and(|h| {
                    r.cert_id.issuer_key_hash.as_bytes() == h.digest(issuer_key).as_slice()
                })
        })
        .ok_or("the answer is about another certificate")?;
    let at = |t: &x509_ocsp::OcspGeneralizedTime| {
        OffsetDateTime::from_unix_timestamp(t.0.to_unix_duration().as_secs() as i64)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    if at(&single.this_update) > now + SKEW {
        return Err("the answer is dated in the future".into());
    }
    if single
        .next_update
        .as_ref()
        .is_some_and(|n| at(n) + SKEW < now)
    {
        return Err("the answer is out of date".into());
    }
    match &single.cert_status {
        CertStatus::Good(_) => Ok(Status::Good),
        CertStatus::Revoked(info) => Ok(Status::Revoked(at(&info.revocation_time))),
        CertStatus::Unknown(_) => Err("the responder does not know the certificate".into()),
    }
}

fn crl(
    cert: &Certificate,
    issuer: &Certificate,
    url: &str,
    fetch: &dyn Fetch,
    now: OffsetDateTime,
) -> Result<Status, String> {
    let body = fetch.get(url)?;
    let list = x509_cert::crl::CertificateList::from_der(&body).map_err(|e| e.to_string())?;
    if list.tbs_cert_list.issuer != cert.tbs_certificate.issuer {
        return Err("the CRL is another issuer's".into());
    }
    let tbs = asn1::encoding(
        *asn1::items(asn1::first(&body)?.value())?
            .first()
            .ok_or("empty CRL")?,
    )?;
    crypto::verify_message(
        &issuer.tbs_certificate.subject_public_key_info,
        &list.signature_algorithm,
        &tbs,
        list.signature.as_bytes().ok_or("bad signature bits")?,
    )
    .map_err(|e| format!("the CRL's signature: {e}"))?;
    let at = |t: &x509_cert::time::Time| {
        OffsetDateTime::from_unix_timestamp(t.to_unix_duration().as_secs() as i64)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    if at(&list.tbs_cert_list.this_update) > now + SKEW {
        return Err("the CRL is dated in the future".into());
    }
    if list
        .tbs_cert_list
        .next_update
        .as_ref()
        .is_some_and(|n| at(n) + SKEW < now)
    {
        return Err("the CRL is out of date".into());
    }
    let revoked = list
        .tbs_cert_list
        .revoked_certificates
        .iter()
        .flatten()
        .find(|r| r.serial_number == cert.tbs_certificate.serial_number);
    Ok(match revoked {
        Some(r) => Status::Revoked(at(&r.revocation_date)),
        None => Status::Good,
    })
}
