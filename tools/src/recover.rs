//! `kyso recover request|apply`: the user's side of a remote recovery. kysod does the work
//! (it holds the request's key and talks to the token); this writes the files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cryptoki_sys::CKR_OK;
use kyso_proto::{Call, Reply};
use kyso_tools::kysod::Kysod;

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("kyso: {e}");
    ExitCode::FAILURE
}

fn reply_bytes(rv: u64, reply: Reply, what: &str) -> Result<Vec<u8>, String> {
    match (rv, reply) {
        (CKR_OK, Reply::Bytes(b)) => Ok(b),
        (_, Reply::Text(t)) => Err(t),
        (rv, _) => Err(format!("{what} failed: kysod answered 0x{rv:x}")),
    }
}

pub fn request(socket: Option<PathBuf>, wanted: Option<&str>, out: &Path) -> ExitCode {
    let run = || -> Result<String, String> {
        if out.exists() {
            return Err(format!("{} exists already", out.display()));
        }
        let mut kysod = Kysod::connect(socket)?;
        let token = kysod.choose_token(wanted)?;
        let r = kysod.call(
            Call::RecoveryRequest { slot: token.slot },
            Some(Duration::from_secs(60)),
        )?;
        let bytes = reply_bytes(r.rv, r.reply, "the request")?;
        kyso_tools::write_new(out, &bytes).map_err(|e| e.to_string())?;
        Ok(token.serial)
    };
    match run() {
        Ok(serial) => {
            println!(
                "Yêu cầu khôi phục thiết bị {serial} đã được ghi vào {out} — gửi tệp này cho bộ phận hỗ trợ.\nThe recovery request for token {serial} is in {out}: send it to your helpdesk (it is valid for 72 hours).",
                out = out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub fn apply(socket: Option<PathBuf>, grant: &Path, out: &Path, force: bool) -> ExitCode {
    let run = || -> Result<(), String> {
        if out.exists() {
            return Err(format!("{} exists already", out.display()));
        }
        let bytes =
            std::fs::read(grant).map_err(|e| format!("cannot read {}: {e}", grant.display()))?;
        let mut kysod = Kysod::connect(socket)?;
        // The user chooses the new PIN in kysod's prompt meanwhile: no time limit.
        let r = kysod.call(
            Call::RecoveryApply {
                grant: bytes,
                force,
            },
            None,
        )?;
        let receipt = reply_bytes(r.rv, r.reply, "applying the grant")?;
        kyso_tools::write_new(out, &receipt).map_err(|e| e.to_string())
    };
    match run() {
        Ok(()) => {
            println!(
                "Thiết bị đã được khôi phục với PIN mới của bạn. Gửi biên nhận {out} cho bộ phận hỗ trợ.\nThe token is recovered with your new PIN. Send the receipt {out} to your helpdesk.",
                out = out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
