//! Cryptographic operations: passed to the module with the application's buffer shapes, so
//! size queries and short buffers leave the operation running exactly as in process.

use cryptoki_sys as ck;
use kyso_proto::mechanism::Mechanism;
use kyso_proto::{Operation, OutBuf, Reply, Ulong};
use zeroize::Zeroize;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::calls::audit_hooks;
use crate::client::{Client, Session};
use crate::error::Rv;
use crate::module::{Module, Output};
use crate::policy::SigningCert;
use crate::prepared::Pair;
use crate::server::Daemon;

/// Largest `C_GenerateRandom` served in one call.
const MAX_RANDOM: Ulong = 1 << 20;

pub fn init(
    d: &Daemon,
    c: &Client,
    handle: Ulong,
    op: Operation,
    mechanism: &Mechanism,
    key: Option<Ulong>,
) -> Result<Reply, Rv> {
    let (s, key, cert) = admit(d, c, handle, op, mechanism, key)?;
    s.token
        .module
        .operation_init(s.module_session, op, mechanism, key)?;
    if op != Operation::Sign {
        s.other_operation.store(true, Ordering::Relaxed);
    }
    crate::calls::audit_hooks::sign_started(&s, op, mechanism.kind, cert);
    Ok(Reply::None)
}

/// An operation other than a signature ended on `s` (see `Session::other_operation`).
fn other_ended(s: &Session, op: Operation, rv: Rv, out: OutBuf) {
    if op != Operation::Sign && crate::audit::operation_ended(rv, out) {
        s.other_operation.store(false, Ordering::Relaxed);
    }
}

