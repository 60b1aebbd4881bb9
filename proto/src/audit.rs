//! The audit journal's format, shared by kysod (which writes it) and `kyso audit verify`
//! (which checks it).
//!
//! The journal is a file of JSON lines (`audit.jsonl` in kysod's state directory). Every line
//! is one [`AuditEntry`] followed by `\n`. Each entry's `prev` is the lowercase hex SHA-256 of
//! the previous line's exact bytes (without its newline); the first entry's `prev` is
//! [`GENESIS`]. Editing, inserting, reordering or deleting any line but the last breaks the
//! chain at the line after the change, which [`verify`] reports. Removing lines at the end
//! leaves a shorter but intact chain: only a copy of the last hash kept elsewhere detects that.
//!
//! Parsing is total: any bytes give entries or a [`VerifyError`], never a panic.

use std::io::BufRead;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dates;

/// `prev` of the first entry: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The journal's file name inside kysod's state directory.
pub const FILE_NAME: &str = "audit.jsonl";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// A signature operation ended (successfully or not); see `result`.
    Signature,
    /// A successful `C_Login`.
    Login,
    /// A failed `C_Login` (wrong PIN, cancelled prompt, ...); see `result`.
    LoginFailed,
    /// A `C_Login` on a token whose PIN is locked (`CKR_PIN_LOCKED`).
    Lockout,
    /// An operation kysod refused (signing policy).
    Refusal,
    /// A token became available.
    TokenPresent,
    /// A token went away.
    TokenRemoved,
    /// kysod found the journal file changed under it (replaced, cut short or written to by
    /// another program); `detail` says what it saw. The entries before this one are the
    /// changed file's, not necessarily kysod's.
    JournalChanged,
    /// A certificate on a token: one entry per certificate when the token arrives and when
    /// kysod starts with it present, with the token's and the certificate's fields and no
    /// `result`. The expiry list of `kyso report` covers every certificate seen.
    CertificateSeen,
    /// The user's PIN was changed (`kyso pin change`, or a change the token required).
    PinChange,
    /// A remote-recovery request was made for a token (`kyso recover request`).
    RecoveryRequest,
    /// A recovery grant was applied (`kyso recover apply`): SO login, new user PIN, SO PIN
    /// rotated. `case_ref` names the agency's case; a refused grant is recorded with its result.
    RecoveryApply,
    /// A locked token was unlocked on site by the helpdesk (`kyso-helpdesk unlock`, which is
    /// gone: found in older journals only).
    Unlock,
    /// A returned token was re-initialised (`kyso-helpdesk wipe`).
    Wipe,
}

