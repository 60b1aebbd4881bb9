//! In-crate tests: the exported C ABI driven like an application would, against a fake kysod
//! that speaks the real protocol with scripted answers.
//!
//! Every `unsafe` block in these tests calls the module's C ABI with pointers to live locals
//! of the right type and size (or deliberately NULL), which is what the PKCS#11 contract asks.
#![allow(clippy::undocumented_unsafe_blocks)]

mod abi;
mod fake_daemon;
mod forwarding;
mod lifecycle;
mod resilience;

use parking_lot::{Mutex, MutexGuard};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use cryptoki_sys::{CKR_OK, CK_RV};

use crate::{C_Finalize, C_Initialize};

/// The shim has one global state: tests that initialise it take turns.
static SERIAL: Mutex<()> = Mutex::new(());

pub(crate) fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock()
}

/// A private directory for a test's socket, removed afterwards.
pub(crate) struct TestDir(PathBuf);

impl TestDir {
    pub(crate) fn new() -> TestDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kyso-shim-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.0.join("kysod.sock")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The library initialised against `socket`; finalised on drop, even when a test fails.
pub(crate) struct Initialised;

impl Initialised {
    pub(crate) fn at(socket: &Path) -> Initialised {
        std::env::set_var("KYSO_SOCKET", socket);
        assert_eq!(unsafe { C_Initialize(ptr::null_mut()) }, CKR_OK);
        Initialised
    }
}

impl Drop for Initialised {
    fn drop(&mut self) {
        unsafe { C_Finalize(ptr::null_mut()) };
    }
}

/// `CK_RV`s print as hex in assertion failures, like the specification lists them.
#[track_caller]
pub(crate) fn assert_rv(got: CK_RV, want: CK_RV) {
    assert_eq!(got, want, "got CK_RV {got:#x}, wanted {want:#x}");
}
