//! The audit journal: signatures, logins, lockouts, refusals, recoveries and token arrivals
//! and removals, appended to `state_dir/audit.jsonl` as a hash chain (format in
//! [`kyso_proto::audit`]).
//!
//! History is never rewritten: at start the existing journal is checked, a broken chain is
//! reported as an error and the new entries continue from its last line. Each entry is written
//! and synced to disk (`fdatasync`) before the call it records returns, so a signature never
//! leaves kysod before its entry is durable; calls that finish together share one sync. Before
//! each entry kysod checks that the file is still the one it wrote (device, inode, length): a
//! journal replaced, cut short or written to under it fails that entry, is logged, and the
//! entries that follow go to the file at the path after a `journal_changed` entry. The
//! journal takes plain values — who asked, on which token, with which certificate — and never
//! a PIN.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kyso_proto::audit::{self, AuditEntry, AuditEvent, GENESIS};
use kyso_proto::Ulong;
use parking_lot::{Condvar, Mutex};
use sha2::{Digest, Sha256};

use crate::certs::SigningCert;
use crate::error::Rv;

/// Who asked: the client's user, process and program, and the site it acts for, if any.
#[derive(Debug, Clone)]
pub struct Actor<'a> {
    pub uid: u32,
    pub pid: i32,
    pub program: &'a str,
    pub purpose: Option<kyso_proto::Purpose>,
}

/// Which token: its serial, label and kysod's slot id for it.
#[derive(Debug, Clone, Copy)]
pub struct TokenRef<'a> {
    pub serial: &'a str,
    pub label: &'a str,
    pub slot: Ulong,
}

/// The journal; clones share one file and one chain.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Shared>,
}

struct Shared {
    state: Mutex<Inner>,
    /// Signalled when a sync ends.
    synced: Condvar,
}

struct Inner {
    path: PathBuf,
    file: Option<Arc<File>>,
    /// Device and inode of the open file.
    identity: (u64, u64),
    /// Entries written, and entries known to be on disk.
    written: u64,
    durable: u64,
    /// A thread is syncing the file (outside the lock).
    syncing: bool,
    /// What was found changed in the file, to be journaled first once it is open again.
    changed: Option<String>,
    /// Hash of the last line: the next entry's `prev`.
    prev: String,
    /// The file does not end with a newline (a cut line): the next write starts with one.
    needs_newline: bool,
    /// A write failed: the file's end must be read again before the next one.
    resync: bool,
    /// The file's length after the last entry, so that a failed write can be cut off.
    len: u64,
}

