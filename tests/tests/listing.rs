//! What an application sees through the shim equals what SoftHSM2 shows it directly: slots,
//! token info, mechanisms, objects and attributes, including the C-level size-query,
//! sensitive-attribute and invalid-attribute semantics.

use cryptoki::mechanism::MechanismType;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::Session;
use cryptoki_sys::{
    CKA_ID, CKA_LABEL, CKA_MODULUS, CKA_PRIVATE_EXPONENT, CKA_VALUE, CKR_ATTRIBUTE_SENSITIVE,
    CKR_ATTRIBUTE_TYPE_INVALID, CKR_BUFFER_TOO_SMALL, CKR_OK, CK_UNAVAILABLE_INFORMATION,
};
use kyso_tests::util::{find_one, pem_cert_to_der};
use kyso_tests::{AttributeResult, Daemon, Fixture, Module, ID_EC, ID_RSA, LABEL_A};

fn mechanisms(m: &Module, serial: &str) -> Vec<u64> {
    let slot = m.slot_with_serial(serial);
    let mut v: Vec<u64> = m
        .ctx()
        .get_mechanism_list(slot)
        .expect("C_GetMechanismList")
        .into_iter()
        .map(u64::from)
        .collect();
    v.sort_unstable();
    v
}

/// The attributes `kinds` of every object of `class`, sorted so that two listings compare.
fn objects(s: &Session, class: ObjectClass, kinds: &[AttributeType]) -> Vec<Vec<Attribute>> {
    let mut v: Vec<Vec<Attribute>> = s
        .find_objects(&[Attribute::Class(class)])
        .expect("C_FindObjects")
        .into_iter()
        .map(|o| s.get_attributes(o, kinds).expect("C_GetAttributeValue"))
        .collect();
    v.sort_by_key(|a| format!("{a:?}"));
    v
}

/// Label, id, value, subject, issuer and serial of every certificate.
fn certificates(s: &Session) -> Vec<Vec<Attribute>> {
    use AttributeType::*;
    objects(
        s,
        ObjectClass::CERTIFICATE,
        &[Label, Id, Value, Subject, Issuer, SerialNumber],
    )
}

/// Label, id, key type, key material and usage of every public key.
fn public_keys(s: &Session) -> Vec<Vec<Attribute>> {
    use AttributeType::*;
    objects(
        s,
        ObjectClass::PUBLIC_KEY,
        &[
            Label,
            Id,
            KeyType,
            Modulus,
            PublicExponent,
            EcPoint,
            EcParams,
            Verify,
            Private,
        ],
    )
}

fn private_key_count(s: &Session) -> usize {
    s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .expect("C_FindObjects")
        .len()
}

#[test]
fn slot_and_token_info_match_softhsm() {
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let d_slot = direct.slot_with_serial(fx.serial_a());
    let d_info = direct.ctx().get_token_info(d_slot).unwrap();
    assert_eq!(d_info.label().trim(), LABEL_A);

    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let slots = shim.ctx().get_slots_with_token().expect("C_GetSlotList");
    assert_eq!(slots.len(), 1, "one token, one slot: {slots:?}");
    let info = shim.ctx().get_token_info(slots[0]).expect("C_GetTokenInfo");
    assert_eq!(info.label(), d_info.label());
    assert_eq!(info.serial_number(), d_info.serial_number());
    assert_eq!(info.serial_number().trim(), fx.serial_a());
    assert_eq!(info.manufacturer_id(), d_info.manufacturer_id());
    assert_eq!(info.model(), d_info.model());
    assert!(info.token_initialized() && info.login_required() && info.user_pin_initialized());

    let slot_info = shim.ctx().get_slot_info(slots[0]).expect("C_GetSlotInfo");
    assert!(slot_info.token_present());
    // The slot list without the token-present filter lists the same slot too.
    let all = shim.ctx().get_all_slots().expect("C_GetSlotList(FALSE)");
    assert!(all.contains(&slots[0]));
}

#[test]
fn mechanisms_match_softhsm() {
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let want = mechanisms(&direct, fx.serial_a());
    assert!(want.contains(&u64::from(MechanismType::SHA256_RSA_PKCS)));
    assert!(want.contains(&u64::from(MechanismType::ECDSA)));

    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    assert_eq!(mechanisms(&shim, fx.serial_a()), want);

    for mech in [
        MechanismType::SHA256_RSA_PKCS,
        MechanismType::ECDSA,
        MechanismType::RSA_PKCS,
    ] {
        let d = direct
            .ctx()
            .get_mechanism_info(direct.slot_with_serial(fx.serial_a()), mech)
            .unwrap();
        let s = shim
            .ctx()
            .get_mechanism_info(shim.slot_with_serial(fx.serial_a()), mech)
            .expect("C_GetMechanismInfo");
        assert_eq!(format!("{s:?}"), format!("{d:?}"), "{mech:?}");
        assert!(s.max_key_size() >= 2048 || mech == MechanismType::ECDSA);
    }
}

