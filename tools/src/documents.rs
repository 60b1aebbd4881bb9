//! `kyso sign` and `kyso verify`: PDF signatures on the desktop, through kysod like every other
//! signature (its PIN prompt, policy and journal), with the appearances and trust anchors of
//! `[documents]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use kyso_bridge::kysod::{Signer, TokenCert};
use kyso_bridge::pdf_signer::TokenPdfSigner;
use kyso_pdf::appearance::{self, Kind};
use kyso_pdf::config::Documents;

/// How long a timestamping service, OCSP responder or CRL server may take.
const NET_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(clap::Args)]
pub struct SignArgs {
    /// The PDF to sign; it is never changed.
    file: PathBuf,
    /// Where to write the signed PDF (not the input itself).
    #[arg(long, value_name = "SIGNED.pdf")]
    out: PathBuf,
    /// The look of the signature (Decree 30/2020).
    #[arg(long, value_enum, default_value_t = AppearanceArg::None)]
    appearance: AppearanceArg,
    /// The token, by serial number or label, when several are present.
    #[arg(long, value_name = "SERIAL|LABEL")]
    token: Option<String>,
    /// The key (CKA_ID in hexadecimal), when the token holds several.
    #[arg(long, value_name = "HEX")]
    key_id: Option<String>,
    /// The document number written by `--appearance issued` ("123/BCY-CTSBMTT").
    #[arg(long, value_name = "TEXT")]
    doc_number: Option<String>,
    /// The issue date written by `--appearance issued` (ISO 8601, e.g. 2019-03-12).
    #[arg(long, value_name = "DATE")]
    issued_date: Option<String>,
    /// kysod's socket. Default: $KYSO_SOCKET, else $XDG_RUNTIME_DIR/kyso/kysod.sock.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// kyso's configuration, for [documents]. Default: $XDG_CONFIG_HOME/kyso/kysod.toml, else /etc/kyso/kysod.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AppearanceArg {
    Approved,
    Issued,
    Income,
    Appendix,
    Copy,
    Comment,
    Plain,
    None,
}

impl AppearanceArg {
    fn kind(self) -> Kind {
        match self {
            AppearanceArg::Approved => Kind::Approved,
            AppearanceArg::Issued => Kind::Issued,
            AppearanceArg::Income => Kind::Income,
            AppearanceArg::Appendix => Kind::Appendix,
            AppearanceArg::Copy => Kind::Copy,
            AppearanceArg::Comment => Kind::Comment,
            AppearanceArg::Plain => Kind::Plain,
            AppearanceArg::None => Kind::None,
        }
    }
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The signed PDF.
    file: PathBuf,
    /// A directory of trusted CA certificates (DER or PEM). Default: [documents] trust_anchors.
    #[arg(long, value_name = "DIR")]
    trust: Option<PathBuf>,
    /// Prints JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Checks no revocation on the network (revocation then reads "not checked").
    #[arg(long)]
    offline: bool,
    /// kyso's configuration, for [documents]. Default: $XDG_CONFIG_HOME/kyso/kysod.toml, else /etc/kyso/kysod.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn documents(config: Option<PathBuf>) -> Result<Documents, String> {
    let config = kyso_bridge::config::load(config)?;
    kyso_bridge::config::documents(&config)
}

/// Reads `path`, refusing files over `limit` bytes before reading them.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > limit {
        return Err(kyso_pdf::Error::TooLarge { size, limit }.to_string());
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The certificate `token` and `key_id` pick out; with several left, the choice is the user's.
fn choose(
    certs: Vec<TokenCert>,
    token: Option<&str>,
    key_id: Option<&str>,
) -> Result<TokenCert, String> {
    let key_id = key_id.map(|k| k.to_ascii_lowercase().replace(':', ""));
    let mut left: Vec<TokenCert> = certs
        .into_iter()
        .filter(|c| token.is_none_or(|t| c.token_serial == t || c.token_label == t))
        .filter(|c| {
            key_id
                .as_deref()
                .is_none_or(|k| kyso_proto::hex::encode(&c.id) == k)
        })
        .collect();
    match left.len() {
        0 => Err("không có chứng thư số nào phù hợp / no certificate with a key matches (see `kyso status`)".into()),
        1 => Ok(left.remove(0)),
        _ => {
            let list: Vec<String> = left
                .iter()
                .map(|c| format!("  --token {} --key-id {}  ({})", c.token_serial, kyso_proto::hex::encode(&c.id), c.holder))
                .collect();
            Err(format!(
                "có nhiều chứng thư số; hãy chọn một / several certificates; choose one:\n{}",
                list.join("\n")
            ))
        }
    }
}

fn now_local() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    match time::UtcOffset::current_local_offset() {
        Ok(offset) => now.to_offset(offset),
        Err(_) => now,
    }
}

