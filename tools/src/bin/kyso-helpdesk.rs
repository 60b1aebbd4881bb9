//! `kyso-helpdesk`: the helpdesk's token-recovery tool — escrow store, recovery (approve a
//! request, close with the receipt; on site exactly as remotely), the wipe of a returned token
//! through the helpdesk's own kysod, and the record of cases. The escrow store is opened on the
//! helpdesk's machine only: no command sends an SO PIN to a user's kysod.

#![forbid(unsafe_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use cryptoki_sys::CKR_OK;
use kyso_proto::{dates, Call, Pin, Reply, SoPinCandidate};
use kyso_recovery::grant::{Approval, GrantSecrets};
use kyso_tools::helpdesk::error::HelpdeskError;
use kyso_tools::helpdesk::passphrase::passphrase;
use kyso_tools::helpdesk::store::{Rotation, Store};
use kyso_tools::kysod::Kysod;
use zeroize::Zeroizing;

type Result<T, E = HelpdeskError> = std::result::Result<T, E>;

/// kyso-helpdesk — recover, unlock and wipe kyso users' tokens.
#[derive(Parser)]
#[command(name = "kyso-helpdesk", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the store and the helpdesk's Ed25519 signing key.
    Init {
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
    },
    /// Prints the public key workstations trust (`[recovery] helpdesk_keys`).
    Pubkey {
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
    },
    /// The escrowed SO PINs.
    #[command(subcommand)]
    Escrow(EscrowCommand),
    /// Answers a recovery request with a grant sealed to it and signed.
    Approve {
        /// The request file from `kyso recover request`.
        request: PathBuf,
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The agency's written request (công văn) number.
        #[arg(long = "case", value_name = "REFERENCE")]
        case_ref: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Who approves (default: $USER).
        #[arg(long)]
        operator: Option<String>,
        /// The SO PIN to seal as the token's current one, by generation (a pending grant's
        /// digest, as kysod names it when it refuses a grant); default: the confirmed escrow.
        #[arg(long, value_name = "ID")]
        so_generation: Option<String>,
        /// How long the grant is valid, in minutes.
        #[arg(long, default_value_t = 24 * 60, value_parser = clap::value_parser!(u32).range(0..=7 * 24 * 60))]
        valid_minutes: u32,
    },
    /// Verifies a receipt from `kyso recover apply`; the new SO PIN becomes the escrowed one.
    Close {
        receipt: PathBuf,
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        #[arg(long)]
        operator: Option<String>,
    },
    /// Gone: an on-site unlock is a recovery like a remote one (`kyso recover request` on the
    /// user's machine, `approve` here, `kyso recover apply` there).
    #[command(hide = true)]
    Unlock {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ignored: Vec<String>,
    },
    /// Re-initialises a returned token plugged into this (the helpdesk's) machine (C_InitToken
    /// with the escrowed SO PIN through this user's own kysod) after the serial is typed.
    Wipe {
        #[command(flatten)]
        on_site: OnSite,
        /// The token's new label.
        #[arg(long, default_value = "RECALLED")]
        label: String,
    },
    /// Lists every case for the agency's records.
    Cases {
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Writes the man pages of `kyso-helpdesk` and its commands (roff) into DIR; used when
    /// packaging.
    #[command(hide = true)]
    ManPage { dir: PathBuf },
}

