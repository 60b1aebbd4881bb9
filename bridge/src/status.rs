//! The answers' `Status` codes: kyso's own table, stable, each with a message for a person
//! (Vietnamese, then English). README.md of this crate lists them.

/// A non-zero `Status` and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The user cancelled or declined (PIN prompt, certificate chooser, confirmation).
    Cancelled = 1,
    /// The user refused this site, or refused it recently.
    SiteRefused = 2,
    /// The request has no `Origin`, or comes from something that is not an http(s) page.
    NoWebOrigin = 3,
    /// No token is present, or it holds no certificate with a key.
    NoCertificate = 4,
    /// The PIN was wrong.
    PinIncorrect = 5,
    /// The PIN is locked.
    PinLocked = 6,
    /// kysod's policy refused the certificate (expired, not yet valid, seal not confirmed).
    CertificateRefused = 7,
    /// A verification found the signature invalid.
    SignatureInvalid = 8,
    /// Too many requests at once, or the user is answering another site's prompt.
    Busy = 9,
    /// The request is malformed: not JSON, a field missing or of the wrong type, bad base64,
    /// a hash of the wrong length, an unknown hash algorithm.
    BadRequest = 10,
    /// The request frame is over the size limit.
    TooLarge = 12,
    /// A binary frame where a text frame was expected.
    NotText = 13,
    /// No request arrived in time.
    Timeout = 15,
    /// kysod cannot be reached.
    KysodUnavailable = 20,
    /// The token or kysod failed the operation.
    TokenError = 21,
    /// The document could not be fetched: the server refused the connection, answered an
    /// HTTP error, or broke off.
    DocumentUnreachable = 30,
    /// A document's or upload handler's address is neither on the page's own origin nor on one
    /// allowed in `[documents] fetch_origins`; nothing was sent to it.
    AddressRefused = 31,
    /// The document is over `[documents] max_size_mb`.
    DocumentTooLarge = 32,
    /// The web application's server did not answer in time.
    ServerTimeout = 33,
    /// The file is not a PDF.
    NotPdf = 34,
    /// The PDF is encrypted.
    PdfEncrypted = 35,
    /// The PDF is damaged.
    PdfDamaged = 36,
    /// The upload handler refused the signed document (`Status:false`), answered something
    /// that is not its JSON answer, or could not be reached.
    UploadFailed = 37,
    /// The signature could not be made into the document (appearance, timestamp, other).
    SigningFailed = 38,
    /// The operation is not supported by kyso (yet).
    NotSupported = 40,
}

