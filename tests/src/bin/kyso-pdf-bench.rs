//! kyso-pdf-bench: signing and verifying a 10 MB, 100-page PDF with kyso and with pyHanko, on
//! the same SoftHSM2 token (RSA-2048), side by side in one run, rounds alternating. Prints the
//! medians, the ratios, and what kyso adds beyond the token's own signature.
//!
//! - token: one `C_Sign` (CKM_RSA_PKCS over a SHA-256 DigestInfo) on SoftHSM2 in process.
//! - kyso sign / verify: the `kyso` command, start to finish (process start, kysod, PDF work).
//! - pyHanko: in one Python process per round, the time of `sign_pdf` (PKCS#11 on SoftHSM2
//!   directly) and of `validate_pdf_signature`, imports and token session opening excluded.
//!
//! Run: `cargo build --release --workspace && target/release/kyso-pdf-bench [--rounds N]`

use std::process::Command;
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use kyso_tests::bridge::bridge_pinentry;
use kyso_tests::pdf::{pyhanko_python, sample_pdf};
use kyso_tests::util::{find_one, run, sha256_digest_info};
use kyso_tests::{
    target_dir, toml_str, Daemon, DaemonConfig, Fixture, Module, ID_RSA, LABEL_A, USER_PIN,
};

const PYHANKO: &str = r#"
import sys, time, json, io
from pyhanko.sign import signers, pkcs11
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko_certvalidator import ValidationContext
from pyhanko.keys import load_cert_from_pemder
module, label, pin, pdf, signed_by_kyso, ca = sys.argv[1:7]
session = pkcs11.open_pkcs11_session(module, token_label=label, user_pin=pin)
signer = pkcs11.PKCS11Signer(session, key_id=b"\x01", cert_id=b"\x01", use_raw_mechanism=False)
data = open(pdf, "rb").read()
t = time.perf_counter()
w = IncrementalPdfFileWriter(io.BytesIO(data))
out = signers.sign_pdf(w, signers.PdfSignatureMetadata(field_name="Signature1"), signer=signer)
sign_s = time.perf_counter() - t
ctx = ValidationContext(trust_roots=[load_cert_from_pemder(ca)], allow_fetching=False, revocation_mode="soft-fail")
kyso_signed = open(signed_by_kyso, "rb").read()
t = time.perf_counter()
r = PdfFileReader(io.BytesIO(kyso_signed))
st = validate_pdf_signature(r.embedded_signatures[0], ctx)
verify_s = time.perf_counter() - t
print(json.dumps({"sign": sign_s, "verify": verify_s, "intact": bool(st.intact)}))
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn timed(cmd: &mut Command) -> f64 {
    let start = Instant::now();
    let out = run(cmd, Duration::from_secs(300));
    let took = start.elapsed().as_secs_f64();
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{cmd:?}: {}{}",
        out.stdout,
        out.stderr
    );
    took
}

fn main() {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let fx = Fixture::new();
    let prompts = fx.subdir("prompts");
    let pinentry = bridge_pinentry(&prompts);
    let daemon = Daemon::start_with(
        &fx,
        DaemonConfig {
            log: "warn".into(),
            extra: format!("pinentry = {}\n", toml_str(&pinentry.to_string_lossy())),
            ..Default::default()
        },
    );
    let dir = fx.subdir("bench");
    let input = dir.join("10mb.pdf");
    std::fs::write(&input, sample_pdf(100, 100_000)).expect("write the PDF");
    let size = std::fs::metadata(&input).unwrap().len();
    let kyso = target_dir().join("kyso");
    let trust = fx.subdir("trust");
    std::fs::copy(fx.ca_pem(), trust.join("ca.pem")).unwrap();

    // The token's own signature, in process.
    let softhsm = Module::softhsm(&fx);
    let session = softhsm.user_session(fx.serial_a());
    let key = find_one(&session, ObjectClass::PRIVATE_KEY, ID_RSA);
    let info = sha256_digest_info(b"kyso-pdf-bench");
    let token: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            session
                .sign(&Mechanism::RsaPkcs, key, &info)
                .expect("C_Sign");
            t.elapsed().as_secs_f64()
        })
        .collect();
    let token = median(token);

    let (mut kyso_sign, mut kyso_verify, mut py_sign, mut py_verify) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let signed = dir.join("signed.pdf");
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        let _ = std::fs::remove_file(&signed);
        kyso_sign.push(timed(
            Command::new(&kyso)
                .arg("sign")
                .arg(&input)
                .arg("--out")
                .arg(&signed)
                .args(["--key-id", "01", "--socket"])
                .arg(daemon.socket())
                .arg("--config")
                .arg(daemon.config_path()),
        ));
        kyso_verify.push(timed(
            Command::new(&kyso)
                .arg("verify")
                .arg(&signed)
                .args(["--offline", "--trust"])
                .arg(&trust)
                .arg("--config")
                .arg(daemon.config_path()),
        ));
        let out = run(
            Command::new(pyhanko_python())
                .args(["-W", "ignore", "-c", PYHANKO])
                .arg(fx.softhsm_module())
                .args([LABEL_A, USER_PIN])
                .arg(&input)
                .arg(&signed)
                .arg(fx.ca_pem())
                .env("SOFTHSM2_CONF", fx.softhsm_conf()),
            Duration::from_secs(600),
        );
        assert!(out.status.success(), "pyHanko: {}", out.stderr);
        let v: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).expect("pyHanko's figures");
        assert_eq!(v["intact"], true, "pyHanko finds kyso's signature intact");
        py_sign.push(v["sign"].as_f64().unwrap());
        py_verify.push(v["verify"].as_f64().unwrap());
    }
    let ms = |s: f64| s * 1000.0;
    let (ks, kv, ps, pv) = (
        median(kyso_sign),
        median(kyso_verify),
        median(py_sign),
        median(py_verify),
    );
    println!(
        "PDF: {} pages, {:.1} MB; RSA-2048 on SoftHSM2; median of {rounds} rounds\n",
        100,
        size as f64 / 1e6
    );
    println!("| figure | kyso | pyHanko | kyso / pyHanko | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| sign | {:.0} ms | {:.0} ms | {:.2} | at most 0.5 |",
        ms(ks),
        ms(ps),
        ks / ps
    );
    println!(
        "| verify | {:.0} ms | {:.0} ms | {:.2} | at most 0.5 |",
        ms(kv),
        ms(pv),
        kv / pv
    );
    println!(
        "\nThe token's own signature: {:.1} ms; kyso sign adds {:.0} ms (target: at most 300 ms)",
        ms(token),
        ms(ks - token)
    );
    println!(
        "kyso verify takes {:.0} ms in all (target: at most 300 ms)",
        ms(kv)
    );
}
