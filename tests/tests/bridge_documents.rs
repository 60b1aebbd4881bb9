//! kyso-bridge's document operations against a web application of the test's own (plain HTTP
//! on 127.0.0.1): it serves PDFs and acts as the upload handler, reading the `uploadfile` part
//! as the e-office handlers do. A leader's signature then the organisation's seal give a file
//! whose two signatures pyHanko and poppler validate; bad addresses, sizes, servers and files
//! each get their status with nothing uploaded.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use kyso_tests::bridge::{bridge_config, bridge_pinentry, free_port, Bridge};
use kyso_tests::util::{pem_cert_to_der, sha256};
use kyso_tests::{Daemon, DaemonConfig, Fixture};
use serde_json::{json, Value};

const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/venv");
/// What the test application's handler answers as `FileServer` (a JSON string, as e-office
/// handlers answer it), with the upload's number in place of `N`.
const FILE_SERVER: &str = "{\"fileEntryId\":N,\"url\":\"/f/N\"}";
/// Another configured site, whose calls must not wait behind the application's documents.
const OTHER_SITE: &str = "https://vpdt.example.gov.vn";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.e30.sig";
const SESSION: &str = "k2x4vq1mz0abc";

/// A one-page PDF written by hand, its cross-reference table exact.
fn sample_pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 14 Tf 72 760 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Times-Roman >>".to_string(),
    ];
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// One request the application received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

#[derive(Default)]
struct AppState {
    /// Path → file served.
    files: HashMap<String, Vec<u8>>,
    /// Path → where it redirects (`302 Found`).
    redirects: HashMap<String, String>,
    /// `(file name, bytes)` of each upload received, in order.
    uploads: Vec<(String, Vec<u8>)>,
    seen: Vec<Seen>,
    /// Bytes of the 200 MB document written before the client went away.
    huge_written: u64,
}

/// The web application: a thread per connection, one request each.
struct App {
    port: u16,
    state: Arc<Mutex<AppState>>,
}

const HUGE: u64 = 200 * 1024 * 1024;

impl App {
    fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(AppState::default()));
        let s = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(stream, &s));
            }
        });
        App { port, state }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    fn put(&self, path: &str, bytes: Vec<u8>) {
        self.state.lock().unwrap().files.insert(path.into(), bytes);
    }

    fn redirect(&self, path: &str, location: &str) {
        self.state
            .lock()
            .unwrap()
            .redirects
            .insert(path.into(), location.into());
    }

    fn uploads(&self) -> Vec<(String, Vec<u8>)> {
        self.state.lock().unwrap().uploads.clone()
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn posts(&self) -> usize {
        self.seen().iter().filter(|s| s.method == "POST").count()
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn read_body(reader: &mut BufReader<TcpStream>, headers: &HashMap<String, String>) -> Vec<u8> {
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let size =
                usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
            if size == 0 {
                let mut end = String::new();
                let _ = reader.read_line(&mut end);
                break;
            }
            let mut chunk = vec![0u8; size + 2];
            if reader.read_exact(&mut chunk).is_err() {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = headers
        .get("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        body.resize(n, 0);
        let _ = reader.read_exact(&mut body);
    }
    body
}

/// The `uploadfile` part of a multipart body: its file name and bytes.
fn upload_part(content_type: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(i) = find(rest, &delimiter) {
        parts.push(&rest[..i]);
        rest = &rest[i + delimiter.len()..];
    }
    for part in parts {
        let Some(h) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..h]);
        if !head.contains("name=\"uploadfile\"") {
            continue;
        }
        let name = head
            .split("filename=\"")
            .nth(1)?
            .split('"')
            .next()?
            .to_string();
        let content = &part[h + 4..];
        let content = content.strip_suffix(b"\r\n").unwrap_or(content);
        return Some((name, content.to_vec()));
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn serve(stream: TcpStream, state: &Mutex<AppState>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut stream = stream;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let body = read_body(&mut reader, &headers);
    state.lock().unwrap().seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
    });
    match (method.as_str(), path.as_str()) {
        ("GET", "/huge.pdf") => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: {HUGE}\r\n\r\n%PDF-1.7\n"
            );
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            let mut written = 0u64;
            stream.set_write_timeout(Some(Duration::from_secs(20))).ok();
            while written < HUGE {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
                written += chunk.len() as u64;
                state.lock().unwrap().huge_written = written;
            }
        }
        (_, "/silent.pdf" | "/upload-silent") => {
            // Holds the connection and never answers.
            std::thread::sleep(Duration::from_secs(120));
        }
        ("GET", p) if state.lock().unwrap().redirects.contains_key(p) => {
            let location = state.lock().unwrap().redirects[p].clone();
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
        }
        ("GET", p) => {
            let file = state.lock().unwrap().files.get(p).cloned();
            match file {
                Some(f) => respond(&mut stream, "200 OK", "application/pdf", &f),
                None => respond(&mut stream, "404 Not Found", "text/plain", b"not found"),
            }
        }
        ("POST", "/upload-false") => {
            let answer = json!({"Status": false, "Message": "Hồ sơ đã khóa, không nhận văn bản", "FileName": "", "FileServer": ""});
            respond(
                &mut stream,
                "200 OK",
                "application/json",
                answer.to_string().as_bytes(),
            );
        }
        ("POST", p) if p.starts_with("/upload") => {
            let ct = headers.get("content-type").cloned().unwrap_or_default();
            let Some((name, file)) = upload_part(&ct, &body) else {
                respond(
                    &mut stream,
                    "200 OK",
                    "application/json",
                    br#"{"Status":false,"Message":"no uploadfile"}"#,
                );
                return;
            };
            let n = {
                let mut s = state.lock().unwrap();
                s.uploads.push((name.clone(), file.clone()));
                let n = s.uploads.len();
                s.files.insert(format!("/f/{n}"), file);
                n
            };
            let file_server = FILE_SERVER.replace('N', &n.to_string());
            // `/upload-object` answers FileServer as a JSON object rather than a string.
            let file_server = if p == "/upload-object" {
                serde_json::from_str::<Value>(&file_server).expect("JSON")
            } else {
                json!(file_server)
            };
            let answer = json!({
                "Status": true,
                "Message": "",
                "FileName": name,
                "FileServer": file_server,
            });
            respond(
                &mut stream,
                "200 OK",
                "application/json",
                answer.to_string().as_bytes(),
            );
        }
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", b""),
    }
}

