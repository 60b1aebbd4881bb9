//! The signing policy, checked before every signature (`C_SignInit`, `C_SignRecoverInit`).
//!
//! The private key is matched to its certificate by `CKA_ID`. A certificate outside its
//! validity period is refused (`CKR_KEY_FUNCTION_NOT_PERMITTED`): under Vietnamese law such a
//! signature has no legal value. The certificate's class comes from the subject's `UID`, as
//! Vietnamese CA profiles write it (`CCCD:`, `CMND:`, `HC:` personal; `MST:`, `MNS:`
//! organisation, i.e. the agency's seal), overridable per certificate serial in `[policy]
//! classes`; with `[policy] confirm_organisation = true` an organisation signature needs a
//! pinentry `CONFIRM`. Certificates close to expiry are signed with, but logged with the
//! renew-by date (expiry − 30 days, the renewal cut-off).
//!
//! A key without a certificate (a device key) is allowed. The decision itself is the pure
//! [`decide`]; [`Policy::check_signature`] gathers its inputs from the token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cryptoki_sys as ck;
use kyso_proto::{Attribute, AttributeQuery, CertificateStatus, Ulong};

use crate::client::{Client, Session};
use crate::config::{CertClass, PolicyConfig};
use crate::error::Rv;
use crate::module::Module;

const DAY: i64 = 86_400;
/// Renewal must be asked for this many days before expiry (the renewal cut-off).
pub const RENEWAL_CUTOFF_DAYS: i64 = 30;
/// `UID` (0.9.2342.19200300.100.1.1).
const OID_UID: &str = "0.9.2342.19200300.100.1.1";
/// Most certificates one search looks at for one `CKA_ID`.
const MAX_CANDIDATES: usize = 8;

/// The outcome of [`Policy::check_signature`]: the signing certificate (for the audit
/// journal) and whether the signature may go ahead.
pub struct Checked {
    pub cert: Option<SigningCert>,
    pub verdict: Result<(), Rv>,
}

/// The signing certificate as the audit journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningCert {
    pub serial: String,
    /// `CN, O` of the subject.
    pub subject: String,
    pub class: CertClass,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

/// What the policy needs of a certificate.
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
}

/// Reads the facts the policy needs from a DER certificate.
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
        serial: normalise_serial(&hex_lower(cert.raw_serial())),
        common_name: first(subject.iter_common_name().collect()),
        organisation: first(subject.iter_organization().collect()),
        uid,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use kyso_proto::normalise_serial;

/// The class a subject `UID` gives, as Vietnamese CA profiles write it.
pub fn class_of_uid(uid: Option<&str>) -> CertClass {
    let Some(uid) = uid else {
        return CertClass::Other;
    };
    let uid = uid.trim().to_ascii_uppercase();
    if ["CCCD:", "CMND:", "HC:"].iter().any(|p| uid.starts_with(p)) {
        CertClass::Personal
    } else if ["MST:", "MNS:"].iter().any(|p| uid.starts_with(p)) {
        CertClass::Organisation
    } else {
        CertClass::Other
    }
}

/// A warning attached to an allowed signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryWarning {
    /// Expiring within the warning window; renewal still possible until `renew_by`.
    RenewBy { expires: i64, renew_by: i64 },
    /// Expiring, and the renewal cut-off has passed: a new certificate is needed.
    RenewalClosed { expires: i64, renew_by: i64 },
}

/// The policy's decision for one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    NotYetValid {
        not_before: i64,
    },
    Expired {
        not_after: i64,
    },
    Allowed {
        class: CertClass,
        warning: Option<ExpiryWarning>,
    },
}

