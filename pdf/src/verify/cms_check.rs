//! The CMS side of a signature: the signer's certificate, the message digest of the signed
//! content, the signature over the signed attributes, the ESS signing-certificate binding, the
//! claimed signing time and an RFC 3161 signature timestamp.

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use der::asn1::{AnyRef, OctetStringRef};
use der::{Decode, Encode, Tagged};
use time::OffsetDateTime;
use x509_cert::Certificate;

use super::asn1;
use super::crypto::{self, Hash};
use super::words;

const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
const SIGNING_CERTIFICATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.12");
const SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
const SIGNATURE_TIMESTAMP: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.14");
const TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");

/// What the signed content is: detached (the PDF's byte ranges, digested by the caller with
/// the algorithm the SignerInfo names) or inside the CMS (a timestamp's TSTInfo).
pub enum Content<'a> {
    Detached(&'a dyn Fn(Hash) -> Vec<u8>),
    Encapsulated,
}

/// The outcome of checking one CMS SignedData.
pub struct Checked {
    /// The signing certificate, when the CMS carries it.
    pub signer: Option<Certificate>,
    /// Every certificate the CMS carries.
    pub certificates: Vec<Certificate>,
    /// The message digest matches the content, the signature verifies with the signer's key
    /// and the ESS signing-certificate attribute (when present) names that certificate.
    pub intact: bool,
    /// The `signingTime` attribute: claimed by the signer, proven by nothing.
    pub claimed_time: Option<OffsetDateTime>,
    /// The signature value (what a signature timestamp's imprint covers).
    pub signature_value: Vec<u8>,
    /// The encapsulated content, when there is one.
    pub econtent: Option<Vec<u8>>,
    pub econtent_type: ObjectIdentifier,
    /// The DER of each signature timestamp token in the unsigned attributes.
    pub timestamp_tokens: Vec<Vec<u8>>,
    /// Why `intact` is false, or what else is wrong; Vietnamese / English.
    pub problems: Vec<String>,
}

/// Checks a CMS SignedData (its encoding may be followed by padding).
pub fn check(der_bytes: &[u8], content: Content<'_>) -> Result<Checked, String> {
    let outer = asn1::first(der_bytes)?;
    let info = ContentInfo::from_der(&asn1::encoding(outer)?).map_err(|e| e.to_string())?;
    if info.content_type != SIGNED_DATA {
        return Err(format!(
            "CMS content type {} is not SignedData",
            info.content_type
        ));
    }
    let signed: SignedData = info.content.decode_as().map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    let infos: Vec<&SignerInfo> = signed.signer_infos.0.iter().collect();
    let Some(signer_info) = infos.first() else {
        return Err("the CMS has no SignerInfo".into());
    };
    if infos.len() > 1 {
        problems.push(words::reason(
            "CMS có nhiều hơn một người ký; chỉ kiểm tra người ký đầu tiên",
            "The CMS has more than one SignerInfo; only the first is checked",
        ));
    }
    let raw_signed_attrs = raw_signed_attributes(&info.content, 0)?;
    let certificates = certificates(&info.content, &mut problems)?;
    let econtent = signed
        .encap_content_info
        .econtent
        .as_ref()
        .map(|any| {
            any.decode_as::<OctetStringRef<'_>>()
                .map(|o| o.as_bytes().to_vec())
        })
        .transpose()
        .map_err(|e| e.to_string())?;
    let signer = certificates
        .iter()
        .find(|c| identifies(&signer_info.sid, c))
        .cloned();
    if signer.is_none() {
        problems.push(words::reason(
            "Không tìm thấy chứng thư số của người ký trong chữ ký",
            "The signer's certificate is not in the signature",
        ));
    }
    let hash = Hash::from_oid(&signer_info.digest_alg.oid).ok_or_else(|| {
        format!(
            "digest algorithm {} is not supported",
            signer_info.digest_alg.oid
        )
    })?;
    let content_digest = match content {
        Content::Detached(digest) => digest(hash),
        Content::Encapsulated => hash.digest(econtent.as_deref().unwrap_or_default()),
    };
    let mut intact = signer.is_some();
    let mut claimed_time = None;
    let signed_digest = match (&signer_info.signed_attrs, &raw_signed_attrs) {
        (Some(attrs), Some(raw)) => {
            let mut digest_found = false;
            for attr in attrs.iter() {
                let Some(value) = attr.values.get(0) else {
                    continue;
                };
                match attr.oid {
                    MESSAGE_DIGEST => {
                        digest_found = true;
                        let ok = value
                            .decode_as::<OctetStringRef<'_>>()
                            .map(|o| o.as_bytes() == content_digest.as_slice())
                            .unwrap_or(false);
                        if !ok {
                            intact = false;
                            problems.push(words::reason(
                                "Nội dung đã bị thay đổi sau khi ký (giá trị băm không khớp)",
                                "The signed content was changed after signing (digest mismatch)",
                            ));
                        }
                    }
                    SIGNING_TIME => {
                        claimed_time = value
                            .to_der()
                            .ok()
                            .and_then(|d| x509_cert::time::Time::from_der(&d).ok())
                            .and_then(|t| to_offset(t.to_unix_duration()));
                    }
                    SIGNING_CERTIFICATE_V2 | SIGNING_CERTIFICATE => {
                        if let Some(cert) = &signer {
                            if !ess_names(value.into(), attr.oid == SIGNING_CERTIFICATE_V2, cert) {
                                intact = false;
                                problems.push(words::reason(
                                    "Thuộc tính signing-certificate không khớp với chứng thư số của người ký",
                                    "The signing-certificate attribute does not name the signer's certificate",
                                ));
                            }
                        }
                    }
                    CONTENT_TYPE => {}
                    _ => {}
                }
            }
            if !digest_found {
                intact = false;
                problems.push(words::reason(
                    "Chữ ký thiếu thuộc tính messageDigest",
                    "The signature has no messageDigest attribute",
                ));
            }
            hash.digest(raw)
        }
        _ => content_digest,
    };
    let signature_value = signer_info.signature.as_bytes().to_vec();
    if let Some(cert) = &signer {
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let result = crypto::hash_of(&signer_info.signature_algorithm, Some(hash)).and_then(|h| {
            let digest = if h == hash {
                signed_digest.clone()
            } else {
                return Err("the signature and digest algorithms disagree".to_string());
            };
            crypto::verify_digest(
                spki,
                &signer_info.signature_algorithm,
                h,
                &digest,
                &signature_value,
            )
        });
        if let Err(e) = result {
            intact = false;
            problems.push(format!(
                "Chữ ký không khớp với khóa công khai của chứng thư số / The signature does not verify with the certificate's public key ({e})"
            ));
        }
    }
    let timestamp_tokens = signer_info
        .unsigned_attrs
        .iter()
        .flat_map(|a| a.iter())
        .filter(|a| a.oid == SIGNATURE_TIMESTAMP)
        .flat_map(|a| a.values.iter())
        .filter_map(|v| v.to_der().ok())
        .collect();
    Ok(Checked {
        signer,
        certificates,
        intact,
        claimed_time,
        signature_value,
        econtent,
        econtent_type: signed.encap_content_info.econtent_type,
        timestamp_tokens,
        problems,
    })
}

