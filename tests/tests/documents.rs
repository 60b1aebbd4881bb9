//! `kyso sign` and `kyso verify` against a running kysod and SoftHSM2 tokens, judged by the
//! independent validators: pyHanko and poppler's `pdfsig`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kyso_tests::bridge::bridge_pinentry;
use kyso_tests::pdf::{pdfsig_valid_count, pyhanko_validate, sample_pdf};
use kyso_tests::util::{run, Output};
use kyso_tests::{target_dir, toml_str, Daemon, DaemonConfig, Fixture};

fn kyso() -> Command {
    let path = target_dir().join("kyso");
    assert!(path.exists(), "{} not built", path.display());
    Command::new(path)
}

/// A kysod whose prompts go to a scripted pinentry (PIN given, confirmations answered "ok"),
/// and a kyso configuration file for the commands.
fn start(fx: &Fixture) -> (Daemon, PathBuf) {
    let prompts = fx.subdir("prompts");
    let pinentry = bridge_pinentry(&prompts);
    let daemon = Daemon::start_with(
        fx,
        DaemonConfig {
            extra: format!("pinentry = {}\n", toml_str(&pinentry.to_string_lossy())),
            ..DaemonConfig::default()
        },
    );
    let config = daemon.config_path().to_path_buf();
    (daemon, config)
}

fn sign(daemon: &Daemon, config: &Path, input: &Path, out: &Path, args: &[&str]) -> Output {
    run(
        kyso()
            .arg("sign")
            .arg(input)
            .arg("--out")
            .arg(out)
            .arg("--socket")
            .arg(daemon.socket())
            .arg("--config")
            .arg(config)
            .args(args),
        Duration::from_secs(120),
    )
}

fn signed_ok(daemon: &Daemon, config: &Path, input: &Path, out: &Path, args: &[&str]) {
    let o = sign(daemon, config, input, out, args);
    assert!(
        o.status.success(),
        "kyso sign {args:?} failed: {}{}\nkysod: {}",
        o.stdout,
        o.stderr,
        daemon.log()
    );
}

/// `kyso verify --json` of `pdf`, trusting the fixture's CA: the exit code and the report.
fn verify(fx: &Fixture, config: &Path, pdf: &Path, trust: bool) -> (i32, serde_json::Value) {
    let dir = fx.subdir(if trust { "trust" } else { "no-trust" });
    if trust {
        std::fs::copy(fx.ca_pem(), dir.join("ca.pem")).expect("copy the CA");
    }
    let o = run(
        kyso()
            .arg("verify")
            .arg(pdf)
            .arg("--json")
            .arg("--offline")
            .arg("--trust")
            .arg(&dir)
            .arg("--config")
            .arg(config),
        Duration::from_secs(60),
    );
    let report = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("kyso verify --json: {e}: {}{}", o.stdout, o.stderr));
    (o.status.code().unwrap_or(-1), report)
}

#[test]
fn signed_pdfs_validate_in_pyhanko_and_pdfsig() {
    let fx = Fixture::new();
    let (daemon, config) = start(&fx);
    let input = fx.dir().join("van-ban.pdf");
    std::fs::write(&input, sample_pdf(3, 0)).expect("write the PDF");
    let original = std::fs::read(&input).unwrap();

    // Every appearance, RSA and EC keys.
    for (key, appearance) in [
        ("01", "none"),
        ("02", "approved"),
        ("01", "copy"),
        ("02", "income"),
        ("01", "appendix"),
        ("02", "comment"),
        ("01", "plain"),
    ] {
        let out = fx.dir().join(format!("signed-{key}-{appearance}.pdf"));
        signed_ok(
            &daemon,
            &config,
            &input,
            &out,
            &["--key-id", key, "--appearance", appearance],
        );
        let signed = std::fs::read(&out).unwrap();
        assert!(
            signed.starts_with(&original),
            "the signature is an incremental update"
        );
        let sigs = pyhanko_validate(&out, &fx.ca_pem());
        assert_eq!(sigs.len(), 1, "{sigs:?}");
        assert!(
            sigs[0].intact && sigs[0].valid && sigs[0].trusted && sigs[0].whole,
            "key {key}, {appearance}: {sigs:?}"
        );
        assert_eq!(pdfsig_valid_count(&out), 1, "key {key}, {appearance}");

        let (code, report) = verify(&fx, &config, &out, true);
        let s = &report["signatures"][0];
        assert_eq!(s["intact"], true, "{report}");
        assert_eq!(s["covers"], "whole", "{report}");
        assert_eq!(s["trusted"], true, "{report}");
        assert_eq!(s["class"], "personal", "{report}");
        assert_eq!(s["certificate_valid_at_signing"], true, "{report}");
        // No revocation source for the demo CA: not checked, so not "valid".
        assert_eq!(s["revocation"], "not_checked", "{report}");
        assert_ne!(s["verdict"], "invalid", "{report}");
        assert_eq!(
            code, 1,
            "exit 0 only when every signature is valid: {report}"
        );
    }
    assert_eq!(
        std::fs::read(&input).unwrap(),
        original,
        "the input is unchanged"
    );
}

