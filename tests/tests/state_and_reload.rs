//! kysod's state directory filling up or turning read-only under it, and its configuration
//! reloaded (SIGHUP) with good and with malformed text.
//!
//! Policy pinned here: the audit journal is the legal record of signatures, so a signature it
//! cannot record is withheld (`CKR_FUNCTION_FAILED`); the journal and the slot table stay
//! intact, and signing resumes by itself once there is room again.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use kyso_proto::audit;
use kyso_tests::util::{find_one, openssl_verify_sha256};
use kyso_tests::{login, rv_of, Daemon, Fixture, Module, ID_RSA, USER_PIN};

/// A small tmpfs mounted on a directory; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (this test needs root, as CI runs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Tmpfs {
    /// Remounts the file system read-only (`ro`) or read-write (`rw`).
    fn remount(&self, mode: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -o remount,{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A fixture whose kysod state directory is a tmpfs of `size`; `None` (the test skipped, as
/// it says) when not root.
fn state_on_tmpfs(size: &str) -> Option<(Fixture, PathBuf, Tmpfs)> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return None;
    }
    let fx = Fixture::new();
    let state = fx.subdir("kysod").join("state");
    let tmpfs = Tmpfs::mount(&state, size);
    Some((fx, state, tmpfs))
}

/// Fills the file system holding `dir` (a file `dir/filler`); returns the file's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).expect("create filler");
    let block = [0x55u8; 4096];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&block[..64]).is_ok() {}
    let _ = f.sync_all();
    path
}

fn sign(shim: &Module, fx: &Fixture, data: &[u8]) -> Result<Vec<u8>, cryptoki::error::Error> {
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    s.sign(&Mechanism::Sha256RsaPkcs, key, data)
}

fn journal_entries(state: &Path) -> usize {
    let bytes = fs::read(state.join(audit::FILE_NAME)).expect("read the audit journal");
    audit::verify_bytes(&bytes)
        .unwrap_or_else(|e| panic!("the audit journal is damaged: {e}"))
        .entries
}

fn signatures_in_journal(state: &Path) -> usize {
    fs::read_to_string(state.join(audit::FILE_NAME))
        .expect("read the audit journal")
        .lines()
        .filter(|l| l.contains("\"signature\""))
        .count()
}

#[test]
fn a_full_state_dir_withholds_unrecorded_signatures_and_damages_nothing() {
    let Some((fx, state, _tmpfs)) = state_on_tmpfs("512k") else {
        return;
    };
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);

    let sig = sign(&shim, &fx, b"room to spare").expect("C_Sign with room on disk");
    assert!(openssl_verify_sha256(
        &fx.cert_pem(1),
        b"room to spare",
        &sig
    ));
    let slots_before = fs::read(state.join("slots.toml")).expect("slots.toml");
    let entries_before = journal_entries(&state);
    let signed_before = signatures_in_journal(&state);
    assert_eq!(signed_before, 1, "the first signature is journaled");

    let filler = fill(&state);
    // The journal's last page may still hold an entry or two: those signatures are recorded
    // and handed out; the first one that finds no room is withheld.
    let mut recorded = 0;
    let e = loop {
        match sign(&shim, &fx, b"no room") {
            Ok(_) => recorded += 1,
            Err(e) => break e,
        }
        assert!(
            recorded < 40,
            "signatures go on being handed out on a full disk"
        );
    };
    eprintln!("full disk: {recorded} signature(s) still fitted in the journal's last page");
    assert_eq!(rv_of(&e), Some(RvError::FunctionFailed), "{e}");
    assert!(
        daemon.log().contains("withheld"),
        "kysod did not say why the signature failed"
    );
    // Nothing damaged, nothing half-written: the chain verifies and has no new signature.
    assert_eq!(
        fs::read(state.join("slots.toml")).expect("slots.toml"),
        slots_before
    );
    assert!(journal_entries(&state) >= entries_before);
    assert_eq!(signatures_in_journal(&state), signed_before + recorded);

    // kysod keeps serving meanwhile (calls that need no journal entry).
    let s = shim.session(fx.serial_a());
    assert!(s.generate_random_vec(16).is_ok());

    fs::remove_file(filler).expect("free the disk");
    let sig = sign(&shim, &fx, b"room again").expect("C_Sign once there is room");
    assert!(openssl_verify_sha256(&fx.cert_pem(1), b"room again", &sig));
    assert_eq!(signatures_in_journal(&state), signed_before + recorded + 1);
    journal_entries(&state);
}

