//! Cryptographic operations through the shim give the same results as SoftHSM2 directly, and
//! signatures verify against the CA-issued certificates; error codes are PKCS#11's.

use cryptoki::error::RvError;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki_sys::{
    CKM_SHA256_RSA_PKCS, CKR_BUFFER_TOO_SMALL, CKR_OK, CKR_OPERATION_NOT_INITIALIZED,
    CKR_SESSION_HANDLE_INVALID,
};
use kyso_tests::util::{ecdsa_raw_to_der, find_one, openssl_verify_sha256, sha256};
use kyso_tests::{login, rv_of, Daemon, Fixture, Module, ID_EC, ID_RSA, USER_PIN, WRONG_PIN};

const DOCUMENT: &[u8] = b"Quyet dinh so 68/QD-UBND: van ban mau de ky so.\n";

fn rsa_sign(s: &Session, data: &[u8]) -> Vec<u8> {
    let key = find_one(s, ObjectClass::PRIVATE_KEY, ID_RSA);
    s.sign(&Mechanism::Sha256RsaPkcs, key, data)
        .expect("C_Sign")
}

#[test]
fn rsa_sha256_signature_verifies_against_certificate() {
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let want = rsa_sign(&direct.user_session(fx.serial_a()), DOCUMENT);
    assert_eq!(want.len(), 256);
    assert!(openssl_verify_sha256(&fx.cert_pem(1), DOCUMENT, &want));

    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let sig = rsa_sign(&s, DOCUMENT);
    // PKCS#1 v1.5 is deterministic: the same bytes as SoftHSM2 in process.
    assert_eq!(sig, want);
    assert!(openssl_verify_sha256(&fx.cert_pem(1), DOCUMENT, &sig));
    assert!(!openssl_verify_sha256(
        &fx.cert_pem(1),
        b"another document",
        &sig
    ));

    // C_Verify through the shim accepts it and rejects a tampered one.
    let public = find_one(&s, ObjectClass::PUBLIC_KEY, ID_RSA);
    s.verify(&Mechanism::Sha256RsaPkcs, public, DOCUMENT, &sig)
        .expect("C_Verify");
    let mut bad = sig.clone();
    bad[10] ^= 1;
    let err = s
        .verify(&Mechanism::Sha256RsaPkcs, public, DOCUMENT, &bad)
        .unwrap_err();
    assert_eq!(rv_of(&err), Some(RvError::SignatureInvalid));
}

#[test]
fn ecdsa_p256_signatures_verify_against_certificate() {
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let direct_mechs = direct
        .ctx()
        .get_mechanism_list(direct.slot_with_serial(fx.serial_a()))
        .unwrap();

    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_EC);

    // CKM_ECDSA over a SHA-256 digest computed here.
    let raw = s
        .sign(&Mechanism::Ecdsa, key, &sha256(DOCUMENT))
        .expect("C_Sign(CKM_ECDSA)");
    assert_eq!(raw.len(), 64, "P-256 signature is r || s, 32 bytes each");
    assert!(openssl_verify_sha256(
        &fx.cert_pem(2),
        DOCUMENT,
        &ecdsa_raw_to_der(&raw)
    ));
    assert!(!openssl_verify_sha256(
        &fx.cert_pem(2),
        b"x",
        &ecdsa_raw_to_der(&raw)
    ));

    // The token verifies its own signature, through the shim and directly.
    let public = find_one(&s, ObjectClass::PUBLIC_KEY, ID_EC);
    s.verify(&Mechanism::Ecdsa, public, &sha256(DOCUMENT), &raw)
        .expect("C_Verify through the shim");
    let ds = direct.session(fx.serial_a());
    let dpub = find_one(&ds, ObjectClass::PUBLIC_KEY, ID_EC);
    ds.verify(&Mechanism::Ecdsa, dpub, &sha256(DOCUMENT), &raw)
        .expect("C_Verify directly");

    // CKM_ECDSA_SHA256 where SoftHSM2 offers it (Debian 12's 2.6.1 does not).
    if direct_mechs.contains(&MechanismType::ECDSA_SHA256) {
        let raw = s
            .sign(&Mechanism::EcdsaSha256, key, DOCUMENT)
            .expect("C_Sign(CKM_ECDSA_SHA256)");
        assert!(openssl_verify_sha256(
            &fx.cert_pem(2),
            DOCUMENT,
            &ecdsa_raw_to_der(&raw)
        ));
    } else {
        let err = s.sign(&Mechanism::EcdsaSha256, key, DOCUMENT).unwrap_err();
        assert_eq!(rv_of(&err), Some(RvError::MechanismInvalid));
    }
}

