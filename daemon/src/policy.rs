//! The signing policy: whether a signature with a certificate may go ahead, judged before every
//! `C_SignInit` and `C_SignRecoverInit`.
//!
//! A certificate outside its validity period is refused: under Vietnamese law such a signature
//! has no legal value. The class comes from the subject's `UID` (see [`crate::certs`]),
//! overridable per certificate serial in `[policy] classes`; with `[policy]
//! confirm_organisation = true` an organisation signature needs the user's confirmation.
//! Certificates close to expiry sign, with a warning naming the renew-by date. The policy only
//! decides; the caller logs, asks and journals.

use cryptoki_sys as ck;
use kyso_proto::standing::{certificate_standing, Standing};

use crate::certs::{class_of_uid, date, CertFacts};
use crate::config::{CertClass, PolicyConfig};
use crate::error::Rv;

/// Why a signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotYetValid { not_before: i64 },
    Expired { not_after: i64 },
}

impl Refusal {
    /// What the application gets instead of starting the operation.
    pub fn rv(&self) -> Rv {
        Rv(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
    }

    /// What the user is told (Vietnamese, then English).
    pub fn message(&self) -> String {
        match *self {
            Refusal::NotYetValid { not_before } => {
                let d = date(not_before);
                format!("Từ chối ký: chứng thư số chưa có hiệu lực (hiệu lực từ ngày {d}); chữ ký số tạo lúc này không có giá trị pháp lý / Signature refused: the certificate is not yet valid (valid from {d}); such a signature has no legal value")
            }
            Refusal::Expired { not_after } => {
                let d = date(not_after);
                format!("Từ chối ký: chứng thư số đã hết hạn ngày {d}; chữ ký số tạo bằng chứng thư này không có giá trị pháp lý / Signature refused: the certificate expired on {d}; such a signature has no legal value")
            }
        }
    }
}

/// The policy's decision on one signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Refuse(Refusal),
    /// The signature may go ahead; `warning` is the certificate's standing when the user
    /// should hear of it (renew by a date, or too late to renew).
    Allow {
        class: CertClass,
        warning: Option<Standing>,
    },
    /// The signature may go ahead once the user confirms it (an organisation's seal).
    Confirm {
        class: CertClass,
        warning: Option<Standing>,
    },
}

/// The policy with its configuration.
#[derive(Default)]
pub struct Policy {
    config: PolicyConfig,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Policy {
        Policy { config }
    }

    /// The certificate's class: configured for its serial, else from its `UID`.
    pub fn class_of(&self, cert: &CertFacts) -> CertClass {
        self.config
            .classes
            .iter()
            .find(|(k, _)| kyso_proto::normalise_serial(k) == cert.serial)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| class_of_uid(cert.uid.as_deref()))
    }

    /// Judges a signature with `cert` at `now` (seconds since the epoch): validity first, then
    /// the class and any expiry warning.
    pub fn judge(&self, cert: &CertFacts, now: i64) -> Verdict {
        if now < cert.not_before {
            return Verdict::Refuse(Refusal::NotYetValid {
                not_before: cert.not_before,
            });
        }
        if now > cert.not_after {
            return Verdict::Refuse(Refusal::Expired {
                not_after: cert.not_after,
            });
        }
        let class = self.class_of(cert);
        let warning = match certificate_standing(cert.not_after, now, self.config.warn_days) {
            Standing::Valid => None,
            standing => Some(standing),
        };
        if class == CertClass::Organisation && self.config.confirm_organisation {
            Verdict::Confirm { class, warning }
        } else {
            Verdict::Allow { class, warning }
        }
    }
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
            public_key: None,
        }
    }

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = kyso_proto::dates::DAY;

    fn policy(warn_days: u32, confirm_organisation: bool) -> Policy {
        Policy::new(PolicyConfig {
            warn_days,
            confirm_organisation,
            ..Default::default()
        })
    }

    #[test]
    fn validity_is_checked_first() {
        let p = policy(60, true);
        let c = cert(Some("CCCD:1"), NOW + 10, NOW + 400 * DAY);
        assert_eq!(
            p.judge(&c, NOW),
            Verdict::Refuse(Refusal::NotYetValid {
                not_before: NOW + 10
            })
        );
        let c = cert(Some("MST:1"), NOW - 400 * DAY, NOW - 1);
        assert_eq!(
            p.judge(&c, NOW),
            Verdict::Refuse(Refusal::Expired { not_after: NOW - 1 })
        );
        // The bounds themselves are inside the period.
        let c = cert(None, NOW, NOW + 400 * DAY);
        assert!(matches!(p.judge(&c, NOW), Verdict::Allow { .. }));
    }

    #[test]
    fn organisation_signatures_need_confirmation_when_configured() {
        let c = cert(Some("MST:0101234567"), NOW - DAY, NOW + 400 * DAY);
        assert_eq!(
            policy(60, true).judge(&c, NOW),
            Verdict::Confirm {
                class: CertClass::Organisation,
                warning: None
            }
        );
        assert_eq!(
            policy(60, false).judge(&c, NOW),
            Verdict::Allow {
                class: CertClass::Organisation,
                warning: None
            }
        );
        let personal = cert(Some("CCCD:1"), NOW - DAY, NOW + 400 * DAY);
        assert!(matches!(
            policy(60, true).judge(&personal, NOW),
            Verdict::Allow { .. }
        ));
    }

    #[test]
    fn a_configured_class_overrides_the_uid() {
        let mut config = PolicyConfig {
            confirm_organisation: true,
            ..Default::default()
        };
        config.classes.insert("1A:2B".into(), CertClass::Other);
        let p = Policy::new(config);
        let c = cert(Some("MST:0101234567"), NOW - DAY, NOW + 400 * DAY);
        assert_eq!(
            p.judge(&c, NOW),
            Verdict::Allow {
                class: CertClass::Other,
                warning: None
            }
        );
    }

    #[test]
    fn expiry_warnings_follow_the_certificates_standing() {
        let expires = NOW + 45 * DAY;
        let c = cert(Some("CCCD:1"), NOW - DAY, expires);
        assert_eq!(
            policy(60, false).judge(&c, NOW),
            Verdict::Allow {
                class: CertClass::Personal,
                warning: Some(Standing::RenewBy)
            }
        );
        assert!(Standing::RenewBy
            .text(expires)
            .contains(&date(expires - 30 * DAY)));
        assert_eq!(
            policy(30, false).judge(&c, NOW),
            Verdict::Allow {
                class: CertClass::Personal,
                warning: None
            }
        );
        // Inside the last 30 days renewal is closed, whatever the warning window.
        let c = cert(Some("CCCD:1"), NOW - DAY, NOW + 20 * DAY);
        for warn_days in [10, 60] {
            assert_eq!(
                policy(warn_days, false).judge(&c, NOW),
                Verdict::Allow {
                    class: CertClass::Personal,
                    warning: Some(Standing::TooLateToRenew)
                }
            );
        }
    }

    #[test]
    fn refusals_say_why_in_both_languages() {
        let m = Refusal::Expired { not_after: NOW }.message();
        assert!(
            m.contains("đã hết hạn") && m.contains("expired on 2027-01-15"),
            "{m}"
        );
        assert_eq!(
            Refusal::Expired { not_after: NOW }.rv(),
            Rv(ck::CKR_KEY_FUNCTION_NOT_PERMITTED)
        );
    }
}
