//! `kyso report`: the half-yearly signature-use report and the certificate expiry list, read
//! from kysod's audit journal after its hash chain is verified.
//!
//! Only signatures that were made (`result` `CKR_OK`) are counted. The expiry list holds every
//! certificate the journal saw up to the end of the period, on a token (`certificate_seen`) or
//! signing, whether or not it signed. Each certificate's standing
//! ([`kyso_proto::standing`]) is judged at the end of the day the report is made (`--today`
//! overrides it), because the list tells IT staff what to do now, whatever period the
//! counts cover.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kyso_proto::audit::{self, AuditEntry, AuditEvent};
use kyso_proto::dates::{self, Date};
use kyso_proto::standing::{self, certificate_standing, Standing};
use serde::Serialize;
use time::Month;

/// The days a report covers, both inclusive, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Date,
}

/// Why no report was made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the audit journal's hash chain is broken at line {line}: {problem}; no report is made from a changed journal (nhật ký đã bị sửa)")]
    BrokenChain { line: usize, problem: String },
    #[error("line {line}: {problem}")]
    BadEntry { line: usize, problem: String },
    #[error("{0}")]
    BadArgument(String),
}

impl Period {
    /// `--half YYYY-H1` (1 January – 30 June) or `YYYY-H2` (1 July – 31 December).
    pub fn half(text: &str) -> Result<Period, ReportError> {
        let bad = || {
            ReportError::BadArgument(format!(
                "--half {text}: expected YEAR-H1 or YEAR-H2, e.g. 2026-H1"
            ))
        };
        let (year, half) = text.split_once('-').ok_or_else(bad)?;
        let year: i32 = year.parse().map_err(|_| bad())?;
        let (from, to) = match half {
            "H1" | "h1" => ((Month::January, 1), (Month::June, 30)),
            "H2" | "h2" => ((Month::July, 1), (Month::December, 31)),
            _ => return Err(bad()),
        };
        let day = |(m, d)| Date::from_calendar_date(year, m, d).map_err(|_| bad());
        Ok(Period {
            from: day(from)?,
            to: day(to)?,
        })
    }

    /// `--from DATE --to DATE`; `from` must not be after `to`.
    pub fn between(from: &str, to: &str) -> Result<Period, ReportError> {
        let period = Period {
            from: parse_day(from)?,
            to: parse_day(to)?,
        };
        if period.from > period.to {
            return Err(ReportError::BadArgument(format!(
                "--from {from} is after --to {to}"
            )));
        }
        Ok(period)
    }

    fn contains(&self, day: Date) -> bool {
        self.from <= day && day <= self.to
    }
}

/// A `YYYY-MM-DD` date.
pub fn parse_day(text: &str) -> Result<Date, ReportError> {
    dates::parse_day(text)
        .ok_or_else(|| ReportError::BadArgument(format!("{text}: expected a date as YYYY-MM-DD")))
}

/// One certificate's line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateUse {
    /// `CN, O` of the certificate's subject.
    pub subject: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// `personal`, `organisation` or `other`.
    pub class: String,
    /// Signatures made in the period (0 for a certificate only seen on a token).
    pub signatures: u64,
    /// Signatures made in the period, per signing program.
    pub by_application: BTreeMap<String, u64>,
    /// End of validity, RFC 3339 UTC, when the journal recorded it.
    pub not_after: Option<String>,
    /// The last day a renewal may be asked for: `not_after` − 30 days (`YYYY-MM-DD`).
    pub renew_by: Option<String>,
    /// Whether the certificate's validity has ended by the end of the report's day.
    pub expired: bool,
    /// The certificate's standing at the end of the report's day; `None` when the journal
    /// gives no readable end of validity.
    pub status: Option<Standing>,
}

/// Signatures in the period per certificate class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub personal: u64,
    pub organisation: u64,
    pub other: u64,
    pub all: u64,
}

/// A recovery-related event in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    pub time: String,
    /// `recovery_request`, `recovery_apply`, `unlock` or `wipe`.
    pub event: String,
    pub token_serial: Option<String>,
    pub token_label: Option<String>,
    pub case_ref: Option<String>,
    pub detail: Option<String>,
    pub result: Option<String>,
}

