//! The web sites being served: one thread per site, holding that site's kysod client, the
//! certificate the site was given, and its batch of confirmed signatures. A site's requests
//! run one after the other on its thread; other sites never wait behind it.
//!
//! A batch: the user confirms the first SignMsg of a run, naming the site and the first hash;
//! the SignMsg that follow from the same site need no new confirmation while each comes within
//! [`BATCH_GAP`] of the one before, up to [`BATCH_MAX`] signatures and [`BATCH_SPAN`] after the
//! confirmation. kysod's journal still records every one with the site and its hash.
//!
//! Document operations (fetch, sign, upload: seconds each) run on the site's thread too, so
//! they hold no other site's requests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::documents;
use crate::kysod::{Signer, TokenCert};
use crate::origin::Origin;
use crate::prompt::Prompts;
use crate::request::{Digest, HashAlg, Request, Signed};
use crate::status::{Failure, Status};

/// Signatures one confirmation covers at most.
pub const BATCH_MAX: u32 = 1000;
/// How long after its confirmation a batch lasts at most.
pub const BATCH_SPAN: Duration = Duration::from_secs(30 * 60);
/// The longest pause between two signatures of one batch.
pub const BATCH_GAP: Duration = Duration::from_secs(60);
/// A site's thread (and its kysod client, with its login) ends after this long unused.
const IDLE: Duration = Duration::from_secs(15 * 60);
/// Requests a site may have waiting.
const QUEUE: usize = 64;

struct Job {
    request: Request,
    reply: oneshot::Sender<Result<Value, Failure>>,
}

pub struct Sites {
    socket: PathBuf,
    prompts: Arc<Prompts>,
    documents: Arc<documents::Settings>,
    workers: Mutex<HashMap<Origin, mpsc::SyncSender<Job>>>,
}

struct Batch {
    started: Instant,
    last: Instant,
    count: u32,
}

impl Batch {
    fn covers(&self, now: Instant) -> bool {
        self.count < BATCH_MAX
            && now.duration_since(self.started) < BATCH_SPAN
            && now.duration_since(self.last) < BATCH_GAP
    }
}

struct Site {
    origin: Origin,
    signer: Signer,
    prompts: Arc<Prompts>,
    documents: Arc<documents::Settings>,
    chosen: Option<TokenCert>,
    batch: Option<Batch>,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn hex_prefix(b: &[u8]) -> String {
    b.iter()
        .take(8)
        .map(|x| format!("{x:02x}"))
        .collect::<String>()
        + "…"
}

impl Sites {
    /// `[documents]` as the bridge uses it.
    pub fn documents(&self) -> Arc<documents::Settings> {
        self.documents.clone()
    }

