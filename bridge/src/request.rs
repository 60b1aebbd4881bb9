//! Decoding a page's request: the operation from the WebSocket path, its one text frame into a
//! typed [`Request`]. Total: any path and text give a request or a [`Failure`] naming the field
//! at fault, never a panic.

use base64::Engine;
use serde_json::Value;

use crate::status::{Failure, Status};

/// The hash functions a page may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// `SHA256`, `Sha256`, `sha-256`, `SHA_256` and the like.
    pub fn parse(name: &str) -> Option<HashAlg> {
        let n: String = name
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_lowercase();
        match n.as_str() {
            "sha1" => Some(HashAlg::Sha1),
            "sha256" => Some(HashAlg::Sha256),
            "sha384" => Some(HashAlg::Sha384),
            "sha512" => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The algorithm whose digests have `len` bytes.
    pub fn of_len(len: usize) -> Option<HashAlg> {
        [
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ]
        .into_iter()
        .find(|a| a.digest_len() == len)
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "SHA1",
            HashAlg::Sha256 => "SHA256",
            HashAlg::Sha384 => "SHA384",
            HashAlg::Sha512 => "SHA512",
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// A digest with its algorithm; the length always matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub alg: HashAlg,
    pub value: Vec<u8>,
}

/// What a VerifyMsg request gives as the signed thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    Digest(Digest),
    Content { alg: HashAlg, data: Vec<u8> },
}

/// The document operations: each fetches a file, signs it and uploads the signed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentOp {
    /// `SignPDF`: a plain signature.
    Pdf,
    /// `SignFile`: a plain signature on a PDF (other files are not supported).
    File,
    /// `SignApproved`: the leader's signature ("ký duyệt").
    Approved,
    /// `SignIssued`: the organisation's seal when a clerk issues ("đóng dấu phát hành").
    Issued,
    /// `SignIncome`: a received document ("ký văn bản đến").
    Income,
    /// `SignAppendix`: an attachment.
    Appendix,
    /// `SignCopy`: an electronic copy ("bản sao điện tử").
    Copy,
    /// `Comment`: an opinion.
    Comment,
}

impl DocumentOp {
    pub const ALL: [DocumentOp; 8] = [
        DocumentOp::Pdf,
        DocumentOp::File,
        DocumentOp::Approved,
        DocumentOp::Issued,
        DocumentOp::Income,
        DocumentOp::Appendix,
        DocumentOp::Copy,
        DocumentOp::Comment,
    ];

    /// The operation's path (`SignApproved`).
    pub fn name(self) -> &'static str {
        match self {
            DocumentOp::Pdf => "SignPDF",
            DocumentOp::File => "SignFile",
            DocumentOp::Approved => "SignApproved",
            DocumentOp::Issued => "SignIssued",
            DocumentOp::Income => "SignIncome",
            DocumentOp::Appendix => "SignAppendix",
            DocumentOp::Copy => "SignCopy",
            DocumentOp::Comment => "Comment",
        }
    }

    /// What the user is asked to confirm (Vietnamese / English).
    pub fn description(self) -> &'static str {
        match self {
            DocumentOp::Pdf | DocumentOp::File => "ký văn bản / sign the document",
            DocumentOp::Approved => "ký duyệt / the leader's signature",
            DocumentOp::Issued => "đóng dấu phát hành / the organisation's seal on issue",
            DocumentOp::Income => "ký văn bản đến / sign a received document",
            DocumentOp::Appendix => "ký phụ lục / sign an attachment",
            DocumentOp::Copy => "ký bản sao điện tử / sign an electronic copy",
            DocumentOp::Comment => "ký ý kiến / sign an opinion",
        }
    }
}

/// One file of a document request: where to fetch it, and how the page names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentFile {
    /// `FileID` of the several-files form, given back in its answer.
    pub id: Option<String>,
    /// `FileName` of the several-files form (a name, not an address).
    pub name: Option<String>,
    /// The address to fetch: `FileName` of the one-file form, `URL` of the several-files form.
    pub url: String,
}

