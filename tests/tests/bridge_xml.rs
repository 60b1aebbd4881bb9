//! VerifyXML: XML-DSig documents signed by xmlsec1 (RSA and ECDSA keys, inclusive and
//! exclusive c14n, the whole document or an element by Id) and by the bridge's own SignXML
//! verify; a changed text node, a changed SignatureValue and a transform the bridge does not
//! implement each get a non-zero status that says why.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use kyso_tests::bridge::{bridge_config, bridge_pinentry, free_port, Bridge};
use kyso_tests::util::{pem_cert_to_der, run};
use kyso_tests::{Daemon, DaemonConfig, Fixture};
use serde_json::Value;

const SITE: &str = "https://vpdt.example.gov.vn";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const INCLUSIVE: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const EXCLUSIVE: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const XPATH: &str = "http://www.w3.org/TR/1999/REC-xpath-19991116";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .expect("base64")
}

/// A bridge on a daemon with the fixture's token, `SITE` configured; the pinentry directory.
fn start() -> (Fixture, std::path::PathBuf, Daemon, Bridge) {
    let fx = Fixture::new();
    let pin = fx.subdir("pinentry");
    let program = bridge_pinentry(&pin);
    let port = free_port();
    let daemon = Daemon::start_with(
        &fx,
        DaemonConfig {
            extra: bridge_config(&program, port, &[SITE]),
            ..Default::default()
        },
    );
    let bridge = Bridge::start(&daemon, port, &[]);
    (fx, pin, daemon, bridge)
}

fn verify_xml(bridge: &Bridge, origin: &str, xml: &[u8]) -> Value {
    bridge.call(
        "VerifyXML",
        Some(origin),
        &format!(r#"{{"Base64Content":"{}"}}"#, b64(xml)),
    )
}

fn tool(cmd: &mut Command, what: &str) {
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{what} failed (is it installed? scripts/setup-debian): {}",
        out.text()
    );
}

/// A key and a self-signed certificate made by OpenSSL: `rsa`, `P-256` or `P-384`.
fn key_and_cert(dir: &Path, kind: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, cert) = (
        dir.join(format!("{kind}.key")),
        dir.join(format!("{kind}.crt")),
    );
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-nodes", "-days", "30", "-subj"])
        .arg(format!("/CN=Nguyen Van B {kind}/O=UBND tinh"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    if kind == "rsa" {
        cmd.args(["-newkey", "rsa:2048"]);
    } else {
        cmd.args(["-newkey", "ec", "-pkeyopt"])
            .arg(format!("ec_paramgen_curve:{kind}"));
    }
    tool(&mut cmd, "openssl req");
    (key, cert)
}

/// An e-invoice-like document with a `<Signature>` template for xmlsec1 to fill.
fn template(c14n: &str, method: &str, digest: &str, uri: &str, transforms: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <HDon xmlns=\"urn:hoadon\" xmlns:x=\"urn:x\">\n  <DLHDon Id=\"data\"><TTChung><TenHD x:k=\"1\">Hóa đơn giá trị gia tăng &amp; phụ lục</TenHD><!-- ghi chú --></TTChung><TongTien>1250000</TongTien></DLHDon>\n  \
         <Signature xmlns=\"{DSIG}\"><SignedInfo><CanonicalizationMethod Algorithm=\"{c14n}\"/><SignatureMethod Algorithm=\"{method}\"/><Reference URI=\"{uri}\"><Transforms>{transforms}</Transforms><DigestMethod Algorithm=\"{digest}\"/><DigestValue/></Reference></SignedInfo><SignatureValue/><KeyInfo><X509Data/></KeyInfo></Signature>\n\
         </HDon>\n"
    )
}

fn xmlsec_sign(dir: &Path, name: &str, xml: &str, key: &Path, cert: &Path) -> Vec<u8> {
    let (input, output) = (
        dir.join(format!("{name}.tmpl.xml")),
        dir.join(format!("{name}.xml")),
    );
    std::fs::write(&input, xml).unwrap();
    let mut keys = key.as_os_str().to_owned();
    keys.push(",");
    keys.push(cert);
    tool(
        Command::new("xmlsec1")
            .arg("--sign")
            .arg("--id-attr:Id")
            .arg("DLHDon")
            .arg("--privkey-pem")
            .arg(keys)
            .arg("--output")
            .arg(&output)
            .arg(&input),
        "xmlsec1 --sign",
    );
    std::fs::read(&output).unwrap()
}

