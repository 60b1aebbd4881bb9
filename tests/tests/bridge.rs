//! kyso-bridge as web pages use it: a configured site gets the certificate and signatures that
//! OpenSSL verifies against the token's certificate, an unlisted site is asked about (refused,
//! then allowed for good), and bad input gets a status without changing anything.

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use kyso_tests::bridge::{bridge_config, bridge_pinentry, free_port, Bridge};
use kyso_tests::util::{openssl_verify_sha256, pem_cert_to_der, sha256};
use kyso_tests::{Daemon, DaemonConfig, Fixture};
use serde_json::Value;

const SITE: &str = "https://vpdt.example.gov.vn";
const DOCUMENT: &[u8] = b"Cong van so 123/UBND-VP: van ban mau de ky so.\n";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .expect("base64")
}

struct Setup {
    fx: Fixture,
    pin: std::path::PathBuf,
    daemon: Daemon,
    bridge: Bridge,
}

impl Setup {
    fn new(fx: Fixture, origins: &[&str]) -> Setup {
        let pin = fx.subdir("pinentry");
        let program = bridge_pinentry(&pin);
        let port = free_port();
        let daemon = Daemon::start_with(
            &fx,
            DaemonConfig {
                extra: bridge_config(&program, port, origins),
                ..Default::default()
            },
        );
        let bridge = Bridge::start(&daemon, port, &[]);
        Setup {
            fx,
            pin,
            daemon,
            bridge,
        }
    }

