//! A token that says its user PIN must be changed (`CKF_USER_PIN_TO_BE_CHANGED`): after the
//! login kysod asks a new PIN twice (within the token's length limits) and sets it before the
//! application may go on; a cancelled change leaves the application logged out and the PIN as
//! it was.
//!
//! Neither SoftHSM2 nor Debian 12's opencryptoki soft token ever raises the flag by itself
//! (opencryptoki only flags the default SO PIN; SoftHSM2 keeps whatever token flags its token
//! file holds), so the test sets it in the SoftHSM2 token's stored flags before kysod starts:
//! the module itself then reports it, as a token issued with a transport PIN does.

use std::path::{Path, PathBuf};

use cryptoki::error::RvError;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki_sys::CKF_USER_PIN_TO_BE_CHANGED;
use kyso_tests::pinentry::scripted_pinentry;
use kyso_tests::util::pkcs11_tool;
use kyso_tests::{rv_of, toml_str, Daemon, DaemonConfig, Fixture, Module, LABEL_A, USER_PIN};

const NEW_PIN: &str = "24681357";
/// SoftHSM2's stored token flags (`CKA_OS_TOKENFLAGS`, vendor-defined 0x8000534b), as its
/// object file writes the attribute: type, value kind "unsigned long", value (big endian).
const TOKEN_FLAGS_ATTRIBUTE: [u8; 16] = [0, 0, 0, 0, 0x80, 0, 0x53, 0x4b, 0, 0, 0, 0, 0, 0, 0, 2];

/// Sets `CKF_USER_PIN_TO_BE_CHANGED` in the stored flags of the fixture token labelled `label`.
fn flag_user_pin_to_be_changed(fx: &Fixture, label: &str) {
    let tokens = fx.dir().join("tokens");
    for entry in std::fs::read_dir(&tokens).unwrap() {
        let path = entry.unwrap().path().join("token.object");
        let Ok(mut bytes) = std::fs::read(&path) else {
            continue;
        };
        if !bytes.windows(label.len()).any(|w| w == label.as_bytes()) {
            continue;
        }
        let at = bytes
            .windows(TOKEN_FLAGS_ATTRIBUTE.len())
            .position(|w| w == TOKEN_FLAGS_ATTRIBUTE)
            .expect("token flags in the token file")
            + TOKEN_FLAGS_ATTRIBUTE.len();
        let value = &mut bytes[at..at + 8];
        let flags = u64::from_be_bytes(value.try_into().unwrap()) | CKF_USER_PIN_TO_BE_CHANGED;
        value.copy_from_slice(&flags.to_be_bytes());
        std::fs::write(&path, bytes).unwrap();
        return;
    }
    panic!("no token file for {label} in {}", tokens.display());
}

fn start(fx: &Fixture, answers: &[&str]) -> (Daemon, PathBuf) {
    flag_user_pin_to_be_changed(fx, LABEL_A);
    let dir = fx.subdir("pinentry");
    let program = scripted_pinentry(&dir);
    std::fs::write(dir.join("answer"), answers.join("\n") + "\n").unwrap();
    let cfg = DaemonConfig {
        extra: format!("pinentry = {}\n", toml_str(&program.to_string_lossy())),
        ..Default::default()
    };
    (Daemon::start_with(fx, cfg), dir)
}

/// Whether `pin` logs in to the token with SoftHSM2 directly (another process).
fn token_accepts(fx: &Fixture, pin: &str) -> bool {
    std::env::set_var("SOFTHSM2_CONF", fx.softhsm_conf());
    let out = pkcs11_tool(
        fx.softhsm_module(),
        &["--token-label", LABEL_A, "--login", "--pin", pin, "-O"],
    );
    out.status.success()
}

fn seen(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("seen")).unwrap_or_default()
}

#[test]
fn a_pin_to_be_changed_is_changed_right_after_login() {
    let fx = Fixture::new();
    // The current PIN, a new PIN too short for the token (4–255), then the new PIN twice.
    let (daemon, dir) = start(&fx, &[USER_PIN, "12", NEW_PIN, NEW_PIN]);
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(fx.serial_a());
    assert!(shim
        .ctx()
        .get_token_info(slot)
        .unwrap()
        .user_pin_to_be_changed());

    let s = shim.ctx().open_ro_session(slot).unwrap();
    s.login(UserType::User, None).expect("C_Login(NULL PIN)");
    let shown = seen(&dir);
    assert_eq!(shown.matches("GETPIN").count(), 4, "{shown}");
    assert!(shown.contains("yêu cầu đổi mã PIN"), "{shown}");
    assert!(shown.contains("requires a new PIN"), "{shown}");
    assert!(shown.contains("new PIN again"), "{shown}");
    assert!(
        shown.contains("The new PIN must have 4–255 characters"),
        "{shown}"
    );
    // Logged in: the private key is there.
    let keys = s
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap();
    assert!(!keys.is_empty());
    drop(s);
    drop(shim);

    assert!(token_accepts(&fx, NEW_PIN), "the new PIN was not set");
    assert!(!token_accepts(&fx, USER_PIN), "the old PIN still works");
}

#[test]
fn a_cancelled_change_leaves_the_application_logged_out() {
    let fx = Fixture::new();
    let (daemon, dir) = start(&fx, &[USER_PIN, "CANCEL"]);
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(fx.serial_a());
    let s = shim.ctx().open_ro_session(slot).unwrap();
    let err = s.login(UserType::User, None).unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::FunctionCanceled));
    assert_eq!(seen(&dir).matches("GETPIN").count(), 2);
    // Nothing else is allowed: not logged in, no private objects.
    let keys = s
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap();
    assert!(
        keys.is_empty(),
        "private objects after a refused PIN change"
    );
    let info = s.get_session_info().unwrap();
    assert_eq!(
        info.session_state(),
        cryptoki::session::SessionState::RoPublic
    );
    drop(s);
    drop(shim);
    assert!(token_accepts(&fx, USER_PIN), "the PIN changed anyway");
}
