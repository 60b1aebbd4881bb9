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
        let result = match &self.inner {
            None => Err(JournalError::Disabled),
            Some(shared) => {
                let written = shared
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .append(&mut entry);
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
        };
        if let Err(e) = &result {
            if !matches!(e, JournalError::Disabled) {
                tracing::error!(error = %e, lost = ?entry, "audit event NOT recorded");
            }
        }
        result
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
        let mut e = client_entry(AuditEvent::Signature, c, token, rv);
        e.mechanism = Some(format!("{:#x}", done.mechanism));
        e.data_sha256 = done.data_sha256;
        set_cert(&mut e, done.cert.as_ref());
        match self.append(e) {
            Ok(()) | Err(JournalError::Disabled) => true,
            Err(err) => {
                tracing::error!(client = c.id, pid = c.pid, program = %c.program, serial = %token.serial, %rv, error = %err, "a signature could not be recorded in the audit journal; it is withheld from the application");
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
        let io = |path: &Path, error| JournalError::Io {
            path: path.to_path_buf(),
            error,
        };
        self.prepare().map_err(|e| io(&self.path, e))?;
        entry.prev = self.prev.clone();
        let line = entry.to_line()?;
        let mut bytes = Vec::with_capacity(line.len() + 2);
        if self.needs_newline {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(line.as_bytes());
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
        self.prev = audit::line_hash(line.as_bytes());
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

/// Whether a sign call with this result ended the operation (so it is journaled): a size
/// query or a too-small buffer leaves it running, as PKCS#11 says.
pub fn sign_ended(rv: Rv, out: kyso_proto::OutBuf) -> bool {
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

    /// Whether the flusher has synced everything written, within two seconds.
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
    fn flusher_syncs_each_burst_also_after_a_pause() {
        let d = dir("flusher");
        let j = Journal::open(&d);
        for pid in 0..50 {
            j.append(entry(pid)).unwrap();
        }
        assert!(flushed(&j), "a burst is synced");
        // Long enough for the flusher to be waiting for the next entry.
        std::thread::sleep(SYNC_INTERVAL * 5);
        j.append(entry(51)).unwrap();
        assert!(flushed(&j), "an entry after a pause wakes the flusher");
        let _ = std::fs::remove_dir_all(&d);
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
    fn sign_end_follows_pkcs11() {
        assert!(!sign_ended(Rv::OK, None));
        assert!(!sign_ended(Rv(cryptoki_sys::CKR_BUFFER_TOO_SMALL), Some(1)));
        assert!(sign_ended(Rv::OK, Some(256)));
        assert!(sign_ended(Rv(cryptoki_sys::CKR_DEVICE_ERROR), None));
    }
}
