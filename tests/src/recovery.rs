//! Helpers for the token-recovery tests: a helpdesk store, kysod trusting its key, and the
//! `kyso` / `kyso-helpdesk` commands run with a deadline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::pinentry::scripted_pinentry;
use crate::util::{run, Output};
use crate::{target_dir, toml_str, Daemon, DaemonConfig, Fixture};

/// The helpdesk passphrase the tests use.
pub const PASSPHRASE: &str = "mat khau kho khoi phuc";

/// A helpdesk store in the fixture's directory, with its public key written to `helpdesk.pub`.
pub struct Helpdesk {
    pub db: PathBuf,
    pub dir: PathBuf,
    pub pubkey: PathBuf,
}

impl Helpdesk {
    /// `kyso-helpdesk init` in `fx.subdir(name)`.
    pub fn new(fx: &Fixture, name: &str) -> Helpdesk {
        let dir = fx.subdir(name);
        let h = Helpdesk {
            db: dir.join("helpdesk.db"),
            pubkey: dir.join("helpdesk.pub"),
            dir,
        };
        let out = h.run(&["init"]);
        assert!(out.status.success(), "init: {}", out.text());
        let out = h.run(&["pubkey"]);
        assert!(out.status.success(), "pubkey: {}", out.text());
        std::fs::write(&h.pubkey, &out.stdout).expect("write the public key");
        h
    }

    /// `kyso-helpdesk ARGS --db DB` (the first word is the subcommand; `--db` goes after the
    /// words that are not options).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    /// As [`Helpdesk::run`], with `stdin` typed in.
    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(target_dir().join("kyso-helpdesk"));
        cmd.args(args)
            .arg("--db")
            .arg(&self.db)
            .env("KYSO_HELPDESK_PASSPHRASE", PASSPHRASE)
            .env("USER", "can-bo-ho-tro");
        match stdin {
            None => run(&mut cmd, Duration::from_secs(60)),
            Some(text) => {
                let input = self.dir.join("stdin");
                std::fs::write(&input, text).expect("write stdin");
                // `run` closes stdin; feed it through a shell redirect instead.
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg("exec \"$0\" \"$@\" < \"$KYSO_TEST_STDIN\"")
                    .arg(cmd.get_program())
                    .args(cmd.get_args())
                    .env("KYSO_TEST_STDIN", &input)
                    .env("KYSO_HELPDESK_PASSPHRASE", PASSPHRASE)
                    .env("USER", "can-bo-ho-tro");
                run(&mut sh, Duration::from_secs(60))
            }
        }
    }

    /// `kyso-helpdesk escrow add` of `so_pin` for `serial`.
    pub fn escrow(&self, serial: &str, so_pin: &str) {
        let file = self.dir.join(format!("so-pin-{serial}"));
        std::fs::write(&file, format!("{so_pin}\n")).expect("write the SO PIN file");
        let out = self.run(&[
            "escrow",
            "add",
            "--serial",
            serial,
            "--so-pin-file",
            &file.to_string_lossy(),
        ]);
        std::fs::remove_file(&file).ok();
        assert!(out.status.success(), "escrow add: {}", out.text());
    }

    /// `kyso-helpdesk cases --json`.
    pub fn cases(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["cases", "--json"]);
        assert!(out.status.success(), "cases: {}", out.text());
        serde_json::from_str(&out.stdout).expect("cases --json prints JSON")
    }
}

/// kysod with a scripted pinentry answering `answers` (one PIN a line) and trusting
/// `helpdesk`'s key. Returns the daemon and the pinentry's directory.
pub fn kysod_trusting(
    fx: &Fixture,
    mut cfg: DaemonConfig,
    helpdesk: &Helpdesk,
    answers: &str,
) -> (Daemon, PathBuf) {
    let dir = fx.subdir("pinentry");
    let program = scripted_pinentry(&dir);
    std::fs::write(dir.join("answer"), answers).expect("write the pinentry's answers");
    cfg.extra = format!(
        "pinentry = {}\n{}\n[recovery]\nhelpdesk_keys = [{}]\n",
        toml_str(&program.to_string_lossy()),
        cfg.extra,
        toml_str(&helpdesk.pubkey.to_string_lossy())
    );
    (Daemon::start_with(fx, cfg), dir)
}

/// `kyso ARGS --socket SOCKET`.
pub fn kyso(daemon: &Daemon, args: &[&str]) -> Output {
    let mut cmd = Command::new(target_dir().join("kyso"));
    cmd.args(args).arg("--socket").arg(daemon.socket());
    run(&mut cmd, Duration::from_secs(60))
}

/// `kyso token status --token SERIAL --json`: the token's diagnosis.
pub fn token_status(daemon: &Daemon, serial: &str) -> serde_json::Value {
    let out = kyso(daemon, &["token", "status", "--token", serial, "--json"]);
    assert!(out.status.success(), "token status: {}", out.text());
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&out.stdout).expect("token status --json prints JSON");
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap_or_default()
}

/// How many PINs the scripted pinentry in `dir` has been asked for.
pub fn pins_asked(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Asserts that none of `secrets` occurs in any file under `paths` (directories are walked).
pub fn assert_absent(secrets: &[&str], paths: &[&Path]) {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if p.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), out);
            }
        } else if p.is_file() {
            out.push(p.to_path_buf());
        }
    }
    let mut files = Vec::new();
    for p in paths {
        assert!(p.exists(), "{} missing", p.display());
        walk(p, &mut files);
    }
    assert!(!files.is_empty());
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "a secret ({} bytes) is readable in {}",
                s.len(),
                f.display()
            );
        }
    }
}