#[test]
fn public_objects_match_softhsm() {
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let ds = direct.session(fx.serial_a());
    let want_certs = certificates(&ds);
    let want_keys = public_keys(&ds);
    assert_eq!(want_certs.len(), 2);
    assert_eq!(want_keys.len(), 2);
    assert_eq!(private_key_count(&ds), 0, "no private keys before login");

    // The RSA certificate on the token is the CA-issued one on disk.
    let rsa_cert = find_one(&ds, ObjectClass::CERTIFICATE, ID_RSA);
    let value = ds
        .get_attributes(rsa_cert, &[AttributeType::Value])
        .unwrap();
    assert_eq!(
        value,
        vec![Attribute::Value(pem_cert_to_der(&fx.cert_pem(1)))]
    );

    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.session(fx.serial_a());
    assert_eq!(certificates(&s), want_certs);
    assert_eq!(public_keys(&s), want_keys);
    assert_eq!(private_key_count(&s), 0, "no private keys before login");

    // Searching by id and label finds the same single objects.
    let cert = find_one(&s, ObjectClass::CERTIFICATE, ID_RSA);
    let label = s.get_attributes(cert, &[AttributeType::Label]).unwrap();
    assert_eq!(label, vec![Attribute::Label(b"Nguyen Van A RSA".to_vec())]);
    let by_label = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(b"Nguyen Van A EC".to_vec()),
        ])
        .unwrap();
    assert_eq!(by_label.len(), 1);
    let id = s.get_attributes(by_label[0], &[AttributeType::Id]).unwrap();
    assert_eq!(id, vec![Attribute::Id(ID_EC.to_vec())]);

    // After login the private keys appear, with the same public attributes as directly.
    kyso_tests::login(&s, kyso_tests::USER_PIN).expect("C_Login");
    assert_eq!(private_key_count(&s), 2);
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    let attrs = s
        .get_attributes(key, &[AttributeType::Modulus, AttributeType::Label])
        .unwrap();
    let pubkey = find_one(&s, ObjectClass::PUBLIC_KEY, ID_RSA);
    let modulus = s.get_attributes(pubkey, &[AttributeType::Modulus]).unwrap();
    assert_eq!(attrs[0], modulus[0]);
    assert_eq!(attrs[1], Attribute::Label(b"Nguyen Van A RSA".to_vec()));
}

/// One raw attribute query: (type, buffer length or NULL).
type Query<'a> = &'a [(u64, Option<usize>)];

/// The raw `C_GetAttributeValue` cases whose results must be identical through the shim.
fn attribute_cases(m: &Module, serial: &str) -> Vec<(u64, Vec<AttributeResult>)> {
    let s = m.user_session(serial);
    let cert = find_one(&s, ObjectClass::CERTIFICATE, ID_RSA).handle();
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA).handle();
    let raw = m.raw();
    let h = s.handle();
    let cases: Vec<(u64, Query)> = vec![
        // Size query.
        (cert, &[(CKA_VALUE, None)]),
        // Big enough buffer.
        (cert, &[(CKA_VALUE, Some(4096)), (CKA_LABEL, Some(64))]),
        // Too small buffer, next to a size query and a buffer that fits.
        (
            cert,
            &[(CKA_LABEL, Some(64)), (CKA_VALUE, Some(10)), (CKA_ID, None)],
        ),
        // Attribute the object does not have.
        (cert, &[(CKA_MODULUS, None)]),
        (cert, &[(CKA_ID, Some(8)), (CKA_MODULUS, Some(256))]),
        // Sensitive attribute of a private key, alone and next to a public one.
        (key, &[(CKA_PRIVATE_EXPONENT, None)]),
        (
            key,
            &[(CKA_MODULUS, Some(512)), (CKA_PRIVATE_EXPONENT, Some(512))],
        ),
    ];
    cases
        .into_iter()
        .map(|(o, q)| raw.get_attribute_value(h, o, q))
        .collect()
}

#[test]
fn attribute_query_semantics_match_softhsm() {
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let want = attribute_cases(&direct, fx.serial_a());

    // What PKCS#11 says (and SoftHSM2 does), spelled out.
    let cert_der = pem_cert_to_der(&fx.cert_pem(1));
    let n = cert_der.len() as u64;
    assert_eq!(want[0], (CKR_OK, vec![(n, None)]));
    assert_eq!(
        want[1],
        (
            CKR_OK,
            vec![
                (n, Some(cert_der.clone())),
                (16, Some(b"Nguyen Van A RSA".to_vec()))
            ]
        )
    );
    assert_eq!(want[2].0, CKR_BUFFER_TOO_SMALL);
    assert_eq!(want[2].1[0], (16, Some(b"Nguyen Van A RSA".to_vec())));
    assert_eq!(want[2].1[1], (CK_UNAVAILABLE_INFORMATION, None));
    assert_eq!(want[2].1[2], (1, None));
    assert_eq!(
        want[3],
        (
            CKR_ATTRIBUTE_TYPE_INVALID,
            vec![(CK_UNAVAILABLE_INFORMATION, None)]
        )
    );
    assert_eq!(want[4].0, CKR_ATTRIBUTE_TYPE_INVALID);
    assert_eq!(want[4].1[0], (1, Some(ID_RSA.to_vec())));
    assert_eq!(
        want[5],
        (
            CKR_ATTRIBUTE_SENSITIVE,
            vec![(CK_UNAVAILABLE_INFORMATION, None)]
        )
    );
    assert_eq!(want[6].0, CKR_ATTRIBUTE_SENSITIVE);
    assert_eq!(want[6].1[0].0, 256, "RSA-2048 modulus");
    assert_eq!(want[6].1[1], (CK_UNAVAILABLE_INFORMATION, None));

    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let got = attribute_cases(&shim, fx.serial_a());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "case {i}");
    }
    assert_eq!(got.len(), want.len());
}