/// A document operation's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRequest {
    pub op: DocumentOp,
    /// `FileUploadHandler`: where the signed file is posted.
    pub upload_handler: String,
    /// `SessionId`, sent as the cookie `ASP.NET_SessionId` (when not empty).
    pub session_id: Option<String>,
    /// `JWTToken`, sent as `Authorization: Bearer` (when not empty).
    pub jwt: Option<String>,
    pub files: Vec<DocumentFile>,
    /// Whether the request used the several-files form (`Files`), which has its own answer.
    pub several: bool,
    /// `MetaData`: `[{"Key","Value"}]`.
    pub meta: Vec<(String, String)>,
    pub doc_number: Option<String>,
    pub issued_date: Option<String>,
}

/// Files one request may name at most.
pub const MAX_FILES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    GetCertInfo,
    SignMsg(Digest),
    VerifyMsg {
        signed: Signed,
        signature: Vec<u8>,
        cert: Option<Vec<u8>>,
    },
    SignXml {
        xml: Vec<u8>,
        signature_only: bool,
        alg: HashAlg,
    },
    VerifyXml {
        xml: Vec<u8>,
        /// A lone `<Signature>` (SignXML's signature-only answer) to verify over `xml`.
        signature: Option<Vec<u8>>,
    },
    Auth {
        challenge: String,
    },
    GetLicenseRequest,
    Config,
    Document(DocumentRequest),
    /// `VerifyPDF`: every signature of a PDF given inline or by its address.
    VerifyPdf(PdfSource),
    /// An operation of the original service kyso does not offer; answered "not supported".
    Unsupported(&'static str),
}

/// Where `VerifyPDF`'s document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PdfSource {
    /// `Base64Content`.
    Inline(Vec<u8>),
    /// `FileName`: fetched as the document operations fetch.
    Address(String),
}

/// Operations of the original service kyso answers "not supported".
const UNSUPPORTED: &[&str] = &[
    "SignOffice",
    "VerifyOffice",
    "SignXMLP12",
    "SignPDFWP",
    "SignJson",
    "VerifyJson",
];

impl Request {
    /// What the request is, for logs, prompts and the journal.
    pub fn operation(&self) -> &'static str {
        match self {
            Request::GetCertInfo => "GetCertInfo",
            Request::SignMsg(_) => "SignMsg",
            Request::VerifyMsg { .. } => "VerifyMsg",
            Request::SignXml { .. } => "SignXML",
            Request::VerifyXml { .. } => "VerifyXML",
            Request::Auth { .. } => "Auth",
            Request::GetLicenseRequest => "GetLicenseRequest",
            Request::Config => "Config",
            Request::Document(d) => d.op.name(),
            Request::VerifyPdf(_) => "VerifyPDF",
            Request::Unsupported(op) => op,
        }
    }

    /// Whether the operation uses the token (and so needs the site's consent).
    pub fn uses_token(&self) -> bool {
        matches!(
            self,
            Request::GetCertInfo
                | Request::SignMsg(_)
                | Request::SignXml { .. }
                | Request::Auth { .. }
                | Request::Document(_)
        )
    }
}

/// The operation named by a WebSocket request path (`/SignMsg`, `/SignMsg/`, `/SignMsg?x`).
/// `None` for a path that names no operation of the service.
pub fn operation_of(path: &str) -> Option<&str> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let op = path.strip_prefix('/')?.trim_end_matches('/');
    (!op.is_empty() && op.len() <= 64 && op.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(op)
}

