//! Certificates on tokens: reading them through the module, the facts kysod needs of each
//! (serial, holder, class, validity), and which certificate belongs to a signing key.
//!
//! The class comes from the subject's `UID`, as Vietnamese CA profiles write it (`CCCD:`,
//! `CMND:`, `HC:` personal; `MST:`, `MNS:` organisation, i.e. the agency's seal).

use cryptoki_sys as ck;
use kyso_proto::{Attribute, AttributeQuery, CertificateStatus, Ulong};

use crate::config::CertClass;
use crate::error::Rv;
use crate::module::Module;

use kyso_proto::class::OID_UID;
pub use kyso_proto::dates::{date, now};
/// Most certificates one search looks at for one `CKA_ID`.
const MAX_CANDIDATES: usize = 8;
/// Most certificates read from one token when it arrives.
const MAX_TOKEN_CERTIFICATES: usize = 64;

/// What kysod needs of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Serial number, lowercase hexadecimal without separators or leading zeros.
    pub serial: String,
    pub common_name: Option<String>,
    pub organisation: Option<String>,
    /// The subject's `UID`, when it has one.
    pub uid: Option<String>,
    /// Validity, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The certified public key, when of a kind tokens hold (RSA, EC).
    pub public_key: Option<PublicKey>,
}

/// The public half of a key, as a certificate and a token both show it: an RSA modulus and
/// exponent (without leading zero bytes), or an EC point (uncompressed, as SEC 1 writes it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PublicKey {
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    Ec { point: Vec<u8> },
}

impl PublicKey {
    fn rsa(modulus: &[u8], exponent: &[u8]) -> PublicKey {
        let trim = |b: &[u8]| {
            let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
            b[start..].to_vec()
        };
        PublicKey::Rsa {
            modulus: trim(modulus),
            exponent: trim(exponent),
        }
    }
}

impl CertFacts {
    /// `CN, O` of the subject.
    pub fn holder(&self) -> String {
        [self.common_name.as_deref(), self.organisation.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The last instant a renewal may be asked for.
    pub fn renew_by(&self) -> i64 {
        kyso_proto::standing::renew_by(self.not_after)
    }
}

/// The signing certificate as prompts and the audit journal name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningCert {
    pub serial: String,
    /// `CN, O` of the subject.
    pub subject: String,
    pub class: CertClass,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

impl SigningCert {
    pub fn new(facts: &CertFacts, class: CertClass) -> SigningCert {
        SigningCert {
            serial: facts.serial.clone(),
            subject: facts.holder(),
            class,
            not_after: facts.not_after,
        }
    }
}

/// Reads the facts kysod needs from a DER certificate.
pub fn parse_certificate(der: &[u8]) -> Result<CertFacts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let subject = cert.subject();
    let first = |attrs: Vec<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
        attrs
            .first()
            .and_then(|a| a.as_str().ok())
            .map(str::to_string)
    };
    let uid = subject
        .iter_attributes()
        .find(|a| a.attr_type().to_id_string() == OID_UID)
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    Ok(CertFacts {
        serial: kyso_proto::normalise_serial(&hex(cert.raw_serial())),
        common_name: first(subject.iter_common_name().collect()),
        organisation: first(subject.iter_organization().collect()),
        uid,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        public_key: match cert.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                Some(PublicKey::rsa(rsa.modulus, rsa.exponent))
            }
            Ok(x509_parser::public_key::PublicKey::EC(point)) => Some(PublicKey::Ec {
                point: point.data().to_vec(),
            }),
            _ => None,
        },
    })
}

pub fn hex(bytes: &[u8]) -> String {
    kyso_proto::hex::encode(bytes)
}

pub use kyso_proto::class::class_of_uid;

/// One attribute's value read with a length query first; `None` when absent or unreadable.
fn read_attribute(module: &Module, session: Ulong, object: Ulong, kind: Ulong) -> Option<Vec<u8>> {
    let (rv, values) =
        module.get_attributes(session, object, &[AttributeQuery { kind, len: None }]);
    let len = values.first()?.len;
    if rv != Rv::OK || len == ck::CK_UNAVAILABLE_INFORMATION {
        return None;
    }
    let (rv, values) = module.get_attributes(
        session,
        object,
        &[AttributeQuery {
            kind,
            len: Some(len),
        }],
    );
    if rv != Rv::OK {
        return None;
    }
    values.into_iter().next()?.value
}

/// The `CKA_ID` of a private key; `None` for other objects, keys without one, or when the
/// module cannot say (its `C_SignInit` then reports the problem itself).
pub fn key_id(module: &Module, session: Ulong, key: Ulong) -> Option<Vec<u8>> {
    let class = read_attribute(module, session, key, ck::CKA_CLASS)?;
    if class != ck::CKO_PRIVATE_KEY.to_ne_bytes() {
        return None;
    }
    read_attribute(module, session, key, ck::CKA_ID).filter(|id| !id.is_empty())
}

/// A certificate object's `CKA_ID` and DER.
type IdAndDer = (Vec<u8>, Vec<u8>);

