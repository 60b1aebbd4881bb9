//! `[documents]` of kyso's configuration file: what `kyso sign`, `kyso verify` and the
//! bridge's document operations read. kysod accepts the table and leaves it alone.
//!
//! ```toml
//! [documents]
//! trust_anchors = "/etc/kyso/trust"        # CA certificates (DER or PEM), one per file
//! timestamp_url = "http://ca.gov.vn/tsa"   # RFC 3161; signatures are PAdES-B-T when set
//! signature_image = "/home/an/.config/kyso/signature.png"   # the leader's, transparent PNG
//! seal_image = "/etc/kyso/seal.png"        # the organisation's, transparent PNG
//! organisation = "Sở Nội vụ tỉnh X"         # shown on copies; default: the certificate's O
//! copy_kind = "BẢN SAO ĐIỆN TỬ"
//! fetch_origins = ["https://files.example.gov.vn"]   # beyond the calling page's own origin
//! max_size_mb = 50
//!
//! [documents.layout]                       # see appearance::Layout; defaults in appearance
//! seal_size_mm = 36                        # the seal's real diameter
//!
//! [documents.layout.signature]             # millimetres from the lower left corner; seal,
//! page = -1                                # doc_number, issued_date and stamp alike
//! x_mm = 110                               # (page counted from the end: -1 is the last)
//! y_mm = 40
//! width_mm = 60
//! height_mm = 25
//! ```
//!
//! The organisation's file (`/etc/kyso/kysod.toml`) gives the defaults; a user's own file
//! overrides them key by key (see [`Documents::merged`]).

use std::path::PathBuf;

use serde::Deserialize;

use crate::appearance::Layout;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Documents {
    pub trust_anchors: Option<PathBuf>,
    pub timestamp_url: Option<String>,
    pub signature_image: Option<PathBuf>,
    pub seal_image: Option<PathBuf>,
    pub organisation: Option<String>,
    pub copy_kind: Option<String>,
    pub fetch_origins: Vec<String>,
    pub max_size_mb: u32,
    pub layout: Layout,
}

impl Default for Documents {
    fn default() -> Self {
        Documents {
            trust_anchors: None,
            timestamp_url: None,
            signature_image: None,
            seal_image: None,
            organisation: None,
            copy_kind: None,
            fetch_origins: Vec::new(),
            max_size_mb: 50,
            layout: Layout::default(),
        }
    }
}

impl Documents {
    /// The table `user` over `organisation`, key by key (nested tables too).
    pub fn merged(organisation: &toml::Table, user: &toml::Table) -> Result<Documents, String> {
        let mut table = organisation.clone();
        merge(&mut table, user);
        Documents::from_table(&table)
    }

    pub fn from_table(table: &toml::Table) -> Result<Documents, String> {
        Documents::deserialize(toml::Value::Table(table.clone()))
            .map_err(|e| format!("[documents]: {e}"))
    }

    /// The largest document fetched or signed, in bytes.
    pub fn max_size(&self) -> u64 {
        u64::from(self.max_size_mb) * 1024 * 1024
    }
}

/// The trust anchors in `dir`: every certificate (DER, or PEM with one or more) of its files.
/// Files that hold no certificate are passed over.
pub fn read_trust_anchors(dir: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    use der::{Decode, Encode};
    use x509_cert::Certificate;
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the trust anchors in {}: {e}", dir.display()))?;
    let mut anchors = Vec::new();
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths.into_iter().filter(|p| p.is_file()) {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.starts_with(b"-----BEGIN") {
            if let Ok(certs) = Certificate::load_pem_chain(&bytes) {
                anchors.extend(certs.iter().filter_map(|c| c.to_der().ok()));
            }
        } else if Certificate::from_der(&bytes).is_ok() {
            anchors.push(bytes);
        }
    }
    Ok(anchors)
}

fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_overrides_organisation_key_by_key() {
        let org: toml::Table = toml::from_str(
            "seal_image = \"/etc/kyso/seal.png\"\nmax_size_mb = 20\n[layout.seal]\nx_mm = 10\ny_mm = 20\n",
        )
        .unwrap();
        let user: toml::Table =
            toml::from_str("signature_image = \"/home/an/sig.png\"\nmax_size_mb = 30\n").unwrap();
        let d = Documents::merged(&org, &user).unwrap();
        assert_eq!(d.seal_image, Some(PathBuf::from("/etc/kyso/seal.png")));
        assert_eq!(d.signature_image, Some(PathBuf::from("/home/an/sig.png")));
        assert_eq!(d.max_size(), 30 * 1024 * 1024);
        assert_eq!(d.layout.seal.unwrap().page, -1);
        assert!(Documents::from_table(&toml::from_str("sael_image = \"x\"").unwrap()).is_err());
    }
}