/// Decodes the frame sent to `operation`.
pub fn decode(operation: &str, frame: &str) -> Result<Request, Failure> {
    match operation {
        "GetCertInfo" => Ok(Request::GetCertInfo),
        "SignMsg" => sign_msg(frame),
        "VerifyMsg" => verify_msg(frame),
        "SignXML" => sign_xml(frame),
        "VerifyXML" => {
            let v = object(frame)?;
            let signature = match string_field(&v, "Signature")? {
                Some(s) => Some(base64_value("Signature", s)?),
                None => None,
            };
            Ok(Request::VerifyXml {
                xml: base64_field(&v, "Base64Content")?,
                signature,
            })
        }
        "VerifyPDF" => {
            let v = object(frame)?;
            if v.contains_key("Base64Content") {
                return Ok(Request::VerifyPdf(PdfSource::Inline(base64_field(
                    &v,
                    "Base64Content",
                )?)));
            }
            match string_field(&v, "FileName")? {
                Some(address) if !address.is_empty() => {
                    Ok(Request::VerifyPdf(PdfSource::Address(address.to_string())))
                }
                _ => Err(bad("FileName or Base64Content")),
            }
        }
        "Auth" => {
            if frame.is_empty() {
                return Err(bad("the challenge is empty / chuỗi thách thức rỗng"));
            }
            Ok(Request::Auth {
                challenge: frame.to_string(),
            })
        }
        "GetLicenseRequest" => Ok(Request::GetLicenseRequest),
        "Config" => Ok(Request::Config),
        other => match DocumentOp::ALL.into_iter().find(|d| d.name() == other) {
            Some(op) => document(op, frame).map(Request::Document),
            None => unsupported(other),
        },
    }
}

fn unsupported(other: &str) -> Result<Request, Failure> {
    match UNSUPPORTED.iter().find(|u| **u == other) {
        Some(u) => Ok(Request::Unsupported(u)),
        None => Err(Failure::with(
            Status::NotSupported,
            "không có chức năng này / no such operation",
        )),
    }
}

fn bad(detail: impl Into<String>) -> Failure {
    Failure::with(Status::BadRequest, detail)
}

fn object(frame: &str) -> Result<serde_json::Map<String, Value>, Failure> {
    match serde_json::from_str::<Value>(frame) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("expected a JSON object / cần một đối tượng JSON")),
        Err(_) => Err(bad("not JSON / không phải JSON")),
    }
}

fn string_field<'a>(
    m: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, Failure> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{name}: expected a string / cần một chuỗi"))),
    }
}

fn base64_field(m: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>, Failure> {
    let text =
        string_field(m, name)?.ok_or_else(|| bad(format!("{name}: missing / thiếu trường")))?;
    base64_value(name, text)
}

fn base64_value(name: &str, text: &str) -> Result<Vec<u8>, Failure> {
    // Pages send standard base64, at times with line breaks.
    let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|_| bad(format!("{name}: not base64 / không phải base64")))
}

/// `"true"`/`"false"` as strings (what pages send) or JSON booleans.
fn bool_field(m: &serde_json::Map<String, Value>, name: &str) -> Result<Option<bool>, Failure> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(bad(format!(
            "{name}: expected \"true\" or \"false\" / cần \"true\" hoặc \"false\""
        ))),
    }
}

fn hash_alg_field(m: &serde_json::Map<String, Value>) -> Result<Option<HashAlg>, Failure> {
    match string_field(m, "HashAlg")? {
        None => Ok(None),
        Some(name) => HashAlg::parse(name).map(Some).ok_or_else(|| {
            bad("HashAlg: unknown hash algorithm / thuật toán băm không được hỗ trợ")
        }),
    }
}

fn digest(alg: Option<HashAlg>, value: Vec<u8>) -> Result<Digest, Failure> {
    let alg = match alg {
        Some(a) => a,
        None => HashAlg::of_len(value.len())
            .ok_or_else(|| bad("HashValue: not a digest's length / độ dài giá trị băm sai"))?,
    };
    if value.len() != alg.digest_len() {
        return Err(bad(format!(
            "HashValue: a {} digest has {} bytes, not {} / độ dài giá trị băm sai",
            alg.name(),
            alg.digest_len(),
            value.len()
        )));
    }
    Ok(Digest { alg, value })
}

