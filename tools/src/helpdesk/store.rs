//! The helpdesk's store: one SQLite file holding the signing key and the escrowed SO PINs
//! sealed under a key derived from the helpdesk passphrase (Argon2id → XChaCha20-Poly1305),
//! the SO PIN rotations under way, and the record of every case. Nothing secret is stored in
//! clear; deleted secrets are overwritten (`secure_delete`).

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0} exists already; a new store is never written over an old one")]
    Exists(String),
    #[error("{0} is not a kyso-helpdesk store (run kyso-helpdesk init)")]
    NotAStore(String),
    #[error("wrong passphrase for this store")]
    WrongPassphrase,
    #[error("the store's sealed data is damaged ({0})")]
    Damaged(&'static str),
    #[error("no SO PIN is escrowed for token {0} (kyso-helpdesk escrow add)")]
    NoEscrow(String),
    #[error("an SO PIN is escrowed for token {0} already")]
    EscrowExists(String),
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// Argon2id parameters of new stores: 64 MiB, 3 passes (RFC 9106's second recommendation).
const KDF_MEMORY_KIB: u32 = 64 * 1024;
const KDF_PASSES: u32 = 3;

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE escrow (
    serial TEXT PRIMARY KEY,
    so_pin BLOB NOT NULL,
    generation TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE rotations (
    id TEXT PRIMARY KEY,
    serial TEXT NOT NULL,
    kind TEXT NOT NULL,
    nonce TEXT,
    case_ref TEXT,
    new_so_pin BLOB NOT NULL,
    receipt_key BLOB,
    state TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    action TEXT NOT NULL,
    serial TEXT NOT NULL,
    case_ref TEXT,
    operator TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT
);
";

/// A sealing key derived from the passphrase; zeroized on drop.
pub struct SealKey(Zeroizing<[u8; 32]>);

impl SealKey {
    fn derive(
        passphrase: &[u8],
        salt: &[u8],
        memory: u32,
        passes: u32,
    ) -> Result<SealKey, StoreError> {
        let params =
            Params::new(memory, passes, 1, Some(32)).map_err(|e| StoreError::Kdf(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, salt, &mut *key)
            .map_err(|e| StoreError::Kdf(e.to_string()))?;
        Ok(SealKey(key))
    }

    /// `nonce (24) || ciphertext`, bound to `label` (what the secret is and whose).
    fn seal(&self, label: &str, secret: &[u8]) -> Vec<u8> {
        let nonce = kyso_recovery::random::<24>();
        let cipher = XChaCha20Poly1305::new((&*self.0).into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: label.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(sealed);
        out
    }

    fn open(&self, label: &str, blob: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if blob.len() < 24 {
            return None;
        }
        let cipher = XChaCha20Poly1305::new((&*self.0).into());
        cipher
            .decrypt(
                XNonce::from_slice(&blob[..24]),
                Payload {
                    msg: &blob[24..],
                    aad: label.as_bytes(),
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

/// An SO PIN rotation under way: the grant (or on-site unlock) that will install `new_so_pin`.
pub struct Rotation {
    pub id: String,
    pub serial: String,
    pub kind: String,
    pub nonce: Option<String>,
    pub case_ref: Option<String>,
    pub state: String,
}

/// A pending rotation's id and the SO PIN it installs.
pub type PendingSoPin = (String, Zeroizing<Vec<u8>>);

/// One line of the agency's record.
#[derive(Debug, Serialize)]
pub struct Case {
    pub id: i64,
    pub time: String,
    pub action: String,
    pub serial: String,
    pub case_ref: Option<String>,
    pub operator: String,
    pub outcome: String,
    pub detail: Option<String>,
}

pub struct Store {
    db: Connection,
    key: SealKey,
}

fn now_text() -> String {
    kyso_proto::dates::rfc3339(kyso_proto::dates::now())
}

fn open_db(path: &Path) -> Result<Connection, StoreError> {
    let db = Connection::open(path)?;
    db.pragma_update(None, "secure_delete", "ON")?;
    db.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(db)
}

impl Store {
    /// Creates a store with a new Ed25519 signing key; returns its public key (base64).
    pub fn init(path: &Path, passphrase: &[u8]) -> Result<String, StoreError> {
        if path.exists() {
            return Err(StoreError::Exists(path.display().to_string()));
        }
        let salt = kyso_recovery::random::<16>();
        let key = SealKey::derive(passphrase, &salt, KDF_MEMORY_KIB, KDF_PASSES)?;
        let secret = Zeroizing::new(kyso_recovery::random::<32>());
        let public = kyso_recovery::grant::signing_key(&secret)
            .verifying_key()
            .to_bytes();
        let public = kyso_recovery::artefact::encode_b64(&public);
        let db = open_db(path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        db.execute_batch(SCHEMA)?;
        let meta = |k: &str, v: &[u8]| {
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
        };
        meta("format", b"kyso-helpdesk 1")?;
        meta("kdf_salt", &salt)?;
        meta("kdf_memory_kib", KDF_MEMORY_KIB.to_string().as_bytes())?;
        meta("kdf_passes", KDF_PASSES.to_string().as_bytes())?;
        meta("public_key", public.as_bytes())?;
        meta("signing_key", &key.seal("signing_key", &*secret))?;
        Ok(public)
    }

    /// Opens a store and checks the passphrase (it must open the signing key).
    pub fn open(path: &Path, passphrase: &[u8]) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotAStore(path.display().to_string()));
        }
        let db = open_db(path)?;
        let get = |k: &str| -> Result<Vec<u8>, StoreError> {
            db.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()
                .map_err(|_| StoreError::NotAStore(path.display().to_string()))?
                .ok_or_else(|| StoreError::NotAStore(path.display().to_string()))
        };
        let number = |k: &str| -> Result<u32, StoreError> {
            String::from_utf8(get(k)?)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(StoreError::Damaged("key derivation parameters"))
        };
        let salt = get("kdf_salt")?;
        let key = SealKey::derive(
            passphrase,
            &salt,
            number("kdf_memory_kib")?,
            number("kdf_passes")?,
        )?;
        let store = Store { db, key };
        store.signing_key()?;
        Ok(store)
    }

    fn meta(&self, k: &str) -> Result<Vec<u8>, StoreError> {
        self.db
            .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .map_err(StoreError::from)
    }

    /// The public key workstations trust (base64).
    pub fn public_key(&self) -> Result<String, StoreError> {
        String::from_utf8(self.meta("public_key")?).map_err(|_| StoreError::Damaged("public key"))
    }

    /// The public key without the passphrase (`kyso-helpdesk pubkey`).
    pub fn public_key_of(path: &Path) -> Result<String, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotAStore(path.display().to_string()));
        }
        let db = open_db(path)?;
        let v: Vec<u8> = db
            .query_row("SELECT value FROM meta WHERE key = 'public_key'", [], |r| {
                r.get(0)
            })
            .map_err(|_| StoreError::NotAStore(path.display().to_string()))?;
        String::from_utf8(v).map_err(|_| StoreError::Damaged("public key"))
    }

    pub fn signing_key(&self) -> Result<ed25519_dalek::SigningKey, StoreError> {
        let opened = self
            .key
            .open("signing_key", &self.meta("signing_key")?)
            .ok_or(StoreError::WrongPassphrase)?;
        let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
            opened
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Damaged("signing key"))?,
        );
        Ok(kyso_recovery::grant::signing_key(&secret))
    }

    pub fn escrow_add(&self, serial: &str, so_pin: &[u8]) -> Result<String, StoreError> {
        let exists: Option<String> = self
            .db
            .query_row(
                "SELECT serial FROM escrow WHERE serial = ?1",
                [serial],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::EscrowExists(serial.into()));
        }
        let generation = format!(
            "escrow-{}",
            kyso_proto::hex::encode(&kyso_recovery::random::<8>())
        );
        self.db.execute(
            "INSERT INTO escrow (serial, so_pin, generation, updated) VALUES (?1, ?2, ?3, ?4)",
            params![
                serial,
                self.key.seal(&format!("so_pin {serial}"), so_pin),
                generation,
                now_text()
            ],
        )?;
        Ok(generation)
    }

    /// The escrowed (confirmed) SO PIN of `serial` and its generation.
    pub fn escrowed(&self, serial: &str) -> Result<(Zeroizing<Vec<u8>>, String), StoreError> {
        let (blob, generation): (Vec<u8>, String) = self
            .db
            .query_row(
                "SELECT so_pin, generation FROM escrow WHERE serial = ?1",
                [serial],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::NoEscrow(serial.into()))?;
        let pin = self
            .key
            .open(&format!("so_pin {serial}"), &blob)
            .ok_or(StoreError::Damaged("escrowed SO PIN"))?;
        Ok((pin, generation))
    }

    /// Records a rotation under way (before the grant leaves or the unlock starts).
    pub fn rotation_add(
        &self,
        r: &Rotation,
        new_so_pin: &[u8],
        receipt_key: Option<&[u8; 32]>,
    ) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO rotations (id, serial, kind, nonce, case_ref, new_so_pin, receipt_key, state, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                r.id,
                r.serial,
                r.kind,
                r.nonce,
                r.case_ref,
                self.key.seal(&format!("new_so_pin {}", r.id), new_so_pin),
                receipt_key.map(|k| self.key.seal(&format!("receipt_key {}", r.id), k)),
                r.state,
                now_text()
            ],
        )?;
        Ok(())
    }

    pub fn rotation(&self, id: &str) -> Result<Option<Rotation>, StoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT id, serial, kind, nonce, case_ref, state FROM rotations WHERE id = ?1",
                [id],
                |r| {
                    Ok(Rotation {
                        id: r.get(0)?,
                        serial: r.get(1)?,
                        kind: r.get(2)?,
                        nonce: r.get(3)?,
                        case_ref: r.get(4)?,
                        state: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn receipt_key(&self, id: &str) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        let blob: Option<Vec<u8>> = self.db.query_row(
            "SELECT receipt_key FROM rotations WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?;
        let opened = blob
            .and_then(|b| self.key.open(&format!("receipt_key {id}"), &b))
            .ok_or(StoreError::Damaged("receipt key"))?;
        Ok(Zeroizing::new(
            opened
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Damaged("receipt key"))?,
        ))
    }

    /// The pending rotations of `serial`, newest first, with their new SO PINs.
    pub fn pending(&self, serial: &str) -> Result<Vec<PendingSoPin>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT id, new_so_pin FROM rotations WHERE serial = ?1 AND state = 'pending' ORDER BY created DESC, rowid DESC",
        )?;
        let rows = stmt
            .query_map([serial], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, blob)| {
                let pin = self
                    .key
                    .open(&format!("new_so_pin {id}"), &blob)
                    .ok_or(StoreError::Damaged("pending SO PIN"))?;
                Ok((id, pin))
            })
            .collect()
    }

    /// The rotation `id` happened: its SO PIN becomes the escrowed one; the other pending
    /// rotations of the token are void (their grants carry an SO PIN no longer current).
    pub fn rotation_done(&mut self, id: &str) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        let (serial, blob): (String, Vec<u8>) = tx.query_row(
            "SELECT serial, new_so_pin FROM rotations WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let pin = self
            .key
            .open(&format!("new_so_pin {id}"), &blob)
            .ok_or(StoreError::Damaged("pending SO PIN"))?;
        tx.execute(
            "UPDATE escrow SET so_pin = ?2, generation = ?3, updated = ?4 WHERE serial = ?1",
            params![
                serial,
                self.key.seal(&format!("so_pin {serial}"), &pin),
                id,
                now_text()
            ],
        )?;
        tx.execute(
            "UPDATE rotations SET state = 'done', new_so_pin = x'', receipt_key = NULL WHERE id = ?1",
            [id],
        )?;
        tx.execute(
            "UPDATE rotations SET state = 'void', new_so_pin = x'', receipt_key = NULL WHERE serial = ?1 AND state = 'pending'",
            [&serial],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A rotation that certainly did not happen (kysod refused before changing anything).
    pub fn rotation_abandoned(&self, id: &str) -> Result<(), StoreError> {
        self.db.execute(
            "UPDATE rotations SET state = 'abandoned', new_so_pin = x'', receipt_key = NULL WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    pub fn record(
        &self,
        action: &str,
        serial: &str,
        case_ref: Option<&str>,
        operator: &str,
        outcome: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO cases (time, action, serial, case_ref, operator, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![now_text(), action, serial, case_ref, operator, outcome, detail],
        )?;
        Ok(())
    }

    /// The record, oldest first (readable without the passphrase).
    pub fn cases_of(path: &Path) -> Result<Vec<Case>, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotAStore(path.display().to_string()));
        }
        let db = open_db(path)?;
        let mut stmt = db
            .prepare("SELECT id, time, action, serial, case_ref, operator, outcome, detail FROM cases ORDER BY id")
            .map_err(|_| StoreError::NotAStore(path.display().to_string()))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Case {
                    id: r.get(0)?,
                    time: r.get(1)?,
                    action: r.get(2)?,
                    serial: r.get(3)?,
                    case_ref: r.get(4)?,
                    operator: r.get(5)?,
                    outcome: r.get(6)?,
                    detail: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
