//! kysod's configuration file (TOML). Unknown keys are errors: a typo in a security setting
//! must not silently fall back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listening socket; default `$XDG_RUNTIME_DIR/kyso/kysod.sock`.
    pub socket: Option<PathBuf>,
    /// Persistent state (stable slot ids); default `$XDG_STATE_HOME/kyso` or `~/.local/state/kyso`.
    pub state_dir: Option<PathBuf>,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`); `RUST_LOG` overrides it.
    pub log: Option<String>,
    #[serde(default, rename = "module")]
    pub modules: Vec<ModuleConfig>,
    #[serde(default)]
    pub limits: Limits,
    /// `[[token]]` tables: USB tokens beyond the built-in table (they take precedence).
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenConfig>,
    /// The pinentry program asking for PINs; default `pinentry` from `PATH`.
    pub pinentry: Option<PathBuf>,
    #[serde(default)]
    pub pin: PinConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub recovery: RecoveryConfig,
    /// `[bridge]`: read by `kyso-bridge`, not by kysod (which accepts it and leaves it alone).
    #[serde(default)]
    pub bridge: BridgeConfig,
    /// `[documents]`: read by `kyso sign`, `kyso verify` and the bridge's document operations
    /// (`kyso_pdf::config`), not by kysod.
    #[serde(default)]
    pub documents: toml::Table,
}

/// `[bridge]`: kyso's local web-signing service (`kyso-bridge`).
///
/// ```toml
/// [bridge]
/// listen = "127.0.0.1:8987"
/// # web applications allowed without asking the user
/// origins = ["https://vpdt.example.gov.vn"]
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    pub listen: String,
    pub origins: Vec<String>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            listen: "127.0.0.1:8987".into(),
            origins: Vec::new(),
        }
    }
}

/// `[recovery]`: remote token recovery.
///
/// ```toml
/// [recovery]
/// # public keys (as `kyso-helpdesk pubkey` prints them) of the helpdesks whose grants are trusted
/// helpdesk_keys = ["/etc/kyso/helpdesk.pub"]
/// ```
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    pub helpdesk_keys: Vec<PathBuf>,
}

/// `[policy]`: the signing policy (see [`crate::policy`]).
///
/// ```toml
/// [policy]
/// confirm_organisation = true   # organisation (seal) signatures need a pinentry CONFIRM
/// warn_days = 60                # warn this many days before a certificate expires
/// # per-certificate class, keyed by serial number in hex (case, colons, leading zeros ignored)
/// classes = { "0a1b2c3d" = "organisation", "77" = "personal" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub confirm_organisation: bool,
    pub warn_days: u32,
    pub classes: std::collections::BTreeMap<String, CertClass>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            confirm_organisation: false,
            warn_days: 60,
            classes: Default::default(),
        }
    }
}

/// A certificate's class for the signing policy.
pub use kyso_proto::class::CertClass;

/// `[pin]`: how PINs are collected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PinConfig {
    /// Offer tokens with `CKF_PROTECTED_AUTHENTICATION_PATH`: a `C_Login` without a PIN makes
    /// kysod ask through the pinentry.
    pub protected_path: bool,
    /// For how many seconds after a user login through kysod other applications of the user
    /// may log in to the same token without being asked again; 0 (the default) keeps every
    /// login to the application that made it.
    pub share_login_seconds: u64,
}

impl Default for PinConfig {
    fn default() -> Self {
        PinConfig {
            protected_path: true,
            share_login_seconds: 0,
        }
    }
}

/// A USB token model added in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    /// `"VID:PID"` pairs in hexadecimal; `"25dd:*"` for every product of a vendor.
    pub usb: Vec<String>,
    /// The PKCS#11 module serving it.
    pub module: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    pub path: PathBuf,
    /// Tokens of this module are not bound to a USB device (software tokens, tests).
    #[serde(default)]
    pub always_present: bool,
    /// Accepted so that configuration files which set it still load; it has no effect.
    #[serde(default, rename = "prepare_signatures")]
    pub _prepare_signatures: Option<bool>,
}

/// Per-client resource bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub connections_per_client: usize,
    pub sessions_per_client: usize,
    pub connections_total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_per_client: 64,
            sessions_per_client: 1024,
            connections_total: 1024,
        }
    }
}

