//! The document operations' HTTP(S): fetching a document from the web application and posting
//! the signed file to its upload handler. Requests go only to the calling page's own origin and
//! the origins `[documents] fetch_origins` allows — an address elsewhere is refused before any
//! connection — with limits on size and time; TLS is checked against the system's roots.
//! Blocking: it runs on the site's thread.

use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ureq::http::{StatusCode, Uri};
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::origin::Origin;
use crate::status::{Failure, Status};

/// Seconds to wait for a server's answer, instead of [`ANSWER_TIMEOUT`].
pub const TIMEOUT_ENV: &str = "KYSO_BRIDGE_HTTP_TIMEOUT";
/// How long a server may take to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to answer a request (its status line and headers).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one request may take in all, its body included.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Redirects followed (each to an allowed origin) before giving up.
const MAX_REDIRECTS: usize = 5;
/// The largest upload handler's answer read.
const MAX_ANSWER: u64 = 1 << 20;

/// Size and time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest document fetched, in bytes.
    pub max_size: u64,
    pub connect: Duration,
    pub answer: Duration,
    pub total: Duration,
}

impl Limits {
    /// The defaults with `max_size`; [`TIMEOUT_ENV`] shortens (or lengthens) the answer's wait.
    pub fn new(max_size: u64) -> Limits {
        let answer = std::env::var(TIMEOUT_ENV)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(ANSWER_TIMEOUT);
        Limits {
            max_size,
            connect: CONNECT_TIMEOUT.min(answer),
            answer,
            total: TOTAL_TIMEOUT.max(answer),
        }
    }
}

/// What the page gave to identify its user to its own server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Sent as `Authorization: Bearer …`.
    pub jwt: Option<String>,
    /// Sent as the cookie `ASP.NET_SessionId=…`.
    pub session_id: Option<String>,
}

/// An HTTP client for one page's request.
pub struct Web {
    agent: ureq::Agent,
    page: Origin,
    allowed: Vec<Origin>,
    credentials: Credentials,
    limits: Limits,
}

/// The system's root certificates (`SSL_CERT_FILE` and `SSL_CERT_DIR` name others), read once.
fn system_roots() -> RootCerts {
    static ROOTS: OnceLock<RootCerts> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!("system root certificates: {e}");
            }
            if found.certs.is_empty() {
                tracing::warn!("no system root certificates: using Mozilla's");
                return RootCerts::WebPki;
            }
            let certs: Vec<Certificate<'static>> = found
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            RootCerts::Specific(Arc::new(certs))
        })
        .clone()
}

fn agent(limits: &Limits) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(limits.connect))
        .timeout_send_request(Some(limits.answer))
        .timeout_recv_response(Some(limits.answer))
        .timeout_global(Some(limits.total))
        .user_agent(concat!("kyso-bridge/", env!("CARGO_PKG_VERSION")))
        .tls_config(TlsConfig::builder().root_certs(system_roots()).build())
        .build()
        .into()
}

