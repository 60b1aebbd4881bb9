//! Which web sites may use the token. Origins in the configuration are allowed; the user's
//! answers to the consent prompt are remembered: "always" in the state directory until revoked
//! on the settings page, "this time" in memory for [`ONCE_FOR`], and a refusal for
//! [`REFUSED_FOR`], during which the site is refused without asking again.
//!
//! The store decides and records; the caller runs the prompt.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::origin::Origin;

/// How long an "allow this time" answer lets the site in (a page's visit: its certificate
/// look-up, its signatures).
pub const ONCE_FOR: Duration = Duration::from_secs(15 * 60);
/// How long a refused site is refused without asking.
pub const REFUSED_FOR: Duration = Duration::from_secs(10 * 60);

/// The user's answer to "the site … wants to use your digital signature".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Once,
    Always,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Configured by the administrator.
    Configured,
    /// The user said "always".
    Remembered,
    /// The user said "this time" a short while ago.
    ForNow,
    /// The user refused it a short while ago.
    Refused,
    /// Nobody has decided: ask.
    Ask,
}

impl Verdict {
    pub fn allowed(self) -> bool {
        matches!(
            self,
            Verdict::Configured | Verdict::Remembered | Verdict::ForNow
        )
    }
}

/// The file's shape: origins allowed for good (with when) and origins refused (until when),
/// times in seconds since the Unix epoch.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Remembered {
    #[serde(default)]
    always: BTreeMap<String, u64>,
    #[serde(default)]
    refused: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The consent state. Not shared by itself: the server keeps it behind one lock.
pub struct ConsentStore {
    path: PathBuf,
    configured: BTreeSet<Origin>,
    remembered: Remembered,
    once: HashMap<Origin, SystemTime>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ConsentStore {
    /// Loads the remembered answers from `path` (a missing or unreadable file remembers
    /// nothing; it is rewritten at the next answer).
    pub fn load(path: &Path, configured: impl IntoIterator<Item = Origin>) -> ConsentStore {
        let remembered = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        ConsentStore {
            path: path.to_path_buf(),
            configured: configured.into_iter().collect(),
            remembered,
            once: HashMap::new(),
        }
    }

    pub fn verdict(&self, origin: &Origin, now: SystemTime) -> Verdict {
        if self.configured.contains(origin) {
            return Verdict::Configured;
        }
        if self.remembered.always.contains_key(origin.as_str()) {
            return Verdict::Remembered;
        }
        if self
            .remembered
            .refused
            .get(origin.as_str())
            .is_some_and(|until| secs(now) < *until)
        {
            return Verdict::Refused;
        }
        if self.once.get(origin).is_some_and(|until| now < *until) {
            return Verdict::ForNow;
        }
        Verdict::Ask
    }

    /// Records the user's answer about `origin`.
    pub fn record(
        &mut self,
        origin: &Origin,
        answer: Answer,
        now: SystemTime,
    ) -> Result<(), ConsentError> {
        let key = origin.as_str().to_string();
        self.remembered
            .refused
            .retain(|_, until| *until > secs(now));
        match answer {
            Answer::Once => {
                self.once.insert(origin.clone(), now + ONCE_FOR);
                return Ok(());
            }
            Answer::Always => {
                self.remembered.refused.remove(&key);
                self.remembered.always.insert(key, secs(now));
            }
            Answer::Refuse => {
                self.once.remove(origin);
                self.remembered.refused.insert(key, secs(now + REFUSED_FOR));
            }
        }
        self.save()
    }

    /// Forgets what the user said about `origin` (the settings page's "revoke").
    pub fn revoke(&mut self, origin: &Origin) -> Result<bool, ConsentError> {
        let had = self.remembered.always.remove(origin.as_str()).is_some()
            | self.remembered.refused.remove(origin.as_str()).is_some()
            | self.once.remove(origin).is_some();
        if had {
            self.save()?;
        }
        Ok(had)
    }

    /// Configured origins, and origins the user allowed for good with when (Unix seconds).
    pub fn allowed(&self) -> (Vec<String>, Vec<(String, u64)>) {
        (
            self.configured.iter().map(|o| o.to_string()).collect(),
            self.remembered
                .always
                .iter()
                .map(|(o, t)| (o.clone(), *t))
                .collect(),
        )
    }

    /// Origins refused now, with until when (Unix seconds).
    pub fn refused(&self, now: SystemTime) -> Vec<(String, u64)> {
        self.remembered
            .refused
            .iter()
            .filter(|(_, until)| **until > secs(now))
            .map(|(o, t)| (o.clone(), *t))
            .collect()
    }

    fn save(&self) -> Result<(), ConsentError> {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.path.with_extension("tmp");
            let text = serde_json::to_vec_pretty(&self.remembered)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|source| ConsentError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        Origin::parse(s).unwrap()
    }

    #[test]
    fn configured_remembered_refused_and_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consent.json");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut store = ConsentStore::load(&path, [o("https://vpdt.example.gov.vn")]);
        assert_eq!(
            store.verdict(&o("https://VPDT.example.gov.vn:443"), t0),
            Verdict::Configured
        );
        let shop = o("https://shop.example");
        assert_eq!(store.verdict(&shop, t0), Verdict::Ask);

        store.record(&shop, Answer::Refuse, t0).unwrap();
        assert_eq!(
            store.verdict(&shop, t0 + Duration::from_secs(60)),
            Verdict::Refused
        );
        assert_eq!(store.verdict(&shop, t0 + REFUSED_FOR), Verdict::Ask);

        store.record(&shop, Answer::Once, t0).unwrap();
        assert_eq!(
            store.verdict(&shop, t0 + Duration::from_secs(1)),
            Verdict::Refused,
            "a refusal stands until it runs out"
        );
        let later = t0 + REFUSED_FOR;
        store.record(&shop, Answer::Once, later).unwrap();
        assert_eq!(
            store.verdict(&shop, later + Duration::from_secs(1)),
            Verdict::ForNow
        );
        assert_eq!(store.verdict(&shop, later + ONCE_FOR), Verdict::Ask);
        assert!(
            !path.exists()
                || !std::fs::read_to_string(&path)
                    .unwrap()
                    .contains("always\": {\n")
        );

        let school = o("https://school.example");
        store.record(&school, Answer::Always, t0).unwrap();
        assert_eq!(
            store.verdict(&school, t0 + Duration::from_secs(86400 * 365)),
            Verdict::Remembered
        );

        // Remembered across restarts; "this time" is not.
        let reloaded = ConsentStore::load(&path, []);
        assert_eq!(reloaded.verdict(&school, t0), Verdict::Remembered);
        assert_eq!(
            reloaded.verdict(&shop, later + Duration::from_secs(1)),
            Verdict::Ask
        );

        let mut reloaded = reloaded;
        assert!(reloaded.revoke(&school).unwrap());
        assert_eq!(reloaded.verdict(&school, t0), Verdict::Ask);
        assert_eq!(
            ConsentStore::load(&path, []).verdict(&school, t0),
            Verdict::Ask
        );
    }

    #[test]
    fn a_damaged_file_remembers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consent.json");
        std::fs::write(&path, b"{\"always\": 5").unwrap();
        let store = ConsentStore::load(&path, []);
        assert_eq!(
            store.verdict(&o("https://a.example"), SystemTime::now()),
            Verdict::Ask
        );
    }
}
