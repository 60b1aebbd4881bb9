//! The helpdesk passphrase: from `KYSO_HELPDESK_PASSPHRASE` (automation), else asked through
//! a pinentry program (`KYSO_PINENTRY`, default `pinentry`) over the Assuan protocol.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

pub const ENV: &str = "KYSO_HELPDESK_PASSPHRASE";

/// Why no passphrase was had.
#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    #[error("{ENV} is empty")]
    EmptyVariable,
    #[error("the two passphrases differ")]
    Differ,
    #[error("an empty passphrase is not accepted")]
    Empty,
    #[error("no passphrase: set {ENV} or install a pinentry program ({program}: {source})")]
    NoPinentry {
        program: String,
        source: std::io::Error,
    },
    #[error("pinentry: no {0}")]
    NoPipe(&'static str),
    #[error("pinentry: {0}")]
    Io(#[from] std::io::Error),
    #[error("pinentry ended the conversation")]
    Ended,
    #[error("no passphrase was given (cancelled)")]
    Cancelled,
}

/// The passphrase; `confirm` asks twice (a new store).
pub fn passphrase(description: &str, confirm: bool) -> Result<Zeroizing<Vec<u8>>, PassphraseError> {
    if let Some(p) = std::env::var_os(ENV) {
        let p = Zeroizing::new(p.into_encoded_bytes());
        if p.is_empty() {
            return Err(PassphraseError::EmptyVariable);
        }
        return Ok(p);
    }
    let first = ask(description, None)?;
    if confirm {
        let again = ask(description, Some("Nhập lại / again"))?;
        if *again != *first {
            return Err(PassphraseError::Differ);
        }
    }
    if first.is_empty() {
        return Err(PassphraseError::Empty);
    }
    Ok(first)
}

fn escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\n', "%0A")
        .replace('\r', "%0D")
}

fn unescape(data: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'%' && i + 2 < data.len() {
            if let Some(b) = kyso_proto::hex::byte(data[i + 1], data[i + 2]) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

fn ask(description: &str, prompt: Option<&str>) -> Result<Zeroizing<Vec<u8>>, PassphraseError> {
    let program = std::env::var_os("KYSO_PINENTRY").unwrap_or_else(|| "pinentry".into());
    let mut child = Command::new(&program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| PassphraseError::NoPinentry {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
    let result = converse(&mut child, description, prompt);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn converse(
    child: &mut std::process::Child,
    description: &str,
    prompt: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, PassphraseError> {
    let mut input = child.stdin.take().ok_or(PassphraseError::NoPipe("stdin"))?;
    let mut output = BufReader::new(
        child
            .stdout
            .take()
            .ok_or(PassphraseError::NoPipe("stdout"))?,
    );
    let mut line = Zeroizing::new(Vec::new());
    let expect_ok = |output: &mut BufReader<_>,
                     line: &mut Vec<u8>|
     -> Result<Option<Zeroizing<Vec<u8>>>, PassphraseError> {
        let mut data = None;
        loop {
            line.clear();
            if output.read_until(b'\n', line)? == 0 {
                return Err(PassphraseError::Ended);
            }
            if line.starts_with(b"OK") {
                return Ok(data);
            }
            if let Some(d) = line.strip_prefix(b"D ") {
                let d = d.strip_suffix(b"\n").unwrap_or(d);
                data = Some(unescape(d));
            } else if line.starts_with(b"ERR") {
                return Err(PassphraseError::Cancelled);
            }
        }
    };
    expect_ok(&mut output, &mut line)?;
    let commands = [
        "SETTITLE kyso-helpdesk".to_string(),
        format!("SETDESC {}", escape(description)),
        format!("SETPROMPT {}", escape(prompt.unwrap_or("Passphrase:"))),
    ];
    for c in commands {
        writeln!(input, "{c}")?;
        expect_ok(&mut output, &mut line)?;
    }
    writeln!(input, "GETPIN")?;
    let pin = expect_ok(&mut output, &mut line)?.unwrap_or_default();
    let _ = writeln!(input, "BYE");
    Ok(pin)
}