#[test]
fn leader_then_seal_keeps_both_signatures() {
    let fx = Fixture::with_policy_certs();
    let (daemon, config) = start(&fx);
    let input = fx.dir().join("cong-van.pdf");
    std::fs::write(&input, sample_pdf(2, 0)).expect("write the PDF");
    let approved = fx.dir().join("approved.pdf");
    let issued = fx.dir().join("issued.pdf");
    signed_ok(
        &daemon,
        &config,
        &input,
        &approved,
        &["--key-id", "01", "--appearance", "approved"],
    );
    signed_ok(
        &daemon,
        &config,
        &approved,
        &issued,
        &[
            "--key-id",
            "06",
            "--appearance",
            "issued",
            "--doc-number",
            "123/UBND-VP",
            "--issued-date",
            "2026-12-08",
        ],
    );
    let sigs = pyhanko_validate(&issued, &fx.ca_pem());
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    for s in &sigs {
        assert!(s.intact && s.valid && s.trusted, "{sigs:?}");
    }
    assert!(!sigs[0].whole && sigs[1].whole, "{sigs:?}");
    assert_eq!(
        pdfsig_valid_count(&issued),
        2,
        "{}",
        kyso_tests::pdf::pdfsig(&issued)
    );

    let (_, report) = verify(&fx, &config, &issued, true);
    let s = report["signatures"].as_array().expect("signatures");
    assert_eq!(s.len(), 2, "{report}");
    assert_eq!(s[0]["covers"], "revision", "{report}");
    assert_eq!(s[1]["covers"], "whole", "{report}");
    assert_eq!(s[0]["class"], "personal", "{report}");
    assert_eq!(s[1]["class"], "organisation", "{report}");
    assert!(s.iter().all(|s| s["intact"] == true), "{report}");
}

#[test]
fn verify_reports_a_tampered_byte_and_an_unknown_root() {
    let fx = Fixture::new();
    let (daemon, config) = start(&fx);
    let input = fx.dir().join("in.pdf");
    std::fs::write(&input, sample_pdf(1, 0)).expect("write the PDF");
    let out = fx.dir().join("signed.pdf");
    signed_ok(&daemon, &config, &input, &out, &["--key-id", "02"]);

    let (_, report) = verify(&fx, &config, &out, false);
    assert_eq!(report["signatures"][0]["trusted"], false, "{report}");
    assert_eq!(report["signatures"][0]["intact"], true, "{report}");
    assert_ne!(report["signatures"][0]["verdict"], "valid", "{report}");

    // A byte of the page text, inside the signed range.
    let mut bytes = std::fs::read(&out).unwrap();
    let at = memchr::memmem::find(&bytes, b"trang 1").expect("page text");
    bytes[at] = b'T';
    let tampered = fx.dir().join("tampered.pdf");
    std::fs::write(&tampered, &bytes).unwrap();
    let (code, report) = verify(&fx, &config, &tampered, true);
    assert_eq!(code, 1);
    assert_eq!(report["signatures"][0]["intact"], false, "{report}");
    assert_eq!(report["signatures"][0]["verdict"], "invalid", "{report}");
}

#[test]
fn bad_input_is_refused_and_the_input_never_overwritten() {
    let fx = Fixture::new();
    let (daemon, config) = start(&fx);
    let not_pdf = fx.dir().join("note.pdf");
    std::fs::write(&not_pdf, "just text, not a PDF\n").unwrap();
    let out = fx.dir().join("out.pdf");
    let o = sign(&daemon, &config, &not_pdf, &out, &["--key-id", "01"]);
    assert!(!o.status.success());
    assert!(o.stderr.contains("not a PDF"), "{}", o.stderr);
    assert!(!out.exists(), "nothing written");

    let input = fx.dir().join("in.pdf");
    std::fs::write(&input, sample_pdf(1, 0)).unwrap();
    let encrypted = fx.dir().join("encrypted.pdf");
    let q = run(
        Command::new("qpdf")
            .args(["--encrypt", "user", "owner", "256", "--"])
            .arg(&input)
            .arg(&encrypted),
        Duration::from_secs(30),
    );
    assert!(q.status.success(), "qpdf --encrypt: {}", q.stderr);
    let o = sign(&daemon, &config, &encrypted, &out, &["--key-id", "01"]);
    assert!(!o.status.success());
    assert!(o.stderr.contains("encrypted"), "{}", o.stderr);
    assert!(!out.exists());

    let bytes = std::fs::read(&input).unwrap();
    let truncated = fx.dir().join("truncated.pdf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let o = sign(&daemon, &config, &truncated, &out, &["--key-id", "01"]);
    assert!(!o.status.success(), "a truncated PDF is refused");
    assert!(!out.exists());

    let o = sign(&daemon, &config, &input, &input, &["--key-id", "01"]);
    assert!(!o.status.success());
    assert!(o.stderr.contains("never overwrites"), "{}", o.stderr);
    assert_eq!(std::fs::read(&input).unwrap(), bytes);
}
