//! Helpers: running external tools with a deadline, checking signatures with OpenSSL, finding
//! the fixture's objects.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout then stderr, for messages.
    pub fn text(&self) -> String {
        format!(
            "[{}]\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with stdin closed and a deadline (it is killed, and this panics, when exceeded).
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "{cmd:?} did not finish within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Output {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// `pkcs11-tool --module MODULE ARGS...` with a 60 s deadline.
pub fn pkcs11_tool(module: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("pkcs11-tool");
    cmd.arg("--module").arg(module).args(args);
    run(&mut cmd, Duration::from_secs(60))
}

/// Verifies `signature` (DER for ECDSA, as OpenSSL wants it) over `data` with SHA-256 and the
/// public key of the certificate `cert_pem`, using the `openssl` command line.
pub fn openssl_verify_sha256(cert_pem: &Path, data: &[u8], signature: &[u8]) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let pubkey = dir.path().join("pub.pem");
    let out = run(
        Command::new("openssl")
            .args(["x509", "-pubkey", "-noout", "-in"])
            .arg(cert_pem)
            .arg("-out")
            .arg(&pubkey),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "openssl x509 -pubkey: {}", out.text());
    let data_path = dir.path().join("data");
    let sig_path = dir.path().join("sig");
    fs::write(&data_path, data).expect("write data");
    fs::write(&sig_path, signature).expect("write signature");
    let out = run(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&pubkey)
            .arg("-signature")
            .arg(&sig_path)
            .arg(&data_path),
        Duration::from_secs(30),
    );
    out.status.success() && out.stdout.contains("Verified OK")
}

/// The DER `DigestInfo` of SHA-256(`data`): what `CKM_RSA_PKCS` signs for a PKCS#1 v1.5
/// SHA-256 signature (for tokens without `CKM_SHA256_RSA_PKCS`, such as opencryptoki's soft
/// token); the result verifies with [`openssl_verify_sha256`].
pub fn sha256_digest_info(data: &[u8]) -> Vec<u8> {
    const PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let mut out = PREFIX.to_vec();
    out.extend_from_slice(&sha256(data));
    out
}

/// `openssl verify -CAfile ca cert` succeeds.
pub fn openssl_verify_chain(ca_pem: &Path, cert_pem: &Path) -> bool {
    let out = run(
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(ca_pem)
            .arg(cert_pem),
        Duration::from_secs(30),
    );
    out.status.success()
}

/// A certificate's start (`which` = `-startdate`) or end (`-enddate`) of validity in Unix
/// seconds, as `openssl x509` reads it.
pub fn cert_time(cert_pem: &Path, which: &str) -> i64 {
    let out = Command::new("openssl")
        .args(["x509", "-noout", which, "-dateopt", "iso_8601", "-in"])
        .arg(cert_pem)
        .output()
        .expect("run openssl x509");
    assert!(out.status.success(), "openssl x509 {which} failed");
    // `notAfter=2027-03-31 16:59:59Z`: RFC 3339 but for the space.
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, iso) = text
        .trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("openssl x509 {which} printed {text:?}"));
    kyso_proto::dates::parse_rfc3339(&iso.replacen(' ', "T", 1))
        .unwrap_or_else(|| panic!("openssl x509 {which} printed {text:?}"))
}

/// The DER form of a certificate in PEM (through `openssl x509`).
pub fn pem_cert_to_der(cert_pem: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(cert_pem)
        .output()
        .expect("run openssl x509");
    assert!(out.status.success(), "openssl x509 -outform DER failed");
    out.stdout
}

/// A PKCS#11 ECDSA signature (`r || s`, equal halves) as a DER `ECDSA-Sig-Value`.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Vec<u8> {
    assert!(
        raw.len() & 1 == 0 && !raw.is_empty(),
        "raw ECDSA signature of odd length"
    );
    let (r, s) = raw.split_at(raw.len() / 2);
    let int = |x: &[u8]| {
        let mut x: Vec<u8> = x.iter().copied().skip_while(|&b| b == 0).collect();
        if x.is_empty() || x[0] & 0x80 != 0 {
            x.insert(0, 0);
        }
        let mut out = vec![0x02];
        der_len(&mut out, x.len());
        out.extend_from_slice(&x);
        out
    };
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

/// The one object of class `class` with `CKA_ID` `id` (panics unless there is exactly one).
pub fn find_one(session: &Session, class: ObjectClass, id: &[u8]) -> ObjectHandle {
    let found = session
        .find_objects(&[Attribute::Class(class), Attribute::Id(id.to_vec())])
        .expect("C_FindObjects");
    assert_eq!(
        found.len(),
        1,
        "objects of class {class} with id {id:02x?}: {found:?}"
    );
    found[0]
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}
