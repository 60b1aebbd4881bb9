//! kyso's configuration file as the bridge and `kyso bridge` read it: the file kysod reads,
//! whose `[bridge]` table is the bridge's.

use std::path::PathBuf;
use std::time::Duration;

pub use kyso_daemon::config::{BridgeConfig, Config};

/// `$XDG_CONFIG_HOME/kyso/kysod.toml` (or `~/.config/…`), else `/etc/kyso/kysod.toml`: the
/// first that exists, as kysod looks for it.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("kyso/kysod.toml"))
        .filter(|p| p.exists())
        .or_else(|| Some(PathBuf::from("/etc/kyso/kysod.toml")).filter(|p| p.exists()))
}

/// The configuration in `path`, else in [`default_path`], else the defaults.
pub fn load(path: Option<PathBuf>) -> Result<Config, String> {
    match path.or_else(default_path) {
        Some(p) => Config::load(&p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

/// The bridge's own directory in kyso's state directory.
pub fn bridge_dir(config: &Config) -> Result<PathBuf, String> {
    config
        .state_path()
        .map(|s| crate::state_dir(&s))
        .map_err(|e| e.to_string())
}

/// Whether something accepts connections at the bridge's address.
pub fn bridge_up(config: &Config) -> bool {
    use std::net::ToSocketAddrs;
    config
        .bridge
        .listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// The organisation's configuration, whose `[documents]` a user's own file overrides.
pub const ORGANISATION_CONFIG: &str = "/etc/kyso/kysod.toml";

/// `[documents]` as it applies to the user of `config`: the organisation's table
/// ([`ORGANISATION_CONFIG`]) with the user's keys over it.
pub fn documents(config: &Config) -> Result<kyso_pdf::config::Documents, String> {
    let path = std::path::Path::new(ORGANISATION_CONFIG);
    let organisation = if path.exists() {
        Config::load(path).map_err(|e| e.to_string())?.documents
    } else {
        toml::Table::new()
    };
    kyso_pdf::config::Documents::merged(&organisation, &config.documents)
}
