//! The `kyso` command line against a running kysod: `kyso status` (table and JSON, with the
//! bridge up and down), `kyso udev-rules`, and `kyso bridge policy` following `[bridge] origins`.

use std::process::Command;

use kyso_proto::dates;
use kyso_tests::bridge::{bridge_config, bridge_pinentry, free_port, Bridge};
use kyso_tests::util::cert_time;
use kyso_tests::{repo_root, target_dir, Daemon, DaemonConfig, Fixture, LABEL_A};

fn kyso() -> Command {
    let path = target_dir().join("kyso");
    assert!(path.exists(), "{} not built", path.display());
    Command::new(path)
}

#[test]
fn status_lists_the_tokens_with_their_slot_ids() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);

    let out = kyso()
        .args(["status", "--json", "--socket"])
        .arg(daemon.socket())
        .output()
        .expect("run kyso status --json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens: Vec<kyso_proto::TokenStatus> =
        serde_json::from_slice(&out.stdout).expect("kyso status --json prints JSON");
    let a = tokens
        .iter()
        .find(|t| t.serial == fx.serial_a())
        .expect("fixture token listed");
    assert!(a.present);
    assert_eq!(a.label, LABEL_A);

    let out = kyso()
        .arg("status")
        .env("KYSO_SOCKET", daemon.socket())
        .output()
        .expect("run kyso status");
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.contains(fx.serial_a()))
        .unwrap_or_else(|| panic!("no row for the token in:\n{table}"));
    assert!(row.trim_start().starts_with(&a.slot.to_string()), "{row}");
    assert!(row.contains("yes") && row.contains(LABEL_A), "{row}");

    // The token's certificates, read when it arrived, with holder, class and dates.
    let personal = a
        .certificates
        .iter()
        .find(|c| c.id == "01")
        .unwrap_or_else(|| panic!("certificate 01 listed: {a:?}"));
    assert_eq!(personal.holder, "NGUYEN VAN A, UBND Tinh Demo");
    assert_eq!(personal.class, "personal");
    assert_eq!(personal.not_after, cert_time(&fx.cert_pem(1), "-enddate"));
    assert_eq!(personal.renew_by, personal.not_after - 30 * dates::DAY);
    assert!(a.certificates.iter().any(|c| c.id == "02"), "{a:?}");
    assert!(table.contains("PIN: ok"), "{table}");
    let cert_row = table
        .lines()
        .find(|l| l.contains("cert 01"))
        .unwrap_or_else(|| panic!("no certificate row in:\n{table}"));
    assert!(
        cert_row.contains("personal") && cert_row.contains("renew by"),
        "{cert_row}"
    );
}

#[test]
fn expired_and_expiring_certificates_are_announced_when_the_token_arrives() {
    let fx = Fixture::with_policy_certs();
    let daemon = Daemon::start(&fx);
    let log = daemon.log();
    assert!(log.contains("expired on"), "{log}");
    assert!(log.contains("no legal value"), "{log}");
    assert!(log.contains("is not valid before"), "{log}");
    assert!(log.contains("too late to renew"), "{log}");
    let out = kyso()
        .args(["status", "--json", "--socket"])
        .arg(daemon.socket())
        .output()
        .expect("run kyso status --json");
    let tokens: Vec<kyso_proto::TokenStatus> = serde_json::from_slice(&out.stdout).unwrap();
    let a = tokens.iter().find(|t| t.serial == fx.serial_a()).unwrap();
    let ids: Vec<&str> = a.certificates.iter().map(|c| c.id.as_str()).collect();
    for id in ["01", "02", "03", "04", "05", "06"] {
        assert!(ids.contains(&id), "certificate {id} missing: {ids:?}");
    }
    let seal = a.certificates.iter().find(|c| c.id == "06").unwrap();
    assert_eq!(seal.class, "organisation");
}

#[test]
fn certificates_are_shown_with_one_standing_in_status_and_token_status() {
    let fx = Fixture::with_policy_certs();
    let daemon = Daemon::start(&fx);
    // Expired yesterday; expiring in 20 days, past the renewal cut-off; valid for two years.
    let expired = dates::date(cert_time(&fx.cert_pem(3), "-enddate"));
    let soon = dates::date(cert_time(&fx.cert_pem(5), "-enddate"));
    let run = |args: &[&str]| -> String {
        let out = kyso()
            .args(args)
            .arg("--socket")
            .arg(daemon.socket())
            .arg("--config")
            .arg(daemon.config_path())
            .output()
            .expect("run kyso");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    };
    let want = [
        ("01", "valid"),
        ("03", "expired"),
        ("05", "too_late_to_renew"),
        ("06", "valid"),
    ];

    // kyso status --json: kysod's fields as they were, and a status for each certificate.
    let json: serde_json::Value = serde_json::from_str(&run(&["status", "--json"])).unwrap();
    let token = json
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["serial"] == fx.serial_a())
        .expect("the token listed");
    let certs = token["certificates"].as_array().unwrap();
    for (id, status) in want {
        let c = certs.iter().find(|c| c["id"] == id).expect("certificate");
        assert_eq!(c["status"], status, "{c}");
        assert!(c["renew_by"].is_i64(), "{c}");
    }
    let table = run(&["status"]);
    let after = |id: &str| -> &str {
        let row = table
            .find(&format!("cert {id}"))
            .unwrap_or_else(|| panic!("no row for certificate {id}:\n{table}"));
        table[row..].lines().nth(1).unwrap_or_default()
    };
    assert!(
        after("05").contains(&format!(
            "too late to renew: request a new certificate before {soon}"
        )),
        "{table}"
    );
    assert!(
        after("03").contains(&format!("expired on {expired}: no legal value")),
        "{table}"
    );
    assert!(after("01").contains("expires on"), "{table}");

    // kyso token status: the same standings, and what to do about them.
    let json: serde_json::Value = serde_json::from_str(&run(&[
        "token",
        "status",
        "--json",
        "--token",
        fx.serial_a(),
    ]))
    .unwrap();
    let d = &json[0];
    for (id, status) in want {
        let c = d["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .expect("certificate");
        assert_eq!(c["status"], status, "{c}");
        assert_eq!(c["expired"], status == "expired", "{c}");
    }
    let steps = d["next_steps"].to_string();
    assert!(
        steps.contains(&format!(
            "too late to renew: request a new certificate before {soon}"
        )),
        "{steps}"
    );
    assert!(steps.contains("no legal value"), "{steps}");
    assert!(!steps.contains("renew by"), "{steps}");
    let text = run(&["token", "status", "--token", fx.serial_a()]);
    assert!(text.contains("quá hạn gia hạn"), "{text}");
}

