//! kysod's own directories and files: a directory is used only when it is kysod's alone, and
//! a file is replaced whole through a temporary of an unpredictable name, created without
//! following links, so nothing planted in a directory can redirect a write.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (mode 0700) if missing, and checks that it is a directory of this user that
/// nobody else may write: not a link, owned by the running user, no write bit for group or
/// others. Returns a message for a person otherwise.
pub fn private_dir(dir: &Path, what: &str) -> Result<(), String> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create the {what} {}: {e}", dir.display()))?;
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot read the {what} {}: {e}", dir.display()))?;
    let uid = nix::unistd::getuid().as_raw();
    if !meta.is_dir() {
        return Err(format!(
            "the {what} {} is not a directory (a link?); kysod will not use it",
            dir.display()
        ));
    }
    if meta.uid() != uid {
        return Err(format!(
            "the {what} {} belongs to uid {}, not to this user (uid {uid}); kysod will not use it",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "the {what} {} may be written by other users (mode {:o}); kysod will not use it: chmod go-w it",
            dir.display(),
            meta.permissions().mode() & 0o7777
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` (mode 0600) atomically: a new temporary file of a random name
/// beside it (`O_EXCL | O_NOFOLLOW`), synced, then renamed over `path`.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(|e| std::io::Error::other(e.to_string()))?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}", kyso_proto::hex::encode(&suffix)));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kysod-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let d = dir("shared");
        private_dir(&d, "state directory").unwrap();
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = private_dir(&d, "state directory").unwrap_err();
        assert!(err.contains("may be written by other users"), "{err}");
        let link = dir("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        let err = private_dir(&link, "state directory").unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_planted_link_does_not_redirect_a_write() {
        let d = dir("planted");
        private_dir(&d, "state directory").unwrap();
        let victim = d.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let target = d.join("slots.toml");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        replace(&target, b"new table").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new table");
        assert!(!std::fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink());
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&d);
    }
}
