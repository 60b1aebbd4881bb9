//! Cryptographic operations: passed to the module with the application's buffer shapes, so
//! size queries and short buffers leave the operation running exactly as in process.

use cryptoki_sys as ck;
use kyso_proto::mechanism::Mechanism;
use kyso_proto::{Operation, OutBuf, Reply, Ulong};
use zeroize::Zeroize;

use crate::calls::audit_hooks;
use crate::client::Client;
use crate::error::Rv;
use crate::module::Output;
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
    s.token
        .module
        .operation_init(s.module_session, op, mechanism, key)?;
    crate::calls::audit_hooks::sign_started(&s, op, mechanism.kind, cert);
    Ok(Reply::None)
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
    if let Some((mechanism, key)) = init_with {
        if let Err(rv) = init(d, c, handle, Operation::Sign, mechanism, Some(*key)) {
            return failed(rv);
        }
    }
    let s = match c.session(handle) {
        Ok(s) => s,
        Err(rv) => return failed(rv),
    };
    let module = &s.token.module;
    let mut room = SIGNATURE_GUESS;
    let done = loop {
        let done = module.operate(s.module_session, Operation::Sign, data, Some(room));
        // A module that wants a bigger buffer keeps the operation running and says how big.
        if done.rv == Rv(ck::CKR_BUFFER_TOO_SMALL) && done.len > room {
            room = done.len;
            continue;
        }
        break done;
    };
    if !audit_hooks::sign_operated(d, c, &s, Operation::Sign, Some(data), done.rv, Some(room)) {
        return unrecorded(done);
    }
    output(done)
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
