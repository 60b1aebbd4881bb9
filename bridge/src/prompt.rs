//! The bridge's own questions to the user — a site's consent, the certificate chooser, the
//! confirmation of a signature or a batch — asked through the same pinentry program kysod
//! uses, one at a time.

use std::path::PathBuf;

use kyso_daemon::pinentry::{self, Buttons, Choice, PinPrompt, PinentrySettings};
use parking_lot::Mutex;

use crate::consent::Answer;
use crate::kysod::TokenCert;
use crate::status::{Failure, Status};

const TITLE: &str = "kyso — Chữ ký số / Digital signature";

pub struct Prompts {
    program: PathBuf,
    /// One question on screen at a time.
    turn: Mutex<()>,
}

fn failed(e: pinentry::PinentryError) -> Failure {
    Failure::with(Status::Cancelled, format!("pinentry: {e}"))
}

fn day(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_else(|_| "?".into())
}

impl Prompts {
    pub fn new(program: PathBuf) -> Prompts {
        Prompts {
            program,
            turn: Mutex::new(()),
        }
    }

    fn settings(&self) -> PinentrySettings {
        PinentrySettings::new(self.program.clone())
    }

    /// "The site … wants to use your digital signature": once, always, or refuse.
    pub fn consent(&self, site: &str, operation: &str) -> Result<Answer, Failure> {
        let _turn = self.turn.lock();
        let prompt = PinPrompt {
            title: TITLE.into(),
            description: format!(
                "Trang web {site} muốn dùng chữ ký số của bạn ({operation}).\n\
                 The site {site} wants to use your digital signature ({operation})."
            ),
            ..Default::default()
        };
        let buttons = Buttons {
            ok: "Cho phép lần này / Allow once".into(),
            not_ok: "Luôn cho phép / Always allow".into(),
            cancel: "Từ chối / Refuse".into(),
        };
        match pinentry::choose(&self.settings(), &prompt, &buttons).map_err(failed)? {
            Choice::Ok => Ok(Answer::Once),
            Choice::NotOk => Ok(Answer::Always),
            Choice::Cancel => Ok(Answer::Refuse),
        }
    }

    /// The certificate the site may use, among several: each offered in turn.
    pub fn choose_certificate(&self, site: &str, certs: &[TokenCert]) -> Result<usize, Failure> {
        let _turn = self.turn.lock();
        let buttons = Buttons {
            ok: "Dùng chứng thư này / Use this one".into(),
            not_ok: "Chứng thư khác / Next".into(),
            cancel: "Hủy / Cancel".into(),
        };
        // Three rounds through the list at most: a prompt that keeps answering "next" ends.
        for round in 0..3 * certs.len() {
            let i = round % certs.len();
            let c = &certs[i];
            let prompt = PinPrompt {
                title: TITLE.into(),
                description: format!(
                    "Trang web {site} cần một chứng thư số. Chọn chứng thư {n}/{total}?\n\
                     The site {site} asks for a certificate. Use certificate {n} of {total}?\n\n\
                     {holder} ({class})\nThiết bị / token: {label} ({serial})\n\
                     Hiệu lực / valid: {from} – {to}",
                    n = i + 1,
                    total = certs.len(),
                    holder = c.holder,
                    class = c.class,
                    label = c.token_label,
                    serial = c.token_serial,
                    from = day(c.not_before),
                    to = day(c.not_after),
                ),
                ..Default::default()
            };
            match pinentry::choose(&self.settings(), &prompt, &buttons).map_err(failed)? {
                Choice::Ok => return Ok(i),
                Choice::NotOk => continue,
                Choice::Cancel => break,
            }
        }
        Err(Failure::new(Status::Cancelled))
    }

    /// Tells the user something that needs no answer (a signed document the server did not
    /// take); waits until the message is closed.
    pub fn notify(&self, site: &str, text: &str) {
        let _turn = self.turn.lock();
        let prompt = PinPrompt {
            title: TITLE.into(),
            description: format!("{site}:\n{text}"),
            ..Default::default()
        };
        if let Err(e) = pinentry::notify(&self.settings(), &prompt) {
            tracing::warn!("cannot show a message: {e}");
        }
    }

    /// Confirms a signature (or the first of a batch) for `site`; `what` says what is signed.
    pub fn confirm_signature(&self, site: &str, what: &str, holder: &str) -> Result<(), Failure> {
        let _turn = self.turn.lock();
        let prompt = PinPrompt {
            title: TITLE.into(),
            description: format!(
                "Trang web {site} yêu cầu ký số bằng chứng thư của {holder}:\n{what}\n\n\
                 The site {site} asks to sign with the certificate of {holder}:\n{what}"
            ),
            ..Default::default()
        };
        if pinentry::confirm(&self.settings(), &prompt).map_err(failed)? {
            Ok(())
        } else {
            Err(Failure::new(Status::Cancelled))
        }
    }
}
