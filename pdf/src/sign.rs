//! PAdES signing (`ETSI.CAdES.detached`) as an incremental update.

use time::OffsetDateTime;

use crate::appearance;
use crate::net::Fetch;
use crate::signer::Signer;
use crate::Error;

/// How to sign.
pub struct Options<'a> {
    /// The signature field's name; a fresh `Signature<n>` when `None`.
    pub field_name: Option<String>,
    pub reason: Option<String>,
    pub location: Option<String>,
    /// What to draw; `None` for an invisible signature.
    pub appearance: Option<appearance::Request>,
    /// An RFC 3161 timestamping service (PAdES-B-T), reached through `fetch`.
    pub timestamp_url: Option<String>,
    pub fetch: &'a dyn Fetch,
    /// The signing time written into the signature (`M`, and the CMS `signingTime`).
    pub time: OffsetDateTime,
}

/// The largest PDF kyso signs.
pub const MAX_SIZE: u64 = 100 * 1024 * 1024;

/// Signs `pdf` and returns the signed file: `pdf` unchanged, followed by the update.
pub fn sign_pdf(pdf: &[u8], signer: &mut dyn Signer, options: &Options) -> Result<Vec<u8>, Error> {
    let _ = (pdf, signer, options);
    Err(Error::Other("not built yet".into()))
}