struct Setup {
    fx: Fixture,
    pin: PathBuf,
    daemon: Daemon,
    bridge: Bridge,
    app: App,
}

impl Setup {
    fn new() -> Setup {
        Setup::with_documents("")
    }

    /// With `documents`, the body of the configuration's `[documents]` table.
    fn with_documents(documents: &str) -> Setup {
        let fx = Fixture::new();
        let app = App::start();
        let pin = fx.subdir("pinentry");
        let program = bridge_pinentry(&pin);
        let port = free_port();
        let daemon = Daemon::start_with(
            &fx,
            DaemonConfig {
                extra: format!(
                    "{}\n[documents]\n{documents}\n",
                    bridge_config(&program, port, &[&app.origin(), OTHER_SITE])
                ),
                ..Default::default()
            },
        );
        let bridge = Bridge::start(&daemon, port, &[("KYSO_BRIDGE_HTTP_TIMEOUT", "3")]);
        Setup {
            fx,
            pin,
            daemon,
            bridge,
            app,
        }
    }

    fn call(&self, operation: &str, frame: &Value) -> Value {
        self.bridge
            .call(operation, Some(&self.app.origin()), &frame.to_string())
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

fn tool(name: &str) -> PathBuf {
    let venv = Path::new(VENV).join("bin").join(name);
    if venv.exists() {
        return venv;
    }
    panic!(
        "{} is missing: run scripts/setup-debian (pyHanko in tests/python/venv)",
        venv.display()
    );
}

/// `pyhanko sign validate` of every signature, trusting `ca`: one line per signature,
/// `<field>:<certificate fingerprint>:VALID`.
fn pyhanko_validate(pdf: &Path, ca: &Path) -> String {
    let out = Command::new(tool("pyhanko"))
        .args([
            "sign",
            "validate",
            "--no-revocation-check",
            "--trust-replace",
            "--trust",
        ])
        .arg(ca)
        .arg("--executive-summary")
        .arg(pdf)
        .output()
        .expect("run pyhanko");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pyhanko refused the file:\n{text}");
    text
}

fn pdfsig(pdf: &Path) -> String {
    let out = Command::new("pdfsig")
        .arg(pdf)
        .output()
        .expect("pdfsig (poppler-utils) is missing: run scripts/setup-debian");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn document_frame(app: &App, file: &str, handler: &str) -> Value {
    json!({
        "FileUploadHandler": app.url(handler),
        "SessionId": SESSION,
        "JWTToken": JWT,
        "FileName": app.url(file),
    })
}

#[test]
fn approved_then_issued_gives_two_signatures_pyhanko_and_poppler_validate() {
    let s = Setup::new();
    s.app.put(
        "/vb/cong-van-123.pdf",
        sample_pdf("Cong van so 123/UBND-VP"),
    );

    let a = s.call(
        "SignApproved",
        &document_frame(&s.app, "/vb/cong-van-123.pdf", "/upload"),
    );
    assert_eq!(a["Status"], 0, "{a}\n{}", s.bridge.log());
    // FileServer is the handler's string, unchanged.
    assert_eq!(
        a["FileServer"],
        json!("{\"fileEntryId\":1,\"url\":\"/f/1\"}")
    );
    assert_eq!(a["FileName"], "cong-van-123.pdf");
    let uploads = s.app.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].0, "cong-van-123.pdf");
    let original = sample_pdf("Cong van so 123/UBND-VP");
    assert!(
        uploads[0].1.starts_with(&original),
        "the signed file is the original followed by an incremental update"
    );
    // The page's identity went with both requests.
    for seen in s.app.seen() {
        assert_eq!(
            seen.headers.get("authorization").map(String::as_str),
            Some(&*format!("Bearer {JWT}")),
            "{seen:?}"
        );
        assert_eq!(
            seen.headers.get("cookie").map(String::as_str),
            Some(&*format!("ASP.NET_SessionId={SESSION}")),
            "{seen:?}"
        );
    }
    // The user confirmed naming the site, the operation and the file.
    let seen = s.seen();
    assert!(
        seen.contains(&s.app.origin())
            && seen.contains("cong-van-123.pdf")
            && seen.contains("ký duyệt"),
        "{seen}"
    );

    let mut issued = document_frame(&s.app, "/f/1", "/upload");
    issued["DocNumber"] = json!("123/UBND-VP");
    issued["IssuedDate"] = json!("2026-03-12T12:00:00+07:00");
    issued["SessionId"] = json!("");
    let b = s.call("SignIssued", &issued);
    assert_eq!(b["Status"], 0, "{b}\n{}", s.bridge.log());
    assert!(
        s.seen().contains("Số / number: 123/UBND-VP"),
        "{}",
        s.seen()
    );
    assert_eq!(
        b["FileServer"],
        json!("{\"fileEntryId\":2,\"url\":\"/f/2\"}")
    );
    assert_eq!(b["DocumentNumber"], "123/UBND-VP");
    assert_eq!(b["DocumentDate"], "2026-03-12T12:00:00+07:00");
    let uploads = s.app.uploads();
    assert_eq!(uploads.len(), 2);
    assert!(
        uploads[1].1.starts_with(&uploads[0].1),
        "signed in sequence"
    );
    let requests: Vec<String> = s
        .app
        .seen()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        requests,
        [
            "GET /vb/cong-van-123.pdf",
            "POST /upload",
            "GET /f/1",
            "POST /upload"
        ]
    );
    let last = s.app.seen().pop().unwrap();
    assert_eq!(
        last.headers.get("cookie"),
        None,
        "an empty SessionId sends no cookie"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = dir.path().join("signed.pdf");
    std::fs::write(&pdf, &uploads[1].1).expect("write");
    let report = pyhanko_validate(&pdf, &s.fx.ca_pem());
    assert_eq!(
        report.lines().filter(|l| l.ends_with(":VALID")).count(),
        2,
        "pyhanko:\n{report}"
    );
    assert!(!report.contains("INVALID"), "pyhanko:\n{report}");
    let poppler = pdfsig(&pdf);
    assert_eq!(
        poppler.matches("Signature is Valid").count(),
        2,
        "pdfsig:\n{poppler}"
    );

    // kysod's journal names the site and the documents.
    let journal = s.journal();
    let signed: Vec<&Value> = journal
        .iter()
        .filter(|e| e["site"] == json!(s.app.origin()))
        .collect();
    assert!(
        signed.iter().any(|e| e["document"]
            .as_str()
            .unwrap_or("")
            .contains("SignApproved cong-van-123.pdf")),
        "{journal:?}"
    );
    assert!(
        signed
            .iter()
            .any(|e| e["document"].as_str().unwrap_or("").contains("SignIssued")),
        "{journal:?}"
    );
}

#[test]
fn an_ec_certificate_signs_a_document() {
    let s = Setup::new();
    s.app.put("/a.pdf", sample_pdf("Van ban EC"));
    // The chooser offers the RSA certificate first: the user takes the next, the EC one.
    s.answers(&["notok", "ok", "ok"]);
    let a = s.call("SignPDF", &document_frame(&s.app, "/a.pdf", "/upload"));
    assert_eq!(a["Status"], 0, "{a}\n{}", s.bridge.log());
    let uploads = s.app.uploads();
    assert_eq!(uploads.len(), 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = dir.path().join("signed.pdf");
    std::fs::write(&pdf, &uploads[0].1).expect("write");
    let report = pyhanko_validate(&pdf, &s.fx.ca_pem());
    assert_eq!(
        report.lines().filter(|l| l.ends_with(":VALID")).count(),
        1,
        "pyhanko:\n{report}"
    );
    // pyHanko names the signer's certificate by its SHA-256: the EC one.
    let ec = sha256(&pem_cert_to_der(&s.fx.cert_pem(2)));
    let hex: String = ec.iter().map(|b| format!("{b:02x}")).collect();
    assert!(report.contains(&hex), "pyhanko:\n{report}");
    let poppler = pdfsig(&pdf);
    assert!(poppler.contains("Signature is Valid"), "pdfsig:\n{poppler}");
}

#[test]
fn a_copy_and_a_comment_are_signed_in_sequence() {
    let s = Setup::new();
    s.app
        .put("/vb/to-trinh.pdf", sample_pdf("To trinh so 45/TTr-VP"));
    let mut copy = document_frame(&s.app, "/vb/to-trinh.pdf", "/upload-object");
    copy["DocNumber"] = json!("45/TTr-VP");
    copy["MetaData"] = json!([{"Key": "DocId", "Value": 45}]);
    let a = s.call("SignCopy", &copy);
    assert_eq!(a["Status"], 0, "{a}\n{}", s.bridge.log());
    // An object FileServer is passed through as the same object.
    assert_eq!(a["FileServer"], json!({"fileEntryId": 1, "url": "/f/1"}));
    let mut comment = document_frame(&s.app, "/f/1", "/upload");
    comment["MetaData"] = json!([{"Key": "Comment", "Value": "Đồng ý ban hành"}]);
    let b = s.call("Comment", &comment);
    assert_eq!(b["Status"], 0, "{b}\n{}", s.bridge.log());
    let seen = s.seen();
    assert!(
        seen.contains("bản sao điện tử") && seen.contains("ý kiến"),
        "{seen}"
    );
    let uploads = s.app.uploads();
    assert_eq!(uploads.len(), 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = dir.path().join("signed.pdf");
    std::fs::write(&pdf, &uploads[1].1).expect("write");
    let report = pyhanko_validate(&pdf, &s.fx.ca_pem());
    assert_eq!(
        report.lines().filter(|l| l.ends_with(":VALID")).count(),
        2,
        "pyhanko:\n{report}"
    );
}

#[test]
fn several_files_are_signed_and_uploaded_each() {
    let s = Setup::new();
    s.app.put("/a.pdf", sample_pdf("Phu luc 1"));
    s.app.put("/b.pdf", sample_pdf("Phu luc 2"));
    // A redirect on the page's own origin is followed.
    s.app.redirect("/moved/b", "/b.pdf");
    let frame = json!({
        "FileUploadHandler": "/upload",
        "SessionId": "",
        "JWTToken": "",
        "Files": [
            {"FileID": 11, "FileName": "Phụ lục 1.pdf", "URL": s.app.url("/a.pdf")},
            {"FileID": "12", "FileName": "Phụ lục 2.pdf", "URL": "/moved/b"},
        ],
    });
    let a = s.call("SignAppendix", &frame);
    assert_eq!(a["Status"], 0, "{a}\n{}", s.bridge.log());
    let files = a["Files"].as_array().expect("Files");
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["FileID"], "11");
    assert_eq!(files[1]["FileID"], "12");
    assert_eq!(
        files[1]["FileServer"],
        json!("{\"fileEntryId\":2,\"url\":\"/f/2\"}")
    );
    assert_eq!(s.app.uploads().len(), 2);
}

#[test]
fn an_address_on_another_origin_is_refused_without_a_connection() {
    let s = Setup::new();
    s.app.put("/a.pdf", sample_pdf("Van ban"));
    let other = TcpListener::bind("127.0.0.1:0").expect("bind");
    other.set_nonblocking(true).expect("nonblocking");
    let elsewhere = format!("http://127.0.0.1:{}", other.local_addr().unwrap().port());

    // The document elsewhere.
    let mut frame = document_frame(&s.app, "/a.pdf", "/upload");
    frame["FileName"] = json!(format!("{elsewhere}/a.pdf"));
    let a = s.call("SignPDF", &frame);
    assert_eq!(a["Status"], 31, "{a}");
    assert!(a["Message"].as_str().unwrap().contains(&elsewhere), "{a}");
    // The upload handler elsewhere: the document is not fetched either.
    let mut frame = document_frame(&s.app, "/a.pdf", "/upload");
    frame["FileUploadHandler"] = json!(format!("{elsewhere}/upload"));
    let b = s.call("SignApproved", &frame);
    assert_eq!(b["Status"], 31, "{b}");
    // A redirect elsewhere.
    s.app.redirect("/away.pdf", &format!("{elsewhere}/a.pdf"));
    let r = s.call("SignPDF", &document_frame(&s.app, "/away.pdf", "/upload"));
    assert_eq!(r["Status"], 31, "{r}");
    // A host on the user's network, and another scheme.
    for address in ["http://192.168.1.1/admin", "file:///etc/passwd"] {
        let mut frame = document_frame(&s.app, "/a.pdf", "/upload");
        frame["FileName"] = json!(address);
        let c = s.call("SignPDF", &frame);
        assert_eq!(c["Status"], 31, "{c}");
    }
    match other.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the other server saw a connection: {other:?}"),
    }
    let requests: Vec<String> = s.app.seen().iter().map(|r| r.path.clone()).collect();
    assert_eq!(requests, ["/away.pdf"], "only the redirect was asked for");
    assert!(
        !s.seen().contains("a.pdf"),
        "nothing was offered for signing:\n{}",
        s.seen()
    );
}

#[test]
fn a_200_mb_document_is_refused_without_reading_it() {
    let s = Setup::new();
    let start = Instant::now();
    let a = s.call("SignPDF", &document_frame(&s.app, "/huge.pdf", "/upload"));
    assert_eq!(a["Status"], 32, "{a}");
    assert!(a["Message"].as_str().unwrap().contains("50 MB"), "{a}");
    assert!(start.elapsed() < Duration::from_secs(20));
    // The application stops writing once the bridge has closed the connection.
    std::thread::sleep(Duration::from_millis(500));
    let written = s.app.state.lock().unwrap().huge_written;
    assert!(written < 60 * 1024 * 1024, "{written} bytes were read");
    assert_eq!(s.app.posts(), 0);
}

#[test]
fn a_server_that_never_answers_gives_a_timeout_and_holds_no_other_site() {
    let s = Setup::new();
    let start = Instant::now();
    let frame = document_frame(&s.app, "/silent.pdf", "/upload").to_string();
    let origin = s.app.origin();
    let answer = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| s.bridge.call("SignPDF", Some(&origin), &frame));
        // While the application's document waits, another site is answered at once.
        while !s.app.seen().iter().any(|r| r.path == "/silent.pdf") {
            assert!(start.elapsed() < Duration::from_secs(10), "no fetch");
            std::thread::sleep(Duration::from_millis(20));
        }
        let asked = Instant::now();
        let info = s
            .bridge
            .call("GetCertInfo", Some(OTHER_SITE), "get_cert_info");
        assert_eq!(info["Status"], 0, "{info}");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
        assert!(!waiting.is_finished(), "the document was still waiting");
        waiting.join().expect("the document's call")
    });
    assert_eq!(answer["Status"], 33, "{answer}");
    // KYSO_BRIDGE_HTTP_TIMEOUT=3.
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(s.app.posts(), 0);
}

