//! Stable slot ids: each token identity (module + token serial) keeps the slot id it was first
//! given, across re-plugging and daemon restarts, because Java SunPKCS11 and NSS bind to slot
//! ids. The table lives in `state_dir/slots.toml`.

use std::path::{Path, PathBuf};

use kyso_proto::Ulong;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SlotRecord {
    id: Ulong,
    module: String,
    serial: String,
    label: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SlotFile {
    #[serde(default, rename = "slot")]
    slots: Vec<SlotRecord>,
}

/// The persisted slot table.
pub struct SlotTable {
    path: PathBuf,
    file: SlotFile,
}

impl SlotTable {
    /// Opens the table in `state_dir`. A damaged file is set aside (`slots.toml.damaged`) so
    /// that nothing is lost, and a fresh table is started.
    pub fn open(state_dir: &Path) -> SlotTable {
        let path = state_dir.join("slots.toml");
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => match toml::from_str::<SlotFile>(&text) {
                Ok(file) => file,
                Err(e) => {
                    let aside = state_dir.join("slots.toml.damaged");
                    tracing::error!(path = %path.display(), error = %e, "slot table is damaged; keeping it as {} and starting afresh", aside.display());
                    let _ = std::fs::rename(&path, &aside);
                    SlotFile::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SlotFile::default(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the slot table; slot ids may change");
                SlotFile::default()
            }
        };
        SlotTable { path, file }
    }

    /// The slot id of a token, allocating and persisting a new one on first sight. Tokens are
    /// identified by module and serial; a token without a serial by module and label.
    pub fn slot_for(&mut self, module: &str, serial: &str, label: &str) -> Ulong {
        let found = self.file.slots.iter().find(|r| {
            r.module == module
                && if serial.is_empty() {
                    r.serial.is_empty() && r.label == label
                } else {
                    r.serial == serial
                }
        });
        if let Some(r) = found {
            return r.id;
        }
        let id = self.file.slots.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        self.file.slots.push(SlotRecord {
            id,
            module: module.into(),
            serial: serial.into(),
            label: label.into(),
        });
        if let Err(e) = self.save() {
            tracing::error!(path = %self.path.display(), error = %e, "cannot save the slot table; slot {id} may change after a restart");
        }
        id
    }

    /// Writes the table atomically (see [`crate::files::replace`]).
    fn save(&self) -> std::io::Result<()> {
        let text = toml::to_string(&self.file).map_err(std::io::Error::other)?;
        let file = format!("# kysod's stable slot ids; one entry per token ever seen.\n{text}");
        crate::files::replace(&self.path, file.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).unwrap();
        let dir = std::env::temp_dir().join(format!("kyso-slots-{}", u64::from_le_bytes(bytes)));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn ids_survive_reopening() {
        let dir = tempdir();
        let mut t = SlotTable::open(&dir);
        let a = t.slot_for("/m.so", "A1", "A");
        let b = t.slot_for("/m.so", "B2", "B");
        assert_ne!(a, b);
        assert_eq!(t.slot_for("/m.so", "A1", "renamed"), a);
        let mut again = SlotTable::open(&dir);
        assert_eq!(again.slot_for("/m.so", "B2", "B"), b);
        assert_eq!(again.slot_for("/other.so", "A1", "A"), b + 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn damaged_table_is_set_aside() {
        let dir = tempdir();
        std::fs::write(dir.join("slots.toml"), "[[slot]]\nid = \"x\"\n").unwrap();
        let mut t = SlotTable::open(&dir);
        assert_eq!(t.slot_for("/m.so", "S", "L"), 1);
        assert!(dir.join("slots.toml.damaged").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
