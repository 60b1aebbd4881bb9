//! `kyso audit verify`: checks kysod's audit journal (`state_dir/audit.jsonl`) hash chain.
//!
//! Exit status: 0 intact, 1 changed (the first bad line is named), 2 no journal or an
//! unreadable configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use kyso_proto::audit;

use crate::config::KysodConfig;

/// Where the journal is: `--journal` as given, else in the `state_dir` of kysod's
/// configuration (see [`KysodConfig::read`]), else in kysod's default state directory.
pub(crate) fn journal_path(
    config: Option<PathBuf>,
    journal: Option<PathBuf>,
) -> Result<PathBuf, String> {
    match journal {
        Some(j) => Ok(j),
        None => KysodConfig::read(config)?.journal(),
    }
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
