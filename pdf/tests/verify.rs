//! Verification of PDFs signed by pyHanko with keys and certificates made here: a test root, an
//! intermediate CA, personal (`UID=CCCD:`) and organisation (`UID=MST:`) signers with RSA and
//! EC keys, a timestamping authority answered by `openssl ts` behind a small HTTP server that
//! also serves the CAs' CRLs.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kyso_pdf::net::{Fetch, Offline};
use kyso_pdf::verify::{self, Class, Covers, Options, Revocation, Verdict};
use kyso_pdf::Error;
use lopdf::{dictionary, Document, Object, Stream};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CustomExtension, DnType, IsCa, KeyIdMethod, KeyPair, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use time::OffsetDateTime;

const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/venv");
const SIGN_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sign.py");
const UID: [u64; 7] = [0, 9, 2342, 19200300, 100, 1, 1];

/// A signing identity on disk, for pyHanko.
struct Identity {
    key: PathBuf,
    cert: PathBuf,
    serial: Vec<u8>,
}

/// The test PKI, the HTTP server, and a blank document.
struct Pki {
    dir: tempfile::TempDir,
    root_der: Vec<u8>,
    other_root_der: Vec<u8>,
    intermediate: PathBuf,
    rsa: Identity,
    ec: Identity,
    expired: Identity,
    revoked: Identity,
    /// On the CRL with a revocation date an hour from now.
    revoked_later: Identity,
    stranger: Identity,
    /// Named in the OCSP responder's index as good, and as revoked.
    ocsp_good: Identity,
    ocsp_revoked: Identity,
    /// RSA with RSASSA-PSS signatures; a P-384 key.
    rsa_pss: Identity,
    p384: Identity,
    tsa_url: String,
    blank: PathBuf,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(make_pki)
}

fn python() -> PathBuf {
    let python = Path::new(VENV).join("bin/python");
    assert!(
        python.exists(),
        "pyHanko's venv is missing at {} (scripts/setup-debian installs it)",
        python.display()
    );
    python
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "Kyso Test");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // digitalSignature, keyCertSign, cRLSign.
    p.custom_extensions = vec![key_usage(&[0x03, 0x02, 0x01, 0x86])];
    p.not_before = OffsetDateTime::now_utc() - time::Duration::days(3650);
    p.not_after = OffsetDateTime::now_utc() + time::Duration::days(3650);
    p
}

fn leaf_params(name: &str, uid: &str, serial: u64, crl: Option<&str>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::CustomDnType(UID.to_vec()), uid);
    // digitalSignature, nonRepudiation.
    p.custom_extensions = vec![key_usage(&[0x03, 0x02, 0x06, 0xc0])];
    p.serial_number = Some(SerialNumber::from(serial));
    // rcgen writes no extensions at all unless one of a few is asked for.
    p.use_authority_key_identifier_extension = true;
    p.not_before = OffsetDateTime::now_utc() - time::Duration::days(30);
    p.not_after = OffsetDateTime::now_utc() + time::Duration::days(365);
    if let Some(url) = crl {
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![url.to_string()],
        }];
    }
    p
}

/// A critical keyUsage with the given BIT STRING. rcgen's own encoding of key usages is not
/// DER (a padded bit string), and pyHanko sometimes normalises such certificates when it embeds
/// them, which changes their bytes.
fn key_usage(bits: &[u8]) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 15], bits.to_vec());
    ext.set_criticality(true);
    ext
}

