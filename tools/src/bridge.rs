//! `kyso bridge trust|untrust|policy` and the bridge's line in `kyso status`.

use std::path::PathBuf;
use std::process::ExitCode;

use kyso_bridge::{config, trust};

#[derive(clap::Subcommand)]
pub enum BridgeCommand {
    /// Makes the bridge's certificate when there is none (a local CA that can issue only for
    /// 127.0.0.1 and localhost, its key thrown away) and registers the CA for you: Chromium's
    /// ~/.pki/nssdb and every Firefox profile; as root also the system store, Firefox's
    /// enterprise policy (Certificates.Install) and the browsers' policy letting the configured
    /// sites reach the bridge.
    Trust {
        /// kyso's configuration. Default: $XDG_CONFIG_HOME/kyso/kysod.toml, else /etc/kyso/kysod.toml.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Only your own browsers, even as root (no system store, no policy).
        #[arg(long)]
        user_only: bool,
    },
    /// Removes what `kyso bridge trust` registered and deletes the bridge's certificate.
    Untrust {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Only your own browsers, even as root.
        #[arg(long)]
        user_only: bool,
    },
    /// Whether kyso-bridge is up, at the address of [bridge] listen. Exit 0 when it is.
    Status {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Prints JSON: `{"listen": "127.0.0.1:8987", "up": true}`.
        #[arg(long)]
        json: bool,
    },
    /// As root: writes Chromium's and Chrome's managed policy LoopbackNetworkAllowedForUrls
    /// from [bridge] origins (removes it when there are none). The package runs it on install
    /// and whenever /etc/kyso/kysod.toml changes.
    /// A configuration file that does not exist counts as one without origins.
    #[command(hide = true)]
    Policy {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The browsers' directories under DIR instead of / (for tests).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
}

pub fn run(command: BridgeCommand) -> ExitCode {
    let result = match command {
        BridgeCommand::Status { config, json } => {
            let status = status_json(config.clone());
            if json {
                println!("{status}");
            } else {
                println!("{}", status_line(config));
            }
            return if status["up"] == true {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        BridgeCommand::Trust { config, user_only } => config::load(config).and_then(|c| {
            let dir = config::bridge_dir(&c)?;
            let home = trust::home().map_err(|e| e.to_string())?;
            let system = trust::is_root() && !user_only;
            trust::trust(&dir, &home, system, &c.bridge.origins).map_err(|e| e.to_string())
        }),
        BridgeCommand::Untrust { config, user_only } => config::load(config).and_then(|c| {
            let dir = config::bridge_dir(&c)?;
            let home = trust::home().map_err(|e| e.to_string())?;
            trust::untrust(&dir, &home, trust::is_root() && !user_only).map_err(|e| e.to_string())
        }),
        BridgeCommand::Policy { config, root } => {
            // The file the path unit watches may be gone (removed, or being replaced): then no
            // site is configured.
            let loaded = match config {
                Some(p) if !p.exists() => Ok(kyso_bridge::config::Config::default()),
                other => config::load(other),
            };
            loaded.and_then(|c| {
                let dirs = match &root {
                    Some(r) => trust::policy_dirs_under(r),
                    None => trust::POLICY_DIRS.map(PathBuf::from).to_vec(),
                };
                trust::write_policy_in(&dirs, &c.bridge.origins)
                    .map(|files| {
                        files
                            .iter()
                            .map(|f| format!("policy: {}", f.display()))
                            .collect()
                    })
                    .map_err(|e| e.to_string())
            })
        }
    };
    match result {
        Ok(done) => {
            for line in done {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kyso: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The bridge's line in `kyso status`, from the configuration in `path` (else the default).
pub fn status_line(path: Option<PathBuf>) -> String {
    match config::load(path) {
        Ok(c) if config::bridge_up(&c) => format!(
            "bridge: đang chạy / up at wss://{} (https://{}/)",
            c.bridge.listen, c.bridge.listen
        ),
        Ok(c) => format!("bridge: không chạy / not running ({})", c.bridge.listen),
        Err(e) => format!("bridge: {e}"),
    }
}

/// The bridge in `kyso bridge status --json`: `{"listen", "up"}`, or `{"error"}` when the
/// configuration cannot be read.
pub fn status_json(path: Option<PathBuf>) -> serde_json::Value {
    match config::load(path) {
        Ok(c) => serde_json::json!({ "listen": c.bridge.listen, "up": config::bridge_up(&c) }),
        Err(e) => serde_json::json!({ "error": e }),
    }
}
