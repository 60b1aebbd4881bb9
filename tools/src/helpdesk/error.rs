//! Why a `kyso-helpdesk` command failed, each case with the sentence the operator reads.

use std::path::PathBuf;

use super::passphrase::PassphraseError;
use super::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HelpdeskError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    /// kysod could not be reached, or its answer was not understood.
    #[error("{0}")]
    Kysod(String),
    #[error(transparent)]
    Write(#[from] crate::WriteError),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write man pages to {}: {source}", dir.display())]
    ManPages {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// A request or receipt file that is not one.
    #[error("{}: {source}", path.display())]
    Artefact {
        path: PathBuf,
        source: kyso_recovery::ParseError,
    },
    #[error(transparent)]
    Grant(#[from] kyso_recovery::GrantError),
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{} holds no SO PIN", .0.display())]
    NoSoPin(PathBuf),
    #[error("--case needs the agency's written request number")]
    NoCaseReference,
    #[error("the request expired (72 hours): the user must make a new one")]
    RequestExpired,
    #[error("{} exists already", .0.display())]
    Exists(PathBuf),
    #[error("the receipt names no grant of this store")]
    UnknownGrant,
    #[error("the receipt does not match its grant (serial or nonce differ)")]
    ReceiptMismatch,
    #[error("this case is {0} already")]
    CaseState(String),
    #[error(
        "the receipt does not verify: it was not made by the workstation that applied the grant"
    )]
    ReceiptForged,
    #[error("`kyso-helpdesk unlock` is gone: the escrow store is never opened on a user's machine. On site as remotely: the user runs `kyso recover request --token SERIAL --out req.json`, you run `kyso-helpdesk approve req.json --db FILE --case REF --out grant.json` on the helpdesk's machine, the user runs `kyso recover apply grant.json --out receipt.json`, and you close the case with `kyso-helpdesk close receipt.json --db FILE`")]
    UnlockGone,
    #[error(
        "the store holds no SO PIN of generation {0} for this token (see `kyso-helpdesk cases`)"
    )]
    UnknownGeneration(String),
    #[error("a token label has at most 32 bytes")]
    LabelTooLong,
    #[error("no confirmation: {0}")]
    NoConfirmation(std::io::Error),
    #[error("the serial typed does not match: nothing was wiped")]
    SerialMismatch,
    #[error("token {serial} not wiped: {why}")]
    NotWiped { serial: String, why: String },
}

impl HelpdeskError {
    /// A failure talking to kysod, whatever form the connection reports it in.
    pub fn kysod(e: impl std::fmt::Display) -> HelpdeskError {
        HelpdeskError::Kysod(e.to_string())
    }
}