#[test]
fn a_read_only_state_dir_withholds_signatures_and_signing_resumes_when_writable() {
    let Some((fx, state, tmpfs)) = state_on_tmpfs("4m") else {
        return;
    };
    let mut daemon = Daemon::start(&fx);
    {
        let shim = Module::shim(&daemon);
        sign(&shim, &fx, b"writable").expect("C_Sign on a writable state directory");
    }
    let slots_before = fs::read(state.join("slots.toml")).expect("slots.toml");
    let entries_before = journal_entries(&state);

    // The state directory is read-only when kysod starts (a file system mounted read-only
    // after an error, say; Linux refuses to remount it under a kysod writing to it).
    assert!(daemon.terminate(), "kysod did not stop");
    tmpfs.remount("ro");
    daemon.restart();
    let shim = Module::shim(&daemon);
    let e = sign(&shim, &fx, b"read-only").expect_err("a signature left unrecorded");
    assert_eq!(rv_of(&e), Some(RvError::FunctionFailed), "{e}");
    let log = daemon.log();
    assert!(log.contains("withheld"), "kysod did not say why: {log}");
    assert!(
        log.contains("Read-only file system"),
        "the log does not name the cause: {log}"
    );
    // Other calls go on, and nothing was changed on disk.
    let s = shim.session(fx.serial_a());
    assert!(s.generate_random_vec(16).is_ok());
    drop(s);
    assert_eq!(
        fs::read(state.join("slots.toml")).expect("slots.toml"),
        slots_before
    );
    assert_eq!(journal_entries(&state), entries_before);

    // Writable again: signing resumes without a restart, on the same chain.
    tmpfs.remount("rw");
    let sig = sign(&shim, &fx, b"writable again").expect("C_Sign once writable again");
    assert!(openssl_verify_sha256(
        &fx.cert_pem(1),
        b"writable again",
        &sig
    ));
    assert!(journal_entries(&state) > entries_before);
}

/// Sends SIGHUP to kysod and waits for the log line saying how the reload went.
fn reload(daemon: &Daemon, expect: &str) {
    let seen = daemon.log().matches(expect).count();
    let pid = daemon.pid().expect("kysod running") as libc::pid_t;
    // SAFETY: kill(2) on the daemon child's pid, which the harness has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let start = Instant::now();
    while daemon.log().matches(expect).count() == seen {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "kysod did not log {expect:?} after SIGHUP; its log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_run_time_settings_and_a_malformed_file_changes_nothing() {
    let fx = Fixture::new();
    let dir = fx.subdir("pinentry");
    let pinentry = kyso_tests::pinentry::scripted_pinentry(&dir);
    // The user confirms the loosening below.
    fs::write(dir.join("answer"), "yes\n").unwrap();
    let mut daemon = Daemon::start_with(
        &fx,
        kyso_tests::DaemonConfig {
            extra: format!(
                "pinentry = {}\n",
                kyso_tests::toml_str(&pinentry.to_string_lossy())
            ),
            ..Default::default()
        },
    );
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(fx.serial_a());
    let protected = || {
        shim.ctx()
            .get_token_info(slot)
            .expect("C_GetTokenInfo")
            .protected_authentication_path()
    };
    assert!(protected(), "the default offers a protected path");
    let original = fs::read_to_string(daemon.config_path()).expect("config");

    let tightened =
        format!("{original}\n[pin]\nprotected_path = false\n\n[limits]\nsessions_per_client = 2\n");
    fs::write(daemon.config_path(), &tightened).expect("write config");
    reload(&daemon, "configuration reloaded");
    assert!(!protected(), "[pin] protected_path = false not in force");
    let seen = fs::read_to_string(dir.join("seen")).unwrap_or_default();
    assert!(
        seen.contains("CONFIRM") && seen.contains("protected_path"),
        "the loosening was not put to the user: {seen}"
    );
    let first = shim.session(fx.serial_a());
    let second = shim.session(fx.serial_a());
    let e = shim
        .ctx()
        .open_ro_session(slot)
        .expect_err("a third session beyond sessions_per_client = 2");
    assert_eq!(rv_of(&e), Some(RvError::SessionCount));
    drop(second);

    // A file that does not parse: the running configuration stays in force.
    fs::write(
        daemon.config_path(),
        format!("{tightened}\n[limits]\nsessions_per_client = \"many\"\n"),
    )
    .expect("write config");
    reload(&daemon, "configuration NOT reloaded");
    assert!(
        daemon.is_running(),
        "kysod died of a malformed configuration"
    );
    assert!(!protected(), "a malformed reload changed the PIN setting");
    let _second = shim.session(fx.serial_a());
    let e = shim
        .ctx()
        .open_ro_session(slot)
        .expect_err("the session limit was lost on a malformed reload");
    assert_eq!(rv_of(&e), Some(RvError::SessionCount));
    login(&first, USER_PIN).expect("C_Login after a malformed reload");
    let key = find_one(&first, ObjectClass::PRIVATE_KEY, ID_RSA);
    let sig = first
        .sign(&Mechanism::Sha256RsaPkcs, key, b"still serving")
        .expect("C_Sign after a malformed reload");
    assert!(openssl_verify_sha256(
        &fx.cert_pem(1),
        b"still serving",
        &sig
    ));

    // What is read only at start is reported, not applied; the run-time part still is.
    fs::write(
        daemon.config_path(),
        original.replace("log = \"debug\"", "log = \"trace\""),
    )
    .expect("write config");
    reload(&daemon, "configuration reloaded");
    assert!(protected(), "the restored default is not in force");
    assert!(daemon
        .log()
        .lines()
        .any(|l| l.contains("takes effect when kysod restarts") && l.contains("log")));
}

/// A state or socket directory that other users may write (a misconfiguration another user
/// could exploit with planted links or files) is refused at start with a clear message.
#[test]
fn a_state_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let root = fx.subdir("shared-state");
    for (name, state_mode, run_mode, complaint) in [
        ("state", 0o777, 0o700, "state directory"),
        ("socket", 0o700, 0o775, "socket directory"),
    ] {
        let state = root.join(format!("{name}-state"));
        let run = root.join(format!("{name}-run"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(state_mode)).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(run_mode)).unwrap();
        let config = root.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "socket = {}\nstate_dir = {}\n",
                kyso_tests::toml_str(&run.join("kysod.sock").to_string_lossy()),
                kyso_tests::toml_str(&state.to_string_lossy())
            ),
        )
        .unwrap();
        let out = std::process::Command::new(kyso_tests::kysod_path())
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run kysod");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(complaint) && stderr.contains("may be written by other users"),
            "{name}: {stderr}"
        );
        assert!(!run.join("kysod.sock").exists(), "{name}: kysod listened");
    }
}