fn sign_msg(frame: &str) -> Result<Request, Failure> {
    let trimmed = frame.trim();
    if !trimmed.starts_with('{') {
        // Older callers send the bare base64 digest; its length says which hash it is.
        return digest(None, base64_value("HashValue", trimmed)?).map(Request::SignMsg);
    }
    let m = object(frame)?;
    let alg = hash_alg_field(&m)?.unwrap_or(HashAlg::Sha256);
    if let Some(enc) = string_field(&m, "Encode")? {
        if !enc.is_empty()
            && !enc.eq_ignore_ascii_case("RSA")
            && !enc.eq_ignore_ascii_case("EC")
            && !enc.eq_ignore_ascii_case("ECDSA")
        {
            return Err(bad("Encode: expected \"RSA\" / cần \"RSA\""));
        }
    }
    digest(Some(alg), base64_field(&m, "HashValue")?).map(Request::SignMsg)
}

fn verify_msg(frame: &str) -> Result<Request, Failure> {
    let m = object(frame)?;
    let alg = hash_alg_field(&m)?;
    let signature = base64_field(&m, "Signature")?;
    let cert = match string_field(&m, "CertBase64")? {
        Some(c) => Some(base64_value("CertBase64", c)?),
        None => None,
    };
    let signed =
        match (
            string_field(&m, "HashValue")?,
            string_field(&m, "Base64Content")?,
        ) {
            (Some(h), None) => Signed::Digest(digest(alg, base64_value("HashValue", h)?)?),
            (None, Some(c)) => Signed::Content {
                alg: alg.unwrap_or(HashAlg::Sha256),
                data: base64_value("Base64Content", c)?,
            },
            (Some(_), Some(_)) => return Err(bad(
                "give HashValue or Base64Content, not both / chỉ cần HashValue hoặc Base64Content",
            )),
            (None, None) => return Err(bad("Base64Content: missing / thiếu trường")),
        };
    Ok(Request::VerifyMsg {
        signed,
        signature,
        cert,
    })
}

