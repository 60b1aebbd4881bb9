//! `kyso report`: exact counts from a hash-chained journal written here with known signatures
//! across two half-years and three certificate classes, in every output format; certificates
//! seen on the token but never used are on the expiry list with their standing; a changed
//! journal gives no report; signatures made through the shim against a real kysod are counted.

use std::path::Path;
use std::process::{Command, Output};
use std::time::UNIX_EPOCH;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use kyso_proto::audit::{self, AuditEntry, AuditEvent};
use kyso_proto::dates;
use kyso_tests::util::find_one;
use kyso_tests::{target_dir, Daemon, Fixture, Module, ID_RSA};
use serde_json::Value;

const LIBREOFFICE: &str = "/usr/lib/libreoffice/program/soffice.bin";
const PKCS11_TOOL: &str = "/usr/bin/pkcs11-tool";
const OPENSSL: &str = "/usr/bin/openssl";

/// A personal certificate, valid well beyond the report days.
const PERSONAL: Cert = Cert {
    serial: "1001",
    subject: "NGUYEN VAN A, UBND Tinh Demo",
    class: "personal",
    not_after: "2027-03-31T16:59:59Z",
};
/// The agency's seal, expiring in the second half-year.
const SEAL: Cert = Cert {
    serial: "2002",
    subject: "UBND TINH DEMO, UBND Tinh Demo",
    class: "organisation",
    not_after: "2026-07-20T00:00:00Z",
};
/// A service certificate that expired during the first half-year.
const SERVICE: Cert = Cert {
    serial: "3003",
    subject: "MAY CHU KY SO, So TTTT Demo",
    class: "other",
    not_after: "2026-05-01T00:00:00Z",
};

/// The agency's former seal, still on the token, never used: expired in the first half-year.
const OLD_SEAL: Cert = Cert {
    serial: "4004",
    subject: "UBND TINH DEMO (CU), UBND Tinh Demo",
    class: "organisation",
    not_after: "2026-03-31T16:59:59Z",
};
/// A spare personal certificate, never used: expires 20 days after 2026-07-01.
const SPARE: Cert = Cert {
    serial: "5005",
    subject: "NGUYEN VAN A (DU PHONG), UBND Tinh Demo",
    class: "personal",
    not_after: "2026-07-21T10:00:00Z",
};

struct Cert {
    serial: &'static str,
    subject: &'static str,
    class: &'static str,
    not_after: &'static str,
}

/// Writes journal entries with a correct hash chain, as kysod does.
struct Journal {
    lines: Vec<String>,
    prev: String,
}

impl Journal {
    fn new() -> Journal {
        Journal {
            lines: Vec::new(),
            prev: audit::GENESIS.to_string(),
        }
    }

    fn push(&mut self, mut e: AuditEntry) {
        e.prev = std::mem::take(&mut self.prev);
        let line = e.to_line().expect("entry serialises");
        self.prev = audit::line_hash(line.as_bytes());
        self.lines.push(line);
    }

    fn entry(event: AuditEvent, time: &str) -> AuditEntry {
        let mut e = AuditEntry::new(event, UNIX_EPOCH);
        e.time = time.into();
        e.uid = Some(1000);
        e.pid = Some(4242);
        e.token_serial = Some("9a3b5c7d00000001".into());
        e.token_label = Some("NGUYEN VAN A".into());
        e
    }

    /// `n` signatures with `cert` by `app` on `day` (`YYYY-MM-DD`), a minute apart from `hour`.
    fn signatures(&mut self, n: usize, cert: &Cert, app: &str, day: &str, result: &str) {
        for i in 0..n {
            let mut e = Journal::entry(
                AuditEvent::Signature,
                &format!("{day}T10:{:02}:00Z", i % 60),
            );
            e.application = Some(app.into());
            e.cert_serial = Some(cert.serial.into());
            e.cert_subject = Some(cert.subject.into());
            e.class = Some(cert.class.into());
            e.cert_not_after = Some(cert.not_after.into());
            e.mechanism = Some("0x40".into());
            e.data_sha256 = Some(audit::sha256_hex(format!("{day}{i}").as_bytes()));
            e.result = Some(result.into());
            self.push(e);
        }
    }

    /// kysod's `certificate_seen` entry for `cert` on the token.
    fn seen(&mut self, cert: &Cert, time: &str) {
        let mut e = Journal::entry(AuditEvent::CertificateSeen, time);
        e.pid = None;
        e.slot = Some(1);
        e.cert_serial = Some(cert.serial.into());
        e.cert_subject = Some(cert.subject.into());
        e.class = Some(cert.class.into());
        e.cert_not_after = Some(cert.not_after.into());
        self.push(e);
    }

