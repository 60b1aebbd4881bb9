//! The document operations (`SignPDF`, `SignApproved`, `SignIssued`, …): fetch the file from
//! the web application, have the user confirm it, sign it with the appearance the operation
//! calls for, post the signed file to the page's upload handler, and answer with the handler's
//! `FileServer` unchanged. The upload handler's address is checked before anything is fetched,
//! and nothing is uploaded unless the signature was made.
//!
//! The several-files form (`"Files":[{"FileID","FileName","URL"}]` instead of `FileName`, on
//! the same operations) signs and uploads each file in turn, each confirmed on its own, and
//! answers `{"Status","Message","Files":[{"FileID","Status","FileName","FileServer",
//! "DocumentNumber","DocumentDate","Message"}]}`; a cancelled confirmation ends the run.

use std::sync::Arc;

use kyso_pdf::appearance::{self, Kind};
use kyso_pdf::config::Documents;
use serde_json::{json, Value};
use time::{OffsetDateTime, UtcOffset};

use crate::fetch::{Credentials, Limits, TimestampFetch, Web};
use crate::kysod::{Signer, TokenCert};
use crate::origin::Origin;
use crate::pdf_signer::TokenPdfSigner;
use crate::prompt::Prompts;
use crate::request::{DocumentFile, DocumentOp, DocumentRequest, PdfSource};
use crate::status::{Failure, Status};

/// `[documents]` as the bridge uses it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub documents: Documents,
    pub fetch_origins: Vec<Origin>,
    pub limits: Limits,
}

impl Settings {
    /// From the configuration's `[documents]` table.
    pub fn from_table(table: &toml::Table) -> Result<Settings, String> {
        Settings::new(Documents::from_table(table)?)
    }

    /// From `[documents]` as read (the organisation's with the user's over it).
    pub fn new(documents: Documents) -> Result<Settings, String> {
        let mut fetch_origins = Vec::new();
        for o in &documents.fetch_origins {
            fetch_origins.push(
                Origin::parse(o).map_err(|e| format!("[documents] fetch_origins: {o}: {e}"))?,
            );
        }
        Ok(Settings {
            limits: Limits::new(documents.max_size()),
            documents,
            fetch_origins,
        })
    }
}

impl Default for Settings {
    fn default() -> Settings {
        let documents = Documents::default();
        Settings {
            limits: Limits::new(documents.max_size()),
            documents,
            fetch_origins: Vec::new(),
        }
    }
}

/// What a document operation runs with: the site, its kysod client and certificate.
pub struct Context<'a> {
    pub site: &'a Origin,
    pub settings: &'a Settings,
    pub prompts: &'a Arc<Prompts>,
    pub client: &'a mut Signer,
    pub cert: TokenCert,
}

/// Refuses a request naming an address off the page's origin and the allowed ones, before
/// anything is asked or fetched.
pub fn check_addresses(
    site: &Origin,
    settings: &Settings,
    request: &DocumentRequest,
) -> Result<(), Failure> {
    crate::fetch::check(site, &settings.fetch_origins, &request.upload_handler)?;
    for f in &request.files {
        crate::fetch::check(site, &settings.fetch_origins, &f.url)?;
    }
    Ok(())
}

/// Runs a document request; the page's answer.
pub fn run(cx: &mut Context, request: &DocumentRequest) -> Result<Value, Failure> {
    let web = Web::new(
        cx.site.clone(),
        &cx.settings.fetch_origins,
        Credentials {
            jwt: request.jwt.clone(),
            session_id: request.session_id.clone(),
        },
        cx.settings.limits,
    );
    check_addresses(cx.site, cx.settings, request)?;
    if !request.several {
        let file = request
            .files
            .first()
            .ok_or_else(|| Failure::with(Status::BadRequest, "FileName"))?;
        let mut answer = one(cx, &web, request, file)?;
        answer["Status"] = json!(0);
        return Ok(answer);
    }
    let mut results = Vec::new();
    let mut first_failure: Option<Failure> = None;
    for file in &request.files {
        let id = json!(file.id.clone().unwrap_or_default());
        match one(cx, &web, request, file) {
            Ok(mut a) => {
                a["FileID"] = id;
                a["Status"] = json!(0);
                results.push(a);
            }
            Err(f) => {
                let mut a = f.answer();
                a["FileID"] = id;
                a["FileName"] = json!(file.name.clone().unwrap_or_default());
                results.push(a);
                let cancelled = f.status == Status::Cancelled;
                first_failure.get_or_insert(f);
                if cancelled {
                    break;
                }
            }
        }
    }
    Ok(match first_failure {
        None => json!({
            "Status": 0,
            "Message": format!("Đã ký {n} văn bản / {n} documents signed and uploaded", n = results.len()),
            "Files": results,
        }),
        Some(f) => {
            let mut a = f.answer();
            a["Files"] = json!(results);
            a
        }
    })
}