/// The whole report; its JSON form is what `--format json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// The day expiry is judged against.
    pub today: String,
    /// Every certificate the journal has seen, on a token or signing, up to the end of the
    /// period (also those with no signature in it, so the expiry list is complete), ordered by
    /// subject.
    pub certificates: Vec<CertificateUse>,
    pub totals: Totals,
    pub recoveries: Vec<Recovery>,
    /// The journal this report was made from, pinned by its chain's head: handed in with the
    /// report, `kyso audit verify --head` later shows the journal still holds it.
    pub journal: JournalHead,
}

/// A journal's chain head: how many entries, and the hash of the last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalHead {
    pub entries: usize,
    pub head: String,
}

/// The classes a report counts; anything else, or none, counts as `other`.
fn class_of(entry: &AuditEntry) -> &'static str {
    match entry.class.as_deref() {
        Some("personal") => "personal",
        Some("organisation") | Some("organization") => "organisation",
        _ => "other",
    }
}

/// Verifies `journal`'s chain, then builds the report for `period`, with each certificate's
/// standing judged at the end of `today` with kysod's warning window of `warn_days`.
pub fn build(
    journal: &[u8],
    period: Period,
    today: Date,
    warn_days: u32,
) -> Result<Report, ReportError> {
    let verified = audit::verify_bytes(journal).map_err(|e| ReportError::BrokenChain {
        line: e.line,
        problem: e.problem.to_string(),
    })?;

    let mut certs: BTreeMap<String, CertificateUse> = BTreeMap::new();
    let mut totals = Totals::default();
    let mut recoveries = Vec::new();

    for (i, line) in journal
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let n = i + 1;
        let entry: AuditEntry =
            serde_json::from_slice(line).map_err(|e| ReportError::BadEntry {
                line: n,
                problem: e.to_string(),
            })?;
        let when = dates::parse_rfc3339(&entry.time).ok_or_else(|| ReportError::BadEntry {
            line: n,
            problem: format!("time {:?} is not RFC 3339", entry.time),
        })?;
        let day = dates::day(when);
        if day > period.to {
            // The journal is in time order, but a clock set back must not hide anything: keep
            // reading rather than stopping here.
            continue;
        }
        match entry.event {
            AuditEvent::Signature | AuditEvent::CertificateSeen => {
                let Some(serial) = entry.cert_serial.as_deref() else {
                    continue;
                };
                let class = class_of(&entry);
                let cert = certs
                    .entry(kyso_proto::normalise_serial(serial))
                    .or_insert_with(|| CertificateUse {
                        subject: String::new(),
                        serial: serial.to_ascii_lowercase(),
                        class: class.into(),
                        signatures: 0,
                        by_application: BTreeMap::new(),
                        not_after: None,
                        renew_by: None,
                        expired: false,
                        status: None,
                    });
                // The latest entry describes the certificate best.
                if let Some(subject) = &entry.cert_subject {
                    cert.subject.clone_from(subject);
                }
                cert.class = class.into();
                if let Some(not_after) = &entry.cert_not_after {
                    cert.not_after = Some(not_after.clone());
                }
                if entry.event == AuditEvent::Signature
                    && entry.result.as_deref() == Some("CKR_OK")
                    && period.contains(day)
                {
                    cert.signatures += 1;
                    let app = entry.application.clone().unwrap_or_else(|| "?".into());
                    *cert.by_application.entry(app).or_default() += 1;
                    totals.all += 1;
                    match class {
                        "personal" => totals.personal += 1,
                        "organisation" => totals.organisation += 1,
                        _ => totals.other += 1,
                    }
                }
            }
            AuditEvent::RecoveryRequest
            | AuditEvent::RecoveryApply
            | AuditEvent::Unlock
            | AuditEvent::Wipe
                if period.contains(day) =>
            {
                recoveries.push(Recovery {
                    time: entry.time.clone(),
                    event: event_name(entry.event),
                    token_serial: entry.token_serial.clone(),
                    token_label: entry.token_label.clone(),
                    case_ref: entry.case_ref.clone(),
                    detail: entry.detail.clone(),
                    result: entry.result.clone(),
                });
            }
            _ => {}
        }
    }

    // A certificate whose validity ends during the report's day is already of no use for that
    // day's work: judged at the day's last second, it counts as expired.
    let judged_at = dates::end_of(today);
    let mut certificates: Vec<CertificateUse> = certs.into_values().collect();
    for cert in &mut certificates {
        let Some(end) = cert.not_after.as_deref().and_then(dates::parse_rfc3339) else {
            continue;
        };
        let status = certificate_standing(end, judged_at, warn_days);
        cert.renew_by = Some(dates::date(standing::renew_by(end)));
        cert.expired = status == Standing::Expired;
        cert.status = Some(status);
    }
    certificates.sort_by(|a, b| (&a.subject, &a.serial).cmp(&(&b.subject, &b.serial)));

    Ok(Report {
        from: dates::format_day(period.from),
        to: dates::format_day(period.to),
        today: dates::format_day(today),
        certificates,
        totals,
        recoveries,
        journal: JournalHead {
            entries: verified.entries,
            head: verified.last_hash,
        },
    })
}

