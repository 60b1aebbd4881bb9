//! Token recovery on SoftHSM2 tokens: diagnosis, the helpdesk store, recovery with SO PIN
//! rotation, grants refused when they are not right, an interrupted apply, and wipe. (Locked
//! tokens are in `recovery_locked.rs`, attacks by the user's own programs in
//! `recovery_attacks.rs`.)

use std::path::Path;

use cryptoki::error::RvError;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use kyso_tests::recovery::{
    assert_absent, kyso, kysod_trusting, pins_asked, token_status, Helpdesk, PASSPHRASE,
};
use kyso_tests::{rv_of, Daemon, DaemonConfig, Fixture, Module, LABEL_A, SO_PIN, USER_PIN};

const NEW_PIN: &str = "24681357";

/// The result of `user`'s login with `pin` on the token `serial`, straight through SoftHSM2.
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

fn approve(h: &Helpdesk, req: &Path, out: &Path, extra: &[&str]) -> kyso_tests::util::Output {
    let mut args = vec![
        "approve",
        req.to_str().unwrap(),
        "--case",
        "123/UBND-VP",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    h.run(&args)
}

fn apply(daemon: &Daemon, grant: &Path, out: &Path) -> kyso_tests::util::Output {
    kyso(
        daemon,
        &[
            "recover",
            "apply",
            &grant.to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
        ],
    )
}

#[test]
fn token_status_reports_pin_flags_certificates_and_next_step() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let t = token_status(&daemon, fx.serial_a());
    assert_eq!(t["serial"], fx.serial_a());
    assert_eq!(t["label"], LABEL_A);
    assert!(t["model"].as_str().is_some_and(|m| !m.is_empty()), "{t}");
    for flag in [
        "user_pin_locked",
        "user_pin_count_low",
        "user_pin_final_try",
        "user_pin_to_be_changed",
        "so_pin_locked",
        "so_pin_count_low",
        "so_pin_final_try",
        "so_pin_to_be_changed",
    ] {
        assert_eq!(t[flag], false, "{flag} in {t}");
    }
    let certs = t["certificates"].as_array().expect("certificates");
    assert!(!certs.is_empty(), "{t}");
    for c in certs {
        assert!(c["holder"].as_str().is_some_and(|h| !h.is_empty()), "{c}");
        assert!(
            c["class"].is_string() && c["valid_until"].is_string(),
            "{c}"
        );
    }
    assert!(t["next_steps"][0]
        .as_str()
        .is_some_and(|s| s.contains("nothing to do")));

    // A wrong PIN shows as "count low", with advice in plain words.
    assert_eq!(
        direct_login(&fx, fx.serial_a(), UserType::User, "000000"),
        Some(RvError::PinIncorrect)
    );
    let t = token_status(&daemon, fx.serial_a());
    assert_eq!(t["user_pin_count_low"], true, "{t}");
    assert!(t["next_steps"].to_string().contains("few tries"), "{t}");

    let out = kyso(&daemon, &["token", "status", "--token", "NO-SUCH-TOKEN"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("no token NO-SUCH-TOKEN"),
        "{}",
        out.text()
    );
}

#[test]
fn helpdesk_store_keeps_no_secret_readable() {
    let fx = Fixture::new();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(fx.serial_a(), SO_PIN);
    assert_absent(&[SO_PIN], &[&h.db]);

    // The public key is what a workstation trusts: 32 bytes in base64.
    let key = std::fs::read_to_string(&h.pubkey).unwrap();
    assert_eq!(key.trim().len(), 44, "{key}");

    // A wrong passphrase opens nothing; a second escrow of the same token is refused.
    let file = h.dir.join("pin");
    std::fs::write(&file, "11112222\n").unwrap();
    let mut cmd = std::process::Command::new(kyso_tests::target_dir().join("kyso-helpdesk"));
    cmd.args(["escrow", "add", "--serial", "X1", "--so-pin-file"])
        .arg(&file)
        .arg("--db")
        .arg(&h.db)
        .env("KYSO_HELPDESK_PASSPHRASE", "sai mat khau");
    let out = kyso_tests::util::run(&mut cmd, std::time::Duration::from_secs(60));
    assert!(!out.status.success());
    assert!(out.stderr.contains("wrong passphrase"), "{}", out.text());
    let out = h.run(&[
        "escrow",
        "add",
        "--serial",
        fx.serial_a(),
        "--so-pin-file",
        &file.to_string_lossy(),
    ]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("escrowed for token"), "{}", out.text());
    // Not overwritten by a second init.
    let out = h.run(&["init"]);
    assert!(!out.status.success(), "{}", out.text());
    assert_eq!(std::fs::read_to_string(&h.pubkey).unwrap(), key);
    assert!(!PASSPHRASE.is_empty());
}

#[test]
fn the_passphrase_is_asked_through_pinentry_without_the_environment() {
    let fx = Fixture::new();
    let dir = fx.subdir("helpdesk-pinentry");
    let program = kyso_tests::pinentry::scripted_pinentry(&dir);
    std::fs::write(dir.join("answer"), "mot cau mat khau\n").unwrap();
    let db = dir.join("store.db");
    let helpdesk = |args: &[&str]| {
        let mut cmd = std::process::Command::new(kyso_tests::target_dir().join("kyso-helpdesk"));
        cmd.args(args)
            .arg("--db")
            .arg(&db)
            .env_remove("KYSO_HELPDESK_PASSPHRASE")
            .env("KYSO_PINENTRY", &program);
        kyso_tests::util::run(&mut cmd, std::time::Duration::from_secs(60))
    };
    let out = helpdesk(&["init"]);
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(pins_asked(&dir), 2, "a new passphrase is asked twice");
    let file = dir.join("so-pin");
    std::fs::write(&file, format!("{SO_PIN}\n")).unwrap();
    let out = helpdesk(&[
        "escrow",
        "add",
        "--serial",
        "S1",
        "--so-pin-file",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(pins_asked(&dir), 3);
    let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
    assert!(
        seen.contains("SETDESC") && seen.contains("store.db"),
        "{seen}"
    );
    // Cancelled at the prompt: nothing is opened.
    std::fs::write(dir.join("answer"), "CANCEL\n").unwrap();
    let out = helpdesk(&[
        "escrow",
        "add",
        "--serial",
        "S2",
        "--so-pin-file",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("cancelled"), "{}", out.text());
}

#[test]
fn recovery_on_site_rotates_the_so_pin_and_works_again_from_the_escrow() {
    let fx = Fixture::new();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(fx.serial_a(), SO_PIN);
    let (daemon, dir) = kysod_trusting(
        &fx,
        DaemonConfig::default(),
        &h,
        &format!("{NEW_PIN}\n{NEW_PIN}\n13572468\n13572468\n"),
    );
    let d = fx.subdir("files");
    // On site as remotely: request on the workstation, grant on the helpdesk's machine,
    // apply on the workstation, close with the receipt.
    let recover = |n: u32| {
        let (req, grant, receipt) = (
            d.join(format!("req{n}.json")),
            d.join(format!("grant{n}.json")),
            d.join(format!("receipt{n}.json")),
        );
        request(&daemon, fx.serial_a(), &req);
        let out = approve(&h, &req, &grant, &[]);
        assert!(out.status.success(), "approve: {}", out.text());
        let out = apply(&daemon, &grant, &receipt);
        assert!(out.status.success(), "apply: {}", out.text());
        let out = h.run(&["close", receipt.to_str().unwrap()]);
        assert!(out.status.success(), "close: {}", out.text());
    };
    recover(1);
    assert_eq!(pins_asked(&dir), 2, "the user typed the new PIN twice");
    assert_eq!(
        direct_login(&fx, fx.serial_a(), UserType::User, NEW_PIN),
        None
    );
    // The SO PIN was rotated: the old one no longer works.
    assert_eq!(
        direct_login(&fx, fx.serial_a(), UserType::So, SO_PIN),
        Some(RvError::PinIncorrect)
    );
    // The token counts that wrong SO PIN (what the interrupted-apply test relies on).
    assert_eq!(
        token_status(&daemon, fx.serial_a())["so_pin_count_low"],
        true
    );
    // A second recovery finds the rotated SO PIN in the escrow.
    recover(2);
    assert_eq!(
        direct_login(&fx, fx.serial_a(), UserType::User, "13572468"),
        None
    );
    let closed = h
        .cases()
        .iter()
        .filter(|c| c["action"] == "close" && c["outcome"] == "closed")
        .count();
    assert_eq!(closed, 2);
    assert_absent(
        &[SO_PIN, NEW_PIN, "13572468"],
        &[&h.db, &fx.dir().join("kysod")],
    );
}

#[test]
fn bad_grants_are_refused_with_a_reason_and_change_nothing() {
    let fx = Fixture::with_second_token();
    let serial_b = fx.serial_b().unwrap().to_string();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(fx.serial_a(), SO_PIN);
    h.escrow(&serial_b, SO_PIN);
    let other = Helpdesk::new(&fx, "other-helpdesk");
    other.escrow(fx.serial_a(), SO_PIN);
    let (daemon, dir) = kysod_trusting(
        &fx,
        DaemonConfig::default(),
        &h,
        &format!("{NEW_PIN}\n{NEW_PIN}\n"),
    );
    let d = fx.subdir("files");
    let req = d.join("req.json");
    request(&daemon, fx.serial_a(), &req);
    let refused = |name: &str, grant_text: &str, why: &str| {
        let grant = d.join(format!("{name}.json"));
        std::fs::write(&grant, grant_text).unwrap();
        let out = apply(&daemon, &grant, &d.join(format!("{name}-receipt.json")));
        assert!(!out.status.success(), "{name} applied: {}", out.text());
        assert!(out.stderr.contains(why), "{name}: {}", out.text());
        assert!(!d.join(format!("{name}-receipt.json")).exists());
    };

    // Signed by a helpdesk this workstation does not trust.
    let g = d.join("untrusted.json");
    assert!(approve(&other, &req, &g, &[]).status.success());
    refused(
        "untrusted-applied",
        &std::fs::read_to_string(&g).unwrap(),
        "not signed by a helpdesk key this workstation trusts",
    );

    // A good grant, then altered or stripped of its signature.
    let g = d.join("good.json");
    assert!(approve(&h, &req, &g, &[]).status.success());
    let text = std::fs::read_to_string(&g).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["body"]["expires"] =
        (v["body"]["expires"].as_i64().unwrap() + 365 * kyso_proto::dates::DAY).into();
    refused("tampered", &v.to_string(), "not signed by a helpdesk key");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["signature"] = "".into();
    refused("unsigned", &v.to_string(), "not signed");
    refused("garbage", "{\"kind\": 1", "grant refused");

    // Expired.
    let req2 = d.join("req2.json");
    request(&daemon, fx.serial_a(), &req2);
    let g = d.join("expired-grant.json");
    let out = approve(&h, &req2, &g, &["--valid-minutes", "0"]);
    assert!(out.status.success(), "{}", out.text());
    refused("expired", &std::fs::read_to_string(&g).unwrap(), "expired");

    // For another token: the request was edited to name token B before approval.
    let req3 = d.join("req3.json");
    request(&daemon, fx.serial_a(), &req3);
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&req3).unwrap()).unwrap();
    r["serial"] = serial_b.clone().into();
    let req3b = d.join("req3-b.json");
    std::fs::write(&req3b, r.to_string()).unwrap();
    let g = d.join("wrong-serial-grant.json");
    assert!(approve(&h, &req3b, &g, &[]).status.success());
    refused(
        "wrong-serial",
        &std::fs::read_to_string(&g).unwrap(),
        &format!("the grant is for token {serial_b}"),
    );

    // For another request: the holder shown to the helpdesk was changed on the way.
    let req4 = d.join("req4.json");
    request(&daemon, fx.serial_a(), &req4);
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&req4).unwrap()).unwrap();
    r["label"] = "TRAN THI B".into();
    let req4b = d.join("req4-edited.json");
    std::fs::write(&req4b, serde_json::to_vec_pretty(&r).unwrap()).unwrap();
    let g = d.join("edited-request-grant.json");
    assert!(approve(&h, &req4b, &g, &[]).status.success());
    refused(
        "edited-request",
        &std::fs::read_to_string(&g).unwrap(),
        "answers a request other than the one this workstation made",
    );

    // A certificate described as someone else's: the helpdesk refuses to approve.
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&req4).unwrap()).unwrap();
    assert!(
        !r["certificates"].as_array().unwrap().is_empty(),
        "the request carries the token's certificates"
    );
    r["certificates"][0]["holder"] = "TRAN THI B, UBND Tinh Demo".into();
    let req4c = d.join("req4-holder.json");
    std::fs::write(&req4c, serde_json::to_vec_pretty(&r).unwrap()).unwrap();
    let out = approve(&h, &req4c, &d.join("holder-grant.json"), &[]);
    assert!(!out.status.success(), "{}", out.text());
    assert!(
        out.stderr
            .contains("certificate 1 of the request does not match its description"),
        "{}",
        out.text()
    );
    assert!(!d.join("holder-grant.json").exists());

    // Nothing was tried: no prompt, both tokens' PINs as before.
    assert_eq!(pins_asked(&dir), 0);
    assert_eq!(
        direct_login(&fx, fx.serial_a(), UserType::User, USER_PIN),
        None
    );
    assert_eq!(direct_login(&fx, fx.serial_a(), UserType::So, SO_PIN), None);
    assert_eq!(direct_login(&fx, &serial_b, UserType::So, SO_PIN), None);

    // The good grant works once; its replay is refused.
    let receipt = d.join("receipt.json");
    let out = apply(&daemon, &d.join("good.json"), &receipt);
    assert!(out.status.success(), "good grant: {}", out.text());
    assert_eq!(
        direct_login(&fx, fx.serial_a(), UserType::User, NEW_PIN),
        None
    );
    refused("replayed", &text, "already used");
    let journal = std::fs::read_to_string(fx.dir().join("kysod/state/audit.jsonl")).unwrap();
    assert!(
        journal.contains("\"event\":\"recovery_apply\""),
        "{journal}"
    );
    assert!(journal.contains("123/UBND-VP"), "{journal}");
    assert!(
        journal.contains("already used"),
        "refusals are journaled: {journal}"
    );
}

