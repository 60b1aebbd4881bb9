//! The audit journal: signatures, logins, lockouts, refusals and token arrivals and removals,
//! appended to `state_dir/audit.jsonl` as a hash chain (format in [`kyso_proto::audit`]).
//!
//! History is never rewritten: at start the existing journal is checked, a broken chain is
//! reported as an error and the new entries continue from its last line. Each entry is written
//! with one `write_all` under a mutex before the call it records returns, so it survives a
//! crash of kysod; a flusher thread makes it durable (`sync_data`) within [`SYNC_INTERVAL`],
//! batching the entries of busy moments (a `sync_data` per entry costs ~150 µs here, twice an
//! ECDSA signature). No PIN is ever part of an entry.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use kyso_proto::audit::{self, AuditEntry, AuditEvent, GENESIS};
use kyso_proto::Ulong;
use sha2::{Digest, Sha256};

use crate::client::Client;
use crate::error::Rv;
use crate::policy::SigningCert;
use crate::token::Token;

/// Longest time an entry written to the journal waits to be made durable.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(20);

/// The journal; clones share one file and one chain.
#[derive(Clone, Default)]
pub struct Journal {
    inner: Option<Arc<Shared>>,
}

struct Shared {
    state: Mutex<Inner>,
    /// Signalled when an entry was written and is not yet synced.
    written: Condvar,
}

struct Inner {
    path: PathBuf,
    file: Option<File>,
    /// Hash of the last line: the next entry's `prev`.
    prev: String,
    /// The file does not end with a newline (a cut line): the next write starts with one.
    needs_newline: bool,
    /// A write failed: the file's end must be read again before the next one.
    resync: bool,
    /// Entries were written since the last `sync_data`.
    unsynced: bool,
    /// The file's length after the last entry, kept so that a failed write can be cut off
    /// without asking the file system before every entry.
    len: u64,
    /// The signers of the latest signatures, serialized (see [`Signer`]).
    signers: Vec<Signer>,
}

/// How many signers' serialized fields the journal keeps.
const SIGNERS_KEPT: usize = 8;

/// Who signed, on which token, with which certificate and mechanism: the part of a signature
/// entry that stays the same through a batch, kept serialized. A batch's entries then differ
/// only in time, data hash, result and chain link, and cost a few small writes instead of a
/// dozen strings built and escaped again (measured: ~10 µs of kysod's CPU per signature went
/// to its journal entry at ECDSA 1T).
struct Signer {
    client: u64,
    slot: u64,
    token_serial: String,
    token_label: String,
    cert: Option<SigningCert>,
    mechanism: Ulong,
    /// The JSON members from `uid` to `mechanism`, in the order [`AuditEntry`] writes them.
    json: String,
}

impl Signer {
    fn is(&self, c: &Client, token: &Token, cert: Option<&SigningCert>, mechanism: Ulong) -> bool {
        self.client == c.id
            && self.slot == token.slot
            && self.mechanism == mechanism
            && self.cert.as_ref() == cert
            && self.token_serial == token.serial
            && self.token_label == token.label
    }

    fn new(
        c: &Client,
        token: &Token,
        cert: Option<&SigningCert>,
        mechanism: Ulong,
    ) -> Result<Signer, serde_json::Error> {
        // An entry with the members of this part only, serialized as the whole entry is.
        let mut e = client_entry(AuditEvent::Signature, c, token, Rv::OK);
        e.mechanism = Some(format!("{mechanism:#x}"));
        set_cert(&mut e, cert);
        let json = signer_members(e)?;
        Ok(Signer {
            client: c.id,
            slot: token.slot,
            token_serial: token.serial.clone(),
            token_label: token.label.clone(),
            cert: cert.cloned(),
            mechanism,
            json,
        })
    }
}

