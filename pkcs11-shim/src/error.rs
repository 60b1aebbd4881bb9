//! The shim's errors and their one mapping to `CK_RV`.
#![forbid(unsafe_code)]

use cryptoki_sys::{
    CKR_ARGUMENTS_BAD, CKR_CRYPTOKI_NOT_INITIALIZED, CKR_DATA_LEN_RANGE, CKR_DEVICE_ERROR,
    CKR_DEVICE_REMOVED, CKR_FUNCTION_FAILED, CKR_OK, CKR_TOKEN_NOT_PRESENT, CK_RV,
};
use kyso_proto::Call;

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Error {
    /// A PKCS#11 result, decided here or passed through from the daemon.
    Rv(CK_RV),
    /// `C_Initialize` has not been called in this process (or `C_Finalize` has).
    NotInitialized,
    /// A pointer or length the application passed breaks the function's rules.
    ArgumentsBad,
    /// kysod is absent, went away, or broke the protocol; what the application is told
    /// depends on what it asked for.
    DaemonGone(Family),
    /// kysod said `CKR_OK` but its reply does not fit the call (or the application's buffer).
    Protocol,
    /// The request would not fit in one frame.
    TooLarge,
}

/// What a call is about, which decides how "kysod is gone" reads to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Library-wide (`C_GetSlotList`, kyso's own calls).
    Library,
    /// A slot, which exists even if kysod does not answer (`C_GetSlotInfo`).
    Slot,
    /// A token, which cannot be present without kysod.
    Token,
    /// A session, which died with its daemon connection.
    Session,
    /// `C_WaitForSlotEvent`, whose only failure code is `CKR_FUNCTION_FAILED`.
    SlotEvent,
}

impl Family {
    pub(crate) fn of(call: &Call) -> Family {
        match call {
            Call::GetInfo | Call::GetSlotList { .. } | Call::Status => Family::Library,
            Call::GetSlotInfo { .. } => Family::Slot,
            Call::GetTokenInfo { .. }
            | Call::GetMechanismList { .. }
            | Call::GetMechanismInfo { .. }
            | Call::InitToken { .. }
            | Call::OpenSession { .. }
            | Call::CloseAllSessions { .. } => Family::Token,
            Call::WaitForSlotEvent { .. } => Family::SlotEvent,
            _ => Family::Session,
        }
    }
}

impl Error {
    /// The one place where errors become `CK_RV`s.
    pub(crate) fn rv(self) -> CK_RV {
        match self {
            Error::Rv(rv) => rv,
            Error::NotInitialized => CKR_CRYPTOKI_NOT_INITIALIZED,
            Error::ArgumentsBad => CKR_ARGUMENTS_BAD,
            Error::DaemonGone(Family::Library | Family::Slot) => CKR_DEVICE_ERROR,
            Error::DaemonGone(Family::Token) => CKR_TOKEN_NOT_PRESENT,
            Error::DaemonGone(Family::Session) => CKR_DEVICE_REMOVED,
            Error::DaemonGone(Family::SlotEvent) => CKR_FUNCTION_FAILED,
            Error::Protocol => CKR_DEVICE_ERROR,
            Error::TooLarge => CKR_DATA_LEN_RANGE,
        }
    }
}

/// `Ok(())` for `CKR_OK`, the daemon's result as an error otherwise.
pub(crate) fn check(rv: CK_RV) -> Result<()> {
    if rv == CKR_OK {
        Ok(())
    } else {
        Err(Error::Rv(rv))
    }
}
