//! Asking the user through a pinentry program (GnuPG's pinentry family), spoken to over the
//! Assuan protocol: `OK` greeting, `OPTION ttyname=`/`display=`, `SETTITLE`, `SETDESC`,
//! `SETPROMPT`, `SETERROR`, then `GETPIN` (answered by `D` lines and `OK`) or `CONFIRM`, and
//! `BYE`.
//!
//! The PIN is decoded straight from the pinentry's output into zeroizing buffers allocated
//! once at their full size (so no reallocation leaves a copy behind) and is never logged.
//! Every read has a deadline, so a hung pinentry cannot hold a connection forever, and the
//! response parser is total: any bytes give a value or an error, never a panic.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use cryptoki_sys as ck;
use kyso_proto::Pin;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use zeroize::{Zeroize, Zeroizing};

use crate::error::Rv;

/// Longest line Assuan allows (including the line feed).
const LINE_MAX: usize = 1000;
/// Longest line accepted from a pinentry; longer ones are a protocol error.
const READ_LINE_MAX: usize = 4096;
/// `GPG_ERR_CANCELED` (the low 16 bits of an Assuan error code).
const GPG_ERR_CANCELED: u32 = 99;
/// `GPG_ERR_NOT_CONFIRMED`.
const GPG_ERR_NOT_CONFIRMED: u32 = 114;
/// `GPG_ERR_ASS_CANCELED` (the Assuan layer's own cancel).
const GPG_ERR_ASS_CANCELED: u32 = 277;

