//! kyso-bridge with a real browser: Debian's Chromium, headless, trusting the bridge through
//! the NSS database `kyso bridge trust` fills (no --ignore-certificate-errors), loads pages of
//! a local web application it treats as public sites (--ip-address-space-overrides), let
//! through to 127.0.0.1 by the managed LoopbackNetworkAllowedForUrls policy. The pages call
//! the bridge as e-office pages do (tests/browser/signplugin.js); the results are verified
//! here with OpenSSL and xmlsec1. Needs root (the policy lives in /etc/chromium), chromium,
//! node and tests/browser/node_modules (scripts/setup-debian installs them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use kyso_tests::bridge::{bridge_config, bridge_pinentry, free_port, Bridge};
use kyso_tests::util::{openssl_verify_sha256, pem_cert_to_der, run, sha256};
use kyso_tests::{repo_root, target_dir, Daemon, DaemonConfig, Fixture};
use serde_json::Value;

const DOCUMENT: &[u8] = b"Quyet dinh so 68/QD-UBND ve viec ky so van ban.\n";
const XML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<HoSo xmlns=\"urn:vn:gov:hoso\" xmlns:x=\"urn:x\" Id=\"hs1\">\n  <!-- hồ sơ mẫu -->\n  <TieuDe lang=\"vi\">Công văn số 123/UBND-VP</TieuDe>\n  <x:Muc a=\"1\" b=\"&lt;2&gt;\"><![CDATA[a < b && c]]></x:Muc>\n  <Trong/>\n</HoSo>\n";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .expect("base64")
}

/// The test's own managed policy file, removed when dropped.
struct Policy(PathBuf);

impl Drop for Policy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Policy {
    /// The managed LoopbackNetworkAllowedForUrls policy letting `origins` reach the bridge on
    /// `port`, in a file of the test's own. Needs root.
    fn allow(port: u16, origins: &[&str]) -> Policy {
        let dir = Path::new("/etc/chromium/policies/managed");
        std::fs::create_dir_all(dir).expect("policy directory (needs root)");
        let policy = Policy(dir.join(format!("kyso-test-{port}.json")));
        std::fs::write(
            &policy.0,
            serde_json::json!({ "LoopbackNetworkAllowedForUrls": origins }).to_string(),
        )
        .unwrap();
        policy
    }
}

/// As a user would: `kyso bridge trust --user-only` fills the NSS database of `home`, which
/// Chromium then reads.
fn trust_in(daemon: &Daemon, home: &Path) {
    let out = run(
        Command::new(target_dir().join("kyso"))
            .args(["bridge", "trust", "--user-only", "--config"])
            .arg(daemon.config_path())
            .env("HOME", home),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "kyso bridge trust: {}", out.text());
    assert!(home.join(".pki/nssdb/cert9.db").exists());
}

/// xmlsec1 verifies `xml` against the demo CA.
fn xmlsec_verifies(xml: &[u8], ca: &Path, dir: &Path) -> (bool, String) {
    let file = dir.join("signed.xml");
    std::fs::write(&file, xml).unwrap();
    let out = run(
        Command::new("xmlsec1")
            .arg("--verify")
            .arg("--trusted-pem")
            .arg(ca)
            .arg("--enabled-key-data")
            .arg("x509")
            .arg(&file),
        Duration::from_secs(30),
    );
    (out.status.success(), out.text())
}