/// A string field; an empty string counts as absent.
fn text_field(m: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, Failure> {
    Ok(string_field(m, name)?
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

/// A string or a number (ids are sent as either), as text.
fn id_field(m: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, Failure> {
    match m.get(name) {
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        _ => text_field(m, name),
    }
}

fn meta_data(m: &serde_json::Map<String, Value>) -> Result<Vec<(String, String)>, Failure> {
    let parsed;
    let items = match m.get("MetaData") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        // Some callers send the list as a JSON string.
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => {
                parsed = a;
                &parsed
            }
            _ => {
                return Err(bad(
                    "MetaData: expected a list of {Key, Value} / cần danh sách {Key, Value}",
                ))
            }
        },
        Some(_) => {
            return Err(bad(
                "MetaData: expected a list of {Key, Value} / cần danh sách {Key, Value}",
            ))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter().take(256) {
        let Value::Object(o) = item else {
            return Err(bad(
                "MetaData: expected {Key, Value} objects / cần đối tượng {Key, Value}",
            ));
        };
        let key = string_field(o, "Key")
            .map_err(|_| bad("MetaData.Key: expected a string / cần một chuỗi"))?
            .ok_or_else(|| bad("MetaData.Key: missing / thiếu trường"))?;
        let value = match o.get("Value") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            Some(_) => return Err(bad("MetaData.Value: expected a string / cần một chuỗi")),
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// A credential sent in an HTTP header: visible ASCII, and for a cookie no `;` `,` `"` `\\`.
fn header_safe(name: &str, value: Option<String>, cookie: bool) -> Result<Option<String>, Failure> {
    if let Some(v) = &value {
        let ok = v.len() <= 8192
            && v.bytes().all(|b| {
                b.is_ascii_graphic() && !(cookie && matches!(b, b';' | b',' | b'"' | b'\\'))
            });
        if !ok {
            return Err(bad(format!(
                "{name}: characters an HTTP header cannot carry / ký tự không hợp lệ"
            )));
        }
    }
    Ok(value)
}

fn document(op: DocumentOp, frame: &str) -> Result<DocumentRequest, Failure> {
    let m = object(frame)?;
    let upload_handler = text_field(&m, "FileUploadHandler")?
        .ok_or_else(|| bad("FileUploadHandler: missing / thiếu trường"))?;
    let file_name = text_field(&m, "FileName")?;
    let (files, several) = match (m.get("Files"), file_name) {
        (None | Some(Value::Null), Some(url)) => (
            vec![DocumentFile {
                id: None,
                name: None,
                url,
            }],
            false,
        ),
        (None | Some(Value::Null), None) => {
            return Err(bad("FileName: missing / thiếu trường"));
        }
        (Some(_), Some(_)) => {
            return Err(bad(
                "give FileName or Files, not both / chỉ cần FileName hoặc Files",
            ))
        }
        (Some(Value::Array(items)), None) => {
            if items.is_empty() || items.len() > MAX_FILES {
                return Err(bad(format!(
                    "Files: from 1 to {MAX_FILES} files / từ 1 đến {MAX_FILES} tệp"
                )));
            }
            let mut files = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Value::Object(o) = item else {
                    return Err(bad(format!(
                        "Files[{i}]: expected an object / cần một đối tượng"
                    )));
                };
                let at = |f: Failure| Failure {
                    detail: f.detail.map(|d| format!("Files[{i}].{d}")),
                    ..f
                };
                files.push(DocumentFile {
                    id: id_field(o, "FileID").map_err(at)?,
                    name: text_field(o, "FileName").map_err(at)?,
                    url: text_field(o, "URL")
                        .map_err(at)?
                        .ok_or_else(|| bad(format!("Files[{i}].URL: missing / thiếu trường")))?,
                });
            }
            (files, true)
        }
        (Some(_), None) => return Err(bad("Files: expected a list / cần một danh sách")),
    };
    Ok(DocumentRequest {
        op,
        upload_handler,
        session_id: header_safe("SessionId", text_field(&m, "SessionId")?, true)?,
        jwt: header_safe("JWTToken", text_field(&m, "JWTToken")?, false)?,
        files,
        several,
        meta: meta_data(&m)?,
        doc_number: text_field(&m, "DocNumber")?,
        issued_date: text_field(&m, "IssuedDate")?,
    })
}

fn sign_xml(frame: &str) -> Result<Request, Failure> {
    let m = object(frame)?;
    let xml = base64_field(&m, "Base64Content")?;
    let signature_only = bool_field(&m, "ReturnSignatureOnly")?.unwrap_or(false);
    let alg = hash_alg_field(&m)?.unwrap_or(HashAlg::Sha256);
    if alg == HashAlg::Sha384 {
        return Err(bad("HashAlg: SignXML signs with SHA1, SHA256 or SHA512"));
    }
    // XmlDsigForm: the original's switch for the standard form, which is the only one kyso makes.
    bool_field(&m, "XmlDsigForm")?;
    Ok(Request::SignXml {
        xml,
        signature_only,
        alg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn paths_name_operations() {
        assert_eq!(operation_of("/SignMsg"), Some("SignMsg"));
        assert_eq!(operation_of("/SignMsg/"), Some("SignMsg"));
        assert_eq!(operation_of("/GetCertInfo?x=1"), Some("GetCertInfo"));
        assert_eq!(operation_of("/"), None);
        assert_eq!(operation_of("SignMsg"), None);
        assert_eq!(operation_of("/a/b"), None);
        assert_eq!(operation_of("/Sign%20Msg"), None);
    }

    #[test]
    fn sign_msg_in_both_forms() {
        let h = [7u8; 32];
        let r = decode(
            "SignMsg",
            &format!(
                r#"{{"HashAlg":"SHA256","HashValue":"{}","Encode":"RSA"}}"#,
                b64(&h)
            ),
        )
        .unwrap();
        assert_eq!(
            r,
            Request::SignMsg(Digest {
                alg: HashAlg::Sha256,
                value: h.to_vec()
            })
        );
        // A bare base64 digest: the length says SHA-1.
        let r = decode("SignMsg", &b64(&[1u8; 20])).unwrap();
        assert!(matches!(
            r,
            Request::SignMsg(Digest {
                alg: HashAlg::Sha1,
                ..
            })
        ));
        let r = decode(
            "SignMsg",
            &format!(
                r#"{{"HashAlg":"sha-512","HashValue":"{}"}}"#,
                b64(&[0u8; 64])
            ),
        )
        .unwrap();
        assert!(matches!(
            r,
            Request::SignMsg(Digest {
                alg: HashAlg::Sha512,
                ..
            })
        ));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let detail = |op: &str, frame: &str| {
            let f = decode(op, frame).unwrap_err();
            assert_eq!(f.status, Status::BadRequest, "{frame}");
            f.detail.unwrap()
        };
        assert!(detail("SignMsg", "{").contains("JSON"));
        assert!(detail("SignXML", "[1]").contains("object"));
        assert!(detail("SignMsg", r#"{"HashValue":5}"#).contains("HashValue"));
        assert!(detail("SignMsg", r#"{"HashValue":"!!"}"#).contains("base64"));
        assert!(detail("SignMsg", r#"{"HashValue":"AAAA"}"#).contains("bytes"));
        assert!(detail("SignMsg", r#"{"HashAlg":"MD5","HashValue":"AAAA"}"#).contains("HashAlg"));
        assert!(detail("SignMsg", r#"{"HashAlg":7,"HashValue":"AAAA"}"#).contains("HashAlg"));
        assert!(detail("SignMsg", "AAAA").contains("length"));
        assert!(detail("SignMsg", r#"{}"#).contains("missing"));
        assert!(detail(
            "SignXML",
            r#"{"Base64Content":"PGEvPg==","ReturnSignatureOnly":1}"#
        )
        .contains("ReturnSignatureOnly"));
        assert!(detail("VerifyMsg", r#"{"Signature":"AA=="}"#).contains("missing"));
        assert!(detail("Auth", "").contains("empty"));
    }

    #[test]
    fn sign_xml_fields() {
        let r = decode(
            "SignXML",
            r#"{"Base64Content":"PGEvPg==","ReturnSignatureOnly":"true","HashAlg":"Sha256","XmlDsigForm":"true"}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::SignXml {
                xml: b"<a/>".to_vec(),
                signature_only: true,
                alg: HashAlg::Sha256
            }
        );
    }

    #[test]
    fn unknown_and_unsupported_operations() {
        assert_eq!(
            decode("SignJson", "{}").unwrap(),
            Request::Unsupported("SignJson")
        );
        assert_eq!(
            decode("Nope", "{}").unwrap_err().status,
            Status::NotSupported
        );
        assert_eq!(
            decode("GetCertInfo", "get_cert_info").unwrap(),
            Request::GetCertInfo
        );
        assert_eq!(
            decode("GetLicenseRequest", "request").unwrap(),
            Request::GetLicenseRequest
        );
    }

    #[test]
    fn document_requests_in_both_forms() {
        let r = decode(
            "SignIssued",
            r#"{"FileUploadHandler":"https://a.vn/up","SessionId":"","JWTToken":"t","FileName":"https://a.vn/f.pdf","DocNumber":"123/BCY-CTSBMTT","IssuedDate":"2019-03-12T12:00:00+07:00","MetaData":[{"Key":"Comment","Value":"Đồng ý"},{"Key":"n","Value":5}]}"#,
        )
        .unwrap();
        let Request::Document(d) = r else {
            panic!("{r:?}")
        };
        assert_eq!(d.op, DocumentOp::Issued);
        assert_eq!(d.upload_handler, "https://a.vn/up");
        assert_eq!(d.session_id, None);
        assert_eq!(d.jwt.as_deref(), Some("t"));
        assert!(!d.several);
        assert_eq!(d.files[0].url, "https://a.vn/f.pdf");
        assert_eq!(d.doc_number.as_deref(), Some("123/BCY-CTSBMTT"));
        assert_eq!(
            d.meta,
            vec![
                ("Comment".into(), "Đồng ý".into()),
                ("n".into(), "5".into())
            ]
        );
        let r = decode(
            "SignApproved",
            r#"{"FileUploadHandler":"/up","Files":[{"FileID":7,"FileName":"a.pdf","URL":"/a.pdf"},{"FileID":"x","URL":"/b.pdf"}]}"#,
        )
        .unwrap();
        let Request::Document(d) = r else {
            panic!("{r:?}")
        };
        assert!(d.several);
        assert_eq!(d.files.len(), 2);
        assert_eq!(d.files[0].id.as_deref(), Some("7"));
        assert_eq!(d.files[0].name.as_deref(), Some("a.pdf"));
        assert_eq!(d.files[1].url, "/b.pdf");
        // MetaData as a JSON string.
        let r = decode(
            "Comment",
            r#"{"FileUploadHandler":"/up","FileName":"/a.pdf","MetaData":"[{\"Key\":\"Comment\",\"Value\":\"ok\"}]"}"#,
        )
        .unwrap();
        assert!(
            matches!(r, Request::Document(d) if d.meta == vec![("Comment".into(), "ok".into())])
        );
    }

    #[test]
    fn bad_document_requests_name_the_field() {
        let detail = |op: &str, frame: &str| {
            let f = decode(op, frame).unwrap_err();
            assert_eq!(f.status, Status::BadRequest, "{frame}");
            f.detail.unwrap()
        };
        assert!(detail("SignPDF", r#"{"FileName":"/a.pdf"}"#).contains("FileUploadHandler"));
        assert!(detail("SignPDF", r#"{"FileUploadHandler":"/u"}"#).contains("FileName"));
        assert!(
            detail("SignPDF", r#"{"FileUploadHandler":5,"FileName":"/a"}"#)
                .contains("FileUploadHandler")
        );
        assert!(detail(
            "SignCopy",
            r#"{"FileUploadHandler":"/u","FileName":"/a","DocNumber":1}"#
        )
        .contains("DocNumber"));
        assert!(detail(
            "Comment",
            r#"{"FileUploadHandler":"/u","FileName":"/a","MetaData":[{"Value":"x"}]}"#
        )
        .contains("MetaData.Key"));
        assert!(detail(
            "SignApproved",
            r#"{"FileUploadHandler":"/u","Files":[{"FileID":1}]}"#
        )
        .contains("Files[0].URL"));
        assert!(
            detail("SignApproved", r#"{"FileUploadHandler":"/u","Files":[]}"#).contains("Files")
        );
        assert!(detail(
            "SignApproved",
            r#"{"FileUploadHandler":"/u","FileName":"/a","Files":[{"URL":"/b"}]}"#
        )
        .contains("not both"));
        assert!(detail("SignIssued", "[]").contains("object"));
        assert!(detail(
            "SignPDF",
            r#"{"FileUploadHandler":"/u","FileName":"/a","SessionId":"a;b=c"}"#
        )
        .contains("SessionId"));
        assert!(detail(
            "SignPDF",
            r#"{"FileUploadHandler":"/u","FileName":"/a","JWTToken":"x\r\nHost: evil"}"#
        )
        .contains("JWTToken"));
    }

    #[test]
    fn any_text_decodes_or_fails_without_panic() {
        let ops = [
            "SignMsg",
            "VerifyMsg",
            "SignXML",
            "VerifyXML",
            "Auth",
            "SignPDF",
            "SignApproved",
            "X",
            "",
        ];
        let samples = [
            "",
            "{",
            "}",
            "null",
            "[]",
            "\"x\"",
            "1e999999",
            "{\"HashValue\":null}",
            "{\"HashValue\":\"\u{0}\"}",
            "{\"Base64Content\":\"====\"}",
            "\u{feff}{}",
            "{\"Signature\":\"AA==\",\"HashValue\":\"AA==\",\"Base64Content\":\"AA==\"}",
            "{\"FileUploadHandler\":\"/u\",\"Files\":[null,{\"URL\":[]}]}",
            "{\"FileUploadHandler\":\"/u\",\"FileName\":\"/a\",\"MetaData\":\"{\"}",
        ];
        for op in ops {
            for s in samples {
                let _ = decode(op, s);
            }
        }
        let deep = "[".repeat(100_000);
        assert!(decode("SignMsg", &deep).is_err());
    }
}
