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
    /// An operation of the original service kyso does not offer; answered "not supported".
    Unsupported(&'static str),
}

/// Operations of the original service kyso answers "not supported".
const UNSUPPORTED: &[&str] = &[
    "SignOffice",
    "VerifyOffice",
    "SignXMLP12",
    "SignPDFWP",
    "SignJson",
    "VerifyJson",
    "SignPDF",
    "SignFile",
    "SignApproved",
    "SignIssued",
    "SignIncome",
    "Comment",
    "SignAppendix",
    "SignCopy",
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
        other => match UNSUPPORTED.iter().find(|u| **u == other) {
            Some(u) => Ok(Request::Unsupported(u)),
            None => Err(Failure::with(
                Status::NotSupported,
                "không có chức năng này / no such operation",
            )),
        },
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
            decode("SignPDF", "{}").unwrap(),
            Request::Unsupported("SignPDF")
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
    fn any_text_decodes_or_fails_without_panic() {
        let ops = [
            "SignMsg",
            "VerifyMsg",
            "SignXML",
            "VerifyXML",
            "Auth",
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
