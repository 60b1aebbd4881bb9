//! Where a certificate stands at a given time, judged once for every place kyso reports it.
//!
//! Decree 68 lets a certificate be renewed only while at least [`RENEWAL_DAYS`] of its
//! validity remain, so a certificate has a renew-by instant, `not_after − 30 days`, and passes
//! through four standings:
//!
//! | standing | from | until |
//! |---|---|---|
//! | [`Standing::Valid`] | | the warning window opens (`not_after − warn_days`) |
//! | [`Standing::RenewBy`] | the warning window opens | `renew_by`, included |
//! | [`Standing::TooLateToRenew`] | just after `renew_by` | `not_after`, included |
//! | [`Standing::Expired`] | just after `not_after` | |
//!
//! `not_after` itself is the last valid second (RFC 5280). The warning window is kysod's
//! `[policy] warn_days` before expiry; with `warn_days` of 30 or less it opens only once renewal
//! is closed, and the certificate goes from valid straight to too late to renew.

use serde::{Deserialize, Serialize};

use crate::dates::{self, DAY};

/// Days of validity a renewal needs left.
pub const RENEWAL_DAYS: i64 = 30;

/// kysod's `[policy] warn_days` when the configuration does not set it.
pub const DEFAULT_WARN_DAYS: u32 = 60;

/// The last instant a certificate ending at `not_after` may be renewed.
pub fn renew_by(not_after: i64) -> i64 {
    not_after.saturating_sub(RENEWAL_DAYS * DAY)
}

/// A certificate's standing; its JSON form is its [`Standing::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Valid, and expiry is further away than the warning window.
    Valid,
    /// Inside the warning window, and renewal is still allowed: renew by [`renew_by`].
    RenewBy,
    /// Still valid, but renewal is closed: a new certificate must be requested before expiry.
    TooLateToRenew,
    /// Past its end of validity: signatures made with it have no legal value.
    Expired,
}

/// The standing at `now` of a certificate valid until `not_after` (both Unix seconds), with a
/// warning window of `warn_days` before expiry.
pub fn certificate_standing(not_after: i64, now: i64, warn_days: u32) -> Standing {
    if now > not_after {
        Standing::Expired
    } else if now > renew_by(not_after) {
        Standing::TooLateToRenew
    } else if not_after.saturating_sub(now) <= i64::from(warn_days) * DAY {
        Standing::RenewBy
    } else {
        Standing::Valid
    }
}

