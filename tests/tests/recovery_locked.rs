//! Recovery of tokens that really lock (opencryptoki's soft token): a user PIN locked by three
//! wrong PINs is recovered remotely and the original key signs with the user's new PIN; an SO
//! PIN at its final try is not spent without --force and the user's yes; wrong SO logins
//! through kysod stop before the last try; an SO-locked token is diagnosed and left alone.

use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use kyso_tests::recovery::{
    assert_absent, kyso, kysod_trusting, pins_asked, token_status, Helpdesk,
};
use kyso_tests::util::{find_one, openssl_verify_sha256, sha256_digest_info};
use kyso_tests::{
    login, rv_of, DaemonConfig, Fixture, Module, OCK_ID_RSA, OCK_SO_PIN, OCK_USER_PIN,
    OPENCRYPTOKI_MODULE,
};
use std::path::{Path, PathBuf};

const NEW_PIN: &str = "55667788";
const DOCUMENT: &[u8] = b"Quyet dinh so 7/QD-UBND: ky lai sau khi khoi phuc thiet bi.\n";

/// `user`'s login with `pin` straight through opencryptoki (its only slot holds the token
/// `serial`; its token information is not read, as `cryptoki` cannot parse its clock).
fn direct_login(serial: &str, user: UserType, pin: &str) -> Option<RvError> {
    assert_eq!(serial, "123", "opencryptoki's soft token");
    let m = Module::load(std::path::Path::new(OPENCRYPTOKI_MODULE));
    let slots = m.ctx().get_slots_with_token().expect("C_GetSlotList");
    assert_eq!(slots.len(), 1, "one opencryptoki slot");
    let s = m.ctx().open_rw_session(slots[0]).expect("C_OpenSession");
    s.login(user, Some(&AuthPin::new(pin.into())))
        .err()
        .and_then(|e| rv_of(&e))
}

