//! What kysod keeps for token recovery in `state_dir/recovery/` (directory 0700, files 0600):
//! the private halves of pending requests' ephemeral keys (`requests/NONCE.json`, deleted when
//! the grant is applied or the request expires, so a grant works once), and the SO PIN
//! generation it last installed on each token (`so-generations.json`), by which it picks the
//! right escrowed SO PIN while a rotation is not yet confirmed to the helpdesk.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use kyso_proto::SoPinCandidate;
use kyso_recovery::artefact::{decode_fixed, encode_b64};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A request waiting for its grant.
pub struct PendingRequest {
    pub serial: String,
    /// SHA-256 (hex) of the request file kysod made: the grant must answer that very file.
    pub request_sha256: String,
    pub private_key: Zeroizing<[u8; 32]>,
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

#[derive(Serialize, Deserialize)]
struct RequestFile {
    serial: String,
    request_sha256: String,
    private_key: String,
    expires: i64,
}

impl Drop for RequestFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.private_key);
    }
}

pub struct RecoveryState {
    dir: PathBuf,
    /// The helpdesk keys grants must be signed with (`[recovery] helpdesk_keys`).
    pub trusted: Vec<VerifyingKey>,
}

/// Why a pending request cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RequestLookup {
    #[error("no pending recovery request on this workstation matches the grant: it was already used (a grant works once), or the request was made elsewhere")]
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
        Ok(RecoveryState {
            dir: state_dir.join("recovery"),
            trusted,
        })
    }

    /// A state that trusts no helpdesk.
    #[cfg(test)]
    pub fn none(state_dir: &Path) -> RecoveryState {
        RecoveryState {
            dir: state_dir.join("recovery"),
            trusted: Vec::new(),
        }
    }

    fn request_path(&self, nonce: &str) -> Option<PathBuf> {
        // The nonce comes from a file the user was given: only hex names a request.
        (nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.dir.join("requests").join(format!("{nonce}.json")))
    }

    fn write_private(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    pub fn save_request(
        &self,
        nonce: &str,
        serial: &str,
        request_sha256: &str,
        private_key: &[u8; 32],
        expires: i64,
    ) -> std::io::Result<()> {
        let path = self
            .request_path(nonce)
            .ok_or_else(|| std::io::Error::other("bad nonce"))?;
        let file = RequestFile {
            serial: serial.into(),
            request_sha256: request_sha256.into(),
            private_key: encode_b64(private_key),
            expires,
        };
        let bytes = Zeroizing::new(serde_json::to_vec(&file).map_err(std::io::Error::other)?);
        self.write_private(&path, &bytes)
    }

    pub fn load_request(&self, nonce: &str, now: i64) -> Result<PendingRequest, RequestLookup> {
        let path = self.request_path(nonce).ok_or(RequestLookup::Unknown)?;
        let bytes = Zeroizing::new(std::fs::read(&path).map_err(|_| RequestLookup::Unknown)?);
        let file: RequestFile =
            serde_json::from_slice(&bytes).map_err(|_| RequestLookup::Unknown)?;
        if now >= file.expires {
            self.forget_request(nonce);
            return Err(RequestLookup::Expired);
        }
        let key = decode_fixed::<32>(&file.private_key, "private_key")
            .map_err(|_| RequestLookup::Unknown)?;
        Ok(PendingRequest {
            serial: file.serial.clone(),
            request_sha256: file.request_sha256.clone(),
            private_key: Zeroizing::new(key),
        })
    }

    /// Deletes the keys of requests past their 72 hours (run when a new request is made).
    pub fn purge_expired(&self, now: i64) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("requests")) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let expired = std::fs::read(&path)
                .ok()
                .map(Zeroizing::new)
                .and_then(|b| serde_json::from_slice::<RequestFile>(&b).ok())
                .is_none_or(|f| now >= f.expires);
            if expired && path.extension().is_some_and(|e| e == "json") {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Deletes a request's key: its grant can no longer be opened.
    pub fn forget_request(&self, nonce: &str) {
        if let Some(path) = self.request_path(nonce) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::error!(error = %e, file = %path.display(), "cannot delete a used recovery key");
            }
        }
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

    #[test]
    fn an_expired_request_key_is_refused_and_deleted() {
        let (s, dir) = state();
        let (n1, n2) = ("a".repeat(32), "b".repeat(32));
        s.save_request(&n1, "S1", "d1", &[1; 32], 100).unwrap();
        s.save_request(&n2, "S2", "d2", &[2; 32], 300).unwrap();
        let pending = s.load_request(&n1, 99).unwrap();
        assert_eq!(*pending.private_key, [1; 32]);
        assert_eq!(pending.request_sha256, "d1");
        assert!(matches!(
            s.load_request(&n1, 100),
            Err(RequestLookup::Expired)
        ));
        assert!(matches!(
            s.load_request(&n1, 50),
            Err(RequestLookup::Unknown)
        ));
        s.purge_expired(300);
        assert!(matches!(
            s.load_request(&n2, 10),
            Err(RequestLookup::Unknown)
        ));
        assert!(matches!(
            s.load_request("../x", 10),
            Err(RequestLookup::Unknown)
        ));
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
