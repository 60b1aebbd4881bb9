//! What a program running as the token's owner (malware on the workstation) tries against
//! recovery, on SoftHSM2 tokens, and how each attempt fails: opening a grant and forging a
//! receipt with what kysod's state directory holds, applying one grant twice at once, and
//! posing as kysod on the socket. (The SO PIN lockout is in `recovery_locked.rs`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cryptoki::error::RvError;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use kyso_tests::recovery::{kyso, kysod_trusting, pins_asked, token_status, Helpdesk};
use kyso_tests::util::run;
use kyso_tests::{
    rv_of, shim_path, target_dir, Daemon, DaemonConfig, Fixture, Module, SO_PIN, USER_PIN,
};

const NEW_PIN: &str = "24681357";

fn direct_login(fx: &Fixture, serial: &str, user: UserType, pin: &str) -> Option<RvError> {
    let m = Module::softhsm(fx);
    let s = m
        .ctx()
        .open_rw_session(m.slot_with_serial(serial))
        .expect("C_OpenSession");
    s.login(user, Some(&AuthPin::new(pin.into())))
        .err()
        .and_then(|e| rv_of(&e))
}

/// `kyso recover request` for `serial` into `out`.
fn request(daemon: &Daemon, serial: &str, out: &Path) {
    let o = kyso(
        daemon,
        &[
            "recover",
            "request",
            "--token",
            serial,
            "--out",
            &out.to_string_lossy(),
        ],
    );
    assert!(o.status.success(), "recover request: {}", o.text());
}

fn approve(h: &Helpdesk, req: &Path, out: &Path) {
    let o = h.run(&[
        "approve",
        req.to_str().unwrap(),
        "--case",
        "17/UBND-VP",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "approve: {}", o.text());
}

/// `kyso recover apply GRANT --out OUT`, started, not waited for.
fn spawn_apply(daemon: &Daemon, grant: &Path, out: &Path) -> std::process::Child {
    Command::new(target_dir().join("kyso"))
        .args(["recover", "apply"])
        .arg(grant)
        .arg("--out")
        .arg(out)
        .arg("--socket")
        .arg(daemon.socket())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kyso recover apply")
}

fn files_under(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            files_under(&e.path(), out);
        }
    } else if p.is_file() {
        out.push(p.to_path_buf());
    }
}

/// Every 32-byte value an attacker could take for a key from `bytes`: in a binary file each
/// raw 32-byte window, in a text file each base64 or hex word that decodes to 32 bytes.
fn key_candidates(bytes: &[u8]) -> Vec<[u8; 32]> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bytes
            .windows(32)
            .map(|w| w.try_into().expect("32 bytes"))
            .collect();
    };
    let mut keys = Vec::new();
    let word = |c: char| c.is_ascii_alphanumeric() || "+/=_-".contains(c);
    for w in text.split(|c: char| !word(c)).filter(|w| w.len() >= 43) {
        let decoded = [
            kyso_recovery::artefact::decode_b64(w, "key").ok(),
            kyso_proto::hex::decode(w),
        ];
        keys.extend(
            decoded
                .into_iter()
                .flatten()
                .filter_map(|k| <[u8; 32]>::try_from(k).ok()),
        );
    }
    keys
}

