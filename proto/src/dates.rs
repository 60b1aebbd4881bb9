//! Days and instants as kyso writes and reads them, always in UTC: a day as `YYYY-MM-DD`, an
//! instant as RFC 3339 with whole seconds (`YYYY-MM-DDTHH:MM:SSZ`), and instants in between as
//! Unix seconds (`i64`, as certificates' validity travels on the wire).
//!
//! Every function is total: an instant outside the calendar of the `time` crate (years −9999
//! to 9999) is taken as that calendar's first or last second.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

pub use time::Date;

/// Seconds in a day.
pub const DAY: i64 = 86_400;

const DAY_FORMAT: &[BorrowedFormatItem<'_>] = format_description!("[year]-[month]-[day]");
const INSTANT_FORMAT: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// The current time in Unix seconds.
pub fn now() -> i64 {
    unix_seconds(SystemTime::now())
}

/// `time` in Unix seconds: negative before 1970, saturating at the ends of `i64`.
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn utc(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or_else(|_| {
        if unix < 0 {
            PrimitiveDateTime::MIN.assume_utc()
        } else {
            PrimitiveDateTime::MAX.assume_utc()
        }
    })
}

/// The UTC day of a Unix time.
pub fn day(unix: i64) -> Date {
    utc(unix).date()
}

/// `YYYY-MM-DD`, the UTC day of a Unix time.
pub fn date(unix: i64) -> String {
    format_day(day(unix))
}

/// `day` as `YYYY-MM-DD`.
pub fn format_day(day: Date) -> String {
    day.format(DAY_FORMAT).unwrap_or_else(|_| day.to_string())
}

/// `YYYY-MM-DDTHH:MM:SSZ`, a Unix time in RFC 3339 UTC.
pub fn rfc3339(unix: i64) -> String {
    let t = utc(unix);
    t.format(INSTANT_FORMAT).unwrap_or_else(|_| t.to_string())
}

/// The day `text` names as `YYYY-MM-DD` (a real calendar day), or `None`.
pub fn parse_day(text: &str) -> Option<Date> {
    Date::parse(text, DAY_FORMAT).ok()
}

/// The Unix time of an RFC 3339 timestamp with any offset (fractions of a second dropped), or
/// `None` when `text` is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// The Unix time at which `day` begins (00:00:00 UTC).
pub fn start_of(day: Date) -> i64 {
    day.midnight().assume_utc().unix_timestamp()
}

/// The Unix time of the last second of `day` (23:59:59 UTC).
pub fn end_of(day: Date) -> i64 {
    start_of(day) + DAY - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn days_and_instants_are_utc() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_800_000_000), "2027-01-15");
        assert_eq!(date(-DAY), "1969-12-31");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(rfc3339(1_795_438_074), "2026-11-23T12:47:54Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn extreme_times_are_clamped_not_refused() {
        assert_eq!(date(i64::MAX), "9999-12-31");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(date(i64::MIN), "-9999-01-01");
    }

    #[test]
    fn system_times_become_unix_seconds() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), 5);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
        assert!(now() > 1_700_000_000);
    }

    #[test]
    fn parsing() {
        let d = parse_day("2026-02-28").unwrap();
        assert_eq!(format_day(d), "2026-02-28");
        assert_eq!(start_of(d), 1_772_236_800);
        assert_eq!(end_of(d), 1_772_236_800 + DAY - 1);
        assert_eq!(day(end_of(d)), d);
        for bad in [
            "2026-02-30",
            "2026-2-28",
            "26-02-28",
            "2026-02-28T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        assert_eq!(parse_rfc3339("2026-11-23T12:47:54Z"), Some(1_795_438_074));
        assert_eq!(
            parse_rfc3339("2026-11-23T19:47:54.5+07:00"),
            Some(1_795_438_074)
        );
        assert_eq!(parse_rfc3339("2026-11-23"), None);
        assert_eq!(parse_rfc3339("ngày 1 tháng 8"), None);
    }

    proptest::proptest! {
        #[test]
        fn formatted_instants_parse_back(t in -62_000_000_000i64..250_000_000_000) {
            proptest::prop_assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
            proptest::prop_assert_eq!(parse_day(&date(t)), Some(day(t)));
        }

        #[test]
        fn any_text_parses_without_panic(text in ".{0,40}") {
            let _ = parse_day(&text);
            let _ = parse_rfc3339(&text);
        }
    }
}
