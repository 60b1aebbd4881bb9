//! kyso's integration-test harness.
//!
//! - [`Fixture`]: a private SoftHSM2 token set (made by `tests/fixtures/softhsm-token.sh`) in a
//!   temporary directory, with a demo CA and CA-issued certificates for the token's keys.
//! - [`Opencryptoki`]: an opencryptoki soft token, which counts wrong PINs and locks like the
//!   government tokens ([`Fixture::with_opencryptoki`]; needs root, one test at a time).
//! - [`Daemon`]: a `kysod` child process serving that fixture on its own socket.
//! - [`Module`]: a PKCS#11 module loaded in this process — the kyso shim or SoftHSM2 directly —
//!   through the `cryptoki` crate, with [`RawModule`] for calls whose exact C semantics matter
//!   (size queries, bad handles).
//!
//! The shim keeps process-global state (one `C_Initialize` per process), so every integration
//! test is meant to run in its own process: the project runs them with `cargo nextest`. Under a
//! plain `cargo test` the [`Fixture`] holds a process-wide lock, so tests in one binary at least
//! run one after the other, each initialising and finalising the modules it loads.

pub mod bridge;
mod daemon;
mod fixture;
mod module;
mod opencryptoki;
mod paths;
pub mod pdf;
pub mod pinentry;
mod raw;
pub mod recovery;
pub mod util;

pub use daemon::{toml_str, Daemon, DaemonConfig};
pub use fixture::Fixture;
pub use module::{login, rv_of, Module};
pub use opencryptoki::{
    Opencryptoki, LABEL_C, OCK_ID_RSA, OCK_SO_PIN, OCK_USER_PIN, OPENCRYPTOKI_MODULE,
};
pub use paths::{kysod_path, repo_root, shim_path, target_dir, SOFTHSM_MODULE};
pub use raw::{AttributeResult, RawModule, RawSign};

/// The fixture tokens' user PIN.
pub const USER_PIN: &str = "123456";
/// The fixture tokens' security-officer PIN.
pub const SO_PIN: &str = "87654321";
/// A PIN that is not the user PIN.
pub const WRONG_PIN: &str = "000000";
/// Label of the fixture's main token.
pub const LABEL_A: &str = "NGUYEN VAN A";
/// Label of the optional second token.
pub const LABEL_B: &str = "TRAN THI B";
/// `CKA_ID` of the RSA-2048 key pair and its certificate.
pub const ID_RSA: &[u8] = &[0x01];
/// `CKA_ID` of the EC P-256 key pair and its certificate.
pub const ID_EC: &[u8] = &[0x02];
