//! kyso-bridge-bench: 500 SignMsg in a row from one "page" (a new TLS + WebSocket connection
//! per call, as pages make them, TLS sessions resumed as browsers do) against signing the same
//! SHA-256 hashes through libkyso_pkcs11.so directly (CKM_RSA_PKCS over the DigestInfo), on the
//! same SoftHSM2 token and kysod. Prints rates, the ratio, and the median round trip added.
//! Alternates the two in rounds so load on a shared machine touches both alike.
//!
//! Run: `cargo build --release --workspace && cargo run --release -p kyso-tests --bin kyso-bridge-bench`

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use kyso_tests::bridge::{bridge_config, bridge_pinentry, free_port, read_answer, Bridge};
use kyso_tests::util::{find_one, sha256, sha256_digest_info};
use kyso_tests::{Daemon, DaemonConfig, Fixture, Module, ID_RSA};

const CALLS: usize = 500;
const ROUNDS: usize = 3;
const SITE: &str = "https://vpdt.example.gov.vn";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let fx = Fixture::new();
    let pin = fx.subdir("pinentry");
    let program = bridge_pinentry(&pin);
    let port = free_port();
    let daemon = Daemon::start_with(
        &fx,
        DaemonConfig {
            log: "warn".into(),
            extra: bridge_config(&program, port, &[SITE]),
            ..Default::default()
        },
    );
    let bridge = Bridge::start(&daemon, port, &[("RUST_LOG", "warn")]);
    let shim = Module::shim(&daemon);
    let session = shim.user_session(fx.serial_a());
    let key = find_one(&session, ObjectClass::PRIVATE_KEY, ID_RSA);

    // One client configuration for every call: TLS sessions are resumed, as in a browser.
    let config = {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(bridge.ca_pem()).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        // As a browser: X25519 first (ring's default list starts with P-384).
        #[allow(deprecated)]
        let mut provider = rustls::crypto::ring::default_provider();
        {
            use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
            provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
        }
        let provider = Arc::new(provider);
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    let hashes: Vec<Vec<u8>> = (0..CALLS)
        .map(|i| sha256(format!("ho so {i}").as_bytes()))
        .collect();
    let call_op = |op: &str, frame: String| {
        use tungstenite::client::IntoClientRequest;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_nodelay(true).unwrap();
        let stream = rustls::StreamOwned::new(conn, sock);
        let mut req = format!("wss://127.0.0.1:{port}/{op}")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("Origin", SITE.parse().unwrap());
        let (mut ws, _) = tungstenite::client::client(req, stream).unwrap();
        ws.send(tungstenite::Message::text(frame)).unwrap();
        let answer = read_answer(&mut ws).unwrap();
        assert_eq!(answer["Status"], 0, "{answer}");
    };
    let call = |hash: &[u8]| {
        let frame = format!(
            r#"{{"HashAlg":"SHA256","HashValue":"{}"}}"#,
            base64::engine::general_purpose::STANDARD.encode(hash)
        );
        call_op("SignMsg", frame)
    };
    call(&hashes[0]); // the batch's confirmation and the PIN, outside the figures

    let (mut direct, mut bridged, mut direct_ms, mut bridged_ms) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for h in &hashes {
            let t = Instant::now();
            let data = {
                let mut d = sha256_digest_info(b"");
                d.truncate(d.len() - 32);
                d.extend_from_slice(h);
                d
            };
            session
                .sign(&Mechanism::RsaPkcs, key, &data)
                .expect("C_Sign");
            direct_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        direct.push(CALLS as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        for h in &hashes {
            let t = Instant::now();
            call(h);
            bridged_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        bridged.push(CALLS as f64 / start.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_millis(200));
    }
    let transport: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            call_op("GetLicenseRequest", "request".into());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "GetLicenseRequest round trip (TLS + WebSocket, no token): median {:.2} ms",
        median(transport)
    );
    let (d, b) = (median(direct), median(bridged));
    let (dm, bm) = (median(direct_ms), median(bridged_ms));
    println!("RSA-2048 SHA-256, {CALLS} signatures in a row, median of {ROUNDS} rounds:");
    println!("  through libkyso_pkcs11.so: {d:8.1} /s   (median {dm:.2} ms each)");
    println!("  SignMsg through kyso-bridge: {b:6.1} /s   (median {bm:.2} ms each)");
    println!(
        "  ratio {:.1} %, round trip added {:.2} ms (median)",
        100.0 * b / d,
        bm - dm
    );
    drop(bridge);
}
