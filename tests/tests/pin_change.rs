//! `kyso pin change`: the PINs are typed into kysod's pinentry (current once, new twice within
//! the token's length limits), never through the command, and a failed change changes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use cryptoki::error::RvError;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use kyso_tests::pinentry::scripted_pinentry;
use kyso_tests::{rv_of, target_dir, toml_str, Daemon, DaemonConfig, Fixture, Module, USER_PIN};

fn start(fx: &Fixture, answers: &str) -> (Daemon, PathBuf) {
    let dir = fx.subdir("pinentry");
    let program = scripted_pinentry(&dir);
    std::fs::write(dir.join("answer"), answers).unwrap();
    let cfg = DaemonConfig {
        extra: format!("pinentry = {}\n", toml_str(&program.to_string_lossy())),
        ..Default::default()
    };
    (Daemon::start_with(fx, cfg), dir)
}

fn kyso_pin_change(daemon: &Daemon) -> std::process::Output {
    Command::new(target_dir().join("kyso"))
        .args(["pin", "change", "--socket"])
        .arg(daemon.socket())
        .output()
        .expect("run kyso pin change")
}

/// The result of a user login with `pin` through the shim, in a fresh application.
fn login_with(daemon: &Daemon, fx: &Fixture, pin: &str) -> Option<RvError> {
    let shim = Module::shim(daemon);
    let s = shim.session(fx.serial_a());
    let r = s.login(UserType::User, Some(&AuthPin::new(pin.into())));
    r.err().and_then(|e| rv_of(&e))
}

fn getpins(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("seen"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("GETPIN"))
        .count()
}

#[test]
fn the_pin_is_changed_through_the_prompt() {
    let fx = Fixture::new();
    let (daemon, dir) = start(&fx, &format!("{USER_PIN}\n65432100\n65432100\n"));
    let out = kyso_pin_change(&daemon);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains(fx.serial_a()), "{text}");
    assert_eq!(getpins(&dir), 3, "current PIN once, new PIN twice");
    let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
    assert!(
        seen.contains("SETDESC") && seen.contains("kyso"),
        "the prompt names the asking program:\n{seen}"
    );
    assert!(
        !daemon.log().contains("65432100"),
        "the new PIN reached the log"
    );
    assert_eq!(
        login_with(&daemon, &fx, "65432100"),
        None,
        "the new PIN logs in"
    );
    assert_eq!(
        login_with(&daemon, &fx, USER_PIN),
        Some(RvError::PinIncorrect),
        "the old PIN no longer does"
    );
}

#[test]
fn new_pins_that_never_match_change_nothing() {
    let fx = Fixture::new();
    let (daemon, dir) = start(
        &fx,
        &format!("{USER_PIN}\n11111111\n22222222\n33333333\n44444444\n55555555\n66666666\n"),
    );
    let out = kyso_pin_change(&daemon);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not changed"),
        "{out:?}"
    );
    assert_eq!(
        getpins(&dir),
        7,
        "the current PIN, then three pairs of new PINs"
    );
    assert_eq!(
        login_with(&daemon, &fx, USER_PIN),
        None,
        "the PIN is unchanged"
    );
}

#[test]
fn a_too_short_new_pin_is_asked_again() {
    let fx = Fixture::new();
    let (daemon, dir) = start(&fx, &format!("{USER_PIN}\n12\n87651234\n87651234\n"));
    let out = kyso_pin_change(&daemon);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        getpins(&dir),
        4,
        "a PIN out of the token's length range is not confirmed, just asked again"
    );
    let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
    assert!(seen.contains("SETERROR"), "the user is told why:\n{seen}");
    assert_eq!(login_with(&daemon, &fx, "87651234"), None);
}

#[test]
fn a_wrong_current_pin_changes_nothing() {
    let fx = Fixture::new();
    let (daemon, _dir) = start(&fx, "000000\n11112222\n11112222\n");
    let out = kyso_pin_change(&daemon);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("current PIN is wrong"),
        "{out:?}"
    );
    assert_eq!(
        login_with(&daemon, &fx, USER_PIN),
        None,
        "the PIN is unchanged"
    );
    assert_eq!(
        login_with(&daemon, &fx, "11112222"),
        Some(RvError::PinIncorrect)
    );
}
