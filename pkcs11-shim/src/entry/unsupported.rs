//! What kyso does not offer: operation state, dual-function operations, wrapping, unwrapping
//! and derivation (their parameters and templates hold pointers the wire does not carry yet),
//! and PKCS#11 3.0's additions; and the legacy parallel-function calls, which PKCS#11 has
//! every library answer with `CKR_FUNCTION_NOT_PARALLEL`.

use std::ffi::c_void;

use cryptoki_sys::{
    CK_ATTRIBUTE, CK_BYTE, CK_FLAGS, CK_MECHANISM, CK_OBJECT_HANDLE, CK_SESSION_HANDLE, CK_ULONG,
    CK_USER_TYPE, CK_UTF8CHAR,
};

use super::refused;

type Session = CK_SESSION_HANDLE;
type Bytes = *mut CK_BYTE;
type Len = CK_ULONG;
type LenOut = *mut CK_ULONG;
type Object = CK_OBJECT_HANDLE;
type Mechanism = *mut CK_MECHANISM;
type Template = *mut CK_ATTRIBUTE;
type ObjectOut = *mut CK_OBJECT_HANDLE;
type Params = *mut c_void;

refused! { CKR_FUNCTION_NOT_PARALLEL:
    fn C_GetFunctionStatus(Session);
    fn C_CancelFunction(Session);
}

refused! { CKR_FUNCTION_NOT_SUPPORTED:
    fn C_GetOperationState(Session, Bytes, LenOut);
    fn C_SetOperationState(Session, Bytes, Len, Object, Object);
    fn C_DigestEncryptUpdate(Session, Bytes, Len, Bytes, LenOut);
    fn C_DecryptDigestUpdate(Session, Bytes, Len, Bytes, LenOut);
    fn C_SignEncryptUpdate(Session, Bytes, Len, Bytes, LenOut);
    fn C_DecryptVerifyUpdate(Session, Bytes, Len, Bytes, LenOut);
    fn C_WrapKey(Session, Mechanism, Object, Object, Bytes, LenOut);
    fn C_UnwrapKey(Session, Mechanism, Object, Bytes, Len, Template, Len, ObjectOut);
    fn C_DeriveKey(Session, Mechanism, Object, Template, Len, ObjectOut);

    // PKCS#11 3.0
    fn C_LoginUser(Session, CK_USER_TYPE, *mut CK_UTF8CHAR, Len, *mut CK_UTF8CHAR, Len);
    fn C_SessionCancel(Session, CK_FLAGS);
    fn C_MessageEncryptInit(Session, Mechanism, Object);
    fn C_EncryptMessage(Session, Params, Len, Bytes, Len, Bytes, Len, Bytes, LenOut);
    fn C_EncryptMessageBegin(Session, Params, Len, Bytes, Len);
    fn C_EncryptMessageNext(Session, Params, Len, Bytes, Len, Bytes, LenOut, CK_FLAGS);
    fn C_MessageEncryptFinal(Session);
    fn C_MessageDecryptInit(Session, Mechanism, Object);
    fn C_DecryptMessage(Session, Params, Len, Bytes, Len, Bytes, Len, Bytes, LenOut);
    fn C_DecryptMessageBegin(Session, Params, Len, Bytes, Len);
    fn C_DecryptMessageNext(Session, Params, Len, Bytes, Len, Bytes, LenOut, CK_FLAGS);
    fn C_MessageDecryptFinal(Session);
    fn C_MessageSignInit(Session, Mechanism, Object);
    fn C_SignMessage(Session, Params, Len, Bytes, Len, Bytes, LenOut);
    fn C_SignMessageBegin(Session, Params, Len);
    fn C_SignMessageNext(Session, Params, Len, Bytes, Len, Bytes, LenOut);
    fn C_MessageSignFinal(Session);
    fn C_MessageVerifyInit(Session, Mechanism, Object);
    fn C_VerifyMessage(Session, Params, Len, Bytes, Len, Bytes, Len);
    fn C_VerifyMessageBegin(Session, Params, Len);
    fn C_VerifyMessageNext(Session, Params, Len, Bytes, Len, Bytes, Len);
    fn C_MessageVerifyFinal(Session);
}