#[test]
fn chromium_signs_through_the_bridge_and_asks_about_unlisted_sites() {
    let fx = Fixture::new();
    let pin = fx.subdir("pinentry");
    let program = bridge_pinentry(&pin);
    let (bridge_port, site, ask, gated) = (free_port(), free_port(), free_port(), free_port());
    let site_origin = format!("http://127.0.0.1:{site}");
    let ask_origin = format!("http://127.0.0.1:{ask}");
    let daemon = Daemon::start_with(
        &fx,
        DaemonConfig {
            extra: bridge_config(&program, bridge_port, &[&site_origin]),
            ..Default::default()
        },
    );
    let home = fx.subdir("home");
    trust_in(&daemon, &home);
    let bridge = Bridge::start(&daemon, bridge_port, &[]);

    // The loopback policy names the configured site and the unlisted one, not the gated one.
    let policy = Policy::allow(bridge_port, &[&site_origin, &ask_origin]);

    // The user's answers, in the order the pages ask: the certificate (RSA, first), the
    // batch, two XML signatures; the unlisted site: refuse; after the refusal is cleared on
    // the settings page, "always", then the certificate.
    std::fs::write(pin.join("confirms"), "ok\nok\nok\nok\ncancel\nnotok\nok\n").unwrap();

    let out_dir = fx.subdir("browser");
    let browser_dir = repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "run npm ci in tests/browser (scripts/setup-debian does)"
    );
    let out = run(
        Command::new("node")
            .arg(browser_dir.join("bridge_test.mjs"))
            .env("HOME", &home)
            .env("BRIDGE_PORT", bridge_port.to_string())
            .env("SITE_PORT", site.to_string())
            .env("ASK_PORT", ask.to_string())
            .env("GATED_PORT", gated.to_string())
            .env("DOCUMENT_SHA256", b64(&sha256(DOCUMENT)))
            .env("XML", b64(XML.as_bytes()))
            .env("OUT", &out_dir),
        Duration::from_secs(150),
    );
    let results: Value = serde_json::from_slice(
        &std::fs::read(out_dir.join("results.json"))
            .unwrap_or_else(|_| panic!("no results: {}\nbridge:\n{}", out.text(), bridge.log())),
    )
    .unwrap();
    assert!(
        results.get("error").is_none(),
        "{results:#}\n{}\nbridge:\n{}",
        out.text(),
        bridge.log()
    );

    // The certificate and the hash's signature, checked with OpenSSL.
    let rsa_der = pem_cert_to_der(&fx.cert_pem(1));
    assert_eq!(results["cert"]["Status"], 0, "{results:#}");
    assert!(unb64(&results["cert"]["CertInfo"]["Base64Data"]) == rsa_der);
    assert_eq!(results["sign"]["Status"], 0, "{results:#}");
    assert!(openssl_verify_sha256(
        &fx.cert_pem(1),
        DOCUMENT,
        &unb64(&results["sign"]["Signature"])
    ));

    // The XML document, enveloped and as a lone <Signature>, checked with xmlsec1.
    assert_eq!(results["xml"]["Status"], 0, "{results:#}");
    let signed = unb64(&results["xml"]["Signature"]);
    let (ok, text) = xmlsec_verifies(&signed, &fx.ca_pem(), &out_dir);
    assert!(ok, "xmlsec1: {text}\n{}", String::from_utf8_lossy(&signed));
    let detached = String::from_utf8(unb64(&results["xmlDetached"]["Signature"])).unwrap();
    assert!(detached.starts_with("<Signature"), "{detached}");
    let rebuilt = XML.replacen("</HoSo>", &format!("{detached}</HoSo>"), 1);
    let (ok, text) = xmlsec_verifies(rebuilt.as_bytes(), &fx.ca_pem(), &out_dir);
    assert!(ok, "xmlsec1 (signature put back): {text}");
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("123/UBND-VP", "124/UBND-VP");
    assert!(!xmlsec_verifies(tampered.as_bytes(), &fx.ca_pem(), &out_dir).0);

    // Not in the loopback policy: Chromium blocks the page's connection.
    assert_eq!(results["gated"]["Status"], -1, "{results:#}");

    // The unlisted site: asked, refused, refused again without asking; cleared on the
    // settings page; asked again and allowed.
    assert_eq!(results["askRefused"]["Status"], 2, "{results:#}");
    assert_eq!(results["askRefusedAgain"]["Status"], 2, "{results:#}");
    assert_eq!(results["clearButtons"], 1, "{results:#}");
    assert_eq!(results["askAllowed"]["Status"], 0, "{results:#}");
    let seen = std::fs::read_to_string(pin.join("seen")).unwrap();
    assert_eq!(
        seen.matches(&format!("Trang web {ask_origin} muốn dùng chữ ký số"))
            .count(),
        2,
        "{seen}"
    );
    assert!(
        !seen.contains(&format!("Trang web {site_origin} muốn")),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("Trang web {site_origin} yêu cầu ký số")),
        "{seen}"
    );

    // The settings page shows the token, its certificates and the site allowed for good.
    let text = results["settingsText"].as_str().unwrap_or_default();
    for want in [
        "NGUYEN VAN A",
        "Chứng thư số",
        &ask_origin,
        "Chữ ký gần đây",
    ] {
        assert!(text.contains(want), "settings page lacks {want}: {text}");
    }
    let png = std::fs::metadata(out_dir.join("settings.png"))
        .expect("screenshot")
        .len();
    assert!(png > 10_000, "screenshot of {png} bytes");
    if let Some(keep) = std::env::var_os("KYSO_KEEP_SCREENSHOTS") {
        let _ = std::fs::copy(
            out_dir.join("settings.png"),
            Path::new(&keep).join("bridge-settings.png"),
        );
    }
    drop(policy);
    drop(bridge);
}

