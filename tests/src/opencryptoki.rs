//! An opencryptoki soft token: a token that counts wrong PINs and locks, for the lockout and
//! recovery tests (made by `tests/fixtures/opencryptoki-token.sh`).
//!
//! opencryptoki keeps its state system-wide (configuration, token store, slot daemon), so only
//! one test on the machine may use it at a time: [`Opencryptoki`] holds an exclusive lock on
//! [`LOCK_FILE`] for its lifetime, which also serialises test processes run in parallel by
//! nextest and test runs of other checkouts. It needs root.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::paths::{repo_root, run_fixture_script};

/// opencryptoki's PKCS#11 module (it talks to the slot daemon `pkcsslotd`).
pub const OPENCRYPTOKI_MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so";
/// The opencryptoki token's label.
pub const LABEL_C: &str = "LE VAN C";
/// The opencryptoki token's user PIN (its length limits are 4–8).
pub const OCK_USER_PIN: &str = "11223344";
/// The opencryptoki token's SO PIN (opencryptoki's default).
pub const OCK_SO_PIN: &str = "87654321";
/// `CKA_ID` of the token's RSA-2048 key pair and certificate (sign with `CKM_RSA_PKCS`).
pub const OCK_ID_RSA: &[u8] = &[0x01];
/// Held exclusively while an opencryptoki token is in use.
pub const LOCK_FILE: &str = "/run/lock/kyso-tests-opencryptoki.lock";

/// A freshly initialised opencryptoki token with its slot daemon running; the slot daemon is
/// stopped on drop.
pub struct Opencryptoki {
    serial: String,
    dir: PathBuf,
    _lock: File,
}

impl Opencryptoki {
    /// Takes the machine-wide lock (waiting for other tests), then makes the token afresh,
    /// keeping its certificate and the demo CA in `dir`.
    pub fn start(dir: &Path) -> Opencryptoki {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .unwrap_or_else(|e| {
                panic!("open {LOCK_FILE}: {e} (the opencryptoki tests run as root)")
            });
        // SAFETY: flock on a descriptor this function owns; it blocks until the lock is free.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(
            rc,
            0,
            "flock {LOCK_FILE}: {}",
            std::io::Error::last_os_error()
        );
        let text = run_fixture_script("opencryptoki-token.sh", &[dir.as_os_str()]);
        let serial = text
            .lines()
            .find_map(|l| l.strip_prefix("OCK_SERIAL="))
            .expect("OCK_SERIAL printed")
            .trim()
            .to_string();
        Opencryptoki {
            serial,
            dir: dir.to_path_buf(),
            _lock: lock,
        }
    }

    /// The token's serial number (`123` for opencryptoki's soft token).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The module path.
    pub fn module(&self) -> &'static Path {
        Path::new(OPENCRYPTOKI_MODULE)
    }

    /// The certificate of the RSA key (id 01), PEM.
    pub fn cert_pem(&self) -> PathBuf {
        self.dir.join("cert-c-01.pem")
    }

    /// The public key of the RSA key (id 01), PEM.
    pub fn pub_pem(&self) -> PathBuf {
        self.dir.join("pub-c-01.pem")
    }
}

impl Drop for Opencryptoki {
    fn drop(&mut self) {
        let script = repo_root().join("tests/fixtures/opencryptoki-token.sh");
        let _ = Command::new("bash").arg(&script).arg("--stop").status();
    }
}