fn ec_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn rsa_key(dir: &Path) -> KeyPair {
    let path = dir.join("rsa-gen.pem");
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .status()
        .expect("openssl must be installed");
    assert!(status.success(), "openssl genpkey failed");
    KeyPair::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_identity(
    dir: &Path,
    name: &str,
    cert: &rcgen::Certificate,
    key: &KeyPair,
    serial: u64,
) -> Identity {
    let key_path = dir.join(format!("{name}.key"));
    let cert_path = dir.join(format!("{name}.pem"));
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    Identity {
        key: key_path,
        cert: cert_path,
        serial: serial.to_be_bytes().to_vec(),
    }
}

fn make_pki() -> Pki {
    // Under the target directory: the fixture lives as long as the test process, so nothing
    // would delete a temporary directory.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let d = dir.path();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());

    let root_key = ec_key();
    let root = ca_params("Kyso Test Root CA")
        .self_signed(&root_key)
        .unwrap();
    let mut int_params = ca_params("Kyso Test Issuing CA");
    int_params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![format!("{base}/root.crl")],
    }];
    let int_key = ec_key();
    let int = int_params.signed_by(&int_key, &root, &root_key).unwrap();
    let int_crl_url = format!("{base}/int.crl");

    let rsa_k = rsa_key(d);
    let rsa_cert = leaf_params(
        "Nguyễn Văn An",
        "CCCD:001090000001",
        0x1001,
        Some(&int_crl_url),
    )
    .signed_by(&rsa_k, &int, &int_key)
    .unwrap();
    let ec_k = ec_key();
    let ec_cert = leaf_params(
        "Sở Thử Nghiệm",
        "MST:0101234567",
        0x1002,
        Some(&int_crl_url),
    )
    .signed_by(&ec_k, &int, &int_key)
    .unwrap();
    let exp_k = ec_key();
    let mut exp_params = leaf_params(
        "Trần Thị Bình",
        "CCCD:001090000002",
        0x1003,
        Some(&int_crl_url),
    );
    exp_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    exp_params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let exp_cert = exp_params.signed_by(&exp_k, &int, &int_key).unwrap();
    let rev_k = ec_key();
    let rev_cert = leaf_params("Lê Văn Cường", "CMND:012345678", 0x1004, Some(&int_crl_url))
        .signed_by(&rev_k, &int, &int_key)
        .unwrap();

    let later_k = ec_key();
    let later_cert = leaf_params("Đỗ Văn Em", "CCCD:001090000009", 0x1009, Some(&int_crl_url))
        .signed_by(&later_k, &int, &int_key)
        .unwrap();

    let other_key = ec_key();
    let other_root = ca_params("Unknown Root CA")
        .self_signed(&other_key)
        .unwrap();
    let str_k = ec_key();
    let str_cert = leaf_params("Người Lạ", "CCCD:009999999999", 0x2001, None)
        .signed_by(&str_k, &other_root, &other_key)
        .unwrap();

    // Signers whose revocation is told by OCSP, through a delegated responder.
    let ocsp_url = format!("{base}/ocsp");
    let aia = |url: &str| {
        let mut location = vec![0x86, url.len() as u8];
        location.extend_from_slice(url.as_bytes());
        let mut ad = vec![0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
        ad.extend(location);
        let mut inner = vec![0x30, ad.len() as u8];
        inner.extend(ad);
        let mut outer = vec![0x30, inner.len() as u8];
        outer.extend(inner);
        CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], outer)
    };
    let mut ocsp_signers = Vec::new();
    for (serial, name) in [(0x1005u64, "ocsp-good"), (0x1006, "ocsp-revoked")] {
        let key = ec_key();
        let mut params = leaf_params(name, "CCCD:001090000005", serial, None);
        params.custom_extensions.push(aia(&ocsp_url));
        let cert = params.signed_by(&key, &int, &int_key).unwrap();
        ocsp_signers.push(write_identity(d, name, &cert, &key, serial));
    }
    let responder_k = ec_key();
    let mut responder_params = leaf_params("Kyso Test OCSP", "OCSP", 0x3002, None);
    responder_params.custom_extensions = vec![CustomExtension::from_oid_content(
        &[2, 5, 29, 37],
        vec![
            0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09,
        ],
    )];
    let responder = responder_params
        .signed_by(&responder_k, &int, &int_key)
        .unwrap();
    std::fs::write(d.join("responder.pem"), responder.pem()).unwrap();
    std::fs::write(d.join("responder.key"), responder_k.serialize_pem()).unwrap();
    let revoked_at = (OffsetDateTime::now_utc() - time::Duration::days(2))
        .format(time::macros::format_description!(
            "[year repr:last_two][month][day][hour][minute][second]Z"
        ))
        .unwrap();
    std::fs::write(
        d.join("index.txt"),
        format!(
            "V\t351231235959Z\t\t1005\tunknown\t/CN=ocsp-good\n\
             R\t351231235959Z\t{revoked_at},keyCompromise\t1006\tunknown\t/CN=ocsp-revoked\n"
        ),
    )
    .unwrap();

    let pss_k = rsa_key(d);
    let pss_cert = leaf_params(
        "Phạm Thị Dung",
        "CCCD:001090000007",
        0x1007,
        Some(&int_crl_url),
    )
    .signed_by(&pss_k, &int, &int_key)
    .unwrap();
    let p384_k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let p384_cert = leaf_params("Ban Thử Nghiệm", "MNS:1234", 0x1008, Some(&int_crl_url))
        .signed_by(&p384_k, &int, &int_key)
        .unwrap();

    // The TSA: critical extendedKeyUsage timeStamping, as openssl ts requires.
    let tsa_k = ec_key();
    let mut tsa_params = leaf_params("Kyso Test TSA", "TSA", 0x3001, None);

    let mut eku = CustomExtension::from_oid_content(
        &[2, 5, 29, 37],
        vec![
            0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08,
        ],
    );
    eku.set_criticality(true);
    tsa_params.custom_extensions = vec![key_usage(&[0x03, 0x02, 0x07, 0x80]), eku];
    let tsa_cert = tsa_params.signed_by(&tsa_k, &root, &root_key).unwrap();

    let crl = |issuer: &rcgen::Certificate, key: &KeyPair, revoked: Vec<RevokedCertParams>| {
        CertificateRevocationListParams {
            this_update: OffsetDateTime::now_utc() - time::Duration::hours(1),
            next_update: OffsetDateTime::now_utc() + time::Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(issuer, key)
        .unwrap()
        .der()
        .to_vec()
    };
    let mut routes = HashMap::new();
    routes.insert("/root.crl".to_string(), crl(&root, &root_key, vec![]));
    routes.insert(
        "/int.crl".to_string(),
        crl(
            &int,
            &int_key,
            vec![
                RevokedCertParams {
                    serial_number: SerialNumber::from(0x1004u64),
                    revocation_time: OffsetDateTime::now_utc() - time::Duration::days(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                },
                RevokedCertParams {
                    serial_number: SerialNumber::from(0x1009u64),
                    revocation_time: OffsetDateTime::now_utc() + time::Duration::hours(1),
                    reason_code: Some(RevocationReason::Superseded),
                    invalidity_date: None,
                },
            ],
        ),
    );

    std::fs::write(d.join("root.pem"), root.pem()).unwrap();
    std::fs::write(d.join("int.pem"), int.pem()).unwrap();
    std::fs::write(d.join("tsa.pem"), tsa_cert.pem()).unwrap();
    std::fs::write(d.join("tsa.key"), tsa_k.serialize_pem()).unwrap();
    std::fs::write(d.join("other-root.pem"), other_root.pem()).unwrap();
    std::fs::write(d.join("tsa-serial"), "01\n").unwrap();
    std::fs::write(
        d.join("ts.cnf"),
        format!(
            "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\nserial = {}\ncrypto_device = builtin\n\
             signer_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256, sha384, sha512\n\
             accuracy = secs:1\nordering = yes\ntsa_name = no\ness_cert_id_chain = no\n\
             ess_cert_id_alg = sha256\n",
            d.join("tsa-serial").display()
        ),
    )
    .unwrap();
    serve(listener, Arc::new(routes), d.to_path_buf());

    let blank = d.join("blank.pdf");
    std::fs::write(&blank, make_pdf(1, 0)).unwrap();
    Pki {
        root_der: root.der().to_vec(),
        other_root_der: other_root.der().to_vec(),
        intermediate: d.join("int.pem"),
        rsa: write_identity(d, "rsa", &rsa_cert, &rsa_k, 0x1001),
        ec: write_identity(d, "ec", &ec_cert, &ec_k, 0x1002),
        expired: write_identity(d, "expired", &exp_cert, &exp_k, 0x1003),
        revoked: write_identity(d, "revoked", &rev_cert, &rev_k, 0x1004),
        revoked_later: write_identity(d, "revoked-later", &later_cert, &later_k, 0x1009),
        stranger: write_identity(d, "stranger", &str_cert, &str_k, 0x2001),
        ocsp_revoked: ocsp_signers.pop().unwrap(),
        ocsp_good: ocsp_signers.pop().unwrap(),
        rsa_pss: write_identity(d, "rsa-pss", &pss_cert, &pss_k, 0x1007),
        p384: write_identity(d, "p384", &p384_cert, &p384_k, 0x1008),
        tsa_url: format!("{base}/tsa"),
        blank,
        dir,
    }
}

/// A PDF of `pages` pages, each with a text stream of about `filler` bytes.
fn make_pdf(pages: usize, filler: usize) -> Vec<u8> {
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let mut kids = Vec::new();
    for n in 0..pages {
        let mut text = format!("BT /F1 24 Tf 72 720 Td (Hello page {n}) Tj ET\n");
        let mut i = 0u64;
        while text.len() < filler {
            // Varied text, so the streams do not compress to nothing.
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407 + n as u64);
            text.push_str(&format!("% filler {i:016x} {:016x}\n", i.rotate_left(17)));
        }
        let content = doc.add_object(Stream::new(dictionary! {}, text.into_bytes()));
        kids.push(Object::Reference(doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            "Contents" => content,
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
        })));
    }
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Count" => pages as i64, "Kids" => kids,
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// Answers GET for the CRLs and POST /tsa with `openssl ts -reply`.
fn serve(listener: TcpListener, routes: Arc<HashMap<String, Vec<u8>>>, dir: PathBuf) {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let routes = routes.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &routes, &dir, &COUNTER);
            });
        }
    });
}