/// Why an entry was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the audit journal {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot encode an audit entry: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the audit journal {path} was changed by another program: {what}")]
    Changed { path: PathBuf, what: String },
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
    /// Opens (creating, mode 0600) `state_dir/audit.jsonl` and continues its chain. A journal
    /// that cannot be opened is reported and retried at each append.
    pub fn open(state_dir: &Path) -> Journal {
        let mut inner = Inner {
            path: state_dir.join(audit::FILE_NAME),
            file: None,
            identity: (0, 0),
            written: 0,
            durable: 0,
            syncing: false,
            changed: None,
            prev: GENESIS.into(),
            needs_newline: false,
            resync: true,
            len: 0,
        };
        if let Err(e) = inner.prepare() {
            tracing::error!(journal = %inner.path.display(), error = %e, "cannot open the audit journal; events are lost and signatures withheld until it can be written");
        }
        Journal {
            inner: Arc::new(Shared {
                state: Mutex::new(inner),
                synced: Condvar::new(),
            }),
        }
    }

    /// Appends `entry` (its `prev` is set here) and returns once it is on disk. A failure is
    /// logged with the event it lost.
    pub fn append(&self, mut entry: AuditEntry) -> Result<(), JournalError> {
        let result = self.write_and_sync(&mut entry);
        if let Err(e) = &result {
            tracing::error!(error = %e, lost = ?entry, "audit event NOT recorded");
        }
        result
    }

    /// Writes the entry, then waits until a sync covers it: the first thread to need one
    /// syncs for every entry written so far, and the others wait for it (group commit).
    fn write_and_sync(&self, entry: &mut AuditEntry) -> Result<(), JournalError> {
        let mut st = self.inner.state.lock();
        let mine = st.append(entry)?;
        loop {
            if st.durable >= mine {
                return Ok(());
            }
            if st.syncing {
                self.inner.synced.wait(&mut st);
                continue;
            }
            let (Some(file), target) = (st.file.clone(), st.written) else {
                return Err(JournalError::Io {
                    path: st.path.clone(),
                    error: std::io::ErrorKind::NotFound.into(),
                });
            };
            st.syncing = true;
            let synced = parking_lot::MutexGuard::unlocked(&mut st, || file.sync_data());
            st.syncing = false;
            self.inner.synced.notify_all();
            match synced {
                Ok(()) => st.durable = st.durable.max(target),
                // The waiters try again themselves.
                Err(error) => {
                    return Err(JournalError::Io {
                        path: st.path.clone(),
                        error,
                    })
                }
            }
        }
    }

    /// Records a token arrival or removal.
    pub fn token_event(&self, event: AuditEvent, token: TokenRef<'_>) {
        let mut e = AuditEntry::new(event, SystemTime::now());
        set_token(&mut e, token);
        let _ = self.append(e);
    }

    /// Records a certificate on a token that arrived: what the expiry report lists, whether
    /// or not the certificate ever signs.
    pub fn certificate_seen(&self, token: TokenRef<'_>, cert: &SigningCert) {
        let mut e = AuditEntry::new(AuditEvent::CertificateSeen, SystemTime::now());
        set_token(&mut e, token);
        set_cert(&mut e, Some(cert));
        let _ = self.append(e);
    }

    /// Records the outcome of a `C_Login` (`CKR_PIN_LOCKED` is a lockout).
    pub fn login(&self, who: &Actor<'_>, token: TokenRef<'_>, rv: Rv, detail: Option<&str>) {
        let mut e = entry(login_event(rv), who, token, rv);
        e.detail = detail.map(str::to_string);
        let _ = self.append(e);
    }

    /// Records a finished signature operation; returns whether it is in the journal. The
    /// module has signed already and a journal failure cannot undo that: the caller withholds
    /// a signature that is not recorded.
    pub fn signature(&self, who: &Actor<'_>, token: TokenRef<'_>, done: SignDone, rv: Rv) -> bool {
        let mut e = entry(AuditEvent::Signature, who, token, rv);
        e.mechanism = Some(format!("{:#x}", done.mechanism));
        set_cert(&mut e, done.cert.as_ref());
        e.data_sha256 = done.data_sha256;
        match self.append(e) {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(pid = who.pid, program = who.program, serial = token.serial, %rv, error = %err, "a signature could not be recorded in the audit journal; it is withheld from the application");
                false
            }
        }
    }

    /// Records a recovery step (request, apply, on-site unlock, wipe) with the agency's case
    /// reference and a detail that never holds a secret.
    pub fn recovery(
        &self,
        event: AuditEvent,
        who: &Actor<'_>,
        token: TokenRef<'_>,
        case_ref: Option<&str>,
        detail: &str,
        rv: Rv,
    ) {
        let mut e = entry(event, who, token, rv);
        e.case_ref = case_ref.map(str::to_string);
        e.detail = Some(detail.to_string());
        let _ = self.append(e);
    }

    /// Records a signature the policy refused, with the certificate it judged.
    pub fn refusal(
        &self,
        who: &Actor<'_>,
        token: TokenRef<'_>,
        mechanism: Ulong,
        cert: Option<&SigningCert>,
        rv: Rv,
    ) {
        let mut e = entry(AuditEvent::Refusal, who, token, rv);
        e.mechanism = Some(format!("{mechanism:#x}"));
        set_cert(&mut e, cert);
        let _ = self.append(e);
    }
}

