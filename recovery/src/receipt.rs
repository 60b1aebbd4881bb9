//! The receipt `kyso recover apply` writes: it names the request (serial, nonce) and the grant
//! (its digest) and carries an HMAC-SHA256 under the receipt key sealed in the grant. Only
//! whoever opened the grant knows that key, and kysod writes the receipt only after the SO PIN
//! was rotated, so a receipt that verifies proves the rotation without revealing any PIN.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::artefact::{Receipt, RECEIPT_KIND, VERSION};

fn mac_input(serial: &str, nonce: &str, grant_sha256: &str, applied: i64) -> Vec<u8> {
    format!("kyso recovery receipt v1\n{serial}\n{nonce}\n{grant_sha256}\n{applied}").into_bytes()
}

fn mac(key: &[u8; 32], input: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(input);
    m
}

/// Makes the receipt for an applied grant.
pub fn make(key: &[u8; 32], serial: &str, nonce: &str, grant_sha256: &str) -> Receipt {
    let applied = crate::now();
    let tag = mac(key, &mac_input(serial, nonce, grant_sha256, applied))
        .finalize()
        .into_bytes();
    Receipt {
        kind: RECEIPT_KIND.into(),
        version: VERSION,
        serial: serial.into(),
        nonce: nonce.into(),
        grant_sha256: grant_sha256.into(),
        applied,
        mac: crate::hex(&tag),
    }
}

/// Whether `receipt` was made with `key` (constant-time comparison).
pub fn verify(key: &[u8; 32], receipt: &Receipt) -> bool {
    let Some(tag) = kyso_proto::hex::decode(&receipt.mac) else {
        return false;
    };
    mac(
        key,
        &mac_input(
            &receipt.serial,
            &receipt.nonce,
            &receipt.grant_sha256,
            receipt.applied,
        ),
    )
    .verify_slice(&tag)
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_verify_under_their_key_only() {
        let r = make(&[1; 32], "0123", &"cd".repeat(16), "ff");
        assert!(verify(&[1; 32], &r));
        assert!(!verify(&[2; 32], &r));
        let mut forged = r.clone();
        forged.serial = "9999".into();
        assert!(!verify(&[1; 32], &forged));
    }
}
