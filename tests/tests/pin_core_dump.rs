//! The PIN leaves no trace in kysod: after a login through the pinentry, a login with a PIN
//! the application supplied, and signatures, a core dump of the running kysod (`gcore`), its
//! log and its state directory hold the PIN's bytes nowhere (neither as ASCII/UTF-8 nor as
//! UTF-16).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use kyso_tests::pinentry::scripted_pinentry;
use kyso_tests::util::{find_one, pkcs11_tool, run};
use kyso_tests::{toml_str, Daemon, DaemonConfig, Fixture, Module, ID_RSA, LABEL_A, USER_PIN};

/// A PIN unlikely to occur in memory by chance.
const PIN: &str = "Qx7#vK2m9Lz4";

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Where `needle` occurs in `hay` (offsets), ASCII and UTF-16LE.
fn occurrences(hay: &[u8], needle: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (form, bytes) in [
        ("ascii", needle.as_bytes().to_vec()),
        ("utf-16", utf16le(needle)),
    ] {
        found.extend(memchr::memmem::find_iter(hay, &bytes).map(|i| (i, form)));
    }
    found
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_pin_is_not_in_a_core_dump_of_kysod_nor_its_log_and_state() {
    let fx = Fixture::new();
    // The token gets a distinctive PIN first (SoftHSM2 directly, not through kysod).
    std::env::set_var("SOFTHSM2_CONF", fx.softhsm_conf());
    let out = pkcs11_tool(
        fx.softhsm_module(),
        &[
            "--token-label",
            LABEL_A,
            "--login",
            "--pin",
            USER_PIN,
            "--change-pin",
            "--new-pin",
            PIN,
        ],
    );
    assert!(out.status.success(), "{}", out.text());

    let dir = fx.subdir("pinentry");
    let program = scripted_pinentry(&dir);
    std::fs::write(dir.join("answer"), format!("{PIN}\n")).unwrap();
    let cfg = DaemonConfig {
        extra: format!("pinentry = {}\n", toml_str(&program.to_string_lossy())),
        ..Default::default()
    };
    let daemon = Daemon::start_with(&fx, cfg);
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(fx.serial_a());
    let s = shim.ctx().open_rw_session(slot).unwrap();

    // A login through the pinentry, a signature.
    s.login(UserType::User, None).expect("C_Login(NULL PIN)");
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    s.sign(&Mechanism::Sha256RsaPkcs, key, b"first document")
        .expect("C_Sign");
    // A wrong PIN supplied by the application: it is as secret as the right one.
    s.logout().unwrap();
    assert!(s
        .login(UserType::User, Some(&AuthPin::new("Wz3$wrong8".into())))
        .is_err());
    // A login with the PIN supplied by the application, a signature.
    s.login(UserType::User, Some(&AuthPin::new(PIN.into())))
        .expect("C_Login(PIN)");
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    s.sign(&Mechanism::Sha256RsaPkcs, key, b"second document")
        .expect("C_Sign");

    // The dump is taken while the application is still connected and logged in.
    let pid = daemon.pid().expect("kysod running");
    let work = tempfile::tempdir().unwrap();
    let prefix = work.path().join("core");
    let out = run(
        Command::new("gcore")
            .arg("-o")
            .arg(&prefix)
            .arg(pid.to_string()),
        Duration::from_secs(120),
    );
    let core_path = work.path().join(format!("core.{pid}"));
    assert!(
        out.status.success() && core_path.exists(),
        "gcore failed (it needs ptrace rights over kysod): {}",
        out.text()
    );
    let core = std::fs::read(&core_path).unwrap();
    assert!(core.len() > 1 << 20, "a suspiciously small core dump");
    // The search finds what kysod does hold: the token's label and serial.
    assert!(!occurrences(&core, LABEL_A).is_empty());
    assert!(!occurrences(&core, fx.serial_a()).is_empty());
    for needle in [PIN, "Wz3$wrong8"] {
        let found = occurrences(&core, needle);
        assert!(
            found.is_empty(),
            "the PIN {needle:?} is in kysod's memory at {found:?}"
        );
    }

    drop(s);
    drop(shim);
    let mut files = vec![daemon.log_path().to_path_buf()];
    files_under(&fx.subdir("kysod").join("state"), &mut files);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            occurrences(&bytes, PIN).is_empty(),
            "the PIN is in {}",
            f.display()
        );
    }
}

/// kysod is kept from the user's other programs: it is not dumpable, so another program of
/// the same user can neither trace it nor read its memory or environment, and it writes no
/// core file. Checked with kysod and the reader running as uid 65534; a dumpable process of
/// that user is readable the same way, which shows the check can tell.
#[test]
fn kysod_cannot_be_traced_or_read_by_the_users_other_programs() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: needs root to run kysod and its neighbour as uid 65534");
        return;
    }
    let fx = Fixture::new();
    // A kysod of uid 65534 with no tokens: its own copy, configuration and directory.
    let dir = fx.subdir("nobody");
    let kysod = dir.join("kysod");
    std::fs::copy(kyso_tests::kysod_path(), &kysod).expect("copy kysod");
    let config = dir.join("kysod.toml");
    std::fs::write(
        &config,
        format!(
            "socket = {}\nstate_dir = {}\n",
            toml_str(&dir.join("kysod.sock").display().to_string()),
            toml_str(&dir.join("state").display().to_string())
        ),
    )
    .unwrap();
    for (p, mode) in [
        (fx.dir(), 0o755),
        (&dir, 0o755),
        (&kysod, 0o755),
        (&config, 0o644),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let as_nobody = |program: &std::path::Path| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program)
            .env_clear()
            .env("HOME", &dir);
        c
    };
    let mut daemon = as_nobody(&kysod)
        .arg("--config")
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start kysod as uid 65534");
    let mut neighbour = as_nobody(std::path::Path::new("/bin/sleep"))
        .arg("30")
        .spawn()
        .expect("sleep as uid 65534");
    std::thread::sleep(Duration::from_millis(500));
    let reads = |pid: u32| {
        as_nobody(std::path::Path::new("/bin/cat"))
            .arg(format!("/proc/{pid}/environ"))
            .output()
            .expect("cat")
            .status
            .success()
    };
    let (kysod_pid, neighbour_pid) = (daemon.id(), neighbour.id());
    let neighbour_read = reads(neighbour_pid);
    let kysod_read = reads(kysod_pid);
    // A strace that attached would wait for kysod's calls: `timeout` ends it.
    let traced = as_nobody(std::path::Path::new("/usr/bin/timeout"))
        .args([
            "5",
            "strace",
            "-e",
            "trace=none",
            "-p",
            &kysod_pid.to_string(),
        ])
        .output()
        .expect("strace");
    // The /proc files of a process that is not dumpable belong to root.
    let owner = std::fs::metadata(format!("/proc/{kysod_pid}/status"))
        .expect("kysod's status")
        .uid();
    let limits = std::fs::read_to_string(format!("/proc/{kysod_pid}/limits")).expect("limits");
    let _ = neighbour.kill();
    let _ = daemon.kill();
    let _ = (neighbour.wait(), daemon.wait());

    assert!(
        neighbour_read,
        "a dumpable process of uid 65534 could not be read either"
    );
    assert!(
        !kysod_read,
        "kysod's environment was read by another program of its user"
    );
    assert!(!traced.status.success(), "kysod was traced");
    assert!(
        String::from_utf8_lossy(&traced.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&traced.stderr)
    );
    assert_eq!(owner, 0, "kysod is dumpable");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit");
    assert_eq!(
        core.split_whitespace().nth(4),
        Some("0"),
        "kysod may write core files: {core}"
    );
}