#[test]
fn an_apply_never_closed_is_still_recoverable_without_a_wasted_so_try() {
    let fx = Fixture::new();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(fx.serial_a(), SO_PIN);
    // First apply: cancelled at the prompt; second: completes, but its receipt is lost.
    let (daemon, dir) = kysod_trusting(
        &fx,
        DaemonConfig::default(),
        &h,
        &format!("CANCEL\n{NEW_PIN}\n{NEW_PIN}\n11223399\n11223399\n"),
    );
    let d = fx.subdir("files");
    let req = d.join("req.json");
    request(&daemon, fx.serial_a(), &req);
    let grant = d.join("grant.json");
    assert!(approve(&h, &req, &grant, &[]).status.success());

    let out = apply(&daemon, &grant, &d.join("r1.json"));
    assert!(!out.status.success(), "{}", out.text());
    assert!(out.stderr.contains("nothing was changed"), "{}", out.text());
    assert_eq!(direct_login(&fx, fx.serial_a(), UserType::So, SO_PIN), None);

    let receipt = d.join("r2.json");
    let out = apply(&daemon, &grant, &receipt);
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(pins_asked(&dir), 3);
    std::fs::remove_file(&receipt).unwrap();

    // The escrow still has the old SO PIN as confirmed and the grant's as pending. A grant
    // sealing the old one is refused by kysod without a try, naming the one it installed.
    let req2 = d.join("req2.json");
    request(&daemon, fx.serial_a(), &req2);
    let stale = d.join("stale.json");
    assert!(approve(&h, &req2, &stale, &[]).status.success());
    let out = apply(&daemon, &stale, &d.join("r3.json"));
    assert!(!out.status.success(), "{}", out.text());
    assert!(out.stderr.contains("nothing was tried"), "{}", out.text());
    let t = token_status(&daemon, fx.serial_a());
    assert_eq!(t["so_pin_count_low"], false, "an SO try was wasted: {t}");
    let installed = out
        .stderr
        .split("--so-generation ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_hexdigit()).next())
        .expect("kysod names the generation it installed")
        .to_string();

    // Approved again with that generation, the same request is answered and applied.
    let fresh = d.join("fresh.json");
    let out = approve(&h, &req2, &fresh, &["--so-generation", &installed]);
    assert!(out.status.success(), "approve: {}", out.text());
    let out = apply(&daemon, &fresh, &d.join("r4.json"));
    assert!(out.status.success(), "apply: {}", out.text());
    let t = token_status(&daemon, fx.serial_a());
    assert_eq!(t["so_pin_count_low"], false, "{t}");
    assert_eq!(
        direct_login(&fx, fx.serial_a(), UserType::User, "11223399"),
        None
    );
}

#[test]
fn wipe_needs_the_serial_typed_and_reinitialises_the_token() {
    let fx = Fixture::new();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(fx.serial_a(), SO_PIN);
    let (daemon, _dir) = kysod_trusting(&fx, DaemonConfig::default(), &h, "x\n");
    let socket = daemon.socket().to_string_lossy().into_owned();
    let args = [
        "wipe",
        "--token",
        fx.serial_a(),
        "--case",
        "9/QD-THUHOI",
        "--socket",
        &socket,
    ];
    let out = h.run_with_stdin(&args, Some("wrong\n"));
    assert!(!out.status.success());
    assert!(out.stderr.contains("nothing was wiped"), "{}", out.text());
    assert_eq!(
        direct_login(&fx, fx.serial_a(), UserType::User, USER_PIN),
        None
    );

    let out = h.run_with_stdin(&args, Some(&format!("{}\n", fx.serial_a())));
    assert!(out.status.success(), "wipe: {}", out.text());
    let m = Module::softhsm(&fx);
    let slot = m.slot_with_serial(fx.serial_a());
    let info = m.ctx().get_token_info(slot).unwrap();
    assert_eq!(info.label(), "RECALLED");
    assert!(!info.user_pin_initialized());
    drop(m);
    assert!(h.cases().iter().any(|c| c["action"] == "wipe"
        && c["outcome"] == "wiped"
        && c["case_ref"] == "9/QD-THUHOI"));
    let journal = std::fs::read_to_string(fx.dir().join("kysod/state/audit.jsonl")).unwrap();
    assert!(journal.contains("\"event\":\"wipe\""), "{journal}");
}