/// What `wipe` works on: a returned token at the helpdesk's own kysod.
#[derive(clap::Args)]
struct OnSite {
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
    #[arg(long, value_name = "SERIAL")]
    token: String,
    /// The agency's written request (công văn) number.
    #[arg(long = "case", value_name = "REFERENCE")]
    case_ref: Option<String>,
    /// Who does it (default: $USER).
    #[arg(long)]
    operator: Option<String>,
    /// kysod's socket. Default: $KYSO_SOCKET, else $XDG_RUNTIME_DIR/kyso/kysod.sock.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

impl OnSite {
    /// Store, serial, case reference, operator (default: $USER) and socket.
    fn parts(&self) -> (&Path, &str, Option<&str>, String, Option<PathBuf>) {
        (
            &self.db,
            &self.token,
            self.case_ref.as_deref(),
            operator_name(self.operator.clone()),
            self.socket.clone(),
        )
    }
}

#[derive(Subcommand)]
enum EscrowCommand {
    /// Records a token's SO PIN (read from a file, first line).
    Add {
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        #[arg(long)]
        serial: String,
        #[arg(long, value_name = "FILE")]
        so_pin_file: PathBuf,
        #[arg(long)]
        operator: Option<String>,
    },
}

fn main() -> ExitCode {
    let result = match Args::parse().command {
        Command::Init { db } => init(&db),
        Command::Pubkey { db } => Store::public_key_of(&db)
            .map(|k| println!("{k}"))
            .map_err(HelpdeskError::from),
        Command::Escrow(EscrowCommand::Add {
            db,
            serial,
            so_pin_file,
            operator,
        }) => escrow_add(&db, &serial, &so_pin_file, &operator_name(operator)),
        Command::Approve {
            request,
            db,
            case_ref,
            out,
            operator,
            so_generation,
            valid_minutes,
        } => approve(
            &request,
            &db,
            &case_ref,
            &out,
            &operator_name(operator),
            so_generation.as_deref(),
            valid_minutes,
        ),
        Command::Close {
            receipt,
            db,
            operator,
        } => close(&receipt, &db, &operator_name(operator)),
        Command::Unlock { .. } => Err(HelpdeskError::UnlockGone),
        Command::Wipe { on_site, label } => wipe(on_site, &label),
        Command::Cases { db, json } => cases(&db, json),
        Command::ManPage { dir } => std::fs::create_dir_all(&dir)
            .and_then(|()| clap_mangen::generate_to(Args::command(), &dir))
            .map_err(|source| HelpdeskError::ManPages { dir, source }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kyso-helpdesk: {e}");
            ExitCode::FAILURE
        }
    }
}

fn operator_name(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn open_store(db: &Path) -> Result<Store> {
    let pass = passphrase(
        &format!(
            "Mật khẩu kho khôi phục / passphrase of the helpdesk store {}",
            db.display()
        ),
        false,
    )?;
    Ok(Store::open(db, &pass)?)
}

fn init(db: &Path) -> Result<()> {
    let pass = passphrase(
        &format!(
            "Mật khẩu mới cho kho / new passphrase for the helpdesk store {}",
            db.display()
        ),
        true,
    )?;
    let public = Store::init(db, &pass)?;
    println!(
        "store {} created; public key (for [recovery] helpdesk_keys): {public}",
        db.display()
    );
    Ok(())
}

fn escrow_add(db: &Path, serial: &str, so_pin_file: &Path, operator: &str) -> Result<()> {
    let text = Zeroizing::new(read(so_pin_file)?);
    let pin = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let pin = pin.strip_suffix(b"\r").unwrap_or(pin);
    if pin.is_empty() {
        return Err(HelpdeskError::NoSoPin(so_pin_file.to_path_buf()));
    }
    let store = open_store(db)?;
    store.escrow_add(serial, pin)?;
    store.record("escrow", serial, None, operator, "ok", None)?;
    println!("SO PIN of token {serial} escrowed");
    Ok(())
}

/// A random SO PIN of digits (every token accepts those), of 12 digits or the nearest length
/// the token allows.
fn new_so_pin(min: u64, max: u64) -> Zeroizing<Vec<u8>> {
    let len = 12u64.clamp(min.max(1), max.max(min).max(1)) as usize;
    let mut pin = Zeroizing::new(Vec::with_capacity(len));
    while pin.len() < len {
        let bytes = Zeroizing::new(kyso_recovery::random::<32>());
        let missing = len - pin.len();
        // Rejection sampling keeps the digits uniform.
        pin.extend(
            bytes
                .iter()
                .filter(|b| **b < 250)
                .map(|b| b'0' + b % 10)
                .take(missing),
        );
    }
    pin
}

fn approve(
    request: &Path,
    db: &Path,
    case_ref: &str,
    out: &Path,
    operator: &str,
    so_generation: Option<&str>,
    valid_minutes: u32,
) -> Result<()> {
    if case_ref.trim().is_empty() {
        return Err(HelpdeskError::NoCaseReference);
    }
    let bytes = read(request)?;
    let req = kyso_recovery::parse_request(&bytes).map_err(|source| HelpdeskError::Artefact {
        path: request.to_path_buf(),
        source,
    })?;
    if kyso_recovery::now() >= req.expires {
        return Err(HelpdeskError::RequestExpired);
    }
    if out.exists() {
        return Err(HelpdeskError::Exists(out.to_path_buf()));
    }
    let store = open_store(db)?;
    let (confirmed, confirmed_generation) = store.escrowed(&req.serial)?;
    let (current, generation) = match so_generation {
        None => (confirmed, confirmed_generation),
        Some(g) if g == confirmed_generation => (confirmed, confirmed_generation),
        Some(g) => store
            .pending(&req.serial)?
            .into_iter()
            .find(|(id, _)| id == g)
            .map(|(id, pin)| (pin, id))
            .ok_or_else(|| HelpdeskError::UnknownGeneration(g.into()))?,
    };
    let secrets = GrantSecrets {
        current_so_pin: current,
        new_so_pin: new_so_pin(req.min_pin_len, req.max_pin_len),
        receipt_key: Zeroizing::new(kyso_recovery::random::<32>()),
    };
    let key = store.signing_key()?;
    let approval = Approval {
        case_ref,
        operator,
        lifetime_secs: i64::from(valid_minutes) * 60,
        so_generation: &generation,
    };
    let grant = kyso_recovery::grant::issue(&req, &bytes, &secrets, &approval, &key)?;
    let id = grant.body.digest();
    // Recorded before the grant leaves: whatever happens to it, both SO PINs stay known.
    store.rotation_add(
        &Rotation {
            id: id.clone(),
            serial: req.serial.clone(),
            kind: "grant".into(),
            nonce: Some(req.nonce.clone()),
            case_ref: Some(case_ref.into()),
            state: "pending".into(),
        },
        &secrets.new_so_pin,
        Some(&secrets.receipt_key),
    )?;
    let text = serde_json::to_vec_pretty(&grant)?;
    kyso_tools::write_new(out, &text)?;
    let certificates: Vec<String> = req
        .certificates
        .iter()
        .map(|c| format!("{} ({}, serial {})", c.holder, c.class, c.serial))
        .collect();
    store.record(
        "request",
        &req.serial,
        Some(case_ref),
        operator,
        "received",
        Some(&format!(
            "token {:?}, request nonce {}, made {}; certificates: {}",
            req.label,
            req.nonce,
            dates::rfc3339(req.created),
            certificates.join("; ")
        )),
    )?;
    store.record(
        "approve",
        &req.serial,
        Some(case_ref),
        operator,
        "granted",
        Some(&format!(
            "request nonce {}, grant {id}, expires {}",
            req.nonce,
            dates::rfc3339(grant.body.expires)
        )),
    )?;
    println!(
        "grant for token {} written to {}",
        req.serial,
        out.display()
    );
    Ok(())
}

fn close(receipt: &Path, db: &Path, operator: &str) -> Result<()> {
    let bytes = read(receipt)?;
    let r = kyso_recovery::parse_receipt(&bytes).map_err(|source| HelpdeskError::Artefact {
        path: receipt.to_path_buf(),
        source,
    })?;
    let mut store = open_store(db)?;
    let rotation = store
        .rotation(&r.grant_sha256)?
        .ok_or(HelpdeskError::UnknownGrant)?;
    if rotation.serial != r.serial || rotation.nonce.as_deref() != Some(r.nonce.as_str()) {
        return Err(HelpdeskError::ReceiptMismatch);
    }
    if rotation.state != "pending" {
        return Err(HelpdeskError::CaseState(rotation.state));
    }
    let key = store.receipt_key(&rotation.id)?;
    if !kyso_recovery::receipt::verify(&key, &r) {
        store.record(
            "close",
            &r.serial,
            rotation.case_ref.as_deref(),
            operator,
            "refused",
            Some("receipt does not verify"),
        )?;
        return Err(HelpdeskError::ReceiptForged);
    }
    store.rotation_done(&rotation.id)?;
    store.record(
        "close",
        &r.serial,
        rotation.case_ref.as_deref(),
        operator,
        "closed",
        Some(&format!(
            "grant {} applied; new SO PIN escrowed",
            rotation.id
        )),
    )?;
    println!(
        "case closed: the new SO PIN of token {} is escrowed",
        r.serial
    );
    Ok(())
}

/// The SO PINs the escrow holds for `serial`: the confirmed one first, then the pending ones.
fn candidates(store: &Store, serial: &str) -> Result<Vec<SoPinCandidate>> {
    let (pin, generation) = store.escrowed(serial)?;
    let mut all = vec![SoPinCandidate {
        generation,
        pin: Pin::new(&pin),
    }];
    for (id, pin) in store.pending(serial)? {
        all.push(SoPinCandidate {
            generation: id,
            pin: Pin::new(&pin),
        });
    }
    Ok(all)
}

fn wipe(on_site: OnSite, label: &str) -> Result<()> {
    let (db, serial, case_ref, operator, socket) = on_site.parts();
    let operator = &operator;
    if label.len() > 32 {
        return Err(HelpdeskError::LabelTooLong);
    }
    let store = open_store(db)?;
    let candidates = candidates(&store, serial)?;
    let mut kysod = Kysod::connect(socket).map_err(HelpdeskError::kysod)?;
    let token = kysod
        .choose_token(Some(serial))
        .map_err(HelpdeskError::kysod)?;
    eprintln!(
        "Xóa toàn bộ khóa và chứng thư trên thiết bị {serial} ({}). Gõ số sê-ri để xác nhận:\nEverything on token {serial} ({}) will be erased. Type its serial to confirm:",
        token.label, token.label
    );
    let mut typed = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut typed)
        .map_err(HelpdeskError::NoConfirmation)?;
    if typed.trim() != serial {
        return Err(HelpdeskError::SerialMismatch);
    }
    let r = kysod
        .call(
            Call::Wipe {
                slot: token.slot,
                candidates,
                label: label.into(),
                case_ref: case_ref.unwrap_or_default().into(),
            },
            Some(Duration::from_secs(120)),
        )
        .map_err(HelpdeskError::kysod)?;
    let text = match r.reply {
        Reply::Text(t) => t,
        _ => format!("kysod answered 0x{:x}", r.rv),
    };
    if r.rv == CKR_OK {
        store.record(
            "wipe",
            serial,
            case_ref,
            operator,
            "wiped",
            Some(&format!("re-initialised as {label:?}; SO PIN {text}")),
        )?;
        println!("token {serial} wiped");
        Ok(())
    } else {
        store.record("wipe", serial, case_ref, operator, "refused", Some(&text))?;
        Err(HelpdeskError::NotWiped {
            serial: serial.into(),
            why: text,
        })
    }
}

/// The whole of a file the operator named.
fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| HelpdeskError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn cases(db: &Path, json: bool) -> Result<()> {
    let all = Store::cases_of(db)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:>4}  {:<20}  {:<8}  {:<16}  {:<20}  {:<10}  {:<9}  detail",
        "id", "time", "action", "serial", "case", "operator", "outcome"
    );
    for c in all {
        println!(
            "{:>4}  {:<20}  {:<8}  {:<16}  {:<20}  {:<10}  {:<9}  {}",
            c.id,
            c.time,
            c.action,
            c.serial,
            c.case_ref.as_deref().unwrap_or("-"),
            c.operator,
            c.outcome,
            c.detail.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