/// The members of `e` that a [`Signer`] keeps, as JSON without the braces.
fn signer_members(e: AuditEntry) -> Result<String, serde_json::Error> {
    let fields = SignerFields {
        uid: e.uid,
        pid: e.pid,
        application: e.application,
        token_serial: e.token_serial,
        token_label: e.token_label,
        slot: e.slot,
        cert_serial: e.cert_serial,
        cert_subject: e.cert_subject,
        class: e.class,
        cert_not_after: e.cert_not_after,
        mechanism: e.mechanism,
    };
    let object = serde_json::to_string(&fields)?;
    Ok(object
        .strip_prefix('{')
        .and_then(|o| o.strip_suffix('}'))
        .unwrap_or_default()
        .to_string())
}

/// A signature entry's line: `members` (a [`Signer`]'s) with the members that change.
fn signature_line(
    out: &mut Vec<u8>,
    time: &str,
    members: &str,
    data_sha256: Option<&str>,
    result: &str,
    prev: &str,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"time\":");
    serde_json::to_writer(&mut *out, time)?;
    out.extend_from_slice(b",\"event\":");
    serde_json::to_writer(&mut *out, &AuditEvent::Signature)?;
    if !members.is_empty() {
        out.push(b',');
        out.extend_from_slice(members.as_bytes());
    }
    if let Some(hash) = data_sha256 {
        out.extend_from_slice(b",\"data_sha256\":");
        serde_json::to_writer(&mut *out, hash)?;
    }
    out.extend_from_slice(b",\"result\":");
    serde_json::to_writer(&mut *out, result)?;
    out.extend_from_slice(b",\"prev\":");
    serde_json::to_writer(&mut *out, prev)?;
    out.push(b'}');
    Ok(())
}

/// The members of [`AuditEntry`] that [`Signer`] keeps, with the same names, order and
/// omissions. (`case_ref` and `detail`, between `cert_not_after` and `mechanism`, are never set
/// on a signature; a member added to `AuditEntry` for signatures must be added here too, and
/// to the test that compares the two lines.)
#[derive(serde::Serialize)]
struct SignerFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mechanism: Option<String>,
}

/// A signature entry to write: its signer and what changes from one signature to the next.
struct SignatureLine<'a> {
    client: &'a Client,
    token: &'a Token,
    done: &'a SignDone,
    rv: Rv,
    time: SystemTime,
}

/// Why an entry was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("no audit journal is open")]
    Disabled,
    #[error("cannot write the audit journal {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot encode an audit entry: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The chain state at the end of an existing journal: last line's hash, and whether the
/// file ends without a newline.
fn tail_state(path: &Path) -> std::io::Result<(String, bool)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((GENESIS.into(), false)),
        Err(e) => return Err(e),
    };
    match audit::verify_bytes(&bytes) {
        Ok(v) => {
            tracing::info!(journal = %path.display(), entries = v.entries, "audit journal intact");
            Ok((v.last_hash, false))
        }
        Err(e) => {
            tracing::error!(journal = %path.display(), error = %e, "the audit journal's chain is broken; it is kept as it is and new entries continue from its last line");
            let cut = !bytes.is_empty() && !bytes.ends_with(b"\n");
            let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(b"");
            let prev = if bytes.is_empty() {
                GENESIS.into()
            } else {
                audit::line_hash(last)
            };
            Ok((prev, cut))
        }
    }
}

impl Journal {
    /// A journal that records nothing (every append fails with [`JournalError::Disabled`]).
    pub fn disabled() -> Journal {
        Journal { inner: None }
    }