fn read_image(path: Option<&PathBuf>) -> Result<Option<Vec<u8>>, String> {
    path.map(|p| {
        std::fs::read(p).map_err(|e| format!("cannot read the image {}: {e}", p.display()))
    })
    .transpose()
}

fn sign_file(args: SignArgs) -> Result<String, String> {
    let config = documents(args.config)?;
    // The same file under any name (a link, a hard link) is the input.
    let same = |a: &Path, b: &Path| {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    };
    if same(&args.file, &args.out) {
        return Err("--out is the input file; kyso never overwrites what it signs".into());
    }
    let pdf = read_limited(&args.file, kyso_pdf::sign::MAX_SIZE)?;
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut kysod = Signer::new(
        args.socket
            .unwrap_or_else(kyso_proto::client::default_socket),
        "kyso sign".into(),
    );
    let certs = kysod.certificates().map_err(|f| f.to_string())?;
    let cert = choose(certs, args.token.as_deref(), args.key_id.as_deref())?;
    let time = now_local();
    let (cn, organisation) = holder_parts(&cert.der);
    let appearance = match args.appearance.kind() {
        Kind::None => None,
        kind => Some(appearance::Request {
            kind,
            signer: cn,
            organisation: config.organisation.clone().unwrap_or(organisation),
            time,
            doc_number: args.doc_number,
            issued_date: args.issued_date,
            copy_kind: config.copy_kind.clone(),
            comment: None,
            signature_image: read_image(config.signature_image.as_ref())?,
            seal_image: read_image(config.seal_image.as_ref())?,
            layout: config.layout.clone(),
        }),
    };
    let http = kyso_pdf::net::Http::new(NET_TIMEOUT, 16 * 1024 * 1024);
    let options = kyso_pdf::sign::Options {
        field_name: None,
        reason: None,
        location: None,
        appearance,
        timestamp_url: config.timestamp_url.clone(),
        fetch: &http,
        time,
    };
    let mut signer =
        TokenPdfSigner::new(&mut kysod, cert, format!("PDF {name}")).map_err(|f| f.to_string())?;
    let signed = kyso_pdf::sign::sign_pdf(&pdf, &mut signer, &options).map_err(|e| match signer
        .take_failure()
    {
        Some(f) => f.to_string(),
        None => e.to_string(),
    })?;
    write_replacing(&args.out, &signed)?;
    Ok(format!(
        "Đã ký {} vào {} / Signed {} into {}\n",
        args.file.display(),
        args.out.display(),
        args.file.display(),
        args.out.display()
    ))
}

/// The certificate's CN and O.
fn holder_parts(der: &[u8]) -> (String, String) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return (String::new(), String::new());
    };
    let text = |a: Option<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
        a.and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let subject = cert.subject();
    let cn = text(subject.iter_common_name().next());
    let o = text(subject.iter_organization().next());
    (cn, o)
}

/// Writes `bytes` to `out` through a new file beside it, renamed over `out` when complete, so a
/// failure leaves no half-written PDF.
fn write_replacing(out: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = out
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", out.display()))?;
    let temp = dir.join(format!(
        ".{}.kyso-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&temp, out));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot write {}: {e}", out.display())
    })
}

pub fn sign(args: SignArgs) -> ExitCode {
    match sign_file(args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kyso: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 only when the file has signatures and every one is valid; 1 otherwise; 2 when the
/// file cannot be read as a PDF.
pub fn verify(args: VerifyArgs) -> ExitCode {
    let run = || -> Result<(String, bool), String> {
        let config = documents(args.config)?;
        let pdf = read_limited(&args.file, kyso_pdf::sign::MAX_SIZE)?;
        let anchors = match args.trust.or(config.trust_anchors) {
            Some(dir) => kyso_pdf::config::read_trust_anchors(&dir)?,
            None => Vec::new(),
        };
        let http = kyso_pdf::net::Http::new(NET_TIMEOUT, 16 * 1024 * 1024);
        let offline = kyso_pdf::net::Offline;
        let options = kyso_pdf::verify::Options {
            trust_anchors: anchors,
            fetch: if args.offline { &offline } else { &http },
            now: time::OffsetDateTime::now_utc(),
        };
        let report = kyso_pdf::verify::verify_pdf(&args.file.to_string_lossy(), &pdf, &options)
            .map_err(|e| e.to_string())?;
        let all_valid = !report.signatures.is_empty()
            && report
                .signatures
                .iter()
                .all(|s| s.verdict == kyso_pdf::verify::Verdict::Valid);
        let text = if args.json {
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n"
        } else {
            report.to_text()
        };
        Ok((text, all_valid))
    };
    match run() {
        Ok((text, valid)) => {
            print!("{text}");
            if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("kyso: {e}");
            ExitCode::from(2)
        }
    }
}
