//! The listener: TLS on 127.0.0.1, then one HTTP request per connection — a WebSocket upgrade
//! for a page's call (one text frame in, one answer out, then close), or the settings page.
//! Every step has a deadline and a size limit, and the number of connections is bounded, so a
//! slow, silent or flooding client holds only its own connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::consent::{Answer, ConsentStore, Verdict};
use crate::http::{read_head, respond_plain};
use crate::origin::{Origin, OriginError};
use crate::prompt::Prompts;
use crate::request::{self, Request};
use crate::sites::Sites;
use crate::status::{Failure, Status};

/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 256;
/// TLS handshake and the HTTP request head must arrive within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The request frame must arrive within this after the upgrade.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request frame (an XML document to sign, base64).
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// What the bridge runs with.
pub struct Bridge {
    tls: TlsAcceptor,
    consent: Mutex<ConsentStore>,
    /// A site being asked about: others asking for it wait for the same answer.
    asking: Mutex<HashMap<Origin, Arc<tokio::sync::Mutex<()>>>>,
    prompts: Arc<Prompts>,
    sites: Sites,
    connections: Arc<Semaphore>,
    settings: crate::settings::SettingsPage,
}

impl Bridge {
    pub fn new(
        tls: TlsAcceptor,
        consent: ConsentStore,
        prompts: Arc<Prompts>,
        sites: Sites,
        settings: crate::settings::SettingsPage,
    ) -> Bridge {
        Bridge {
            tls,
            consent: Mutex::new(consent),
            asking: Mutex::new(HashMap::new()),
            prompts,
            sites,
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            settings,
        }
    }
}

/// The TLS configuration from the bridge's certificate files.
pub fn tls_acceptor(paths: &crate::cert::CertPaths) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&paths.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", paths.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&paths.key)
        .map_err(|e| format!("{}: {e}", paths.key.display()))?;
    // ring rather than aws-lc (no C toolchain in the build); its lack of post-quantum key
    // exchange does not matter for traffic that never leaves the machine.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    // X25519 first, as browsers prefer it: every page's call is a new connection with its own
    // key exchange, and ring's P-384 (first in its default list) costs ten times as much.
    {
        use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
        provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    }
    let provider = Arc::new(provider);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until the listener fails for good.
pub async fn serve(bridge: Arc<Bridge>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !peer.ip().is_loopback() {
            tracing::warn!(%peer, "refused a connection from another machine");
            continue;
        }
        let Ok(permit) = bridge.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections: closed one");
            continue;
        };
        let bridge = bridge.clone();
        tokio::spawn(async move {
            bridge.connection(stream, peer).await;
            drop(permit);
        });
    }
}

