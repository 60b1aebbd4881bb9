//! kysod serves a second vendor's module: opencryptoki's soft token (the token the lockout and
//! recovery tests use) is listed, logs in and signs through the shim, and the signature
//! verifies against its certificate.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use kyso_tests::util::{find_one, openssl_verify_sha256, sha256_digest_info};
use kyso_tests::{
    login, Daemon, DaemonConfig, Fixture, Module, LABEL_A, LABEL_C, OCK_ID_RSA, OCK_USER_PIN,
};

const DOCUMENT: &[u8] = b"Cong van so 12/STP-VP: ky bang token cua nha cung cap thu hai.\n";

#[test]
fn opencryptoki_token_signs_through_kysod_beside_softhsm2() {
    let fx = Fixture::with_opencryptoki();
    let ock = fx.opencryptoki();
    let daemon = Daemon::start_with(&fx, DaemonConfig::with_opencryptoki());
    let shim = Module::shim(&daemon);

    // Both vendors' tokens are in the slot list.
    let labels: Vec<String> = shim
        .ctx()
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .map(|s| {
            shim.ctx()
                .get_token_info(s)
                .expect("C_GetTokenInfo")
                .label()
                .to_string()
        })
        .collect();
    assert!(labels.iter().any(|l| l == LABEL_A), "{labels:?}");
    assert!(labels.iter().any(|l| l == LABEL_C), "{labels:?}");

    let s = shim.session(ock.serial());
    login(&s, OCK_USER_PIN).expect("C_Login on opencryptoki through kysod");
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, OCK_ID_RSA);
    let sig = s
        .sign(&Mechanism::RsaPkcs, key, &sha256_digest_info(DOCUMENT))
        .expect("C_Sign(CKM_RSA_PKCS)");
    assert_eq!(sig.len(), 256);
    assert!(openssl_verify_sha256(&ock.cert_pem(), DOCUMENT, &sig));
    assert!(!openssl_verify_sha256(&ock.cert_pem(), b"other", &sig));
}
