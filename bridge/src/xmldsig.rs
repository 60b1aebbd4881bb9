//! XML-DSig signatures (SignXML).

use crate::request::{Digest, HashAlg};
use crate::status::{Failure, Status};

/// What an XML document is, in a few words for prompts and the journal.
pub fn describe(xml: &[u8]) -> String {
    format!("{} bytes", xml.len())
}

/// Signs `xml`; not built yet.
pub fn sign(
    _xml: &[u8],
    _alg: HashAlg,
    _signature_only: bool,
    _cert: &[u8],
    _sign: impl FnMut(&Digest) -> Result<Vec<u8>, Failure>,
) -> Result<Vec<u8>, Failure> {
    Err(Failure::with(Status::NotSupported, "SignXML"))
}
