//! kyso-bridge: the local web-signing service. Vietnamese web applications call the VGCA Sign
//! Service at `wss://127.0.0.1:8987/<Operation>`; the bridge answers those calls on Linux by
//! signing through kysod, as any other application of kysod, adding what only it knows: which
//! site asked and what it asked to sign.
//!
//! The path of a call through the files: [`server`] (TLS, WebSocket, limits) → [`request`]
//! (decoding) → [`consent`] (may the site use the token) → [`sites`] (the site's thread) →
//! [`kysod`] (the site's kysod client). The document operations go from [`sites`] through
//! [`documents`] (fetch, sign, upload), which uses [`fetch`] (HTTP to the page's own origin)
//! and [`pdf_signer`] (kysod's client as the PDF library's signer). [`prompt`] asks the user,
//! [`settings`] is the settings page, [`cert`] and [`trust`] make and register the bridge's
//! certificate; [`xmldsig`] signs XML and [`xmlverify`] checks XML signatures, both over
//! [`c14n`].
//!
//! Without the `server` feature the library holds kysod's client and the PDF signer over it
//! ([`pdf_signer`]), with the certificate and trust code.
#![forbid(unsafe_code)]

pub mod cert;
pub mod config;
pub mod der;
pub mod kysod;
pub mod pdf_signer;
pub mod request;
pub mod status;
pub mod trust;

#[cfg(feature = "server")]
pub mod c14n;
#[cfg(feature = "server")]
pub mod consent;
#[cfg(feature = "server")]
pub mod documents;
#[cfg(feature = "server")]
pub mod fetch;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod origin;
#[cfg(feature = "server")]
pub mod prompt;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod settings;
#[cfg(feature = "server")]
pub mod sites;
#[cfg(feature = "server")]
pub mod verify;
#[cfg(feature = "server")]
pub mod xmldsig;
#[cfg(feature = "server")]
pub mod xmlverify;

/// The bridge's directory inside kyso's state directory: its certificate and the user's
/// remembered answers.
pub fn state_dir(kyso_state: &std::path::Path) -> std::path::PathBuf {
    kyso_state.join("bridge")
}