    fn event(&mut self, event: AuditEvent, time: &str, case_ref: Option<&str>) {
        let mut e = Journal::entry(event, time);
        e.case_ref = case_ref.map(str::to_string);
        e.result = Some("CKR_OK".into());
        self.push(e);
    }

    fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// The fixture journal. First half of 2026: personal 5 (LibreOffice) + 2 (pkcs11-tool), seal 3,
/// service 1, and two refused personal signatures that do not count; second half: personal 4,
/// seal 6. One on-site unlock in H1, a remote recovery (request and apply) in H2. The token
/// also holds two certificates that never sign (the old seal and the spare one).
fn fixture_journal() -> Journal {
    let mut j = Journal::new();
    j.event(AuditEvent::TokenPresent, "2025-12-30T07:00:00Z", None);
    for cert in [&PERSONAL, &OLD_SEAL, &SPARE] {
        j.seen(cert, "2025-12-30T07:00:01Z");
    }
    // The last second of 2025: outside both half-years of 2026.
    j.signatures(1, &PERSONAL, LIBREOFFICE, "2025-12-31", "CKR_OK");
    j.event(AuditEvent::Login, "2026-01-02T08:00:00Z", None);
    j.signatures(5, &PERSONAL, LIBREOFFICE, "2026-01-02", "CKR_OK");
    j.signatures(2, &PERSONAL, PKCS11_TOOL, "2026-03-15", "CKR_OK");
    j.signatures(
        2,
        &PERSONAL,
        PKCS11_TOOL,
        "2026-03-16",
        "CKR_FUNCTION_FAILED",
    );
    j.event(AuditEvent::LoginFailed, "2026-04-01T08:00:00Z", None);
    j.event(AuditEvent::Lockout, "2026-04-01T08:01:00Z", None);
    j.event(
        AuditEvent::Unlock,
        "2026-04-02T09:00:00Z",
        Some("15/CV-UBND"),
    );
    j.signatures(1, &SERVICE, OPENSSL, "2026-04-20", "CKR_OK");
    j.signatures(2, &SEAL, LIBREOFFICE, "2026-06-01", "CKR_OK");
    // The last day of H1 and the first of H2.
    j.signatures(1, &SEAL, LIBREOFFICE, "2026-06-30", "CKR_OK");
    j.signatures(1, &SEAL, LIBREOFFICE, "2026-07-01", "CKR_OK");
    j.signatures(5, &SEAL, LIBREOFFICE, "2026-07-10", "CKR_OK");
    j.event(
        AuditEvent::RecoveryRequest,
        "2026-09-01T08:00:00Z",
        Some("88/CV-UBND"),
    );
    j.event(
        AuditEvent::RecoveryApply,
        "2026-09-02T08:00:00Z",
        Some("88/CV-UBND"),
    );
    j.signatures(4, &PERSONAL, LIBREOFFICE, "2026-11-20", "CKR_OK");
    j.event(AuditEvent::TokenRemoved, "2026-11-20T17:00:00Z", None);
    j
}

/// `kyso report ARGS --journal JOURNAL`, with kysod's configuration `kysod.toml` beside the
/// journal (see [`write_journal`]).
fn kyso(args: &[&str], journal: &Path) -> Output {
    let path = target_dir().join("kyso");
    assert!(path.exists(), "{} not built", path.display());
    Command::new(path)
        .arg("report")
        .args(args)
        .arg("--journal")
        .arg(journal)
        .arg("--config")
        .arg(journal.with_file_name("kysod.toml"))
        .output()
        .expect("run kyso report")
}

fn ok_stdout(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 report")
}

/// Writes the journal, and beside it a kysod configuration with the default warning window.
fn write_journal(dir: &Path, text: &str) -> std::path::PathBuf {
    write_config(dir, 60);
    let path = dir.join("audit.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

fn write_config(dir: &Path, warn_days: u32) {
    let config = format!("[policy]\nwarn_days = {warn_days}\n");
    std::fs::write(dir.join("kysod.toml"), config).unwrap();
}

fn json_report(args: &[&str], journal: &Path) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    serde_json::from_str(&ok_stdout(&kyso(&all, journal))).expect("JSON report")
}

fn cert<'a>(report: &'a Value, serial: &str) -> &'a Value {
    report["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .find(|c| c["serial"] == serial)
        .unwrap_or_else(|| panic!("certificate {serial} in {report:#}"))
}

#[test]
fn json_counts_per_certificate_class_application_and_half_year() {
    let dir = tempfile::tempdir().unwrap();
    let journal = write_journal(dir.path(), &fixture_journal().text());
    assert!(audit::verify_bytes(fixture_journal().text().as_bytes()).is_ok());

    let h1 = json_report(&["--half", "2026-H1", "--today", "2026-07-01"], &journal);
    assert_eq!(h1["from"], "2026-01-01");
    assert_eq!(h1["to"], "2026-06-30");
    assert_eq!(
        h1["totals"],
        serde_json::json!({"personal": 7, "organisation": 3, "other": 1, "all": 11})
    );
    assert_eq!(h1["certificates"].as_array().unwrap().len(), 5);
    let p = cert(&h1, PERSONAL.serial);
    assert_eq!(p["subject"], PERSONAL.subject);
    assert_eq!(p["class"], "personal");
    assert_eq!(p["signatures"], 7);
    assert_eq!(
        p["by_application"],
        serde_json::json!({LIBREOFFICE: 5, PKCS11_TOOL: 2})
    );
    assert_eq!(p["not_after"], PERSONAL.not_after);
    assert_eq!(p["renew_by"], "2027-03-01");
    assert_eq!(p["expired"], false);
    assert_eq!(p["status"], "valid");
    let seal = cert(&h1, SEAL.serial);
    assert_eq!(
        (&seal["class"], &seal["signatures"]),
        (&"organisation".into(), &3.into())
    );
    // Renew by 2026-06-20, not yet expired on 2026-07-01.
    assert_eq!(seal["renew_by"], "2026-06-20");
    assert_eq!(seal["expired"], false);
    assert_eq!(seal["status"], "too_late_to_renew");
    let service = cert(&h1, SERVICE.serial);
    assert_eq!(service["signatures"], 1);
    assert_eq!(service["class"], "other");
    assert_eq!(service["expired"], true);
    assert_eq!(service["status"], "expired");
    // Seen on the token, never signing: listed, with no signatures, and judged like the others.
    let old = cert(&h1, OLD_SEAL.serial);
    assert_eq!(old["signatures"], 0);
    assert_eq!(old["class"], "organisation");
    assert_eq!(old["not_after"], OLD_SEAL.not_after);
    assert_eq!(old["renew_by"], "2026-03-01");
    assert_eq!(
        (&old["status"], &old["expired"]),
        (&"expired".into(), &true.into())
    );
    let spare = cert(&h1, SPARE.serial);
    assert_eq!(spare["signatures"], 0);
    assert_eq!(spare["renew_by"], "2026-06-21");
    assert_eq!(spare["status"], "too_late_to_renew");
    assert_eq!(spare["expired"], false);
    let recoveries = h1["recoveries"].as_array().unwrap();
    assert_eq!(recoveries.len(), 1, "{h1:#}");
    assert_eq!(recoveries[0]["event"], "unlock");
    assert_eq!(recoveries[0]["case_ref"], "15/CV-UBND");

    let h2 = json_report(&["--half", "2026-H2", "--today", "2026-12-31"], &journal);
    assert_eq!(
        h2["totals"],
        serde_json::json!({"personal": 4, "organisation": 6, "other": 0, "all": 10})
    );
    assert_eq!(cert(&h2, PERSONAL.serial)["signatures"], 4);
    assert_eq!(cert(&h2, SEAL.serial)["signatures"], 6);
    assert_eq!(cert(&h2, SEAL.serial)["expired"], true);
    // Seen before, no signature in H2: still on the expiry list.
    assert_eq!(cert(&h2, SERVICE.serial)["signatures"], 0);
    let events: Vec<&Value> = h2["recoveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["event"])
        .collect();
    assert_eq!(events, ["recovery_request", "recovery_apply"]);

    // Inclusive days: exactly the two boundary days around 1 July.
    let edge = json_report(
        &[
            "--from",
            "2026-06-30",
            "--to",
            "2026-07-01",
            "--today",
            "2026-07-01",
        ],
        &journal,
    );
    assert_eq!(edge["totals"]["all"], 2);
    assert_eq!(edge["totals"]["organisation"], 2);
    let all_2026 = json_report(
        &[
            "--from",
            "2026-01-01",
            "--to",
            "2026-12-31",
            "--today",
            "2026-07-01",
        ],
        &journal,
    );
    assert_eq!(all_2026["totals"]["all"], 21);
}

#[test]
fn the_warning_window_is_the_one_in_kysods_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let journal = write_journal(dir.path(), &fixture_journal().text());
    let spare_on = |today: &str| {
        let report = json_report(&["--half", "2026-H1", "--today", today], &journal);
        cert(&report, SPARE.serial)["status"].clone()
    };
    // 50 days before the spare certificate expires: inside a 60-day window, outside 45 days.
    assert_eq!(spare_on("2026-06-01"), "renew_by");
    write_config(dir.path(), 45);
    assert_eq!(spare_on("2026-06-01"), "valid");
    assert_eq!(spare_on("2026-06-20"), "renew_by");
    assert_eq!(spare_on("2026-06-21"), "too_late_to_renew");
    assert_eq!(spare_on("2026-07-22"), "expired");
}

#[test]
fn csv_and_table_give_the_same_counts() {
    let dir = tempfile::tempdir().unwrap();
    let journal = write_journal(dir.path(), &fixture_journal().text());

    let csv = ok_stdout(&kyso(
        &[
            "--half",
            "2026-H1",
            "--today",
            "2026-07-01",
            "--format",
            "csv",
        ],
        &journal,
    ));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv.as_bytes());
    let records: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .expect("well-formed CSV with rows of one width");
    let rows: Vec<Vec<&str>> = records.iter().map(|r| r.iter().collect()).collect();
    assert_eq!(rows[0][..3], ["record", "subject", "serial"]);
    assert_eq!(
        rows.iter()
            .filter(|r| r[0] == "certificate" && r[1] == SEAL.subject)
            .count(),
        1,
        "{csv}"
    );
    let count = |record: &str, serial: &str, class: &str, app: &str| -> Vec<&str> {
        rows.iter()
            .filter(|r| r[0] == record && r[2] == serial && r[3] == class && r[4] == app)
            .map(|r| r[5])
            .collect()
    };
    assert_eq!(count("certificate", "1001", "personal", ""), ["7"]);
    assert_eq!(count("application", "1001", "personal", LIBREOFFICE), ["5"]);
    assert_eq!(count("application", "1001", "personal", PKCS11_TOOL), ["2"]);
    assert_eq!(count("certificate", "2002", "organisation", ""), ["3"]);
    assert_eq!(count("certificate", "3003", "other", ""), ["1"]);
    assert_eq!(count("total", "", "personal", ""), ["7"]);
    assert_eq!(count("total", "", "organisation", ""), ["3"]);
    assert_eq!(count("total", "", "other", ""), ["1"]);
    assert_eq!(count("total", "", "all", ""), ["11"]);
    let recoveries: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == "recovery").collect();
    assert_eq!(recoveries.len(), 1);
    assert!(recoveries[0].contains(&"15/CV-UBND"), "{csv}");
    let status = |wanted: &str| -> Vec<&str> {
        rows.iter()
            .filter(|r| r[0] == "certificate" && r[8] == wanted)
            .map(|r| r[2])
            .collect()
    };
    assert_eq!(status("expired"), ["3003", "4004"]);
    assert_eq!(status("too_late_to_renew"), ["5005", "2002"]);
    assert_eq!(status("valid"), ["1001"]);
    assert_eq!(count("certificate", "5005", "personal", ""), ["0"]);

    let table = ok_stdout(&kyso(
        &["--half", "2026-H2", "--today", "2026-12-31"],
        &journal,
    ));
    for line in table.lines() {
        assert!(line.chars().count() <= 80, "wider than 80 columns: {line}");
    }
    assert!(table.contains("2026-07-01 – 2026-12-31"), "{table}");
    for label in ["Chủ thể", "Subject", "Gia hạn trước", "Renew by"] {
        assert!(table.contains(label), "{label} missing:\n{table}");
    }
    let total = |label: &str| -> u64 {
        let line = table
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no {label} line in:\n{table}"));
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert_eq!(total("/ personal"), 4);
    assert_eq!(total("/ organisation"), 6);
    assert_eq!(total("/ other"), 0);
    assert_eq!(total("/ all"), 10);
    let seal_row = table
        .lines()
        .find(|l| l.starts_with("UBND TINH DEMO") && l.contains("2026-07-20"))
        .unwrap_or_else(|| panic!("no expiry row for the seal:\n{table}"));
    assert!(seal_row.contains("expired"), "{seal_row}");
    // Never signing, the spare certificate is on the expiry list only.
    let expiry = &table[table.find("3. ").expect("expiry section")..];
    assert!(
        !table[..table.find("3. ").unwrap()].contains("DU PHONG"),
        "{table}"
    );
    assert!(expiry.contains("NGUYEN VAN A (DU PHONG)"), "{table}");
    assert!(
        expiry.contains("expired on 2026-07-21: no legal value"),
        "{table}"
    );
    assert!(table.contains("88/CV-UBND"), "{table}");
}

