//! The bridge's TLS certificate. A local certificate authority is made whose name constraints
//! let it issue only for `127.0.0.1` and `localhost`; it issues the bridge's certificate and its
//! private key is dropped right after, never written anywhere. So trusting the CA in a browser
//! trusts nothing but this machine's bridge, and nobody can issue with it again.
//!
//! Files, in the bridge's state directory: `ca.pem` (the CA certificate, to register with
//! browsers), `cert.pem` and `key.pem` (the bridge's certificate and key, mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};
use time::{Duration, OffsetDateTime};

/// The CA's common name, also the nickname it gets in NSS databases.
pub const CA_NAME: &str = "kyso bridge local CA (127.0.0.1, localhost)";
/// How long the bridge's certificate is valid. The CA cannot issue again, so a new pair is
/// made (and trusted again) when it runs out.
const VALID_DAYS: i64 = 5 * 365;
/// A certificate with less than this left is replaced at start.
const RENEW_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot make the bridge's certificate: {0}")]
    Make(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the certificate files are.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertPaths {
    pub fn in_dir(dir: &Path) -> CertPaths {
        CertPaths {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    /// Whether all three files exist and the certificate is not about to expire.
    pub fn usable(&self, now: OffsetDateTime) -> bool {
        if !self.ca.exists() || !self.key.exists() {
            return false;
        }
        let Ok(pem) = std::fs::read(&self.cert) else {
            return false;
        };
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&pem) else {
            return false;
        };
        let Ok(cert) = pem.parse_x509() else {
            return false;
        };
        cert.validity().not_after.timestamp() > (now + Duration::days(RENEW_DAYS)).unix_timestamp()
    }
}

/// A freshly made CA certificate and the bridge's certificate and key, all PEM.
pub struct Made {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes the CA and the bridge's certificate. The CA's key exists only inside this function.
pub fn make(now: OffsetDateTime) -> Result<Made, CertError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, CA_NAME);
    ca.distinguished_name.push(DnType::OrganizationName, "kyso");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![
            GeneralSubtree::DnsName("localhost".into()),
            GeneralSubtree::IpAddress(CidrSubnet::V4([127, 0, 0, 1], [255, 255, 255, 255])),
        ],
        excluded_subtrees: vec![],
    });
    ca.not_before = now - Duration::days(1);
    ca.not_after = now + Duration::days(VALID_DAYS + 1);
    ca.serial_number = Some(random_serial());
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now - Duration::days(1);
    leaf.not_after = now + Duration::days(VALID_DAYS);
    leaf.serial_number = Some(random_serial());
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    drop(ca_key);
    Ok(Made {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    // A collision only matters within one browser's view of this CA; the time is enough
    // entropy when the system has none to give.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    bytes.copy_from_slice(&nanos.to_be_bytes());
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// Makes the certificate files in `dir` when they are missing or run out soon; returns their
/// paths and whether they were made now (a new CA must be trusted again).
pub fn ensure(dir: &Path) -> Result<(CertPaths, bool), CertError> {
    let paths = CertPaths::in_dir(dir);
    let now = OffsetDateTime::now_utc();
    if paths.usable(now) {
        return Ok((paths, false));
    }
    let made = make(now)?;
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write_file(&paths.key, made.key_pem.as_bytes(), 0o600)?;
    write_file(&paths.cert, made.cert_pem.as_bytes(), 0o644)?;
    write_file(&paths.ca, made.ca_pem.as_bytes(), 0o644)?;
    Ok((paths, true))
}

/// Writes `path` whole (through a temporary file) with `mode`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| CertError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::{GeneralName, ParsedExtension};

    #[test]
    fn the_ca_is_constrained_to_this_machine_and_issued_the_bridge() {
        let made = make(OffsetDateTime::now_utc()).unwrap();
        let (_, ca) = x509_parser::pem::parse_x509_pem(made.ca_pem.as_bytes()).unwrap();
        let ca = ca.parse_x509().unwrap();
        let mut constrained = false;
        for ext in ca.extensions() {
            if let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() {
                assert!(ext.critical, "name constraints must be critical");
                let permitted: Vec<String> = nc
                    .permitted_subtrees
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|s| match &s.base {
                        GeneralName::DNSName(d) => d.to_string(),
                        GeneralName::IPAddress(ip) => format!("{ip:?}"),
                        other => panic!("unexpected subtree {other:?}"),
                    })
                    .collect();
                assert_eq!(
                    permitted,
                    ["localhost", "[127, 0, 0, 1, 255, 255, 255, 255]"]
                );
                assert!(nc.excluded_subtrees.is_none());
                constrained = true;
            }
        }
        assert!(constrained, "no name constraints");
        assert!(ca.is_ca());

        let (_, leaf) = x509_parser::pem::parse_x509_pem(made.cert_pem.as_bytes()).unwrap();
        let leaf = leaf.parse_x509().unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        assert!(!leaf.is_ca());
        leaf.verify_signature(Some(ca.public_key()))
            .expect("signed by the CA");
        let san = leaf.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        assert!(names.iter().any(|n| n.contains("localhost")), "{names:?}");
        assert!(
            names.iter().any(|n| n.contains("[127, 0, 0, 1]")),
            "{names:?}"
        );
        // The bridge's key is the one in key.pem; the CA's key is nowhere in the output.
        assert!(made.key_pem.contains("PRIVATE KEY"));
        assert!(!made.ca_pem.contains("PRIVATE KEY") && !made.cert_pem.contains("PRIVATE KEY"));
    }

    #[test]
    fn ensure_makes_once_and_keeps_the_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (paths, made) = ensure(dir.path()).unwrap();
        assert!(made);
        let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = std::fs::read(&paths.cert).unwrap();
        let (_, again) = ensure(dir.path()).unwrap();
        assert!(!again);
        assert_eq!(std::fs::read(&paths.cert).unwrap(), first);
        // No file holds a second private key (the CA's).
        let keys = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                std::fs::read_to_string(e.as_ref().unwrap().path())
                    .unwrap_or_default()
                    .contains("PRIVATE KEY")
            })
            .count();
        assert_eq!(keys, 1);
    }
}
