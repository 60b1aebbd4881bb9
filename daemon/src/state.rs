//! What every call may need beyond its client: the tokens, the settings in force, the audit
//! journal, the recovery state and the count of wrong PINs. Built complete at start; only the
//! settings change, when the configuration is reloaded.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::audit::Journal;
use crate::config::{Config, Limits, PinConfig};
use crate::policy::Policy;
use crate::recovery::RecoveryState;
use crate::token::Registry;
use crate::tries::PinFailures;

/// The part of the configuration that a reload (SIGHUP) replaces while kysod runs: each call
/// takes the settings in force when it starts. Everything else in the file (socket, state
/// directory, log filter, modules, token table, recovery) is read once at start.
pub struct Settings {
    pub limits: Limits,
    /// PIN collection (`[pin]`).
    pub pin: PinConfig,
    pub pinentry: PathBuf,
    /// The signing policy (`[policy]`).
    pub policy: Policy,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            limits: config.limits.clone(),
            pin: config.pin.clone(),
            pinentry: config.pinentry.clone().unwrap_or_else(|| "pinentry".into()),
            policy: Policy::new(config.policy.clone()),
        }
    }
}

pub struct State {
    pub registry: Registry,
    settings: RwLock<Arc<Settings>>,
    /// The audit journal (`state_dir/audit.jsonl`).
    pub audit: Journal,
    /// Remote recovery: pending requests' keys, SO PIN generations, trusted helpdesk keys.
    pub recovery: RecoveryState,
    /// kysod's count of wrong PINs per token, for tokens that do not report their tries.
    pub pin_failures: PinFailures,
    /// The only uid served.
    pub uid: u32,
}

impl State {
    pub fn new(
        registry: Registry,
        settings: Settings,
        audit: Journal,
        recovery: RecoveryState,
        pin_failures: PinFailures,
        uid: u32,
    ) -> State {
        State {
            registry,
            settings: RwLock::new(Arc::new(settings)),
            audit,
            recovery,
            pin_failures,
            uid,
        }
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().clone()
    }

    /// Puts `settings` in force for the calls that start from now on.
    pub fn replace_settings(&self, settings: Settings) {
        *self.settings.write() = Arc::new(settings);
    }
}
