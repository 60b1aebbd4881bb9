//! `kyso`: the user's command line for kyso.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// kyso — PKCS#11 token middleware.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints udev rules giving the seat's user access to the known USB tokens.
    UdevRules,
}

fn main() {
    match Args::parse().command {
        Command::UdevRules => print!("{}", kyso_proto::tokens::udev_rules()),
    }
}