/// A program of the user's appends `[pin] share_login_seconds = 86400` to the user's file and
/// sends SIGHUP: the loosening is put to the user, who did not make it, and nothing changes.
/// An administrator's file binds the same settings: the user's file cannot loosen them at all.
#[test]
fn a_loosening_nobody_confirmed_is_not_reloaded_and_the_administrator_binds() {
    let fx = Fixture::new();
    let dir = fx.subdir("pinentry");
    let pinentry = kyso_tests::pinentry::scripted_pinentry(&dir);
    fs::write(dir.join("answer"), "no\n").unwrap();
    let daemon = Daemon::start_with(
        &fx,
        kyso_tests::DaemonConfig {
            extra: format!(
                "pinentry = {}\n",
                kyso_tests::toml_str(&pinentry.to_string_lossy())
            ),
            ..Default::default()
        },
    );
    let original = fs::read_to_string(daemon.config_path()).expect("config");
    fs::write(
        daemon.config_path(),
        format!("{original}\n[pin]\nshare_login_seconds = 86400\n"),
    )
    .unwrap();
    reload(&daemon, "configuration NOT reloaded");
    assert!(
        daemon.log().contains("share_login_seconds: 0 → 86400"),
        "{}",
        daemon.log()
    );
    let seen = fs::read_to_string(dir.join("seen")).unwrap_or_default();
    assert!(seen.contains("CONFIRM"), "{seen}");
    drop(daemon);

    // The administrator's file: the user's cannot loosen what it sets.
    let admin = fx.subdir("etc").join("kysod.toml");
    fs::write(
        &admin,
        format!(
            "pinentry = {}\n[pin]\nshare_login_seconds = 0\n[policy]\nconfirm_organisation = true\n",
            kyso_tests::toml_str(&pinentry.to_string_lossy())
        ),
    )
    .unwrap();
    let user = fx.subdir("user").join("kysod.toml");
    fs::write(
        &user,
        format!(
            "socket = {}\nstate_dir = {}\npinentry = \"/tmp/another-pinentry\"\n[pin]\nshare_login_seconds = 86400\n[policy]\nconfirm_organisation = false\n",
            kyso_tests::toml_str(&fx.subdir("user").join("kysod.sock").to_string_lossy()),
            kyso_tests::toml_str(&fx.subdir("user").join("state").to_string_lossy())
        ),
    )
    .unwrap();
    let mut kysod = std::process::Command::new(kyso_tests::kysod_path())
        .arg("--config")
        .arg(&user)
        .arg("--admin-config")
        .arg(&admin)
        .env("SOFTHSM2_CONF", fx.softhsm_conf())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kysod");
    let mut log = String::new();
    let mut err = std::io::BufReader::new(kysod.stderr.take().unwrap());
    while !log.contains("kysod ready") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut err, &mut line).unwrap_or(0) == 0 {
            break;
        }
        log.push_str(&line);
    }
    let _ = kysod.kill();
    let _ = kysod.wait();
    for setting in [
        "pinentry",
        "pin.share_login_seconds",
        "policy.confirm_organisation",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("the administrator's is in force") && l.contains(setting)),
            "{setting} not held:\n{log}"
        );
    }
}
