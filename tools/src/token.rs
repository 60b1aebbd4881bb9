//! `kyso token status`: a token's PIN state, certificates and the next step in plain words.

use std::path::PathBuf;
use std::process::ExitCode;

use cryptoki_sys::{
    CKF_SO_PIN_COUNT_LOW, CKF_SO_PIN_FINAL_TRY, CKF_SO_PIN_LOCKED, CKF_SO_PIN_TO_BE_CHANGED,
    CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED,
    CKF_USER_PIN_TO_BE_CHANGED, CK_FLAGS,
};
use kyso_proto::standing::{self, certificate_standing, Standing};
use kyso_proto::{dates, CertificateStatus, TokenStatus};
use kyso_tools::kysod::Kysod;
use serde::Serialize;

use crate::config::KysodConfig;

#[derive(Serialize)]
struct Diagnosis<'a> {
    model: &'a str,
    serial: &'a str,
    label: &'a str,
    manufacturer: &'a str,
    present: bool,
    slot: u64,
    user_pin_locked: bool,
    user_pin_count_low: bool,
    user_pin_final_try: bool,
    user_pin_to_be_changed: bool,
    so_pin_locked: bool,
    so_pin_count_low: bool,
    so_pin_final_try: bool,
    so_pin_to_be_changed: bool,
    certificates: Vec<Certificate<'a>>,
    /// What to do next, in plain words (Vietnamese / English).
    next_steps: Vec<String>,
}

#[derive(Serialize)]
struct Certificate<'a> {
    holder: &'a str,
    class: &'a str,
    serial: &'a str,
    id: &'a str,
    valid_from: String,
    valid_until: String,
    renew_by: String,
    expired: bool,
    /// Where the certificate stands now (see `kyso_proto::standing`).
    status: Standing,
}

/// How things stand for token `t` at `now`, with kysod's warning window of `warn_days`.
fn diagnose(t: &TokenStatus, now: i64, warn_days: u32) -> Diagnosis<'_> {
    let f = |bit: CK_FLAGS| t.present && t.flags & bit != 0;
    let mut d = Diagnosis {
        model: &t.model,
        serial: &t.serial,
        label: &t.label,
        manufacturer: &t.manufacturer,
        present: t.present,
        slot: t.slot,
        user_pin_locked: f(CKF_USER_PIN_LOCKED),
        user_pin_count_low: f(CKF_USER_PIN_COUNT_LOW),
        user_pin_final_try: f(CKF_USER_PIN_FINAL_TRY),
        user_pin_to_be_changed: f(CKF_USER_PIN_TO_BE_CHANGED),
        so_pin_locked: f(CKF_SO_PIN_LOCKED),
        so_pin_count_low: f(CKF_SO_PIN_COUNT_LOW),
        so_pin_final_try: f(CKF_SO_PIN_FINAL_TRY),
        so_pin_to_be_changed: f(CKF_SO_PIN_TO_BE_CHANGED),
        certificates: t
            .certificates
            .iter()
            .map(|c| certificate(c, now, warn_days))
            .collect(),
        next_steps: Vec::new(),
    };
    d.next_steps = next_steps(&d, &t.certificates);
    d
}

fn certificate(c: &CertificateStatus, now: i64, warn_days: u32) -> Certificate<'_> {
    let status = certificate_standing(c.not_after, now, warn_days);
    Certificate {
        holder: &c.holder,
        class: &c.class,
        serial: &c.serial,
        id: &c.id,
        valid_from: dates::date(c.not_before),
        valid_until: dates::date(c.not_after),
        renew_by: dates::date(standing::renew_by(c.not_after)),
        expired: status == Standing::Expired,
        status,
    }
}

fn next_steps(d: &Diagnosis<'_>, certs: &[CertificateStatus]) -> Vec<String> {
    let serial = d.serial;
    let mut steps = Vec::new();
    if !d.present {
        steps.push(format!(
            "thiết bị chưa được cắm / token not plugged in: plug in token {serial}"
        ));
        return steps;
    }
    if d.so_pin_locked {
        steps.push(format!(
            "PIN quản trị (SO) cũng đã bị khóa: thiết bị phải gửi về tổ chức chứng thực / SO PIN locked too: the device must go back to the certification authority; quote serial {serial}"
        ));
    } else if d.user_pin_locked {
        steps.push(format!(
            "PIN đã bị khóa: hãy liên hệ bộ phận hỗ trợ, cung cấp số sê-ri {serial} / user PIN locked: ask your helpdesk; quote serial {serial} (remotely: kyso recover request --token {serial} --out request.json)"
        ));
        if d.so_pin_final_try {
            steps.push(
                "SO PIN at its final try: the helpdesk must be sure of the SO PIN before recovering"
                    .into(),
            );
        }
    } else if d.user_pin_final_try {
        steps.push("còn 1 lần thử PIN / one PIN try left: a wrong PIN locks the token; if unsure of the PIN, ask your helpdesk first".into());
    } else if d.user_pin_count_low {
        steps.push(
            "đã nhập sai PIN / a wrong PIN was entered: few tries are left, type carefully".into(),
        );
    }
    if d.user_pin_to_be_changed && !d.user_pin_locked {
        steps.push("hãy đổi PIN / change your PIN: kyso pin change".into());
    }
    for (c, shown) in certs.iter().zip(&d.certificates) {
        if shown.status != Standing::Valid {
            steps.push(format!(
                "chứng thư số {serial} ({holder}): {vi} / certificate {serial} ({holder}): {en}",
                serial = c.serial,
                holder = c.holder,
                vi = shown.status.vietnamese(c.not_after),
                en = shown.status.english(c.not_after),
            ));
        }
    }
    if steps.is_empty() {
        steps.push("không cần làm gì / nothing to do".into());
    }
    steps
}

pub fn status(
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
    wanted: Option<&str>,
    json: bool,
) -> ExitCode {
    let warn_days = match KysodConfig::read(config) {
        Ok(c) => c.warn_days,
        Err(e) => {
            eprintln!("kyso: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tokens = match Kysod::connect(socket).and_then(|mut k| k.tokens()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("kyso: {e}");
            return ExitCode::FAILURE;
        }
    };
    let chosen: Vec<&TokenStatus> = tokens
        .iter()
        .filter(|t| wanted.is_none_or(|w| t.serial == w || t.label == w))
        .collect();
    if let (Some(w), true) = (wanted, chosen.is_empty()) {
        eprintln!("kyso: kysod knows no token {w}");
        return ExitCode::FAILURE;
    }
    let now = dates::now();
    let all: Vec<Diagnosis<'_>> = chosen.iter().map(|t| diagnose(t, now, warn_days)).collect();
    if json {
        match serde_json::to_string_pretty(&all) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("kyso: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    if all.is_empty() {
        println!("no tokens");
    }
    for (d, t) in all.iter().zip(&chosen) {
        println!("token   {} ({})", d.label, d.model);
        println!("serial  {}", d.serial);
        println!(
            "PIN     {}",
            if d.present {
                crate::pin_state(t.flags)
            } else {
                "(not plugged in)".into()
            }
        );
        for (c, cert) in d.certificates.iter().zip(&t.certificates) {
            println!(
                "cert    {} [{}] valid {} – {}",
                c.holder, c.class, c.valid_from, c.valid_until,
            );
            println!("        {}", c.status.text(cert.not_after));
        }
        for s in &d.next_steps {
            println!("next    {s}");
        }
        println!();
    }
    ExitCode::SUCCESS
}
