//! `kyso audit verify`: checks kysod's audit journal (`state_dir/audit.jsonl`) hash chain.
//!
//! Exit status: 0 intact, 1 changed (the first bad line is named) or, with `--head`, not
//! holding the head a report pinned, 2 no journal or an unreadable configuration.

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

/// Runs `kyso audit verify`; with `head`, the journal must also hold that chain head (the
/// hash of one of its lines, as `kyso report` printed it): nothing up to it was removed or
/// replaced since.
pub fn verify(config: Option<PathBuf>, journal: Option<PathBuf>, head: Option<String>) -> ExitCode {
    let path = match journal_path(config, journal) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kyso: {e}");
            return ExitCode::from(2);
        }
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("kyso: no audit journal at {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match audit::verify_bytes(&bytes) {
        Ok(v) => {
            println!("{}: {} entries, chain intact", path.display(), v.entries);
            let Some(head) = head else {
                return ExitCode::SUCCESS;
            };
            let head = head.trim().to_ascii_lowercase();
            match entry_with_head(&bytes, &head) {
                Some(n) => {
                    println!(
                        "holds the head {head} at entry {n}; {} entries follow it",
                        v.entries - n
                    );
                    ExitCode::SUCCESS
                }
                None => {
                    println!("does not hold the head {head}");
                    eprintln!("kyso: the audit journal no longer holds the given head: entries up to it were removed or replaced");
                    ExitCode::from(1)
                }
            }
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

/// The number of the entry whose line hashes to `head` (0 for the genesis hash of an empty
/// chain), if the journal has one.
fn entry_with_head(journal: &[u8], head: &str) -> Option<usize> {
    if head == audit::GENESIS {
        return Some(0);
    }
    journal
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .position(|line| audit::line_hash(line) == head)
        .map(|i| i + 1)
}