fn answer(
    mut stream: TcpStream,
    routes: &HashMap<String, Vec<u8>>,
    dir: &Path,
    counter: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (head, body) = read_http(&mut stream)?;
    let first = head.lines().next().unwrap_or_default().to_string();
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, reply) = if method == "POST" && path == "/tsa" {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let query = dir.join(format!("q{n}.tsq"));
        let reply = dir.join(format!("r{n}.tsr"));
        std::fs::write(&query, &body)?;
        let out = Command::new("openssl")
            .args(["ts", "-reply", "-config"])
            .arg(dir.join("ts.cnf"))
            .arg("-queryfile")
            .arg(&query)
            .arg("-signer")
            .arg(dir.join("tsa.pem"))
            .arg("-inkey")
            .arg(dir.join("tsa.key"))
            .arg("-chain")
            .arg(dir.join("root.pem"))
            .arg("-out")
            .arg(&reply)
            .output()?;
        match std::fs::read(&reply) {
            Ok(bytes) if out.status.success() => ("200 OK", "application/timestamp-reply", bytes),
            _ => ("500 Error", "text/plain", out.stderr),
        }
    } else if method == "POST" && path == "/ocsp" {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let query = dir.join(format!("q{n}.ocsp"));
        let reply = dir.join(format!("r{n}.ocsp"));
        std::fs::write(&query, &body)?;
        let out = Command::new("openssl")
            .arg("ocsp")
            .arg("-index")
            .arg(dir.join("index.txt"))
            .arg("-CA")
            .arg(dir.join("int.pem"))
            .arg("-rsigner")
            .arg(dir.join("responder.pem"))
            .arg("-rkey")
            .arg(dir.join("responder.key"))
            .args(["-ndays", "1", "-reqin"])
            .arg(&query)
            .arg("-respout")
            .arg(&reply)
            .output()?;
        match std::fs::read(&reply) {
            Ok(bytes) if out.status.success() => ("200 OK", "application/ocsp-response", bytes),
            _ => ("500 Error", "text/plain", out.stderr),
        }
    } else if let Some(bytes) = routes.get(path).filter(|_| method == "GET") {
        ("200 OK", "application/pkix-crl", bytes.clone())
    } else {
        ("404 Not Found", "text/plain", b"no".to_vec())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.len()
    )?;
    stream.write_all(&reply)
}

