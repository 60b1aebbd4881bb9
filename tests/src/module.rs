//! PKCS#11 modules loaded into the test process.

use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::daemon::Daemon;
use crate::fixture::Fixture;
use crate::paths::shim_path;
use crate::raw::RawModule;

/// A PKCS#11 module, loaded and initialised (`CKF_OS_LOCKING_OK`); finalised on drop.
pub struct Module {
    ctx: Option<Pkcs11>,
    raw: RawModule,
    path: PathBuf,
}

impl Module {
    /// Loads the kyso shim pointed at `daemon` (sets `KYSO_SOCKET` for this process).
    pub fn shim(daemon: &Daemon) -> Module {
        Self::shim_at(daemon.socket())
    }

    /// Loads the kyso shim pointed at the socket `socket`.
    pub fn shim_at(socket: &Path) -> Module {
        Self::shim_from(&shim_path(), socket)
    }

    /// Loads the shim at `path` (another build's, say) pointed at the socket `socket`.
    pub fn shim_from(path: &Path, socket: &Path) -> Module {
        std::env::set_var("KYSO_SOCKET", socket);
        Self::load(path)
    }

    /// Loads SoftHSM2 directly, on the fixture's tokens (sets `SOFTHSM2_CONF` for this process).
    pub fn softhsm(fx: &Fixture) -> Module {
        std::env::set_var("SOFTHSM2_CONF", fx.softhsm_conf());
        Self::load(fx.softhsm_module())
    }

    /// Loads and initialises the module at `path`.
    pub fn load(path: &Path) -> Module {
        Self::try_load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Loads and initialises the module at `path`, returning the error instead of panicking.
    pub fn try_load(path: &Path) -> Result<Module, Error> {
        let ctx = Pkcs11::new(path)?;
        let raw = RawModule::load(path);
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
        Ok(Module {
            ctx: Some(ctx),
            raw,
            path: path.to_path_buf(),
        })
    }

    /// The `cryptoki` context.
    pub fn ctx(&self) -> &Pkcs11 {
        self.ctx.as_ref().expect("module is initialised")
    }

    /// The same module's raw function list, for exact C-level semantics.
    pub fn raw(&self) -> &RawModule {
        &self.raw
    }

    /// Where the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The slot holding the token with serial number `serial` (panics if there is none).
    /// A read-only session on the token with serial `serial`, if the module lists it now.
    pub fn session_if_present(&self, serial: &str) -> Option<Session> {
        let slots = self.ctx().get_slots_with_token().ok()?;
        let slot = slots.into_iter().find(|slot| {
            self.ctx()
                .get_token_info(*slot)
                .is_ok_and(|i| i.serial_number().trim() == serial)
        })?;
        self.ctx().open_ro_session(slot).ok()
    }

    pub fn slot_with_serial(&self, serial: &str) -> Slot {
        let slots = self.ctx().get_slots_with_token().expect("C_GetSlotList");
        for slot in slots {
            let info = self.ctx().get_token_info(slot).expect("C_GetTokenInfo");
            if info.serial_number().trim() == serial {
                return slot;
            }
        }
        panic!(
            "{}: no slot has a token with serial {serial}",
            self.path.display()
        );
    }

    /// Opens a read-only session on the token with serial `serial`.
    pub fn session(&self, serial: &str) -> Session {
        let slot = self.slot_with_serial(serial);
        self.ctx().open_ro_session(slot).expect("C_OpenSession")
    }

    /// Opens a read-only session on the token with serial `serial` and logs the user in.
    pub fn user_session(&self, serial: &str) -> Session {
        let s = self.session(serial);
        login(&s, crate::USER_PIN).expect("C_Login(CKU_USER)");
        s
    }

    /// `C_Finalize` now (also done on drop).
    pub fn finalize(mut self) -> Result<(), Error> {
        match self.ctx.take() {
            Some(ctx) => ctx.finalize(),
            None => Ok(()),
        }
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            ctx.finalize().ok();
        }
    }
}

/// `C_Login(CKU_USER, pin)`.
pub fn login(session: &Session, pin: &str) -> Result<(), Error> {
    session.login(UserType::User, Some(&AuthPin::from(pin.to_string())))
}

/// The `CK_RV` inside a `cryptoki` error, if it is one.
pub fn rv_of(err: &Error) -> Option<RvError> {
    match err {
        Error::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}
