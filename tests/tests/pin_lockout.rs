//! Lockout protection on a token that counts wrong PINs and locks after three (opencryptoki's
//! soft token): one wrong PIN through kysod spends exactly one try (kysod never tries again on
//! its own), a PIN the application supplies at the final try goes to the token only when the
//! user confirms it in the pinentry, and a locked token is refused with `CKR_PIN_LOCKED` and a
//! pointer to recovery (in the log and journal, and for a PIN-less login a message to the user
//! through the pinentry), without asking a PIN and without touching the token.

use std::path::PathBuf;

use cryptoki::error::RvError;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use kyso_tests::pinentry::scripted_pinentry;
use kyso_tests::{rv_of, toml_str, Daemon, DaemonConfig, Fixture, Module, OCK_USER_PIN};

const WRONG: &str = "00000000";

fn start(fx: &Fixture, answer: &str) -> (Daemon, PathBuf) {
    let dir = fx.subdir("pinentry");
    let program = scripted_pinentry(&dir);
    std::fs::write(dir.join("answer"), answer).unwrap();
    let mut cfg = DaemonConfig::with_opencryptoki();
    cfg.extra = format!("pinentry = {}\n", toml_str(&program.to_string_lossy()));
    (Daemon::start_with(fx, cfg), dir)
}

/// kysod on a fresh opencryptoki token, the shim, and the token's slot.
fn on_a_fresh_token(fx: &Fixture, answer: &str) -> (Daemon, PathBuf, Module, Slot) {
    let (daemon, dir) = start(fx, answer);
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(fx.opencryptoki().serial());
    (daemon, dir, shim, slot)
}

/// (COUNT_LOW, FINAL_TRY, LOCKED) as the token reports them through kysod.
fn tries(shim: &Module, slot: Slot) -> (bool, bool, bool) {
    let info = shim.ctx().get_token_info(slot).unwrap();
    (
        info.user_pin_count_low(),
        info.user_pin_final_try(),
        info.user_pin_locked(),
    )
}

fn app_login(s: &Session, pin: &str) -> Option<RvError> {
    s.login(UserType::User, Some(&AuthPin::new(pin.into())))
        .err()
        .map(|e| rv_of(&e).expect("a PKCS#11 error"))
}

fn seen(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("seen")).unwrap_or_default()
}

#[test]
fn one_wrong_pin_through_the_pinentry_spends_exactly_one_try() {
    let fx = Fixture::with_opencryptoki();
    let (_daemon, dir, shim, slot) = on_a_fresh_token(&fx, &format!("{WRONG}\n"));
    assert_eq!(tries(&shim, slot), (false, false, false));
    let s = shim.ctx().open_ro_session(slot).unwrap();

    let err = s.login(UserType::User, None).unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::PinIncorrect));
    // One prompt, one try counted by the token: kysod did not try again on its own.
    assert_eq!(seen(&dir).matches("GETPIN").count(), 1);
    assert_eq!(tries(&shim, slot), (true, false, false));

    // The next prompt warns of the tries spent; the right PIN then clears the count.
    std::fs::write(dir.join("answer"), format!("{OCK_USER_PIN}\n")).unwrap();
    std::fs::remove_file(dir.join("count")).unwrap();
    s.login(UserType::User, None).expect("the right PIN");
    let shown = seen(&dir);
    assert!(shown.contains("SETERROR"), "{shown}");
    assert!(shown.contains("few tries left"), "{shown}");
    assert_eq!(tries(&shim, slot), (false, false, false));
}

#[test]
fn at_the_final_try_an_application_pin_needs_the_users_confirmation() {
    let fx = Fixture::with_opencryptoki();
    let (_daemon, dir, shim, slot) = on_a_fresh_token(&fx, "no\n");
    let s = shim.ctx().open_ro_session(slot).unwrap();

    // Two wrong PINs from the application: two tries, no confirmation asked yet.
    assert_eq!(app_login(&s, WRONG), Some(RvError::PinIncorrect));
    assert_eq!(tries(&shim, slot), (true, false, false));
    assert_eq!(app_login(&s, WRONG), Some(RvError::PinIncorrect));
    // The token reports FINAL_TRY in place of COUNT_LOW.
    assert_eq!(tries(&shim, slot), (false, true, false));
    assert!(!seen(&dir).contains("CONFIRM"));

    // Final try: the user says no, so even the right PIN is not passed on.
    assert_eq!(app_login(&s, OCK_USER_PIN), Some(RvError::FunctionCanceled));
    let shown = seen(&dir);
    assert_eq!(shown.matches("CONFIRM").count(), 1, "{shown}");
    assert!(shown.contains("Còn 1 lần thử"), "{shown}");
    assert!(
        shown.contains("One try of the user PIN") && shown.contains("Go on?"),
        "{shown}"
    );
    assert_eq!(tries(&shim, slot), (false, true, false), "a try was spent");

    // The user says yes: the PIN goes to the token, which accepts it and resets its count.
    std::fs::write(dir.join("answer"), "yes\n").unwrap();
    assert_eq!(app_login(&s, OCK_USER_PIN), None);
    assert_eq!(seen(&dir).matches("CONFIRM").count(), 2);
    assert_eq!(tries(&shim, slot), (false, false, false));
}

#[test]
fn a_locked_token_is_refused_with_a_pointer_to_recovery() {
    let fx = Fixture::with_opencryptoki();
    let (daemon, dir, shim, slot) = on_a_fresh_token(&fx, "yes\n");
    let s = shim.ctx().open_ro_session(slot).unwrap();

    // Three wrong PINs (the third confirmed by the user) lock the token.
    for _ in 0..3 {
        let rv = app_login(&s, WRONG);
        assert!(
            matches!(rv, Some(RvError::PinIncorrect | RvError::PinLocked)),
            "{rv:?}"
        );
    }
    assert!(tries(&shim, slot).2, "the token did not lock");
    let before = seen(&dir);

    // Locked: an application's PIN is refused at once, without a prompt.
    assert_eq!(app_login(&s, OCK_USER_PIN), Some(RvError::PinLocked));
    assert_eq!(
        seen(&dir),
        before,
        "the pinentry was asked for a locked token"
    );
    // A PIN-less login: no PIN is asked, the user is told why and what to do.
    let err = s.login(UserType::User, None).unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::PinLocked));
    let shown = seen(&dir)[before.len()..].to_string();
    assert!(!shown.contains("GETPIN"), "a PIN was asked: {shown}");
    assert!(shown.contains("CONFIRM --one-button"), "{shown}");
    assert!(shown.contains("đã bị khóa"), "{shown}");
    assert!(shown.contains("ask your helpdesk"), "{shown}");
    assert!(
        shown.contains(&format!("serial {}", fx.opencryptoki().serial())),
        "{shown}"
    );
    assert!(shown.contains("kyso token status"), "{shown}");
    let log = daemon.log();
    assert!(log.contains("khôi phục"), "no recovery hint in the log");
    assert!(
        log.contains("by the helpdesk"),
        "no recovery hint in the log"
    );
    let journal = std::fs::read_to_string(fx.subdir("kysod").join("state/audit.jsonl")).unwrap();
    assert!(journal.contains("\"event\":\"lockout\""), "{journal}");
}