    /// `documents`: `[documents]` for the document operations.
    pub fn new(
        socket: PathBuf,
        prompts: Arc<Prompts>,
        documents: Arc<documents::Settings>,
    ) -> Sites {
        Sites {
            socket,
            prompts,
            documents,
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// Runs a request that needs the site's kysod client.
    pub async fn run(&self, origin: &Origin, request: Request) -> Result<Value, Failure> {
        let (tx, rx) = oneshot::channel();
        let mut job = Job { request, reply: tx };
        for _ in 0..2 {
            let sender = self.worker(origin);
            match sender.try_send(job) {
                Ok(()) => return rx.await.unwrap_or(Err(Failure::new(Status::TokenError))),
                Err(mpsc::TrySendError::Full(_)) => return Err(Failure::new(Status::Busy)),
                Err(mpsc::TrySendError::Disconnected(j)) => {
                    // The thread ended (idle); start another.
                    self.workers.lock().remove(origin);
                    job = j;
                }
            }
        }
        Err(Failure::new(Status::Busy))
    }

    fn worker(&self, origin: &Origin) -> mpsc::SyncSender<Job> {
        let mut workers = self.workers.lock();
        if let Some(s) = workers.get(origin) {
            return s.clone();
        }
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let mut site = Site {
            origin: origin.clone(),
            signer: Signer::new(self.socket.clone(), origin.to_string()),
            prompts: self.prompts.clone(),
            documents: self.documents.clone(),
            chosen: None,
            batch: None,
        };
        let name = format!("site {origin}");
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            while let Ok(job) = rx.recv_timeout(IDLE) {
                let answer = site.handle(job.request);
                let _ = job.reply.send(answer);
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start a thread for {origin}: {e}");
        }
        workers.insert(origin.clone(), tx.clone());
        tx
    }
}

impl Site {
    fn handle(&mut self, request: Request) -> Result<Value, Failure> {
        let site = self.origin.to_string();
        match request {
            Request::GetCertInfo => {
                let cert = self.choose()?;
                Ok(json!({ "Status": 0, "CertInfo": crate::verify::cert_info(&cert.der)? }))
            }
            Request::SignMsg(digest) => {
                let cert = self.current()?;
                let document = format!(
                    "SignMsg {} {}",
                    digest.alg.name(),
                    hex_prefix(&digest.value)
                );
                let now = Instant::now();
                if !self.batch.as_ref().is_some_and(|b| b.covers(now)) {
                    self.batch = None;
                    let what = format!(
                        "băm / hash {} {}\n(một loạt tới {BATCH_MAX} chữ ký trong {} phút / a batch of up to {BATCH_MAX} signatures within {} minutes)",
                        digest.alg.name(),
                        hex_prefix(&digest.value),
                        BATCH_SPAN.as_secs() / 60,
                        BATCH_SPAN.as_secs() / 60,
                    );
                    self.prompts.confirm_signature(&site, &what, &cert.holder)?;
                    self.batch = Some(Batch {
                        started: Instant::now(),
                        last: Instant::now(),
                        count: 0,
                    });
                }
                let signature = self.signer.sign_digest(&cert, &digest, &document)?;
                if let Some(b) = self.batch.as_mut() {
                    b.count += 1;
                    b.last = Instant::now();
                }
                Ok(
                    json!({ "Status": 0, "Signature": b64(&signature), "CertBase64": b64(&cert.der) }),
                )
            }
            Request::Auth { challenge } => {
                let cert = self.current()?;
                let shown: String = challenge.chars().take(64).collect();
                let what = format!("đăng nhập / log in: \"{shown}\"");
                self.prompts.confirm_signature(&site, &what, &cert.holder)?;
                let digest = Digest {
                    alg: HashAlg::Sha256,
                    value: HashAlg::Sha256.digest(challenge.as_bytes()),
                };
                let signature =
                    self.signer
                        .sign_digest(&cert, &digest, &format!("Auth {shown}"))?;
                Ok(
                    json!({ "Status": 0, "Signature": b64(&signature), "CertBase64": b64(&cert.der) }),
                )
            }
            Request::VerifyMsg {
                signed,
                signature,
                cert,
            } => {
                let cert = match cert {
                    Some(c) => c,
                    None => self.current()?.der,
                };
                let digest = match signed {
                    Signed::Digest(d) => d,
                    Signed::Content { alg, data } => Digest {
                        alg,
                        value: alg.digest(&data),
                    },
                };
                let info = crate::verify::cert_info(&cert)?;
                if crate::verify::verify_digest(&cert, &digest, &signature)? {
                    Ok(
                        json!({ "Status": 0, "Valid": true, "SigningCertInfo": info, "Message": "Chữ ký hợp lệ / The signature is valid" }),
                    )
                } else {
                    Err(Failure::new(Status::SignatureInvalid))
                }
            }
            Request::SignXml {
                xml,
                signature_only,
                alg,
            } => {
                let cert = self.current()?;
                let what = crate::xmldsig::describe(&xml);
                self.prompts
                    .confirm_signature(&site, &format!("XML: {what}"), &cert.holder)?;
                let signer = &mut self.signer;
                let signed =
                    crate::xmldsig::sign(&xml, alg, signature_only, &cert.der, |digest| {
                        signer.sign_digest(&cert, digest, &format!("SignXML {what}"))
                    })?;
                Ok(json!({ "Status": 0, "Signature": b64(&signed) }))
            }
            Request::Document(request) => {
                documents::check_addresses(&self.origin, &self.documents, &request)?;
                let cert = self.current()?;
                let mut cx = documents::Context {
                    site: &self.origin,
                    settings: &self.documents,
                    prompts: &self.prompts,
                    client: &mut self.signer,
                    cert,
                };
                documents::run(&mut cx, &request)
            }
            other => Err(Failure::with(Status::NotSupported, other.operation())),
        }
    }

    /// The certificate the site was given, or one chosen now.
    fn current(&mut self) -> Result<TokenCert, Failure> {
        match &self.chosen {
            Some(c) => Ok(c.clone()),
            None => self.choose(),
        }
    }

    /// Lets the user choose among the certificates (no question when there is one).
    fn choose(&mut self) -> Result<TokenCert, Failure> {
        let certs = self.signer.certificates()?;
        let cert = match certs.len() {
            0 => return Err(Failure::new(Status::NoCertificate)),
            1 => certs[0].clone(),
            _ => certs[self
                .prompts
                .choose_certificate(self.origin.as_str(), &certs)?]
            .clone(),
        };
        self.chosen = Some(cert.clone());
        self.batch = None;
        Ok(cert)
    }
}
