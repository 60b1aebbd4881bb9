//! Session management: open, close, information, login and logout.

use std::ffi::c_void;

use cryptoki_sys::{
    CKF_SERIAL_SESSION, CKR_SESSION_PARALLEL_NOT_SUPPORTED, CK_FLAGS, CK_NOTIFY, CK_SESSION_HANDLE,
    CK_SESSION_INFO, CK_SLOT_ID, CK_ULONG, CK_USER_TYPE, CK_UTF8CHAR,
};
use kyso_proto::{Call, Reply};

use super::{entry, reply};
use crate::error::{check, Error};
use crate::{convert, ffi};

entry! {
    /// `C_OpenSession`. Notification callbacks are never called (PKCS#11 makes them optional).
    fn C_OpenSession(
        slot: CK_SLOT_ID,
        flags: CK_FLAGS,
        _application: *mut c_void,
        _notify: CK_NOTIFY,
        session: *mut CK_SESSION_HANDLE,
    ) |client| {
        // SAFETY: phSession points at room for a CK_SESSION_HANDLE (PKCS#11).
        let out = unsafe { ffi::Out::new(session) }?;
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(Error::Rv(CKR_SESSION_PARALLEL_NOT_SUPPORTED));
        }
        let answer = client.call(Call::OpenSession { slot, flags })?;
        out.set(reply!(answer, Reply::Handle(h) => h)?);
        Ok(())
    }

    fn C_CloseSession(session: CK_SESSION_HANDLE) |client| {
        check(client.call(Call::CloseSession { session })?.rv)
    }

    fn C_CloseAllSessions(slot: CK_SLOT_ID) |client| {
        check(client.call(Call::CloseAllSessions { slot })?.rv)
    }

    fn C_GetSessionInfo(session: CK_SESSION_HANDLE, info: *mut CK_SESSION_INFO) |client| {
        // SAFETY: pInfo points at room for a CK_SESSION_INFO (PKCS#11).
        let out = unsafe { ffi::Out::new(info) }?;
        let answer = client.call(Call::GetSessionInfo { session })?;
        out.set(convert::session_info(reply!(answer, Reply::SessionInfo(i) => i)?));
        Ok(())
    }

    /// `C_Login`; a NULL PIN asks kysod to prompt on the protected authentication path.
    fn C_Login(session: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, pin: *mut CK_UTF8CHAR, pin_len: CK_ULONG) |client| {
        // SAFETY: a non-NULL pPin is readable for ulPinLen bytes.
        let pin = unsafe { convert::pin(pin, pin_len) }?;
        check(client.call(Call::Login { session, user_type, pin })?.rv)
    }

    fn C_Logout(session: CK_SESSION_HANDLE) |client| {
        check(client.call(Call::Logout { session })?.rv)
    }
}