#[test]
fn xmlsec1_signatures_verify_and_changes_are_caught() {
    let (fx, _pin, _daemon, mut bridge) = start();
    let dir = fx.subdir("xml");
    let (rsa_key, rsa_cert) = key_and_cert(&dir, "rsa");
    let (p256_key, p256_cert) = key_and_cert(&dir, "P-256");
    let (p384_key, p384_cert) = key_and_cert(&dir, "P-384");
    let enveloped = format!("<Transform Algorithm=\"{ENVELOPED}\"/>");
    let enveloped_exc =
        format!("<Transform Algorithm=\"{ENVELOPED}\"/><Transform Algorithm=\"{EXCLUSIVE}\"/>");
    let more = "http://www.w3.org/2001/04/xmldsig-more#";
    let cases = [
        // RSA-SHA256, inclusive c14n, the whole document (enveloped).
        (
            "rsa-inclusive",
            template(
                INCLUSIVE,
                &format!("{more}rsa-sha256"),
                "http://www.w3.org/2001/04/xmlenc#sha256",
                "",
                &enveloped,
            ),
            &rsa_key,
            &rsa_cert,
        ),
        // RSA-SHA1 over SHA-1 digests, exclusive c14n.
        (
            "rsa-sha1",
            template(
                EXCLUSIVE,
                &format!("{DSIG}rsa-sha1"),
                &format!("{DSIG}sha1"),
                "",
                &enveloped_exc,
            ),
            &rsa_key,
            &rsa_cert,
        ),
        // RSA-SHA512 over one element by its Id (the Signature stands outside it).
        (
            "rsa-by-id",
            template(
                EXCLUSIVE,
                &format!("{more}rsa-sha512"),
                "http://www.w3.org/2001/04/xmlenc#sha512",
                "#data",
                &format!("<Transform Algorithm=\"{EXCLUSIVE}\"/>"),
            ),
            &rsa_key,
            &rsa_cert,
        ),
        // ECDSA P-256 over an element by Id with inclusive c14n (the namespaces in scope).
        (
            "p256-by-id",
            template(
                INCLUSIVE,
                &format!("{more}ecdsa-sha256"),
                "http://www.w3.org/2001/04/xmlenc#sha256",
                "#data",
                &format!("<Transform Algorithm=\"{INCLUSIVE}\"/>"),
            ),
            &p256_key,
            &p256_cert,
        ),
        // ECDSA P-256 with SHA-256, and P-384 with SHA-384.
        (
            "p256",
            template(
                EXCLUSIVE,
                &format!("{more}ecdsa-sha256"),
                "http://www.w3.org/2001/04/xmlenc#sha256",
                "",
                &enveloped_exc,
            ),
            &p256_key,
            &p256_cert,
        ),
        (
            "p384",
            template(
                INCLUSIVE,
                &format!("{more}ecdsa-sha384"),
                "http://www.w3.org/2001/04/xmldsig-more#sha384",
                "",
                &enveloped,
            ),
            &p384_key,
            &p384_cert,
        ),
    ];
    let mut first = None;
    for (name, tmpl, key, cert) in &cases {
        let signed = xmlsec_sign(&dir, name, tmpl, key, cert);
        let answer = verify_xml(&bridge, SITE, &signed);
        assert_eq!(answer["Status"], 0, "{name}: {answer}");
        assert_eq!(answer["Valid"], true, "{name}: {answer}");
        assert!(
            unb64(&answer["SigningCertInfo"]["Base64Data"]) == pem_cert_to_der(cert),
            "{name}: another certificate: {answer}"
        );
        assert!(
            answer["SigningCertInfo"]["Subject"]
                .as_str()
                .unwrap()
                .contains("Nguyen Van B"),
            "{answer}"
        );
        first.get_or_insert(signed);
    }
    let signed = String::from_utf8(first.unwrap()).unwrap();

    // An unlisted site may verify too: nothing of the user's is used, nobody is asked.
    let answer = verify_xml(&bridge, "https://other.example.vn", signed.as_bytes());
    assert_eq!(answer["Status"], 0, "{answer}");

    // A changed text node.
    let changed = signed.replace("1250000", "9250000");
    assert_ne!(changed, signed);
    let answer = verify_xml(&bridge, SITE, changed.as_bytes());
    assert_eq!(answer["Status"], 8, "{answer}");
    assert!(
        answer["Message"].as_str().unwrap().contains("changed"),
        "{answer}"
    );

    // A changed SignatureValue (its first character replaced).
    let at = signed.find("<SignatureValue>").unwrap() + "<SignatureValue>".len();
    let c = &signed[at..at + 1];
    let changed = format!(
        "{}{}{}",
        &signed[..at],
        if c == "A" { "B" } else { "A" },
        &signed[at + 1..]
    );
    let answer = verify_xml(&bridge, SITE, changed.as_bytes());
    assert_eq!(answer["Status"], 8, "{answer}");
    assert!(
        answer["Message"]
            .as_str()
            .unwrap()
            .contains("SignatureValue"),
        "{answer}"
    );

    // A signature with an XPath transform, which the bridge does not implement: refused as not
    // supported, naming the transform (xmlsec1 itself signs and verifies it).
    let xpath = format!(
        "<Transform Algorithm=\"{XPATH}\"><XPath xmlns:dsig=\"{DSIG}\">not(ancestor-or-self::dsig:Signature)</XPath></Transform>"
    );
    let tmpl = template(
        EXCLUSIVE,
        &format!("{more}rsa-sha256"),
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "",
        &xpath,
    );
    let signed = xmlsec_sign(&dir, "xpath", &tmpl, &rsa_key, &rsa_cert);
    let answer = verify_xml(&bridge, SITE, &signed);
    assert_eq!(answer["Status"], 40, "{answer}");
    assert!(
        answer["Message"].as_str().unwrap().contains(XPATH),
        "{answer}"
    );

    // Not XML, XML without a signature, and XML nested too deep for the parser's recursion,
    // which is refused without harm to the bridge.
    assert_eq!(verify_xml(&bridge, SITE, b"<a>")["Status"], 10);
    assert_eq!(verify_xml(&bridge, SITE, b"<a/>")["Status"], 8);
    let deep = "<a>".repeat(100_000) + &"</a>".repeat(100_000);
    let answer = verify_xml(&bridge, SITE, deep.as_bytes());
    assert_eq!(answer["Status"], 10, "{answer}");
    assert!(bridge.is_running());
}