    /// The next answers to CONFIRM prompts (`ok`, `notok`, `cancel`).
    fn answers(&self, lines: &[&str]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.pin.join("confirms"))
            .expect("confirms");
        for l in lines {
            writeln!(f, "{l}").expect("write");
        }
    }

    /// What the pinentry was shown so far.
    fn seen(&self) -> String {
        std::fs::read_to_string(self.pin.join("seen")).unwrap_or_default()
    }

    fn confirms_shown(&self) -> usize {
        self.seen().lines().filter(|l| *l == "CONFIRM").count()
    }

    fn journal(&self) -> Vec<Value> {
        let path = self
            .daemon
            .config_path()
            .parent()
            .unwrap()
            .join("state/audit.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }
}

fn sign_msg(bridge: &Bridge, origin: &str, data: &[u8]) -> Value {
    let frame = format!(
        r#"{{"HashAlg":"SHA256","HashValue":"{}","Encode":"RSA"}}"#,
        b64(&sha256(data))
    );
    bridge.call("SignMsg", Some(origin), &frame)
}

#[test]
fn a_configured_site_gets_the_certificate_and_signatures_openssl_verifies() {
    let s = Setup::new(Fixture::new(), &[SITE]);
    // Two certificates (RSA 01, EC 02): the chooser offers the first; the user takes it.
    s.answers(&["ok"]);
    let info = s.bridge.call("GetCertInfo", Some(SITE), "get_cert_info");
    assert_eq!(info["Status"], 0, "{info}");
    let rsa_der = pem_cert_to_der(&s.fx.cert_pem(1));
    assert!(
        unb64(&info["CertInfo"]["Base64Data"]) == rsa_der,
        "another certificate"
    );
    assert!(
        info["CertInfo"]["Subject"]
            .as_str()
            .unwrap()
            .contains("NGUYEN VAN A"),
        "{info}"
    );
    assert!(info["CertInfo"]["ValidTo"].as_str().unwrap().ends_with('Z'));
    let seen = s.seen();
    assert!(
        seen.contains("SETNOTOK Chứng thư khác / Next"),
        "a chooser: {seen}"
    );
    assert!(
        !seen.contains("muốn dùng chữ ký số"),
        "a configured site is not asked about: {seen}"
    );

    // The batch's first signature is confirmed (naming the site), then kysod asks the PIN.
    s.answers(&["ok"]);
    let before = s.confirms_shown();
    let answer = sign_msg(&s.bridge, SITE, DOCUMENT);
    assert_eq!(answer["Status"], 0, "{answer}");
    let signature = unb64(&answer["Signature"]);
    assert!(
        unb64(&answer["CertBase64"]) == rsa_der,
        "another certificate"
    );
    assert!(openssl_verify_sha256(
        &s.fx.cert_pem(1),
        DOCUMENT,
        &signature
    ));
    let seen = s.seen();
    assert_eq!(s.confirms_shown(), before + 1);
    assert!(
        seen.contains(&format!("Trang web {SITE} yêu cầu ký số")),
        "{seen}"
    );
    assert!(seen.contains("GETPIN"), "kysod asked the PIN: {seen}");

    // The rest of the batch: no more questions, every signature journaled with the site.
    for i in 0..20 {
        let doc = format!("ho so hoc sinh {i}");
        let a = sign_msg(&s.bridge, SITE, doc.as_bytes());
        assert_eq!(a["Status"], 0, "{a}");
        assert!(openssl_verify_sha256(
            &s.fx.cert_pem(1),
            doc.as_bytes(),
            &unb64(&a["Signature"])
        ));
    }
    assert_eq!(
        s.confirms_shown(),
        before + 1,
        "one confirmation for the batch"
    );
    assert_eq!(
        s.seen().matches("GETPIN").count(),
        1,
        "one PIN for the site"
    );
    let signed: Vec<Value> = s
        .journal()
        .into_iter()
        .filter(|e| e["event"] == "signature" && e["result"] == "CKR_OK")
        .collect();
    assert_eq!(signed.len(), 21);
    for e in &signed {
        assert_eq!(e["site"], SITE, "{e}");
        assert!(
            e["document"]
                .as_str()
                .unwrap()
                .starts_with("SignMsg SHA256 "),
            "{e}"
        );
    }

    // VerifyMsg: the signature verifies; a changed document does not.
    let verify = |data: &[u8]| {
        s.bridge.call(
            "VerifyMsg",
            Some(SITE),
            &format!(
                r#"{{"Base64Content":"{}","Signature":"{}","CertBase64":"{}"}}"#,
                b64(data),
                b64(&signature),
                b64(&rsa_der)
            ),
        )
    };
    let ok = verify(DOCUMENT);
    assert_eq!(ok["Status"], 0, "{ok}");
    assert_eq!(ok["Valid"], true);
    assert_eq!(verify(b"another document")["Status"], 8);
}

#[test]
fn an_ec_certificate_signs_in_der_form() {
    let s = Setup::new(Fixture::new(), &[SITE]);
    // "Next" past the RSA certificate, then the EC one; then the signature's confirmation.
    s.answers(&["notok", "ok", "ok"]);
    let info = s.bridge.call("GetCertInfo", Some(SITE), "get_cert_info");
    assert!(
        unb64(&info["CertInfo"]["Base64Data"]) == pem_cert_to_der(&s.fx.cert_pem(2)),
        "another certificate"
    );
    let answer = sign_msg(&s.bridge, SITE, DOCUMENT);
    assert_eq!(answer["Status"], 0, "{answer}");
    let signature = unb64(&answer["Signature"]);
    assert_eq!(signature[0], 0x30, "DER SEQUENCE");
    assert!(openssl_verify_sha256(
        &s.fx.cert_pem(2),
        DOCUMENT,
        &signature
    ));
}

#[test]
fn an_expired_certificate_is_refused_by_kysod() {
    let s = Setup::new(Fixture::with_policy_certs(), &[SITE]);
    // The chooser: past 01 and 02 to 03, the expired one.
    s.answers(&["notok", "notok", "ok", "ok"]);
    let info = s.bridge.call("GetCertInfo", Some(SITE), "");
    assert!(
        unb64(&info["CertInfo"]["Base64Data"]) == pem_cert_to_der(&s.fx.cert_pem(3)),
        "another certificate"
    );
    let answer = sign_msg(&s.bridge, SITE, DOCUMENT);
    assert_eq!(answer["Status"], 7, "{answer}");
    assert!(
        answer["Message"].as_str().unwrap().contains("hết hạn"),
        "{answer}"
    );
}

#[test]
fn an_unlisted_site_is_asked_refused_then_allowed_for_good() {
    let mut s = Setup::new(Fixture::new(), &[SITE]);
    let school = "https://truonghoc.example.edu.vn";
    s.answers(&["cancel"]);
    let refused = s.bridge.call("GetCertInfo", Some(school), "get_cert_info");
    assert_eq!(refused["Status"], 2, "{refused}");
    let seen = s.seen();
    assert!(
        seen.contains(&format!("Trang web {school} muốn dùng chữ ký số")),
        "{seen}"
    );
    assert!(
        seen.contains("SETOK Cho phép lần này / Allow once"),
        "{seen}"
    );

    // Refused again without asking, also after a restart.
    let asked = s.confirms_shown();
    assert_eq!(
        s.bridge.call("SignMsg", Some(school), &b64(&[0u8; 32]))["Status"],
        2
    );
    s.bridge.restart();
    assert_eq!(s.bridge.call("GetCertInfo", Some(school), "")["Status"], 2);
    assert_eq!(s.confirms_shown(), asked);

    // The settings page lists the refusal; only the page itself can clear it.
    let (code, page) = s.bridge.https(&format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        s.bridge.port()
    ));
    assert_eq!(code, 200);
    assert!(
        page.contains(school) && page.contains("NGUYEN VAN A"),
        "{page}"
    );
    let token = page
        .split("name=\"kyso-token\" content=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page's token")
        .to_string();
    let post = |origin: &str, token: &str| {
        let body = format!(r#"{{"origin":"{school}"}}"#);
        s.bridge.https(&format!(
            "POST /revoke HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\nContent-Type: application/json\r\nX-Kyso-Token: {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len(),
            port = s.bridge.port()
        ))
        .0
    };
    assert_eq!(
        post("https://evil.example", &token),
        403,
        "another site cannot change settings"
    );
    assert_eq!(
        post(&format!("https://127.0.0.1:{}", s.bridge.port()), "0000"),
        403
    );
    assert_eq!(
        post(&format!("https://127.0.0.1:{}", s.bridge.port()), &token),
        200
    );

    // Asked again: "always", then the chooser.
    s.answers(&["notok", "ok"]);
    let info = s.bridge.call("GetCertInfo", Some(school), "get_cert_info");
    assert_eq!(info["Status"], 0, "{info}");
    let consent = std::fs::read_to_string(s.bridge.state().join("consent.json")).unwrap();
    assert!(consent.contains(school), "{consent}");

    // Remembered across a restart: only the chooser asks.
    s.bridge.restart();
    let asked = s.confirms_shown();
    s.answers(&["ok"]);
    assert_eq!(s.bridge.call("GetCertInfo", Some(school), "")["Status"], 0);
    assert_eq!(s.confirms_shown(), asked + 1);
}

#[test]
fn bad_input_gets_a_status_and_changes_nothing() {
    let mut s = Setup::new(Fixture::new(), &[SITE]);
    let b = &s.bridge;
    let status =
        |op: &str, origin: Option<&str>, frame: &str| b.call(op, origin, frame)["Status"].clone();
    assert_eq!(status("GetCertInfo", None, "get_cert_info"), 3);
    assert_eq!(status("GetCertInfo", Some("null"), "get_cert_info"), 3);
    assert_eq!(status("GetCertInfo", Some("file://"), "get_cert_info"), 3);
    assert_eq!(status("SignMsg", Some(SITE), "{\"HashValue\":"), 10);
    assert_eq!(status("SignMsg", Some(SITE), r#"{"HashValue":42}"#), 10);
    assert_eq!(
        status(
            "SignMsg",
            Some(SITE),
            r#"{"HashAlg":"SHA256","HashValue":"AAAA"}"#
        ),
        10
    );
    assert_eq!(
        status(
            "SignXML",
            Some(SITE),
            r#"{"Base64Content":"PGEvPg==","ReturnSignatureOnly":[]}"#
        ),
        10
    );
    assert_eq!(status("NoSuchOperation", Some(SITE), "x"), 40);
    assert_eq!(status("SignJson", Some(SITE), "{}"), 40);
    // A document operation without its fields.
    assert_eq!(status("SignPDF", Some(SITE), "{}"), 10);
    let lic = b.call("GetLicenseRequest", Some(SITE), "request");
    assert_eq!(
        lic,
        serde_json::json!({"Status":0,"LicenseRequest":"","Error":""})
    );
    let binary = b
        .call_message(
            "SignMsg",
            Some(SITE),
            tungstenite::Message::binary(vec![1u8, 2, 3]),
        )
        .unwrap();
    assert_eq!(binary["Status"], 13);
    let huge = "A".repeat(9 << 20);
    let too_large = b.call_message("SignXML", Some(SITE), tungstenite::Message::text(huge));
    match too_large {
        Ok(a) => assert_eq!(a["Status"], 12, "{a}"),
        Err(e) => assert!(
            e.contains("closed") || e.contains("reset") || e.contains("Broken pipe"),
            "{e}"
        ),
    }

    // A silent page and a flood of idle connections do not hold up a working page.
    let silent = b.websocket("SignMsg", Some(SITE)).expect("open");
    let flood: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", b.port())).ok())
        .collect();
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", b.port())).unwrap();
    garbage
        .write_all(&[0x16, 3, 1, 0xff, 0xff, 0, 0, 0])
        .unwrap();
    drop(flood);
    let start = Instant::now();
    let lic = loop {
        match b.call_message(
            "GetLicenseRequest",
            Some(SITE),
            tungstenite::Message::text("request"),
        ) {
            Ok(a) => break a,
            Err(_) if start.elapsed() < Duration::from_secs(15) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("the bridge stalled: {e}"),
        }
    };
    assert_eq!(lic["Status"], 0);
    drop(silent);
    assert!(s.bridge.is_running());
    assert!(
        !s.seen().contains("CONFIRM"),
        "bad input asked nobody anything: {}",
        s.seen()
    );
    assert!(s.journal().iter().all(|e| e["event"] != "signature"));
}

/// The bridge's first start makes its certificate and registers its CA in the browsers of the
/// user running it (here the harness's home for the bridge): Chromium's NSS database.
#[test]
fn a_new_certificate_is_trusted_in_the_users_browsers_at_once() {
    let s = Setup::new(Fixture::new(), &[]);
    let home = s
        .daemon
        .config_path()
        .parent()
        .unwrap()
        .join("home/.pki/nssdb");
    let out = std::process::Command::new("certutil")
        .args(["-L", "-d"])
        .arg(format!("sql:{}", home.display()))
        .output()
        .expect("certutil (libnss3-tools)");
    let list = String::from_utf8_lossy(&out.stdout);
    // The nickname kyso-bridge gives its CA.
    let name = "kyso bridge local CA (127.0.0.1, localhost)";
    assert!(
        list.contains(name),
        "the CA in {}: {list}\n{}",
        home.display(),
        s.bridge.log()
    );
    let ca = std::fs::read_to_string(s.bridge.ca_pem()).expect("the bridge's CA");
    let out = std::process::Command::new("certutil")
        .args(["-L", "-a", "-n", name, "-d"])
        .arg(format!("sql:{}", home.display()))
        .output()
        .expect("certutil");
    let registered = String::from_utf8_lossy(&out.stdout);
    let body = |pem: &str| -> String { pem.lines().filter(|l| !l.starts_with("-----")).collect() };
    assert_eq!(body(&registered), body(&ca), "the bridge's own CA");
}
