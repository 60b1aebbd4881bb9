//! Remote token recovery: the three artefacts that travel between a workstation and the
//! helpdesk (request, grant, receipt), their sealing (HPKE, RFC 9180) and signing (Ed25519).
//!
//! The parsers in [`artefact`] are pure functions over bytes; everything that needs a key or a
//! clock is in [`grant`] and [`receipt`].

#![forbid(unsafe_code)]

pub mod artefact;
pub mod grant;
pub mod receipt;

pub use artefact::{
    parse_grant, parse_receipt, parse_request, Grant, GrantBody, ParseError, Receipt,
    RecoveryRequest, RequestCertificate,
};
pub use grant::{GrantError, GrantSecrets};

/// How long a request's ephemeral key is kept on the workstation.
pub const REQUEST_LIFETIME_SECS: i64 = 72 * 3600;
/// How long a grant is valid by default.
pub const GRANT_LIFETIME_SECS: i64 = 24 * 3600;

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `n` random bytes from the operating system.
pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).expect("the operating system's random source");
    out
}

/// Lowercase hex SHA-256, as the audit journal writes it.
pub use kyso_proto::audit::sha256_hex;
/// Lowercase hex, as kyso writes it everywhere.
pub use kyso_proto::hex::encode as hex;
