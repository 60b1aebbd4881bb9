//! The signing policy through the shim: certificates outside their validity period refused
//! with `CKR_KEY_FUNCTION_NOT_PERMITTED` and an explanation in kysod's log, near-expiry
//! certificates signed with a renew-by warning, and organisation certificates confirmed through
//! a (scripted) pinentry when `[policy] confirm_organisation = true`.

use std::path::{Path, PathBuf};
use std::process::Command;

use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use cryptoki::session::Session;
use kyso_proto::dates;
use kyso_tests::pinentry::{assert_names_this_application, scripted_pinentry};
use kyso_tests::util::{cert_time, ecdsa_raw_to_der, find_one, openssl_verify_sha256, sha256};
use kyso_tests::{rv_of, toml_str, Daemon, DaemonConfig, Fixture, Module, ID_RSA};

const DOCUMENT: &[u8] = b"Quyet dinh so 01/QD-UBND";

/// kysod with the scripted pinentry and `[policy]` text `policy`; returns the pinentry's dir.
fn start(fx: &Fixture, policy: &str) -> (Daemon, PathBuf) {
    let dir = fx.subdir("pinentry");
    let program = scripted_pinentry(&dir);
    let cfg = DaemonConfig {
        extra: format!(
            "pinentry = {}\n\n[policy]\n{policy}\n",
            toml_str(&program.to_string_lossy())
        ),
        ..Default::default()
    };
    (Daemon::start_with(fx, cfg), dir)
}

fn seen(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("seen")).unwrap_or_default()
}

fn log(daemon: &Daemon) -> String {
    String::from_utf8_lossy(&std::fs::read(daemon.log_path()).unwrap()).into_owned()
}

/// Signs `DOCUMENT` with the EC key `id` (CKM_ECDSA over its SHA-256).
fn sign_ec(s: &Session, id: u8) -> cryptoki::error::Result<Vec<u8>> {
    let key = find_one(s, ObjectClass::PRIVATE_KEY, &[id]);
    s.sign(&Mechanism::Ecdsa, key, &sha256(DOCUMENT))
}

/// A certificate date (`-startdate`/`-enddate`) as `YYYY-MM-DD`, shifted by `days`.
fn cert_date(pem: &Path, which: &str, days: i64) -> String {
    dates::date(cert_time(pem, which) + days * dates::DAY)
}

fn cert_serial(pem: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .trim_start_matches("serial=")
        .trim_start_matches('0')
        .to_ascii_lowercase()
}

#[test]
fn expired_certificate_is_refused_with_its_date() {
    let fx = Fixture::with_policy_certs();
    let (daemon, _) = start(&fx, "");
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let err = sign_ec(&s, 3).unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::KeyFunctionNotPermitted));
    let expired = cert_date(&fx.cert_pem(3), "-enddate", 0);
    let log = log(&daemon);
    assert!(
        log.contains(&format!("the certificate expired on {expired}")),
        "{log}"
    );
    assert!(log.contains("no legal value"), "{log}");
    assert!(log.contains("không có giá trị pháp lý"), "{log}");
    // The refusal is in the audit journal, naming the certificate it judged.
    let journal =
        std::fs::read_to_string(fx.subdir("kysod").join("state").join("audit.jsonl")).unwrap();
    let refusal = journal
        .lines()
        .find(|l| l.contains("\"event\":\"refusal\""))
        .unwrap_or_else(|| panic!("no refusal journaled:\n{journal}"));
    assert!(
        refusal.contains("\"result\":\"CKR_KEY_FUNCTION_NOT_PERMITTED\""),
        "{refusal}"
    );
    assert!(
        refusal.contains(&format!(
            "\"cert_serial\":\"{}\"",
            cert_serial(&fx.cert_pem(3))
        )),
        "{refusal}"
    );
    assert!(
        !journal.contains("\"event\":\"signature\""),
        "a refused signature was journaled as made:\n{journal}"
    );
}

