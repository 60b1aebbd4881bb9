//! PIN entry through a pinentry program: `C_Login` with a NULL PIN on a token offered with a
//! protected authentication path makes kysod ask a (scripted) pinentry; what it shows, cancel,
//! and a wrong PIN going back to the application without any retry.

use std::path::PathBuf;

use cryptoki::error::RvError;
use cryptoki::session::UserType;
use kyso_tests::pinentry::{assert_names_this_application, scripted_pinentry};
use kyso_tests::{rv_of, toml_str, Daemon, DaemonConfig, Fixture, Module, LABEL_A, USER_PIN};

fn start(fx: &Fixture) -> (Daemon, PathBuf) {
    let dir = fx.subdir("pinentry");
    let program = scripted_pinentry(&dir);
    let cfg = DaemonConfig {
        extra: format!("pinentry = {}\n", toml_str(&program.to_string_lossy())),
        ..Default::default()
    };
    (Daemon::start_with(fx, cfg), dir)
}

#[test]
fn null_pin_login_asks_the_pinentry() {
    let fx = Fixture::new();
    let (daemon, dir) = start(&fx);
    std::fs::write(dir.join("answer"), format!("{USER_PIN}\n")).unwrap();
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(fx.serial_a());
    let info = shim.ctx().get_token_info(slot).unwrap();
    assert!(info.protected_authentication_path());

    let s = shim.ctx().open_ro_session(slot).unwrap();
    s.login(UserType::User, None).expect("C_Login(NULL PIN)");

    let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
    assert!(seen.contains("SETDESC"), "{seen}");
    assert!(seen.contains(LABEL_A), "{seen}");
    assert!(seen.contains(fx.serial_a()), "{seen}");
    assert!(seen.contains("yêu cầu mã PIN"), "{seen}");
    assert!(seen.contains("asks for the PIN"), "{seen}");
    // The certificate holders (CN, O) whose signatures the PIN unlocks, in both languages,
    // in a stable order.
    let holders = "NGUYEN VAN A (EC), UBND Tinh Demo; NGUYEN VAN A, UBND Tinh Demo";
    assert!(seen.contains(&format!("Chứng thư số: {holders}")), "{seen}");
    assert!(seen.contains(&format!("Certificates: {holders}")), "{seen}");
    assert_names_this_application(&seen);
    assert!(seen.contains("GETPIN"), "{seen}");

    drop(s);
    drop(shim);
    let log = std::fs::read(daemon.log_path()).unwrap();
    assert!(
        !log.windows(USER_PIN.len())
            .any(|w| w == USER_PIN.as_bytes()),
        "the PIN is in kysod's log"
    );
}

#[test]
fn cancel_is_function_canceled() {
    let fx = Fixture::new();
    let (daemon, dir) = start(&fx);
    std::fs::write(dir.join("answer"), "CANCEL\n").unwrap();
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(fx.serial_a());
    let s = shim.ctx().open_ro_session(slot).unwrap();
    let err = s.login(UserType::User, None).unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::FunctionCanceled));
}

#[test]
fn wrong_pin_is_returned_once_then_right_pin_works() {
    let fx = Fixture::new();
    let (daemon, dir) = start(&fx);
    std::fs::write(dir.join("answer"), "000000\n").unwrap();
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(fx.serial_a());
    let s = shim.ctx().open_ro_session(slot).unwrap();
    let err = s.login(UserType::User, None).unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::PinIncorrect));
    // One prompt for one C_Login: kysod did not ask again on its own.
    let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
    assert_eq!(seen.matches("GETPIN").count(), 1, "{seen}");

    std::fs::write(dir.join("answer"), format!("{USER_PIN}\n")).unwrap();
    s.login(UserType::User, None).expect("second C_Login");
    let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
    assert_eq!(seen.matches("GETPIN").count(), 2, "{seen}");
}
