//! `kyso-helpdesk`: the helpdesk's token-recovery tooling.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// kyso-helpdesk — token recovery for helpdesk and IT staff.
#[derive(Parser)]
#[command(name = "kyso-helpdesk", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the man pages of `kyso-helpdesk` and its commands (roff) into DIR; used when
    /// packaging.
    #[command(hide = true)]
    ManPage { dir: PathBuf },
}

fn main() -> ExitCode {
    match Args::parse().command {
        Command::ManPage { dir } => match std::fs::create_dir_all(&dir)
            .and_then(|()| clap_mangen::generate_to(Args::command(), &dir))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "kyso-helpdesk: cannot write man pages to {}: {e}",
                    dir.display()
                );
                ExitCode::FAILURE
            }
        },
    }
}