fn shown(path: Option<&Path>) -> String {
    path.map_or("pinentry".into(), |p| p.display().to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot find a place for {0}: set it in the configuration file")]
    NoDefault(&'static str),
}

impl Config {
    /// This configuration (the user's) under the administrator's `admin`: the settings that
    /// protect the user — the pinentry program, `[pin]`, `[policy]`, `[recovery]` — are the
    /// administrator's, made stricter where the user's file is stricter and never looser.
    /// Returns the configuration in force and the settings the user's file could not loosen.
    pub fn bound_by(mut self, admin: &Config) -> (Config, Vec<&'static str>) {
        let mut held = Vec::new();
        if self.pinentry != admin.pinentry {
            if self.pinentry.is_some() {
                held.push("pinentry");
            }
            self.pinentry = admin.pinentry.clone();
        }
        if admin.pin.protected_path && !self.pin.protected_path {
            held.push("pin.protected_path");
            self.pin.protected_path = true;
        }
        if self.pin.share_login_seconds > admin.pin.share_login_seconds {
            held.push("pin.share_login_seconds");
            self.pin.share_login_seconds = admin.pin.share_login_seconds;
        }
        if admin.policy.confirm_organisation && !self.policy.confirm_organisation {
            held.push("policy.confirm_organisation");
            self.policy.confirm_organisation = true;
        }
        if self.policy.warn_days < admin.policy.warn_days {
            held.push("policy.warn_days");
            self.policy.warn_days = admin.policy.warn_days;
        }
        // The user may only mark more certificates as the organisation's (confirmed).
        let mut classes = admin.policy.classes.clone();
        for (serial, class) in &self.policy.classes {
            let set_by_admin =
                admin.policy.classes.keys().any(|k| {
                    kyso_proto::normalise_serial(k) == kyso_proto::normalise_serial(serial)
                });
            if *class == CertClass::Organisation && !set_by_admin {
                classes.insert(serial.clone(), *class);
            } else if admin.policy.classes.get(serial) != Some(class) {
                held.push("policy.classes");
            }
        }
        self.policy.classes = classes;
        // Helpdesks the administrator trusts, less those the user's file leaves out.
        let keys = if self.recovery.helpdesk_keys.is_empty() {
            admin.recovery.helpdesk_keys.clone()
        } else {
            admin
                .recovery
                .helpdesk_keys
                .iter()
                .filter(|k| self.recovery.helpdesk_keys.contains(k))
                .cloned()
                .collect()
        };
        if self
            .recovery
            .helpdesk_keys
            .iter()
            .any(|k| !admin.recovery.helpdesk_keys.contains(k))
        {
            held.push("recovery.helpdesk_keys");
        }
        self.recovery.helpdesk_keys = keys;
        held.dedup();
        (self, held)
    }

    /// The settings that protect the user and that `new` makes looser than `self`, each with
    /// its old and new value, for a person to confirm.
    pub fn loosened(&self, new: &Config) -> Vec<String> {
        let mut changes = Vec::new();
        if new.pinentry != self.pinentry {
            changes.push(format!(
                "pinentry: {} → {}",
                shown(self.pinentry.as_deref()),
                shown(new.pinentry.as_deref())
            ));
        }
        if self.pin.protected_path && !new.pin.protected_path {
            changes.push("pin.protected_path: true → false".into());
        }
        if new.pin.share_login_seconds > self.pin.share_login_seconds {
            changes.push(format!(
                "pin.share_login_seconds: {} → {}",
                self.pin.share_login_seconds, new.pin.share_login_seconds
            ));
        }
        if self.policy.confirm_organisation && !new.policy.confirm_organisation {
            changes.push("policy.confirm_organisation: true → false".into());
        }
        if new.policy.warn_days < self.policy.warn_days {
            changes.push(format!(
                "policy.warn_days: {} → {}",
                self.policy.warn_days, new.policy.warn_days
            ));
        }
        for (serial, class) in &new.policy.classes {
            let before = self.policy.classes.get(serial);
            if before != Some(class) && *class != CertClass::Organisation {
                changes.push(format!(
                    "policy.classes.{serial}: {} → {}",
                    before.map_or("(from the certificate)", |c| c.name()),
                    class.name()
                ));
            }
        }
        for (serial, class) in &self.policy.classes {
            if *class == CertClass::Organisation && !new.policy.classes.contains_key(serial) {
                changes.push(format!(
                    "policy.classes.{serial}: organisation → (from the certificate)"
                ));
            }
        }
        changes
    }

    /// The settings read only at start, each with whether `new` differs from `self` there.
    pub fn start_only_changes(&self, new: &Config) -> [(&'static str, bool); 6] {
        [
            ("socket", self.socket != new.socket),
            ("state_dir", self.state_dir != new.state_dir),
            ("log", self.log != new.log),
            ("module", self.modules != new.modules),
            ("token", self.tokens != new.tokens),
            ("recovery", self.recovery != new.recovery),
        ]
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })
    }

    /// Parses configuration text; the error names the line and the key at fault.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let what = e.message().trim_end().to_string();
            match line {
                Some(line) => format!("line {line}: {what}"),
                None => what,
            }
        })
    }

    pub fn socket_path(&self) -> Result<PathBuf, ConfigError> {
        if let Some(p) = &self.socket {
            return Ok(p.clone());
        }
        std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d).join("kyso/kysod.sock"))
            .ok_or(ConfigError::NoDefault(
                "the socket (XDG_RUNTIME_DIR is not set)",
            ))
    }

    pub fn state_path(&self) -> Result<PathBuf, ConfigError> {
        if let Some(p) = &self.state_dir {
            return Ok(p.clone());
        }
        if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d).join("kyso"));
        }
        std::env::var_os("HOME")
            .filter(|d| !d.is_empty())
            .map(|h| PathBuf::from(h).join(".local/state/kyso"))
            .ok_or(ConfigError::NoDefault(
                "the state directory (HOME is not set)",
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_administrators_settings_bind_the_users_file() {
        let admin = Config::parse(
            "pinentry = \"/usr/bin/pinentry-gnome3\"\n[pin]\nshare_login_seconds = 60\n[policy]\nconfirm_organisation = true\nwarn_days = 60\nclasses = { \"0a\" = \"organisation\" }\n[recovery]\nhelpdesk_keys = [\"/etc/kyso/a.pub\", \"/etc/kyso/b.pub\"]\n",
        )
        .unwrap();
        let user = Config::parse(
            "pinentry = \"/home/u/evil\"\n[pin]\nprotected_path = false\nshare_login_seconds = 86400\n[policy]\nconfirm_organisation = false\nwarn_days = 90\nclasses = { \"0a\" = \"personal\", \"0b\" = \"organisation\" }\n[recovery]\nhelpdesk_keys = [\"/etc/kyso/b.pub\", \"/home/u/mine.pub\"]\n",
        )
        .unwrap();
        let (c, held) = user.bound_by(&admin);
        assert_eq!(
            c.pinentry.as_deref(),
            Some(Path::new("/usr/bin/pinentry-gnome3"))
        );
        assert!(c.pin.protected_path);
        assert_eq!(c.pin.share_login_seconds, 60);
        assert!(c.policy.confirm_organisation);
        // Stricter in the user's file: kept.
        assert_eq!(c.policy.warn_days, 90);
        assert_eq!(c.policy.classes["0a"], CertClass::Organisation);
        assert_eq!(c.policy.classes["0b"], CertClass::Organisation);
        assert_eq!(
            c.recovery.helpdesk_keys,
            vec![PathBuf::from("/etc/kyso/b.pub")]
        );
        for setting in [
            "pinentry",
            "pin.protected_path",
            "pin.share_login_seconds",
            "policy.confirm_organisation",
            "policy.classes",
            "recovery.helpdesk_keys",
        ] {
            assert!(held.contains(&setting), "{setting}: {held:?}");
        }
        // A user's file that says nothing takes the administrator's settings.
        let (c, _) = Config::default().bound_by(&admin);
        assert!(c.policy.confirm_organisation);
        assert_eq!(c.recovery.helpdesk_keys.len(), 2);
        // Sharing no login is stricter than the administrator's minute.
        assert_eq!(c.pin.share_login_seconds, 0);
    }

    #[test]
    fn a_looser_setting_is_named() {
        let before = Config::parse("[policy]\nconfirm_organisation = true\n").unwrap();
        let after = Config::parse(
            "[pin]\nshare_login_seconds = 86400\nprotected_path = false\n[policy]\nwarn_days = 10\n",
        )
        .unwrap();
        let changes = before.loosened(&after);
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert!(changes
            .iter()
            .any(|c| c.contains("share_login_seconds: 0 → 86400")));
        assert!(!after.loosened(&before).iter().any(|c| c.contains("share")));
        assert!(before.loosened(&before).is_empty());
    }

    #[test]
    fn full_config_parses() {
        let c = Config::parse(
            "socket = \"/tmp/k.sock\"\nstate_dir = \"/tmp/state\"\nlog = \"debug\"\n\n[[module]]\npath = \"/usr/lib/softhsm/libsofthsm2.so\"\nalways_present = true\n",
        )
        .unwrap();
        assert_eq!(c.socket.unwrap(), PathBuf::from("/tmp/k.sock"));
        assert_eq!(c.modules.len(), 1);
        assert!(c.modules[0].always_present);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = Config::parse(
            "socket = \"/s\"\n\n[[module]]\npath = \"/m.so\"\nalways_presnt = true\n",
        )
        .unwrap_err();
        assert!(err.starts_with("line 5:"), "{err}");
        assert!(err.contains("always_presnt"), "{err}");
    }

    #[test]
    fn token_tables_parse() {
        let c = Config::parse(
            "[[token]]\nname = \"Test ePass2003\"\nusb = [\"096e:0807\", \"25dd:*\"]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n",
        )
        .unwrap();
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(c.tokens[0].usb, ["096e:0807", "25dd:*"]);
        let err =
            Config::parse("[[token]]\nname = \"x\"\nusb = []\nmodule = \"/m.so\"\nmodules = 1\n")
                .unwrap_err();
        assert!(err.starts_with("line 5:"), "{err}");
    }

    #[test]
    fn pin_settings_parse_and_default() {
        let c = Config::default();
        assert!(c.pin.protected_path);
        assert!(c.pinentry.is_none());
        let c = Config::parse(
            "pinentry = \"/usr/bin/pinentry-tty\"\n\n[pin]\nprotected_path = false\n",
        )
        .unwrap();
        assert!(!c.pin.protected_path);
        assert_eq!(c.pinentry.unwrap(), PathBuf::from("/usr/bin/pinentry-tty"));
        assert!(Config::parse("[pin]\nprotected = false\n").is_err());
    }

    #[test]
    fn policy_settings_parse_and_default() {
        let c = Config::default();
        assert!(!c.policy.confirm_organisation);
        assert_eq!(c.policy.warn_days, 60);
        let c = Config::parse(
            "[policy]\nconfirm_organisation = true\nwarn_days = 90\nclasses = { \"0A1B\" = \"organisation\", \"ff\" = \"other\" }\n",
        )
        .unwrap();
        assert!(c.policy.confirm_organisation);
        assert_eq!(c.policy.warn_days, 90);
        assert_eq!(c.policy.classes["0A1B"], CertClass::Organisation);
        assert!(Config::parse("[policy]\nconfirm_organization = true\n").is_err());
        assert!(Config::parse("[policy]\nclasses = { \"01\" = \"seal\" }\n").is_err());
    }

    #[test]
    fn bridge_settings_parse_and_default() {
        let c = Config::default();
        assert_eq!(c.bridge.listen, "127.0.0.1:8987");
        assert!(c.bridge.origins.is_empty());
        let c = Config::parse(
            "socket = \"/s\"\n\n[bridge]\nlisten = \"127.0.0.1:9000\"\norigins = [\"https://vpdt.example.gov.vn\"]\n",
        )
        .unwrap();
        assert_eq!(c.bridge.listen, "127.0.0.1:9000");
        assert_eq!(c.bridge.origins, ["https://vpdt.example.gov.vn"]);
        let c = Config::parse("[bridge]\norigins = []\n").unwrap();
        assert_eq!(c.bridge.listen, "127.0.0.1:8987");
        let err = Config::parse("[bridge]\nlisten = \"x\"\norigin = []\n").unwrap_err();
        assert!(
            err.starts_with("line 3:") && err.contains("origin"),
            "{err}"
        );
        assert!(Config::parse("[bridge]\norigins = \"https://a.example\"\n").is_err());
    }

    #[test]
    fn malformed_file_names_line() {
        let err = Config::parse("socket = \"/s\"\nstate_dir = \n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err =
            Config::parse("[[module]]\npath = \"/m.so\"\nalways_present = \"yes\"\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
    }
}