/// The head (text) and body of an HTTP message with a Content-Length (or none).
fn read_http(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break buf.len();
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

/// The verifier's network in these tests: plain HTTP to the test server.
struct Http;

impl Http {
    fn request(&self, method: &str, url: &str, ct: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        let rest = url.strip_prefix("http://").ok_or("only http")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut s = TcpStream::connect(host).map_err(|e| e.to_string())?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        s.write_all(body).map_err(|e| e.to_string())?;
        let (head, body) = read_http(&mut s).map_err(|e| e.to_string())?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(head.lines().next().unwrap_or_default().to_string());
        }
        Ok(body)
    }
}

impl Fetch for Http {
    fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        self.request("GET", url, "text/plain", &[])
    }
    fn post(&self, url: &str, content_type: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        self.request("POST", url, content_type, body)
    }
}

/// Signs `input` with pyHanko into a new file of the test directory.
fn sign(input: &Path, who: &Identity, field: &str, subfilter: &str, tsa: bool) -> PathBuf {
    sign_with(input, who, field, subfilter, tsa, false, "sha256")
}

fn sign_with(
    input: &Path,
    who: &Identity,
    field: &str,
    subfilter: &str,
    tsa: bool,
    pss: bool,
    md: &str,
) -> PathBuf {
    let p = pki();
    static N: AtomicUsize = AtomicUsize::new(0);
    let out = p
        .dir
        .path()
        .join(format!("signed-{}.pdf", N.fetch_add(1, Ordering::SeqCst)));
    let mut cmd = Command::new(python());
    cmd.arg(SIGN_PY)
        .arg(input)
        .arg(&out)
        .arg(&who.key)
        .arg(&who.cert)
        .arg(field)
        .arg(subfilter)
        .arg("--chain")
        .arg(&p.intermediate);
    if tsa {
        cmd.arg("--tsa").arg(&p.tsa_url);
    }
    if pss {
        cmd.arg("--pss");
    }
    cmd.arg("--md").arg(md);
    let result = cmd.output().expect("pyHanko runs");
    assert!(
        result.status.success(),
        "pyHanko failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

fn options<'a>(anchor: &[u8], fetch: &'a dyn Fetch) -> Options<'a> {
    Options {
        trust_anchors: vec![anchor.to_vec()],
        fetch,
        now: OffsetDateTime::now_utc(),
    }
}