/// A document's way through an e-office page in Chromium: the leader approves it
/// (SignApproved), the clerk seals and issues it (SignIssued); kyso-bridge fetches the PDF from
/// the web application, signs it and uploads it to the page's handler. The uploaded file has
/// two signatures pyHanko and pdfsig accept, and its first page shows the seal where Decree 30
/// puts it: at real size over the left third of the leader's signature.
#[test]
fn chromium_has_a_document_approved_then_sealed() {
    use kyso_tests::pdf::{
        pdfsig_valid_count, pixels_where, pyhanko_validate, render_page, sample_pdf, seal_png,
        signature_png,
    };
    let fx = Fixture::new();
    let pin = fx.subdir("pinentry");
    let program = bridge_pinentry(&pin);
    let images = fx.subdir("images");
    seal_png(&images.join("seal.png"));
    signature_png(&images.join("signature.png"));
    let (bridge_port, site) = (free_port(), free_port());
    let site_origin = format!("http://127.0.0.1:{site}");
    let daemon = Daemon::start_with(
        &fx,
        DaemonConfig {
            extra: format!(
                "{}\n[documents]\nseal_image = {}\nsignature_image = {}\n",
                bridge_config(&program, bridge_port, &[&site_origin]),
                kyso_tests::toml_str(&images.join("seal.png").to_string_lossy()),
                kyso_tests::toml_str(&images.join("signature.png").to_string_lossy()),
            ),
            ..Default::default()
        },
    );
    let home = fx.subdir("home");
    trust_in(&daemon, &home);
    let bridge = Bridge::start(&daemon, bridge_port, &[]);
    let policy = Policy::allow(bridge_port, &[&site_origin]);

    let out_dir = fx.subdir("browser");
    let document = out_dir.join("van-ban.pdf");
    std::fs::write(&document, sample_pdf(1, 0)).unwrap();
    let out = run(
        Command::new("node")
            .arg(repo_root().join("tests/browser/documents_test.mjs"))
            .env("HOME", &home)
            .env("BRIDGE_PORT", bridge_port.to_string())
            .env("SITE_PORT", site.to_string())
            .env("PDF", &document)
            .env("OUT", &out_dir),
        Duration::from_secs(150),
    );
    let results: Value = serde_json::from_slice(
        &std::fs::read(out_dir.join("results.json"))
            .unwrap_or_else(|_| panic!("no results: {}\nbridge:\n{}", out.text(), bridge.log())),
    )
    .unwrap();
    assert!(
        results.get("error").is_none(),
        "{results:#}\n{}\nbridge:\n{}",
        out.text(),
        bridge.log()
    );
    for op in ["approved", "issued"] {
        assert_eq!(
            results[op]["Status"],
            0,
            "{op}: {results:#}\n{}",
            bridge.log()
        );
    }
    // The handler's FileServer, passed through as it was written.
    assert_eq!(
        results["issued"]["FileServer"],
        "{\"fileEntryId\":2,\"url\":\"/files/signed-2.pdf\"}"
    );

    let sealed = out_dir.join("signed-2.pdf");
    let sigs = pyhanko_validate(&sealed, &fx.ca_pem());
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    assert!(
        sigs.iter().all(|s| s.intact && s.valid && s.trusted),
        "{sigs:?}"
    );
    assert_eq!(pdfsig_valid_count(&sealed), 2);

    // The page at 50 dpi (A4: 413 × 585 pixels): the seal's red, centred where the default
    // layout puts a 36 mm seal over the left third of the signature box (its centre 122 mm
    // from the left, 52.5 mm from the bottom), and the signature's blue in the box beside it.
    let page = render_page(&sealed, 1, 50);
    let mm = |v: f32| (v / 25.4 * 50.0).round() as i64;
    let red = pixels_where(&page, |r, g, b| r > 170 && g < 90 && b < 90);
    let blue = pixels_where(&page, |r, g, b| b > 150 && r < 90 && g < 120);
    assert!(
        red.len() > 200,
        "the seal is drawn: {} red pixels",
        red.len()
    );
    let (cx, cy) = (
        red.iter().map(|p| p.0 as i64).sum::<i64>() / red.len() as i64,
        red.iter().map(|p| p.1 as i64).sum::<i64>() / red.len() as i64,
    );
    assert!(
        (cx - mm(122.0)).abs() <= mm(5.0) && (cy - mm(297.0 - 52.5)).abs() <= mm(5.0),
        "the seal's centre at ({cx}, {cy}) px, not near ({}, {})",
        mm(122.0),
        mm(297.0 - 52.5)
    );
    let width = red.iter().map(|p| p.0).max().unwrap() - red.iter().map(|p| p.0).min().unwrap();
    assert!(
        (i64::from(width) - mm(36.0)).abs() <= mm(3.0),
        "the seal is {width} px across, not its real 36 mm"
    );
    assert!(blue.len() > 50, "the leader's signature is drawn");
    let box_left = mm(120.0);
    assert!(
        blue.iter().all(|p| i64::from(p.0) >= box_left - 2),
        "the signature stays in its box"
    );
    drop(policy);
    drop(bridge);
}