    /// Opens (creating, mode 0600) `state_dir/audit.jsonl` and continues its chain. A journal
    /// that cannot be opened is reported and retried at each append.
    pub fn open(state_dir: &Path) -> Journal {
        let path = state_dir.join(audit::FILE_NAME);
        let mut inner = Inner {
            path,
            file: None,
            prev: GENESIS.into(),
            needs_newline: false,
            resync: true,
            len: 0,
            unsynced: false,
            signers: Vec::new(),
        };
        if let Err(e) = inner.prepare() {
            tracing::error!(journal = %inner.path.display(), error = %e, "cannot open the audit journal; events are lost and signatures withheld until it can be written");
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(inner),
            written: Condvar::new(),
        });
        let flusher = shared.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("kysod-audit-sync".into())
            .spawn(move || flusher.sync_forever())
        {
            tracing::error!(error = %e, "cannot start the audit journal's flusher; entries are written but not synced");
        }
        Journal {
            inner: Some(shared),
        }
    }

    /// Appends `entry` (its `prev` is set here). A failure is logged with the event it lost.
    pub fn append(&self, mut entry: AuditEntry) -> Result<(), JournalError> {
        let result = self.write(|inner| inner.append(&mut entry));
        if let Err(e) = &result {
            if !matches!(e, JournalError::Disabled) {
                tracing::error!(error = %e, lost = ?entry, "audit event NOT recorded");
            }
        }
        result
    }

    /// Runs `append` on the open journal and wakes the flusher when needed.
    fn write(
        &self,
        append: impl FnOnce(&mut Inner) -> Result<bool, JournalError>,
    ) -> Result<(), JournalError> {
        match &self.inner {
            None => Err(JournalError::Disabled),
            Some(shared) => {
                let written = append(&mut shared.state.lock().unwrap_or_else(|e| e.into_inner()));
                // The flusher waits only when everything was synced; during a burst it is
                // busy syncing or pausing and sees the flag without a wake-up (a system call
                // per entry saved).
                match written {
                    Ok(first_unsynced) => {
                        if first_unsynced {
                            shared.written.notify_one();
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Records a token arrival or removal.
    pub fn token_event(&self, event: AuditEvent, token: &Token) {
        let mut e = AuditEntry::new(event, SystemTime::now());
        e.token_serial = Some(token.serial.clone());
        e.token_label = Some(token.label.clone());
        e.slot = Some(token.slot);
        let _ = self.append(e);
    }

    /// Records the outcome of a `C_Login` (`CKR_PIN_LOCKED` is a lockout).
    pub fn login(&self, c: &Client, token: &Token, rv: Rv, detail: Option<&str>) {
        let mut e = client_entry(login_event(rv), c, token, rv);
        e.detail = detail.map(str::to_string);
        let _ = self.append(e);
    }

    /// Records a finished signature operation; returns whether it is in the journal (a
    /// journal that is switched off counts as recorded). The module has signed already and a
    /// journal failure cannot undo that: the caller withholds a signature that is not recorded
    /// (see [`crate::calls::audit_hooks::sign_operated`]).
    pub fn signature(&self, c: &Client, token: &Token, done: SignDone, rv: Rv) -> bool {
        let line = SignatureLine {
            client: c,
            token,
            done: &done,
            rv,
            time: SystemTime::now(),
        };
        match self.write(|inner| inner.append_signature(&line)) {
            Ok(()) | Err(JournalError::Disabled) => true,
            Err(err) => {
                tracing::error!(client = c.id, pid = c.pid, program = %c.program, serial = %token.serial, %rv, mechanism = done.mechanism, cert_serial = ?done.cert.as_ref().map(|c| &c.serial), data_sha256 = ?done.data_sha256, error = %err, "a signature could not be recorded in the audit journal; it is withheld from the application");
                false
            }
        }
    }

    /// Records a recovery step (request, apply, on-site unlock, wipe) with the agency's case
    /// reference and a detail that never holds a secret.
    pub fn recovery(
        &self,
        event: AuditEvent,
        c: &Client,
        token: &Token,
        case_ref: Option<&str>,
        detail: &str,
        rv: Rv,
    ) {
        let mut e = client_entry(event, c, token, rv);
        e.case_ref = case_ref.map(str::to_string);
        e.detail = Some(detail.to_string());
        let _ = self.append(e);
    }

    /// Records a signature the policy refused, with the certificate it judged.
    pub fn refusal(
        &self,
        c: &Client,
        token: &Token,
        mechanism: Ulong,
        cert: Option<&SigningCert>,
        rv: Rv,
    ) {
        let mut e = client_entry(AuditEvent::Refusal, c, token, rv);
        e.mechanism = Some(format!("{mechanism:#x}"));
        set_cert(&mut e, cert);
        let _ = self.append(e);
    }
}

fn set_cert(e: &mut AuditEntry, cert: Option<&SigningCert>) {
    if let Some(cert) = cert {
        e.cert_serial = Some(cert.serial.clone());
        e.cert_subject = Some(cert.subject.clone());
        e.class = Some(cert.class.name().to_string());
        let not_after =
            std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(cert.not_after).unwrap_or(0));
        e.cert_not_after = Some(audit::rfc3339_utc(not_after));
    }
}

/// The journal event for a `C_Login` result.
pub fn login_event(rv: Rv) -> AuditEvent {
    match rv {
        Rv::OK => AuditEvent::Login,
        Rv(cryptoki_sys::CKR_PIN_LOCKED) => AuditEvent::Lockout,
        _ => AuditEvent::LoginFailed,
    }
}

fn client_entry(event: AuditEvent, c: &Client, token: &Token, rv: Rv) -> AuditEntry {
    let mut e = AuditEntry::new(event, SystemTime::now());
    e.uid = Some(c.uid);
    e.pid = Some(c.pid);
    e.application = Some(c.program.clone());
    e.token_serial = Some(token.serial.clone());
    e.token_label = Some(token.label.clone());
    e.slot = Some(token.slot);
    e.result = Some(rv.to_string());
    e
}

impl Shared {
    /// Makes written entries durable: waits (without polling) for an entry, syncs, then lets
    /// [`SYNC_INTERVAL`] pass so that a burst of entries shares one `sync_data`.
    fn sync_forever(&self) {
        loop {
            let file = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                while !st.unsynced {
                    st = self.written.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.unsynced = false;
                st.file.as_ref().and_then(|f| f.try_clone().ok())
            };
            // Synced outside the lock: appends go on meanwhile.
            if let Some(file) = file {
                if let Err(e) = file.sync_data() {
                    tracing::error!(error = %e, "the audit journal could not be synced to disk");
                }
            }
            std::thread::sleep(SYNC_INTERVAL);
        }
    }
}

impl Inner {
    /// Opens the file and reads the chain's end, if not done yet (or after a failed write).
    fn prepare(&mut self) -> std::io::Result<()> {
        if self.resync || self.file.is_none() {
            let (prev, cut) = tail_state(&self.path)?;
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&self.path)?;
            self.len = file.metadata()?.len();
            self.prev = prev;
            self.needs_newline = cut;
            self.file = Some(file);
            self.resync = false;
        }
        Ok(())
    }

    /// Writes `entry`; `Ok(true)` when it is the first entry since the last `sync_data`.
    fn append(&mut self, entry: &mut AuditEntry) -> Result<bool, JournalError> {
        self.append_line(|prev, out| {
            entry.prev = prev.to_string();
            out.extend_from_slice(entry.to_line()?.as_bytes());
            Ok(())
        })
    }

    /// Writes a signature entry, byte for byte the line its [`AuditEntry`] would be.
    fn append_signature(&mut self, line: &SignatureLine<'_>) -> Result<bool, JournalError> {
        let (c, token, done) = (line.client, line.token, line.done);
        let found = self
            .signers
            .iter()
            .position(|s| s.is(c, token, done.cert.as_ref(), done.mechanism));
        let signer = match found {
            Some(i) => self.signers.remove(i),
            None => Signer::new(c, token, done.cert.as_ref(), done.mechanism)?,
        };
        let written = self.append_line(|prev, out| {
            signature_line(
                out,
                &audit::rfc3339_utc(line.time),
                &signer.json,
                done.data_sha256.as_deref(),
                &line.rv.to_string(),
                prev,
            )
        });
        // The latest first; the least recently used goes.
        self.signers.insert(0, signer);
        self.signers.truncate(SIGNERS_KEPT);
        written
    }

    /// Writes the line `line` puts after its `prev` (the chain's last hash) and a newline;
    /// `Ok(true)` when it is the first entry since the last `sync_data`.
    fn append_line(
        &mut self,
        line: impl FnOnce(&str, &mut Vec<u8>) -> Result<(), serde_json::Error>,
    ) -> Result<bool, JournalError> {
        let io = |path: &Path, error| JournalError::Io {
            path: path.to_path_buf(),
            error,
        };
        self.prepare().map_err(|e| io(&self.path, e))?;
        let mut bytes = Vec::with_capacity(1024);
        if self.needs_newline {
            bytes.push(b'\n');
        }
        let start = bytes.len();
        line(&self.prev, &mut bytes)?;
        let hash = audit::line_hash(&bytes[start..]);
        bytes.push(b'\n');
        let Some(file) = self.file.as_mut() else {
            return Err(io(&self.path, std::io::ErrorKind::NotFound.into()));
        };
        if let Err(e) = file.write_all(&bytes) {
            // Part of the line may be in the file (a full disk): cut it off so the journal
            // stays a valid chain, and read its end again before the next entry.
            // (Never lengthened: someone else may have shortened the file meanwhile.)
            let grown = file.metadata().is_ok_and(|m| m.len() > self.len);
            if grown {
                if let Err(cut) = file.set_len(self.len) {
                    tracing::error!(error = %cut, "cannot remove a partly written audit entry");
                }
            }
            self.resync = true;
            return Err(io(&self.path, e));
        }
        self.len += bytes.len() as u64;
        self.needs_newline = false;
        self.prev = hash;
        Ok(!std::mem::replace(&mut self.unsynced, true))
    }
}

/// A signature operation under way on a session, from `OperationInit` to its end.
pub struct SignTrack {
    mechanism: Ulong,
    cert: Option<SigningCert>,
    /// SHA-256 over the `C_SignUpdate` parts so far.
    parts: Sha256,
}

/// What the journal records of a finished signature operation.
pub struct SignDone {
    pub mechanism: Ulong,
    pub cert: Option<SigningCert>,
    pub data_sha256: Option<String>,
}

impl SignTrack {
    pub fn new(mechanism: Ulong, cert: Option<SigningCert>) -> SignTrack {
        SignTrack {
            mechanism,
            cert,
            parts: Sha256::new(),
        }
    }

    /// A `C_SignUpdate` part the module accepted.
    pub fn update(&mut self, data: &[u8]) {
        self.parts.update(data);
    }

    /// End of a single-part `C_Sign` over `data`.
    pub fn single(self, data: &[u8]) -> SignDone {
        SignDone {
            mechanism: self.mechanism,
            cert: self.cert,
            data_sha256: Some(audit::sha256_hex(data)),
        }
    }

    /// End of a multi-part signature (`C_SignFinal`).
    pub fn multi(self) -> SignDone {
        SignDone {
            mechanism: self.mechanism,
            cert: self.cert,
            data_sha256: Some(audit::hex(&self.parts.finalize())),
        }
    }
}

/// Whether a single-part call or a `C_*Final` (sign, encrypt, digest …) with this result
/// ended the operation: a size query or a too-small buffer leaves it running, as PKCS#11 says.
/// An ended signature is journaled.
pub fn operation_ended(rv: Rv, out: kyso_proto::OutBuf) -> bool {
    !(rv == Rv(cryptoki_sys::CKR_BUFFER_TOO_SMALL) || (rv == Rv::OK && out.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i32) -> AuditEntry {
        let mut e = AuditEntry::new(AuditEvent::Login, SystemTime::now());
        e.pid = Some(pid);
        e
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kysod-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn appends_chain_across_reopen() {
        let d = dir("reopen");
        let j = Journal::open(&d);
        j.append(entry(1)).unwrap();
        j.append(entry(2)).unwrap();
        drop(j);
        let j = Journal::open(&d);
        j.append(entry(3)).unwrap();
        let bytes = std::fs::read(d.join(audit::FILE_NAME)).unwrap();
        assert_eq!(audit::verify_bytes(&bytes).unwrap().entries, 3);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Whether the flusher has taken everything written for its next `sync_data`, within two
    /// seconds.
    fn flushed(j: &Journal) -> bool {
        let shared = j.inner.as_ref().unwrap();
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(2) {
            if !shared.state.lock().unwrap().unsynced {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn flusher_takes_each_burst_also_after_a_pause() {
        let d = dir("flusher");
        let j = Journal::open(&d);
        for pid in 0..50 {
            j.append(entry(pid)).unwrap();
        }
        assert!(flushed(&j), "a burst is taken for syncing");
        // Long enough for the flusher to be waiting for the next entry.
        std::thread::sleep(SYNC_INTERVAL * 5);
        j.append(entry(51)).unwrap();
        assert!(flushed(&j), "an entry after a pause wakes the flusher");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A signature's line made from a kept signer is the line its whole entry makes.
    #[test]
    fn signature_line_is_the_entry_line() {
        let mut e = AuditEntry::new(AuditEvent::Signature, SystemTime::now());
        e.uid = Some(1000);
        e.pid = Some(4242);
        e.application = Some("/opt/ký số/\"app\"\\bin\u{7}".into());
        e.token_serial = Some("a1b2c3d4".into());
        e.token_label = Some("NGUYỄN VĂN A".into());
        e.slot = Some(3);
        e.cert_serial = Some("5403c0a1".into());
        e.cert_subject = Some("Nguyễn Văn A, Sở \"Tài chính\"".into());
        e.class = Some("personal".into());
        e.cert_not_after = Some("2027-01-31T23:59:59Z".into());
        e.mechanism = Some("0x1041".into());
        e.data_sha256 = Some(audit::sha256_hex(b"data"));
        e.result = Some(Rv::OK.to_string());
        e.prev = GENESIS.into();
        for (cert, data) in [(true, true), (false, false)] {
            let mut e = e.clone();
            if !cert {
                (e.cert_serial, e.cert_subject, e.class, e.cert_not_after) =
                    (None, None, None, None);
                e.data_sha256 = None;
                e.result = Some(Rv(cryptoki_sys::CKR_DEVICE_ERROR).to_string());
            }
            let mut line = Vec::new();
            signature_line(
                &mut line,
                &e.time,
                &signer_members(e.clone()).unwrap(),
                e.data_sha256.as_deref(),
                e.result.as_deref().unwrap(),
                &e.prev,
            )
            .unwrap();
            assert_eq!(
                String::from_utf8(line).unwrap(),
                e.to_line().unwrap(),
                "cert {cert}, data {data}"
            );
        }
    }

    #[test]
    fn broken_journal_is_kept_and_continued() {
        let d = dir("broken");
        let j = Journal::open(&d);
        j.append(entry(1)).unwrap();
        j.append(entry(2)).unwrap();
        drop(j);
        let path = d.join(audit::FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen("\"pid\":1", "\"pid\":9", 1) + "cut";
        std::fs::write(&path, &edited).unwrap();
        let j = Journal::open(&d);
        j.append(entry(3)).unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.starts_with(&edited), "history kept");
        let lines: Vec<&str> = after.lines().collect();
        assert_eq!(lines.len(), 4);
        let last: AuditEntry = serde_json::from_str(lines[3]).unwrap();
        assert_eq!(last.prev, audit::line_hash(b"cut"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn login_results_map_to_events() {
        assert_eq!(login_event(Rv::OK), AuditEvent::Login);
        assert_eq!(
            login_event(Rv(cryptoki_sys::CKR_PIN_LOCKED)),
            AuditEvent::Lockout
        );
        assert_eq!(
            login_event(Rv(cryptoki_sys::CKR_PIN_INCORRECT)),
            AuditEvent::LoginFailed
        );
        assert_eq!(
            login_event(Rv(cryptoki_sys::CKR_FUNCTION_CANCELED)),
            AuditEvent::LoginFailed
        );
    }

    #[test]
    fn disabled_journal_records_nothing() {
        assert!(matches!(
            Journal::disabled().append(entry(1)),
            Err(JournalError::Disabled)
        ));
    }

    #[test]
    fn operation_end_follows_pkcs11() {
        assert!(!operation_ended(Rv::OK, None));
        assert!(!operation_ended(
            Rv(cryptoki_sys::CKR_BUFFER_TOO_SMALL),
            Some(1)
        ));
        assert!(operation_ended(Rv::OK, Some(256)));
        assert!(operation_ended(Rv(cryptoki_sys::CKR_DEVICE_ERROR), None));
    }
}