fn verify_file(path: &Path, options: &Options) -> verify::Report {
    let bytes = std::fs::read(path).unwrap();
    verify::verify_pdf("test.pdf", &bytes, options).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn rsa_pades_signature_is_valid() {
    let p = pki();
    let signed = sign(&p.blank, &p.rsa, "Sig1", "pades", false);
    let report = verify_file(&signed, &options(&p.root_der, &Http));
    assert_eq!(report.signatures.len(), 1);
    let s = &report.signatures[0];
    assert_eq!(s.field, "Sig1");
    assert!(s.intact, "{:?}", s.reasons);
    assert_eq!(s.covers, Covers::Whole);
    assert!(s.trusted, "{:?}", s.reasons);
    assert!(s.certificate_valid_at_signing);
    assert_eq!(s.revocation, Revocation::Good, "{:?}", s.reasons);
    assert_eq!(s.verdict, Verdict::Valid, "{:?}", s.reasons);
    assert_eq!(s.class, Class::Personal);
    assert!(s.signer.contains("CCCD:001090000001"), "{}", s.signer);
    assert!(s.signer.contains("Nguyễn Văn An"), "{}", s.signer);
    assert_eq!(hex(&hex_decode(&s.certificate_serial)), hex(&p.rsa.serial));
    // No timestamp: the time is the one the signer claims, and the report says so.
    let t = s.signing_time.as_deref().expect("a signing time");
    let t = OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap();
    assert!((OffsetDateTime::now_utc() - t).whole_minutes().abs() < 10);
    assert!(s.reasons.iter().any(|r| r.contains("claimed")));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["signatures"][0]["class"], "personal");
    assert_eq!(json["signatures"][0]["covers"], "whole");
    assert_eq!(json["signatures"][0]["revocation"], "good");
    assert_eq!(json["signatures"][0]["verdict"], "valid");
    let text = report.to_text();
    assert!(text.contains("HỢP LỆ / VALID"), "{text}");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn ec_signature_with_timestamp_takes_the_time_from_the_token() {
    let p = pki();
    let signed = sign(&p.blank, &p.ec, "Seal", "pkcs7", true);
    let report = verify_file(&signed, &options(&p.root_der, &Http));
    let s = &report.signatures[0];
    assert_eq!(s.verdict, Verdict::Valid, "{:?}", s.reasons);
    assert_eq!(s.class, Class::Organisation);
    assert!(
        !s.reasons
            .iter()
            .any(|r| r.contains("claimed") || r.contains("timestamp")),
        "the time should be proven by the token: {:?}",
        s.reasons
    );
    let t = s.signing_time.as_deref().expect("a signing time");
    let t = OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap();
    assert!((OffsetDateTime::now_utc() - t).whole_minutes().abs() < 10);
    // Without the TSA's root among the anchors the same time is only claimed.
    let report = verify_file(&signed, &options(&p.other_root_der, &Http));
    let s = &report.signatures[0];
    assert!(s
        .reasons
        .iter()
        .any(|r| r.contains("not from a trusted timestamping")));
}

#[test]
fn a_flipped_byte_breaks_the_signature() {
    let p = pki();
    let signed = sign(&p.blank, &p.ec, "Sig1", "pades", false);
    let mut bytes = std::fs::read(&signed).unwrap();
    let at = memchr::memmem::find(&bytes, b"Hello page 0").expect("the page text");
    bytes[at] = b'J';
    let report = verify::verify_pdf("t.pdf", &bytes, &options(&p.root_der, &Http)).unwrap();
    let s = &report.signatures[0];
    assert!(!s.intact);
    assert_eq!(s.verdict, Verdict::Invalid);
    assert!(
        s.reasons.iter().any(|r| r.contains("digest mismatch")),
        "{:?}",
        s.reasons
    );
}

#[test]
fn an_expired_certificate_makes_the_signature_invalid() {
    let p = pki();
    let signed = sign(&p.blank, &p.expired, "Sig1", "pades", false);
    let report = verify_file(&signed, &options(&p.root_der, &Http));
    let s = &report.signatures[0];
    assert!(s.intact, "{:?}", s.reasons);
    assert!(!s.certificate_valid_at_signing);
    assert_eq!(s.verdict, Verdict::Invalid);
    assert!(s
        .reasons
        .iter()
        .any(|r| r.contains("Chứng thư số đã hết hạn khi ký")));
}

#[test]
fn an_unknown_root_is_indeterminate() {
    let p = pki();
    let signed = sign(&p.blank, &p.stranger, "Sig1", "pades", false);
    let report = verify_file(&signed, &options(&p.root_der, &Http));
    let s = &report.signatures[0];
    assert!(s.intact, "{:?}", s.reasons);
    assert!(!s.trusted);
    assert_eq!(s.verdict, Verdict::Indeterminate);
    assert_eq!(s.revocation, Revocation::NotChecked);
    assert!(
        s.reasons
            .iter()
            .any(|r| r.contains("No certification path leads to a trusted root")),
        "{:?}",
        s.reasons
    );
    // With its own root as the anchor it is trusted; no CRL is named, so revocation stays
    // unchecked and the verdict indeterminate.
    let report = verify_file(&signed, &options(&p.other_root_der, &Http));
    let s = &report.signatures[0];
    assert!(s.trusted, "{:?}", s.reasons);
    assert_eq!(s.revocation, Revocation::NotChecked);
    assert_eq!(s.verdict, Verdict::Indeterminate);
}

#[test]
fn a_second_signature_leaves_the_first_covering_a_revision() {
    let p = pki();
    let first = sign(&p.blank, &p.rsa, "Leader", "pades", false);
    let second = sign(&first, &p.ec, "Seal", "pades", true);
    let report = verify_file(&second, &options(&p.root_der, &Http));
    assert_eq!(report.signatures.len(), 2);
    let leader = report
        .signatures
        .iter()
        .find(|s| s.field == "Leader")
        .unwrap();
    let seal = report
        .signatures
        .iter()
        .find(|s| s.field == "Seal")
        .unwrap();
    assert_eq!(leader.covers, Covers::Revision);
    assert!(leader
        .reasons
        .iter()
        .any(|r| r.contains("Changes were made after")));
    assert_eq!(leader.verdict, Verdict::Valid, "{:?}", leader.reasons);
    assert_eq!(seal.covers, Covers::Whole);
    assert_eq!(seal.verdict, Verdict::Valid, "{:?}", seal.reasons);
    let text = report.to_text();
    assert!(
        text.contains("Chữ ký / Signature: Leader") && text.contains("Chữ ký / Signature: Seal")
    );
}

#[test]
fn offline_revocation_is_not_checked() {
    let p = pki();
    let signed = sign(&p.blank, &p.ec, "Sig1", "pades", false);
    let report = verify_file(&signed, &options(&p.root_der, &Offline));
    let s = &report.signatures[0];
    assert!(s.intact && s.trusted, "{:?}", s.reasons);
    assert_eq!(s.revocation, Revocation::NotChecked);
    assert_eq!(s.verdict, Verdict::Indeterminate);
    assert!(
        s.reasons.iter().any(|r| r.contains("offline")),
        "{:?}",
        s.reasons
    );
    assert!(report.to_text().contains("chưa kiểm tra / not checked"));
}

#[test]
fn a_revoked_certificate_makes_the_signature_invalid() {
    let p = pki();
    let signed = sign(&p.blank, &p.revoked, "Sig1", "pades", false);
    let report = verify_file(&signed, &options(&p.root_der, &Http));
    let s = &report.signatures[0];
    assert!(s.intact && s.trusted, "{:?}", s.reasons);
    assert_eq!(s.class, Class::Personal);
    assert_eq!(s.revocation, Revocation::Revoked);
    assert_eq!(s.verdict, Verdict::Invalid);
}

#[test]
fn not_a_pdf_and_a_truncated_pdf() {
    let p = pki();
    let opts = options(&p.root_der, &Offline);
    assert!(matches!(
        verify::verify_pdf("x", b"PK\x03\x04 a zip file", &opts),
        Err(Error::NotPdf)
    ));
    assert!(matches!(
        verify::verify_pdf("x", b"", &opts),
        Err(Error::NotPdf)
    ));
    let signed = std::fs::read(sign(&p.blank, &p.ec, "Sig1", "pades", false)).unwrap();
    for cut in [signed.len() - 10, signed.len() / 2, 100, 9] {
        match verify::verify_pdf("x", &signed[..cut], &opts) {
            Err(Error::Damaged(why)) => assert!(!why.is_empty()),
            Ok(report) => {
                for s in &report.signatures {
                    assert!(!s.intact, "cut at {cut}: {s:?}");
                    assert_eq!(s.verdict, Verdict::Invalid);
                }
            }
            Err(e) => panic!("cut at {cut}: unexpected error {e}"),
        }
    }
}

#[test]
fn a_ten_megabyte_document_verifies_quickly() {
    let p = pki();
    let input = p.dir.path().join("big.pdf");
    std::fs::write(&input, make_pdf(100, 100 * 1024)).unwrap();
    let signed = sign(&input, &p.ec, "Sig1", "pades", false);
    let bytes = std::fs::read(&signed).unwrap();
    assert!(bytes.len() > 10_000_000, "{} bytes", bytes.len());
    let opts = options(&p.root_der, &Http);
    let start = std::time::Instant::now();
    let report = verify::verify_pdf("big.pdf", &bytes, &opts).unwrap();
    let took = start.elapsed();
    eprintln!("verified {} bytes in {took:?}", bytes.len());
    // The fixture's directory outlives the test process; these two are large.
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&signed);
    assert_eq!(report.signatures[0].verdict, Verdict::Valid);
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn ocsp_answers_good_and_revoked() {
    let p = pki();
    let good = sign(&p.blank, &p.ocsp_good, "Sig1", "pades", false);
    let report = verify_file(&good, &options(&p.root_der, &Http));
    let s = &report.signatures[0];
    assert_eq!(s.revocation, Revocation::Good, "{:?}", s.reasons);
    assert_eq!(s.verdict, Verdict::Valid, "{:?}", s.reasons);
    let revoked = sign(&p.blank, &p.ocsp_revoked, "Sig1", "pades", false);
    let report = verify_file(&revoked, &options(&p.root_der, &Http));
    let s = &report.signatures[0];
    assert_eq!(s.revocation, Revocation::Revoked, "{:?}", s.reasons);
    assert_eq!(s.verdict, Verdict::Invalid);
}

#[test]
fn rsa_pss_with_sha512_and_p384_with_sha384_are_valid() {
    let p = pki();
    let pss = sign_with(&p.blank, &p.rsa_pss, "Sig1", "pades", false, true, "sha512");
    let bytes = std::fs::read(&pss).unwrap();
    // RSASSA-PSS's identifier, DER, in the hexadecimal /Contents.
    assert!(
        memchr::memmem::find(&bytes, b"06092A864886F70D01010A").is_some(),
        "pyHanko did not sign with PSS"
    );
    // SHA-512's identifier.
    assert!(memchr::memmem::find(&bytes, b"0609608648016503040203").is_some());
    let report = verify_file(&pss, &options(&p.root_der, &Http));
    let s = &report.signatures[0];
    assert_eq!(s.verdict, Verdict::Valid, "{:?}", s.reasons);
    let p384 = sign_with(&p.blank, &p.p384, "Sig1", "pkcs7", true, false, "sha384");
    let bytes = std::fs::read(&p384).unwrap();
    // SHA-384's identifier.
    assert!(memchr::memmem::find(&bytes, b"0609608648016503040202").is_some());
    let report = verify_file(&p384, &options(&p.root_der, &Http));
    let s = &report.signatures[0];
    assert_eq!(s.verdict, Verdict::Valid, "{:?}", s.reasons);
    assert_eq!(s.class, Class::Organisation);
}

/// Junk where the signature is, and anywhere in the file: every answer is a report or an error,
/// never a panic, and a change to the signed bytes never verifies as valid. A change only
/// inside `/Contents` may leave the signature valid when it falls in what the CMS leaves
/// unsigned and unused (the zero padding, the outer list of digest algorithms).
#[test]
fn damaged_signatures_never_panic_or_pass() {
    let p = pki();
    let signed = std::fs::read(sign(&p.blank, &p.ec, "Sig1", "pades", false)).unwrap();
    let opts = options(&p.root_der, &Http);
    let clean = verify::verify_pdf("clean.pdf", &signed, &opts).unwrap();
    assert_eq!(clean.signatures[0].verdict, Verdict::Valid);
    let gap = memchr::memmem::find(&signed, b"/Contents <").expect("the /Contents") + 11;
    let dict = gap.saturating_sub(400);
    // The CMS is a SEQUENCE with a two-byte length (30 82 hi lo): its hexadecimal ends here.
    let hex_len =
        |i: usize| u8::from_str_radix(std::str::from_utf8(&signed[i..i + 2]).unwrap(), 16);
    let cms_len =
        4 + ((hex_len(gap + 4).unwrap() as usize) << 8 | hex_len(gap + 6).unwrap() as usize);
    let contents = gap..memchr::memchr(b'>', &signed[gap..]).unwrap() + gap;
    assert!(2 * cms_len < contents.len(), "the CMS fits its /Contents");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..400 {
        let mut bytes = signed.clone();
        let region = match round % 4 {
            0 => dict..gap,
            1 => 0..bytes.len(),
            _ => gap..gap + 2 * cms_len + 64,
        };
        let mut only_contents = true;
        for _ in 0..1 + next() % 4 {
            let at = region.start + (next() as usize) % region.len();
            only_contents &= contents.contains(&at);
            bytes[at] = if round % 2 == 0 {
                b"0123456789abcdef"[(next() % 16) as usize]
            } else {
                next() as u8
            };
        }
        if bytes == signed {
            continue;
        }
        if let Ok(report) = verify::verify_pdf("junk.pdf", &bytes, &opts) {
            for s in report.signatures.iter().filter(|_| !only_contents) {
                assert_ne!(s.verdict, Verdict::Valid, "round {round}: {s:?}");
            }
        }
    }
}

#[test]
fn encrypted_documents_are_refused() {
    let p = pki();
    let opts = options(&p.root_der, &Offline);
    for user in ["", "secret"] {
        let out = p.dir.path().join(format!("encrypted-{}.pdf", user.len()));
        let status = Command::new("qpdf")
            .args(["--encrypt", user, "owner", "256", "--"])
            .arg(&p.blank)
            .arg(&out)
            .status()
            .expect("qpdf must be installed");
        assert!(status.success());
        let bytes = std::fs::read(&out).unwrap();
        let result = verify::verify_pdf("e.pdf", &bytes, &opts);
        assert!(
            matches!(result, Err(Error::Encrypted)),
            "user password {user:?}: {result:?}"
        );
    }
}

#[test]
fn revocation_after_a_proven_signing_time_is_not_invalid() {
    let p = pki();
    let stamped = sign(&p.blank, &p.revoked_later, "Sig1", "pades", true);
    let report = verify_file(&stamped, &options(&p.root_der, &Http));
    let s = &report.signatures[0];
    assert_eq!(s.revocation, Revocation::Revoked, "{:?}", s.reasons);
    assert_eq!(s.verdict, Verdict::Indeterminate, "{:?}", s.reasons);
    // Without a timestamp nothing proves the signature came before the revocation.
    let claimed = sign(&p.blank, &p.revoked_later, "Sig1", "pades", false);
    let report = verify_file(&claimed, &options(&p.root_der, &Http));
    let s = &report.signatures[0];
    assert_eq!(s.revocation, Revocation::Revoked);
    assert_eq!(s.verdict, Verdict::Invalid);
}