/// Now, in the machine's time zone (what the signature's appearance shows).
fn local_now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let offset = chrono::Local::now().offset().local_minus_utc();
    UtcOffset::from_whole_seconds(offset)
        .map(|o| now.to_offset(o))
        .unwrap_or(now)
}

/// What a fetched file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Pdf,
    /// A Word, Excel or PowerPoint file (OOXML's zip, or the older compound file).
    Office,
    Other,
}

fn kind_of(bytes: &[u8]) -> FileKind {
    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        FileKind::Pdf
    } else if bytes.starts_with(b"PK\x03\x04")
        || bytes.starts_with(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])
    {
        FileKind::Office
    } else {
        FileKind::Other
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name the signed file is uploaded under: the page's `FileName` of the several-files
/// form, else the address's last path segment.
fn upload_name(file: &DocumentFile) -> String {
    let raw = match &file.name {
        Some(n) => n.clone(),
        None => {
            let path = file.url.split(['?', '#']).next().unwrap_or("");
            percent_decode(path.rsplit('/').next().unwrap_or(""))
        }
    };
    let name: String = raw
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '/' | '\\'))
        .take(200)
        .collect();
    let name = name.trim().to_string();
    if name.is_empty() {
        "document.pdf".into()
    } else {
        name
    }
}

fn subject_field(cert: &[u8], oid: &str) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    let value = c
        .subject()
        .iter_attributes()
        .find(|a| a.attr_type().to_id_string() == oid)?
        .as_str()
        .ok()?
        .to_string();
    Some(value)
}

fn read_image(path: &Option<std::path::PathBuf>) -> Result<Option<Vec<u8>>, Failure> {
    match path {
        None => Ok(None),
        Some(p) => std::fs::read(p).map(Some).map_err(|e| {
            Failure::with(
                Status::SigningFailed,
                format!("[documents] {}: {e}", p.display()),
            )
        }),
    }
}

/// The comment of a `Comment` request, from its `MetaData`.
fn comment_of(meta: &[(String, String)]) -> Option<String> {
    const KEYS: [&str; 5] = ["comment", "content", "opinion", "ykien", "noidung"];
    meta.iter()
        .find(|(k, v)| KEYS.contains(&k.to_ascii_lowercase().as_str()) && !v.trim().is_empty())
        .map(|(_, v)| v.clone())
}

fn appearance_of(
    op: DocumentOp,
    request: &DocumentRequest,
    settings: &Settings,
    cert: &[u8],
    time: OffsetDateTime,
) -> Result<appearance::Request, Failure> {
    let d = &settings.documents;
    let kind = match op {
        DocumentOp::Pdf | DocumentOp::File => Kind::Plain,
        DocumentOp::Approved => Kind::Approved,
        DocumentOp::Issued => Kind::Issued,
        DocumentOp::Income => Kind::Income,
        DocumentOp::Appendix => Kind::Appendix,
        DocumentOp::Copy => Kind::Copy,
        DocumentOp::Comment => Kind::Comment,
    };
    let signature_image = match kind {
        Kind::Approved | Kind::Income | Kind::Comment => read_image(&d.signature_image)?,
        _ => None,
    };
    let seal_image = match kind {
        Kind::Issued => read_image(&d.seal_image)?,
        _ => None,
    };
    Ok(appearance::Request {
        kind,
        signer: subject_field(cert, "2.5.4.3").unwrap_or_default(),
        organisation: d
            .organisation
            .clone()
            .or_else(|| subject_field(cert, "2.5.4.10"))
            .unwrap_or_default(),
        time,
        doc_number: request.doc_number.clone(),
        issued_date: request.issued_date.clone(),
        copy_kind: match kind {
            Kind::Copy => Some(
                d.copy_kind
                    .clone()
                    .unwrap_or_else(|| "BẢN SAO ĐIỆN TỬ".into()),
            ),
            _ => None,
        },
        comment: match kind {
            Kind::Comment => comment_of(&request.meta),
            _ => None,
        },
        signature_image,
        seal_image,
        layout: d.layout.clone(),
    })
}

