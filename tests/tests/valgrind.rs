//! The shim inside a real host under valgrind's memcheck: OpenSC's pkcs11-tool lists tokens
//! and objects, signs and runs its self-test through `libkyso_pkcs11.so` while valgrind
//! watches. No invalid read or write, no use of uninitialised memory, and no leak (definite,
//! indirect or possible) may come from the shim; the suppressions in
//! `tests/valgrind/host.supp` cover only what is proven to be the host's own.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kyso_tests::util::{run, Output};
use kyso_tests::{repo_root, shim_path, Daemon, Fixture, LABEL_A, LABEL_B, USER_PIN};

/// Exit status valgrind gives when it found an error (none of pkcs11-tool's own).
const VALGRIND_ERROR: i32 = 99;

/// `pkcs11-tool --module <shim> ARGS` under memcheck; returns its output and valgrind's log.
fn under_valgrind(daemon: &Daemon, log: &Path, args: &[&str]) -> (Output, String) {
    let mut cmd = Command::new("valgrind");
    cmd.env("KYSO_SOCKET", daemon.socket())
        .arg("--tool=memcheck")
        .arg("--leak-check=full")
        .arg("--show-leak-kinds=definite,indirect,possible")
        .arg("--errors-for-leak-kinds=definite,indirect,possible")
        // Symbols of the shim even after pkcs11-tool unloads it, so a leak names its origin.
        .arg("--keep-debuginfo=yes")
        .arg("--num-callers=40")
        .arg(format!("--error-exitcode={VALGRIND_ERROR}"))
        .arg(format!(
            "--suppressions={}",
            repo_root().join("tests/valgrind/host.supp").display()
        ))
        .arg(format!("--log-file={}", log.display()))
        .arg("pkcs11-tool")
        .arg("--module")
        .arg(shim_path())
        .args(args);
    let out = run(&mut cmd, Duration::from_secs(180));
    let report = std::fs::read_to_string(log).expect("valgrind's log");
    (out, report)
}

/// Valgrind saw the shim loaded and reported nothing.
fn assert_clean(what: &str, out: &Output, report: &str) {
    assert_ne!(
        out.status.code(),
        Some(VALGRIND_ERROR),
        "{what}: valgrind found errors:\n{report}"
    );
    assert!(
        report.contains("ERROR SUMMARY: 0 errors"),
        "{what}:\n{report}"
    );
    for kind in ["definitely lost", "indirectly lost", "possibly lost"] {
        assert!(
            !report.contains(kind) || report.contains(&format!("{kind}: 0 bytes")),
            "{what}: {kind}:\n{report}"
        );
    }
    assert!(
        report.contains("pkcs11-tool --module") && report.contains("libkyso_pkcs11.so"),
        "{what}: not the shim under valgrind:\n{report}"
    );
}

#[test]
fn pkcs11_tool_through_the_shim_is_clean_under_valgrind() {
    let fx = Fixture::with_second_token();
    let daemon = Daemon::start(&fx);
    let work = fx.subdir("valgrind");
    let doc = work.join("doc.txt");
    std::fs::write(&doc, "Quyet dinh so 45/QD-UBND.\n").unwrap();
    let sig = work.join("doc.sig");
    let (doc, sig) = (doc.display().to_string(), sig.display().to_string());

    let (out, report) = under_valgrind(&daemon, &work.join("list.log"), &["-L"]);
    assert!(out.status.success(), "{}\n{report}", out.text());
    assert!(out.stdout.contains(LABEL_A) && out.stdout.contains(LABEL_B));
    assert_clean("-L", &out, &report);

    // Log in to a token: the arguments every later run starts with.
    let on = |label| vec!["--token-label", label, "--login", "--pin", USER_PIN];

    let objects = [on(LABEL_A), vec!["-O"]].concat();
    let (out, report) = under_valgrind(&daemon, &work.join("objects.log"), &objects);
    assert!(out.status.success(), "{}\n{report}", out.text());
    assert_eq!(out.stdout.matches("Private Key Object").count(), 2);
    assert_clean("-O", &out, &report);

    let rsa_sign = ["--sign", "--id", "01", "-m", "SHA256-RSA-PKCS"];
    let sign = [
        on(LABEL_A),
        rsa_sign.to_vec(),
        vec!["-i", doc.as_str(), "-o", sig.as_str()],
    ]
    .concat();
    let (out, report) = under_valgrind(&daemon, &work.join("sign.log"), &sign);
    assert!(out.status.success(), "{}\n{report}", out.text());
    let signature = std::fs::read(&sig).unwrap();
    assert_eq!(signature.len(), 256);
    assert!(kyso_tests::util::openssl_verify_sha256(
        &fx.cert_pem(1),
        &std::fs::read(&doc).unwrap(),
        &signature
    ));
    assert_clean("--sign", &out, &report);

    let self_test = [on(LABEL_B), vec!["--test"]].concat();
    let (out, report) = under_valgrind(&daemon, &work.join("test.log"), &self_test);
    assert!(out.status.success(), "{}\n{report}", out.text());
    assert!(out.stdout.contains("No errors"), "{}", out.text());
    assert_clean("--test", &out, &report);
}