impl Standing {
    /// The machine name: `valid`, `renew_by`, `too_late_to_renew` or `expired`.
    pub fn name(self) -> &'static str {
        match self {
            Standing::Valid => "valid",
            Standing::RenewBy => "renew_by",
            Standing::TooLateToRenew => "too_late_to_renew",
            Standing::Expired => "expired",
        }
    }

    /// What the standing means for a certificate valid until `not_after`, in Vietnamese.
    pub fn vietnamese(self, not_after: i64) -> String {
        let (expiry, renew_by) = (dates::date(not_after), dates::date(renew_by(not_after)));
        match self {
            Standing::Valid => format!("hết hạn ngày {expiry}; gia hạn trước ngày {renew_by}"),
            Standing::RenewBy => {
                format!("sắp hết hạn (ngày {expiry}): hãy gia hạn trước ngày {renew_by}")
            }
            Standing::TooLateToRenew => {
                format!("quá hạn gia hạn: hãy đề nghị cấp chứng thư số mới trước ngày {expiry}")
            }
            Standing::Expired => {
                format!("đã hết hạn ngày {expiry}: không còn giá trị pháp lý")
            }
        }
    }

    /// What the standing means for a certificate valid until `not_after`, in English.
    pub fn english(self, not_after: i64) -> String {
        let (expiry, renew_by) = (dates::date(not_after), dates::date(renew_by(not_after)));
        match self {
            Standing::Valid => format!("expires on {expiry}; renew by {renew_by}"),
            Standing::RenewBy => format!("expires soon ({expiry}): renew by {renew_by}"),
            Standing::TooLateToRenew => {
                format!("too late to renew: request a new certificate before {expiry}")
            }
            Standing::Expired => format!("expired on {expiry}: no legal value"),
        }
    }

    /// Vietnamese, then English: `vietnamese / english`.
    pub fn text(self, not_after: i64) -> String {
        format!(
            "{} / {}",
            self.vietnamese(not_after),
            self.english(not_after)
        )
    }
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2027-01-15T08:00:00Z.
    const EXPIRY: i64 = 1_800_000_000;
    const WARN: u32 = 60;

    fn at(now: i64) -> Standing {
        certificate_standing(EXPIRY, now, WARN)
    }

    #[test]
    fn exactly_thirty_days_left_is_still_renewable() {
        let renew_by = EXPIRY - 30 * DAY;
        assert_eq!(super::renew_by(EXPIRY), renew_by);
        assert_eq!(at(renew_by - 1), Standing::RenewBy);
        assert_eq!(at(renew_by), Standing::RenewBy);
        assert_eq!(at(renew_by + 1), Standing::TooLateToRenew);
    }

    #[test]
    fn the_expiry_instant_is_the_last_valid_second() {
        assert_eq!(at(EXPIRY - 1), Standing::TooLateToRenew);
        assert_eq!(at(EXPIRY), Standing::TooLateToRenew);
        assert_eq!(at(EXPIRY + 1), Standing::Expired);
        assert_eq!(at(i64::MAX), Standing::Expired);
    }

    #[test]
    fn the_warning_window_opens_warn_days_before_expiry() {
        let opens = EXPIRY - i64::from(WARN) * DAY;
        assert_eq!(at(opens - 1), Standing::Valid);
        assert_eq!(at(opens), Standing::RenewBy);
        assert_eq!(at(i64::MIN), Standing::Valid);
        // A window no wider than the renewal cut-off: valid until renewal closes.
        let now = EXPIRY - 30 * DAY;
        assert_eq!(certificate_standing(EXPIRY, now, 30), Standing::RenewBy);
        assert_eq!(certificate_standing(EXPIRY, now, 20), Standing::Valid);
        assert_eq!(
            certificate_standing(EXPIRY, now + 1, 20),
            Standing::TooLateToRenew
        );
        assert_eq!(certificate_standing(EXPIRY, now, 0), Standing::Valid);
    }

    #[test]
    fn extreme_times_are_judged_without_overflow() {
        assert_eq!(
            certificate_standing(i64::MIN, 0, u32::MAX),
            Standing::Expired
        );
        assert_eq!(
            certificate_standing(i64::MAX, i64::MIN, u32::MAX),
            Standing::Valid
        );
        assert_eq!(
            certificate_standing(i64::MAX, i64::MAX - DAY, 0),
            Standing::TooLateToRenew
        );
    }

    #[test]
    fn texts_are_vietnamese_then_english_with_the_dates() {
        assert_eq!(
            Standing::RenewBy.text(EXPIRY),
            "sắp hết hạn (ngày 2027-01-15): hãy gia hạn trước ngày 2026-12-16 / expires soon (2027-01-15): renew by 2026-12-16"
        );
        assert_eq!(
            Standing::TooLateToRenew.english(EXPIRY),
            "too late to renew: request a new certificate before 2027-01-15"
        );
        assert!(Standing::Expired.text(EXPIRY).contains("no legal value"));
        assert_eq!(
            Standing::Valid.english(EXPIRY),
            "expires on 2027-01-15; renew by 2026-12-16"
        );
    }

    #[test]
    fn names_are_the_json_form() {
        for s in [
            Standing::Valid,
            Standing::RenewBy,
            Standing::TooLateToRenew,
            Standing::Expired,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.name()));
            assert_eq!(serde_json::from_str::<Standing>(&json).unwrap(), s);
            assert_eq!(s.to_string(), s.name());
        }
    }
}
