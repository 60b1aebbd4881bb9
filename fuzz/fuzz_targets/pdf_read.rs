//! Outside PDFs as kyso reads them: `kyso verify`, the bridge's `VerifyPDF` and document
//! operations. Verifying any bytes gives a report or an error, never a panic, and a report
//! never calls a signature valid without trusted anchors; signing them (a signer that answers
//! without a token) gives a signed file that starts with the input, or an error.
#![no_main]

use kyso_pdf::net::Offline;
use kyso_pdf::signer::{DigestAlg, KeyKind, Signer};
use kyso_pdf::verify::{self, Verdict};
use libfuzzer_sys::fuzz_target;

/// A certificate of the demo CA (EC P-256), with no key behind it: signing answers zeros.
const CERT: &[u8] = include_bytes!("../testdata/pdf-signer.der");

struct NoToken;

impl Signer for NoToken {
    fn certificate(&self) -> &[u8] {
        CERT
    }
    fn key_kind(&self) -> KeyKind {
        KeyKind::Ec
    }
    fn sign_digest(&mut self, _: DigestAlg, _: &[u8]) -> Result<Vec<u8>, String> {
        Ok(vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])
    }
}

fuzz_target!(|data: &[u8]| {
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let options = verify::Options {
        trust_anchors: Vec::new(),
        fetch: &Offline,
        now,
    };
    if let Ok(report) = verify::verify_pdf("fuzz.pdf", data, &options) {
        assert!(report.signatures.iter().all(|s| s.verdict != Verdict::Valid));
        let _ = report.text();
    }
    let options = kyso_pdf::sign::Options {
        field_name: None,
        reason: None,
        location: None,
        appearance: None,
        timestamp_url: None,
        fetch: &Offline,
        time: now,
    };
    if let Ok(signed) = kyso_pdf::sign::sign_pdf(data, &mut NoToken, &options) {
        assert!(signed.starts_with(data), "an incremental update keeps the input");
    }
});