/// What an operation needs before the module's init: the client's session, the key's module
/// handle, and for signatures the signing policy's verdict (with the certificate it judged).
fn admit(
    d: &Daemon,
    c: &Client,
    handle: Ulong,
    op: Operation,
    mechanism: &Mechanism,
    key: Option<Ulong>,
) -> Result<(Arc<Session>, Ulong, Option<SigningCert>), Rv> {
    let s = c.session(handle)?;
    let key = match (op, key) {
        (Operation::Digest, _) => 0,
        (_, Some(k)) => c.key(s.token.slot, k)?,
        (_, None) => return Err(Rv(ck::CKR_ARGUMENTS_BAD)),
    };
    // The signing policy (certificate validity, class, confirmation) before every signature.
    let mut cert = None;
    if matches!(op, Operation::Sign | Operation::SignRecover) {
        let settings = d.settings();
        let checked = settings
            .policy
            .check_signature(&settings.pinentry, c, &s, key);
        if let Err(rv) = checked.verdict {
            d.audit
                .refusal(c, &s.token, mechanism.kind, checked.cert.as_ref(), rv);
            return Err(rv);
        }
        cert = checked.cert;
    }
    Ok((s, key, cert))
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

/// A signature the audit journal could not record: withheld (see
/// [`audit_hooks::sign_operated`]).
fn unrecorded(mut done: Output) -> (Rv, Reply) {
    done.data.zeroize();
    failed(Rv(ck::CKR_FUNCTION_FAILED))
}

fn failed(rv: Rv) -> (Rv, Reply) {
    (rv, Reply::None)
}

pub fn operate(
    d: &Daemon,
    c: &Client,
    handle: Ulong,
    op: Operation,
    data: &[u8],
    out: OutBuf,
) -> (Rv, Reply) {
    match c.session(handle) {
        Ok(s) => {
            let done = s.token.module.operate(s.module_session, op, data, out);
            other_ended(&s, op, done.rv, out);
            if !audit_hooks::sign_operated(d, c, &s, op, Some(data), done.rv, out) {
                return unrecorded(done);
            }
            output(done)
        }
        Err(rv) => failed(rv),
    }
}

/// First guess at a signature's size for [`sign_complete`]: room for RSA-16384 and the
/// post-quantum schemes' larger signatures; a module that needs more says so and is asked again.
const SIGNATURE_GUESS: Ulong = 8 << 10;

/// `Call::SignComplete`: `C_SignInit` (with the signing policy) when asked, then `C_Sign` to
/// the end, so the application's `C_SignInit`, size query and `C_Sign` cost one round trip.
pub fn sign_complete(
    d: &Daemon,
    c: &Client,
    handle: Ulong,
    init_with: Option<&(Mechanism, Ulong)>,
    data: &[u8],
) -> (Rv, Reply) {
    let (s, done) = match init_with {
        Some((mechanism, key)) => match sign_initialised(d, c, handle, mechanism, *key, data) {
            Ok(signed) => signed,
            Err(rv) => return failed(rv),
        },
        None => match c.session(handle) {
            Ok(s) => {
                let done = sign_to_end(&s.token.module, s.module_session, data);
                (s, done)
            }
            Err(rv) => return failed(rv),
        },
    };
    if !audit_hooks::sign_operated(
        d,
        c,
        &s,
        Operation::Sign,
        Some(data),
        done.out.rv,
        Some(done.room),
    ) {
        return unrecorded(done.out);
    }
    output(done.out)
}

/// `C_SignInit` and `C_Sign` in one: on a session kysod prepared ahead when there is one (see
/// [`crate::prepared`]), else on the client's session.
fn sign_initialised(
    d: &Daemon,
    c: &Client,
    handle: Ulong,
    mechanism: &Mechanism,
    key: Ulong,
    data: &[u8],
) -> Result<(Arc<Session>, Signed), Rv> {
    let (s, key, cert) = admit(d, c, handle, Operation::Sign, mechanism, Some(key))?;
    let token = &s.token;
    let pair = Pair {
        mechanism: mechanism.clone(),
        key,
    };
    let taken = if s.other_operation.load(Ordering::Relaxed) {
        None
    } else {
        token.prepared.take(token, &pair)
    };
    if let Some(taken) = taken {
        let done = sign_to_end(&token.module, taken.session, data);
        if done.out.rv == Rv::OK {
            token.prepared.give_back(token, taken);
            audit_hooks::sign_started(&s, Operation::Sign, mechanism.kind, cert);
            return Ok((s, done));
        }
        // Not answered: the ordinary way below gives the application the module's own answer.
        token.prepared.discard(token, taken);
    }
    token
        .module
        .operation_init(s.module_session, Operation::Sign, mechanism, key)?;
    audit_hooks::sign_started(&s, Operation::Sign, mechanism.kind, cert);
    let done = sign_to_end(&token.module, s.module_session, data);
    if done.out.rv == Rv::OK {
        token.prepared.want(token, s.module_session, &pair);
    }
    Ok((s, done))
}

/// A finished `C_Sign` and the buffer size it was given.
struct Signed {
    out: Output,
    room: Ulong,
}

/// `C_Sign` on `session` to the end: a module that wants a bigger buffer than the first guess
/// keeps the operation running and says how big.
fn sign_to_end(module: &Module, session: ck::CK_SESSION_HANDLE, data: &[u8]) -> Signed {
    let mut room = SIGNATURE_GUESS;
    loop {
        let out = module.operate(session, Operation::Sign, data, Some(room));
        if out.rv == Rv(ck::CKR_BUFFER_TOO_SMALL) && out.len > room {
            room = out.len;
            continue;
        }
        return Signed { out, room };
    }
}

pub fn update(
    d: &Daemon,
    c: &Client,
    handle: Ulong,
    op: Operation,
    data: &[u8],
    out: OutBuf,
) -> (Rv, Reply) {
    match c.session(handle) {
        Ok(s) => {
            let done = s.token.module.update(s.module_session, op, data, out);
            audit_hooks::sign_updated(d, c, &s, op, data, done.rv);
            output(done)
        }
        Err(rv) => failed(rv),
    }
}

pub fn finish(d: &Daemon, c: &Client, handle: Ulong, op: Operation, out: OutBuf) -> (Rv, Reply) {
    match c.session(handle) {
        Ok(s) => {
            let done = s.token.module.finish(s.module_session, op, out);
            other_ended(&s, op, done.rv, out);
            if !audit_hooks::sign_operated(d, c, &s, op, None, done.rv, out) {
                return unrecorded(done);
            }
            output(done)
        }
        Err(rv) => failed(rv),
    }
}

pub fn verify(c: &Client, handle: Ulong, data: &[u8], signature: &[u8]) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let verified = s.token.module.verify(s.module_session, data, signature);
    // C_Verify ends the operation whatever its answer.
    s.other_operation.store(false, Ordering::Relaxed);
    verified?;
    Ok(Reply::None)
}

pub fn verify_final(c: &Client, handle: Ulong, signature: &[u8]) -> Result<Reply, Rv> {
    let s = c.session(handle)?;
    let verified = s.token.module.verify_final(s.module_session, signature);
    s.other_operation.store(false, Ordering::Relaxed);
    verified?;
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