/// Decides on a signature with `cert` at `now` (seconds since the epoch): validity first,
/// then the class (from `override_class`, else the `UID`) and any expiry warning.
pub fn decide(
    cert: &CertFacts,
    override_class: Option<CertClass>,
    now: i64,
    warn_days: u32,
) -> Verdict {
    if now < cert.not_before {
        return Verdict::NotYetValid {
            not_before: cert.not_before,
        };
    }
    if now > cert.not_after {
        return Verdict::Expired {
            not_after: cert.not_after,
        };
    }
    let class = override_class.unwrap_or_else(|| class_of_uid(cert.uid.as_deref()));
    let renew_by = cert.not_after - RENEWAL_CUTOFF_DAYS * DAY;
    let expiring = cert.not_after - now <= i64::from(warn_days) * DAY;
    let warning = expiring.then_some(if now > renew_by {
        ExpiryWarning::RenewalClosed {
            expires: cert.not_after,
            renew_by,
        }
    } else {
        ExpiryWarning::RenewBy {
            expires: cert.not_after,
            renew_by,
        }
    });
    Verdict::Allowed { class, warning }
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn date(t: i64) -> String {
    // Howard Hinnant's civil-from-days.
    let z = t.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The certificates of a token's signing keys, by module key handle: `None` for a key
/// without (a readable) certificate. Kept on the token, so it goes when the token goes, and
/// emptied when a client changes the token's objects (see `calls::object`): without it every
/// `C_SignInit` would read and parse the certificate again, several times the cost of an
/// ECDSA signature.
pub type SigningCerts = Mutex<HashMap<Ulong, Option<Arc<CertFacts>>>>;

/// The policy with its configuration.
#[derive(Default)]
pub struct Policy {
    config: PolicyConfig,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Policy {
        Policy { config }
    }

    /// The configured class of a certificate serial, if any.
    fn override_class(&self, serial: &str) -> Option<CertClass> {
        self.config
            .classes
            .iter()
            .find(|(k, _)| normalise_serial(k) == serial)
            .map(|(_, v)| *v)
    }

    /// Checks a signature with the module key `key` on the client's session `s`; `Err` is
    /// what the application gets instead of starting the operation.
    pub fn check_signature(
        &self,
        pinentry: &std::path::Path,
        c: &Client,
        s: &Session,
        key: Ulong,
    ) -> Checked {
        let allowed = Checked {
            cert: None,
            verdict: Ok(()),
        };
        let facts = match signing_facts(s, key) {
            Ok(Some(facts)) => facts,
            Ok(None) => return allowed,
            Err(rv) => {
                return Checked {
                    cert: None,
                    verdict: Err(rv),
                }
            }
        };
        let cert = SigningCert {
            serial: facts.serial.clone(),
            subject: [facts.common_name.as_deref(), facts.organisation.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
            class: self
                .override_class(&facts.serial)
                .unwrap_or_else(|| class_of_uid(facts.uid.as_deref())),
            not_after: facts.not_after,
        };
        let verdict = self.judge(pinentry, c, s, &facts);
        Checked {
            cert: Some(cert),
            verdict,
        }
    }

    /// The policy's verdict on a signature with the certificate described by `facts`.
    fn judge(
        &self,
        pinentry: &std::path::Path,
        c: &Client,
        s: &Session,
        facts: &CertFacts,
    ) -> Result<(), Rv> {
        let cn = facts.common_name.as_deref().unwrap_or("?");
        let serial = &facts.serial;
        let program = program_name(&c.program);
        match decide(
            facts,
            self.override_class(serial),
            now(),
            self.config.warn_days,
        ) {
            Verdict::NotYetValid { not_before } => {
                let d = date(not_before);
                tracing::warn!(client = c.id, pid = c.pid, program = %program, token = %s.token.serial, cert_serial = %serial, cn, "Từ chối ký: chứng thư số chưa có hiệu lực (hiệu lực từ ngày {d}); chữ ký số tạo lúc này không có giá trị pháp lý / Signature refused: the certificate is not yet valid (valid from {d}); such a signature has no legal value");
                Err(Rv(ck::CKR_KEY_FUNCTION_NOT_PERMITTED))
            }
            Verdict::Expired { not_after } => {
                let d = date(not_after);
                tracing::warn!(client = c.id, pid = c.pid, program = %program, token = %s.token.serial, cert_serial = %serial, cn, "Từ chối ký: chứng thư số đã hết hạn ngày {d}; chữ ký số tạo bằng chứng thư này không có giá trị pháp lý / Signature refused: the certificate expired on {d}; such a signature has no legal value");
                Err(Rv(ck::CKR_KEY_FUNCTION_NOT_PERMITTED))
            }
            Verdict::Allowed { class, warning } => {
                match warning {
                    Some(ExpiryWarning::RenewBy { expires, renew_by }) => {
                        let (e, r) = (date(expires), date(renew_by));
                        tracing::warn!(token = %s.token.serial, cert_serial = %serial, cn, "Chứng thư số sắp hết hạn ngày {e}: hãy gia hạn trước ngày {r} / The certificate expires on {e}: renew it by {r}");
                    }
                    Some(ExpiryWarning::RenewalClosed { expires, renew_by }) => {
                        let (e, r) = (date(expires), date(renew_by));
                        tracing::warn!(token = %s.token.serial, cert_serial = %serial, cn, "Chứng thư số hết hạn ngày {e}; hạn gia hạn ({r}) đã qua, không thể gia hạn nữa — cần cấp chứng thư số mới / The certificate expires on {e}; the renew-by date ({r}) has passed, renewal is no longer possible — a new certificate is needed");
                    }
                    None => {}
                }
                if class == CertClass::Organisation && self.config.confirm_organisation {
                    confirm_organisation(pinentry, c, s, facts, &program)?;
                }
                tracing::debug!(client = c.id, token = %s.token.serial, cert_serial = %serial, ?class, "signature allowed by the policy");
                Ok(())
            }
        }
    }
}

/// The certificate of the signing key `key`, from the token's cache or read and parsed now.
/// A failed look-up is an error and is not remembered; a key without certificate is.
fn signing_facts(s: &Session, key: Ulong) -> Result<Option<Arc<CertFacts>>, Rv> {
    let cached = s
        .token
        .signing_certs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    if let Some(hit) = cached {
        return Ok(hit);
    }
    let found = match key_id(s, key) {
        None => None,
        Some(id) => match certificate_der(s, &id)? {
            None => {
                tracing::debug!(slot = s.token.slot, id = %hex_lower(&id), "no certificate for the signing key (a device key): signatures allowed");
                None
            }
            Some(der) => match parse_certificate(&der) {
                Ok(facts) => Some(Arc::new(facts)),
                Err(e) => {
                    tracing::warn!(slot = s.token.slot, id = %hex_lower(&id), error = %e, "the signing key's certificate cannot be parsed: signatures allowed as for a key without certificate");
                    None
                }
            },
        },
    };
    s.token
        .signing_certs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, found.clone());
    Ok(found)
}

fn program_name(program: &str) -> String {
    std::path::Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_string())
}

fn confirm_organisation(
    pinentry: &std::path::Path,
    c: &Client,
    s: &Session,
    facts: &CertFacts,
    program: &str,
) -> Result<(), Rv> {
    let cn = facts.common_name.as_deref().unwrap_or("?");
    let org = facts.organisation.as_deref().unwrap_or("?");
    let serial = &facts.serial;
    let prompt = crate::pinentry::PinPrompt {
        title: "kyso — ký số tổ chức / organisation signature".into(),
        description: format!(
            "Ứng dụng {program} (pid {pid}) muốn ký bằng chứng thư số của tổ chức \"{cn}\" ({org}, số sê-ri {serial}). Đồng ý ký?\n\nThe application {program} (pid {pid}) wants to sign with the organisation certificate \"{cn}\" ({org}, serial {serial}). Sign?",
            pid = c.pid,
        ),
        prompt: String::new(),
        error: None,
    };
    let settings = crate::pinentry::PinentrySettings::for_client(pinentry.to_path_buf(), c.pid);
    match crate::pinentry::confirm(&settings, &prompt) {
        Ok(true) => {
            tracing::info!(client = c.id, pid = c.pid, program, token = %s.token.serial, cert_serial = %serial, "organisation signature confirmed by the user");
            Ok(())
        }
        Ok(false) => {
            tracing::warn!(client = c.id, pid = c.pid, program, token = %s.token.serial, cert_serial = %serial, "Người dùng từ chối ký bằng chứng thư số tổ chức / organisation signature declined by the user");
            Err(Rv(ck::CKR_FUNCTION_REJECTED))
        }
        Err(e) => {
            tracing::warn!(client = c.id, pid = c.pid, program, cert_serial = %serial, error = %e, "organisation signature: no confirmation from the pinentry; refused");
            Err(e.rv())
        }
    }
}

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
fn key_id(s: &Session, key: Ulong) -> Option<Vec<u8>> {
    let class = read_attribute(&s.token.module, s.module_session, key, ck::CKA_CLASS)?;
    if class != ck::CKO_PRIVATE_KEY.to_ne_bytes() {
        return None;
    }
    read_attribute(&s.token.module, s.module_session, key, ck::CKA_ID).filter(|id| !id.is_empty())
}

/// The DER of the certificate with `CKA_ID` `id`, searched in a short-lived session of its own
/// so that a search the client has under way on its session is not disturbed.
fn certificate_der(s: &Session, id: &[u8]) -> Result<Option<Vec<u8>>, Rv> {
    let module = &s.token.module;
    let session = module
        .open_session(s.token.module_slot, ck::CKF_SERIAL_SESSION)
        .inspect_err(|rv| {
            tracing::warn!(%rv, token = %s.token.serial, "cannot open a session to look up the signing certificate: signature refused");
        })?;
    let template = [
        Attribute {
            kind: ck::CKA_CLASS,
            value: Some(ck::CKO_CERTIFICATE.to_ne_bytes().to_vec()),
        },
        Attribute {
            kind: ck::CKA_ID,
            value: Some(id.to_vec()),
        },
    ];
    let found = module.find_init(session, &template).and_then(|()| {
        let found = module.find(session, MAX_CANDIDATES);
        let _ = module.find_final(session);
        found
    });
    let der = found.map(|objects| {
        objects.into_iter().find_map(|o| {
            read_attribute(module, session, o, ck::CKA_VALUE).filter(|v| !v.is_empty())
        })
    });
    if let Err(rv) = module.close_session(session) {
        tracing::debug!(%rv, "closing the certificate look-up session");
    }
    der.inspect_err(|rv| {
        tracing::warn!(%rv, token = %s.token.serial, "cannot search for the signing certificate: signature refused");
    })
}

/// Most certificates read from one token when it arrives.
const MAX_TOKEN_CERTIFICATES: usize = 64;

/// The certificates on a token (`CKA_ID`, DER), read through a session of kysod's own; none
/// when the token cannot be read.
pub fn certificates_der(module: &Module, module_slot: Ulong) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(session) = module.open_session(module_slot, ck::CKF_SERIAL_SESSION) else {
        return Vec::new();
    };
    let template = [Attribute {
        kind: ck::CKA_CLASS,
        value: Some(ck::CKO_CERTIFICATE.to_ne_bytes().to_vec()),
    }];
    let objects = module.find_init(session, &template).and_then(|()| {
        let found = module.find(session, MAX_TOKEN_CERTIFICATES);
        let _ = module.find_final(session);
        found
    });
    let mut out = Vec::new();
    for object in objects.unwrap_or_default() {
        let Some(der) = read_attribute(module, session, object, ck::CKA_VALUE) else {
            continue;
        };
        let id = read_attribute(module, session, object, ck::CKA_ID).unwrap_or_default();
        out.push((id, der));
    }
    let _ = module.close_session(session);
    out
}

