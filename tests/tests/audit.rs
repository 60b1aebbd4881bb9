//! The audit journal: kysod records logins and signatures (with the SHA-256 of the signed
//! data and the signing program) in a hash chain that `kyso audit verify` checks, and any
//! edit or deletion is found.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use kyso_proto::hex;
use kyso_tests::util::{find_one, sha256};
use kyso_tests::{login, target_dir, Daemon, Fixture, Module, ID_RSA, USER_PIN, WRONG_PIN};
use serde_json::Value;

const DOCUMENT: &[u8] = b"Quyet dinh so 68/QD-UBND: van ban mau de ky so.\n";

fn verify(args: &[&std::ffi::OsStr]) -> Output {
    let path = target_dir().join("kyso");
    assert!(path.exists(), "{} not built", path.display());
    Command::new(path)
        .args(["audit", "verify"])
        .args(args)
        .output()
        .expect("run kyso audit verify")
}

fn verify_config(config: &Path) -> Output {
    verify(&["--config".as_ref(), config.as_os_str()])
}

fn entries(journal: &Path) -> Vec<Value> {
    std::fs::read_to_string(journal)
        .expect("read journal")
        .lines()
        .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
        .collect()
}

fn journal_of(fx: &Fixture) -> PathBuf {
    fx.subdir("kysod").join("state").join("audit.jsonl")
}

#[test]
fn signatures_and_logins_are_journaled_and_edits_are_found() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);

    let wrong = shim.session(fx.serial_a());
    assert!(login(&wrong, WRONG_PIN).is_err());
    drop(wrong);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    s.sign(&Mechanism::Sha256RsaPkcs, key, DOCUMENT)
        .expect("C_Sign");

    let out = verify_config(daemon.config_path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("chain intact"), "{stdout}");

    let journal = journal_of(&fx);
    let raw = std::fs::read(&journal).unwrap();
    assert!(
        !raw.windows(USER_PIN.len())
            .any(|w| w == USER_PIN.as_bytes()),
        "the PIN is in the journal"
    );
    // (WRONG_PIN is all zeros, which the first entry's `prev` is made of: not checked.)

    let all = entries(&journal);
    let me = std::fs::read_link("/proc/self/exe").unwrap();
    let me = me.to_string_lossy();
    let pid = std::process::id();
    assert!(all
        .iter()
        .any(|e| e["event"] == "token_present" && e["token_serial"] == fx.serial_a()));
    let failed = all
        .iter()
        .find(|e| e["event"] == "login_failed")
        .expect("failed login journaled");
    assert_eq!(failed["result"], "CKR_PIN_INCORRECT");
    let login = all
        .iter()
        .find(|e| e["event"] == "login")
        .expect("login journaled");
    assert_eq!(login["result"], "CKR_OK");
    assert_eq!(login["pid"], pid);
    let sig = all
        .iter()
        .find(|e| e["event"] == "signature")
        .expect("signature journaled");
    assert_eq!(sig["result"], "CKR_OK");
    assert_eq!(sig["data_sha256"], hex::encode(&sha256(DOCUMENT)));
    assert_eq!(sig["mechanism"], "0x40");
    assert_eq!(sig["application"], *me);
    assert_eq!(sig["pid"], pid);
    assert_eq!(sig["token_serial"], fx.serial_a());
    // The certificate matched to the key by the signing policy.
    assert_eq!(sig["class"], "personal");
    assert_eq!(sig["cert_subject"], "NGUYEN VAN A, UBND Tinh Demo");
    assert!(!sig["cert_serial"].as_str().unwrap().is_empty());
    assert!(sig["time"].as_str().unwrap().ends_with('Z'));
    // RFC 3339 UTC strings order as times do: the certificate is still valid.
    let not_after = sig["cert_not_after"].as_str().expect("cert_not_after");
    assert!(
        not_after.len() == 20 && not_after.ends_with('Z'),
        "{not_after}"
    );
    assert!(not_after > sig["time"].as_str().unwrap(), "{not_after}");
    assert!(all.len() >= 4, "{all:?}");

    // One character of a middle line changed: the next line is named.
    let text = String::from_utf8(raw.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let middle = lines.len() / 2;
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[middle] = edited[middle].replacen("\"pid\":", "\"pid\": ", 1);
    if edited[middle] == lines[middle] {
        edited[middle] = edited[middle].replacen("\"time\":\"2", "\"time\":\"3", 1);
    }
    assert_ne!(edited[middle], lines[middle]);
    std::fs::write(&journal, edited.join("\n") + "\n").unwrap();
    let out = verify_config(daemon.config_path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("line {}:", middle + 2)),
        "expected line {} named: {stdout}",
        middle + 2
    );

    // A line deleted.
    let mut deleted: Vec<&str> = lines.clone();
    deleted.remove(1);
    std::fs::write(&journal, deleted.join("\n") + "\n").unwrap();
    let out = verify(&["--journal".as_ref(), journal.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("line 2:"), "{stdout}");

    // Restored: intact again.
    std::fs::write(&journal, &raw).unwrap();
    assert_eq!(verify_config(daemon.config_path()).status.code(), Some(0));
}