#[derive(Debug, thiserror::Error)]
pub enum PinentryError {
    #[error("the user cancelled")]
    Cancelled,
    #[error("the user did not confirm")]
    NotConfirmed,
    #[error("cannot start the pinentry program {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("the pinentry did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the pinentry reported error {code}: {message}")]
    Assuan { code: u32, message: String },
    #[error("pinentry protocol error: {0}")]
    Protocol(&'static str),
    #[error("pinentry i/o error: {0}")]
    Io(#[from] io::Error),
}

impl PinentryError {
    /// The PKCS#11 return value an application gets for this failure.
    pub fn rv(&self) -> Rv {
        match self {
            PinentryError::Cancelled => Rv(ck::CKR_FUNCTION_CANCELED),
            PinentryError::NotConfirmed => Rv(ck::CKR_FUNCTION_REJECTED),
            _ => Rv(ck::CKR_FUNCTION_FAILED),
        }
    }
}

/// How to reach the user.
#[derive(Debug, Clone)]
pub struct PinentrySettings {
    /// The pinentry program (a path, or a name looked up in `PATH`).
    pub program: PathBuf,
    /// `OPTION ttyname=` (the requesting application's terminal), when known.
    pub ttyname: Option<String>,
    /// `OPTION display=` (X11 display), when known.
    pub display: Option<String>,
    /// How long the pinentry may take to answer a command that needs no user.
    pub command_timeout: Duration,
    /// How long the user may take over `GETPIN` or `CONFIRM`.
    pub user_timeout: Duration,
}

impl PinentrySettings {
    pub fn new(program: PathBuf) -> PinentrySettings {
        PinentrySettings {
            program,
            ttyname: None,
            display: std::env::var("DISPLAY").ok().filter(|d| !d.is_empty()),
            command_timeout: Duration::from_secs(30),
            user_timeout: Duration::from_secs(300),
        }
    }
}

impl PinentrySettings {
    /// Settings for asking on behalf of the process `pid`: a terminal pinentry (such as
    /// `pinentry-tty`) is pointed at that process's terminal when it has one, else at the
    /// terminal named by `GPG_TTY`, else at kysod's own.
    pub fn for_client(program: PathBuf, pid: i32) -> PinentrySettings {
        let mut settings = PinentrySettings::new(program);
        settings.ttyname = terminal_of(&format!("/proc/{pid}"))
            .or_else(|| {
                std::env::var("GPG_TTY")
                    .ok()
                    .filter(|t| is_terminal_path(t))
            })
            .or_else(|| terminal_of("/proc/self"));
        settings
    }
}

/// The terminal on a standard descriptor (0, 1 or 2) of the process at `proc_dir`.
fn terminal_of(proc_dir: &str) -> Option<String> {
    (0..3).find_map(|fd| {
        let target = std::fs::read_link(format!("{proc_dir}/fd/{fd}")).ok()?;
        let target = target.to_str()?.to_string();
        is_terminal_path(&target).then_some(target)
    })
}

fn is_terminal_path(path: &str) -> bool {
    path.starts_with("/dev/pts/") || (path.starts_with("/dev/tty") && path.len() > "/dev/tty".len())
}

/// What the user is shown.
#[derive(Debug, Clone, Default)]
pub struct PinPrompt {
    pub title: String,
    pub description: String,
    /// The label before the entry field (`SETPROMPT`); for `CONFIRM`, unused.
    pub prompt: String,
    /// Shown as an error above the field (`SETERROR`), e.g. a tries-left warning.
    pub error: Option<String>,
}

/// Asks for a PIN. One prompt, one answer: the caller decides what to do with it.
pub fn ask_pin(settings: &PinentrySettings, prompt: &PinPrompt) -> Result<Pin, PinentryError> {
    let mut p = Pinentry::start(settings)?;
    p.setup(prompt)?;
    let data = p.transact_data("GETPIN", settings.user_timeout)?;
    p.bye();
    Ok(Pin::new(&data))
}

/// Asks the user to confirm; `Ok(false)` when they said no or cancelled.
pub fn confirm(settings: &PinentrySettings, prompt: &PinPrompt) -> Result<bool, PinentryError> {
    let mut p = Pinentry::start(settings)?;
    p.setup(prompt)?;
    let answer = match p.transact("CONFIRM", settings.user_timeout) {
        Ok(()) => Ok(true),
        Err(PinentryError::Cancelled | PinentryError::NotConfirmed) => Ok(false),
        Err(e) => Err(e),
    };
    p.bye();
    answer
}

/// Which of three buttons the user pressed in [`choose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The `SETOK` button.
    Ok,
    /// The `SETNOTOK` button.
    NotOk,
    /// The `SETCANCEL` button, or the prompt closed.
    Cancel,
}

/// The labels of [`choose`]'s three buttons.
#[derive(Debug, Clone)]
pub struct Buttons {
    pub ok: String,
    pub not_ok: String,
    pub cancel: String,
}

/// Asks the user to pick one of three buttons (`SETOK`, `SETNOTOK`, `SETCANCEL`, then
/// `CONFIRM`): pinentry answers `OK` for the first, "not confirmed" for the second and
/// "cancelled" for the third.
pub fn choose(
    settings: &PinentrySettings,
    prompt: &PinPrompt,
    buttons: &Buttons,
) -> Result<Choice, PinentryError> {
    let mut p = Pinentry::start(settings)?;
    p.setup(prompt)?;
    let t = settings.command_timeout;
    p.transact(&command("SETOK", &buttons.ok), t)?;
    p.transact(&command("SETNOTOK", &buttons.not_ok), t)?;
    p.transact(&command("SETCANCEL", &buttons.cancel), t)?;
    let answer = match p.transact("CONFIRM", settings.user_timeout) {
        Ok(()) => Ok(Choice::Ok),
        Err(PinentryError::NotConfirmed) => Ok(Choice::NotOk),
        Err(PinentryError::Cancelled) => Ok(Choice::Cancel),
        Err(e) => Err(e),
    };
    p.bye();
    answer
}

/// Shows a message with one button (`CONFIRM --one-button`); returns when the user closed it.
pub fn notify(settings: &PinentrySettings, prompt: &PinPrompt) -> Result<(), PinentryError> {
    let mut p = Pinentry::start(settings)?;
    p.setup(prompt)?;
    let shown = match p.transact("CONFIRM --one-button", settings.user_timeout) {
        Ok(()) | Err(PinentryError::Cancelled | PinentryError::NotConfirmed) => Ok(()),
        Err(e) => Err(e),
    };
    p.bye();
    shown
}

/// A running pinentry. Dropping it ends the process (and reaps it).
struct Pinentry {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    /// Bytes read but not yet consumed; holds PIN bytes at times, so zeroizing, and
    /// allocated once.
    pending: Zeroizing<Vec<u8>>,
    command_timeout: Duration,
}

impl Pinentry {
    fn start(settings: &PinentrySettings) -> Result<Pinentry, PinentryError> {
        let mut child = Command::new(&settings.program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| PinentryError::Spawn {
                program: settings.program.display().to_string(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(PinentryError::Protocol("no pipes to the pinentry"));
        };
        let mut p = Pinentry {
            child,
            stdin: Some(stdin),
            stdout,
            pending: Zeroizing::new(Vec::with_capacity(2 * READ_LINE_MAX)),
            command_timeout: settings.command_timeout,
        };
        // The greeting.
        p.finish(settings.command_timeout)?;
        for (name, value) in [
            ("ttyname", &settings.ttyname),
            ("display", &settings.display),
        ] {
            if let Some(value) = value {
                // Options a pinentry does not know are not fatal.
                match p.transact(&format!("OPTION {name}={value}"), settings.command_timeout) {
                    Ok(()) | Err(PinentryError::Assuan { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(p)
    }

    fn setup(&mut self, prompt: &PinPrompt) -> Result<(), PinentryError> {
        let t = self.command_timeout;
        if !prompt.title.is_empty() {
            self.transact(&command("SETTITLE", &prompt.title), t)?;
        }
        self.transact(&command("SETDESC", &prompt.description), t)?;
        if !prompt.prompt.is_empty() {
            self.transact(&command("SETPROMPT", &prompt.prompt), t)?;
        }
        if let Some(error) = &prompt.error {
            self.transact(&command("SETERROR", error), t)?;
        }
        Ok(())
    }

    fn send(&mut self, line: &str) -> Result<(), PinentryError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or(PinentryError::Protocol("the pinentry's input is closed"))?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        Ok(())
    }

    /// Sends a command and waits for its `OK`; data lines are not expected and discarded.
    fn transact(&mut self, line: &str, timeout: Duration) -> Result<(), PinentryError> {
        self.send(line)?;
        self.finish(timeout)
    }

    fn finish(&mut self, timeout: Duration) -> Result<(), PinentryError> {
        self.collect(timeout, None)
    }

    /// Sends a command and returns the data it answers with (decoded, zeroizing).
    fn transact_data(
        &mut self,
        line: &str,
        timeout: Duration,
    ) -> Result<Zeroizing<Vec<u8>>, PinentryError> {
        self.send(line)?;
        let mut data = Zeroizing::new(Vec::with_capacity(READ_LINE_MAX));
        self.collect(timeout, Some(&mut data))?;
        Ok(data)
    }

    /// Reads responses until `OK` or `ERR`, appending `D` data to `data` when given.
    fn collect(
        &mut self,
        timeout: Duration,
        mut data: Option<&mut Zeroizing<Vec<u8>>>,
    ) -> Result<(), PinentryError> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.read_line(deadline, timeout)?;
            match parse_response(&line)? {
                Response::Ok => return Ok(()),
                Response::Err { code, message } => return Err(assuan_error(code, message)),
                Response::Data(bytes) => {
                    if let Some(data) = data.as_deref_mut() {
                        if data.len() + bytes.len() > data.capacity() {
                            return Err(PinentryError::Protocol("too much data"));
                        }
                        data.extend_from_slice(&bytes);
                    }
                }
                Response::Status | Response::Comment => {}
                Response::Inquire => self.send("CAN")?,
            }
        }
    }

    /// The next line without its line feed (zeroizing: it may hold the PIN).
    fn read_line(
        &mut self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Zeroizing<Vec<u8>>, PinentryError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line = Zeroizing::new(Vec::with_capacity(end));
                line.extend_from_slice(&self.pending[..end]);
                // Shift in place: no new allocation holding the rest.
                self.pending.copy_within(end + 1.., 0);
                let rest = self.pending.len() - (end + 1);
                let tail = &mut self.pending[rest..];
                tail.zeroize();
                self.pending.truncate(rest);
                return Ok(line);
            }
            if self.pending.len() > READ_LINE_MAX {
                return Err(PinentryError::Protocol("line too long"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PinentryError::Timeout(timeout));
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(PinentryError::Io(e.into())),
            }
            let mut chunk = Zeroizing::new([0u8; 512]);
            let room = (self.pending.capacity() - self.pending.len()).min(chunk.len());
            let n = match self.stdout.read(&mut chunk[..room]) {
                Ok(0) => return Err(PinentryError::Protocol("the pinentry closed its output")),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    fn bye(&mut self) {
        let t = self.command_timeout.min(Duration::from_secs(2));
        let _ = self.transact("BYE", t);
    }
}

impl Drop for Pinentry {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // A pinentry that said goodbye exits at once; give it a moment, then end it.
        for _ in 0..20 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assuan_error(code: u32, message: String) -> PinentryError {
    match code & 0xffff {
        GPG_ERR_CANCELED | GPG_ERR_ASS_CANCELED => PinentryError::Cancelled,
        GPG_ERR_NOT_CONFIRMED => PinentryError::NotConfirmed,
        _ => PinentryError::Assuan { code, message },
    }
}

/// One response line from the pinentry.
#[derive(Debug, PartialEq)]
pub enum Response {
    Ok,
    Err { code: u32, message: String },
    Data(Zeroizing<Vec<u8>>),
    Status,
    Comment,
    Inquire,
}

/// Parses a response line (without its line feed). Total: never panics. Errors never quote
/// the line, which may hold the PIN.
pub fn parse_response(line: &[u8]) -> Result<Response, PinentryError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (word, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    match word {
        b"OK" => Ok(Response::Ok),
        b"ERR" => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let code = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|d| d.parse::<u32>().ok())
                .ok_or(PinentryError::Protocol("ERR without a valid code"))?;
            let message = String::from_utf8_lossy(&rest[digits..]).trim().to_string();
            Ok(Response::Err { code, message })
        }
        b"D" => percent_decode(rest).map(Response::Data),
        b"S" => Ok(Response::Status),
        b"INQUIRE" => Ok(Response::Inquire),
        _ if line.first() == Some(&b'#') => Ok(Response::Comment),
        _ => Err(PinentryError::Protocol("unexpected response")),
    }
}

/// Decodes Assuan `%XX` escapes into a zeroizing buffer.
fn percent_decode(s: &[u8]) -> Result<Zeroizing<Vec<u8>>, PinentryError> {
    let mut out = Zeroizing::new(Vec::with_capacity(s.len()));
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let escaped = match (s.get(i + 1), s.get(i + 2)) {
                (Some(&hi), Some(&lo)) => kyso_proto::hex::byte(hi, lo),
                _ => None,
            };
            match escaped {
                Some(b) => out.push(b),
                None => return Err(PinentryError::Protocol("bad percent escape")),
            }
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// `NAME text` with the text percent-escaped as Assuan requires (`%`, CR, LF, and other
/// control characters), cut at a character boundary to fit Assuan's line limit.
fn command(name: &str, text: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1 + text.len());
    out.push_str(name);
    out.push(' ');
    for ch in text.chars() {
        let mut piece = [0u8; 4];
        let escaped;
        let piece: &str = if ch == '%' || (ch as u32) < 0x20 || ch == '\u{7f}' {
            escaped = format!("%{:02X}", ch as u32);
            &escaped
        } else {
            ch.encode_utf8(&mut piece)
        };
        // Leave room for the line feed.
        if out.len() + piece.len() > LINE_MAX - 1 {
            break;
        }
        out.push_str(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parses_the_usual_responses() {
        assert_eq!(parse_response(b"OK").unwrap(), Response::Ok);
        assert_eq!(
            parse_response(b"OK Pleased to meet you").unwrap(),
            Response::Ok
        );
        assert_eq!(
            parse_response(b"ERR 83886179 Operation cancelled <Pinentry>").unwrap(),
            Response::Err {
                code: 83886179,
                message: "Operation cancelled <Pinentry>".into()
            }
        );
        match parse_response(b"D 12%2534%0A").unwrap() {
            Response::Data(d) => assert_eq!(&d[..], b"12%34\n"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_response(b"S PASSWORD_FROM_CACHE").unwrap(),
            Response::Status
        );
        assert_eq!(parse_response(b"# comment").unwrap(), Response::Comment);
        assert_eq!(parse_response(b"INQUIRE X").unwrap(), Response::Inquire);
    }

    #[test]
    fn hostile_responses_are_errors_not_panics() {
        for line in [
            &b""[..],
            b"D %",
            b"D %4",
            b"D %zz",
            b"D %\xff\xff",
            b"ERR",
            b"ERR x",
            b"ERR 99999999999999999999",
            b"\xff\xfe",
            b"OKAY",
            b"D",
            b"\0\0\0",
        ] {
            let _ = parse_response(line);
        }
        assert!(parse_response(b"D %4").is_err());
        assert!(parse_response(b"ERR x").is_err());
        assert!(parse_response(b"OKAY").is_err());
        assert_eq!(
            parse_response(b"D").unwrap(),
            Response::Data(Zeroizing::new(vec![]))
        );
        // Every byte pair after a percent sign.
        for a in 0..=255u8 {
            for b in [b'0', b'g', 0, 255] {
                let _ = parse_response(&[b'D', b' ', b'%', a, b]);
            }
        }
    }

    #[test]
    fn errors_do_not_quote_the_line() {
        let e = parse_response(b"XYZ 123456").unwrap_err();
        assert!(!e.to_string().contains("123456"));
    }

    #[test]
    fn cancel_codes_map_to_pkcs11() {
        assert_eq!(
            assuan_error(83886179, String::new()).rv(),
            Rv(ck::CKR_FUNCTION_CANCELED)
        );
        assert_eq!(
            assuan_error(83886194, String::new()).rv(),
            Rv(ck::CKR_FUNCTION_REJECTED)
        );
        assert_eq!(
            assuan_error(1, String::new()).rv(),
            Rv(ck::CKR_FUNCTION_FAILED)
        );
    }

    #[test]
    fn commands_escape_percent_and_line_breaks() {
        assert_eq!(
            command("SETDESC", "50% done\r\nok"),
            "SETDESC 50%25 done%0D%0Aok"
        );
        assert_eq!(command("SETDESC", "Còn 1 lần thử"), "SETDESC Còn 1 lần thử");
        let long = "ắ".repeat(2000);
        let c = command("SETDESC", &long);
        assert!(c.len() < LINE_MAX);
        assert!(!c.contains('\n'));
    }

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        let path = dir.join("pinentry.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn settings(program: PathBuf) -> PinentrySettings {
        PinentrySettings {
            program,
            ttyname: Some("/dev/pts/0".into()),
            display: None,
            command_timeout: Duration::from_secs(5),
            user_timeout: Duration::from_secs(5),
        }
    }

    const ANSWER_ALL: &str = "echo 'OK hello'\nwhile read -r cmd rest; do\n  case $cmd in\n    GETPIN) echo 'D 12%2534'; echo OK;;\n    CONFIRM) echo 'ERR 83886194 Not confirmed';;\n    BYE) echo OK; exit 0;;\n    *) echo OK;;\n  esac\ndone";

    #[test]
    fn a_scripted_pinentry_answers() {
        let dir = tempdir();
        let s = settings(script(&dir, ANSWER_ALL));
        let prompt = PinPrompt {
            title: "kyso".into(),
            description: "line 1\nline 2".into(),
            prompt: "PIN:".into(),
            error: Some("Còn 1 lần thử".into()),
        };
        assert_eq!(ask_pin(&s, &prompt).unwrap().expose(), b"12%34");
        assert!(!confirm(&s, &prompt).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn three_buttons_map_to_choices() {
        let dir = tempdir();
        let buttons = Buttons {
            ok: "Một lần / Once".into(),
            not_ok: "Luôn / Always".into(),
            cancel: "Từ chối / Refuse".into(),
        };
        // The script answers CONFIRM according to the SETNOTOK label it was given, and
        // records every command.
        let body = |reply: &str| {
            format!(
                "echo OK\nwhile read -r cmd rest; do echo \"$cmd $rest\" >> {seen}; case $cmd in CONFIRM) {reply};; BYE) echo OK; exit 0;; *) echo OK;; esac; done",
                seen = dir.join("seen").display()
            )
        };
        let s = settings(script(&dir, &body("echo OK")));
        assert_eq!(
            choose(&s, &PinPrompt::default(), &buttons).unwrap(),
            Choice::Ok
        );
        let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
        assert!(seen.contains("SETOK Một lần / Once"), "{seen}");
        assert!(seen.contains("SETNOTOK Luôn / Always"), "{seen}");
        assert!(seen.contains("SETCANCEL Từ chối / Refuse"), "{seen}");
        let s = settings(script(&dir, &body("echo 'ERR 83886194 Not confirmed'")));
        assert_eq!(
            choose(&s, &PinPrompt::default(), &buttons).unwrap(),
            Choice::NotOk
        );
        let s = settings(script(
            &dir,
            &body("echo 'ERR 83886179 Operation cancelled'"),
        ));
        assert_eq!(
            choose(&s, &PinPrompt::default(), &buttons).unwrap(),
            Choice::Cancel
        );
        let s = settings(script(&dir, &body("echo 'ERR 1 broken'")));
        assert!(matches!(
            choose(&s, &PinPrompt::default(), &buttons),
            Err(PinentryError::Assuan { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cancel_and_hangs_and_missing_programs() {
        let dir = tempdir();
        let s = settings(script(
            &dir,
            "echo OK\nwhile read -r cmd rest; do case $cmd in GETPIN) echo 'ERR 83886179 Operation cancelled';; *) echo OK;; esac; done",
        ));
        assert!(matches!(
            ask_pin(&s, &PinPrompt::default()),
            Err(PinentryError::Cancelled)
        ));

        let mut s = settings(script(&dir, "echo OK\nsleep 30"));
        s.command_timeout = Duration::from_millis(200);
        let start = Instant::now();
        assert!(matches!(
            ask_pin(&s, &PinPrompt::default()),
            Err(PinentryError::Timeout(_))
        ));
        assert!(start.elapsed() < Duration::from_secs(5));

        let s = settings(script(&dir, "exit 0"));
        assert!(ask_pin(&s, &PinPrompt::default()).is_err());

        let s = settings(dir.join("does-not-exist"));
        assert!(matches!(
            ask_pin(&s, &PinPrompt::default()),
            Err(PinentryError::Spawn { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir() -> PathBuf {
        let mut n = [0u8; 8];
        let _ = getrandom::getrandom(&mut n);
        let dir = std::env::temp_dir().join(format!("kyso-pinentry-{}", hex::encode(n)));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
