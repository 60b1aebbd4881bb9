//! The login cache: per application by default; with `[pin] share_login_seconds` a user login
//! is reused by the user's other applications (here `pkcs11-tool` processes) without a prompt
//! for that long, even after the first application has gone; it ends when the time is up or a
//! login on the token fails, and the journal says which logins were shared.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cryptoki::session::UserType;
use kyso_tests::pinentry::scripted_pinentry;
use kyso_tests::util::{pkcs11_tool, Output};
use kyso_tests::{shim_path, toml_str, Daemon, DaemonConfig, Fixture, Module, LABEL_A, USER_PIN};

fn start(fx: &Fixture, share_seconds: u64) -> (Daemon, PathBuf) {
    let dir = fx.subdir("pinentry");
    let program = scripted_pinentry(&dir);
    std::fs::write(dir.join("answer"), format!("{USER_PIN}\n")).unwrap();
    let cfg = DaemonConfig {
        extra: format!(
            "pinentry = {}\n[pin]\nshare_login_seconds = {share_seconds}\n",
            toml_str(&program.to_string_lossy())
        ),
        ..Default::default()
    };
    (Daemon::start_with(fx, cfg), dir)
}

/// How many PINs the pinentry was asked for so far.
fn prompts(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("seen"))
        .unwrap_or_default()
        .matches("GETPIN")
        .count()
}

/// Another application: `pkcs11-tool` logging in through the shim (with `pin`, or with a NULL
/// PIN as the token offers a protected authentication path) and listing private keys.
fn other_application(daemon: &Daemon, pin: Option<&str>) -> Output {
    std::env::set_var("KYSO_SOCKET", daemon.socket());
    let mut args = vec!["--token-label", LABEL_A, "--login", "--list-objects"];
    args.extend(["--type", "privkey"]);
    if let Some(pin) = pin {
        args.extend(["--pin", pin]);
    }
    pkcs11_tool(&shim_path(), &args)
}

fn logged_in_and_saw_the_key(out: &Output) -> bool {
    out.status.success() && out.stdout.contains("Private Key Object")
}

/// kysod sharing logins for `share_seconds`, after a first application logged in and left.
fn after_a_first_login(share_seconds: u64) -> (Fixture, Daemon, PathBuf) {
    let fx = Fixture::new();
    let (daemon, dir) = start(&fx, share_seconds);
    first_application_logs_in(&daemon, &fx);
    assert_eq!(prompts(&dir), 1);
    (fx, daemon, dir)
}

/// The first application: this process, logging in with a NULL PIN (the pinentry answers).
fn first_application_logs_in(daemon: &Daemon, fx: &Fixture) {
    let shim = Module::shim(daemon);
    let slot = shim.slot_with_serial(fx.serial_a());
    let s = shim.ctx().open_ro_session(slot).unwrap();
    s.login(UserType::User, None).expect("C_Login(NULL PIN)");
    // The application ends: sessions closed, C_Finalize, connection gone.
    drop(s);
    drop(shim);
}

#[test]
fn without_sharing_every_application_is_asked() {
    let (_fx, daemon, dir) = after_a_first_login(0);
    let out = other_application(&daemon, None);
    assert!(logged_in_and_saw_the_key(&out), "{}", out.text());
    assert_eq!(prompts(&dir), 2, "the second application was asked again");
}

#[test]
fn a_shared_login_serves_other_applications_until_it_expires() {
    let (fx, daemon, dir) = after_a_first_login(4);
    let shared_from = Instant::now();

    // The first application has gone; the login is still shared: no prompt.
    let out = other_application(&daemon, None);
    assert!(logged_in_and_saw_the_key(&out), "{}", out.text());
    assert_eq!(prompts(&dir), 1, "a shared login asked for the PIN");

    // A PIN supplied by an application is still checked (against the verifier).
    let out = other_application(&daemon, Some(USER_PIN));
    assert!(logged_in_and_saw_the_key(&out), "{}", out.text());
    assert_eq!(prompts(&dir), 1);
    assert!(
        shared_from.elapsed() < Duration::from_millis(3500),
        "the test was too slow to check the shared login in time"
    );

    // Time up: the next application is asked again.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(shared_from.elapsed()));
    std::thread::sleep(Duration::from_millis(600));
    let out = other_application(&daemon, None);
    assert!(logged_in_and_saw_the_key(&out), "{}", out.text());
    assert_eq!(prompts(&dir), 2, "an expired shared login was reused");

    // The journal tells shared logins from the others.
    let journal = std::fs::read_to_string(fx.subdir("kysod").join("state/audit.jsonl")).unwrap();
    let logins: Vec<&str> = journal
        .lines()
        .filter(|l| l.contains("\"event\":\"login\""))
        .collect();
    assert_eq!(logins.len(), 4, "{journal}");
    assert_eq!(
        logins.iter().filter(|l| l.contains("shared login")).count(),
        1,
        "{journal}"
    );
    assert!(logins[1].contains("shared login"), "{journal}");
}

#[test]
fn a_failed_login_ends_the_sharing_at_once() {
    let (_fx, daemon, dir) = after_a_first_login(60);

    let out = other_application(&daemon, Some(kyso_tests::WRONG_PIN));
    assert!(!out.status.success(), "a wrong PIN was accepted");
    assert!(out.stderr.contains("CKR_PIN_INCORRECT"), "{}", out.text());

    // The shared login was dropped: the next application is asked.
    let out = other_application(&daemon, None);
    assert!(logged_in_and_saw_the_key(&out), "{}", out.text());
    assert_eq!(prompts(&dir), 2, "the shared login survived a failed login");
}

/// While one application keeps the token logged in, a wrong PIN for another one is checked by
/// kysod, not the token: mistyped by the user into kysod's prompt, it fails only that login;
/// supplied by an application (a guess the token never counts), it logs the token out for
/// every application, so that the next guess is the token's to count.
#[test]
fn a_wrong_pin_while_logged_in_costs_the_guesser_not_the_others() {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::ObjectClass;

    let fx = Fixture::new();
    let (daemon, dir) = start(&fx, 0);
    let shim = Module::shim(&daemon);
    let a = shim.user_session(fx.serial_a());
    let key = kyso_tests::util::find_one(&a, ObjectClass::PRIVATE_KEY, kyso_tests::ID_RSA);

    // The user mistypes in the prompt another application raised.
    std::fs::write(dir.join("answer"), "000000\n").unwrap();
    let typo = other_application(&daemon, None);
    assert!(!logged_in_and_saw_the_key(&typo), "{}", typo.text());
    assert!(prompts(&dir) >= 1);
    a.sign(&Mechanism::Sha256RsaPkcs, key, b"after a typo")
        .expect("the first application still signs");

    // An application guesses.
    let guess = other_application(&daemon, Some("000000"));
    assert!(!logged_in_and_saw_the_key(&guess), "{}", guess.text());
    let err = a
        .sign(&Mechanism::Sha256RsaPkcs, key, b"after a guess")
        .expect_err("the token was logged out");
    assert!(kyso_tests::rv_of(&err).is_some(), "{err}");

    // A right PIN then logs in at the token.
    std::fs::write(dir.join("answer"), format!("{USER_PIN}\n")).unwrap();
    let right = other_application(&daemon, Some(USER_PIN));
    assert!(logged_in_and_saw_the_key(&right), "{}", right.text());
}
