//! Slot and token management: slot and mechanism lists, slot/token/mechanism information,
//! `C_InitToken`, `C_InitPIN`, `C_SetPIN`.

use cryptoki_sys::{
    CK_BBOOL, CK_MECHANISM_INFO, CK_MECHANISM_TYPE, CK_SESSION_HANDLE, CK_SLOT_ID, CK_SLOT_INFO,
    CK_TOKEN_INFO, CK_ULONG, CK_UTF8CHAR,
};
use kyso_proto::{Call, Reply};

use super::{entry, reply};
use crate::error::{check, Error};
use crate::{convert, ffi};

entry! {
    /// `C_GetSlotList`. When kysod cannot be reached this is `CKR_OK` with no slots, not an
    /// error: applications such as Firefox then simply show no token, and ask again later
    /// (which reconnects).
    fn C_GetSlotList(token_present: CK_BBOOL, list: *mut CK_SLOT_ID, count: *mut CK_ULONG) |client| {
        // SAFETY: pulCount points at a CK_ULONG; a non-NULL pSlotList has room for *pulCount ids.
        let out = unsafe { ffi::OutList::new(list, count) }?;
        let slots = match client.call(Call::GetSlotList { token_present: token_present != 0 }) {
            Err(Error::DaemonGone(_)) => Vec::new(),
            answer => reply!(answer?, Reply::SlotList(slots) => slots)?,
        };
        out.fill(&slots)
    }

    fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) |client| {
        // SAFETY: pInfo points at room for a CK_SLOT_INFO (PKCS#11).
        let out = unsafe { ffi::Out::new(info) }?;
        let answer = client.call(Call::GetSlotInfo { slot })?;
        out.set(convert::slot_info(reply!(answer, Reply::SlotInfo(i) => i)?));
        Ok(())
    }

    fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) |client| {
        // SAFETY: pInfo points at room for a CK_TOKEN_INFO (PKCS#11).
        let out = unsafe { ffi::Out::new(info) }?;
        let answer = client.call(Call::GetTokenInfo { slot })?;
        out.set(convert::token_info(reply!(answer, Reply::TokenInfo(i) => i)?));
        Ok(())
    }

    fn C_GetMechanismList(slot: CK_SLOT_ID, list: *mut CK_MECHANISM_TYPE, count: *mut CK_ULONG) |client| {
        // SAFETY: pulCount points at a CK_ULONG; a non-NULL list has room for *pulCount types.
        let out = unsafe { ffi::OutList::new(list, count) }?;
        let answer = client.call(Call::GetMechanismList { slot })?;
        out.fill(&reply!(answer, Reply::Mechanisms(m) => m)?)
    }

    fn C_GetMechanismInfo(slot: CK_SLOT_ID, mechanism: CK_MECHANISM_TYPE, info: *mut CK_MECHANISM_INFO) |client| {
        // SAFETY: pInfo points at room for a CK_MECHANISM_INFO (PKCS#11).
        let out = unsafe { ffi::Out::new(info) }?;
        let answer = client.call(Call::GetMechanismInfo { slot, mechanism })?;
        out.set(convert::mechanism_info(reply!(answer, Reply::MechanismInfo(i) => i)?));
        Ok(())
    }

    /// `C_InitToken`; a NULL SO PIN asks kysod to use the protected authentication path.
    fn C_InitToken(slot: CK_SLOT_ID, pin: *mut CK_UTF8CHAR, pin_len: CK_ULONG, label: *mut CK_UTF8CHAR) |client| {
        // SAFETY: pLabel points at the 32-byte blank-padded label (PKCS#11).
        let label = unsafe { ffi::bytes(label, 32) }?.to_vec();
        // SAFETY: a non-NULL pPin is readable for ulPinLen bytes.
        let so_pin = unsafe { convert::pin(pin, pin_len) }?;
        check(client.call(Call::InitToken { slot, so_pin, label })?.rv)
    }

    fn C_InitPIN(session: CK_SESSION_HANDLE, pin: *mut CK_UTF8CHAR, pin_len: CK_ULONG) |client| {
        // SAFETY: a non-NULL pPin is readable for ulPinLen bytes.
        let pin = unsafe { convert::pin(pin, pin_len) }?;
        check(client.call(Call::InitPin { session, pin })?.rv)
    }

    fn C_SetPIN(
        session: CK_SESSION_HANDLE,
        old: *mut CK_UTF8CHAR,
        old_len: CK_ULONG,
        new: *mut CK_UTF8CHAR,
        new_len: CK_ULONG,
    ) |client| {
        // SAFETY: non-NULL PINs are readable for their lengths (PKCS#11).
        let (old, new) = unsafe { (convert::pin(old, old_len)?, convert::pin(new, new_len)?) };
        check(client.call(Call::SetPin { session, old, new })?.rv)
    }
}