/// How long a CRL or OCSP answer may take while verifying.
const REVOCATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// `VerifyPDF`: every signature of the PDF, as `kyso verify --json` reports them. Status 0 only
/// when there are signatures and every one is valid; otherwise status 8, the report still
/// given. A document by address is fetched as the document operations fetch (the page's own
/// origin and `fetch_origins`, no credentials). No token is used.
pub fn verify(settings: &Settings, page: &Origin, source: &PdfSource) -> Result<Value, Failure> {
    let fetched;
    let (name, pdf) = match source {
        PdfSource::Inline(bytes) => ("document.pdf".to_string(), bytes),
        PdfSource::Address(address) => {
            let web = Web::new(
                page.clone(),
                &settings.fetch_origins,
                Credentials::default(),
                settings.limits,
            );
            fetched = web.get(address)?;
            (address.clone(), &fetched)
        }
    };
    if pdf.len() as u64 > settings.documents.max_size() {
        return Err(failure_of(kyso_pdf::Error::TooLarge {
            size: pdf.len() as u64,
            limit: settings.documents.max_size(),
        }));
    }
    // Without readable anchors no path is trusted, which the report says of each signature.
    let trust_anchors = match &settings.documents.trust_anchors {
        Some(dir) => kyso_pdf::config::read_trust_anchors(dir).unwrap_or_else(|e| {
            tracing::warn!("{e}");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let http = kyso_pdf::net::Http::new(REVOCATION_TIMEOUT, settings.limits.max_size);
    let options = kyso_pdf::verify::Options {
        trust_anchors,
        fetch: &http,
        now: time::OffsetDateTime::now_utc(),
    };
    let report = kyso_pdf::verify::verify_pdf(&name, pdf, &options).map_err(failure_of)?;
    let valid = !report.signatures.is_empty()
        && report
            .signatures
            .iter()
            .all(|s| s.verdict == kyso_pdf::verify::Verdict::Valid);
    let message = if report.signatures.is_empty() {
        "Văn bản không có chữ ký số / The document has no signature".to_string()
    } else {
        report.to_text()
    };
    Ok(json!({
        "Status": if valid { 0 } else { Status::SignatureInvalid.code() },
        "Valid": valid,
        "FileName": report.file,
        "Signatures": report.signatures,
        "Message": message,
    }))
}

/// The library's error as the page's failure.
fn failure_of(e: kyso_pdf::Error) -> Failure {
    use kyso_pdf::Error as E;
    match e {
        E::NotPdf => Failure::new(Status::NotPdf),
        E::Encrypted => Failure::new(Status::PdfEncrypted),
        E::Damaged(d) => Failure::with(Status::PdfDamaged, d),
        E::TooLarge { size, limit } => Failure::with(
            Status::DocumentTooLarge,
            format!("{} MB, tối đa / at most {} MB", size >> 20, limit >> 20),
        ),
        e => Failure::with(Status::SigningFailed, e.to_string()),
    }
}

/// Shows the user why a signed document did not reach the web application, without holding
/// the page's answer.
fn tell_user(prompts: &Arc<Prompts>, site: &Origin, file: &str, failure: &Failure) {
    let prompts = prompts.clone();
    let site = site.to_string();
    let text = format!(
        "Văn bản đã ký \"{file}\" chưa được gửi lên máy chủ / The signed document \"{file}\" did not reach the server:\n{}",
        failure.message()
    );
    let spawned = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || prompts.notify(&site, &text));
    if let Err(e) = spawned {
        tracing::warn!("cannot tell the user: {e}");
    }
}

fn string_or(v: &Value, key: &str, default: &str) -> Value {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => json!(s),
        Some(Value::Number(n)) => json!(n.to_string()),
        _ => json!(default),
    }
}

/// Fetches, signs and uploads one file; the answer's fields but `Status`.
fn one(
    cx: &mut Context,
    web: &Web,
    request: &DocumentRequest,
    file: &DocumentFile,
) -> Result<Value, Failure> {
    let op = request.op;
    let name = upload_name(file);
    let site = cx.site.to_string();
    let pdf = web.get(&file.url)?;
    match kind_of(&pdf) {
        FileKind::Pdf => {}
        FileKind::Office if op == DocumentOp::File => {
            return Err(Failure::with(
                Status::NotSupported,
                format!("{name}: kyso chỉ ký văn bản PDF, không ký tệp Office / kyso signs PDF documents, not Office files"),
            ))
        }
        _ => return Err(Failure::with(Status::NotPdf, name)),
    }
    let mut what = format!(
        "{}: \"{name}\" ({} KB)",
        op.description(),
        pdf.len().div_ceil(1024)
    );
    if let Some(n) = &request.doc_number {
        what.push_str(&format!("\nSố / number: {n}"));
    }
    if let Some(d) = &request.issued_date {
        what.push_str(&format!("\nNgày / date: {d}"));
    }
    cx.prompts
        .confirm_signature(&site, &what, &cx.cert.holder)?;

    let time = local_now();
    let appearance = appearance_of(op, request, cx.settings, &cx.cert.der, time)?;
    let timestamp_url = cx.settings.documents.timestamp_url.clone();
    let timestamps = timestamp_url
        .as_deref()
        .and_then(|u| TimestampFetch::new(u, cx.settings.limits));
    if timestamp_url.is_some() && timestamps.is_none() {
        return Err(Failure::with(
            Status::SigningFailed,
            "[documents] timestamp_url",
        ));
    }
    let offline = kyso_pdf::net::Offline;
    let options = kyso_pdf::sign::Options {
        field_name: None,
        reason: Some(op.description().to_string()),
        location: None,
        appearance: Some(appearance),
        timestamp_url: timestamps.as_ref().and(timestamp_url),
        fetch: match &timestamps {
            Some(t) => t,
            None => &offline,
        },
        time,
    };
    let mut signer =
        TokenPdfSigner::new(cx.client, cx.cert.clone(), format!("{} {name}", op.name()))?;
    let signed = kyso_pdf::sign::sign_pdf(&pdf, &mut signer, &options).map_err(|e| {
        match (signer.take_failure(), e) {
            (Some(f), kyso_pdf::Error::Signer(_)) => f,
            (_, e) => failure_of(e),
        }
    })?;
    tracing::info!(%site, operation = op.name(), file = %name, "signed");

    let (http, body) = web
        .upload(&request.upload_handler, &name, &signed)
        .inspect_err(|f| tell_user(cx.prompts, cx.site, &name, f))?;
    let refused = |detail: String| {
        let f = Failure::with(Status::UploadFailed, detail);
        tell_user(cx.prompts, cx.site, &name, &f);
        f
    };
    let handler = &request.upload_handler;
    let answer: Value = serde_json::from_slice(&body).map_err(|_| {
        refused(format!(
            "{handler}: HTTP {http}, không phải câu trả lời JSON / not a JSON answer"
        ))
    })?;
    let accepted = match answer.get("Status") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => return Err(refused(format!("{handler}: HTTP {http}, no Status"))),
    };
    if !accepted {
        let message = answer.get("Message").and_then(Value::as_str).unwrap_or("");
        return Err(refused(format!("{handler}: {message}")));
    }
    Ok(json!({
        "FileName": string_or(&answer, "FileName", &name),
        "FileServer": answer.get("FileServer").cloned().unwrap_or(json!("")),
        "DocumentNumber": string_or(&answer, "DocumentNumber", request.doc_number.as_deref().unwrap_or("")),
        "DocumentDate": string_or(&answer, "DocumentDate", request.issued_date.as_deref().unwrap_or("")),
        "Message": string_or(&answer, "Message", "Đã ký và gửi văn bản / The document was signed and uploaded"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kinds() {
        assert_eq!(kind_of(b"%PDF-1.7\n"), FileKind::Pdf);
        assert_eq!(kind_of(b"\xef\xbb\xbf%PDF-1.4"), FileKind::Pdf);
        assert_eq!(kind_of(b"PK\x03\x04rest"), FileKind::Office);
        assert_eq!(kind_of(b"<html>"), FileKind::Other);
        assert_eq!(kind_of(b""), FileKind::Other);
    }

    #[test]
    fn upload_names() {
        let f = |url: &str, name: Option<&str>| {
            upload_name(&DocumentFile {
                id: None,
                name: name.map(str::to_string),
                url: url.into(),
            })
        };
        assert_eq!(
            f("https://a.vn/f/C%C3%B4ng%20v%C4%83n.pdf?x=1", None),
            "Công văn.pdf"
        );
        assert_eq!(f("https://a.vn/f/", None), "document.pdf");
        assert_eq!(f("/x", Some("a/b\r\n.pdf")), "ab.pdf");
        assert_eq!(f("/x%", None), "x%");
    }

    #[test]
    fn comments_from_metadata() {
        let meta = vec![
            ("DocId".to_string(), "5".to_string()),
            ("Comment".to_string(), "Đồng ý".to_string()),
        ];
        assert_eq!(comment_of(&meta).as_deref(), Some("Đồng ý"));
        assert_eq!(comment_of(&meta[..1]), None);
    }
}
