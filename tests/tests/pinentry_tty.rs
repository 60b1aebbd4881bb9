//! The real `pinentry-tty` end to end: kysod runs on a terminal (a tmux pane), `pkcs11-tool`
//! logs in through the shim with a NULL PIN and signs; the prompt appears on kysod's terminal
//! (the application has none), naming the application, its pid and the token in Vietnamese and
//! English; the PIN is typed there, the login succeeds and the signature verifies.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kyso_tests::util::{openssl_verify_sha256, run};
use kyso_tests::{
    kysod_path, shim_path, toml_str, Daemon, DaemonConfig, Fixture, LABEL_A, USER_PIN,
};

const PINENTRY_TTY: &str = "/usr/bin/pinentry-tty";
const DOCUMENT: &[u8] = b"Quyet dinh so 7/QD-UBND, ky qua pinentry-tty.\n";
/// How long each step may take (the prompt showing, the signature after the PIN).
const STEP: Duration = Duration::from_secs(30);

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        // Its own server even when the tests themselves run inside tmux.
        c.env_remove("TMUX").arg("-u").arg("-S").arg(&self.socket);
        c
    }

    fn check(&self, args: &[&str]) -> String {
        let out = run(self.cmd().args(args), Duration::from_secs(10));
        assert!(out.status.success(), "tmux {args:?}: {}", out.text());
        out.stdout
    }

    fn screen(&self) -> String {
        self.check(&["capture-pane", "-p", "-J", "-t", "kysod"])
    }

    /// Polls the pane until `pred` holds; panics with the screen after `STEP`.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < STEP,
                "{what} did not appear within {STEP:?}; the pane:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // kill-server sends the panes' processes SIGHUP, which kysod takes as "reload the
        // configuration": end them first (the pane `exec`s its command, so the pane's pid is
        // kysod's).
        let out = run(
            self.cmd().args(["list-panes", "-a", "-F", "#{pane_pid}"]),
            Duration::from_secs(10),
        );
        for pid in out.stdout.split_whitespace().filter_map(|p| p.parse().ok()) {
            // SAFETY: kill has no memory-safety preconditions; the pid is the pane's.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = run(self.cmd().arg("kill-server"), Duration::from_secs(10));
    }
}

fn sh_quote(p: &Path) -> String {
    kyso_tests::pinentry::sh_quote(p)
}

/// Waits for `child` with a deadline; `true` when it exited successfully.
fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.success();
        }
        if start.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            panic!("pkcs11-tool did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pinentry_tty_in_a_terminal_asks_for_the_pin_and_the_signature_verifies() {
    for tool in [PINENTRY_TTY, "/usr/bin/tmux"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} missing: scripts/setup-debian installs it"
        );
    }
    let fx = Fixture::new();
    // The harness writes the configuration; kysod itself then runs in the tmux pane.
    let cfg = DaemonConfig {
        extra: format!("pinentry = {}\n", toml_str(PINENTRY_TTY)),
        ..Default::default()
    };
    let mut harness = Daemon::start_with(&fx, cfg);
    harness.terminate();
    let work = fx.subdir("tty");
    let tmux = Tmux {
        socket: work.join("tmux.sock"),
    };
    let command = format!(
        "exec env -u GPG_TTY LC_ALL=C.UTF-8 SOFTHSM2_CONF={conf} {kysod} --config {config} 2>>{log}",
        conf = sh_quote(&fx.softhsm_conf()),
        kysod = sh_quote(&kysod_path()),
        config = sh_quote(harness.config_path()),
        log = sh_quote(harness.log_path()),
    );
    tmux.check(&[
        "new-session",
        "-d",
        "-s",
        "kysod",
        "-x",
        "250",
        "-y",
        "50",
        &command,
    ]);
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(harness.socket()).is_err() {
        assert!(
            start.elapsed() < STEP,
            "kysod in tmux did not start; log:\n{}",
            harness.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The application: no terminal of its own (stdin, stdout and stderr are not terminals).
    let doc = work.join("document.txt");
    let sig = work.join("document.sig");
    fs::write(&doc, DOCUMENT).unwrap();
    let mut app = Command::new("pkcs11-tool")
        .env("KYSO_SOCKET", harness.socket())
        .arg("--module")
        .arg(shim_path())
        .args(["--token-label", LABEL_A, "--login", "--sign", "--id", "01"])
        .args(["-m", "SHA256-RSA-PKCS", "--input-file"])
        .arg(&doc)
        .arg("--output-file")
        .arg(&sig)
        .stdin(Stdio::null())
        .stdout(fs::File::create(work.join("app.out")).unwrap())
        .stderr(fs::File::create(work.join("app.err")).unwrap())
        .spawn()
        .expect("spawn pkcs11-tool");

    let screen = tmux.wait_for("the PIN prompt", |s| s.contains("PIN:"));
    for expected in [
        "yêu cầu mã PIN",
        "asks for the PIN",
        "pkcs11-tool",
        &format!("pid {}", app.id()),
        LABEL_A,
        fx.serial_a(),
    ] {
        assert!(
            screen.contains(expected),
            "{expected:?} missing from the prompt:\n{screen}"
        );
    }
    assert!(!sig.exists(), "signed before the PIN was typed:\n{screen}");
    tmux.check(&["send-keys", "-t", "kysod", USER_PIN, "Enter"]);

    let ok = wait_child(&mut app, STEP);
    let app_out = fs::read_to_string(work.join("app.out")).unwrap_or_default()
        + &fs::read_to_string(work.join("app.err")).unwrap_or_default();
    assert!(ok, "pkcs11-tool failed:\n{app_out}");
    let signature = fs::read(&sig).expect("the signature");
    assert_eq!(signature.len(), 256);
    assert!(openssl_verify_sha256(&fx.cert_pem(1), DOCUMENT, &signature));
    assert!(!openssl_verify_sha256(
        &fx.cert_pem(1),
        b"another",
        &signature
    ));
    // The typed PIN is not echoed on the terminal.
    assert!(
        !tmux.screen().contains(USER_PIN),
        "the PIN is on the screen"
    );
}
