//! Recovery of tokens that really lock (opencryptoki's soft token): a user PIN locked by three
//! wrong PINs is recovered remotely and the original key signs with the user's new PIN; an SO
//! PIN at its final try is not spent without --force; an SO-locked token is diagnosed and left
//! alone.

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

#[test]
fn so_pin_final_try_needs_force_and_an_so_locked_token_is_left_to_the_ca() {
    let fx = Fixture::with_opencryptoki();
    let serial = fx.opencryptoki().serial().to_string();
    let h = Helpdesk::new(&fx, "helpdesk");
    h.escrow(&serial, OCK_SO_PIN);
    let (daemon, dir) = kysod_trusting(
        &fx,
        DaemonConfig::with_opencryptoki(),
        &h,
        &format!("{NEW_PIN}\n{NEW_PIN}\n"),
    );
    let socket = daemon.socket().to_string_lossy().into_owned();
    for _ in 0..2 {
        direct_login(&serial, UserType::So, "00000000");
    }
    assert_eq!(token_status(&daemon, &serial)["so_pin_final_try"], true);
    let out = h.run(&["unlock", "--token", &serial, "--socket", &socket]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("final try"), "{}", out.text());
    assert_eq!(pins_asked(&dir), 0);
    let t = token_status(&daemon, &serial);
    assert_eq!(t["so_pin_final_try"], true, "no SO try was spent: {t}");
    assert_eq!(t["so_pin_locked"], false, "{t}");

    let out = h.run(&["unlock", "--token", &serial, "--force", "--socket", &socket]);
    assert!(out.status.success(), "forced unlock: {}", out.text());
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
    let out = h.run(&["unlock", "--token", &serial, "--force", "--socket", &socket]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("locked too"), "{}", out.text());
    assert_eq!(
        pins_asked(&dir),
        2,
        "only the forced unlock asked for a PIN"
    );
}