#[test]
fn multipart_sign_equals_single_part() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();

    let single = s
        .sign(&Mechanism::Sha256RsaPkcs, key, &data)
        .expect("C_Sign");
    s.sign_init(&Mechanism::Sha256RsaPkcs, key)
        .expect("C_SignInit");
    for chunk in data.chunks(999) {
        s.sign_update(chunk).expect("C_SignUpdate");
    }
    let multi = s.sign_final().expect("C_SignFinal");
    assert_eq!(multi, single);
    assert!(openssl_verify_sha256(&fx.cert_pem(1), &data, &multi));

    // An empty update in the middle changes nothing either.
    s.sign_init(&Mechanism::Sha256RsaPkcs, key).unwrap();
    s.sign_update(&data[..5000]).unwrap();
    s.sign_update(&[]).unwrap();
    s.sign_update(&data[5000..]).unwrap();
    assert_eq!(s.sign_final().unwrap(), single);
}

/// Raw C_Sign length query and too-small buffer: the operation goes on (PKCS#11 §5.2).
fn size_query_sequence(m: &Module, serial: &str) -> Vec<(u64, u64, bool)> {
    let s = m.user_session(serial);
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA).handle();
    let raw = m.raw();
    let h = s.handle();
    let mut out = Vec::new();
    assert_eq!(raw.sign_init(h, CKM_SHA256_RSA_PKCS, key), CKR_OK);
    for buf in [None, Some(10), None, Some(512)] {
        let r = raw.sign(h, DOCUMENT, buf);
        out.push((r.rv, r.len, r.signature.is_some()));
    }
    // Finished: a further C_Sign has no operation.
    let r = raw.sign(h, DOCUMENT, Some(512));
    out.push((r.rv, 0, r.signature.is_some()));
    out
}

#[test]
fn sign_length_query_does_not_end_the_operation() {
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let want = size_query_sequence(&direct, fx.serial_a());
    assert_eq!(
        want,
        vec![
            (CKR_OK, 256, false),
            (CKR_BUFFER_TOO_SMALL, 256, false),
            (CKR_OK, 256, false),
            (CKR_OK, 256, true),
            (CKR_OPERATION_NOT_INITIALIZED, 0, false),
        ]
    );

    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    assert_eq!(size_query_sequence(&shim, fx.serial_a()), want);
}

#[test]
fn digest_and_random() {
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let ds = direct.session(fx.serial_a());
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let want = ds.digest(&Mechanism::Sha256, &data).unwrap();
    assert_eq!(want, sha256(&data));

    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.session(fx.serial_a());
    assert_eq!(s.digest(&Mechanism::Sha256, &data).expect("C_Digest"), want);
    s.digest_init(&Mechanism::Sha256).expect("C_DigestInit");
    for chunk in data.chunks(4096) {
        s.digest_update(chunk).expect("C_DigestUpdate");
    }
    assert_eq!(s.digest_final().expect("C_DigestFinal"), want);
    let sha1 = s.digest(&Mechanism::Sha1, b"abc").expect("C_Digest(SHA-1)");
    assert_eq!(
        sha1,
        [
            0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
            0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d
        ]
    );

    let a = s.generate_random_vec(32).expect("C_GenerateRandom");
    let b = s.generate_random_vec(32).expect("C_GenerateRandom");
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
    assert_ne!(a, vec![0u8; 32]);
    let big = s.generate_random_vec(4096).expect("C_GenerateRandom(4096)");
    assert_eq!(big.len(), 4096);
    let zeros = big.iter().filter(|&&x| x == 0).count();
    assert!(zeros < 100, "{zeros} zero bytes in 4096 random ones");
}

#[test]
fn rsa_encrypt_decrypt_round_trip() {
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let public = find_one(&s, ObjectClass::PUBLIC_KEY, ID_RSA);
    let private = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    let secret = b"khoa phien 0123456789abcdef";

    let ct = s
        .encrypt(&Mechanism::RsaPkcs, public, secret)
        .expect("C_Encrypt");
    assert_eq!(ct.len(), 256);
    assert_ne!(&ct[..secret.len()], secret);
    assert_eq!(
        s.decrypt(&Mechanism::RsaPkcs, private, &ct)
            .expect("C_Decrypt"),
        secret
    );

    // Encrypted directly, decrypted through the shim, and the other way round.
    let ds = direct.user_session(fx.serial_a());
    let dpub = find_one(&ds, ObjectClass::PUBLIC_KEY, ID_RSA);
    let dpriv = find_one(&ds, ObjectClass::PRIVATE_KEY, ID_RSA);
    let ct2 = ds.encrypt(&Mechanism::RsaPkcs, dpub, secret).unwrap();
    assert_eq!(
        s.decrypt(&Mechanism::RsaPkcs, private, &ct2).unwrap(),
        secret
    );
    assert_eq!(ds.decrypt(&Mechanism::RsaPkcs, dpriv, &ct).unwrap(), secret);
}

/// The error codes of a fixed sequence of misuses.
fn error_sequence(m: &Module, serial: &str) -> Vec<Option<RvError>> {
    let mut out = Vec::new();
    let s = m.session(serial);
    let rv = |r: Result<(), cryptoki::error::Error>| r.err().and_then(|e| rv_of(&e));

    // Wrong PIN.
    out.push(rv(login(&s, WRONG_PIN)));
    // A private object needs a login.
    let private_data = [
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Label(b"ghi chu".to_vec()),
        Attribute::Value(b"noi dung".to_vec()),
    ];
    out.push(rv(s.create_object(&private_data).map(drop)));
    // The right PIN, then again.
    out.push(rv(login(&s, USER_PIN)));
    out.push(rv(login(&s, USER_PIN)));
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    // Signing with a private key's handle after logout.
    out.push(rv(s.logout()));
    out.push(rv(s
        .sign(&Mechanism::Sha256RsaPkcs, key, DOCUMENT)
        .map(drop)));
    // SO login on a read-only session.
    out.push(rv(s
        .login(UserType::So, Some(&kyso_tests::SO_PIN.to_string().into()))
        .map(drop)));
    out
}