#[test]
fn a_locked_token_is_recovered_remotely_and_signs_with_the_new_pin() {
    let fx = Fixture::with_opencryptoki();
    let ock = fx.opencryptoki();
    let serial = ock.serial().to_string();
    for _ in 0..3 {
        direct_login(&serial, UserType::User, "99999999");
    }
    assert_eq!(
        direct_login(&serial, UserType::User, OCK_USER_PIN),
        Some(RvError::PinLocked)
    );
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(&serial, OCK_SO_PIN);
    let (daemon, dir) = kysod_trusting(
        &fx,
        DaemonConfig::with_opencryptoki(),
        &h,
        &format!("{NEW_PIN}\n{NEW_PIN}\n"),
    );

    let t = token_status(&daemon, &serial);
    assert_eq!(t["user_pin_locked"], true, "{t}");
    assert_eq!(t["so_pin_locked"], false, "{t}");
    let advice = t["next_steps"].to_string();
    assert!(
        advice.contains("ask your helpdesk") && advice.contains(&serial),
        "{advice}"
    );

    let d = fx.subdir("files");
    let (req, grant, receipt) = (
        d.join("req.json"),
        d.join("grant.json"),
        d.join("receipt.json"),
    );
    let out = kyso(
        &daemon,
        &[
            "recover",
            "request",
            "--token",
            &serial,
            "--out",
            req.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "request: {}", out.text());
    let out = h.run(&[
        "approve",
        req.to_str().unwrap(),
        "--case",
        "88/STTTT-CNTT",
        "--out",
        grant.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "approve: {}", out.text());
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
    assert_eq!(pins_asked(&dir), 2, "the user chose the new PIN, twice");
    let out = h.run(&["close", receipt.to_str().unwrap()]);
    assert!(out.status.success(), "close: {}", out.text());

    let t = token_status(&daemon, &serial);
    assert_eq!(t["user_pin_locked"], false, "{t}");

    // The original key signs with the new PIN, through kysod.
    {
        let shim = Module::shim(&daemon);
        let s = shim.session(&serial);
        login(&s, NEW_PIN).expect("login with the new PIN");
        let key = find_one(&s, ObjectClass::PRIVATE_KEY, OCK_ID_RSA);
        let sig = s
            .sign(&Mechanism::RsaPkcs, key, &sha256_digest_info(DOCUMENT))
            .expect("C_Sign");
        assert!(openssl_verify_sha256(&ock.cert_pem(), DOCUMENT, &sig));
    }
    // The SO PIN was rotated.
    assert_eq!(
        direct_login(&serial, UserType::So, OCK_SO_PIN),
        Some(RvError::PinIncorrect)
    );
    // The grant worked once.
    let out = kyso(
        &daemon,
        &[
            "recover",
            "apply",
            grant.to_str().unwrap(),
            "--out",
            d.join("again.json").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("already used"), "{}", out.text());

    let actions: Vec<String> = h
        .cases()
        .iter()
        .map(|c| format!("{} {}", c["action"], c["outcome"]))
        .collect();
    for want in ["approve\" \"granted", "close\" \"closed"] {
        assert!(actions.iter().any(|a| a.contains(want)), "{actions:?}");
    }
    let journal = std::fs::read_to_string(fx.dir().join("kysod/state/audit.jsonl")).unwrap();
    assert!(
        journal.contains("\"event\":\"recovery_request\""),
        "{journal}"
    );
    assert!(journal.contains("88/STTTT-CNTT"), "{journal}");
    assert_absent(
        &[OCK_SO_PIN, NEW_PIN],
        &[&req, &grant, &receipt, &h.db, &fx.dir().join("kysod")],
    );
}

/// `kyso recover request` for `serial`, approved by `h`: the grant's path.
fn granted(daemon: &kyso_tests::Daemon, h: &Helpdesk, serial: &str, d: &Path, n: u32) -> PathBuf {
    let (req, grant) = (
        d.join(format!("req{n}.json")),
        d.join(format!("grant{n}.json")),
    );
    let out = kyso(
        daemon,
        &[
            "recover",
            "request",
            "--token",
            serial,
            "--out",
            req.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "request: {}", out.text());
    let out = h.run(&[
        "approve",
        req.to_str().unwrap(),
        "--case",
        "90/STTTT-CNTT",
        "--out",
        grant.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "approve: {}", out.text());
    grant
}

fn apply(
    daemon: &kyso_tests::Daemon,
    grant: &Path,
    out: &Path,
    force: bool,
) -> kyso_tests::util::Output {
    let mut args = vec![
        "recover",
        "apply",
        grant.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if force {
        args.push("--force");
    }
    kyso(daemon, &args)
}

#[test]
fn so_pin_final_try_needs_force_and_the_users_word_and_an_so_locked_token_is_left_to_the_ca() {
    let fx = Fixture::with_opencryptoki();
    let serial = fx.opencryptoki().serial().to_string();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(&serial, OCK_SO_PIN);
    // GETPINs take lines 2 on (the first is the answer to CONFIRM: not "yes" yet).
    let (daemon, dir) = kysod_trusting(
        &fx,
        DaemonConfig::with_opencryptoki(),
        &h,
        &format!("no\n{NEW_PIN}\n{NEW_PIN}\n{NEW_PIN}\n{NEW_PIN}\n"),
    );
    std::fs::write(dir.join("count"), "1\n").unwrap();
    for _ in 0..2 {
        direct_login(&serial, UserType::So, "00000000");
    }
    assert_eq!(token_status(&daemon, &serial)["so_pin_final_try"], true);
    let d = fx.subdir("files");
    let grant = granted(&daemon, &h, &serial, &d, 1);
    let out = apply(&daemon, &grant, &d.join("r0.json"), false);
    assert!(!out.status.success());
    assert!(out.stderr.contains("final try"), "{}", out.text());
    assert_eq!(pins_asked(&dir), 1, "nothing was asked");

    // --force: the user still has the last word, and says no.
    let out = apply(&daemon, &grant, &d.join("r1.json"), true);
    assert!(!out.status.success());
    assert!(out.stderr.contains("did not agree"), "{}", out.text());
    let t = token_status(&daemon, &serial);
    assert_eq!(t["so_pin_final_try"], true, "no SO try was spent: {t}");
    assert_eq!(t["so_pin_locked"], false, "{t}");
    let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
    assert!(
        seen.contains("CONFIRM") && seen.contains("SO PIN"),
        "{seen}"
    );

    // With the user's yes, the grant (put back after the refusal) is applied.
    let answers = std::fs::read_to_string(dir.join("answer")).unwrap();
    std::fs::write(dir.join("answer"), answers.replacen("no", "yes", 1)).unwrap();
    let out = apply(&daemon, &grant, &d.join("r2.json"), true);
    assert!(out.status.success(), "forced apply: {}", out.text());
    assert_eq!(token_status(&daemon, &serial)["so_pin_final_try"], false);

    for _ in 0..3 {
        direct_login(&serial, UserType::So, "00000000");
    }
    let t = token_status(&daemon, &serial);
    assert_eq!(t["so_pin_locked"], true, "{t}");
    assert!(
        t["next_steps"]
            .to_string()
            .contains("certification authority"),
        "{t}"
    );
    let out = kyso(
        &daemon,
        &[
            "recover",
            "request",
            "--token",
            &serial,
            "--out",
            d.join("req9.json").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("locked too"), "{}", out.text());
}

/// Malware holding a session through the shim tries SO PINs: kysod stops it before the try
/// that would lock the SO PIN for good, and C_InitToken is guarded alike.
#[test]
fn wrong_so_logins_through_kysod_stop_before_the_last_try() {
    let fx = Fixture::with_opencryptoki();
    let serial = fx.opencryptoki().serial().to_string();
    let h = Helpdesk::new(&fx, "helpdesk");
    let (daemon, dir) = kysod_trusting(&fx, DaemonConfig::with_opencryptoki(), &h, "no\n");
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(&serial);
    let s = shim.ctx().open_rw_session(slot).expect("C_OpenSession");
    let so_login = |pin: &str| {
        s.login(UserType::So, Some(&AuthPin::new(pin.into())))
            .err()
            .and_then(|e| rv_of(&e))
    };
    assert_eq!(so_login("00000000"), Some(RvError::PinIncorrect));
    assert_eq!(so_login("00000001"), Some(RvError::PinIncorrect));
    // The third would lock the SO PIN: the user is asked, and declines.
    assert_eq!(so_login("00000002"), Some(RvError::FunctionCanceled));
    let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
    assert!(
        seen.contains("CONFIRM") && seen.contains("SO PIN"),
        "{seen}"
    );
    let init = shim
        .ctx()
        .init_token(slot, &AuthPin::new("00000003".into()), "WIPED")
        .err()
        .and_then(|e| rv_of(&e));
    assert_eq!(init, Some(RvError::FunctionCanceled));
    let t = token_status(&daemon, &serial);
    assert_eq!(t["so_pin_locked"], false, "{t}");
    assert_eq!(t["so_pin_final_try"], true, "{t}");

    // kysod counted the two wrong SO PINs in its state directory.
    let counts = std::fs::read_to_string(fx.dir().join("kysod/state/pin-failures.json")).unwrap();
    let counts: serde_json::Value = serde_json::from_str(&counts).unwrap();
    assert_eq!(counts[&serial]["so"], 2, "{counts}");

    // With the user's yes, the right SO PIN gets its try and the count starts over.
    std::fs::write(dir.join("answer"), "yes\n").unwrap();
    assert_eq!(so_login(OCK_SO_PIN), None);
    s.logout().expect("C_Logout");
    assert_eq!(token_status(&daemon, &serial)["so_pin_final_try"], false);
    let counts = std::fs::read_to_string(fx.dir().join("kysod/state/pin-failures.json")).unwrap();
    assert!(!counts.contains(&serial), "{counts}");
}
