//! What kysod keeps for token recovery. The private halves of pending requests' ephemeral
//! keys live in kysod's memory only (kysod is not dumpable), so nothing the user's other
//! programs can read opens a grant or makes a receipt: a request lasts until its grant is
//! applied, it expires (72 h), or kysod stops. On disk, in `state_dir/recovery/` (directory
//! 0700, files 0600), is only the SO PIN generation kysod last installed on each token
//! (`so-generations.json`, no secret).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use kyso_proto::SoPinCandidate;
use parking_lot::Mutex;
use zeroize::Zeroizing;

/// A request waiting for its grant.
pub struct PendingRequest {
    pub serial: String,
    /// SHA-256 (hex) of the request file kysod made: the grant must answer that very file.
    pub request_sha256: String,
    pub private_key: Zeroizing<[u8; 32]>,
    pub expires: i64,
}

impl PendingRequest {
    pub fn made(&self) -> kyso_recovery::grant::Made<'_> {
        kyso_recovery::grant::Made {
            serial: &self.serial,
            sha256: &self.request_sha256,
            private_key: &self.private_key,
        }
    }
}

pub struct RecoveryState {
    dir: PathBuf,
    /// The helpdesk keys grants must be signed with (`[recovery] helpdesk_keys`).
    pub trusted: Vec<VerifyingKey>,
    /// Pending requests by nonce. A grant being applied is taken out, so a second apply of
    /// it finds nothing and spends nothing.
    pending: Mutex<HashMap<String, PendingRequest>>,
}

/// Why a pending request cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RequestLookup {
    #[error("no pending recovery request on this workstation matches the grant: it was already used (a grant works once) or is being applied now, kysod was restarted since the request was made (a request lasts until kysod stops; make a new one), or the request was made elsewhere")]
    Unknown,
    #[error("the recovery request expired; make a new one with `kyso recover request`")]
    Expired,
}

