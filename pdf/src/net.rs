//! The network as the library sees it: a caller-supplied fetcher, so the library itself opens
//! no connection and a caller decides which hosts may be reached and with what limits.

/// An HTTP request the library needs: an RFC 3161 timestamp, an OCSP answer, a CRL.
pub trait Fetch {
    /// `GET url`, the body.
    fn get(&self, url: &str) -> Result<Vec<u8>, String>;
    /// `POST url` with `body` of `content_type`, the body of the answer.
    fn post(&self, url: &str, content_type: &str, body: &[u8]) -> Result<Vec<u8>, String>;
}

/// No network: every request fails, so revocation reads "not checked".
pub struct Offline;

impl Fetch for Offline {
    fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        Err(format!("offline: {url} not fetched"))
    }
    fn post(&self, url: &str, _: &str, _: &[u8]) -> Result<Vec<u8>, String> {
        Err(format!("offline: {url} not fetched"))
    }
}
