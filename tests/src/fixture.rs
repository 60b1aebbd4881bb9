//! A private SoftHSM2 token set in a temporary directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, MutexGuard};

use crate::opencryptoki::Opencryptoki;
use crate::paths::{run_fixture_script, SOFTHSM_MODULE};

static PROCESS_LOCK: Mutex<()> = Mutex::new(());

/// The tokens of `tests/fixtures/softhsm-token.sh`, made afresh in a temporary directory that is
/// removed on drop. Holds a process-wide lock for its lifetime (see the crate docs), so create
/// it first in a test and let it drop last.
pub struct Fixture {
    dir: tempfile::TempDir,
    serial_a: String,
    serial_b: Option<String>,
    ock: Option<Opencryptoki>,
    _lock: MutexGuard<'static, ()>,
}

impl Fixture {
    /// The token "NGUYEN VAN A" with its RSA (id 01) and EC (id 02) keys and certificates.
    pub fn new() -> Fixture {
        Self::make(false, false)
    }

    /// As [`Fixture::new`], plus a second token "TRAN THI B" with one EC key (id 01).
    pub fn with_second_token() -> Fixture {
        Self::make(true, false)
    }

    /// As [`Fixture::new`], plus the signing-policy keys on "NGUYEN VAN A" (`--policy`): id 03
    /// expired yesterday, 04 valid from in 10 days, 05 expiring in 20 days, 06 an organisation
    /// certificate (`UID=MST:0101234567`).
    pub fn with_policy_certs() -> Fixture {
        Self::make(false, true)
    }

    /// As [`Fixture::new`], plus a fresh opencryptoki token ([`Opencryptoki`]: "LE VAN C",
    /// serial 123, which locks after 3 wrong PINs). Waits while another test uses opencryptoki.
    /// Serve it with [`crate::DaemonConfig::with_opencryptoki`].
    pub fn with_opencryptoki() -> Fixture {
        let mut fx = Self::make(false, false);
        fx.ock = Some(Opencryptoki::start(&fx.subdir("opencryptoki")));
        fx
    }

    /// The opencryptoki token of [`Fixture::with_opencryptoki`].
    pub fn opencryptoki(&self) -> &Opencryptoki {
        self.ock
            .as_ref()
            .expect("fixture made with Fixture::with_opencryptoki")
    }

    fn make(second: bool, policy: bool) -> Fixture {
        let lock = PROCESS_LOCK.lock();
        let dir = tempfile::Builder::new()
            .prefix("kyso-test-")
            .tempdir()
            .expect("temporary directory");
        let mut args = vec![dir.path().as_os_str()];
        if second {
            args.push("--second".as_ref());
        }
        if policy {
            args.push("--policy".as_ref());
        }
        let env = parse_env(&run_fixture_script("softhsm-token.sh", &args));
        let serial_a = env.get("SERIAL_A").expect("SERIAL_A printed").clone();
        let serial_b = env.get("SERIAL_B").cloned();
        assert_eq!(serial_b.is_some(), second, "second token serial");
        Fixture {
            dir,
            serial_a,
            serial_b,
            ock: None,
            _lock: lock,
        }
    }

    /// The temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `SOFTHSM2_CONF` selecting this fixture's token directory.
    pub fn softhsm_conf(&self) -> PathBuf {
        self.dir().join("softhsm2.conf")
    }

    /// SoftHSM2's module path.
    pub fn softhsm_module(&self) -> &'static Path {
        Path::new(SOFTHSM_MODULE)
    }

    /// Serial number of the token "NGUYEN VAN A" (as `CK_TOKEN_INFO.serialNumber`, trimmed).
    pub fn serial_a(&self) -> &str {
        &self.serial_a
    }

    /// Serial number of the second token, when there is one.
    pub fn serial_b(&self) -> Option<&str> {
        self.serial_b.as_deref()
    }

    /// The demo CA certificate (PEM).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// The CA-issued certificate of the main token's key `id` (1 = RSA, 2 = EC, 3–6 the
    /// policy keys), PEM.
    pub fn cert_pem(&self, id: u8) -> PathBuf {
        self.dir().join(format!("cert-{id:02}.pem"))
    }

    /// The main token's public key `id` exported from the token, PEM.
    pub fn pub_pem(&self, id: u8) -> PathBuf {
        self.dir().join(format!("pub-{id:02}.pem"))
    }

    /// The second token's certificate (PEM).
    pub fn cert_b_pem(&self) -> PathBuf {
        self.dir().join("cert-b-01.pem")
    }

    /// A fresh subdirectory of the fixture directory.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.dir().join(name);
        std::fs::create_dir_all(&p).expect("create fixture subdirectory");
        p
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}