/// The certificates on a token that just arrived, for `kyso status`; those expired, not yet
/// valid or within `warn_days` of expiry are logged, so the user hears of them before signing.
pub fn token_certificates(
    module: &Module,
    module_slot: Ulong,
    token_serial: &str,
    warn_days: u32,
) -> Vec<CertificateStatus> {
    let mut out = Vec::new();
    for (id, der) in certificates_der(module, module_slot) {
        let Ok(facts) = parse_certificate(&der) else {
            tracing::debug!(token = %token_serial, id = %hex_lower(&id), "a certificate on the token cannot be parsed");
            continue;
        };
        let holder = [facts.common_name.as_deref(), facts.organisation.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        let class = class_of_uid(facts.uid.as_deref());
        let renew_by = facts.not_after - RENEWAL_CUTOFF_DAYS * DAY;
        match decide(&facts, Some(class), now(), warn_days) {
            Verdict::Expired { not_after } => {
                tracing::warn!(token = %token_serial, cert_serial = %facts.serial, holder = %holder, "Chứng thư số đã hết hạn ngày {d}: không ký được nữa / The certificate expired on {d}: it can no longer sign", d = date(not_after))
            }
            Verdict::NotYetValid { not_before } => {
                tracing::warn!(token = %token_serial, cert_serial = %facts.serial, holder = %holder, "Chứng thư số chưa có hiệu lực (từ ngày {d}) / The certificate is not valid before {d}", d = date(not_before))
            }
            Verdict::Allowed {
                warning: Some(ExpiryWarning::RenewBy { expires, renew_by }),
                ..
            } => {
                tracing::warn!(token = %token_serial, cert_serial = %facts.serial, holder = %holder, "Chứng thư số hết hạn ngày {e}: hãy gia hạn trước ngày {r} / The certificate expires on {e}: renew it by {r}", e = date(expires), r = date(renew_by))
            }
            Verdict::Allowed {
                warning: Some(ExpiryWarning::RenewalClosed { expires, .. }),
                ..
            } => {
                tracing::warn!(token = %token_serial, cert_serial = %facts.serial, holder = %holder, "Chứng thư số hết hạn ngày {e} và không còn gia hạn được: cần cấp chứng thư mới / The certificate expires on {e} and can no longer be renewed: a new certificate is needed", e = date(expires))
            }
            Verdict::Allowed { warning: None, .. } => {}
        }
        out.push(CertificateStatus {
            id: hex_lower(&id),
            holder,
            serial: facts.serial.clone(),
            class: class.name().to_string(),
            not_before: facts.not_before,
            not_after: facts.not_after,
            renew_by,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(uid: Option<&str>, not_before: i64, not_after: i64) -> CertFacts {
        CertFacts {
            serial: "1a2b".into(),
            common_name: Some("NGUYEN VAN A".into()),
            organisation: Some("UBND Tinh Demo".into()),
            uid: uid.map(str::to_string),
            not_before,
            not_after,
        }
    }

    const NOW: i64 = 1_800_000_000;

    /// An organisation certificate from the fixture's demo CA (`openssl ca`, valid
    /// 2025-01-01 to 2027-01-01, `UID=MST:0101234567`).
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
    fn validity_is_checked_first() {
        let c = cert(Some("CCCD:1"), NOW + 10, NOW + 400 * DAY);
        assert_eq!(
            decide(&c, None, NOW, 60),
            Verdict::NotYetValid {
                not_before: NOW + 10
            }
        );
        let c = cert(Some("MST:1"), NOW - 400 * DAY, NOW - 1);
        assert_eq!(
            decide(&c, Some(CertClass::Personal), NOW, 60),
            Verdict::Expired { not_after: NOW - 1 }
        );
        // The bounds themselves are inside the period.
        let c = cert(None, NOW, NOW + 400 * DAY);
        assert!(matches!(decide(&c, None, NOW, 60), Verdict::Allowed { .. }));
    }

    #[test]
    fn class_from_uid_and_override() {
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
        let c = cert(Some("MST:0101234567"), NOW - DAY, NOW + 400 * DAY);
        assert_eq!(
            decide(&c, None, NOW, 60),
            Verdict::Allowed {
                class: CertClass::Organisation,
                warning: None
            }
        );
        assert_eq!(
            decide(&c, Some(CertClass::Other), NOW, 60),
            Verdict::Allowed {
                class: CertClass::Other,
                warning: None
            }
        );
    }

    #[test]
    fn expiry_warnings_give_the_renew_by_date() {
        let expires = NOW + 45 * DAY;
        let c = cert(Some("CCCD:1"), NOW - DAY, expires);
        assert_eq!(
            decide(&c, None, NOW, 60),
            Verdict::Allowed {
                class: CertClass::Personal,
                warning: Some(ExpiryWarning::RenewBy {
                    expires,
                    renew_by: expires - 30 * DAY
                })
            }
        );
        assert_eq!(
            decide(&c, None, NOW, 30),
            Verdict::Allowed {
                class: CertClass::Personal,
                warning: None
            }
        );
        let expires = NOW + 20 * DAY;
        let c = cert(Some("CCCD:1"), NOW - DAY, expires);
        assert_eq!(
            decide(&c, None, NOW, 60),
            Verdict::Allowed {
                class: CertClass::Personal,
                warning: Some(ExpiryWarning::RenewalClosed {
                    expires,
                    renew_by: expires - 30 * DAY
                })
            }
        );
    }

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_800_000_000), "2027-01-15");
        assert_eq!(date(-DAY), "1969-12-31");
    }

    #[test]
    fn a_real_certificate_parses() {
        let der = hex::decode(ORG_CERT_HEX).unwrap();
        let facts = parse_certificate(&der).unwrap();
        assert_eq!(facts.serial, "d30f6fa4cc93706b");
        assert_eq!(facts.common_name.as_deref(), Some("UBND TINH DEMO"));
        assert_eq!(facts.organisation.as_deref(), Some("UBND Tinh Demo"));
        assert_eq!(facts.uid.as_deref(), Some("MST:0101234567"));
        assert_eq!(facts.not_before, 1_735_689_600);
        assert_eq!(facts.not_after, 1_798_761_600);
        assert_eq!(class_of_uid(facts.uid.as_deref()), CertClass::Organisation);
        assert!(parse_certificate(&der[..der.len() - 1]).is_err());
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(parse_certificate(b"").is_err());
        assert!(parse_certificate(&[0x30, 0x82, 0xff, 0xff, 0]).is_err());
    }
}