#[test]
fn multi_part_signature_hashes_all_parts() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    let (a, b) = DOCUMENT.split_at(10);
    s.sign_init(&Mechanism::Sha256RsaPkcs, key)
        .expect("C_SignInit");
    s.sign_update(a).expect("C_SignUpdate");
    s.sign_update(b).expect("C_SignUpdate");
    s.sign_final().expect("C_SignFinal");

    let all = entries(&journal_of(&fx));
    let sig = all
        .iter()
        .find(|e| e["event"] == "signature")
        .expect("signature journaled");
    assert_eq!(sig["data_sha256"], hex::encode(&sha256(DOCUMENT)));
    assert_eq!(sig["result"], "CKR_OK");
    assert_eq!(
        all.iter().filter(|e| e["event"] == "signature").count(),
        1,
        "size query not journaled: {all:?}"
    );
    assert_eq!(verify_config(daemon.config_path()).status.code(), Some(0));
}

#[test]
fn missing_journal_exits_2() {
    let fx = Fixture::new();
    let out = verify(&[
        "--journal".as_ref(),
        fx.dir().join("none.jsonl").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no audit journal"));
}

#[test]
fn unwritable_journal_withholds_signatures_and_says_why() {
    let fx = Fixture::new();
    // A directory where the journal should be: every append fails.
    let journal = journal_of(&fx);
    std::fs::create_dir_all(&journal).unwrap();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    // Logging in goes on (its entry is lost, loudly); a signature that cannot be recorded is
    // not handed out.
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    let e = s
        .sign(&Mechanism::Sha256RsaPkcs, key, DOCUMENT)
        .expect_err("a signature was handed out without a journal entry");
    assert_eq!(
        kyso_tests::rv_of(&e),
        Some(cryptoki::error::RvError::FunctionFailed)
    );
    let log = daemon.log();
    assert!(
        log.contains("a signature could not be recorded in the audit journal; it is withheld"),
        "{log}"
    );
    assert!(log.contains("audit event NOT recorded"), "{log}");
    assert!(!log.contains(USER_PIN), "the PIN is in the log");
}

/// A signature's journal entry is on disk before the signature leaves kysod: traced, kysod's
/// thread writes the entry, syncs the journal (`fdatasync`), and only then answers on the
/// application's socket.
#[test]
fn a_signature_is_journaled_and_synced_before_it_is_handed_out() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);

    let trace = fx.subdir("strace").join("kysod.trace");
    let pid = daemon.pid().expect("kysod pid").to_string();
    let mut strace = Command::new("strace")
        .args([
            "-f",
            "-yy",
            "-s",
            "64",
            "-e",
            "trace=write,sendto,sendmsg,fdatasync,fsync",
        ])
        .arg("-o")
        .arg(&trace)
        .args(["-p", &pid])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("strace (apt-get install strace)");
    // strace says on stderr when it has attached to each of kysod's threads.
    let mut attached = String::new();
    let mut stderr = std::io::BufReader::new(strace.stderr.take().unwrap());
    while !attached.contains("attached") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap_or(0) == 0 {
            panic!("strace did not attach: {attached}");
        }
        attached.push_str(&line);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    s.sign(&Mechanism::Sha256RsaPkcs, key, DOCUMENT)
        .expect("C_Sign");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();

    let text = std::fs::read_to_string(&trace).expect("the trace");
    let lines: Vec<&str> = text.lines().collect();
    let entry = lines
        .iter()
        .position(|l| l.contains("audit.jsonl>") && l.contains("signature"))
        .unwrap_or_else(|| panic!("no journal write of the signature:\n{text}"));
    let synced = lines[entry..]
        .iter()
        .position(|l| l.contains("fdatasync(") && l.contains("audit.jsonl>"))
        .map(|i| entry + i)
        .unwrap_or_else(|| panic!("the journal was not synced:\n{text}"));
    let answered = lines[entry..]
        .iter()
        .position(|l| l.contains("UNIX-STREAM") && !l.contains("audit.jsonl>"))
        .map(|i| entry + i)
        .unwrap_or_else(|| panic!("no answer on the socket:\n{text}"));
    assert!(
        synced < answered,
        "the answer went out before the journal was synced:\n{}",
        lines[entry..=answered.max(synced)].join("\n")
    );
}