#[test]
fn not_yet_valid_certificate_is_refused_with_its_date() {
    let fx = Fixture::with_policy_certs();
    let (daemon, _) = start(&fx, "");
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let err = sign_ec(&s, 4).unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::KeyFunctionNotPermitted));
    let from = cert_date(&fx.cert_pem(4), "-startdate", 0);
    let log = log(&daemon);
    assert!(
        log.contains(&format!("not yet valid (valid from {from})")),
        "{log}"
    );
    assert!(log.contains("no legal value"), "{log}");
    // Multi-part signing is refused at C_SignInit too.
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, &[4]);
    let err = s.sign_init(&Mechanism::Ecdsa, key).unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::KeyFunctionNotPermitted));
}

#[test]
fn near_expiry_signs_with_a_renew_by_warning() {
    let fx = Fixture::with_policy_certs();
    let (daemon, _) = start(&fx, "");
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let raw = sign_ec(&s, 5).expect("C_Sign with a certificate expiring in 20 days");
    assert!(openssl_verify_sha256(
        &fx.cert_pem(5),
        DOCUMENT,
        &ecdsa_raw_to_der(&raw)
    ));
    let expires = cert_date(&fx.cert_pem(5), "-enddate", 0);
    let log = log(&daemon);
    // 20 days left: the renewal cut-off (expiry − 30 days) has passed.
    assert!(
        log.contains(&format!(
            "too late to renew: request a new certificate before {expires}"
        )),
        "{log}"
    );
    assert!(log.contains("quá hạn gia hạn"), "{log}");
}

#[test]
fn valid_personal_key_signs_without_asking() {
    let fx = Fixture::with_policy_certs();
    let (daemon, dir) = start(&fx, "confirm_organisation = true");
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    let sig = s
        .sign(&Mechanism::Sha256RsaPkcs, key, DOCUMENT)
        .expect("C_Sign with the personal RSA key");
    assert!(openssl_verify_sha256(&fx.cert_pem(1), DOCUMENT, &sig));
    assert!(!seen(&dir).contains("CONFIRM"), "{}", seen(&dir));
    // No expiry warning about the certificate used (the fixture's other certificates are
    // announced when the token arrives).
    let log = log(&daemon);
    let serial = cert_serial(&fx.cert_pem(1));
    assert!(
        !log.lines()
            .any(|l| l.contains("expires on") && l.contains(&serial)),
        "{log}"
    );
}

#[test]
fn organisation_signature_confirmed_yes_signs() {
    let fx = Fixture::with_policy_certs();
    let (daemon, dir) = start(&fx, "confirm_organisation = true");
    std::fs::write(dir.join("answer"), "yes\n").unwrap();
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let raw = sign_ec(&s, 6).expect("C_Sign confirmed by the user");
    assert!(openssl_verify_sha256(
        &fx.cert_pem(6),
        DOCUMENT,
        &ecdsa_raw_to_der(&raw)
    ));

    let seen = seen(&dir);
    assert!(seen.contains("CONFIRM"), "{seen}");
    assert_names_this_application(&seen);
    assert!(seen.contains("UBND TINH DEMO"), "{seen}");
    assert!(seen.contains("UBND Tinh Demo"), "{seen}");
    assert!(seen.contains(&cert_serial(&fx.cert_pem(6))), "{seen}");
    let vi = seen
        .find("muốn ký bằng chứng thư số")
        .expect("Vietnamese text");
    let en = seen.find("wants to sign").expect("English text");
    assert!(vi < en, "Vietnamese first: {seen}");
}

#[test]
fn organisation_signature_declined_is_function_rejected() {
    let fx = Fixture::with_policy_certs();
    let (daemon, dir) = start(&fx, "confirm_organisation = true");
    std::fs::write(dir.join("answer"), "no\n").unwrap();
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let err = sign_ec(&s, 6).unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::FunctionRejected));
    assert!(seen(&dir).contains("CONFIRM"));
}