fn set_token(e: &mut AuditEntry, token: TokenRef<'_>) {
    e.token_serial = Some(token.serial.to_string());
    e.token_label = Some(token.label.to_string());
    e.slot = Some(token.slot);
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

fn entry(event: AuditEvent, who: &Actor<'_>, token: TokenRef<'_>, rv: Rv) -> AuditEntry {
    let mut e = AuditEntry::new(event, SystemTime::now());
    e.uid = Some(who.uid);
    e.pid = Some(who.pid);
    e.application = Some(who.program.to_string());
    if let Some(purpose) = &who.purpose {
        e.site = Some(purpose.site.clone());
        e.document = Some(purpose.document.clone());
    }
    set_token(&mut e, token);
    e.result = Some(rv.to_string());
    e
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
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.path)?;
            let meta = file.metadata()?;
            self.len = meta.len();
            self.identity = (meta.dev(), meta.ino());
            self.prev = prev;
            self.needs_newline = cut;
            self.file = Some(Arc::new(file));
            self.resync = false;
        }
        Ok(())
    }

    /// What changed in the journal file since kysod last wrote it, if anything: another file
    /// at the path, or a length other than kysod left.
    fn changed_under_us(&self) -> Option<String> {
        if self.resync {
            return None;
        }
        let file = self.file.as_ref()?;
        let at_path = std::fs::metadata(&self.path).ok();
        let open = file.metadata().ok()?;
        match at_path {
            None => Some("the file was removed".into()),
            Some(p) if (p.dev(), p.ino()) != self.identity => Some(format!(
                "another file was put in its place (inode {} became {})",
                self.identity.1,
                p.ino()
            )),
            Some(_) if open.len() < self.len => Some(format!(
                "it was cut from {} to {} bytes",
                self.len,
                open.len()
            )),
            Some(_) if open.len() > self.len => Some(format!(
                "{} bytes were written to it by another program",
                open.len() - self.len
            )),
            Some(_) => None,
        }
    }

    /// Writes `entry` after the chain's last hash; returns its number, for the sync.
    fn append(&mut self, entry: &mut AuditEntry) -> Result<u64, JournalError> {
        let io = |path: &Path, error| JournalError::Io {
            path: path.to_path_buf(),
            error,
        };
        if let Some(what) = self.changed_under_us() {
            tracing::error!(journal = %self.path.display(), what, "the audit journal was changed by another program; this entry is not recorded, and the entries that follow go to the file now at its path");
            self.resync = true;
            self.changed = Some(what.clone());
            return Err(JournalError::Changed {
                path: self.path.clone(),
                what,
            });
        }
        self.prepare().map_err(|e| io(&self.path, e))?;
        if let Some(what) = self.changed.take() {
            let mut note = AuditEntry::new(AuditEvent::JournalChanged, SystemTime::now());
            note.detail = Some(what);
            self.write_entry(&mut note)?;
        }
        self.write_entry(entry)
    }

    fn write_entry(&mut self, entry: &mut AuditEntry) -> Result<u64, JournalError> {
        let io = |path: &Path, error| JournalError::Io {
            path: path.to_path_buf(),
            error,
        };
        entry.prev = self.prev.clone();
        let line = entry.to_line()?;
        let hash = audit::line_hash(line.as_bytes());
        let mut bytes = Vec::with_capacity(line.len() + 2);
        if self.needs_newline {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let Some(file) = self.file.as_deref() else {
            return Err(io(&self.path, std::io::ErrorKind::NotFound.into()));
        };
        if let Err(e) = (&*file).write_all(&bytes) {
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
        self.written += 1;
        Ok(self.written)
    }
}

/// A signature operation under way on a session, from `C_SignInit` to its end.
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

    /// A signature operation that failed before it could sign anything.
    pub fn failed(self) -> SignDone {
        SignDone {
            mechanism: self.mechanism,
            cert: self.cert,
            data_sha256: None,
        }
    }
}