/// A verified signature timestamp.
pub struct Timestamp {
    pub time: OffsetDateTime,
    /// The TSA's certificate and the others the token carries, for its path.
    pub tsa: Certificate,
    pub certificates: Vec<Certificate>,
}

/// Checks a signature timestamp token: its own CMS signature, that it is a TSTInfo, that its
/// imprint is the digest of `signature_value`, and that the TSA certificate may stamp time.
pub fn check_timestamp(token: &[u8], signature_value: &[u8]) -> Result<Timestamp, String> {
    let checked = check(token, Content::Encapsulated)?;
    if !checked.intact {
        return Err(format!(
            "the token's signature fails: {}",
            checked.problems.join("; ")
        ));
    }
    if checked.econtent_type != TST_INFO {
        return Err("the token is not a TSTInfo".into());
    }
    let tst = checked
        .econtent
        .as_deref()
        .ok_or("the token has no content")?;
    let seq = asn1::first(tst)?;
    let fields = asn1::items(seq.value())?;
    let (Some(imprint), Some(gen_time)) = (fields.get(2), fields.get(4)) else {
        return Err("the TSTInfo is incomplete".into());
    };
    let imprint = asn1::items(imprint.value())?;
    let (Some(alg), Some(value)) = (imprint.first(), imprint.get(1)) else {
        return Err("the message imprint is incomplete".into());
    };
    let alg = spki::AlgorithmIdentifierOwned::from_der(&asn1::encoding(*alg)?)
        .map_err(|e| e.to_string())?;
    let hash = Hash::from_oid(&alg.oid).ok_or("the imprint's digest is not supported")?;
    if value.value() != hash.digest(signature_value).as_slice() {
        return Err("the timestamp is for another signature (imprint mismatch)".into());
    }
    let time = asn1::generalized_time(gen_time.value())?;
    let tsa = checked
        .signer
        .ok_or("the TSA's certificate is not in the token")?;
    let stamps = tsa
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == EXTENDED_KEY_USAGE)
        .any(|e| {
            x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes())
                .map(|eku| eku.0.contains(&KP_TIME_STAMPING))
                .unwrap_or(false)
        });
    if !stamps {
        return Err("the TSA's certificate is not for timestamping".into());
    }
    Ok(Timestamp {
        time,
        tsa,
        certificates: checked.certificates,
    })
}

/// Whether a SignerIdentifier names `cert`.
fn identifies(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            ias.issuer == cert.tbs_certificate.issuer
                && ias.serial_number == cert.tbs_certificate.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == SUBJECT_KEY_ID)
            .any(|e| {
                OctetStringRef::from_der(e.extn_value.as_bytes())
                    .map(|o| o.as_bytes() == ski.0.as_bytes())
                    .unwrap_or(false)
            }),
    }
}

