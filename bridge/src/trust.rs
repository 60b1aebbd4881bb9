//! Registering the bridge's CA where browsers look, and letting configured sites reach the
//! bridge through Chromium's local network access gate.
//!
//! - For the user: the NSS databases of Chromium (`~/.pki/nssdb`, made when missing) and of
//!   every Firefox profile (`~/.mozilla/firefox/*/`, with `cert9.db`), through `certutil`.
//! - As root: the system store (`/usr/local/share/ca-certificates/`, `update-ca-certificates`),
//!   Firefox's enterprise policy `Certificates.Install` naming that system copy (merged into
//!   the `policies.json` files Firefox reads), and the managed policy
//!   `LoopbackNetworkAllowedForUrls` of Chromium and Google Chrome.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cert::{self, CertPaths, CA_NAME};

/// The system store's copy of the CA.
const SYSTEM_CA: &str = "/usr/local/share/ca-certificates/kyso-bridge.crt";
/// Managed policy directories: Debian's Chromium and Google Chrome.
pub const POLICY_DIRS: [&str; 2] = [
    "/etc/chromium/policies/managed",
    "/etc/opt/chrome/policies/managed",
];
/// The policy file kyso writes in each.
pub const POLICY_FILE: &str = "kyso.json";
/// Firefox's enterprise policy files: the system-wide one (made when missing) and Debian's
/// firefox-esr's own (changed only when it exists).
pub const FIREFOX_POLICY_FILES: [&str; 2] = [
    "/etc/firefox/policies/policies.json",
    "/usr/lib/firefox-esr/distribution/policies.json",
];

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(transparent)]
    Cert(#[from] cert::CertError),
    #[error("{program} failed: {detail}")]
    Tool { program: String, detail: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HOME is not set")]
    NoHome,
    #[error("{path}: not a JSON policy file ({detail}); left as it is")]
    Policy { path: PathBuf, detail: String },
}

fn run(program: &str, args: &[&str]) -> Result<(), TrustError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| TrustError::Tool {
            program: program.into(),
            detail: format!("cannot start it ({e}); install libnss3-tools"),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TrustError::Tool {
            program: format!("{program} {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The NSS databases of the user whose home is `home`: Chromium's (made when missing) and each
/// Firefox profile's.
pub fn nss_databases(home: &Path) -> Vec<PathBuf> {
    let mut dbs = vec![home.join(".pki/nssdb")];
    for root in [
        home.join(".mozilla/firefox"),
        home.join("snap/firefox/common/.mozilla/firefox"),
    ] {
        if let Ok(entries) = std::fs::read_dir(&root) {
            let mut profiles: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("cert9.db").exists())
                .collect();
            profiles.sort();
            dbs.extend(profiles);
        }
    }
    dbs
}

fn remove_from_db(db: &Path) {
    let dir = format!("sql:{}", db.display());
    // One deletion per copy under the nickname; stops when none is left.
    for _ in 0..16 {
        if run("certutil", &["-D", "-d", &dir, "-n", CA_NAME]).is_err() {
            break;
        }
    }
}

fn add_to_db(db: &Path, ca: &Path) -> Result<(), TrustError> {
    if !db.join("cert9.db").exists() {
        std::fs::create_dir_all(db).map_err(|source| TrustError::Write {
            path: db.to_path_buf(),
            source,
        })?;
        run(
            "certutil",
            &[
                "-N",
                "-d",
                &format!("sql:{}", db.display()),
                "--empty-password",
            ],
        )?;
    }
    remove_from_db(db);
    run(
        "certutil",
        &[
            "-A",
            "-d",
            &format!("sql:{}", db.display()),
            "-n",
            CA_NAME,
            "-t",
            "C,,",
            "-i",
            &ca.display().to_string(),
        ],
    )
}

/// Whether this process runs as root (and so may change the system store and policies).
pub fn is_root() -> bool {
    // The effective uid, as the kernel reports it for this process.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Makes the certificate when there is none and registers the CA for the user whose home is
/// `home`; with `system` (root) also in the system store, and the browsers' policy is set to
/// `origins`. Returns what was done, one line each.
pub fn trust(
    bridge_dir: &Path,
    home: &Path,
    system: bool,
    origins: &[String],
) -> Result<Vec<String>, TrustError> {
    let (paths, _) = cert::ensure(bridge_dir)?;
    let mut done = vec![format!("CA: {}", paths.ca.display())];
    for db in nss_databases(home) {
        add_to_db(&db, &paths.ca)?;
        done.push(format!("NSS: {}", db.display()));
    }
    if system {
        if let Some(dir) = Path::new(SYSTEM_CA)
            .parent()
            .filter(|d| d.parent().is_some_and(Path::exists))
        {
            let _ = std::fs::create_dir_all(dir);
            std::fs::copy(&paths.ca, SYSTEM_CA).map_err(|source| TrustError::Write {
                path: SYSTEM_CA.into(),
                source,
            })?;
            if run("update-ca-certificates", &[]).is_ok() {
                done.push(format!("system store: {SYSTEM_CA}"));
            }
            let files = FIREFOX_POLICY_FILES.map(PathBuf::from);
            for p in firefox_policy_in(&files, Path::new(SYSTEM_CA), true)? {
                done.push(format!("Firefox policy: {}", p.display()));
            }
        }
        for p in write_browser_policy(origins)? {
            done.push(format!("policy: {}", p.display()));
        }
    }
    Ok(done)
}

/// Removes the CA from where [`trust`] put it and deletes the bridge's certificate files (the
/// next start makes a new CA, to be trusted again). `system`: the system store too (root).
pub fn untrust(bridge_dir: &Path, home: &Path, system: bool) -> Result<Vec<String>, TrustError> {
    let mut done = Vec::new();
    for db in nss_databases(home) {
        if db.join("cert9.db").exists() {
            remove_from_db(&db);
            done.push(format!("NSS: {}", db.display()));
        }
    }
    if system && Path::new(SYSTEM_CA).exists() {
        let _ = std::fs::remove_file(SYSTEM_CA);
        let _ = run("update-ca-certificates", &["--fresh"]);
        done.push(format!("system store: {SYSTEM_CA}"));
    }
    if system {
        let files = FIREFOX_POLICY_FILES.map(PathBuf::from);
        for p in firefox_policy_in(&files, Path::new(SYSTEM_CA), false)? {
            done.push(format!("Firefox policy: {}", p.display()));
        }
    }
    let paths = CertPaths::in_dir(bridge_dir);
    for f in [&paths.ca, &paths.cert, &paths.key] {
        if std::fs::remove_file(f).is_ok() {
            done.push(format!("removed {}", f.display()));
        }
    }
    Ok(done)
}

/// The managed policy letting `origins` reach the bridge on 127.0.0.1.
pub fn policy_json(origins: &[String]) -> String {
    let doc = serde_json::json!({ "LoopbackNetworkAllowedForUrls": origins });
    format!("{doc:#}\n")
}

/// Writes (or, with no origins, removes) kyso's policy file in each browser's managed policy
/// directory: always Chromium's, Chrome's when Chrome is installed. Needs root.
pub fn write_browser_policy(origins: &[String]) -> Result<Vec<PathBuf>, TrustError> {
    write_policy_in(&POLICY_DIRS.map(PathBuf::from), origins)
}

/// [`write_browser_policy`] for the given directories (the first is made when missing, the
/// others are used when their browser's `/etc` directory exists).
pub fn write_policy_in(dirs: &[PathBuf], origins: &[String]) -> Result<Vec<PathBuf>, TrustError> {
    let mut written = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let browser_etc = dir.ancestors().nth(2);
        if i > 0 && !browser_etc.is_some_and(Path::exists) {
            continue;
        }
        let file = dir.join(POLICY_FILE);
        if origins.is_empty() {
            if std::fs::remove_file(&file).is_ok() {
                written.push(file);
            }
            continue;
        }
        std::fs::create_dir_all(dir).map_err(|source| TrustError::Write {
            path: dir.clone(),
            source,
        })?;
        cert::write_file(&file, policy_json(origins).as_bytes(), 0o644)?;
        written.push(file);
    }
    Ok(written)
}

/// The policy directories of [`POLICY_DIRS`] under `root` instead of `/` (for tests).
pub fn policy_dirs_under(root: &Path) -> Vec<PathBuf> {
    POLICY_DIRS
        .iter()
        .map(|d| root.join(d.trim_start_matches('/')))
        .collect()
}

/// The configured origins Chromium's managed policy in `dir` (kyso's file there) does not list:
/// Chromium asks the user before letting those sites reach the bridge.
pub fn origins_missing_from_policy(dir: &Path, origins: &[String]) -> Vec<String> {
    let listed: Vec<String> = std::fs::read(dir.join(POLICY_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("LoopbackNetworkAllowedForUrls")?.as_array().map(|a| {
                a.iter()
                    .filter_map(|o| o.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default();
    origins
        .iter()
        .filter(|o| !listed.contains(o))
        .cloned()
        .collect()
}

/// Adds `ca` to (or, `install` false, removes it from) `Certificates.Install` in Firefox's
/// policy files, keeping every other policy: the first file is made when missing (starting
/// from the policies of the others, which Firefox stops reading once it exists), the others are
/// changed only when they exist. A file left with no policy is removed. Returns the files
/// changed.
pub fn firefox_policy_in(
    files: &[PathBuf],
    ca: &Path,
    install: bool,
) -> Result<Vec<PathBuf>, TrustError> {
    let ours = ca.display().to_string();
    let read = |file: &Path| -> Result<Option<serde_json::Value>, TrustError> {
        match std::fs::read(file) {
            Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .filter(serde_json::Value::is_object)
                .map(Some)
                .ok_or_else(|| TrustError::Policy {
                    path: file.to_path_buf(),
                    detail: "not a JSON object".into(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TrustError::Policy {
                path: file.to_path_buf(),
                detail: e.to_string(),
            }),
        }
    };
    let mut changed = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let mut doc = match read(file)? {
            Some(d) => d,
            None if i > 0 || !install => continue,
            None => {
                let mut seed = None;
                for other in &files[1..] {
                    if let Some(d) = read(other)? {
                        seed = Some(d);
                        break;
                    }
                }
                seed.unwrap_or_else(|| serde_json::json!({}))
            }
        };
        let before = doc.clone();
        let root = doc.as_object_mut().expect("checked to be an object");
        let policies = root
            .entry("policies")
            .or_insert_with(|| serde_json::json!({}));
        let Some(policies) = policies.as_object_mut() else {
            return Err(TrustError::Policy {
                path: file.clone(),
                detail: "\"policies\" is not an object".into(),
            });
        };
        let certificates = policies
            .entry("Certificates")
            .or_insert_with(|| serde_json::json!({}));
        let Some(certificates) = certificates.as_object_mut() else {
            return Err(TrustError::Policy {
                path: file.clone(),
                detail: "\"Certificates\" is not an object".into(),
            });
        };
        let list = certificates
            .entry("Install")
            .or_insert_with(|| serde_json::json!([]));
        let Some(list) = list.as_array_mut() else {
            return Err(TrustError::Policy {
                path: file.clone(),
                detail: "\"Certificates.Install\" is not a list".into(),
            });
        };
        list.retain(|p| p.as_str() != Some(ours.as_str()));
        if install {
            list.push(ours.clone().into());
        }
        if list.is_empty() {
            certificates.remove("Install");
        }
        if certificates.is_empty() {
            policies.remove("Certificates");
        }
        if doc == before {
            continue;
        }
        if doc["policies"].as_object().is_some_and(|p| p.is_empty())
            && doc.as_object().is_some_and(|d| d.len() == 1)
        {
            std::fs::remove_file(file).map_err(|source| TrustError::Write {
                path: file.clone(),
                source,
            })?;
        } else {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(|source| TrustError::Write {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            cert::write_file(file, format!("{doc:#}\n").as_bytes(), 0o644)?;
        }
        changed.push(file.clone());
    }
    Ok(changed)
}

/// The user's home directory.
pub fn home() -> Result<PathBuf, TrustError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or(TrustError::NoHome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_lists_the_origins_and_goes_with_none() {
        let dir = tempfile::tempdir().unwrap();
        let chromium = dir.path().join("etc/chromium/policies/managed");
        let chrome = dir.path().join("etc/opt/chrome/policies/managed");
        let dirs = [chromium.clone(), chrome.clone()];
        let written = write_policy_in(&dirs, &["https://vpdt.example.gov.vn".into()]).unwrap();
        assert_eq!(written, [chromium.join(POLICY_FILE)], "no Chrome installed");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(chromium.join(POLICY_FILE)).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"LoopbackNetworkAllowedForUrls": ["https://vpdt.example.gov.vn"]})
        );
        assert_eq!(
            origins_missing_from_policy(
                &chromium,
                &[
                    "https://vpdt.example.gov.vn".into(),
                    "https://x.example".into()
                ]
            ),
            ["https://x.example"]
        );
        std::fs::create_dir_all(dir.path().join("etc/opt/chrome")).unwrap();
        let written = write_policy_in(&dirs, &["https://a.example".into()]).unwrap();
        assert_eq!(written.len(), 2);
        write_policy_in(&dirs, &[]).unwrap();
        assert!(!chromium.join(POLICY_FILE).exists() && !chrome.join(POLICY_FILE).exists());
    }

    #[test]
    fn firefox_policy_is_merged_and_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc/firefox/policies/policies.json");
        let esr = dir
            .path()
            .join("usr/lib/firefox-esr/distribution/policies.json");
        let files = [etc.clone(), esr.clone()];
        let ca = dir.path().join("kyso-bridge.crt");
        let read = |f: &Path| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap()
        };
        // Debian's firefox-esr ships policies of its own: kept, in both files.
        std::fs::create_dir_all(esr.parent().unwrap()).unwrap();
        std::fs::write(
            &esr,
            r#"{"policies":{"DisableAppUpdate":true,"Certificates":{"Install":["/other/ca.pem"]}}}"#,
        )
        .unwrap();
        let changed = firefox_policy_in(&files, &ca, true).unwrap();
        assert_eq!(changed, files);
        let want = serde_json::json!({"policies":{"DisableAppUpdate":true,
            "Certificates":{"Install":["/other/ca.pem", ca.display().to_string()]}}});
        assert_eq!(read(&etc), want);
        assert_eq!(read(&esr), want);
        // Again: no duplicate, nothing changed.
        assert!(firefox_policy_in(&files, &ca, true).unwrap().is_empty());
        assert_eq!(read(&etc), want);
        // Taken back: the other policies stay.
        firefox_policy_in(&files, &ca, false).unwrap();
        let left = serde_json::json!({"policies":{"DisableAppUpdate":true,
            "Certificates":{"Install":["/other/ca.pem"]}}});
        assert_eq!(read(&etc), left);
        assert_eq!(read(&esr), left);

        // Without Firefox's own file: the system-wide one is made, and goes when emptied.
        std::fs::remove_file(&esr).unwrap();
        std::fs::remove_file(&etc).unwrap();
        firefox_policy_in(&files, &ca, true).unwrap();
        assert_eq!(
            read(&etc),
            serde_json::json!({"policies":{"Certificates":{"Install":[ca.display().to_string()]}}})
        );
        assert!(!esr.exists());
        firefox_policy_in(&files, &ca, false).unwrap();
        assert!(!etc.exists());

        // A file that is not JSON is left alone, with an error naming it.
        std::fs::write(&etc, "{ not json").unwrap();
        let e = firefox_policy_in(&files, &ca, true).unwrap_err();
        assert!(e.to_string().contains("policies.json"), "{e}");
        assert_eq!(std::fs::read_to_string(&etc).unwrap(), "{ not json");
    }

    #[test]
    fn trust_and_untrust_a_home() {
        if Command::new("certutil").arg("-H").output().is_err() {
            eprintln!("certutil missing: skipped");
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let state = home.path().join("state");
        let profile = home.path().join(".mozilla/firefox/abcd.default-esr");
        std::fs::create_dir_all(&profile).unwrap();
        run(
            "certutil",
            &[
                "-N",
                "-d",
                &format!("sql:{}", profile.display()),
                "--empty-password",
            ],
        )
        .unwrap();
        trust(&state, home.path(), false, &[]).unwrap();
        for db in [home.path().join(".pki/nssdb"), profile.clone()] {
            let out = Command::new("certutil")
                .args(["-L", "-d", &format!("sql:{}", db.display())])
                .output()
                .unwrap();
            let list = String::from_utf8_lossy(&out.stdout);
            assert!(list.contains(CA_NAME) && list.contains("C,,"), "{list}");
        }
        // Trusting again replaces, never duplicates.
        trust(&state, home.path(), false, &[]).unwrap();
        let out = Command::new("certutil")
            .args([
                "-L",
                "-d",
                &format!("sql:{}", home.path().join(".pki/nssdb").display()),
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .matches(CA_NAME)
                .count(),
            1
        );
        untrust(&state, home.path(), false).unwrap();
        let out = Command::new("certutil")
            .args(["-L", "-d", &format!("sql:{}", profile.display())])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains(CA_NAME));
        assert!(!state.join("ca.pem").exists());
    }
}
