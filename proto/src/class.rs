//! A certificate's class from its subject's `UID` (0.9.2342.19200300.100.1.1), as Vietnamese
//! CA profiles write it: `CCCD:`, `CMND:`, `HC:` for a person; `MST:`, `MNS:` for an
//! organisation (the agency's seal).

use serde::{Deserialize, Serialize};

/// `UID` (0.9.2342.19200300.100.1.1).
pub const OID_UID: &str = "0.9.2342.19200300.100.1.1";

/// A certificate's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertClass {
    /// A person's certificate (`UID=CCCD:`, `CMND:`, `HC:`).
    Personal,
    /// An organisation's, the agency's seal (`UID=MST:`, `MNS:`).
    Organisation,
    /// Devices and anything else.
    Other,
}

impl CertClass {
    /// The name used in the configuration, the audit journal and reports.
    pub fn name(self) -> &'static str {
        match self {
            CertClass::Personal => "personal",
            CertClass::Organisation => "organisation",
            CertClass::Other => "other",
        }
    }
}

/// The class a subject `UID` gives.
pub fn class_of_uid(uid: Option<&str>) -> CertClass {
    let Some(uid) = uid else {
        return CertClass::Other;
    };
    let uid = uid.trim().to_ascii_uppercase();
    if ["CCCD:", "CMND:", "HC:"].iter().any(|p| uid.starts_with(p)) {
        CertClass::Personal
    } else if ["MST:", "MNS:"].iter().any(|p| uid.starts_with(p)) {
        CertClass::Organisation
    } else {
        CertClass::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(class_of_uid(Some("CCCD:001090000001")), CertClass::Personal);
        assert_eq!(class_of_uid(Some(" cmnd:0123")), CertClass::Personal);
        assert_eq!(
            class_of_uid(Some("MST:0101234567")),
            CertClass::Organisation
        );
        assert_eq!(class_of_uid(Some("MNS:1234")), CertClass::Organisation);
        assert_eq!(class_of_uid(Some("device-7")), CertClass::Other);
        assert_eq!(class_of_uid(None), CertClass::Other);
    }
}
