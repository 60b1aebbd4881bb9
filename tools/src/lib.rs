//! What the `kyso` and `kyso-helpdesk` commands share: the connection to kysod.

#![forbid(unsafe_code)]

pub mod kysod;

/// Why an artefact could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Writes an artefact (request, grant, receipt) to `out`, never over an existing file, ending
/// in one line feed (a request comes from kysod with its own: it is written byte for byte, as
/// the grant answering it carries its digest).
pub fn write_new(out: &std::path::Path, bytes: &[u8]) -> Result<(), WriteError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|source| WriteError::Create {
            path: out.to_path_buf(),
            source,
        })?;
    let newline: &[u8] = if bytes.ends_with(b"\n") { b"" } else { b"\n" };
    f.write_all(bytes)
        .and_then(|()| f.write_all(newline))
        .map_err(|source| WriteError::Write {
            path: out.to_path_buf(),
            source,
        })
}

pub mod helpdesk {
    //! The helpdesk's side of token recovery (`kyso-helpdesk`).
    pub mod error;
    pub mod passphrase;
    pub mod store;
}