fn event_name(event: AuditEvent) -> String {
    serde_json::to_value(event)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The report as pretty JSON.
pub fn to_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default() + "\n"
}

/// The report as one CSV table: the `record` column says what a row is (`certificate`,
/// `application`, `total`, `recovery`, `journal`) and each kind fills its own columns (the
/// journal row: its entries under `signatures`, its chain head under `detail`).
pub fn to_csv(report: &Report) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "record",
        "subject",
        "serial",
        "class",
        "application",
        "signatures",
        "not_after",
        "renew_by",
        "status",
        "time",
        "event",
        "token_serial",
        "case_ref",
        "detail",
        "result",
    ])?;
    let o = |s: &Option<String>| s.clone().unwrap_or_default();
    for c in &report.certificates {
        let status = c.status.map(Standing::name).unwrap_or_default();
        w.write_record([
            "certificate",
            &c.subject,
            &c.serial,
            &c.class,
            "",
            &c.signatures.to_string(),
            &o(&c.not_after),
            &o(&c.renew_by),
            status,
            "",
            "",
            "",
            "",
            "",
            "",
        ])?;
        for (app, n) in &c.by_application {
            w.write_record([
                "application",
                &c.subject,
                &c.serial,
                &c.class,
                app,
                &n.to_string(),
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
            ])?;
        }
    }
    let t = &report.totals;
    for (class, n) in [
        ("personal", t.personal),
        ("organisation", t.organisation),
        ("other", t.other),
        ("all", t.all),
    ] {
        w.write_record([
            "total",
            "",
            "",
            class,
            "",
            &n.to_string(),
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ])?;
    }
    for r in &report.recoveries {
        w.write_record([
            "recovery",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            &r.time,
            &r.event,
            &o(&r.token_serial),
            &o(&r.case_ref),
            &o(&r.detail),
            &o(&r.result),
        ])?;
    }
    let entries = report.journal.entries.to_string();
    w.write_record([
        "journal",
        "",
        "",
        "",
        "",
        &entries,
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        &report.journal.head,
        "",
    ])?;
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The widest table line.
pub const TABLE_WIDTH: usize = 80;