/// The public half of the private key `key`, read through the module `session`: an RSA key's
/// modulus and exponent from the key itself; an EC key's point from the key when the module
/// shows it there, else from the token's public key of the same `CKA_ID` (searched in a
/// session of kysod's own on `module_slot`, so that a search the client has under way is not
/// disturbed). `None` when the module shows neither.
pub fn public_key_of(
    module: &Module,
    module_slot: Ulong,
    session: Ulong,
    key: Ulong,
) -> Option<PublicKey> {
    let key_type = read_attribute(module, session, key, ck::CKA_KEY_TYPE)?;
    if key_type == ck::CKK_RSA.to_ne_bytes() {
        let modulus = read_attribute(module, session, key, ck::CKA_MODULUS)?;
        let exponent = read_attribute(module, session, key, ck::CKA_PUBLIC_EXPONENT)?;
        return Some(PublicKey::rsa(&modulus, &exponent));
    }
    if key_type != ck::CKK_EC.to_ne_bytes() {
        return None;
    }
    let point = read_attribute(module, session, key, ck::CKA_EC_POINT).or_else(|| {
        let id = read_attribute(module, session, key, ck::CKA_ID)?;
        let own = module
            .open_session(module_slot, ck::CKF_SERIAL_SESSION)
            .ok()?;
        let template = [
            Attribute {
                kind: ck::CKA_CLASS,
                value: Some(ck::CKO_PUBLIC_KEY.to_ne_bytes().to_vec()),
            },
            Attribute {
                kind: ck::CKA_ID,
                value: Some(id),
            },
        ];
        let point = module.find_init(own, &template).ok().and_then(|()| {
            let found = module.find(own, MAX_CANDIDATES);
            let _ = module.find_final(own);
            found
                .ok()?
                .into_iter()
                .find_map(|public| read_attribute(module, own, public, ck::CKA_EC_POINT))
        });
        let _ = module.close_session(own);
        point
    })?;
    Some(PublicKey::Ec {
        point: unwrap_octet_string(&point).to_vec(),
    })
}

/// `CKA_EC_POINT` is a DER OCTET STRING holding the point (some modules give the bare point).
fn unwrap_octet_string(der: &[u8]) -> &[u8] {
    let (len, header) = match der {
        [0x04, n, ..] if *n < 0x80 => (usize::from(*n), 2),
        [0x04, 0x81, n, ..] => (usize::from(*n), 3),
        [0x04, 0x82, a, b, ..] => (usize::from(*a) << 8 | usize::from(*b), 4),
        _ => return der,
    };
    if der.len() == header + len {
        &der[header..]
    } else {
        der
    }
}

/// The certificate objects of a search with `template` in a short-lived session of kysod's
/// own on `module_slot` (so that a search a client has under way is not disturbed): their
/// `CKA_ID` and DER.
fn find_certificates(
    module: &Module,
    module_slot: Ulong,
    id: Option<&[u8]>,
    max: usize,
) -> Result<Vec<IdAndDer>, Rv> {
    let session = module.open_session(module_slot, ck::CKF_SERIAL_SESSION)?;
    let mut template = vec![Attribute {
        kind: ck::CKA_CLASS,
        value: Some(ck::CKO_CERTIFICATE.to_ne_bytes().to_vec()),
    }];
    if let Some(id) = id {
        template.push(Attribute {
            kind: ck::CKA_ID,
            value: Some(id.to_vec()),
        });
    }
    let found = module.find_init(session, &template).and_then(|()| {
        let found = module.find(session, max);
        let _ = module.find_final(session);
        found
    });
    let certificates = found.map(|objects| {
        objects
            .into_iter()
            .filter_map(|object| {
                let der = read_attribute(module, session, object, ck::CKA_VALUE)
                    .filter(|v| !v.is_empty())?;
                let id = read_attribute(module, session, object, ck::CKA_ID).unwrap_or_default();
                Some((id, der))
            })
            .collect()
    });
    if let Err(rv) = module.close_session(session) {
        tracing::debug!(%rv, "closing a certificate look-up session");
    }
    certificates
}

/// The DER of the certificate with `CKA_ID` `id`, if the token has one.
pub fn certificate_der(
    module: &Module,
    module_slot: Ulong,
    id: &[u8],
) -> Result<Option<Vec<u8>>, Rv> {
    Ok(
        find_certificates(module, module_slot, Some(id), MAX_CANDIDATES)?
            .into_iter()
            .next()
            .map(|(_, der)| der),
    )
}

/// The certificates on a token (`CKA_ID`, DER); none when the token cannot be read.
pub fn certificates_der(module: &Module, module_slot: Ulong) -> Vec<IdAndDer> {
    find_certificates(module, module_slot, None, MAX_TOKEN_CERTIFICATES).unwrap_or_default()
}

/// A certificate on a token as `kyso status` shows it, with its parsed facts.
pub struct TokenCertificate {
    pub status: CertificateStatus,
    pub facts: CertFacts,
}

