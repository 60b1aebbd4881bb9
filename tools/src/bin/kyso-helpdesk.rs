//! `kyso-helpdesk`: the helpdesk's token-recovery tooling.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// kyso-helpdesk — token recovery for helpdesk and IT staff.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the man page of `kyso-helpdesk` (roff) to standard output; used when packaging.
    #[command(hide = true)]
    ManPage,
}

fn main() -> ExitCode {
    match Args::parse().command {
        Command::ManPage => {
            match clap_mangen::Man::new(Args::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kyso-helpdesk: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
