//! The recovery artefacts (request, grant, receipt) and the helpdesk public key, as kysod,
//! `kyso` and `kyso-helpdesk` read them from files that travel by e-mail or USB stick: any
//! bytes give an artefact or an error, never a panic. An artefact that parses has the checked
//! fields in shape and survives writing and reading again; a grant goes on through signature
//! checking and, re-signed by a key the target trusts, through opening, which must refuse
//! what it cannot decrypt rather than fail in any other way.
#![no_main]

use ed25519_dalek::Signer;
use kyso_recovery::artefact::{encode_b64, parse_grant, parse_receipt, parse_request};
use kyso_recovery::grant::{self, GrantError};
use kyso_recovery::receipt;
use libfuzzer_sys::fuzz_target;

fn nonce_in_shape(nonce: &str) -> bool {
    nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit())
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_request(data) {
        assert!(nonce_in_shape(&request.nonce));
        assert!(request.public_key_bytes().is_ok());
        let again = serde_json::to_vec(&request).expect("a request serialises");
        assert_eq!(parse_request(&again).as_ref(), Ok(&request));
    }

    if let Ok(grant) = parse_grant(data) {
        assert!(nonce_in_shape(&grant.body.nonce));
        let again = serde_json::to_vec(&grant).expect("a grant serialises");
        assert_eq!(parse_grant(&again).as_ref(), Ok(&grant));

        let helpdesk = grant::signing_key(&[7; 32]);
        let trusted = [helpdesk.verifying_key()];
        // Only the holder of the helpdesk key can sign: the fuzzer cannot.
        assert_eq!(
            grant::check_signature(&grant, &trusted),
            Err(GrantError::Untrusted)
        );
        let mut signed = grant.clone();
        signed.signature = encode_b64(&helpdesk.sign(&signed.body.signed_bytes()).to_bytes());
        assert_eq!(grant::check_signature(&signed, &trusted), Ok(()));
        let made = grant::Made {
            serial: &signed.body.serial,
            sha256: &signed.body.request_sha256,
            private_key: &[9; 32],
        };
        match grant::open(&signed, &trusted, &made, i64::MIN) {
            Ok(_) | Err(GrantError::Sealing) | Err(GrantError::Secrets) => {}
            Err(GrantError::Expired(at)) => assert_eq!(at, i64::MIN),
            Err(e) => panic!("a signed, well-formed grant refused as {e:?}"),
        }
    }

    if let Ok(r) = parse_receipt(data) {
        assert!(nonce_in_shape(&r.nonce));
        assert_eq!(r.mac.len(), 64);
        let again = serde_json::to_vec(&r).expect("a receipt serialises");
        assert_eq!(parse_receipt(&again).as_ref(), Ok(&r));
        // Nobody but the holder of the grant's receipt key can make a receipt that verifies
        // (the seeds are made with another key than this one).
        assert!(!receipt::verify(&[3; 32], &r));
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let _ = grant::parse_verifying_key(text);
    }
});