/// The certificates on a token, parsed; one that cannot be parsed is left out.
pub fn token_certificates(module: &Module, module_slot: Ulong) -> Vec<TokenCertificate> {
    certificates_der(module, module_slot)
        .into_iter()
        .filter_map(|(id, der)| {
            let facts = parse_certificate(&der)
                .inspect_err(|e| tracing::debug!(id = %hex(&id), error = %e, "a certificate on the token cannot be parsed"))
                .ok()?;
            let status = CertificateStatus {
                id: hex(&id),
                holder: facts.holder(),
                serial: facts.serial.clone(),
                class: class_of_uid(facts.uid.as_deref()).name().to_string(),
                not_before: facts.not_before,
                not_after: facts.not_after,
                renew_by: facts.renew_by(),
            };
            Some(TokenCertificate { status, facts })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An organisation certificate from the demo CA (UID `MST:0101234567`, EC P-256).
    const ORG_CERT_HEX: &str = concat!(
        "308201ee30820194a003020102020900d30f6fa4cc93706b300a06082a8648ce3d0403023038310b30090603",
        "5504061302564e31123010060355040a0c096b79736f2044656d6f3115301306035504030c0c6b79736f2044",
        "656d6f204341301e170d3235303130313030303030305a170d3237303130313030303030305a305f310b3009",
        "06035504061302564e31173015060355040a0c0e55424e442054696e682044656d6f3117301506035504030c",
        "0e55424e442054494e482044454d4f311e301c060a0992268993f22c6401010c0e4d53543a30313031323334",
        "3536373059301306072a8648ce3d020106082a8648ce3d0301070342000482012e32eb8d604f66e5d9888c02",
        "e3f8495849708fdd70b082ded1fdcb75f00139677b8786a9e43e64c7e775c0ccc7f4e1cbea800b30e7020420",
        "330e1b530164a360305e300c0603551d130101ff04023000300e0603551d0f0101ff0404030206c0301d0603",
        "551d0e0416041480a4d9c6458372366b8b1f93d8c7bdab831d4c2b301f0603551d230418301680147d0a13d6",
        "a1e85790c88f204b0264d42e8a6bfc13300a06082a8648ce3d0403020348003045022100abd0253439149d0f",
        "03cde1e3e7cfe85dbd44ac7991917f348ab06434e2c9bd7202206c09aed569cc9d559aec387502be2f941173",
        "c89df8a3a4fc66f6010845bacd19",
    );

    #[test]
    fn class_from_uid() {
        assert_eq!(class_of_uid(Some("CCCD:001090000001")), CertClass::Personal);
        assert_eq!(class_of_uid(Some("CMND:0123")), CertClass::Personal);
        assert_eq!(class_of_uid(Some("HC:B123")), CertClass::Personal);
        assert_eq!(
            class_of_uid(Some("MST:0101234567")),
            CertClass::Organisation
        );
        assert_eq!(class_of_uid(Some("MNS:1234")), CertClass::Organisation);
        assert_eq!(class_of_uid(Some("device-7")), CertClass::Other);
        assert_eq!(class_of_uid(None), CertClass::Other);
    }

    #[test]
    fn a_real_certificate_parses() {
        let der = hex::decode(ORG_CERT_HEX).unwrap();
        let facts = parse_certificate(&der).unwrap();
        assert_eq!(facts.serial, "d30f6fa4cc93706b");
        assert_eq!(facts.common_name.as_deref(), Some("UBND TINH DEMO"));
        assert_eq!(facts.organisation.as_deref(), Some("UBND Tinh Demo"));
        assert_eq!(facts.holder(), "UBND TINH DEMO, UBND Tinh Demo");
        assert_eq!(facts.uid.as_deref(), Some("MST:0101234567"));
        assert_eq!(facts.not_before, 1_735_689_600);
        assert_eq!(facts.not_after, 1_798_761_600);
        assert_eq!(
            facts.renew_by(),
            1_798_761_600 - 30 * kyso_proto::dates::DAY
        );
        assert_eq!(class_of_uid(facts.uid.as_deref()), CertClass::Organisation);
        assert!(parse_certificate(&der[..der.len() - 1]).is_err());
    }

    #[test]
    fn an_ec_point_is_read_wrapped_or_bare() {
        let point: Vec<u8> = std::iter::once(4).chain(1..=64).collect();
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&point);
        assert_eq!(unwrap_octet_string(&wrapped), &point[..]);
        assert_eq!(unwrap_octet_string(&point), &point[..]);
    }

    #[test]
    fn a_certificates_public_key_is_read() {
        let der = hex::decode(ORG_CERT_HEX).unwrap();
        let facts = parse_certificate(&der).unwrap();
        match facts.public_key {
            Some(PublicKey::Ec { point }) => {
                assert_eq!(point.len(), 65);
                assert_eq!(point[0], 4);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            PublicKey::rsa(&[0, 0xc1, 2], &[0, 1, 0, 1]),
            PublicKey::rsa(&[0xc1, 2], &[1, 0, 1])
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(parse_certificate(b"").is_err());
        assert!(parse_certificate(&[0x30, 0x82, 0xff, 0xff, 0]).is_err());
    }
}
