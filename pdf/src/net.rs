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

/// HTTP(S) for timestamps, OCSP and CRLs, with a time and a size limit. TLS servers are checked
/// against the system's certificate store (where an organisation installs its national roots).
#[cfg(feature = "http")]
pub struct Http {
    agent: ureq::Agent,
    max_size: u64,
}

#[cfg(feature = "http")]
impl Http {
    /// Answers over `max_size` bytes, or later than `timeout`, fail.
    pub fn new(timeout: std::time::Duration, max_size: u64) -> Http {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(true)
            .max_redirects(3)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            )
            .build();
        Http {
            agent: config.into(),
            max_size,
        }
    }

    fn body(
        &self,
        url: &str,
        answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>, String> {
        let mut answer = answer.map_err(|e| format!("{url}: {e}"))?;
        answer
            .body_mut()
            .with_config()
            .limit(self.max_size)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))
    }
}

#[cfg(feature = "http")]
impl Fetch for Http {
    fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        self.body(url, self.agent.get(url).call())
    }

    fn post(&self, url: &str, content_type: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        self.body(
            url,
            self.agent
                .post(url)
                .header("Content-Type", content_type)
                .send(body),
        )
    }
}
