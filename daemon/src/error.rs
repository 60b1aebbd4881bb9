//! PKCS#11 return values as kysod passes them around.

use std::fmt;

use cryptoki_sys as ck;
use kyso_proto::Ulong;

/// A `CK_RV`. `Err(Rv)` is a PKCS#11 failure that goes back to the client unchanged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rv(pub Ulong);

impl Rv {
    pub const OK: Rv = Rv(ck::CKR_OK);

    pub fn name(self) -> &'static str {
        match self.0 {
            ck::CKR_OK => "CKR_OK",
            ck::CKR_CANCEL => "CKR_CANCEL",
            ck::CKR_HOST_MEMORY => "CKR_HOST_MEMORY",
            ck::CKR_SLOT_ID_INVALID => "CKR_SLOT_ID_INVALID",
            ck::CKR_GENERAL_ERROR => "CKR_GENERAL_ERROR",
            ck::CKR_FUNCTION_FAILED => "CKR_FUNCTION_FAILED",
            ck::CKR_ARGUMENTS_BAD => "CKR_ARGUMENTS_BAD",
            ck::CKR_NO_EVENT => "CKR_NO_EVENT",
            ck::CKR_CANT_LOCK => "CKR_CANT_LOCK",
            ck::CKR_ATTRIBUTE_SENSITIVE => "CKR_ATTRIBUTE_SENSITIVE",
            ck::CKR_ATTRIBUTE_TYPE_INVALID => "CKR_ATTRIBUTE_TYPE_INVALID",
            ck::CKR_ATTRIBUTE_VALUE_INVALID => "CKR_ATTRIBUTE_VALUE_INVALID",
            ck::CKR_DEVICE_ERROR => "CKR_DEVICE_ERROR",
            ck::CKR_DEVICE_REMOVED => "CKR_DEVICE_REMOVED",
            ck::CKR_FUNCTION_CANCELED => "CKR_FUNCTION_CANCELED",
            ck::CKR_FUNCTION_NOT_SUPPORTED => "CKR_FUNCTION_NOT_SUPPORTED",
            ck::CKR_KEY_HANDLE_INVALID => "CKR_KEY_HANDLE_INVALID",
            ck::CKR_KEY_FUNCTION_NOT_PERMITTED => "CKR_KEY_FUNCTION_NOT_PERMITTED",
            ck::CKR_MECHANISM_INVALID => "CKR_MECHANISM_INVALID",
            ck::CKR_MECHANISM_PARAM_INVALID => "CKR_MECHANISM_PARAM_INVALID",
            ck::CKR_OBJECT_HANDLE_INVALID => "CKR_OBJECT_HANDLE_INVALID",
            ck::CKR_OPERATION_ACTIVE => "CKR_OPERATION_ACTIVE",
            ck::CKR_OPERATION_NOT_INITIALIZED => "CKR_OPERATION_NOT_INITIALIZED",
            ck::CKR_PIN_INCORRECT => "CKR_PIN_INCORRECT",
            ck::CKR_PIN_INVALID => "CKR_PIN_INVALID",
            ck::CKR_PIN_LEN_RANGE => "CKR_PIN_LEN_RANGE",
            ck::CKR_PIN_EXPIRED => "CKR_PIN_EXPIRED",
            ck::CKR_PIN_LOCKED => "CKR_PIN_LOCKED",
            ck::CKR_SESSION_COUNT => "CKR_SESSION_COUNT",
            ck::CKR_SESSION_HANDLE_INVALID => "CKR_SESSION_HANDLE_INVALID",
            ck::CKR_SESSION_PARALLEL_NOT_SUPPORTED => "CKR_SESSION_PARALLEL_NOT_SUPPORTED",
            ck::CKR_SESSION_READ_ONLY => "CKR_SESSION_READ_ONLY",
            ck::CKR_SESSION_EXISTS => "CKR_SESSION_EXISTS",
            ck::CKR_SESSION_READ_ONLY_EXISTS => "CKR_SESSION_READ_ONLY_EXISTS",
            ck::CKR_SESSION_READ_WRITE_SO_EXISTS => "CKR_SESSION_READ_WRITE_SO_EXISTS",
            ck::CKR_SIGNATURE_INVALID => "CKR_SIGNATURE_INVALID",
            ck::CKR_SIGNATURE_LEN_RANGE => "CKR_SIGNATURE_LEN_RANGE",
            ck::CKR_TEMPLATE_INCOMPLETE => "CKR_TEMPLATE_INCOMPLETE",
            ck::CKR_TEMPLATE_INCONSISTENT => "CKR_TEMPLATE_INCONSISTENT",
            ck::CKR_TOKEN_NOT_PRESENT => "CKR_TOKEN_NOT_PRESENT",
            ck::CKR_TOKEN_NOT_RECOGNIZED => "CKR_TOKEN_NOT_RECOGNIZED",
            ck::CKR_TOKEN_WRITE_PROTECTED => "CKR_TOKEN_WRITE_PROTECTED",
            ck::CKR_USER_ALREADY_LOGGED_IN => "CKR_USER_ALREADY_LOGGED_IN",
            ck::CKR_USER_NOT_LOGGED_IN => "CKR_USER_NOT_LOGGED_IN",
            ck::CKR_USER_PIN_NOT_INITIALIZED => "CKR_USER_PIN_NOT_INITIALIZED",
            ck::CKR_USER_TYPE_INVALID => "CKR_USER_TYPE_INVALID",
            ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN => "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
            ck::CKR_USER_TOO_MANY_TYPES => "CKR_USER_TOO_MANY_TYPES",
            ck::CKR_BUFFER_TOO_SMALL => "CKR_BUFFER_TOO_SMALL",
            ck::CKR_CRYPTOKI_NOT_INITIALIZED => "CKR_CRYPTOKI_NOT_INITIALIZED",
            ck::CKR_CRYPTOKI_ALREADY_INITIALIZED => "CKR_CRYPTOKI_ALREADY_INITIALIZED",
            ck::CKR_FUNCTION_REJECTED => "CKR_FUNCTION_REJECTED",
            _ => "",
        }
    }
}

impl fmt::Display for Rv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "" => write!(f, "CK_RV {:#x}", self.0),
            name => f.write_str(name),
        }
    }
}

impl fmt::Debug for Rv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Rv> for Ulong {
    fn from(rv: Rv) -> Ulong {
        rv.0
    }
}
