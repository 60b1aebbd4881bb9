//! What the `kyso` commands read from kysod's configuration: where its audit journal is and how
//! long before expiry it warns of a certificate (`[policy] warn_days`). The rest of the file is
//! kysod's business and is not looked at.

use std::path::{Path, PathBuf};

use kyso_proto::audit;
use kyso_proto::standing::DEFAULT_WARN_DAYS;

/// The settings the commands share, with kysod's defaults for what the file leaves out.
pub(crate) struct KysodConfig {
    state_dir: Option<PathBuf>,
    /// `[policy] warn_days`.
    pub warn_days: u32,
}

impl KysodConfig {
    /// Reads `config` as given, else the configuration kysod itself would read: the first that
    /// exists of `$XDG_CONFIG_HOME/kyso/kysod.toml` (or `~/.config/…`) and
    /// `/etc/kyso/kysod.toml`. With none, kysod's defaults.
    pub(crate) fn read(config: Option<PathBuf>) -> Result<KysodConfig, String> {
        let config = config.or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .map(|d| d.join("kyso/kysod.toml"))
                .filter(|p| p.exists())
                .or_else(|| Some(PathBuf::from("/etc/kyso/kysod.toml")).filter(|p| p.exists()))
        });
        match config {
            Some(path) => Self::parse(&path),
            None => Ok(KysodConfig {
                state_dir: None,
                warn_days: DEFAULT_WARN_DAYS,
            }),
        }
    }

    fn parse(path: &Path) -> Result<KysodConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the configuration {}: {e}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("cannot parse the configuration {}: {e}", path.display()))?;
        let state_dir = match table.get("state_dir") {
            None => None,
            Some(toml::Value::String(s)) => Some(PathBuf::from(s)),
            Some(_) => return Err(format!("state_dir in {} is not a string", path.display())),
        };
        let warn_days = match table.get("policy").map(|p| p.get("warn_days")) {
            None | Some(None) => DEFAULT_WARN_DAYS,
            Some(Some(v)) => v
                .as_integer()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    format!(
                        "[policy] warn_days in {} is not a number of days",
                        path.display()
                    )
                })?,
        };
        Ok(KysodConfig {
            state_dir,
            warn_days,
        })
    }

    /// The audit journal: in `state_dir`, else in kysod's default state directory
    /// (`$XDG_STATE_HOME/kyso` or `~/.local/state/kyso`).
    pub(crate) fn journal(&self) -> Result<PathBuf, String> {
        let state_dir = match &self.state_dir {
            Some(d) => d.clone(),
            None => default_state_dir()?,
        };
        Ok(state_dir.join(audit::FILE_NAME))
    }
}

fn default_state_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("kyso"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/kyso"))
        .ok_or_else(|| "no state directory: HOME is not set; pass --config or --journal".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn parsed(text: &str) -> Result<KysodConfig, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "kyso-config-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        let r = KysodConfig::read(Some(path.clone()));
        let _ = std::fs::remove_file(&path);
        r
    }

    #[test]
    fn warn_days_and_state_dir_or_their_defaults() {
        let c = parsed("state_dir = \"/var/k\"\n[policy]\nwarn_days = 90\n").unwrap();
        assert_eq!(c.warn_days, 90);
        assert_eq!(c.journal().unwrap(), PathBuf::from("/var/k/audit.jsonl"));
        let c = parsed("[policy]\nconfirm_organisation = true\n").unwrap();
        assert_eq!(c.warn_days, DEFAULT_WARN_DAYS);
        for bad in [
            "[policy]\nwarn_days = -1\n",
            "[policy]\nwarn_days = \"60\"\n",
            "state_dir = 3\n",
            "not toml",
        ] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
        assert!(KysodConfig::read(Some("/nonexistent/kysod.toml".into())).is_err());
    }
}
