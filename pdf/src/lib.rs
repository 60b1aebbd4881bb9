//! kyso-pdf: PDF signatures the way Vietnamese offices need them. [`sign`] adds a PAdES
//! signature (`ETSI.CAdES.detached`) as an incremental update, drawn with one of the Decree
//! 30/2020 [`appearance`]s, by a [`signer::Signer`] whose private key never leaves the token;
//! [`verify`] checks every signature of a file as Decree 68/2024 Art. 30–32 asks.
//!
//! The library does no I/O of its own beyond what a caller hands it: the signer, and for
//! timestamps and revocation a [`net::Fetch`]er.
#![forbid(unsafe_code)]

pub mod appearance;
mod cades;
pub mod config;
pub mod error;
mod incremental;
pub mod net;
pub mod sign;
pub mod signer;
mod timestamp;
pub mod verify;

pub use error::Error;
