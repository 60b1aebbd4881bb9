//! Cryptographic operations: passed to the module with the application's buffer shapes, so
//! size queries and short buffers leave the operation running exactly as in process.

use cryptoki_sys as ck;
use kyso_proto::mechanism::Mechanism;
use kyso_proto::{Operation, OutBuf, Reply, Ulong};
use zeroize::Zeroize;

use std::sync::Arc;

use crate::audit::{operation_ended, SignTrack};
use crate::certs::SigningCert;
use crate::client::{Client, Session};
use crate::error::Rv;
use crate::module::Output;
use crate::policy::Verdict;
use crate::state::State;

/// Largest `C_GenerateRandom` served in one call.
const MAX_RANDOM: Ulong = 1 << 20;

pub fn init(
    d: &State,
    c: &Client,
    handle: Ulong,
    op: Operation,
    mechanism: &Mechanism,
    key: Option<Ulong>,
) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let key = match (op, key) {
        (Operation::Digest, _) => 0,
        (_, Some(k)) => c.key(s.token.slot, k)?,
        (_, None) => return Err(Rv(ck::CKR_ARGUMENTS_BAD)),
    };
    let cert = if matches!(op, Operation::Sign | Operation::SignRecover) {
        admit_signature(d, c, &s, mechanism.kind, key)?
    } else {
        None
    };
    s.token
        .module
        .operation_init(s.module_session, op, mechanism, key)?;
    if op == Operation::Sign {
        *s.signing() = Some(SignTrack::new(mechanism.kind, cert));
    }
    Ok(Reply::None)
}

/// The signing policy on a signature with the module key `key`: the certificate it judged
/// when the signature may go ahead, the application's error when not. Refusals are logged and
/// journaled; a signature that needs the user's word asks for it here.
fn admit_signature(
    d: &State,
    c: &Client,
    s: &Session,
    mechanism: Ulong,
    key: Ulong,
) -> Result<Option<SigningCert>, Rv> {
    let token = &s.token;
    // A key without a certificate (a device key) signs without a policy.
    let Some(facts) = token.signing_cert(s.module_session, key)? else {
        return Ok(None);
    };
    let settings = d.settings();
    let verdict = settings.policy.judge(&facts, crate::certs::now());
    let cert = SigningCert::new(&facts, settings.policy.class_of(&facts));
    let program = program_name(&c.program);
    let (confirm, warning) = match verdict {
        Verdict::Refuse(refusal) => {
            tracing::warn!(client = c.id, pid = c.pid, program = %program, token = %token.serial, cert_serial = %cert.serial, "{}", refusal.message());
            d.audit.refusal(
                &c.actor(),
                token.audit_ref(),
                mechanism,
                Some(&cert),
                refusal.rv(),
            );
            return Err(refusal.rv());
        }
        Verdict::Allow { warning, .. } => (false, warning),
        Verdict::Confirm { warning, .. } => (true, warning),
    };
    if let Some(standing) = warning {
        tracing::warn!(token = %token.serial, cert_serial = %cert.serial, "{}", standing.text(cert.not_after));
    }
    if confirm {
        if let Err(rv) = confirm_organisation(d, c, s, &cert, &program) {
            d.audit
                .refusal(&c.actor(), token.audit_ref(), mechanism, Some(&cert), rv);
            return Err(rv);
        }
    }
    tracing::debug!(client = c.id, token = %token.serial, cert_serial = %cert.serial, class = ?cert.class, "signature allowed by the policy");
    Ok(Some(cert))
}

fn program_name(program: &str) -> String {
    std::path::Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_string())
}

/// Asks the user to confirm a signature with an organisation's certificate (the seal).
fn confirm_organisation(
    d: &State,
    c: &Client,
    s: &Session,
    cert: &SigningCert,
    program: &str,
) -> Result<(), Rv> {
    let serial = &cert.serial;
    let holder = &cert.subject;
    let (site, site_en) = super::session::purpose_lines(c);
    let prompt = crate::pinentry::PinPrompt {
        title: "kyso — ký số tổ chức / organisation signature".into(),
        description: format!(
            "Ứng dụng {program} (pid {pid}) muốn ký bằng chứng thư số của tổ chức \"{holder}\" (số sê-ri {serial}).{site}\nĐồng ý ký?\n\nThe application {program} (pid {pid}) wants to sign with the organisation certificate \"{holder}\" (serial {serial}).{site_en}\nSign?",
            pid = c.pid,
        ),
        prompt: String::new(),
        error: None,
    };
    let settings =
        crate::pinentry::PinentrySettings::for_client(d.settings().pinentry.clone(), c.pid);
    match crate::pinentry::confirm(&settings, &prompt) {
        Ok(true) => {
            tracing::info!(client = c.id, pid = c.pid, program, token = %s.token.serial, cert_serial = %serial, "organisation signature confirmed by the user");
            Ok(())
        }
        Ok(false) => {
            tracing::warn!(client = c.id, pid = c.pid, program, token = %s.token.serial, cert_serial = %serial, "Người dùng từ chối ký bằng chứng thư số tổ chức / organisation signature declined by the user");
            Err(Rv(ck::CKR_FUNCTION_REJECTED))
        }
        Err(e) => {
            tracing::warn!(client = c.id, pid = c.pid, program, cert_serial = %serial, error = %e, "organisation signature: no confirmation from the pinentry; refused");
            Err(e.rv())
        }
    }
}

