//! What the `kyso` and `kyso-helpdesk` commands share: the connection to kysod.

#![forbid(unsafe_code)]

pub mod kysod;

/// Writes an artefact (request, grant, receipt) to `out`, never over an existing file, ending
/// in one line feed (a request comes from kysod with its own: it is written byte for byte, as
/// the grant answering it carries its digest).
pub fn write_new(out: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let newline: &[u8] = if bytes.ends_with(b"\n") { b"" } else { b"\n" };
    f.write_all(bytes)
        .and_then(|()| f.write_all(newline))
        .map_err(|e| format!("cannot write {}: {e}", out.display()))
}
pub mod helpdesk {
    //! The helpdesk's side of token recovery (`kyso-helpdesk`).
    pub mod passphrase;
    pub mod store;
}