/// A same-user program deletes signatures from the journal and recomputes the chain, putting
/// the forged file in place of the one kysod writes. The chain alone looks intact, but the
/// head a report pinned is gone, and kysod notices the file changed under it: the next
/// signature is withheld and the journal says what happened.
#[test]
fn a_journal_rewritten_by_another_program_is_found_out() {
    use kyso_proto::audit::{line_hash, AuditEntry, GENESIS};

    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    for i in 0..6u8 {
        s.sign(&Mechanism::Sha256RsaPkcs, key, &[b'd', i])
            .expect("C_Sign");
    }
    let journal = journal_of(&fx);

    // The report pins the journal's head.
    let today = kyso_proto::dates::date(kyso_proto::dates::now());
    let out = Command::new(target_dir().join("kyso"))
        .args([
            "report", "--from", &today, "--to", &today, "--format", "json",
        ])
        .arg("--journal")
        .arg(&journal)
        .output()
        .expect("kyso report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let head = report["journal"]["head"].as_str().unwrap().to_string();
    assert_eq!(report["journal"]["entries"], entries(&journal).len());

    // Five signatures go, the chain is recomputed, the forgery replaces the file.
    let mut kept = Vec::new();
    let mut dropped = 0;
    for line in std::fs::read_to_string(&journal).unwrap().lines() {
        let e: AuditEntry = serde_json::from_str(line).unwrap();
        if e.event == kyso_proto::audit::AuditEvent::Signature && dropped < 5 {
            dropped += 1;
            continue;
        }
        kept.push(e);
    }
    let mut prev = GENESIS.to_string();
    let mut forged = String::new();
    for mut e in kept {
        e.prev = prev;
        let line = e.to_line().unwrap();
        prev = line_hash(line.as_bytes());
        forged.push_str(&line);
        forged.push('\n');
    }
    let tmp = journal.with_extension("forged");
    std::fs::write(&tmp, forged).unwrap();
    std::fs::rename(&tmp, &journal).unwrap();

    let plain = verify(&["--journal".as_ref(), journal.as_os_str()]);
    assert!(plain.status.success(), "the recomputed chain is intact");
    let pinned = verify(&[
        "--journal".as_ref(),
        journal.as_os_str(),
        "--head".as_ref(),
        head.as_ref(),
    ]);
    assert_eq!(
        pinned.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&pinned.stdout)
    );

    // kysod withholds the signature it can no longer record where it wrote, says why, and
    // goes on in the file now at the path after a journal_changed entry.
    let err = s
        .sign(&Mechanism::Sha256RsaPkcs, key, b"after the forgery")
        .expect_err("a signature kysod cannot record is withheld");
    assert_eq!(
        kyso_tests::rv_of(&err),
        Some(cryptoki::error::RvError::FunctionFailed),
        "{err}"
    );
    assert!(
        daemon.log().contains("changed by another program"),
        "{}",
        daemon.log()
    );
    s.sign(&Mechanism::Sha256RsaPkcs, key, b"next")
        .expect("signing goes on");
    let after = entries(&journal);
    let n = after.len();
    assert_eq!(
        after[n - 2]["event"],
        "journal_changed",
        "{:?}",
        &after[n - 2]
    );
    assert_eq!(after[n - 1]["event"], "signature");
}
