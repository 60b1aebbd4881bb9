//! `kyso`: the user's command line for kyso.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cryptoki_sys::{
    CKF_SO_PIN_COUNT_LOW, CKF_SO_PIN_FINAL_TRY, CKF_SO_PIN_LOCKED, CKF_USER_PIN_COUNT_LOW,
    CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED, CKF_USER_PIN_TO_BE_CHANGED, CKR_FUNCTION_CANCELED,
    CKR_OK, CKR_PIN_INCORRECT, CKR_PIN_INVALID, CKR_PIN_LOCKED,
};

mod audit;
mod bridge;
mod config;
mod documents;
mod recover;
mod report;
mod token;
use kyso_proto::standing::{self, certificate_standing};
use kyso_proto::{dates, Call, TokenStatus};
use kyso_tools::kysod::Kysod;

/// kyso — PKCS#11 token middleware.
#[derive(Parser)]
#[command(name = "kyso", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shows the tokens kysod knows: slot id, presence, label, serial, model and module, and
    /// each certificate's standing (valid, renew by, too late to renew, expired).
    Status {
        /// Prints JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// kysod's socket. Default: $KYSO_SOCKET, else $XDG_RUNTIME_DIR/kyso/kysod.sock.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// kysod's configuration, for [policy] warn_days. Default: $XDG_CONFIG_HOME/kyso/kysod.toml, else /etc/kyso/kysod.toml.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Prints udev rules giving the seat's user access to the known USB tokens.
    UdevRules,
    /// The audit journal kysod keeps in its state directory.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The token's user PIN.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Diagnosis of a token.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Remote recovery of a locked token with the helpdesk.
    #[command(subcommand)]
    Recover(RecoverCommand),
    /// The signature-use report and certificate expiry list, from the audit journal.
    ///
    /// The journal's hash chain is verified first: a changed journal gives no report (exit 1,
    /// naming the first bad line). Only signatures that were made (result CKR_OK) are counted;
    /// refused or failed attempts are not. Days are whole UTC days, both ends included. The
    /// certificate list holds every certificate seen up to the end of the period, on a token or
    /// signing, with renew-by = expiry - 30 days and its standing (valid, renew by, too late to
    /// renew, expired) at the end of the day the report is made (--today), with kysod's
    /// [policy] warn_days. Exit 2: no journal or bad arguments.
    Report(ReportArgs),
    /// Signs a PDF (PAdES, with a Decree 30/2020 appearance) with a certificate on a token,
    /// through kysod: its PIN prompt, policy and journal apply. The input is never changed.
    Sign(documents::SignArgs),
    /// Verifies every signature of a PDF (Decree 68/2024 Art. 30-32): intact, what it covers,
    /// signer, signing time, certificate validity, trust path, revocation. Exit 0 only when
    /// there are signatures and all are valid, 1 otherwise, 2 when the file cannot be read.
    Verify(documents::VerifyArgs),
    /// The local web-signing service's certificate (kyso-bridge).
    #[command(subcommand)]
    Bridge(bridge::BridgeCommand),
    /// Writes the man pages of `kyso` and its commands (roff) into DIR; used when packaging.
    #[command(hide = true)]
    ManPage { dir: PathBuf },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("period").required(true).args(["from", "half"])))]