fn output(out: Output) -> (Rv, Reply) {
    (
        out.rv,
        Reply::Output {
            len: out.len,
            data: out.data,
        },
    )
}

fn failed(rv: Rv) -> (Rv, Reply) {
    (rv, Reply::None)
}

/// A `C_Sign` (`data` given) or `C_SignFinal` (`data` `None`) answered by the module: when it
/// ended the operation, the result goes to the journal. The journal is the record of what was
/// signed, so a signature it cannot record (the state directory is full or read-only) never
/// leaves kysod: the application gets `CKR_FUNCTION_FAILED` instead.
fn journal_signature(
    d: &State,
    c: &Client,
    s: &Session,
    data: Option<&[u8]>,
    out: OutBuf,
    mut done: Output,
) -> (Rv, Reply) {
    if !operation_ended(done.rv, out) {
        return output(done);
    }
    let Some(track) = s.signing().take() else {
        return output(done);
    };
    let signed = match data {
        Some(data) => track.single(data),
        None => track.multi(),
    };
    let recorded = d
        .audit
        .signature(&c.actor(), s.token.audit_ref(), signed, done.rv);
    if !recorded && done.rv == Rv::OK {
        done.data.zeroize();
        return failed(Rv(ck::CKR_FUNCTION_FAILED));
    }
    output(done)
}

pub fn operate(
    d: &State,
    c: &Client,
    handle: Ulong,
    op: Operation,
    data: &[u8],
    out: OutBuf,
) -> (Rv, Reply) {
    let s = match c.session(handle) {
        Ok(s) => s,
        Err(rv) => return failed(rv),
    };
    let done = s.token.module.operate(s.module_session, op, data, out);
    if op == Operation::Sign {
        return journal_signature(d, c, &s, Some(data), out, done);
    }
    output(done)
}

pub fn update(
    d: &State,
    c: &Client,
    handle: Ulong,
    op: Operation,
    data: &[u8],
    out: OutBuf,
) -> (Rv, Reply) {
    let s: Arc<Session> = match c.session(handle) {
        Ok(s) => s,
        Err(rv) => return failed(rv),
    };
    let done = s.token.module.update(s.module_session, op, data, out);
    if op == Operation::Sign {
        let mut track = s.signing();
        if done.rv == Rv::OK {
            if let Some(t) = track.as_mut() {
                t.update(data);
            }
        } else if let Some(t) = track.take() {
            // A failed part ends the operation: journaled as a failed signature.
            drop(track);
            d.audit
                .signature(&c.actor(), s.token.audit_ref(), t.failed(), done.rv);
        }
    }
    output(done)
}

pub fn finish(d: &State, c: &Client, handle: Ulong, op: Operation, out: OutBuf) -> (Rv, Reply) {
    let s = match c.session(handle) {
        Ok(s) => s,
        Err(rv) => return failed(rv),
    };
    let done = s.token.module.finish(s.module_session, op, out);
    if op == Operation::Sign {
        return journal_signature(d, c, &s, None, out, done);
    }
    output(done)
}

pub fn verify(c: &Client, handle: Ulong, data: &[u8], signature: &[u8]) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    s.token.module.verify(s.module_session, data, signature)?;
    Ok(Reply::None)
}

pub fn verify_final(c: &Client, handle: Ulong, signature: &[u8]) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    s.token.module.verify_final(s.module_session, signature)?;
    Ok(Reply::None)
}

pub fn digest_key(c: &Client, handle: Ulong, key: Ulong) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let key = c.key(s.token.slot, key)?;
    s.token.module.digest_key(s.module_session, key)?;
    Ok(Reply::None)
}

pub fn random(c: &Client, handle: Ulong, len: Ulong) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    if len > MAX_RANDOM {
        return Err(Rv(ck::CKR_ARGUMENTS_BAD));
    }
    Ok(Reply::Bytes(
        s.token
            .module
            .generate_random(s.module_session, len as usize)?,
    ))
}

pub fn seed(c: &Client, handle: Ulong, seed: &[u8]) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    s.token.module.seed_random(s.module_session, seed)?;
    Ok(Reply::None)
}
