//! What the signing tests share: a test PKI with software keys, generated PDFs, and the
//! independent tools (pyHanko, poppler's pdfsig, qpdf) that judge the results.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use kyso_pdf::net::Fetch;
use kyso_pdf::signer::{DigestAlg, KeyKind, Signer};
use lopdf::{dictionary, Document, Object, Stream, StringFormat};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The Python venv with pyHanko, next to the workspace's tests.
pub fn venv() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/venv"))
}

/// Runs a tool and returns its standard output and error, failing clearly when it is missing.
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} cannot run ({e}); scripts/setup-debian installs it"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A test certification authority with an EC key.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "kyso test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
        Self {
            dir,
            ca_pem,
            ca_cert,
            ca_key,
        }
    }

    pub fn ca_der(&self) -> Vec<u8> {
        self.ca_cert.der().to_vec()
    }

    fn issue(
        &self,
        key: &KeyPair,
        name: &str,
        params_fn: impl FnOnce(&mut CertificateParams),
    ) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Ban Cơ yếu Chính phủ");
        // Extensions are written only with one of these set.
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params_fn(&mut params);
        params
            .signed_by(key, &self.ca_cert, &self.ca_key)
            .unwrap()
            .der()
            .to_vec()
    }

    fn signer_params(params: &mut CertificateParams) {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
    }

    /// A signer with a fresh RSA-2048 key (made by openssl, which is fast unoptimised too).
    pub fn rsa_signer(&self, name: &str) -> SoftSigner {
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl cannot run; scripts/setup-debian installs it");
        assert!(out.status.success(), "openssl genpkey failed");
        let pem = String::from_utf8(out.stdout).unwrap();
        let key =
            <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&pem).unwrap();
        let pair = KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        SoftSigner {
            cert: self.issue(&pair, name, Self::signer_params),
            key_pem: pem,
            chain: vec![self.ca_der()],
            key: SoftKey::Rsa(Box::new(key)),
        }
    }

    /// A signer with a fresh P-256 key.
    pub fn ec_signer(&self, name: &str) -> SoftSigner {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = <p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(
            &pair.serialize_der(),
        )
        .unwrap();
        SoftSigner {
            cert: self.issue(&pair, name, Self::signer_params),
            key_pem: pair.serialize_pem(),
            chain: vec![self.ca_der()],
            key: SoftKey::Ec(key),
        }
    }

    /// A timestamping authority for `openssl ts -reply`: its configuration file.
    pub fn tsa_config(&self) -> PathBuf {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = self.issue(&pair, "kyso test TSA", |params| {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            // extendedKeyUsage, critical: id-kp-timeStamping.
            let mut eku = CustomExtension::from_oid_content(
                &[2, 5, 29, 37],
                vec![
                    0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08,
                ],
            );
            eku.set_criticality(true);
            params.custom_extensions.push(eku);
        });
        let dir = self.dir.path();
        std::fs::write(dir.join("tsa.pem"), cert_pem(&cert)).unwrap();
        std::fs::write(dir.join("tsa.key"), pair.serialize_pem()).unwrap();
        std::fs::write(dir.join("tsa.serial"), "01\n").unwrap();
        let config = dir.join("tsa.cnf");
        let d = dir.display();
        std::fs::write(
            &config,
            format!(
                "[ tsa ]\ndefault_tsa = tsa_config\n[ tsa_config ]\n\
                 serial = {d}/tsa.serial\ncrypto_device = builtin\n\
                 signer_cert = {d}/tsa.pem\ncerts = {d}/ca.pem\nsigner_key = {d}/tsa.key\n\
                 signer_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256\n\
                 accuracy = secs:1\nordering = no\ntsa_name = no\n\
                 ess_cert_id_chain = no\ness_cert_id_alg = sha256\n"
            ),
        )
        .unwrap();
        config
    }
}

pub fn cert_pem(der: &[u8]) -> String {
    let b64 = base64_lines(der);
    format!("-----BEGIN CERTIFICATE-----\n{b64}-----END CERTIFICATE-----\n")
}

fn base64_lines(der: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s.as_bytes()
        .chunks(64)
        .map(|l| format!("{}\n", String::from_utf8_lossy(l)))
        .collect()
}

pub enum SoftKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    Ec(p256::ecdsa::SigningKey),
}

/// A software signer for tests: the key in memory, counting its signatures.
pub struct SoftSigner {
    pub cert: Vec<u8>,
    /// The private key, PKCS#8 PEM, for pyHanko to sign with too.
    pub key_pem: String,
    pub chain: Vec<Vec<u8>>,
    pub key: SoftKey,
}