struct ReportArgs {
    /// First day of the period (YYYY-MM-DD, UTC, included).
    #[arg(long, value_name = "DATE", requires = "to")]
    from: Option<String>,
    /// Last day of the period (YYYY-MM-DD, UTC, included).
    #[arg(long, value_name = "DATE", requires = "from")]
    to: Option<String>,
    /// A regulatory half-year: YEAR-H1 (1 January - 30 June) or YEAR-H2 (1 July - 31 December).
    #[arg(long, value_name = "YEAR-H1|YEAR-H2", conflicts_with_all = ["from", "to"])]
    half: Option<String>,
    /// Output: a table for people (80 columns, Vietnamese and English), CSV or JSON.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
    /// The day expiry is judged against (YYYY-MM-DD). Default: today (UTC).
    #[arg(long, value_name = "DATE")]
    today: Option<String>,
    /// kysod's configuration, for its state_dir and [policy] warn_days. Default: $XDG_CONFIG_HOME/kyso/kysod.toml, else /etc/kyso/kysod.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The journal file itself (instead of the one in kysod's state_dir).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Csv,
    Json,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Model, serial, label, PIN state, certificates, and what to do next.
    Status {
        /// The token, by serial or label; default: every token kysod knows.
        #[arg(long, value_name = "SERIAL|LABEL")]
        token: Option<String>,
        /// Prints JSON (an array of tokens) instead of text.
        #[arg(long)]
        json: bool,
        /// kysod's socket. Default: $KYSO_SOCKET, else $XDG_RUNTIME_DIR/kyso/kysod.sock.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// kysod's configuration, for [policy] warn_days. Default: $XDG_CONFIG_HOME/kyso/kysod.toml, else /etc/kyso/kysod.toml.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RecoverCommand {
    /// Writes a recovery request for the helpdesk (bound to the token, a nonce and a key
    /// kysod keeps for 72 hours).
    Request {
        /// The token, by serial or label; needed when more than one token is present.
        #[arg(long, value_name = "SERIAL|LABEL")]
        token: Option<String>,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// kysod's socket. Default: $KYSO_SOCKET, else $XDG_RUNTIME_DIR/kyso/kysod.sock.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Applies the helpdesk's grant: you choose the new PIN in kysod's prompt, the SO PIN is
    /// rotated, and a receipt for the helpdesk is written.
    Apply {
        /// The grant file from the helpdesk.
        grant: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Allows spending the SO PIN's final try.
        #[arg(long)]
        force: bool,
        /// kysod's socket. Default: $KYSO_SOCKET, else $XDG_RUNTIME_DIR/kyso/kysod.sock.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PinCommand {
    /// Changes the user PIN. kysod asks for the current PIN and the new one (twice) through
    /// its PIN prompt; no PIN passes through this command.
    Change {
        /// The token, by serial or label; needed when more than one token is present.
        #[arg(long, value_name = "SERIAL|LABEL")]
        token: Option<String>,
        /// kysod's socket. Default: $KYSO_SOCKET, else $XDG_RUNTIME_DIR/kyso/kysod.sock.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks the journal's hash chain: exit 0 when intact, 1 naming the first bad line,
    /// 2 when there is no journal.
    Verify {
        /// kysod's configuration, for its state_dir. Default: $XDG_CONFIG_HOME/kyso/kysod.toml, else /etc/kyso/kysod.toml.
        #[arg(long, value_name = "FILE", conflicts_with = "journal")]
        config: Option<PathBuf>,
        /// The journal file itself.
        #[arg(long, value_name = "FILE")]
        journal: Option<PathBuf>,
        /// A chain head a report printed: the journal must still hold it (exit 1 if not).
        #[arg(long, value_name = "HASH")]
        head: Option<String>,
    },
}

fn main() -> ExitCode {
    match Args::parse().command {
        Command::Token(TokenCommand::Status {
            token,
            json,
            socket,
            config,
        }) => token::status(socket, config, token.as_deref(), json),
        Command::Recover(RecoverCommand::Request { token, out, socket }) => {
            recover::request(socket, token.as_deref(), &out)
        }
        Command::Recover(RecoverCommand::Apply {
            grant,
            out,
            force,
            socket,
        }) => recover::apply(socket, &grant, &out, force),
        Command::Report(args) => run_report(args),
        Command::Bridge(command) => bridge::run(command),
        Command::Sign(args) => documents::sign(args),
        Command::Verify(args) => documents::verify(args),
        Command::ManPage { dir } => {
            match std::fs::create_dir_all(&dir).and_then(|()| {
                clap_mangen::generate_to(<Args as clap::CommandFactory>::command(), &dir)
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kyso: cannot write man pages to {}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Audit(AuditCommand::Verify {
            config,
            journal,
            head,
        }) => audit::verify(config, journal, head),
        Command::Pin(PinCommand::Change { token, socket }) => {
            match change_pin(socket, token) {
                Ok(serial) => {
                    println!("PIN của thiết bị {serial} đã được đổi / The PIN of token {serial} was changed");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kyso: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::UdevRules => {
            print!("{}", kyso_proto::tokens::udev_rules());
            ExitCode::SUCCESS
        }
        Command::Status {
            json,
            socket,
            config,
        } => match status(socket, config, json) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kyso: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs `kyso report`: exit 0 with the report, 1 when the journal's chain is broken, 2 when
/// there is no journal or an argument is wrong.
fn run_report(args: ReportArgs) -> ExitCode {
    let fail = |code: u8, e: &dyn std::fmt::Display| {
        eprintln!("kyso: {e}");
        ExitCode::from(code)
    };
    let period = match (&args.half, &args.from, &args.to) {
        (Some(half), _, _) => report::Period::half(half),
        (None, Some(from), Some(to)) => report::Period::between(from, to),
        _ => {
            return fail(
                2,
                &"give --half YEAR-H1|YEAR-H2, or --from DATE and --to DATE",
            )
        }
    };
    let period = match period {
        Ok(p) => p,
        Err(e) => return fail(2, &e),
    };
    let today = match args.today.as_deref().map(report::parse_day) {
        Some(Ok(d)) => d,
        Some(Err(e)) => return fail(2, &e),
        None => time::OffsetDateTime::now_utc().date(),
    };
    let config = match config::KysodConfig::read(args.config) {
        Ok(c) => c,
        Err(e) => return fail(2, &e),
    };
    let path = match args.journal.map_or_else(|| config.journal(), Ok) {
        Ok(p) => p,
        Err(e) => return fail(2, &e),
    };
    let journal = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => return fail(2, &format!("no audit journal at {}: {e}", path.display())),
    };
    let report = match report::build(&journal, period, today, config.warn_days) {
        Ok(r) => r,
        Err(e @ report::ReportError::BrokenChain { .. }) => {
            return fail(1, &format!("{}: {e}", path.display()))
        }
        Err(e) => return fail(2, &format!("{}: {e}", path.display())),
    };
    let text = match args.format {
        ReportFormat::Table => report::to_table(&report),
        ReportFormat::Json => report::to_json(&report),
        ReportFormat::Csv => match report::to_csv(&report) {
            Ok(t) => t,
            Err(e) => return fail(2, &e),
        },
    };
    print!("{text}");
    ExitCode::SUCCESS
}

/// `kyso status`: kysod's tokens as a table, or as JSON with each certificate's `status`
/// added.
fn status(socket: Option<PathBuf>, config: Option<PathBuf>, json: bool) -> Result<String, String> {
    let warn_days = config::KysodConfig::read(config)?.warn_days;
    let tokens = Kysod::connect(socket)?.tokens()?;
    let now = dates::now();
    if !json {
        let mut text = status_table(&tokens, now, warn_days);
        text.push_str(&bridge::status_line());
        text.push('\n');
        return Ok(text);
    }
    let mut value = serde_json::to_value(&tokens).map_err(|e| e.to_string())?;
    let certificates = tokens.iter().flat_map(|t| &t.certificates);
    let shown = value
        .as_array_mut()
        .into_iter()
        .flatten()
        .filter_map(|t| t.get_mut("certificates")?.as_array_mut())
        .flatten();
    for (c, shown) in certificates.zip(shown) {
        if let Some(shown) = shown.as_object_mut() {
            let status = certificate_standing(c.not_after, now, warn_days);
            shown.insert("status".into(), status.name().into());
        }
    }
    serde_json::to_string_pretty(&value)
        .map(|text| text + "\n")
        .map_err(|e| e.to_string())
}

/// Has kysod change the user PIN of the chosen token; returns the token's serial.
fn change_pin(socket: Option<PathBuf>, token: Option<String>) -> Result<String, String> {
    let mut kysod = Kysod::connect(socket)?;
    let chosen = kysod.choose_token(token.as_deref())?;
    // The user is typing PINs into kysod's prompt meanwhile: no time limit.
    let response = kysod.call(Call::ChangePin { slot: chosen.slot }, None)?;
    match response.rv {
        CKR_OK => Ok(chosen.serial.clone()),
        CKR_PIN_INCORRECT => {
            Err("the current PIN is wrong; the PIN was not changed (sai PIN hiện tại)".into())
        }
        CKR_PIN_LOCKED => {
            Err("the PIN is locked: ask your helpdesk to recover the token (PIN đã bị khóa)".into())
        }
        CKR_PIN_INVALID => Err("no acceptable new PIN was given; the PIN was not changed".into()),
        CKR_FUNCTION_CANCELED => Err("cancelled; the PIN was not changed".into()),
        rv => Err(format!("the PIN was not changed: kysod answered 0x{rv:x}")),
    }
}

fn status_table(tokens: &[TokenStatus], now: i64, warn_days: u32) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if tokens.is_empty() {
        out.push_str("no tokens\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:>5}  {:<7}  {:<32}  {:<16}  {:<16}  module",
        "slot", "present", "label", "serial", "model"
    );
    for t in tokens {
        let _ = writeln!(
            out,
            "{:>5}  {:<7}  {:<32}  {:<16}  {:<16}  {}",
            t.slot,
            if t.present { "yes" } else { "no" },
            t.label,
            t.serial,
            t.model,
            t.module
        );
        if t.present {
            let _ = writeln!(out, "       PIN: {}", pin_state(t.flags));
        }
        for c in &t.certificates {
            let _ = writeln!(
                out,
                "       cert {:<4} {:<40} {:<12} expires {}  renew by {}",
                c.id,
                c.holder,
                c.class,
                dates::date(c.not_after),
                dates::date(standing::renew_by(c.not_after))
            );
            let status = certificate_standing(c.not_after, now, warn_days);
            let _ = writeln!(out, "            {}", status.text(c.not_after));
        }
    }
    out
}

/// The token's PIN state in words, from its `CKF_*` flags.
pub(crate) fn pin_state(flags: u64) -> String {
    const STATES: [(u64, &str); 7] = [
        (CKF_USER_PIN_LOCKED, "user PIN locked (ask your helpdesk)"),
        (CKF_USER_PIN_FINAL_TRY, "user PIN final try"),
        (CKF_USER_PIN_COUNT_LOW, "user PIN count low"),
        (CKF_USER_PIN_TO_BE_CHANGED, "user PIN must be changed"),
        (CKF_SO_PIN_LOCKED, "SO PIN locked"),
        (CKF_SO_PIN_FINAL_TRY, "SO PIN final try"),
        (CKF_SO_PIN_COUNT_LOW, "SO PIN count low"),
    ];
    let words: Vec<&str> = STATES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, w)| *w)
        .collect();
    if words.is_empty() {
        "ok".into()
    } else {
        words.join(", ")
    }
}
