//! Where the binaries under test and the fixture scripts are.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// SoftHSM2's PKCS#11 module as Debian installs it.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The directory holding `kysod` and `libkyso_pkcs11.so`: `$KYSO_TARGET_DIR` if set, else the
/// profile directory this executable was built into (`target/<profile>/deps/..`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KYSO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("executable has a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

fn built(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace` (same profile) first, or set KYSO_TARGET_DIR",
        path.display()
    );
    path
}

/// `target/<profile>/kysod`.
pub fn kysod_path() -> PathBuf {
    built("kysod")
}

/// `target/<profile>/libkyso_pkcs11.so`.
pub fn shim_path() -> PathBuf {
    built("libkyso_pkcs11.so")
}

/// The workspace root (where `scripts/` and `tests/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Runs `tests/fixtures/<name>` with bash and `args`; returns what it printed. Panics, showing
/// all its output, when it fails.
pub(crate) fn run_fixture_script(name: &str, args: &[&OsStr]) -> String {
    let script = repo_root().join("tests/fixtures").join(name);
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
