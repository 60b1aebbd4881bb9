//! kysod started the way systemd's socket unit starts it: the listening socket is passed in
//! (`LISTEN_FDS`), kysod creates none of its own, and applications reach it through the shim.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kyso_tests::util::pkcs11_tool;
use kyso_tests::{kysod_path, shim_path, Fixture, LABEL_A, SOFTHSM_MODULE};

#[test]
fn kysod_serves_a_socket_passed_by_systemd() {
    if Command::new("systemd-socket-activate")
        .arg("--help")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("SKIP: systemd-socket-activate not installed");
        return;
    }
    let fx = Fixture::new();
    let dir = fx.subdir("activation");
    let passed = dir.join("passed.sock");
    let own = dir.join("own.sock");
    let config = dir.join("kysod.toml");
    fs::write(
        &config,
        format!(
            "socket = \"{}\"\nstate_dir = \"{}\"\n[[module]]\npath = \"{SOFTHSM_MODULE}\"\nalways_present = true\n",
            own.display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&passed)
        // It hands the service only the environment it is told to, as systemd does.
        .arg("-E")
        .arg(format!("SOFTHSM2_CONF={}", fx.softhsm_conf().display()))
        .arg(kysod_path())
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("kysod.log")).unwrap())
        .spawn()
        .expect("start systemd-socket-activate");
    let t = Instant::now();
    while !passed.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }

    // The first connection starts kysod with the socket; the shim lists the token through it.
    std::env::set_var("KYSO_SOCKET", &passed);
    let out = pkcs11_tool(&shim_path(), &["-L"]);
    let log = fs::read_to_string(dir.join("kysod.log")).unwrap_or_default();
    let _ = activator.kill();
    let _ = activator.wait();
    assert!(
        out.stdout.contains(LABEL_A),
        "token not listed through the passed socket:\n{}\n{log}",
        out.text()
    );
    assert!(out.stdout.contains(fx.serial_a()), "{}", out.text());
    assert!(
        !own.exists(),
        "kysod created a socket of its own beside the passed one"
    );
    assert!(
        log.contains("from systemd"),
        "kysod did not say it took the socket from systemd:\n{log}"
    );
}