#[test]
fn organisation_signature_without_confirmation_setting_signs() {
    let fx = Fixture::with_policy_certs();
    let (daemon, dir) = start(&fx, "confirm_organisation = false");
    std::fs::write(dir.join("answer"), "no\n").unwrap();
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    sign_ec(&s, 6).expect("C_Sign without confirmation");
    assert!(!seen(&dir).contains("CONFIRM"), "{}", seen(&dir));
}

#[test]
fn class_override_in_config_applies() {
    let fx = Fixture::with_policy_certs();
    // The organisation certificate configured as personal, the personal RSA one as organisation.
    let org = cert_serial(&fx.cert_pem(6));
    let personal = cert_serial(&fx.cert_pem(1)).to_ascii_uppercase();
    let (daemon, dir) = start(
        &fx,
        &format!(
            "confirm_organisation = true\nclasses = {{ {} = \"personal\", {} = \"organisation\" }}",
            toml_str(&org),
            toml_str(&personal)
        ),
    );
    std::fs::write(dir.join("answer"), "no\n").unwrap();
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    sign_ec(&s, 6).expect("reclassified as personal: no confirmation");
    assert!(!seen(&dir).contains("CONFIRM"));
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    let err = s
        .sign(&Mechanism::Sha256RsaPkcs, key, DOCUMENT)
        .unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::FunctionRejected));
    assert!(seen(&dir).contains("CONFIRM"));
}

#[test]
fn policy_lookup_leaves_the_clients_search_alone() {
    use cryptoki::object::Attribute;
    use std::num::NonZeroUsize;

    let fx = Fixture::with_policy_certs();
    let (daemon, _) = start(&fx, "");
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    // A search in progress on the session (one handle at a time) while signatures start: the
    // policy's certificate look-up runs in a session of its own and must not end it.
    let mut certs = s
        .iter_objects_with_cache_size(
            &[Attribute::Class(ObjectClass::CERTIFICATE)],
            NonZeroUsize::new(1).unwrap(),
        )
        .expect("C_FindObjectsInit");
    let first = certs.next().expect("a certificate").expect("C_FindObjects");
    // On the searching session itself SoftHSM2 refuses, as it does in process...
    let err = s
        .sign(&Mechanism::Sha256RsaPkcs, key, DOCUMENT)
        .unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::OperationActive));
    // ...and on another session of the same application the signature goes through.
    let other = shim.session(fx.serial_a());
    let other_key = find_one(&other, ObjectClass::PRIVATE_KEY, &[6]);
    other
        .sign(&Mechanism::Ecdsa, other_key, &sha256(DOCUMENT))
        .expect("C_Sign on another session during the search");
    let rest: Vec<_> = certs.collect::<Result<_, _>>().expect("the search goes on");
    let mut all = rest;
    all.push(first);
    all.sort_by_key(|h| h.handle());
    all.dedup();
    assert_eq!(all.len(), 6, "certificates 01–06 found: {all:?}");
}

#[test]
fn a_certificate_replaced_through_kysod_is_judged_afresh() {
    use cryptoki::object::{Attribute, AttributeType, CertificateType};
    let fx = Fixture::with_policy_certs();
    let (daemon, _) = start(&fx, "");
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    // Key 02's certificate is valid: it signs (and the policy remembers the certificate).
    sign_ec(&s, 2).expect("key 02 signs with its valid certificate");
    // Replace it with the expired certificate's contents under the same CKA_ID.
    let expired = find_one(&s, ObjectClass::CERTIFICATE, &[3]);
    let (mut der, mut subject) = (None, None);
    for a in s
        .get_attributes(expired, &[AttributeType::Value, AttributeType::Subject])
        .unwrap()
    {
        match a {
            Attribute::Value(v) => der = Some(v),
            Attribute::Subject(v) => subject = Some(v),
            _ => {}
        }
    }
    let (der, subject) = (
        der.expect("certificate value"),
        subject.expect("certificate subject"),
    );
    let rw = shim
        .ctx()
        .open_rw_session(shim.slot_with_serial(fx.serial_a()))
        .expect("a read-write session");
    let current = find_one(&rw, ObjectClass::CERTIFICATE, &[2]);
    rw.destroy_object(current)
        .expect("destroy key 02's certificate");
    rw.create_object(&[
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
        Attribute::Token(false),
        Attribute::Id(vec![2]),
        Attribute::Subject(subject),
        Attribute::Value(der),
    ])
    .expect("create the replacement certificate");
    let err = sign_ec(&s, 2).expect_err("the replaced certificate is expired");
    assert_eq!(rv_of(&err), Some(RvError::KeyFunctionNotPermitted));
}