/// Whether an ESS SigningCertificate(V2) value's first ESSCertID hashes to `cert`.
fn ess_names(value: AnyRef<'_>, v2: bool, cert: &Certificate) -> bool {
    let run = || -> Result<bool, String> {
        let certs = asn1::items(value.value())?;
        let first = certs.first().ok_or("no certificates")?;
        let ids = asn1::items(first.value())?;
        let id = ids.first().ok_or("no certificate id")?;
        let parts = asn1::items(id.value())?;
        let (hash, digest) = match parts.first() {
            Some(alg) if v2 && alg.tag() == der::Tag::Sequence => {
                let alg = spki::AlgorithmIdentifierOwned::from_der(&asn1::encoding(*alg)?)
                    .map_err(|e| e.to_string())?;
                (Hash::from_oid(&alg.oid).ok_or("digest")?, parts.get(1))
            }
            Some(_) if v2 => (Hash::Sha256, parts.first()),
            _ => (Hash::Sha1, parts.first()),
        };
        let digest = digest.ok_or("no hash")?;
        let der_cert = cert.to_der().map_err(|e| e.to_string())?;
        Ok(digest.value() == hash.digest(&der_cert).as_slice())
    };
    run().unwrap_or(false)
}

/// The certificates of a SignedData. Only those in DER are kept: hashes and signatures are
/// checked over re-encoded certificates, which must therefore be the bytes the CMS carries.
fn certificates(
    signed_data: &der::Any,
    problems: &mut Vec<String>,
) -> Result<Vec<Certificate>, String> {
    let fields = asn1::items(signed_data.value())?;
    let Some(set) = fields.iter().find(|f| f.tag().octet() == 0xa0) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in asn1::items(set.value())? {
        if item.tag() != der::Tag::Sequence {
            continue;
        }
        let raw = asn1::encoding(item)?;
        match Certificate::from_der(&raw) {
            Ok(cert) if cert.to_der().ok().as_deref() == Some(raw.as_slice()) => out.push(cert),
            _ => problems.push(words::reason(
                "Một chứng thư số trong chữ ký không đọc được hoặc không mã hóa theo DER; đã bỏ qua",
                "A certificate in the signature is unreadable or not DER-encoded; it was ignored",
            )),
        }
    }
    Ok(out)
}

/// The exact bytes of the `index`-th SignerInfo's signed attributes, retagged as the SET OF the
/// signature covers; `None` when it has none.
fn raw_signed_attributes(signed_data: &der::Any, index: usize) -> Result<Option<Vec<u8>>, String> {
    let fields = asn1::items(signed_data.value())?;
    let infos = fields
        .iter()
        .rev()
        .find(|f| f.tag() == der::Tag::Set)
        .ok_or("no SignerInfos")?;
    let infos = asn1::items(infos.value())?;
    let info = infos.get(index).ok_or("no SignerInfo")?;
    for part in asn1::items(info.value())? {
        if part.tag().octet() == 0xa0 {
            let mut raw = asn1::encoding(part)?;
            raw[0] = 0x31;
            return Ok(Some(raw));
        }
    }
    Ok(None)
}

fn to_offset(d: std::time::Duration) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(i64::try_from(d.as_secs()).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Certificate {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Certificate::from_der(params.self_signed(&key).unwrap().der()).unwrap()
    }

    /// `SEQUENCE { SEQUENCE OF { ESSCertID(v2) } }` around one certificate id.
    fn ess(id: Vec<u8>) -> Vec<u8> {
        let wrap = |tag: u8, body: Vec<u8>| {
            let mut out = vec![tag, body.len() as u8];
            out.extend(body);
            out
        };
        wrap(0x30, wrap(0x30, wrap(0x30, id)))
    }

    fn octets(bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![0x04, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn signing_certificate_attributes_name_the_certificate() {
        let (a, b) = (cert("a"), cert("b"));
        let der_a = a.to_der().unwrap();
        let check = |value: &[u8], v2: bool, c: &Certificate| {
            ess_names(AnyRef::from_der(value).unwrap(), v2, c)
        };
        // V2 with the default SHA-256.
        let v2 = ess(octets(&Hash::Sha256.digest(&der_a)));
        assert!(check(&v2, true, &a));
        assert!(!check(&v2, true, &b));
        // V2 naming SHA-384.
        let mut id = spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_SHA_384,
            parameters: None,
        }
        .to_der()
        .unwrap();
        id.extend(octets(&Hash::Sha384.digest(&der_a)));
        let v2 = ess(id);
        assert!(check(&v2, true, &a));
        assert!(!check(&v2, true, &b));
        // V1, SHA-1.
        let v1 = ess(octets(&Hash::Sha1.digest(&der_a)));
        assert!(check(&v1, false, &a));
        assert!(!check(&v1, false, &b));
        assert!(!check(&[0x30, 0x00], true, &a));
    }

    #[test]
    fn junk_is_an_error() {
        let digest = |h: Hash| h.digest(b"x");
        for junk in [&b""[..], b"\x30\x03\x02\x01", b"\x30\x00", b"junk"] {
            assert!(check(junk, Content::Detached(&digest)).is_err());
        }
    }
}
