//! OpenSC's pkcs11-tool, a real consumer, through the shim: listing, signing (checked with
//! openssl against the CA-issued certificate) and its self-test, compared with SoftHSM2 direct.

use std::fs;
use std::path::Path;

use kyso_tests::util::{pkcs11_tool, Output};
use kyso_tests::{shim_path, Daemon, Fixture, LABEL_A, LABEL_B, USER_PIN};

/// `pkcs11-tool` through the shim at `daemon`'s socket.
fn via_shim(daemon: &Daemon, args: &[&str]) -> Output {
    std::env::set_var("KYSO_SOCKET", daemon.socket());
    pkcs11_tool(&shim_path(), args)
}

/// `pkcs11-tool` on SoftHSM2 directly.
fn direct(fx: &Fixture, args: &[&str]) -> Output {
    std::env::set_var("SOFTHSM2_CONF", fx.softhsm_conf());
    pkcs11_tool(fx.softhsm_module(), args)
}

/// Lines that name slots (their IDs are kyso's own, not SoftHSM2's) removed.
fn normalise(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("Using slot") && !l.starts_with("Slot "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The blocks of an object listing (each starts at an unindented line), sorted.
fn object_blocks(listing: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in normalise(listing).lines() {
        if !line.starts_with(' ') || blocks.is_empty() {
            blocks.push(String::new());
        }
        let b = blocks.last_mut().expect("a block");
        b.push_str(line);
        b.push('\n');
    }
    blocks.sort();
    blocks
}

/// (field, value) lines of the token described in a `-L` listing with serial `serial`.
fn token_fields(listing: &str, serial: &str) -> Vec<(String, String)> {
    let mut block: Vec<(String, String)> = Vec::new();
    for line in listing.lines() {
        if line.starts_with("Slot ") {
            if block.iter().any(|(k, v)| k == "serial num" && v == serial) {
                break;
            }
            block.clear();
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            block.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    assert!(
        block.iter().any(|(k, v)| k == "serial num" && v == serial),
        "no token with serial {serial} in:\n{listing}"
    );
    // Flags may legitimately differ (kyso can add CKF_PROTECTED_AUTHENTICATION_PATH).
    block.retain(|(k, _)| k != "token flags");
    block
}

#[test]
fn lists_every_token_with_its_serial() {
    let fx = Fixture::with_second_token();
    let serial_b = fx.serial_b().expect("second token").to_string();
    let d = direct(&fx, &["-L"]);
    assert!(d.status.success(), "{}", d.text());

    let daemon = Daemon::start(&fx);
    let out = via_shim(&daemon, &["-L"]);
    assert!(out.status.success(), "{}", out.text());
    assert!(
        out.stdout
            .contains(&format!("token label        : {LABEL_A}")),
        "{}",
        out.text()
    );
    assert!(
        out.stdout
            .contains(&format!("token label        : {LABEL_B}")),
        "{}",
        out.text()
    );
    for serial in [fx.serial_a(), serial_b.as_str()] {
        assert!(
            out.stdout
                .contains(&format!("serial num         : {serial}")),
            "{}",
            out.text()
        );
        assert_eq!(
            token_fields(&out.stdout, serial),
            token_fields(&d.stdout, serial)
        );
    }
    // One slot per token: SoftHSM2's spare uninitialised slot is not kyso's business.
    assert_eq!(
        out.stdout.matches("\nSlot ").count() + usize::from(out.stdout.starts_with("Slot ")),
        2
    );
    assert!(!out.stdout.contains("uninitialized"), "{}", out.text());
}

#[test]
fn object_listing_matches_softhsm() {
    let fx = Fixture::new();
    let token = ["--token-label", LABEL_A];
    let public = [&token[..], &["-O"]].concat();
    let private = [&token[..], &["-O", "--login", "--pin", USER_PIN]].concat();
    let d_pub = direct(&fx, &public);
    let d_priv = direct(&fx, &private);
    assert!(d_pub.status.success() && d_priv.status.success());
    assert!(!d_pub.stdout.contains("Private Key Object"));
    assert_eq!(d_priv.stdout.matches("Private Key Object").count(), 2);

    let daemon = Daemon::start(&fx);
    let s_pub = via_shim(&daemon, &public);
    assert!(s_pub.status.success(), "{}", s_pub.text());
    assert_eq!(object_blocks(&s_pub.stdout), object_blocks(&d_pub.stdout));
    let s_priv = via_shim(&daemon, &private);
    assert!(s_priv.status.success(), "{}", s_priv.text());
    assert_eq!(object_blocks(&s_priv.stdout), object_blocks(&d_priv.stdout));
}

#[test]
fn signature_verifies_with_openssl_against_the_certificate() {
    let fx = Fixture::new();
    let work = fx.subdir("sign");
    let doc = work.join("cong-van.txt");
    fs::write(&doc, "Cong van so 123/UBND-VP ve viec thu nghiem ky so.\n").unwrap();
    let sig = work.join("cong-van.sig");
    let direct_sig = work.join("direct.sig");
    let args = |out: &Path| -> Vec<String> {
        [
            "--token-label",
            LABEL_A,
            "--login",
            "--pin",
            USER_PIN,
            "--sign",
            "--id",
            "01",
            "-m",
            "SHA256-RSA-PKCS",
            "-i",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            doc.display().to_string(),
            "-o".into(),
            out.display().to_string(),
        ])
        .collect()
    };
    let d_args = args(&direct_sig);
    let d = direct(&fx, &d_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(d.status.success(), "{}", d.text());

    let daemon = Daemon::start(&fx);
    let s_args = args(&sig);
    let out = via_shim(
        &daemon,
        &s_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", out.text());
    let signature = fs::read(&sig).unwrap();
    assert_eq!(signature.len(), 256);
    assert_eq!(
        signature,
        fs::read(&direct_sig).unwrap(),
        "PKCS#1 v1.5 is deterministic"
    );

    let pubkey = work.join("cert-pub.pem");
    let x = kyso_tests::util::run(
        std::process::Command::new("openssl")
            .args(["x509", "-pubkey", "-noout", "-in"])
            .arg(fx.cert_pem(1))
            .arg("-out")
            .arg(&pubkey),
        std::time::Duration::from_secs(30),
    );
    assert!(x.status.success(), "{}", x.text());
    let v = kyso_tests::util::run(
        std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&pubkey)
            .arg("-signature")
            .arg(&sig)
            .arg(&doc),
        std::time::Duration::from_secs(30),
    );
    assert!(
        v.status.success() && v.stdout.contains("Verified OK"),
        "{}",
        v.text()
    );
    assert!(kyso_tests::util::openssl_verify_chain(
        &fx.ca_pem(),
        &fx.cert_pem(1)
    ));
}

#[test]
fn self_test_matches_softhsm() {
    let fx = Fixture::with_second_token();
    let test_a = [
        "--token-label",
        LABEL_A,
        "--login",
        "--pin",
        USER_PIN,
        "--test",
    ];
    let test_b = [
        "--token-label",
        LABEL_B,
        "--login",
        "--pin",
        USER_PIN,
        "--test",
    ];
    let d_a = direct(&fx, &test_a);
    let d_b = direct(&fx, &test_b);
    // What pkcs11-tool 0.23 reports on SoftHSM2 2.6.1 itself: token B (EC only) passes; on
    // token A its RSA-OAEP-with-label step gets CKR_ARGUMENTS_BAD from SoftHSM2 and it aborts.
    assert!(d_b.status.success(), "{}", d_b.text());
    assert!(d_b.stdout.contains("No errors"), "{}", d_b.text());
    assert!(d_a.stdout.contains("RSA-PKCS: OK"), "{}", d_a.text());

    let daemon = Daemon::start(&fx);
    let s_b = via_shim(&daemon, &test_b);
    assert!(s_b.status.success(), "{}", s_b.text());
    assert!(s_b.stdout.contains("No errors"), "{}", s_b.text());
    assert_eq!(normalise(&s_b.stdout), normalise(&d_b.stdout));
    assert_eq!(normalise(&s_b.stderr), normalise(&d_b.stderr));

    let s_a = via_shim(&daemon, &test_a);
    assert_eq!(s_a.status.code(), d_a.status.code(), "{}", s_a.text());
    assert_eq!(normalise(&s_a.stdout), normalise(&d_a.stdout));
    assert_eq!(normalise(&s_a.stderr), normalise(&d_a.stderr));
    for line in [
        "all 4 digest functions seem to work",
        "SHA256: OK",
        "RSA-PKCS: OK",
    ] {
        assert!(
            s_a.stdout.contains(line),
            "{line:?} missing:\n{}",
            s_a.text()
        );
    }
}
