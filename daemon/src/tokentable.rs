//! kysod's token table: the built-in USB token models of [`kyso_proto::tokens`] with the
//! configuration's `[[token]]` entries in front, so a configured entry wins over a built-in one
//! for the same device.

use std::path::PathBuf;

use kyso_proto::tokens::{UsbMatch, BUILTIN_TOKENS};

use crate::config::TokenConfig;

/// One token model: the USB ids it answers to and the module paths to try, in order.
#[derive(Debug, Clone)]
pub struct TokenModel {
    pub name: String,
    pub usb: Vec<UsbMatch>,
    pub modules: Vec<PathBuf>,
}

/// The table kysod matches plugged devices against.
#[derive(Debug, Clone)]
pub struct TokenTable {
    models: Vec<TokenModel>,
}

impl TokenTable {
    /// The configured entries, then the built-in ones. A configured entry with a malformed USB
    /// id is an error naming the entry.
    pub fn new(configured: &[TokenConfig]) -> Result<TokenTable, String> {
        let mut models = Vec::new();
        for t in configured {
            let usb = t
                .usb
                .iter()
                .map(|u| UsbMatch::parse(u))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("token {:?}: {e}", t.name))?;
            models.push(TokenModel {
                name: t.name.clone(),
                usb,
                modules: vec![t.module.clone()],
            });
        }
        models.extend(BUILTIN_TOKENS.iter().map(|b| TokenModel {
            name: b.name.into(),
            usb: b.usb.to_vec(),
            modules: b.modules.iter().map(PathBuf::from).collect(),
        }));
        Ok(TokenTable { models })
    }

    /// The model a USB device belongs to, if kyso knows it.
    pub fn lookup(&self, vendor: u16, product: u16) -> Option<&TokenModel> {
        self.models
            .iter()
            .find(|m| m.usb.iter().any(|u| u.matches(vendor, product)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_found() {
        let t = TokenTable::new(&[]).unwrap();
        assert_eq!(t.lookup(0x096e, 0x080a).unwrap().name, "Feitian ePass2003");
        assert_eq!(
            t.lookup(0x0529, 0x0620).unwrap().modules[0],
            PathBuf::from("/usr/lib/libeToken.so")
        );
        assert_eq!(t.lookup(0x25dd, 0x0001).unwrap().name, "Bit4id");
        assert!(t.lookup(0x1d6b, 0x0002).is_none());
    }

    #[test]
    fn configured_entries_take_precedence() {
        let t = TokenTable::new(&[TokenConfig {
            name: "Test ePass2003".into(),
            usb: vec!["096e:0807".into()],
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
        }])
        .unwrap();
        let m = t.lookup(0x096e, 0x0807).unwrap();
        assert_eq!(m.name, "Test ePass2003");
        assert_eq!(
            m.modules,
            [PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")]
        );
        assert_eq!(t.lookup(0x096e, 0x080a).unwrap().name, "Feitian ePass2003");
    }

    #[test]
    fn malformed_ids_name_the_entry() {
        let err = TokenTable::new(&[TokenConfig {
            name: "Broken".into(),
            usb: vec!["96e-0807".into()],
            module: "/m.so".into(),
        }])
        .unwrap_err();
        assert!(err.contains("Broken"), "{err}");
    }
}
