//! A web page's origin as the browser sends it (`Origin: https://vpdt.example.gov.vn`), in one
//! canonical form for comparison: lowercase scheme and host, no default port. Only http(s)
//! pages are origins the bridge deals with; `null`, `file://`, extensions and anything that
//! does not parse are not.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("the request has no Origin")]
    Missing,
    #[error("the page is not a web page (http or https)")]
    NotWeb,
    #[error("the Origin is malformed")]
    Malformed,
}

impl Origin {
    /// Parses an `Origin` header value (or a configured origin).
    pub fn parse(text: &str) -> Result<Origin, OriginError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(OriginError::Missing);
        }
        let (scheme, rest) = text.split_once("://").ok_or(OriginError::NotWeb)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => "80",
            "https" => "443",
            _ => return Err(OriginError::NotWeb),
        };
        // An origin is scheme, host and port: nothing else (a configured origin may end in '/').
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\']) || rest.len() > 253 + 7 {
            return Err(OriginError::Malformed);
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or(OriginError::Malformed)?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(OriginError::Malformed);
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(OriginError::Malformed)?),
            };
            (format!("[{}]", addr.to_ascii_lowercase()), port)
        } else {
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
            if host.is_empty() || !host.chars().all(valid) {
                return Err(OriginError::Malformed);
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => None,
            Some(p) => {
                let n: u16 = p
                    .parse()
                    .ok()
                    .filter(|_| p.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or(OriginError::Malformed)?;
                (n.to_string() != default_port).then(|| n.to_string())
            }
        };
        Ok(Origin(match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form() {
        let o = |s| Origin::parse(s).map(|o| o.0);
        assert_eq!(
            o("https://VPDT.Example.gov.vn").unwrap(),
            "https://vpdt.example.gov.vn"
        );
        assert_eq!(o("https://a.example:443").unwrap(), "https://a.example");
        assert_eq!(o("http://a.example:80").unwrap(), "http://a.example");
        assert_eq!(o("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(o("https://a.example/").unwrap(), "https://a.example");
        assert_eq!(o("HTTPS://[::1]:9000").unwrap(), "https://[::1]:9000");
    }

    #[test]
    fn what_is_not_a_web_origin() {
        assert_eq!(Origin::parse(""), Err(OriginError::Missing));
        assert_eq!(Origin::parse("null"), Err(OriginError::NotWeb));
        assert_eq!(Origin::parse("file://"), Err(OriginError::NotWeb));
        assert_eq!(
            Origin::parse("chrome-extension://abc"),
            Err(OriginError::NotWeb)
        );
        for bad in [
            "https://",
            "https://a.example/path",
            "https://user@a.example",
            "https://a.example:99999",
            "https://a.example:+1",
            "https://a b",
            "https://[zz]:1",
            "https://a.example?x",
        ] {
            assert_eq!(Origin::parse(bad), Err(OriginError::Malformed), "{bad}");
        }
    }
}