#[test]
fn status_without_kysod_fails_clearly() {
    let fx = Fixture::new();
    let out = kyso()
        .args(["status", "--socket"])
        .arg(fx.dir().join("nothing.sock"))
        .output()
        .expect("run kyso status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach kysod"));
}

#[test]
fn udev_rules_match_the_checked_in_file() {
    let out = kyso()
        .arg("udev-rules")
        .output()
        .expect("run kyso udev-rules");
    assert!(out.status.success());
    let file = std::fs::read(repo_root().join("udev/70-kyso-tokens.rules")).expect("rules file");
    assert_eq!(
        out.stdout, file,
        "udev/70-kyso-tokens.rules differs from `kyso udev-rules`: regenerate it"
    );
}

#[test]
fn status_says_whether_the_bridge_is_up() {
    let fx = Fixture::new();
    let program = bridge_pinentry(&fx.subdir("pinentry"));
    let port = free_port();
    let daemon = Daemon::start_with(
        &fx,
        DaemonConfig {
            extra: bridge_config(&program, port, &[]),
            ..Default::default()
        },
    );
    // `kyso status` (its table) and `kyso bridge status [--json]`, whose exit says "up".
    let status = || {
        let out = kyso()
            .arg("status")
            .arg("--socket")
            .arg(daemon.socket())
            .arg("--config")
            .arg(daemon.config_path())
            .output()
            .expect("run kyso status");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let bridge_status = || {
        let out = kyso()
            .args(["bridge", "status", "--json", "--config"])
            .arg(daemon.config_path())
            .output()
            .expect("run kyso bridge status");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.success(), json)
    };
    let listen = format!("127.0.0.1:{port}");
    assert_eq!(
        bridge_status(),
        (false, serde_json::json!({ "listen": listen, "up": false }))
    );
    assert!(status().contains(&format!("not running ({listen})")));

    let bridge = Bridge::start(&daemon, port, &[]);
    assert_eq!(
        bridge_status(),
        (true, serde_json::json!({ "listen": listen, "up": true }))
    );
    assert!(status().contains(&format!("up at wss://{listen}")));

    drop(bridge);
    assert!(!bridge_status().0);
}

/// What the package's path unit runs when kysod.toml changes: the managed policy of Chromium
/// (and of Chrome, once installed) lists exactly the configured origins, and goes with them.
#[test]
fn the_browsers_policy_follows_the_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kysod.toml");
    let root = dir.path().join("root");
    let chromium = root.join("etc/chromium/policies/managed/kyso.json");
    let chrome = root.join("etc/opt/chrome/policies/managed/kyso.json");
    let policy = |origins: &[&str]| {
        let list: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
        std::fs::write(
            &config,
            format!("[bridge]\norigins = [{}]\n", list.join(", ")),
        )
        .unwrap();
        let out = kyso()
            .args(["bridge", "policy", "--config"])
            .arg(&config)
            .arg("--root")
            .arg(&root)
            .output()
            .expect("run kyso bridge policy");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let listed = |file: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
    };
    policy(&["https://vpdt.example.gov.vn"]);
    assert_eq!(
        listed(&chromium),
        serde_json::json!({"LoopbackNetworkAllowedForUrls": ["https://vpdt.example.gov.vn"]})
    );
    assert!(!chrome.exists(), "no Chrome installed");

    std::fs::create_dir_all(root.join("etc/opt/chrome")).unwrap();
    policy(&["https://vpdt.example.gov.vn", "https://hssk.example.gov.vn"]);
    for file in [&chromium, &chrome] {
        assert_eq!(
            listed(file),
            serde_json::json!({"LoopbackNetworkAllowedForUrls":
                ["https://vpdt.example.gov.vn", "https://hssk.example.gov.vn"]})
        );
    }

    policy(&[]);
    assert!(!chromium.exists() && !chrome.exists());
    policy(&["https://a.example.vn"]);
    std::fs::remove_file(&config).unwrap();
    let out = kyso()
        .args(["bridge", "policy", "--config"])
        .arg(&config)
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!chromium.exists(), "no configuration, no sites");

    // The package's path unit watches the file the service reads.
    let unit = |name: &str| {
        std::fs::read_to_string(repo_root().join("packaging/systemd").join(name)).unwrap()
    };
    assert!(unit("kyso-bridge-policy.path").contains("PathChanged=/etc/kyso/kysod.toml"));
    assert!(unit("kyso-bridge-policy.service")
        .contains("kyso bridge policy --config /etc/kyso/kysod.toml"));
}