#[test]
fn a_changed_journal_gives_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let text = fixture_journal().text();
    let lines: Vec<&str> = text.lines().collect();

    // A refused signature turned into a made one, to inflate the count.
    let refused = lines
        .iter()
        .position(|l| l.contains("CKR_FUNCTION_FAILED"))
        .unwrap();
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[refused] = edited[refused].replace("CKR_FUNCTION_FAILED", "CKR_OK");
    let journal = write_journal(dir.path(), &(edited.join("\n") + "\n"));
    for format in ["table", "csv", "json"] {
        let out = kyso(&["--half", "2026-H1", "--format", format], &journal);
        assert_eq!(out.status.code(), Some(1), "{format}");
        assert!(out.stdout.is_empty(), "a report was printed for {format}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("line {}", refused + 2)) && err.contains("broken"),
            "{err}"
        );
    }

    // A signature line deleted.
    let mut deleted = lines.clone();
    deleted.remove(3);
    let journal = write_journal(dir.path(), &(deleted.join("\n") + "\n"));
    let out = kyso(&["--half", "2026-H1"], &journal);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 4"));

    // No journal, and bad periods: exit 2 with a clear message.
    let out = kyso(&["--half", "2026-H1"], &dir.path().join("none.jsonl"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no audit journal"));
    let journal = write_journal(dir.path(), &text);
    for bad in [
        &["--half", "2026-H3"][..],
        &["--from", "2026-07-01", "--to", "2026-06-30"],
        &["--from", "2026-02-30", "--to", "2026-06-30"],
    ] {
        let out = kyso(bad, &journal);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn signatures_through_the_shim_are_reported() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    for i in 0..3u8 {
        s.sign(&Mechanism::Sha256RsaPkcs, key, &[b'x', i])
            .expect("C_Sign");
    }
    drop(s);

    let today = dates::date(dates::now());
    let path = target_dir().join("kyso");
    let out = Command::new(path)
        .args([
            "report", "--from", &today, "--to", &today, "--format", "json",
        ])
        .arg("--config")
        .arg(daemon.config_path())
        .output()
        .expect("run kyso report");
    let report: Value = serde_json::from_str(&ok_stdout(&out)).expect("JSON report");
    // The certificates kysod saw on the token are listed too; one of them signed.
    let signed: Vec<&Value> = report["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["signatures"] != 0)
        .collect();
    assert_eq!(signed.len(), 1, "{report:#}");
    let c = signed[0];
    assert_eq!(c["subject"], "NGUYEN VAN A, UBND Tinh Demo");
    assert_eq!(c["class"], "personal");
    assert_eq!(c["signatures"], 3);
    let me = std::fs::read_link("/proc/self/exe").unwrap();
    assert_eq!(c["by_application"][me.to_string_lossy().as_ref()], 3);
    assert_eq!(report["totals"]["personal"], 3);
    assert_eq!(report["totals"]["all"], 3);
    assert_eq!(c["expired"], false);
}

/// The expiry list covers every certificate a token brought to kysod, whether or not it ever
/// signed: the policy fixture's expired certificate and the one expiring in 20 days are listed
/// with their standing after kysod merely saw the token.
#[test]
fn certificates_kysod_saw_are_listed_though_they_never_signed() {
    let fx = Fixture::with_policy_certs();
    let daemon = Daemon::start(&fx);
    let journal = fx.subdir("kysod").join("state").join("audit.jsonl");
    let seen = std::fs::read_to_string(&journal)
        .expect("journal")
        .lines()
        .filter(|l| l.contains("\"certificate_seen\""))
        .count();
    assert!(seen >= 5, "{seen} certificate_seen entries");
    drop(daemon);

    let today = dates::date(dates::now());
    let out = Command::new(target_dir().join("kyso"))
        .args([
            "report",
            "--from",
            &today,
            "--to",
            &today,
            "--format",
            "json",
            "--journal",
        ])
        .arg(&journal)
        .output()
        .expect("run kyso report");
    let report: Value = serde_json::from_str(&ok_stdout(&out)).expect("JSON report");
    let listed = report["certificates"].as_array().unwrap();
    let by_subject = |needle: &str| {
        listed
            .iter()
            .find(|c| c["subject"].as_str().unwrap_or("").contains(needle))
            .unwrap_or_else(|| panic!("{needle} not listed: {report:#}"))
    };
    let expired = by_subject("(het han)");
    assert_eq!(expired["status"], "expired", "{expired}");
    assert_eq!(expired["signatures"], 0);
    let late = by_subject("(sap het han)");
    assert_eq!(late["status"], "too_late_to_renew", "{late}");
    assert_eq!(late["signatures"], 0);
    let seal = by_subject("UBND TINH DEMO");
    assert_eq!(seal["class"], "organisation");
}