#[test]
fn error_codes_match_softhsm() {
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let want = error_sequence(&direct, fx.serial_a());
    assert_eq!(
        want,
        vec![
            Some(RvError::PinIncorrect),
            Some(RvError::UserNotLoggedIn),
            None,
            Some(RvError::UserAlreadyLoggedIn),
            None,
            // SoftHSM2 invalidates private objects' handles at logout.
            Some(RvError::ObjectHandleInvalid),
            // SO login needs no read-only session open.
            Some(RvError::SessionReadOnlyExists),
        ]
    );
    drop(direct);

    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let got = error_sequence(&shim, fx.serial_a());
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if i == 5 {
            // kyso's login is per client (the token may stay logged in for others): a signature
            // after this client's logout must be refused, as a bad handle (kysod forgets the
            // client's private handles at logout and answers as PKCS#11 says for a key
            // argument) or as not logged in.
            assert!(
                matches!(
                    g,
                    Some(
                        RvError::ObjectHandleInvalid
                            | RvError::KeyHandleInvalid
                            | RvError::UserNotLoggedIn
                    )
                ),
                "sign after logout: {g:?}"
            );
        } else {
            assert_eq!(g, w, "step {i}");
        }
    }

    // Handles that are not sessions.
    let raw = shim.raw();
    assert_eq!(
        raw.get_session_info(0xDEAD_BEEF).0,
        CKR_SESSION_HANDLE_INVALID
    );
    assert_eq!(raw.get_session_info(0).0, CKR_SESSION_HANDLE_INVALID);
    assert_eq!(
        raw.sign_init(0xDEAD_BEEF, CKM_SHA256_RSA_PKCS, 1),
        CKR_SESSION_HANDLE_INVALID
    );
    assert_eq!(
        raw.sign(0xDEAD_BEEF, DOCUMENT, Some(512)).rv,
        CKR_SESSION_HANDLE_INVALID
    );
    // A closed session's handle is invalid afterwards.
    let s = shim.session(fx.serial_a());
    let h = s.handle();
    assert_eq!(raw.get_session_info(h).0, CKR_OK);
    assert_eq!(raw.close_session(h), CKR_OK);
    assert_eq!(raw.get_session_info(h).0, CKR_SESSION_HANDLE_INVALID);
    assert_eq!(raw.generate_random(h, 8).0, CKR_SESSION_HANDLE_INVALID);
    std::mem::forget(s); // already closed through the raw list
}

/// Signing again and again on one session: every signature is of its own document, each is
/// journaled once, and a key destroyed between two signatures gives an error, not a signature.
#[test]
fn repeated_signatures_on_one_session_each_sign_their_own_document() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_EC);
    let documents: Vec<Vec<u8>> = (0..5)
        .map(|i| format!("Cong van so {i}/UBND").into_bytes())
        .collect();
    for doc in &documents {
        // cryptoki's sign: C_SignInit, a size query, C_Sign.
        let raw = s
            .sign(&Mechanism::Ecdsa, key, &sha256(doc))
            .expect("C_Sign(CKM_ECDSA)");
        let der = ecdsa_raw_to_der(&raw);
        assert!(openssl_verify_sha256(&fx.cert_pem(2), doc, &der));
        assert!(!openssl_verify_sha256(&fx.cert_pem(2), b"other", &der));
    }
    let journal = fx.subdir("kysod").join("state").join("audit.jsonl");
    let signed: Vec<String> = std::fs::read_to_string(&journal)
        .expect("journal")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "signature")
        .map(|e| e["data_sha256"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = documents
        .iter()
        .map(|d| kyso_proto::hex::encode(&sha256(&sha256(d))))
        .collect();
    assert_eq!(signed, want, "one journal entry per signature, in order");

    // A key pair made and destroyed on this session: the destroyed key signs no more.
    let (_, private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                cryptoki::object::Attribute::EcParams(vec![
                    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                ]),
                cryptoki::object::Attribute::Token(false),
            ],
            &[
                cryptoki::object::Attribute::Sign(true),
                cryptoki::object::Attribute::Token(false),
            ],
        )
        .expect("C_GenerateKeyPair");
    s.sign(&Mechanism::Ecdsa, private, &sha256(b"x"))
        .expect("first signature with the session key");
    s.destroy_object(private).expect("C_DestroyObject");
    let err = s
        .sign(&Mechanism::Ecdsa, private, &sha256(b"y"))
        .expect_err("a destroyed key must not sign");
    assert_eq!(rv_of(&err), Some(RvError::KeyHandleInvalid), "{err}");
}