/// `text` cut to `width` characters (with `…` when cut) and padded to it.
fn cell(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        format!("{text}{}", " ".repeat(width - n))
    } else {
        let cut: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The last part of a program path: the table has no room for the whole of it.
fn program(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The report for a person on an 80-column terminal: Vietnamese labels, English below them.
pub fn to_table(report: &Report) -> String {
    let mut out = String::new();
    let rule = "-".repeat(TABLE_WIDTH - 1);
    let _ = writeln!(
        out,
        "BÁO CÁO SỬ DỤNG CHỮ KÝ SỐ  {} – {}",
        report.from, report.to
    );
    let _ = writeln!(out, "Digital signature use report");
    let _ = writeln!(out, "Chỉ tính chữ ký đã tạo thành công (kết quả CKR_OK)");
    let _ = writeln!(out, "Only signatures made (result CKR_OK) are counted");
    let _ = writeln!(out);

    // Signatures per certificate.
    let _ = writeln!(out, "1. Chữ ký theo chứng thư số");
    let _ = writeln!(out, "   Signatures per certificate");
    for l in [
        ["Chủ thể / Số hiệu", "Loại", "Số chữ ký"],
        ["Subject / Serial", "Class", "Signatures"],
    ] {
        let _ = writeln!(out, "{} {} {:>10}", cell(l[0], 54), cell(l[1], 12), l[2]);
    }
    let _ = writeln!(out, "{rule}");
    let mut any = false;
    for c in report.certificates.iter().filter(|c| c.signatures > 0) {
        any = true;
        let _ = writeln!(
            out,
            "{} {} {:>10}",
            cell(&c.subject, 54),
            cell(&c.class, 12),
            c.signatures
        );
        let _ = writeln!(out, "  {}", cell(&c.serial, TABLE_WIDTH - 3).trim_end());
        for (app, n) in &c.by_application {
            let _ = writeln!(out, "    {} {:>10}", cell(program(app), 63), n);
        }
    }
    if !any {
        let _ = writeln!(out, "(không có / none)");
    }
    let _ = writeln!(out);

    // Totals per class.
    let _ = writeln!(out, "2. Tổng theo loại chứng thư số");
    let _ = writeln!(out, "   Totals per certificate class");
    let t = &report.totals;
    for (vi, en, n) in [
        ("Cá nhân", "personal", t.personal),
        ("Tổ chức", "organisation", t.organisation),
        ("Khác", "other", t.other),
        ("Tổng cộng", "all", t.all),
    ] {
        let _ = writeln!(out, "   {} {:>10}", cell(&format!("{vi} / {en}"), 30), n);
    }
    let _ = writeln!(out);

    // Expiry list.
    let _ = writeln!(out, "3. Thời hạn chứng thư số (tính đến {})", report.today);
    let _ = writeln!(out, "   Certificate expiry (as of {})", report.today);
    for l in [
        [
            "Chủ thể / Số hiệu",
            "Hết hạn",
            "Gia hạn trước",
            "Tình trạng",
        ],
        ["Subject / Serial", "Expires", "Renew by", "Status"],
    ] {
        let _ = writeln!(
            out,
            "{} {} {} {}",
            cell(l[0], 36),
            cell(l[1], 10),
            cell(l[2], 13),
            l[3]
        );
    }
    let _ = writeln!(out, "{rule}");
    if report.certificates.is_empty() {
        let _ = writeln!(out, "(không có / none)");
    }
    for c in &report.certificates {
        let expires = c.not_after.as_deref().map(|s| s.get(..10).unwrap_or(s));
        let status = match c.status {
            Some(Standing::Valid) => "còn hạn/valid",
            Some(Standing::RenewBy) => "GIA HẠN/renew",
            Some(Standing::TooLateToRenew) => "CẤP MỚI/too late",
            Some(Standing::Expired) => "HẾT HẠN/expired",
            None => "?",
        };
        let _ = writeln!(
            out,
            "{} {} {} {}",
            cell(&c.subject, 36),
            cell(expires.unwrap_or("?"), 10),
            cell(c.renew_by.as_deref().unwrap_or("?"), 13),
            status
        );
        let _ = writeln!(out, "  {}", cell(&c.serial, TABLE_WIDTH - 3).trim_end());
        // What to do, for the certificates that need something done.
        let end = c.not_after.as_deref().and_then(dates::parse_rfc3339);
        if let (Some(status), Some(end)) = (c.status.filter(|s| *s != Standing::Valid), end) {
            for line in [status.vietnamese(end), status.english(end)] {
                let _ = writeln!(out, "  {}", cell(&line, TABLE_WIDTH - 3).trim_end());
            }
        }
    }
    let _ = writeln!(out);

    // Recoveries.
    let _ = writeln!(out, "4. Khôi phục thiết bị lưu khóa bí mật");
    let _ = writeln!(out, "   Token recoveries");
    for l in [
        ["Thời gian", "Sự kiện (kết quả)", "Thiết bị"],
        ["Time", "Event (result)", "Token"],
    ] {
        let _ = writeln!(out, "{} {} {}", cell(l[0], 20), cell(l[1], 38), l[2]);
    }
    let _ = writeln!(out, "  Công văn / Case");
    let _ = writeln!(out, "{rule}");
    if report.recoveries.is_empty() {
        let _ = writeln!(out, "(không có / none)");
    }
    for r in &report.recoveries {
        let mut event = r.event.clone();
        if let Some(result) = r.result.as_deref().filter(|r| *r != "CKR_OK") {
            event = format!("{event} ({result})");
        }
        let _ = writeln!(
            out,
            "{} {} {}",
            cell(&r.time, 20),
            cell(&event, 38),
            cell(r.token_serial.as_deref().unwrap_or("?"), 19).trim_end()
        );
        if let Some(case) = &r.case_ref {
            let _ = writeln!(out, "  {}", cell(case, TABLE_WIDTH - 3).trim_end());
        }
    }
    let _ = writeln!(out);
    let entries = report.journal.entries;
    let _ = writeln!(out, "5. Nhật ký kiểm toán: {entries} mục, mã băm cuối");
    let _ = writeln!(out, "   Audit journal: {entries} entries, chain head");
    let _ = writeln!(out, "  {}", report.journal.head);
    let _ = writeln!(
        out,
        "  (kyso audit verify --head <mã băm / head> kiểm tra lại / checks it later)"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration as StdDuration, UNIX_EPOCH};
    use time::macros::date;

    const WARN_DAYS: u32 = standing::DEFAULT_WARN_DAYS;

    fn at(text: &str) -> std::time::SystemTime {
        let t = dates::parse_rfc3339(text).unwrap();
        UNIX_EPOCH + StdDuration::from_secs(t.try_into().unwrap())
    }

    fn sig(time: &str, serial: &str, class: &str, app: &str, result: &str) -> AuditEntry {
        let mut e = AuditEntry::new(AuditEvent::Signature, at(time));
        e.cert_serial = Some(serial.into());
        e.cert_subject = Some(format!("HOLDER {serial}, UBND"));
        e.class = Some(class.into());
        e.cert_not_after = Some("2026-08-15T00:00:00Z".into());
        e.application = Some(app.into());
        e.result = Some(result.into());
        e
    }

    fn chain(entries: Vec<AuditEntry>) -> Vec<u8> {
        let mut prev = audit::GENESIS.to_string();
        let mut out = Vec::new();
        for mut e in entries {
            e.prev = prev;
            let line = e.to_line().unwrap();
            prev = audit::line_hash(line.as_bytes());
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        out
    }

    fn sample() -> Vec<u8> {
        let mut rec = AuditEntry::new(AuditEvent::RecoveryApply, at("2026-03-02T08:00:00Z"));
        rec.case_ref = Some("123/CV-UBND".into());
        rec.token_serial = Some("T1".into());
        rec.result = Some("CKR_OK".into());
        chain(vec![
            sig(
                "2025-12-31T23:59:59Z",
                "0A",
                "personal",
                "/usr/bin/a",
                "CKR_OK",
            ),
            sig(
                "2026-01-01T00:00:00Z",
                "0a",
                "personal",
                "/usr/bin/a",
                "CKR_OK",
            ),
            sig(
                "2026-02-01T00:00:00Z",
                "0a",
                "personal",
                "/usr/bin/b",
                "CKR_OK",
            ),
            sig(
                "2026-02-02T00:00:00Z",
                "0a",
                "personal",
                "/usr/bin/b",
                "CKR_PIN_EXPIRED",
            ),
            sig(
                "2026-06-30T23:59:59Z",
                "1b",
                "organisation",
                "/usr/bin/a",
                "CKR_OK",
            ),
            sig(
                "2026-07-01T00:00:00Z",
                "2c",
                "other",
                "/usr/bin/a",
                "CKR_OK",
            ),
            rec,
        ])
    }

    #[test]
    fn halves_are_the_regulatory_periods() {
        let h1 = Period::half("2026-H1").unwrap();
        assert_eq!(
            (h1.from, h1.to),
            (date!(2026 - 01 - 01), date!(2026 - 06 - 30))
        );
        let h2 = Period::half("2026-H2").unwrap();
        assert_eq!(
            (h2.from, h2.to),
            (date!(2026 - 07 - 01), date!(2026 - 12 - 31))
        );
        for bad in ["2026", "2026-H3", "x-H1", "2026H1", ""] {
            assert!(Period::half(bad).is_err(), "{bad}");
        }
        assert!(Period::between("2026-02-01", "2026-01-31").is_err());
        assert!(Period::between("2026-13-01", "2026-12-31").is_err());
        assert!(Period::between("2026-01-01", "2026-01-01").is_ok());
    }

    #[test]
    fn counts_only_made_signatures_inside_inclusive_days() {
        let r = build(
            &sample(),
            Period::half("2026-H1").unwrap(),
            date!(2026 - 07 - 20),
            WARN_DAYS,
        )
        .unwrap();
        assert_eq!(
            r.totals,
            Totals {
                personal: 2,
                organisation: 1,
                other: 0,
                all: 3
            }
        );
        // The H2 certificate is not seen yet at the end of H1.
        assert_eq!(r.certificates.len(), 2);
        let a = &r.certificates[0];
        assert_eq!((a.serial.as_str(), a.signatures), ("0a", 2));
        assert_eq!(a.by_application["/usr/bin/a"], 1);
        assert_eq!(a.by_application["/usr/bin/b"], 1);
        assert_eq!(a.renew_by.as_deref(), Some("2026-07-16"));
        assert_eq!(a.status, Some(Standing::TooLateToRenew));
        assert_eq!(r.recoveries.len(), 1);
        assert_eq!(r.recoveries[0].case_ref.as_deref(), Some("123/CV-UBND"));
        assert_eq!(r.recoveries[0].event, "recovery_apply");
    }

    #[test]
    fn standing_is_judged_at_the_end_of_the_given_day() {
        // Every sample certificate ends at 2026-08-15T00:00:00Z: renew by 2026-07-16T00:00:00Z.
        let p = Period::half("2026-H2").unwrap();
        let standings = |today: Date, warn_days: u32| -> Vec<(Option<Standing>, bool)> {
            build(&sample(), p, today, warn_days)
                .unwrap()
                .certificates
                .iter()
                .map(|c| (c.status, c.expired))
                .collect()
        };
        let all = |s: Standing| vec![(Some(s), s == Standing::Expired); 3];
        assert_eq!(standings(date!(2026 - 06 - 01), 60), all(Standing::Valid));
        assert_eq!(standings(date!(2026 - 06 - 17), 60), all(Standing::RenewBy));
        assert_eq!(standings(date!(2026 - 07 - 15), 60), all(Standing::RenewBy));
        assert_eq!(standings(date!(2026 - 07 - 15), 20), all(Standing::Valid));
        assert_eq!(
            standings(date!(2026 - 07 - 16), 60),
            all(Standing::TooLateToRenew)
        );
        assert_eq!(
            standings(date!(2026 - 08 - 14), 60),
            all(Standing::TooLateToRenew)
        );
        assert_eq!(standings(date!(2026 - 08 - 15), 60), all(Standing::Expired));
        let after = build(&sample(), p, date!(2026 - 08 - 15), 60).unwrap();
        assert_eq!(after.totals.other, 1);
        assert_eq!(after.totals.all, 1);
    }

    #[test]
    fn certificates_seen_on_a_token_are_listed_without_signatures() {
        let seen = |time: &str, serial: &str, not_after: &str| {
            let mut e = AuditEntry::new(AuditEvent::CertificateSeen, at(time));
            e.token_serial = Some("T1".into());
            e.cert_serial = Some(serial.into());
            e.cert_subject = Some(format!("SEEN {serial}, UBND"));
            e.class = Some("organisation".into());
            e.cert_not_after = Some(not_after.into());
            e
        };
        let journal = chain(vec![
            seen("2026-01-05T08:00:00Z", "5e", "2026-03-01T00:00:00Z"),
            seen("2026-01-05T08:00:00Z", "6f", "2026-07-20T00:00:00Z"),
            sig("2026-02-01T00:00:00Z", "0a", "personal", "/a", "CKR_OK"),
            // Seen again later, with the same facts.
            seen("2026-02-01T08:00:00Z", "6f", "2026-07-20T00:00:00Z"),
            // Seen only after the period: not listed.
            seen("2026-07-02T08:00:00Z", "7a", "2027-01-01T00:00:00Z"),
        ]);
        let r = build(
            &journal,
            Period::half("2026-H1").unwrap(),
            date!(2026 - 06 - 30),
            WARN_DAYS,
        )
        .unwrap();
        let serials: Vec<&str> = r.certificates.iter().map(|c| c.serial.as_str()).collect();
        assert_eq!(serials, ["0a", "5e", "6f"]);
        let expired = &r.certificates[1];
        assert_eq!(expired.signatures, 0);
        assert_eq!(expired.class, "organisation");
        assert_eq!(
            (expired.status, expired.expired),
            (Some(Standing::Expired), true)
        );
        let soon = &r.certificates[2];
        assert_eq!(soon.signatures, 0);
        assert_eq!(soon.renew_by.as_deref(), Some("2026-06-20"));
        assert_eq!(soon.status, Some(Standing::TooLateToRenew));
        assert_eq!(r.totals.all, 1);
        let table = to_table(&r);
        for line in table.lines() {
            assert!(line.chars().count() < TABLE_WIDTH, "too wide: {line}");
        }
        assert!(
            table.contains("too late to renew: request a new certificate before 2026-07-20"),
            "{table}"
        );
        assert!(
            table.contains("expired on 2026-03-01: no legal value"),
            "{table}"
        );
        // Only certificates that signed are in the signature counts.
        let counts = &table[..table.find("2. ").unwrap()];
        assert!(!counts.contains("SEEN"), "{counts}");
    }

    #[test]
    fn a_changed_journal_gives_no_report() {
        let j = String::from_utf8(sample()).unwrap();
        let edited = j.replacen("CKR_PIN_EXPIRED", "CKR_OK", 1);
        match build(
            edited.as_bytes(),
            Period::half("2026-H1").unwrap(),
            date!(2026 - 07 - 01),
            WARN_DAYS,
        ) {
            Err(ReportError::BrokenChain { line, .. }) => assert_eq!(line, 5),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreadable_end_of_validity_is_shown_not_judged() {
        let mut odd = sig("2026-02-01T00:00:00Z", "4d", "personal", "/a", "CKR_OK");
        odd.cert_not_after = Some("ngày 1 tháng 8".into());
        let r = build(
            &chain(vec![odd]),
            Period::half("2026-H1").unwrap(),
            date!(2026 - 07 - 01),
            WARN_DAYS,
        )
        .unwrap();
        let c = &r.certificates[0];
        assert_eq!(
            (c.renew_by.as_deref(), c.status, c.expired),
            (None, None, false)
        );
        assert_eq!(r.totals.all, 1);
        assert!(to_table(&r).contains("ngày 1 th"));
    }

    #[test]
    fn table_fits_eighty_columns_and_csv_has_one_header() {
        let r = build(
            &sample(),
            Period::half("2026-H1").unwrap(),
            date!(2026 - 08 - 20),
            WARN_DAYS,
        )
        .unwrap();
        let table = to_table(&r);
        for line in table.lines() {
            assert!(line.chars().count() < TABLE_WIDTH, "too wide: {line}");
        }
        assert!(table.contains("Chủ thể") && table.contains("Subject"));
        let csv = to_csv(&r).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert!(rows[0].starts_with("record,"));
        assert!(rows.contains(&"total,,,all,,3,,,,,,,,,"), "{csv}");
        assert_eq!(
            rows.iter().filter(|l| l.starts_with("recovery,")).count(),
            1
        );
        let json: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
        assert_eq!(json["totals"]["all"], 3);
        assert_eq!(json["certificates"][0]["class"], "personal");
    }
}
