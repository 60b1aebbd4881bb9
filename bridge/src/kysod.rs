//! Signing through kysod as one of its clients. Each web site gets a client of its own, so a
//! PIN typed for one site logs in that site alone, and kysod's prompts and journal name the
//! site (`Call::Purpose`) for every signature it makes.
//!
//! Blocking: a site's calls run on that site's own thread (see [`crate::sites`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use kyso_proto::client::Connection;
use kyso_proto::mechanism::{Mechanism, MechanismParam};
use kyso_proto::{Attribute, AttributeQuery, Call, Operation, Purpose, Reply, Ulong};

use crate::status::{Failure, Status};

use cryptoki_sys::{
    CKA_CLASS, CKA_ID, CKA_KEY_TYPE, CKA_VALUE, CKF_SERIAL_SESSION, CKK_EC, CKK_RSA, CKM_ECDSA,
    CKM_RSA_PKCS, CKO_CERTIFICATE, CKO_PRIVATE_KEY, CKR_USER_ALREADY_LOGGED_IN, CKU_USER,
};

/// How long a call that asks nobody may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A certificate on a token, with a private key of the same `CKA_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCert {
    pub slot: Ulong,
    pub token_label: String,
    pub token_serial: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// `CN, O` of the subject.
    pub holder: String,
    pub class: String,
    pub not_before: i64,
    pub not_after: i64,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    Ec,
}

/// A kysod client acting for one site.
pub struct Signer {
    socket: PathBuf,
    site: String,
    instance: u64,
    conn: Option<Connection>,
    sessions: HashMap<Ulong, Ulong>,
    logged_in: std::collections::HashSet<Ulong>,
    keys: HashMap<(Ulong, Vec<u8>), (Ulong, KeyKind)>,
}

/// A PKCS#11 return value as the page's status.
pub fn failure_of(rv: Ulong) -> Failure {
    let status = match rv {
        0xA0 => Status::PinIncorrect,
        0xA4 | 0xA2 => Status::PinLocked,
        0x50 | 0x200 => Status::Cancelled,
        0x68 => Status::CertificateRefused,
        0xE0 | 0x32 | 0x30 => Status::NoCertificate,
        _ => Status::TokenError,
    };
    if status == Status::TokenError {
        Failure::with(status, format!("CK_RV 0x{rv:x}"))
    } else {
        Failure::new(status)
    }
}

fn ulong(v: Ulong) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

impl Signer {
    pub fn new(socket: PathBuf, site: String) -> Signer {
        let mut n = [0u8; 8];
        let _ = getrandom(&mut n);
        Signer {
            socket,
            site,
            instance: u64::from_ne_bytes(n),
            conn: None,
            sessions: HashMap::new(),
            logged_in: Default::default(),
            keys: HashMap::new(),
        }
    }

