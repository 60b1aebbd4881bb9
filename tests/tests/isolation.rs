//! Login is per client, and only the daemon's own user may connect.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use cryptoki::object::{Attribute, ObjectClass};
use kyso_tests::util::{pkcs11_tool, run};
use kyso_tests::{shim_path, Daemon, Fixture, Module, LABEL_A, USER_PIN};

fn private_keys(s: &cryptoki::session::Session) -> usize {
    s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .expect("C_FindObjects")
        .len()
}

#[test]
fn a_client_that_has_not_logged_in_sees_no_private_objects() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    // Client A: this process, logged in.
    let shim = Module::shim(&daemon);
    let a = shim.user_session(fx.serial_a());
    assert_eq!(private_keys(&a), 2);

    // Client B: another process, no login, while A stays logged in.
    let b = pkcs11_tool(&shim_path(), &["--token-label", LABEL_A, "-O"]);
    assert!(b.status.success(), "{}", b.text());
    assert!(b.stdout.contains("Certificate Object"), "{}", b.text());
    assert!(b.stdout.contains("Public Key Object"), "{}", b.text());
    assert!(
        !b.stdout.contains("Private Key Object"),
        "B sees A's login:\n{}",
        b.text()
    );

    // B logging in itself does see them (so their absence above was the login, not the listing).
    let b2 = pkcs11_tool(
        &shim_path(),
        &["--token-label", LABEL_A, "-O", "--login", "--pin", USER_PIN],
    );
    assert!(b2.status.success(), "{}", b2.text());
    assert_eq!(
        b2.stdout.matches("Private Key Object").count(),
        2,
        "{}",
        b2.text()
    );

    // B has gone (and logged out, or just disconnected): A is still logged in.
    assert_eq!(private_keys(&a), 2);
    let key = kyso_tests::util::find_one(&a, ObjectClass::PRIVATE_KEY, kyso_tests::ID_RSA);
    a.sign(
        &cryptoki::mechanism::Mechanism::Sha256RsaPkcs,
        key,
        b"still here",
    )
    .expect("A can still sign");

    // And a fresh session of A shares A's login, a new B still does not.
    let a2 = shim.session(fx.serial_a());
    assert_eq!(private_keys(&a2), 2);
    let b3 = pkcs11_tool(&shim_path(), &["--token-label", LABEL_A, "-O"]);
    assert!(!b3.stdout.contains("Private Key Object"), "{}", b3.text());
}

#[test]
fn another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP another_user_is_refused: needs root to switch to uid 65534");
        return;
    }
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    daemon.open_socket_to_everyone();

    // A copy of the shim that uid 65534 can load.
    let lib = fx.subdir("lib");
    let shim = lib.join("libkyso_pkcs11.so");
    fs::copy(shim_path(), &shim).expect("copy the shim");
    for p in [fx.dir(), lib.as_path(), shim.as_path()] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    let out = run(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "pkcs11-tool",
            ])
            .arg("--module")
            .arg(&shim)
            .arg("-L")
            .env("KYSO_SOCKET", daemon.socket()),
        Duration::from_secs(30),
    );
    let text = out.text();
    assert!(
        !text.contains(fx.serial_a()),
        "uid 65534 saw the token:\n{text}"
    );
    assert!(!text.contains(LABEL_A), "uid 65534 saw the token:\n{text}");
    // It got no slots or an error, not a hang (run() has a deadline) and not a crash.
    assert!(
        !out.status.success() || text.contains("No slots") || !text.contains("Slot 0"),
        "{text}"
    );
    assert!(
        out.status.code().is_some(),
        "pkcs11-tool died from a signal:\n{text}"
    );

    // The refusal is logged, naming the uid.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !daemon.log().contains("65534") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        daemon.log().contains("65534"),
        "no refusal logged:\n{}",
        daemon.log()
    );

    // The owner is still served.
    let me = Module::shim(&daemon);
    let s = me.session(fx.serial_a());
    assert!(s.get_session_info().is_ok());
}