impl RecoveryState {
    /// Reads the trusted helpdesk keys; a missing or malformed key file is an error at start.
    pub fn open(state_dir: &Path, keys: &[PathBuf]) -> Result<RecoveryState, String> {
        let trusted = keys
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read helpdesk key {}: {e}", p.display()))?;
                kyso_recovery::grant::parse_verifying_key(&text)
                    .map_err(|e| format!("helpdesk key {}: {e}", p.display()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let dir = state_dir.join("recovery");
        // Request keys never belong on disk: any found there are deleted.
        let stale = dir.join("requests");
        if stale.exists() {
            if let Err(e) = std::fs::remove_dir_all(&stale) {
                tracing::error!(dir = %stale.display(), error = %e, "cannot delete recovery keys left on disk");
            }
        }
        Ok(RecoveryState {
            dir,
            trusted,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// A state that trusts no helpdesk.
    #[cfg(test)]
    pub fn none(state_dir: &Path) -> RecoveryState {
        RecoveryState {
            dir: state_dir.join("recovery"),
            trusted: Vec::new(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn write_private(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        crate::files::replace(path, bytes)
    }

    /// Keeps a new request (and lets go of the expired ones).
    pub fn add_request(&self, nonce: &str, request: PendingRequest, now: i64) {
        let mut pending = self.pending.lock();
        pending.retain(|_, r| now < r.expires);
        pending.insert(nonce.into(), request);
    }

    /// Takes the request `nonce` out for its grant to be applied: no one else can use it
    /// meanwhile. [`Self::put_back`] returns it when the grant was not applied.
    pub fn take_request(&self, nonce: &str, now: i64) -> Result<PendingRequest, RequestLookup> {
        let request = self
            .pending
            .lock()
            .remove(nonce)
            .ok_or(RequestLookup::Unknown)?;
        if now >= request.expires {
            return Err(RequestLookup::Expired);
        }
        Ok(request)
    }

    /// Returns a request taken out whose grant was not applied.
    pub fn put_back(&self, nonce: &str, request: PendingRequest) {
        self.pending.lock().insert(nonce.into(), request);
    }

    fn generations_path(&self) -> PathBuf {
        self.dir.join("so-generations.json")
    }

    fn generations(&self) -> BTreeMap<String, String> {
        std::fs::read(self.generations_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The SO PIN generation kysod last installed on the token `serial`.
    pub fn generation(&self, serial: &str) -> Option<String> {
        self.generations().remove(serial)
    }

    pub fn set_generation(&self, serial: &str, generation: &str) {
        let mut all = self.generations();
        all.insert(serial.into(), generation.into());
        let result = serde_json::to_vec_pretty(&all)
            .map_err(std::io::Error::other)
            .and_then(|b| self.write_private(&self.generations_path(), &b));
        if let Err(e) = result {
            tracing::error!(serial, generation, error = %e, "cannot record the SO PIN generation installed; the helpdesk's escrow still holds both SO PINs");
        }
    }

    /// The candidate SO PIN to use on `serial`: the generation kysod installed last when the
    /// helpdesk offers it, else the helpdesk's first (its confirmed escrow).
    pub fn choose<'a>(
        &self,
        serial: &str,
        candidates: &'a [SoPinCandidate],
    ) -> Option<&'a SoPinCandidate> {
        let recorded = self.generation(serial);
        recorded
            .and_then(|g| candidates.iter().find(|c| c.generation == g))
            .or(candidates.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kyso_proto::Pin;

    fn state() -> (RecoveryState, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "kyso-recovery-state-{}-{}",
            std::process::id(),
            kyso_recovery::hex(&kyso_recovery::random::<6>())
        ));
        (RecoveryState::none(&dir), dir)
    }

    fn pending(serial: &str, key: u8, expires: i64) -> PendingRequest {
        PendingRequest {
            serial: serial.into(),
            request_sha256: format!("d-{serial}"),
            private_key: Zeroizing::new([key; 32]),
            expires,
        }
    }

    #[test]
    fn a_request_is_taken_once_and_expires() {
        let (s, dir) = state();
        let (n1, n2) = ("a".repeat(32), "b".repeat(32));
        s.add_request(&n1, pending("S1", 1, 100), 0);
        s.add_request(&n2, pending("S2", 2, 300), 0);
        let taken = s.take_request(&n1, 99).unwrap();
        assert_eq!(*taken.private_key, [1; 32]);
        // Taken: a second apply finds nothing until it is put back.
        assert!(matches!(
            s.take_request(&n1, 99),
            Err(RequestLookup::Unknown)
        ));
        s.put_back(&n1, taken);
        assert!(matches!(
            s.take_request(&n1, 100),
            Err(RequestLookup::Expired)
        ));
        assert!(matches!(
            s.take_request(&n1, 50),
            Err(RequestLookup::Unknown)
        ));
        // A new request lets go of the expired ones.
        s.add_request(&"c".repeat(32), pending("S3", 3, 900), 300);
        assert!(matches!(
            s.take_request(&n2, 10),
            Err(RequestLookup::Unknown)
        ));
        assert!(!dir.join("recovery").exists(), "no key is written to disk");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_installed_generation_is_chosen_else_the_confirmed_one() {
        let (s, dir) = state();
        let c = |g: &str| SoPinCandidate {
            generation: g.into(),
            pin: Pin::new(b"0000"),
        };
        let offered = [c("escrow-1"), c("grant-2")];
        assert_eq!(s.choose("S", &offered).unwrap().generation, "escrow-1");
        s.set_generation("S", "grant-2");
        assert_eq!(s.choose("S", &offered).unwrap().generation, "grant-2");
        assert_eq!(s.choose("T", &offered).unwrap().generation, "escrow-1");
        s.set_generation("S", "unknown-3");
        assert_eq!(s.choose("S", &offered).unwrap().generation, "escrow-1");
        assert!(s.choose("S", &[]).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