#[test]
fn the_state_directory_opens_no_grant_and_forges_no_receipt() {
    let fx = Fixture::new();
    let serial = fx.serial_a().to_string();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(&serial, SO_PIN);
    let (daemon, _dir) = kysod_trusting(
        &fx,
        DaemonConfig::default(),
        &h,
        &format!("{NEW_PIN}\n{NEW_PIN}\n"),
    );
    let d = fx.subdir("files");
    let (req, grant, receipt) = (
        d.join("req.json"),
        d.join("grant.json"),
        d.join("receipt.json"),
    );
    request(&daemon, &serial, &req);
    approve(&h, &req, &grant);

    // The attacker runs as the user: it reads everything kysod keeps on disk.
    let state = fx.dir().join("kysod");
    assert!(
        !state.join("state/recovery/requests").exists(),
        "no request key is written to the state directory"
    );
    let mut files = Vec::new();
    files_under(&state, &mut files);
    assert!(!files.is_empty());
    let request_bytes = std::fs::read(&req).unwrap();
    let g = kyso_recovery::parse_grant(&std::fs::read(&grant).unwrap()).unwrap();
    let trusted =
        [
            kyso_recovery::grant::parse_verifying_key(&std::fs::read_to_string(&h.pubkey).unwrap())
                .unwrap(),
        ];
    let sha256 = kyso_recovery::sha256_hex(&request_bytes);
    let mut tried = 0;
    for f in &files {
        for key in key_candidates(&std::fs::read(f).unwrap_or_default()) {
            tried += 1;
            let made = kyso_recovery::grant::Made {
                serial: &serial,
                sha256: &sha256,
                private_key: &key,
            };
            assert!(
                kyso_recovery::grant::open(&g, &trusted, &made, kyso_recovery::now()).is_err(),
                "the grant opens with a key read from {}",
                f.display()
            );
        }
    }
    assert!(tried > 0, "the state directory was searched");

    // Without the receipt key, a receipt claiming the rotation does not verify.
    let forged = kyso_recovery::receipt::make(
        &kyso_recovery::random::<32>(),
        &serial,
        &g.body.nonce,
        &g.body.digest(),
    );
    let forged_file = d.join("forged.json");
    std::fs::write(&forged_file, serde_json::to_vec_pretty(&forged).unwrap()).unwrap();
    let out = h.run(&["close", forged_file.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", out.text());
    assert!(out.stderr.contains("does not verify"), "{}", out.text());

    // kysod itself still applies the grant, and its receipt closes the case.
    let out = kyso(
        &daemon,
        &[
            "recover",
            "apply",
            grant.to_str().unwrap(),
            "--out",
            receipt.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "apply: {}", out.text());
    let out = h.run(&["close", receipt.to_str().unwrap()]);
    assert!(out.status.success(), "close: {}", out.text());
    assert_eq!(direct_login(&fx, &serial, UserType::User, NEW_PIN), None);
}

#[test]
fn a_request_lasts_until_kysod_stops() {
    let fx = Fixture::new();
    let serial = fx.serial_a().to_string();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(&serial, SO_PIN);
    let answers = format!("{NEW_PIN}\n{NEW_PIN}\n");
    let (daemon, dir) = kysod_trusting(&fx, DaemonConfig::default(), &h, &answers);
    let d = fx.subdir("files");
    let (req, grant) = (d.join("req.json"), d.join("grant.json"));
    request(&daemon, &serial, &req);
    approve(&h, &req, &grant);
    drop(daemon);
    let (daemon, _) = kysod_trusting(&fx, DaemonConfig::default(), &h, &answers);
    let out = kyso(
        &daemon,
        &[
            "recover",
            "apply",
            grant.to_str().unwrap(),
            "--out",
            d.join("receipt.json").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "{}", out.text());
    assert!(out.stderr.contains("kysod was restarted"), "{}", out.text());
    assert_eq!(pins_asked(&dir), 0, "nothing was asked");
    assert_eq!(direct_login(&fx, &serial, UserType::User, USER_PIN), None);
}

#[test]
fn two_applies_of_one_grant_at_once_spend_no_so_try() {
    let fx = Fixture::new();
    let serial = fx.serial_a().to_string();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(&serial, SO_PIN);
    let (daemon, dir) = kysod_trusting(&fx, DaemonConfig::default(), &h, &format!("{NEW_PIN}\n"));
    let d = fx.subdir("files");
    let (req, grant) = (d.join("req.json"), d.join("grant.json"));
    request(&daemon, &serial, &req);
    approve(&h, &req, &grant);

    let first = spawn_apply(&daemon, &grant, &d.join("r1.json"));
    let second = spawn_apply(&daemon, &grant, &d.join("r2.json"));
    let outcomes: Vec<(bool, String)> = [first, second]
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("kyso recover apply ends");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect();
    let applied = outcomes.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(applied, 1, "exactly one apply succeeds: {outcomes:?}");
    let (_, refusal) = outcomes.iter().find(|(ok, _)| !ok).unwrap();
    assert!(
        refusal.contains("already used") || refusal.contains("being applied"),
        "{refusal}"
    );
    assert_eq!(pins_asked(&dir), 2, "only one apply asked for the new PIN");
    // SoftHSM2 flags a wrong SO PIN with COUNT_LOW: none was tried.
    let t = token_status(&daemon, &serial);
    assert_eq!(t["so_pin_count_low"], false, "an SO try was spent: {t}");
    assert_eq!(direct_login(&fx, &serial, UserType::User, NEW_PIN), None);
}

/// A listener on `socket` running as uid 65534 that records every byte it is sent in
/// `record`; killed on drop.
struct FakeKysod(std::process::Child);

impl FakeKysod {
    fn start(socket: &Path, record: &Path) -> FakeKysod {
        use std::os::unix::process::CommandExt;
        let script = "import socket,sys\n\
            s=socket.socket(socket.AF_UNIX)\n\
            s.bind(sys.argv[1]); s.listen(8)\n\
            while True:\n\
            \x20   c,_=s.accept(); c.settimeout(2)\n\
            \x20   try:\n\
            \x20       d=c.recv(65536)\n\
            \x20   except Exception:\n\
            \x20       d=b''\n\
            \x20   open(sys.argv[2],'ab').write(d); c.close()\n";
        let child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .arg(socket)
            .arg(record)
            .uid(65534)
            .gid(65534)
            .spawn()
            .expect("start the fake server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(std::time::Instant::now() < deadline, "fake server up");
            std::thread::sleep(Duration::from_millis(20));
        }
        FakeKysod(child)
    }
}

impl Drop for FakeKysod {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_server_of_another_user_on_the_socket_gets_nothing() {
    let fx = Fixture::new();
    let serial = fx.serial_a().to_string();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(&serial, SO_PIN);
    let dir = fx.subdir("fake");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let (socket, record) = (dir.join("kysod.sock"), dir.join("received"));
    std::fs::write(&record, b"").unwrap();
    std::fs::set_permissions(&record, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let _fake = FakeKysod::start(&socket, &record);

    // The helpdesk's wipe would send the escrowed SO PINs to whoever listens.
    let socket_arg = socket.to_string_lossy().into_owned();
    let out = h.run_with_stdin(
        &["wipe", "--token", &serial, "--socket", &socket_arg],
        Some(&format!("{serial}\n")),
    );
    assert!(!out.status.success(), "{}", out.text());
    assert!(out.stderr.contains("not your kysod"), "{}", out.text());

    let mut cmd = Command::new(target_dir().join("kyso"));
    cmd.args(["status", "--socket", &socket_arg]);
    let out = run(&mut cmd, Duration::from_secs(30));
    assert!(!out.status.success(), "{}", out.text());
    assert!(out.stderr.contains("uid 65534"), "{}", out.text());

    // The shim finds no kysod there: no token, and nothing sent.
    std::env::set_var("KYSO_SOCKET", &socket);
    let shim = Module::try_load(&shim_path());
    if let Ok(m) = &shim {
        assert!(m
            .ctx()
            .get_slots_with_token()
            .unwrap_or_default()
            .is_empty());
    }
    drop(shim);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read(&record).unwrap(),
        b"",
        "the fake server received bytes"
    );
}

#[test]
fn helpdesk_unlock_is_gone_and_says_what_to_do() {
    let fx = Fixture::new();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(fx.serial_a(), SO_PIN);
    let out = h.run(&["unlock", "--token", fx.serial_a()]);
    assert!(!out.status.success());
    for step in [
        "kyso recover request",
        "kyso-helpdesk approve",
        "kyso recover apply",
    ] {
        assert!(out.stderr.contains(step), "{}", out.text());
    }
}
