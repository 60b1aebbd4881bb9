//! The `kyso` command line against a running kysod: `kyso status` (table and JSON) and
//! `kyso udev-rules`.

use std::process::Command;

use kyso_tests::{repo_root, target_dir, Daemon, Fixture, LABEL_A};

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