/// Whether a single-part call or a `C_*Final` (sign, encrypt, digest …) with this result
/// ended the operation: a size query or a too-small buffer leaves it running, as PKCS#11 says.
pub fn operation_ended(rv: Rv, out: kyso_proto::OutBuf) -> bool {
    !(rv == Rv(cryptoki_sys::CKR_BUFFER_TOO_SMALL) || (rv == Rv::OK && out.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CertClass;

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

    #[test]
    fn a_signature_entry_names_who_what_and_with_which_certificate() {
        let d = dir("signature");
        let j = Journal::open(&d);
        let who = Actor {
            uid: 1000,
            pid: 4242,
            program: "/usr/bin/ký \"số\"",
            purpose: Some(kyso_proto::Purpose {
                site: "https://vpdt.example.gov.vn".into(),
                document: "hash".into(),
            }),
        };
        let token = TokenRef {
            serial: "a1b2",
            label: "NGUYỄN VĂN A",
            slot: 3,
        };
        let cert = SigningCert {
            serial: "5403c0a1".into(),
            subject: "Nguyễn Văn A, Sở Tài chính".into(),
            class: CertClass::Personal,
            not_after: 1_800_000_000,
        };
        let done = SignTrack::new(0x40, Some(cert)).single(b"data");
        assert!(j.signature(&who, token, done, Rv::OK));
        let text = std::fs::read_to_string(d.join(audit::FILE_NAME)).unwrap();
        let e: AuditEntry = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(e.event, AuditEvent::Signature);
        assert_eq!(e.application.as_deref(), Some("/usr/bin/ký \"số\""));
        assert_eq!(e.token_label.as_deref(), Some("NGUYỄN VĂN A"));
        assert_eq!(e.cert_serial.as_deref(), Some("5403c0a1"));
        assert_eq!(e.class.as_deref(), Some("personal"));
        assert_eq!(e.cert_not_after.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!(e.mechanism.as_deref(), Some("0x40"));
        assert_eq!(e.data_sha256, Some(audit::sha256_hex(b"data")));
        assert_eq!(e.result.as_deref(), Some("CKR_OK"));
        assert_eq!(e.site.as_deref(), Some("https://vpdt.example.gov.vn"));
        assert_eq!(e.document.as_deref(), Some("hash"));
        assert_eq!(e.prev, GENESIS);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn entries_written_together_are_all_synced_and_chained() {
        let d = dir("together");
        let j = Journal::open(&d);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        j.append(entry(t * 100 + i)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let st = j.inner.state.lock();
        assert_eq!((st.written, st.durable), (200, 200));
        drop(st);
        let bytes = std::fs::read(d.join(audit::FILE_NAME)).unwrap();
        assert_eq!(audit::verify_bytes(&bytes).unwrap().entries, 200);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A journal replaced, cut short or written to by another program fails the next entry,
    /// and the entries after it follow a `journal_changed` entry in the file at the path.
    #[test]
    fn a_journal_changed_under_kysod_is_noticed() {
        let d = dir("changed");
        let path = d.join(audit::FILE_NAME);
        let j = Journal::open(&d);
        for change in ["replaced", "cut", "written"] {
            j.append(entry(1)).unwrap();
            j.append(entry(2)).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            match change {
                "replaced" => {
                    let other = d.join("forged");
                    std::fs::write(&other, text.lines().next().unwrap().to_string() + "\n")
                        .unwrap();
                    std::fs::rename(&other, &path).unwrap();
                }
                "cut" => {
                    let first = text.lines().next().unwrap().len() + 1;
                    let f = OpenOptions::new().write(true).open(&path).unwrap();
                    f.set_len(first as u64).unwrap();
                }
                _ => {
                    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
                    f.write_all(b"{}\n").unwrap();
                }
            }
            let err = j.append(entry(3)).unwrap_err();
            assert!(
                matches!(err, JournalError::Changed { .. }),
                "{change}: {err}"
            );
            j.append(entry(4)).unwrap();
            let after = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = after.lines().collect();
            let note: AuditEntry = serde_json::from_str(lines[lines.len() - 2]).unwrap();
            assert_eq!(note.event, AuditEvent::JournalChanged, "{change}");
            assert!(note.detail.is_some(), "{change}");
            let last: AuditEntry = serde_json::from_str(lines[lines.len() - 1]).unwrap();
            assert_eq!(last.pid, Some(4), "{change}");
            assert_eq!(
                last.prev,
                audit::line_hash(lines[lines.len() - 2].as_bytes())
            );
        }
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
    fn a_journal_that_cannot_be_written_says_so() {
        let d = dir("unwritable");
        let j = Journal::open(&d.join("missing"));
        assert!(matches!(j.append(entry(1)), Err(JournalError::Io { .. })));
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
