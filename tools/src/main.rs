//! `kyso`: the user's command line for kyso.

#![forbid(unsafe_code)]

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod audit;
use kyso_proto::frame;
use kyso_proto::{
    Call, Hello, HelloReply, Reply, Request, Response, TokenStatus, PROTOCOL_VERSION,
};

/// kyso — PKCS#11 token middleware.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shows the tokens kysod knows: slot id, presence, label, serial, model and module.
    Status {
        /// Prints JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// kysod's socket. Default: $KYSO_SOCKET, else $XDG_RUNTIME_DIR/kyso/kysod.sock.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Prints udev rules giving the seat's user access to the known USB tokens.
    UdevRules,
    /// The audit journal kysod keeps in its state directory.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks the journal's hash chain: exit 0 when intact, 1 naming the first bad line,
    /// 2 when there is no journal.
    Verify {
        /// kysod's configuration, for its state_dir. Default: $XDG_CONFIG_HOME/kyso/kysod.toml.
        #[arg(long, value_name = "FILE", conflicts_with = "journal")]
        config: Option<PathBuf>,
        /// The journal file itself.
        #[arg(long, value_name = "FILE")]
        journal: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Args::parse().command {
        Command::Audit(AuditCommand::Verify { config, journal }) => audit::verify(config, journal),
        Command::UdevRules => {
            print!("{}", kyso_proto::tokens::udev_rules());
            ExitCode::SUCCESS
        }
        Command::Status { json, socket } => match status(socket) {
            Ok(tokens) => {
                if json {
                    match serde_json::to_string_pretty(&tokens) {
                        Ok(text) => println!("{text}"),
                        Err(e) => {
                            eprintln!("kyso: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                } else {
                    print_table(&tokens);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kyso: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn socket_path(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("KYSO_SOCKET").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("kyso/kysod.sock"))
        .ok_or_else(|| "no socket: set KYSO_SOCKET or XDG_RUNTIME_DIR, or pass --socket".into())
}

/// Asks kysod for its tokens over the ordinary protocol.
fn status(socket: Option<PathBuf>) -> Result<Vec<TokenStatus>, String> {
    let path = socket_path(socket)?;
    let mut stream = UnixStream::connect(&path)
        .map_err(|e| format!("cannot reach kysod at {}: {e}", path.display()))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let instance = u64::from(std::process::id()) << 32
        | u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0),
        );
    let io = |e: frame::FrameError| format!("kysod: {e}");
    frame::write(
        &mut stream,
        &Hello {
            version: PROTOCOL_VERSION,
            instance,
        },
        &mut buf,
    )
    .map_err(io)?;
    let reply: HelloReply = frame::read(&mut stream, &mut buf).map_err(io)?;
    reply.map_err(|r| format!("kysod refused: {}", r.reason))?;
    frame::write(
        &mut stream,
        &Request {
            id: 1,
            call: Call::Status,
        },
        &mut buf,
    )
    .map_err(io)?;
    let response: Response = frame::read(&mut stream, &mut buf).map_err(io)?;
    match response.reply {
        Reply::Status(tokens) if response.rv == 0 => Ok(tokens),
        _ => Err(format!(
            "kysod answered the status call with error 0x{:x}",
            response.rv
        )),
    }
}

fn print_table(tokens: &[TokenStatus]) {
    if tokens.is_empty() {
        println!("no tokens");
        return;
    }
    println!(
        "{:>5}  {:<7}  {:<32}  {:<16}  {:<16}  module",
        "slot", "present", "label", "serial", "model"
    );
    for t in tokens {
        println!(
            "{:>5}  {:<7}  {:<32}  {:<16}  {:<16}  {}",
            t.slot,
            if t.present { "yes" } else { "no" },
            t.label,
            t.serial,
            t.model,
            t.module
        );
        if t.present {
            println!("       PIN: {}", pin_state(t.flags));
        }
        for c in &t.certificates {
            println!(
                "       cert {:<4} {:<40} {:<12} expires {}  renew by {}",
                c.id,
                c.holder,
                c.class,
                day(c.not_after),
                day(c.renew_by)
            );
        }
    }
}

/// The token's PIN state in words, from its `CKF_*` flags.
fn pin_state(flags: u64) -> String {
    const STATES: [(u64, &str); 7] = [
        (0x0004_0000, "user PIN locked (ask your helpdesk)"),
        (0x0002_0000, "user PIN final try"),
        (0x0001_0000, "user PIN count low"),
        (0x0008_0000, "user PIN must be changed"),
        (0x0040_0000, "SO PIN locked"),
        (0x0020_0000, "SO PIN final try"),
        (0x0010_0000, "SO PIN count low"),
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

/// A Unix time as its UTC date.
fn day(t: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    kyso_proto::audit::rfc3339_utc(time)[..10].to_string()
}