/// One line of the journal. Optional fields are left out of the JSON when not applicable.
///
/// Fields are added over time, never renamed or removed; readers ignore the ones they do not know
/// and treat a missing one as absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC, e.g. `2026-11-23T13:07:54Z`.
    pub time: String,
    pub event: AuditEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The client program (`/proc/<pid>/exe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    /// kysod's stable slot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    /// The certificate's serial number (hex): the signing one for a signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<String>,
    /// The certificate's holder: `CN, O` of its subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_subject: Option<String>,
    /// Certificate class (`personal`, `organisation`, `other`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The certificate's end of validity, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<String>,
    /// The agency's case reference (công văn number) of a recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_ref: Option<String>,
    /// Free text that completes the event (e.g. why a recovery grant was refused). Never a
    /// secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The `CK_MECHANISM_TYPE` in hex, e.g. `0x40`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// Lowercase hex SHA-256 of the data signed (single-part `C_Sign`, or the concatenation
    /// of the `C_SignUpdate` parts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<String>,
    /// The `CKR_*` name of the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The web site the call was made for (kyso's web bridge), as its origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// What that site asked to sign: a document's name or address, or what kind of data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// Hex SHA-256 of the previous line; set by the writer.
    pub prev: String,
}

impl AuditEntry {
    /// An entry of `event` at `time` with every optional field empty and `prev` unset.
    pub fn new(event: AuditEvent, time: SystemTime) -> AuditEntry {
        AuditEntry {
            time: rfc3339_utc(time),
            event,
            uid: None,
            pid: None,
            application: None,
            token_serial: None,
            token_label: None,
            slot: None,
            cert_serial: None,
            cert_subject: None,
            class: None,
            cert_not_after: None,
            case_ref: None,
            detail: None,
            mechanism: None,
            data_sha256: None,
            result: None,
            site: None,
            document: None,
            prev: String::new(),
        }
    }

    /// The entry as one JSON line (without the newline).
    pub fn to_line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// Lowercase hex of `bytes` ([`crate::hex::encode`]).
pub fn hex(bytes: &[u8]) -> String {
    crate::hex::encode(bytes)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The hash the next entry's `prev` must carry: SHA-256 of `line` without its newline.
pub fn line_hash(line: &[u8]) -> String {
    sha256_hex(line)
}

/// `time` as RFC 3339 UTC with whole seconds (`YYYY-MM-DDTHH:MM:SSZ`). Times before 1970 are
/// written as the epoch.
pub fn rfc3339_utc(time: SystemTime) -> String {
    dates::rfc3339(dates::unix_seconds(time).max(0))
}

/// Why a journal line is bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("not a journal entry ({0})")]
    NotJson(String),
    #[error("prev is {found}, but the previous line hashes to {expected}: a line before it was changed, removed or reordered")]
    PrevMismatch { expected: String, found: String },
    #[error("the last line has no newline: the file was cut or changed")]
    Unterminated,
    #[error("cannot read the journal: {0}")]
    Io(String),
}

/// The first bad line of a journal (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct VerifyError {
    pub line: usize,
    pub problem: Problem,
}

/// An intact journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Number of entries.
    pub entries: usize,
    /// Hash of the last line ([`GENESIS`] for an empty journal): the next entry's `prev`.
    pub last_hash: String,
}

/// Checks a whole journal: every line an entry, every `prev` the hash of the line before.
pub fn verify(mut reader: impl BufRead) -> Result<Verified, VerifyError> {
    let mut expected = GENESIS.to_string();
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| VerifyError {
                line: n + 1,
                problem: Problem::Io(e.to_string()),
            })?;
        if read == 0 {
            return Ok(Verified {
                entries: n,
                last_hash: expected,
            });
        }
        n += 1;
        let bad = |problem| VerifyError { line: n, problem };
        let body = match line.strip_suffix(b"\n") {
            Some(body) => body,
            None => return Err(bad(Problem::Unterminated)),
        };
        let entry: AuditEntry =
            serde_json::from_slice(body).map_err(|e| bad(Problem::NotJson(e.to_string())))?;
        if entry.prev != expected {
            return Err(bad(Problem::PrevMismatch {
                expected,
                found: entry.prev,
            }));
        }
        expected = line_hash(body);
    }
}

/// [`verify`] over bytes in memory.
pub fn verify_bytes(bytes: &[u8]) -> Result<Verified, VerifyError> {
    verify(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn journal(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = GENESIS.to_string();
        for i in 0..n {
            let mut e = AuditEntry::new(
                AuditEvent::Signature,
                UNIX_EPOCH + Duration::from_secs(i as u64),
            );
            e.pid = Some(i as i32);
            e.result = Some("CKR_OK".into());
            e.prev = prev;
            let line = e.to_line().unwrap();
            prev = line_hash(line.as_bytes());
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        out
    }

    fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn intact_journal_verifies() {
        let j = journal(5);
        let v = verify_bytes(&j).unwrap();
        assert_eq!(v.entries, 5);
        let last = lines(&j).pop().unwrap();
        assert_eq!(v.last_hash, line_hash(&last[..last.len() - 1]));
        assert_eq!(verify_bytes(b"").unwrap().entries, 0);
        assert_eq!(verify_bytes(b"").unwrap().last_hash, GENESIS);
    }

    #[test]
    fn edited_field_is_found_at_the_next_line() {
        let j = String::from_utf8(journal(5)).unwrap();
        let edited = j.replacen("\"pid\":2", "\"pid\":7", 1);
        assert_ne!(edited, j);
        let e = verify_bytes(edited.as_bytes()).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(matches!(e.problem, Problem::PrevMismatch { .. }), "{e}");
    }

    #[test]
    fn edited_last_line_prev_is_found() {
        let j = String::from_utf8(journal(3)).unwrap();
        let mut ls: Vec<String> = j.lines().map(str::to_string).collect();
        ls[2] = ls[2].replacen("\"prev\":\"", "\"prev\":\"f", 1);
        let e = verify_bytes((ls.join("\n") + "\n").as_bytes()).unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn deleted_line_is_found() {
        let mut ls = lines(&journal(5));
        ls.remove(2);
        let e = verify_bytes(&ls.concat()).unwrap_err();
        assert_eq!(e.line, 3);
        let mut ls = lines(&journal(5));
        ls.remove(0);
        assert_eq!(verify_bytes(&ls.concat()).unwrap_err().line, 1);
    }

    #[test]
    fn swapped_lines_are_found() {
        let mut ls = lines(&journal(5));
        ls.swap(1, 2);
        let e = verify_bytes(&ls.concat()).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn appended_garbage_is_found() {
        let mut j = journal(3);
        j.extend_from_slice(b"garbage\n");
        let e = verify_bytes(&j).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(matches!(e.problem, Problem::NotJson(_)));

        let mut j = journal(3);
        j.extend_from_slice(b"\n");
        assert_eq!(verify_bytes(&j).unwrap_err().line, 4);

        let mut j = journal(3);
        j.pop();
        let e = verify_bytes(&j).unwrap_err();
        assert_eq!((e.line, e.problem), (3, Problem::Unterminated));
    }

    #[test]
    fn unknown_event_and_invalid_utf8_are_errors() {
        let line = format!("{{\"time\":\"x\",\"event\":\"party\",\"prev\":\"{GENESIS}\"}}\n");
        assert!(matches!(
            verify_bytes(line.as_bytes()).unwrap_err().problem,
            Problem::NotJson(_)
        ));
        assert_eq!(verify_bytes(b"\xff\xfe\n").unwrap_err().line, 1);
    }

    #[test]
    fn optional_fields_are_left_out() {
        let e = AuditEntry::new(AuditEvent::TokenPresent, UNIX_EPOCH);
        let line = e.to_line().unwrap();
        assert_eq!(
            line,
            "{\"time\":\"1970-01-01T00:00:00Z\",\"event\":\"token_present\",\"prev\":\"\"}"
        );
    }

    #[test]
    fn a_seen_certificate_is_journaled_without_a_result() {
        let mut e = AuditEntry::new(AuditEvent::CertificateSeen, UNIX_EPOCH);
        e.cert_serial = Some("1001".into());
        e.cert_not_after = Some("2027-01-15T08:00:00Z".into());
        let line = e.to_line().unwrap();
        assert!(line.contains("\"event\":\"certificate_seen\""), "{line}");
        assert!(!line.contains("result"), "{line}");
        let back: AuditEntry = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_438_074);
        assert_eq!(rfc3339_utc(t), "2026-11-23T12:47:54Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00Z");
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339_utc(before), "1970-01-01T00:00:00Z");
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_verify_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = verify_bytes(&bytes);
        }
    }
}