impl Status {
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The message for a person: Vietnamese, then English.
    pub fn message(self) -> &'static str {
        match self {
            Status::Cancelled => "Người dùng đã hủy / Cancelled by the user",
            Status::SiteRefused => {
                "Trang web không được phép dùng chữ ký số / This site is not allowed to use your digital signature"
            }
            Status::NoWebOrigin => {
                "Yêu cầu không đến từ một trang web / The request does not come from a web page"
            }
            Status::NoCertificate => {
                "Không tìm thấy thiết bị ký số hoặc chứng thư số / No token or certificate found"
            }
            Status::PinIncorrect => "Mã PIN không đúng / Wrong PIN",
            Status::PinLocked => {
                "Mã PIN đã bị khóa, hãy liên hệ bộ phận hỗ trợ / The PIN is locked: ask your helpdesk"
            }
            Status::CertificateRefused => {
                "Chứng thư số không được phép ký (hết hạn hoặc chưa có hiệu lực) / The certificate may not sign (expired or not yet valid)"
            }
            Status::SignatureInvalid => "Chữ ký không hợp lệ / The signature is not valid",
            Status::Busy => "Dịch vụ đang bận, hãy thử lại / The service is busy: try again",
            Status::BadRequest => "Yêu cầu không hợp lệ / The request is malformed",
            Status::TooLarge => "Yêu cầu quá lớn / The request is too large",
            Status::NotText => {
                "Yêu cầu phải là văn bản (text frame) / The request must be a text frame"
            }
            Status::Timeout => "Hết thời gian chờ yêu cầu / No request arrived in time",
            Status::KysodUnavailable => {
                "Không kết nối được dịch vụ kysod / Cannot reach the kysod service"
            }
            Status::TokenError => {
                "Thiết bị ký số báo lỗi / The token failed the operation"
            }
            Status::DocumentUnreachable => {
                "Không tải được văn bản / The document could not be fetched"
            }
            Status::AddressRefused => {
                "Địa chỉ không thuộc trang web này, không được phép / The address is not the site's own and is not allowed"
            }
            Status::DocumentTooLarge => "Văn bản quá lớn / The document is too large",
            Status::ServerTimeout => {
                "Máy chủ của trang web không trả lời kịp / The site's server did not answer in time"
            }
            Status::NotPdf => "Tệp không phải văn bản PDF / The file is not a PDF",
            Status::PdfEncrypted => {
                "Văn bản PDF đã bị mã hóa, không ký được / The PDF is encrypted and cannot be signed"
            }
            Status::PdfDamaged => "Văn bản PDF bị hỏng / The PDF is damaged",
            Status::UploadFailed => {
                "Máy chủ không nhận văn bản đã ký / The server did not accept the signed document"
            }
            Status::SigningFailed => {
                "Không ký được văn bản / The document could not be signed"
            }
            Status::NotSupported => {
                "Chức năng này chưa được hỗ trợ / This operation is not supported"
            }
        }
    }

    /// Every status, for the documentation test.
    pub const ALL: [Status; 25] = [
        Status::Cancelled,
        Status::SiteRefused,
        Status::NoWebOrigin,
        Status::NoCertificate,
        Status::PinIncorrect,
        Status::PinLocked,
        Status::CertificateRefused,
        Status::SignatureInvalid,
        Status::Busy,
        Status::BadRequest,
        Status::TooLarge,
        Status::NotText,
        Status::Timeout,
        Status::KysodUnavailable,
        Status::TokenError,
        Status::DocumentUnreachable,
        Status::AddressRefused,
        Status::DocumentTooLarge,
        Status::ServerTimeout,
        Status::NotPdf,
        Status::PdfEncrypted,
        Status::PdfDamaged,
        Status::UploadFailed,
        Status::SigningFailed,
        Status::NotSupported,
    ];
}

/// A failure: its status, and a detail (Vietnamese / English) when there is more to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: Status,
    pub detail: Option<String>,
}

impl Failure {
    pub fn new(status: Status) -> Failure {
        Failure {
            status,
            detail: None,
        }
    }

    pub fn with(status: Status, detail: impl Into<String>) -> Failure {
        Failure {
            status,
            detail: Some(detail.into()),
        }
    }

    /// The message with its detail (as `Display` writes it).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The answer frame: `{"Status": N, "Message": …}`.
    pub fn answer(&self) -> serde_json::Value {
        serde_json::json!({ "Status": self.status.code(), "Message": self.to_string() })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{}: {d}", self.status.message()),
            None => f.write_str(self.status.message()),
        }
    }
}

impl From<Status> for Failure {
    fn from(status: Status) -> Failure {
        Failure::new(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in README.md lists every code with its message.
    #[test]
    fn readme_documents_every_status() {
        let readme = include_str!("../README.md");
        let mut codes = std::collections::BTreeSet::new();
        for s in Status::ALL {
            assert!(codes.insert(s.code()), "{s:?} reuses a code");
            let row = format!("| {} |", s.code());
            assert!(readme.contains(&row), "README.md lacks {row}");
            let vi = s.message().split(" / ").next().unwrap();
            assert!(readme.contains(vi), "README.md lacks the message of {s:?}");
        }
    }

    #[test]
    fn answers_carry_status_and_message() {
        let a = Failure::with(
            Status::BadRequest,
            "HashValue: không phải base64 / not base64",
        )
        .answer();
        assert_eq!(a["Status"], 10);
        assert!(a["Message"]
            .as_str()
            .unwrap()
            .starts_with("Yêu cầu không hợp lệ"));
        assert!(a["Message"].as_str().unwrap().contains("HashValue"));
    }
}