impl Bridge {
    async fn connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let start = async {
            let tls = self.tls.accept(stream).await.ok()?;
            let mut reader = BufReader::new(tls);
            let head = read_head(&mut reader).await?;
            Some((reader, head))
        };
        let Ok(Some((mut reader, head))) = tokio::time::timeout(HANDSHAKE_TIMEOUT, start).await
        else {
            tracing::debug!(%peer, "no request head in time, or a malformed one");
            return;
        };
        let upgrade = head
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        if !upgrade {
            crate::settings::http(&self.settings, &self.consent, &mut reader, &head).await;
            return;
        }
        let Some(key) = head.header("sec-websocket-key").map(str::to_string) else {
            let _ = respond_plain(&mut reader, 400, "Bad Request", "no Sec-WebSocket-Key").await;
            return;
        };
        let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        if reader.write_all(response.as_bytes()).await.is_err() || reader.flush().await.is_err() {
            return;
        }
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_MESSAGE);
        config.max_frame_size = Some(MAX_MESSAGE);
        let mut ws = WebSocketStream::from_raw_socket(reader, Role::Server, Some(config)).await;
        let origin = head.header("origin").map(str::to_string);
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, one_text(&mut ws)).await {
            Err(_) => Some(Failure::new(Status::Timeout).answer()),
            Ok(Err(Some(f))) => Some(f.answer()),
            Ok(Err(None)) => None,
            Ok(Ok(text)) => Some(
                match self.answer(&head.path, origin.as_deref(), &text).await {
                    Ok(v) => v,
                    Err(f) => f.answer(),
                },
            ),
        };
        if let Some(answer) = answer {
            let send = ws.send(Message::text(answer.to_string()));
            let _ = tokio::time::timeout(Duration::from_secs(10), send).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }

    /// The answer to one request frame.
    pub(crate) async fn answer(
        &self,
        path: &str,
        origin: Option<&str>,
        frame: &str,
    ) -> Result<Value, Failure> {
        let operation = request::operation_of(path).ok_or(Failure::with(
            Status::NotSupported,
            "không có chức năng này / no such operation",
        ))?;
        let origin = Origin::parse(origin.unwrap_or("")).map_err(|e| {
            Failure::with(
                Status::NoWebOrigin,
                match e {
                    OriginError::Missing => "Origin",
                    _ => "Origin: not http(s)",
                },
            )
        })?;
        let request = request::decode(operation, frame)?;
        match request {
            Request::Unsupported(op) => Err(Failure::with(Status::NotSupported, op)),
            Request::GetLicenseRequest => {
                Ok(json!({ "Status": 0, "LicenseRequest": "", "Error": "" }))
            }
            // Verifying uses no token and reveals nothing of the user's: no consent asked.
            // VerifyPDF fetches only from the page's own origin (and `fetch_origins`).
            Request::VerifyXml { xml, signature } => {
                let verify = move || crate::xmlverify::answer(&xml, signature.as_deref());
                tokio::task::spawn_blocking(verify)
                    .await
                    .unwrap_or(Err(Failure::new(Status::BadRequest)))
            }
            Request::VerifyPdf(source) => {
                let settings = self.sites.documents();
                let verify = move || crate::documents::verify(&settings, &origin, &source);
                tokio::task::spawn_blocking(verify)
                    .await
                    .unwrap_or(Err(Failure::new(Status::BadRequest)))
            }
            Request::Config => {
                self.allow(&origin, "Config").await?;
                let url = self.settings.url();
                crate::settings::open_in_browser(&url);
                Ok(json!({ "Status": 0, "Message": format!("Trang cài đặt / Settings: {url}") }))
            }
            request => {
                self.allow(&origin, request.operation()).await?;
                tracing::info!(site = %origin, operation = request.operation(), "request");
                self.sites.run(&origin, request).await
            }
        }
    }

    /// Whether `origin` may use the token: configured, remembered, or the user says so now.
    async fn allow(&self, origin: &Origin, operation: &str) -> Result<(), Failure> {
        let verdict = self.consent.lock().verdict(origin, SystemTime::now());
        match verdict {
            v if v.allowed() => return Ok(()),
            Verdict::Refused => return Err(Failure::new(Status::SiteRefused)),
            _ => {}
        }
        let gate = self
            .asking
            .lock()
            .entry(origin.clone())
            .or_default()
            .clone();
        let _asking = gate.lock().await;
        // Another request may have asked meanwhile.
        match self.consent.lock().verdict(origin, SystemTime::now()) {
            v if v.allowed() => return Ok(()),
            Verdict::Refused => return Err(Failure::new(Status::SiteRefused)),
            _ => {}
        }
        let prompts = self.prompts.clone();
        let (site, op) = (origin.to_string(), operation.to_string());
        let answer = tokio::task::spawn_blocking(move || prompts.consent(&site, &op))
            .await
            .unwrap_or(Err(Failure::new(Status::Cancelled)))?;
        tracing::info!(site = %origin, ?answer, "the user answered about the site");
        if let Err(e) = self
            .consent
            .lock()
            .record(origin, answer, SystemTime::now())
        {
            tracing::warn!("{e}");
        }
        self.asking.lock().remove(origin);
        match answer {
            Answer::Once | Answer::Always => Ok(()),
            Answer::Refuse => Err(Failure::new(Status::SiteRefused)),
        }
    }
}

/// Reads the one text frame of a call. `Err(Some(_))`: answer this failure; `Err(None)`: the
/// client is gone.
async fn one_text<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Result<String, Option<Failure>> {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => return Ok(t.as_str().to_string()),
            Ok(Message::Binary(_)) => return Err(Some(Failure::new(Status::NotText))),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Close(_)) => return Err(None),
            Err(tungstenite::Error::Capacity(_)) => {
                return Err(Some(Failure::with(
                    Status::TooLarge,
                    format!("tối đa / at most {} MiB", MAX_MESSAGE >> 20),
                )))
            }
            Err(tungstenite::Error::Utf8(_)) => {
                return Err(Some(Failure::with(Status::BadRequest, "UTF-8")))
            }
            Err(tungstenite::Error::Protocol(_)) => {
                return Err(Some(Failure::with(Status::BadRequest, "WebSocket")))
            }
            Err(_) => return Err(None),
        }
    }
    Err(None)
}