    /// One call; a broken connection is dropped (with every handle it held) and opened again
    /// at the next call.
    fn call(&mut self, call: Call, timeout: Option<Duration>) -> Result<(Ulong, Reply), Failure> {
        if self.conn.is_none() {
            let conn = Connection::open(&self.socket, self.instance)
                .map_err(|e| Failure::with(Status::KysodUnavailable, e.to_string()))?;
            self.conn = Some(conn);
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or(Failure::new(Status::KysodUnavailable))?;
        let result = conn
            .set_timeout(timeout)
            .map_err(kyso_proto::FrameError::from)
            .and_then(|()| conn.call(call));
        match result {
            Ok(r) => Ok((r.rv, r.reply)),
            Err(e) => {
                self.reset();
                Err(Failure::with(Status::KysodUnavailable, e.to_string()))
            }
        }
    }

    fn reset(&mut self) {
        self.conn = None;
        self.sessions.clear();
        self.logged_in.clear();
        self.keys.clear();
    }

    /// Forgets the handles of `slot` (its token went away or its session broke).
    fn forget_slot(&mut self, slot: Ulong) {
        self.sessions.remove(&slot);
        self.logged_in.remove(&slot);
        self.keys.retain(|(s, _), _| *s != slot);
    }

    fn session(&mut self, slot: Ulong) -> Result<Ulong, Failure> {
        if let Some(s) = self.sessions.get(&slot) {
            return Ok(*s);
        }
        match self.call(
            Call::OpenSession {
                slot,
                flags: CKF_SERIAL_SESSION,
            },
            Some(CALL_TIMEOUT),
        )? {
            (0, Reply::Handle(h)) => {
                self.sessions.insert(slot, h);
                Ok(h)
            }
            (rv, _) => Err(failure_of(rv)),
        }
    }

    fn find(&mut self, session: Ulong, template: Vec<Attribute>) -> Result<Vec<Ulong>, Failure> {
        let (rv, _) = self.call(
            Call::FindObjectsInit { session, template },
            Some(CALL_TIMEOUT),
        )?;
        if rv != 0 {
            return Err(failure_of(rv));
        }
        let found = self.call(Call::FindObjects { session, max: 16 }, Some(CALL_TIMEOUT));
        let _ = self.call(Call::FindObjectsFinal { session }, Some(CALL_TIMEOUT));
        match found? {
            (0, Reply::Handles(h)) => Ok(h),
            (rv, _) => Err(failure_of(rv)),
        }
    }

    fn attribute(
        &mut self,
        session: Ulong,
        object: Ulong,
        kind: Ulong,
    ) -> Result<Vec<u8>, Failure> {
        let mut len = None;
        for _ in 0..2 {
            let (rv, reply) = self.call(
                Call::GetAttributeValue {
                    session,
                    object,
                    queries: vec![AttributeQuery { kind, len }],
                },
                Some(CALL_TIMEOUT),
            )?;
            let Reply::Attributes(values) = reply else {
                return Err(failure_of(rv));
            };
            let Some(v) = values.into_iter().next() else {
                return Err(failure_of(rv));
            };
            if rv != 0 || v.len == kyso_proto::UNAVAILABLE {
                return Err(failure_of(rv));
            }
            match v.value {
                Some(value) if len.is_some() => return Ok(value),
                _ => len = Some(v.len.min(1 << 20)),
            }
        }
        Err(Failure::new(Status::TokenError))
    }

    /// The certificates on present tokens (those kysod lists with a key id).
    pub fn certificates(&mut self) -> Result<Vec<TokenCert>, Failure> {
        let tokens = match self.call(Call::Status, Some(CALL_TIMEOUT))? {
            (0, Reply::Status(t)) => t,
            (rv, _) => return Err(failure_of(rv)),
        };
        let mut certs = Vec::new();
        for t in tokens.into_iter().filter(|t| t.present) {
            for c in &t.certificates {
                let Some(id) = kyso_proto::hex::decode(&c.id) else {
                    continue;
                };
                let session = match self.session(t.slot) {
                    Ok(s) => s,
                    Err(_) => {
                        self.forget_slot(t.slot);
                        continue;
                    }
                };
                let template = vec![
                    Attribute {
                        kind: CKA_CLASS,
                        value: Some(ulong(CKO_CERTIFICATE)),
                    },
                    Attribute {
                        kind: CKA_ID,
                        value: Some(id.clone()),
                    },
                ];
                let Some(object) = self.find(session, template)?.first().copied() else {
                    continue;
                };
                let der = self.attribute(session, object, CKA_VALUE)?;
                certs.push(TokenCert {
                    slot: t.slot,
                    token_label: t.label.clone(),
                    token_serial: t.serial.clone(),
                    id,
                    holder: c.holder.clone(),
                    class: c.class.clone(),
                    not_before: c.not_before,
                    not_after: c.not_after,
                    der,
                });
            }
        }
        // A stable order for the chooser: token by token, key id by key id.
        certs.sort_by(|a, b| (a.slot, &a.id).cmp(&(b.slot, &b.id)));
        Ok(certs)
    }

    fn key(&mut self, cert: &TokenCert) -> Result<(Ulong, Ulong, KeyKind), Failure> {
        let session = self.session(cert.slot)?;
        if !self.logged_in.contains(&cert.slot) {
            // No PIN: kysod asks it through its pinentry, naming the site (set by Purpose).
            let (rv, _) = self.call(
                Call::Login {
                    session,
                    user_type: CKU_USER,
                    pin: None,
                },
                None,
            )?;
            if rv != 0 && rv != CKR_USER_ALREADY_LOGGED_IN {
                return Err(failure_of(rv));
            }
            self.logged_in.insert(cert.slot);
        }
        if let Some((k, kind)) = self.keys.get(&(cert.slot, cert.id.clone())) {
            return Ok((session, *k, *kind));
        }
        let template = vec![
            Attribute {
                kind: CKA_CLASS,
                value: Some(ulong(CKO_PRIVATE_KEY)),
            },
            Attribute {
                kind: CKA_ID,
                value: Some(cert.id.clone()),
            },
        ];
        let key = *self
            .find(session, template)?
            .first()
            .ok_or(Failure::new(Status::NoCertificate))?;
        let kind = match self.attribute(session, key, CKA_KEY_TYPE)?.as_slice() {
            b if b.len() == 8 => match Ulong::from_ne_bytes(b.try_into().unwrap_or([0xff; 8])) {
                CKK_RSA => KeyKind::Rsa,
                CKK_EC => KeyKind::Ec,
                _ => return Err(Failure::with(Status::TokenError, "key type / loại khóa")),
            },
            _ => return Err(Failure::new(Status::TokenError)),
        };
        self.keys.insert((cert.slot, cert.id.clone()), (key, kind));
        Ok((session, key, kind))
    }

    /// Signs a digest with `cert`'s key: RSA PKCS#1 v1.5 over the DigestInfo, or ECDSA
    /// (answered DER-encoded). `document` names what is signed in kysod's prompts and journal.
    pub fn sign_digest(
        &mut self,
        cert: &TokenCert,
        digest: &crate::request::Digest,
        document: &str,
    ) -> Result<Vec<u8>, Failure> {
        let purpose = Purpose {
            site: self.site.clone(),
            document: document.to_string(),
        };
        let (rv, _) = self.call(Call::Purpose(Some(purpose)), Some(CALL_TIMEOUT))?;
        if rv != 0 {
            return Err(failure_of(rv));
        }
        let result = self.sign_inner(cert, digest);
        if let Err(f) = &result {
            if matches!(f.status, Status::TokenError | Status::NoCertificate) {
                self.forget_slot(cert.slot);
            }
        }
        result
    }

    fn sign_inner(
        &mut self,
        cert: &TokenCert,
        digest: &crate::request::Digest,
    ) -> Result<Vec<u8>, Failure> {
        let (session, key, kind) = self.key(cert)?;
        let (mechanism, data) = match kind {
            KeyKind::Rsa => (CKM_RSA_PKCS, crate::der::digest_info(digest)),
            KeyKind::Ec => (CKM_ECDSA, digest.value.clone()),
        };
        let (rv, _) = self.call(
            Call::OperationInit {
                session,
                op: Operation::Sign,
                mechanism: Mechanism {
                    kind: mechanism,
                    param: MechanismParam::None,
                },
                key: Some(key),
            },
            Some(CALL_TIMEOUT),
        )?;
        if rv != 0 {
            if rv == 0x101 {
                // CKR_USER_NOT_LOGGED_IN: the token was logged out (kysod restarted, re-plug).
                self.logged_in.remove(&cert.slot);
            }
            return Err(failure_of(rv));
        }
        // Signing may ask the user (an organisation seal's confirmation): no time limit.
        let (rv, reply) = self.call(
            Call::Operate {
                session,
                op: Operation::Sign,
                data,
                out: Some(1024),
            },
            None,
        )?;
        match (rv, reply) {
            (
                0,
                Reply::Output {
                    data: Some(sig), ..
                },
            ) => match kind {
                KeyKind::Rsa => Ok(sig),
                KeyKind::Ec => crate::der::ecdsa_der(&sig)
                    .ok_or_else(|| Failure::with(Status::TokenError, "ECDSA signature")),
            },
            (rv, _) => Err(failure_of(rv)),
        }
    }
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}