/// An address as given by a page: absolute (`https://host/…`), or a path on the page's own
/// origin (`/files/1.pdf`). Gives the absolute address and its origin.
pub fn resolve(page: &Origin, address: &str) -> Result<(String, Origin), Failure> {
    let address = address.trim();
    let absolute = if address.starts_with('/') && !address.starts_with("//") {
        format!("{page}{address}")
    } else {
        address.to_string()
    };
    let refused = |why: &str| {
        let shown: String = address.chars().take(200).collect();
        Failure::with(Status::AddressRefused, format!("{shown}: {why}"))
    };
    let uri: Uri = absolute
        .parse()
        .map_err(|_| refused("không phải địa chỉ web / not a web address"))?;
    let scheme = uri
        .scheme_str()
        .map(str::to_ascii_lowercase)
        .filter(|s| s == "http" || s == "https")
        .ok_or_else(|| refused("không phải http(s) / not http(s)"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| refused("không có máy chủ / no host"))?;
    if authority.as_str().contains('@') {
        return Err(refused(
            "địa chỉ chứa tên người dùng / the address carries a user name",
        ));
    }
    let origin = match authority.port_u16() {
        Some(p) => format!("{scheme}://{}:{p}", authority.host()),
        None => format!("{scheme}://{}", authority.host()),
    };
    let origin =
        Origin::parse(&origin).map_err(|_| refused("máy chủ không hợp lệ / malformed host"))?;
    Ok((absolute, origin))
}

/// A redirect's `Location` against the address it answered.
fn redirect_target(from: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let Some((scheme, rest)) = from.split_once("://") else {
        return location.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let base = format!("{scheme}://{}", &rest[..host_end]);
    if let Some(path) = location.strip_prefix("//") {
        format!("{scheme}://{path}")
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        let path = rest[host_end..].split(['?', '#']).next().unwrap_or("");
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{base}{dir}/{location}")
    }
}

/// The absolute address of `address` if a page of `page` may have it fetched or posted to:
/// on `page` itself or on one of `extra`.
pub fn check(page: &Origin, extra: &[Origin], address: &str) -> Result<String, Failure> {
    let (absolute, origin) = resolve(page, address)?;
    if origin != *page && !extra.contains(&origin) {
        let shown: String = absolute.chars().take(200).collect();
        return Err(Failure::with(
            Status::AddressRefused,
            format!(
                "{shown}: không thuộc {page} hay các địa chỉ được phép / neither on {page} nor in [documents] fetch_origins"
            ),
        ));
    }
    Ok(absolute)
}

fn timeout(what: &str, address: &str) -> Failure {
    Failure::with(Status::ServerTimeout, format!("{what} {address}"))
}

impl Web {
    /// A client for a page of `page`; `extra` are the configured `fetch_origins`.
    pub fn new(page: Origin, extra: &[Origin], credentials: Credentials, limits: Limits) -> Web {
        let mut allowed = vec![page.clone()];
        allowed.extend(extra.iter().cloned());
        Web {
            agent: agent(&limits),
            page,
            allowed,
            credentials,
            limits,
        }
    }

    /// The absolute address of `address` if the page may have it fetched or posted to.
    pub fn check(&self, address: &str) -> Result<String, Failure> {
        check(&self.page, &self.allowed, address)
    }

    fn with_credentials<B>(&self, mut request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if let Some(t) = &self.credentials.jwt {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(s) = &self.credentials.session_id {
            request = request.header("Cookie", format!("ASP.NET_SessionId={s}"));
        }
        request
    }

    /// A transport error as the page's failure; `what` says which request failed.
    fn failure(&self, what: &str, address: &str, error: ureq::Error) -> Failure {
        match error {
            ureq::Error::Timeout(_) => timeout(what, address),
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                timeout(what, address)
            }
            ureq::Error::BodyExceedsLimit(limit) => Failure::with(
                Status::DocumentTooLarge,
                format!("{address}: over {} MB", limit >> 20),
            ),
            ureq::Error::Http(_) | ureq::Error::BadUri(_) => {
                Failure::with(Status::AddressRefused, format!("{address}: {error}"))
            }
            e => Failure::with(
                Status::DocumentUnreachable,
                format!("{what} {address}: {e}"),
            ),
        }
    }

    /// `GET address`: the document, at most [`Limits::max_size`] bytes. Redirects are followed
    /// while they stay on allowed origins.
    pub fn get(&self, address: &str) -> Result<Vec<u8>, Failure> {
        let mut address = self.check(address)?;
        for _ in 0..=MAX_REDIRECTS {
            let request = self.with_credentials(self.agent.get(&address));
            let mut response = request
                .call()
                .map_err(|e| self.failure("GET", &address, e))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| {
                        Failure::with(
                            Status::DocumentUnreachable,
                            format!("{address}: HTTP {status} without Location"),
                        )
                    })?;
                address = self.check(&redirect_target(&address, location))?;
                continue;
            }
            if status != StatusCode::OK {
                return Err(Failure::with(
                    Status::DocumentUnreachable,
                    format!("{address}: HTTP {status}"),
                ));
            }
            let length = response
                .headers()
                .get("content-length")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.trim().parse::<u64>().ok());
            if let Some(n) = length.filter(|n| *n > self.limits.max_size) {
                return Err(self.too_large(&address, Some(n)));
            }
            let mut body = Vec::new();
            let read = response
                .body_mut()
                .as_reader()
                .take(self.limits.max_size + 1)
                .read_to_end(&mut body);
            match read {
                Ok(_) if body.len() as u64 > self.limits.max_size => {
                    return Err(self.too_large(&address, None))
                }
                Ok(_) => return Ok(body),
                Err(e) => {
                    let e = ureq::Error::from(e);
                    return Err(match e {
                        ureq::Error::Timeout(_) => timeout("GET", &address),
                        e => self.failure("GET", &address, e),
                    });
                }
            }
        }
        Err(Failure::with(
            Status::DocumentUnreachable,
            format!("{address}: quá nhiều chuyển hướng / too many redirects"),
        ))
    }

    fn too_large(&self, address: &str, size: Option<u64>) -> Failure {
        let limit = self.limits.max_size;
        Failure::with(
            Status::DocumentTooLarge,
            match size {
                Some(n) => format!(
                    "{address}: {} MB, tối đa / at most {} MB",
                    n.div_ceil(1 << 20),
                    limit >> 20
                ),
                None => format!("{address}: tối đa / at most {} MB", limit >> 20),
            },
        )
    }

    /// Posts `file` as the `multipart/form-data` part `uploadfile` named `file_name`; the
    /// handler's answer (at most 1 MiB), whatever its HTTP status.
    pub fn upload(
        &self,
        address: &str,
        file_name: &str,
        file: &[u8],
    ) -> Result<(u16, Vec<u8>), Failure> {
        let address = self.check(address)?;
        let (content_type, body) = multipart("uploadfile", file_name, file);
        let request = self
            .with_credentials(self.agent.post(&address))
            .header("Content-Type", content_type);
        let mut response = request
            .send(&body[..])
            .map_err(|e| self.upload_failure(&address, e))?;
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| self.upload_failure(&address, e))?;
        Ok((status, answer))
    }

    fn upload_failure(&self, address: &str, e: ureq::Error) -> Failure {
        let f = self.failure("POST", address, e);
        match f.status {
            Status::ServerTimeout => f,
            _ => Failure {
                status: Status::UploadFailed,
                ..f
            },
        }
    }
}

