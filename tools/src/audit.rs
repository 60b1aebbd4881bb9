//! `kyso audit verify`: checks kysod's audit journal (`state_dir/audit.jsonl`) hash chain.
//!
//! Exit status: 0 intact, 1 changed (the first bad line is named), 2 no journal or an
//! unreadable configuration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kyso_proto::audit;

/// Where the journal is: `--journal` as given, else `state_dir` from the kysod configuration
/// (`--config`, else `$XDG_CONFIG_HOME/kyso/kysod.toml` or `/etc/kyso/kysod.toml`, the first
/// that exists, as kysod looks for it), else the default state directory.
pub(crate) fn journal_path(
    config: Option<PathBuf>,
    journal: Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(j) = journal {
        return Ok(j);
    }
    let config = config.or_else(|| {
        std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("kyso/kysod.toml"))
            .filter(|p| p.exists())
            .or_else(|| Some(PathBuf::from("/etc/kyso/kysod.toml")).filter(|p| p.exists()))
    });
    let state_dir = match config {
        Some(path) => state_dir_from_config(&path)?,
        None => None,
    };
    let state_dir = match state_dir {
        Some(d) => d,
        None => default_state_dir()?,
    };
    Ok(state_dir.join(audit::FILE_NAME))
}

/// `state_dir` of a kysod configuration; the rest of the file is not looked at.
fn state_dir_from_config(path: &Path) -> Result<Option<PathBuf>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("cannot parse the configuration {}: {e}", path.display()))?;
    match table.get("state_dir") {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(PathBuf::from(s))),
        Some(_) => Err(format!("state_dir in {} is not a string", path.display())),
    }
}

/// kysod's default: `$XDG_STATE_HOME/kyso` or `~/.local/state/kyso`.
fn default_state_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("kyso"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/kyso"))
        .ok_or_else(|| "no state directory: HOME is not set; pass --config or --journal".into())
}

/// Runs `kyso audit verify`.
pub fn verify(config: Option<PathBuf>, journal: Option<PathBuf>) -> ExitCode {
    let path = match journal_path(config, journal) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kyso: {e}");
            return ExitCode::from(2);
        }
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("kyso: no audit journal at {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match audit::verify(std::io::BufReader::new(file)) {
        Ok(v) => {
            println!("{}: {} entries, chain intact", path.display(), v.entries);
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}: line {}: {}", path.display(), e.line, e.problem);
            eprintln!(
                "kyso: the audit journal was changed: first bad line is {}",
                e.line
            );
            ExitCode::from(1)
        }
    }
}