impl Signer for SoftSigner {
    fn certificate(&self) -> &[u8] {
        &self.cert
    }
    fn chain(&self) -> Vec<Vec<u8>> {
        self.chain.clone()
    }
    fn key_kind(&self) -> KeyKind {
        match self.key {
            SoftKey::Rsa(_) => KeyKind::Rsa,
            SoftKey::Ec(_) => KeyKind::Ec,
        }
    }
    fn sign_digest(&mut self, alg: DigestAlg, digest: &[u8]) -> Result<Vec<u8>, String> {
        assert_eq!(alg, DigestAlg::Sha256);
        match &self.key {
            SoftKey::Rsa(key) => key
                .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), digest)
                .map_err(|e| e.to_string()),
            SoftKey::Ec(key) => {
                use p256::ecdsa::signature::hazmat::PrehashSigner;
                let sig: p256::ecdsa::Signature =
                    key.sign_prehash(digest).map_err(|e| e.to_string())?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
        }
    }
}

/// A PDF of `pages` pages, each with a line of text and, when `payload` is not zero, an
/// uncompressed grey image of about `payload` bytes of noise. `modern` saves it with object
/// streams and a cross-reference stream.
pub fn make_pdf(pages: usize, payload: usize, modern: bool) -> Vec<u8> {
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut kids = Vec::new();
    for n in 1..=pages {
        let mut ops = format!("BT /F1 24 Tf 72 720 Td (Page {n}) Tj ET\n");
        let mut resources = dictionary! { "Font" => dictionary! { "F1" => font_id } };
        if payload > 0 {
            let side = (payload as f64).sqrt() as i64;
            let noise: Vec<u8> = (0..side * side)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let image = doc.add_object(Stream::new(
                dictionary! {
                    "Type" => "XObject", "Subtype" => "Image", "Width" => side, "Height" => side,
                    "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
                },
                noise,
            ));
            resources.set("XObject", dictionary! { "Im1" => image });
            ops.push_str("q 300 0 0 300 150 300 cm /Im1 Do Q\n");
        }
        let content = doc.add_object(Stream::new(dictionary! {}, ops.into_bytes()));
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content,
            "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        });
        kids.push(Object::Reference(page));
    }
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => pages as i64,
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let id = Object::String(b"kyso-test-file-1".to_vec(), StringFormat::Hexadecimal);
    doc.trailer.set("ID", Object::Array(vec![id.clone(), id]));
    let mut out = Vec::new();
    if modern {
        doc.save_modern(&mut out).unwrap();
    } else {
        doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
        doc.save_to(&mut out).unwrap();
    }
    out
}

/// `pyhanko sign validate` of every signature in `file`, trusting the test CA only; its
/// pretty-printed report.
pub fn pyhanko_validate(file: &Path, ca: &Path) -> (bool, String) {
    run(Command::new(venv().join("bin/pyhanko")).args([
        "sign".as_ref(),
        "validate".as_ref(),
        "--pretty-print".as_ref(),
        "--no-revocation-check".as_ref(),
        "--trust-replace".as_ref(),
        "--trust".as_ref(),
        ca.as_os_str(),
        file.as_os_str(),
    ]))
}

pub fn pdfsig(file: &Path) -> (bool, String) {
    run(Command::new("pdfsig").arg(file))
}

pub fn qpdf_check(file: &Path) -> (bool, String) {
    run(Command::new("qpdf").arg("--check").arg(file))
}

/// A timestamping service over HTTP: each POST answered by `openssl ts -reply`. Returns its
/// URL; the thread ends with the test process.
pub fn tsa_server(config: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/tsa", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let Some(body) = read_http(&mut stream) else {
                continue;
            };
            let dir = config.parent().unwrap();
            let query = dir.join(format!("q{n}.tsq"));
            let reply = dir.join(format!("r{n}.tsr"));
            std::fs::write(&query, body).unwrap();
            let (ok, text) = run(Command::new("openssl")
                .args(["ts", "-reply", "-config"])
                .arg(&config)
                .arg("-queryfile")
                .arg(&query)
                .arg("-out")
                .arg(&reply));
            let answer = if ok {
                std::fs::read(&reply).unwrap()
            } else {
                text.into_bytes()
            };
            let status = if ok {
                "200 OK"
            } else {
                "500 Internal Server Error"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/timestamp-reply\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                answer.len()
            );
            let _ = stream.write_all(&answer);
        }
    });
    url
}

/// Reads one HTTP message's body (by Content-Length).
fn read_http(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + length].to_vec())
}

/// A plain HTTP client for the tests' fetcher.
pub struct Http;

impl Fetch for Http {
    fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        Err(format!("GET {url} not needed by the tests"))
    }
    fn post(&self, url: &str, content_type: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        let rest = url.strip_prefix("http://").ok_or("not http")?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut stream = TcpStream::connect(host).map_err(|e| e.to_string())?;
        write!(
            stream,
            "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .map_err(|e| e.to_string())?;
        stream.write_all(body).map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map_err(|e| e.to_string())?;
        let at = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no HTTP head")?;
        let status = String::from_utf8_lossy(&answer[..at]).to_string();
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!(
                "{}: {}",
                status.lines().next().unwrap_or_default(),
                String::from_utf8_lossy(&answer[at + 4..])
            ));
        }
        Ok(answer[at + 4..].to_vec())
    }
}