/// The line of `dir/confirms` the scripted pinentry answers next.
fn answers(pin: &Path, lines: &[&str]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(pin.join("confirms"))
        .expect("confirms");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
}

#[test]
fn the_bridges_own_signxml_verifies() {
    let (fx, pin, _daemon, bridge) = start();
    let document = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CongVan xmlns=\"urn:vpdt\"><So>123/UBND-VP</So><TrichYeu>Về việc triển khai chữ ký số</TrichYeu></CongVan>\n";
    // SITE takes the RSA certificate, a second site the EC one (each site keeps its choice).
    let ec_site = "https://truonghoc.example.edu.vn";
    for (site, choose, id) in [
        (SITE, &["ok"][..], 1u8),
        (ec_site, &["ok", "notok", "ok"][..], 2),
    ] {
        answers(&pin, choose);
        let info = bridge.call("GetCertInfo", Some(site), "get_cert_info");
        assert_eq!(info["Status"], 0, "{info}");
        let cert = pem_cert_to_der(&fx.cert_pem(id));
        assert!(unb64(&info["CertInfo"]["Base64Data"]) == cert);
        for only in [false, true] {
            answers(&pin, &["ok"]);
            let signed = bridge.call(
                "SignXML",
                Some(site),
                &format!(
                    r#"{{"Base64Content":"{}","ReturnSignatureOnly":"{only}","HashAlg":"Sha256","XmlDsigForm":"true"}}"#,
                    b64(document.as_bytes())
                ),
            );
            assert_eq!(signed["Status"], 0, "{signed}");
            let mut xml = String::from_utf8(unb64(&signed["Signature"])).unwrap();
            if only {
                // The lone <Signature> given beside the document, as it came.
                let beside = |doc: &str| {
                    bridge.call(
                        "VerifyXML",
                        Some(site),
                        &format!(
                            r#"{{"Base64Content":"{}","Signature":"{}"}}"#,
                            b64(doc.as_bytes()),
                            b64(xml.as_bytes())
                        ),
                    )
                };
                let answer = beside(document);
                assert_eq!(answer["Status"], 0, "{answer}");
                assert!(unb64(&answer["SigningCertInfo"]["Base64Data"]) == cert);
                let answer = beside(&document.replace("123/UBND-VP", "124/UBND-VP"));
                assert_eq!(answer["Status"], 8, "{answer}");
                // The caller puts the lone <Signature> where SignXML would have.
                xml = document.replace("</CongVan>", &format!("{xml}</CongVan>"));
            }
            let answer = verify_xml(&bridge, site, xml.as_bytes());
            assert_eq!(answer["Status"], 0, "{site} {only}: {answer}\n{xml}");
            assert!(unb64(&answer["SigningCertInfo"]["Base64Data"]) == cert);
            assert_eq!(answer["Signatures"][0]["References"][0], "");
            let changed = xml.replace("123/UBND-VP", "124/UBND-VP");
            assert_eq!(verify_xml(&bridge, site, changed.as_bytes())["Status"], 8);
        }
    }
}