/// A `multipart/form-data` body with one file part; its `Content-Type` and bytes.
pub fn multipart(part: &str, file_name: &str, file: &[u8]) -> (String, Vec<u8>) {
    let mut random = [0u8; 12];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .is_err()
    {
        random = [7; 12];
    }
    let mut boundary = String::from("----kyso");
    for b in random {
        boundary.push_str(&format!("{b:02x}"));
    }
    // The plain `filename` in ASCII (what every handler reads), the exact one in `filename*`.
    let ascii: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut disposition = format!("form-data; name=\"{part}\"; filename=\"{ascii}\"");
    if ascii != file_name {
        let encoded: String = file_name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        disposition.push_str(&format!("; filename*=UTF-8''{encoded}"));
    }
    let mut body = Vec::with_capacity(file.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: application/pdf\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The timestamping service's requests: to its configured address only, small answers.
pub struct TimestampFetch {
    web: Web,
}

impl TimestampFetch {
    /// `None` when the address is not a usable http(s) address.
    pub fn new(url: &str, limits: Limits) -> Option<TimestampFetch> {
        let (_, origin) = resolve(&Origin::parse("http://localhost").ok()?, url).ok()?;
        let limits = Limits {
            max_size: 1 << 20,
            ..limits
        };
        Some(TimestampFetch {
            web: Web::new(origin, &[], Credentials::default(), limits),
        })
    }
}

impl kyso_pdf::net::Fetch for TimestampFetch {
    fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        self.web.get(url).map_err(|f| f.message())
    }

    fn post(&self, url: &str, content_type: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        let address = self.web.check(url).map_err(|f| f.message())?;
        let mut response = self
            .web
            .agent
            .post(&address)
            .header("Content-Type", content_type)
            .send(body)
            .map_err(|e| self.web.failure("POST", &address, e).message())?;
        if response.status() != StatusCode::OK {
            return Err(format!("{address}: HTTP {}", response.status()));
        }
        response
            .body_mut()
            .with_config()
            .limit(self.web.limits.max_size)
            .read_to_vec()
            .map_err(|e| self.web.failure("POST", &address, e).message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Origin {
        Origin::parse("https://vpdt.example.gov.vn").unwrap()
    }

    fn web(extra: &[&str]) -> Web {
        let extra: Vec<Origin> = extra.iter().map(|o| Origin::parse(o).unwrap()).collect();
        Web::new(page(), &extra, Credentials::default(), Limits::new(1 << 20))
    }

    #[test]
    fn only_the_page_and_allowed_origins() {
        let w = web(&["https://files.example.gov.vn"]);
        assert_eq!(
            w.check("/f/1.pdf").unwrap(),
            "https://vpdt.example.gov.vn/f/1.pdf"
        );
        assert!(w.check("https://VPDT.example.gov.vn:443/a").is_ok());
        assert!(w.check("https://files.example.gov.vn/a.pdf").is_ok());
        for refused in [
            "http://vpdt.example.gov.vn/a",
            "https://vpdt.example.gov.vn:8443/a",
            "https://192.168.1.1/admin",
            "https://user@vpdt.example.gov.vn/a",
            "//evil.example/a",
            "file:///etc/passwd",
            "ftp://vpdt.example.gov.vn/a",
            "a.pdf",
            "",
        ] {
            let f = w.check(refused).unwrap_err();
            assert_eq!(f.status, Status::AddressRefused, "{refused}");
        }
    }

    #[test]
    fn redirect_targets() {
        let from = "https://a.vn/x/y.pdf?q=1";
        assert_eq!(redirect_target(from, "/z.pdf"), "https://a.vn/z.pdf");
        assert_eq!(redirect_target(from, "z.pdf"), "https://a.vn/x/z.pdf");
        assert_eq!(redirect_target(from, "//b.vn/z"), "https://b.vn/z");
        assert_eq!(redirect_target(from, "http://c.vn/"), "http://c.vn/");
    }

    #[test]
    fn multipart_names_the_part_and_file() {
        let (ct, body) = multipart("uploadfile", "Công văn 1.pdf", b"%PDF-1.7 x");
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"uploadfile\"; filename=\"C_ng v_n 1.pdf\""));
        assert!(text.contains("filename*=UTF-8''C%C3%B4ng%20v%C4%83n%201.pdf"));
        assert!(text.ends_with(&format!("\r\n\r\n%PDF-1.7 x\r\n--{boundary}--\r\n")));
    }
}
