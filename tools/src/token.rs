//! `kyso token status`: a token's PIN state, certificates and the next step in plain words.

use std::path::PathBuf;
use std::process::ExitCode;

use cryptoki_sys::{
    CKF_SO_PIN_COUNT_LOW, CKF_SO_PIN_FINAL_TRY, CKF_SO_PIN_LOCKED, CKF_SO_PIN_TO_BE_CHANGED,
    CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED,
    CKF_USER_PIN_TO_BE_CHANGED, CK_FLAGS,
};
use kyso_proto::{dates, CertificateStatus, TokenStatus};
use kyso_tools::kysod::Kysod;
use serde::Serialize;

/// Renewal needs at least this much validity left.
const RENEW_DAYS: i64 = 30;

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
}

fn diagnose<'a>(t: &'a TokenStatus, now: i64) -> Diagnosis<'a> {
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
        certificates: t.certificates.iter().map(|c| certificate(c, now)).collect(),
        next_steps: Vec::new(),
    };
    d.next_steps = next_steps(&d, &t.certificates, now);
    d
}

fn certificate(c: &CertificateStatus, now: i64) -> Certificate<'_> {
    Certificate {
        holder: &c.holder,
        class: &c.class,
        serial: &c.serial,
        id: &c.id,
        valid_from: dates::date(c.not_before),
        valid_until: dates::date(c.not_after),
        renew_by: dates::date(c.renew_by),
        expired: now >= c.not_after,
    }
}

fn next_steps(d: &Diagnosis<'_>, certs: &[CertificateStatus], now: i64) -> Vec<String> {
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
                "SO PIN at its final try: the helpdesk must be sure of the SO PIN before unlocking"
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
    for c in certs {
        if now >= c.not_after {
            steps.push(format!(
                "chứng thư số {} đã hết hạn / certificate {} ({}) expired on {}: it has no legal value; request a new one",
                c.serial, c.serial, c.holder, dates::date(c.not_after)
            ));
        } else if now >= c.renew_by - RENEW_DAYS * dates::DAY {
            steps.push(format!(
                "chứng thư số {} sắp hết hạn / certificate {} ({}) expires on {}: renew before {}",
                c.serial,
                c.serial,
                c.holder,
                dates::date(c.not_after),
                dates::date(c.renew_by)
            ));
        }
    }
    if steps.is_empty() {
        steps.push("không cần làm gì / nothing to do".into());
    }
    steps
}

pub fn status(socket: Option<PathBuf>, wanted: Option<&str>, json: bool) -> ExitCode {
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
    let all: Vec<Diagnosis<'_>> = chosen.iter().map(|t| diagnose(t, now)).collect();
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
        for c in &d.certificates {
            println!(
                "cert    {} [{}] valid {} – {}{}",
                c.holder,
                c.class,
                c.valid_from,
                c.valid_until,
                if c.expired { " EXPIRED" } else { "" }
            );
        }
        for s in &d.next_steps {
            println!("next    {s}");
        }
        println!();
    }
    ExitCode::SUCCESS
}
