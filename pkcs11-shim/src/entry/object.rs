//! Object management: create, copy, destroy, size, attributes, and searching.

use cryptoki_sys::{
    CKF_ARRAY_ATTRIBUTE, CKR_ATTRIBUTE_TYPE_INVALID, CKR_OK, CK_ATTRIBUTE, CK_OBJECT_HANDLE,
    CK_SESSION_HANDLE, CK_ULONG, CK_UNAVAILABLE_INFORMATION,
};
use kyso_proto::{AttributeQuery, Call, Reply};

use super::{entry, reply};
use crate::error::{check, Error};
use crate::{convert, ffi};

entry! {
    fn C_CreateObject(
        session: CK_SESSION_HANDLE,
        template: *mut CK_ATTRIBUTE,
        count: CK_ULONG,
        object: *mut CK_OBJECT_HANDLE,
    ) |client| {
        // SAFETY: phObject points at room for a handle; the template is count attributes.
        let (out, template) = unsafe { (ffi::Out::new(object)?, convert::template(template, count)?) };
        let answer = client.call(Call::CreateObject { session, template })?;
        out.set(reply!(answer, Reply::Handle(h) => h)?);
        Ok(())
    }

    fn C_CopyObject(
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        template: *mut CK_ATTRIBUTE,
        count: CK_ULONG,
        new_object: *mut CK_OBJECT_HANDLE,
    ) |client| {
        // SAFETY: phNewObject points at room for a handle; the template is count attributes.
        let (out, template) = unsafe { (ffi::Out::new(new_object)?, convert::template(template, count)?) };
        let answer = client.call(Call::CopyObject { session, object, template })?;
        out.set(reply!(answer, Reply::Handle(h) => h)?);
        Ok(())
    }

    fn C_DestroyObject(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) |client| {
        check(client.call(Call::DestroyObject { session, object })?.rv)
    }

    fn C_GetObjectSize(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE, size: *mut CK_ULONG) |client| {
        // SAFETY: pulSize points at room for a CK_ULONG (PKCS#11).
        let out = unsafe { ffi::Out::new(size) }?;
        let answer = client.call(Call::GetObjectSize { session, object })?;
        out.set(reply!(answer, Reply::Size(s) => s)?);
        Ok(())
    }

    /// `C_GetAttributeValue`, with PKCS#11's per-attribute results: every attribute's
    /// `ulValueLen` is set (`CK_UNAVAILABLE_INFORMATION` where there is no answer) and the
    /// daemon's `rv` (`CKR_ATTRIBUTE_SENSITIVE`, `CKR_BUFFER_TOO_SMALL`, …) is returned as is.
    /// Array attributes cannot be carried: they answer `CK_UNAVAILABLE_INFORMATION` and make
    /// the call `CKR_ATTRIBUTE_TYPE_INVALID` unless the daemon reports another such error.
    fn C_GetAttributeValue(
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        template: *mut CK_ATTRIBUTE,
        count: CK_ULONG,
    ) |client| {
        // SAFETY: pTemplate points at count attributes whose non-NULL pValues are writable
        // for their ulValueLen (PKCS#11).
        let attrs = unsafe { ffi::array_mut(template, count) }?;
        let carried = |a: &CK_ATTRIBUTE| a.type_ & CKF_ARRAY_ATTRIBUTE == 0;
        let queries = attrs
            .iter()
            .filter(|a| carried(a))
            .map(|a| AttributeQuery {
                kind: a.type_,
                len: (!a.pValue.is_null()).then_some(a.ulValueLen),
            })
            .collect::<Vec<_>>();
        let asked = queries.len();
        let answer = client.call(Call::GetAttributeValue { session, object, queries })?;
        let values = match answer.reply {
            Reply::Attributes(values) if values.len() == asked => values,
            _ => return check(answer.rv).and(Err(Error::Protocol)),
        };
        let mut values = values.into_iter();
        let mut uncarried = false;
        for attr in attrs.iter_mut() {
            if !carried(attr) {
                attr.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                uncarried = true;
                continue;
            }
            let Some(value) = values.next() else { break };
            if let Some(bytes) = value.value {
                // SAFETY: pValue is writable for ulValueLen bytes (PKCS#11); checked to fit.
                unsafe { ffi::store_value(attr, &bytes) }?;
            }
            attr.ulValueLen = value.len;
        }
        if uncarried && answer.rv == CKR_OK {
            return Err(Error::Rv(CKR_ATTRIBUTE_TYPE_INVALID));
        }
        check(answer.rv)
    }

    fn C_SetAttributeValue(
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        template: *mut CK_ATTRIBUTE,
        count: CK_ULONG,
    ) |client| {
        // SAFETY: pTemplate points at count attributes (PKCS#11).
        let template = unsafe { convert::template(template, count) }?;
        check(client.call(Call::SetAttributeValue { session, object, template })?.rv)
    }

    fn C_FindObjectsInit(session: CK_SESSION_HANDLE, template: *mut CK_ATTRIBUTE, count: CK_ULONG) |client| {
        // SAFETY: pTemplate points at count attributes (PKCS#11).
        let template = unsafe { convert::template(template, count) }?;
        check(client.call(Call::FindObjectsInit { session, template })?.rv)
    }

    fn C_FindObjects(
        session: CK_SESSION_HANDLE,
        objects: *mut CK_OBJECT_HANDLE,
        max: CK_ULONG,
        found: *mut CK_ULONG,
    ) |client| {
        // SAFETY: phObject has room for ulMaxObjectCount handles; pulObjectCount for a count.
        let (list, found) = unsafe { (ffi::OutArray::new(objects, max)?, ffi::Out::new(found)?) };
        let answer = client.call(Call::FindObjects { session, max })?;
        let handles = reply!(answer, Reply::Handles(h) => h)?;
        list.fill(&handles)?;
        found.set(handles.len() as CK_ULONG);
        Ok(())
    }

    fn C_FindObjectsFinal(session: CK_SESSION_HANDLE) |client| {
        check(client.call(Call::FindObjectsFinal { session })?.rv)
    }
}