/// A same-user program tries to change which certificate a key signs under: without a login
/// it can neither destroy the certificate nor plant one; logged in, a planted certificate with
/// the key's `CKA_ID` but another key is not the key's, and once the real certificate is gone
/// the key is refused, not signed with as a key without certificate.
#[test]
fn a_keys_certificate_is_the_one_of_its_public_key() {
    use cryptoki::object::{Attribute, CertificateType};
    use kyso_tests::util::pem_cert_to_der;

    let fx = Fixture::with_policy_certs();
    let (daemon, _) = start(&fx, "");
    let shim = Module::shim(&daemon);
    let planted = |s: &Session| {
        // SoftHSM2 wants the subject: that of the expired certificate already on the token.
        let expired = find_one(s, ObjectClass::CERTIFICATE, &[3]);
        let subject = s
            .get_attributes(expired, &[cryptoki::object::AttributeType::Subject])
            .expect("the expired certificate's subject")
            .pop()
            .expect("a subject");
        s.create_object(&[
            subject,
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Id(ID_RSA.to_vec()),
            Attribute::Label(b"planted".to_vec()),
            // The expired certificate of another key.
            Attribute::Value(pem_cert_to_der(&fx.cert_pem(3))),
        ])
    };

    // Not logged in: token objects do not change.
    let rw = shim
        .ctx()
        .open_rw_session(shim.slot_with_serial(fx.serial_a()))
        .expect("C_OpenSession");
    let cert = find_one(&rw, ObjectClass::CERTIFICATE, ID_RSA);
    let err = rw
        .destroy_object(cert)
        .expect_err("destroyed without a login");
    assert_eq!(rv_of(&err), Some(RvError::UserNotLoggedIn), "{err}");
    let err = planted(&rw).expect_err("planted without a login");
    assert_eq!(rv_of(&err), Some(RvError::UserNotLoggedIn), "{err}");

    // Logged in: the planted certificate is ignored, the key signs under its own.
    kyso_tests::login(&rw, kyso_tests::USER_PIN).expect("C_Login");
    planted(&rw).expect("a logged-in client may add a certificate");
    let key = find_one(&rw, ObjectClass::PRIVATE_KEY, ID_RSA);
    rw.sign(&Mechanism::Sha256RsaPkcs, key, DOCUMENT)
        .expect("the key signs under its own certificate");
    let journal = fx.subdir("kysod").join("state").join("audit.jsonl");
    let last_signature = || {
        std::fs::read_to_string(&journal)
            .unwrap()
            .lines()
            .rfind(|l| l.contains("\"event\":\"signature\""))
            .map(str::to_string)
            .unwrap()
    };
    let entry = last_signature();
    assert!(entry.contains("NGUYEN VAN A, UBND Tinh Demo"), "{entry}");
    assert!(!entry.contains("het han"), "{entry}");

    // The real certificate destroyed: the key had one, so it no longer signs at all.
    rw.destroy_object(cert).expect("C_DestroyObject");
    let err = rw
        .sign(&Mechanism::Sha256RsaPkcs, key, DOCUMENT)
        .expect_err("a key whose certificate is gone signed");
    assert_eq!(rv_of(&err), Some(RvError::KeyFunctionNotPermitted), "{err}");
    assert!(
        log(&daemon).contains("the certificate of this key is no longer on the token"),
        "{}",
        log(&daemon)
    );
}