#[test]
fn an_upload_handler_that_never_answers_gives_a_timeout() {
    let s = Setup::new();
    s.app.put("/a.pdf", sample_pdf("Van ban"));
    let start = Instant::now();
    let a = s.call(
        "SignPDF",
        &document_frame(&s.app, "/a.pdf", "/upload-silent"),
    );
    assert_eq!(a["Status"], 33, "{a}\n{}", s.bridge.log());
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_handler_answering_false_gives_a_failure_and_the_user_is_told() {
    let s = Setup::new();
    s.app.put("/a.pdf", sample_pdf("Van ban"));
    let a = s.call(
        "SignApproved",
        &document_frame(&s.app, "/a.pdf", "/upload-false"),
    );
    assert_eq!(a["Status"], 37, "{a}\n{}", s.bridge.log());
    let message = a["Message"].as_str().unwrap();
    assert!(message.contains("Hồ sơ đã khóa"), "{a}");
    assert!(message.contains("/upload-false"), "{a}");
    // The user is shown that the signed document did not reach the server.
    let start = Instant::now();
    while !s.seen().contains("did not reach the server") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no message to the user:\n{}",
            s.seen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unreachable_handler_on_an_allowed_origin_gives_a_failure() {
    // An origin the configuration allows, where nothing listens.
    let closed = free_port();
    let s = Setup::with_documents(&format!("fetch_origins = [\"http://127.0.0.1:{closed}\"]"));
    s.app.put("/a.pdf", sample_pdf("Van ban"));
    let mut frame = document_frame(&s.app, "/a.pdf", "/upload");
    frame["FileUploadHandler"] = json!(format!("http://127.0.0.1:{closed}/upload"));
    let a = s.call("SignPDF", &frame);
    assert_eq!(a["Status"], 37, "{a}\n{}", s.bridge.log());
    assert!(
        a["Message"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{closed}/upload")),
        "{a}"
    );
}

#[test]
fn files_that_cannot_be_signed_get_a_status_and_nothing_is_uploaded() {
    let mut s = Setup::new();
    s.app.put(
        "/page.pdf",
        b"<!DOCTYPE html><html>Phien dang nhap het han</html>".to_vec(),
    );
    s.app.put(
        "/report.docx",
        b"PK\x03\x04\x14\x00\x06\x00word/document.xml".to_vec(),
    );
    let a = s.call("SignPDF", &document_frame(&s.app, "/page.pdf", "/upload"));
    assert_eq!(a["Status"], 34, "{a}");
    let b = s.call(
        "SignFile",
        &document_frame(&s.app, "/report.docx", "/upload"),
    );
    assert_eq!(b["Status"], 40, "{b}");
    assert!(b["Message"].as_str().unwrap().contains("Office"), "{b}");
    let c = s.call(
        "SignPDF",
        &document_frame(&s.app, "/missing.pdf", "/upload"),
    );
    assert_eq!(c["Status"], 30, "{c}");
    assert!(c["Message"].as_str().unwrap().contains("404"), "{c}");
    assert_eq!(s.app.posts(), 0);
    assert!(
        !s.seen().contains("page.pdf") && !s.seen().contains("report.docx"),
        "nothing was offered for signing:\n{}",
        s.seen()
    );
    // The user declines a document: nothing is signed or uploaded.
    s.app.put("/a.pdf", sample_pdf("Van ban"));
    s.answers(&["cancel"]);
    let e = s.call("SignApproved", &document_frame(&s.app, "/a.pdf", "/upload"));
    assert_eq!(e["Status"], 1, "{e}");
    assert!(s.seen().contains("a.pdf"), "{}", s.seen());
    assert_eq!(s.app.posts(), 0);
    // Bad requests name the field.
    let d = s.call("SignIssued", &json!({"FileName": s.app.url("/page.pdf")}));
    assert_eq!(d["Status"], 10, "{d}");
    assert!(
        d["Message"].as_str().unwrap().contains("FileUploadHandler"),
        "{d}"
    );
    assert!(s.bridge.is_running());
}

#[test]
fn encrypted_and_damaged_pdfs_get_their_status() {
    let s = Setup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("plain.pdf");
    let encrypted = dir.path().join("encrypted.pdf");
    std::fs::write(&plain, sample_pdf("Mat")).expect("write");
    let qpdf = Command::new("qpdf")
        .args(["--encrypt", "", "owner-pw", "256", "--"])
        .arg(&plain)
        .arg(&encrypted)
        .status()
        .expect("qpdf is missing: run scripts/setup-debian");
    assert!(qpdf.success());
    s.app
        .put("/encrypted.pdf", std::fs::read(&encrypted).expect("read"));
    let mut damaged = sample_pdf("Hong");
    damaged.truncate(damaged.len() / 2);
    damaged.extend_from_slice(b"\x00\x01garbage");
    s.app.put("/damaged.pdf", damaged);
    let a = s.call(
        "SignPDF",
        &document_frame(&s.app, "/encrypted.pdf", "/upload"),
    );
    assert_eq!(a["Status"], 35, "{a}");
    let b = s.call(
        "SignPDF",
        &document_frame(&s.app, "/damaged.pdf", "/upload"),
    );
    assert_eq!(b["Status"], 36, "{b}");
    assert_eq!(s.app.posts(), 0);
}

/// `VerifyPDF`: a document by its address on the page's site, or inline, verified signature by
/// signature against `[documents] trust_anchors`, with no token and no prompt; a changed byte is
/// invalid, a file that is not a PDF gets its status.
#[test]
fn verifypdf_answers_per_signature() {
    // The anchors are read at each verification: the fixture's CA goes in once it exists.
    let trust = tempfile::tempdir().expect("tempdir");
    let s = Setup::with_documents(&format!(
        "trust_anchors = {}",
        kyso_tests::toml_str(&trust.path().to_string_lossy())
    ));
    std::fs::copy(s.fx.ca_pem(), trust.path().join("ca.pem")).unwrap();
    s.app
        .put("/vb/to-trinh.pdf", sample_pdf("To trinh so 7/TTr-UBND"));
    let a = s.call(
        "SignApproved",
        &document_frame(&s.app, "/vb/to-trinh.pdf", "/upload"),
    );
    assert_eq!(a["Status"], 0, "{a}\n{}", s.bridge.log());
    let prompts = s.seen();

    // By address: the signed file the handler now serves.
    let v = s.call("VerifyPDF", &json!({ "FileName": s.app.url("/f/1") }));
    let sig = &v["Signatures"][0];
    assert_eq!(v["Signatures"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(sig["intact"], true, "{v}");
    assert_eq!(sig["covers"], "whole", "{v}");
    assert_eq!(sig["class"], "personal", "{v}");
    assert_eq!(sig["trusted"], true, "{v}");
    // Revocation cannot be checked for the demo CA: not "valid", so status 8.
    assert_eq!(sig["revocation"], "not_checked", "{v}");
    assert_eq!(v["Valid"], false, "{v}");
    assert_eq!(v["Status"], 8, "{v}");
    assert!(
        v["Message"].as_str().is_some_and(|m| m.contains(" / ")),
        "{v}"
    );
    assert_eq!(s.seen(), prompts, "verifying asks the user nothing");

    // Inline, with a byte of the page's text changed.
    let mut signed = s.app.uploads()[0].1.clone();
    let at = find(&signed, b"To trinh").expect("page text");
    signed[at] = b't';
    let b64 = base64::engine::general_purpose::STANDARD.encode(&signed);
    let v = s.call("VerifyPDF", &json!({ "Base64Content": b64 }));
    assert_eq!(v["Signatures"][0]["intact"], false, "{v}");
    assert_eq!(v["Signatures"][0]["verdict"], "invalid", "{v}");
    assert_eq!(v["Status"], 8, "{v}");

    let not_pdf = base64::engine::general_purpose::STANDARD.encode(b"hello");
    let v = s.call("VerifyPDF", &json!({ "Base64Content": not_pdf }));
    assert_eq!(v["Status"], 34, "{v}");
    let v = s.call("VerifyPDF", &json!({ "FileName": "http://10.1.2.3/x.pdf" }));
    assert_eq!(v["Status"], 31, "{v}");
}
