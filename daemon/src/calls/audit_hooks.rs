//! Where calls meet the audit journal ([`crate::audit`]): the signature operation of a
//! session is tracked from `OperationInit` to the call that ends it, which is journaled.

use kyso_proto::{Operation, OutBuf, Ulong};

use crate::audit::{operation_ended, SignTrack};
use crate::client::{Client, Session};
use crate::error::Rv;
use crate::policy::SigningCert;
use crate::server::Daemon;

/// A `C_SignInit` the module accepted.
pub fn sign_started(s: &Session, op: Operation, mechanism: Ulong, cert: Option<SigningCert>) {
    if op == Operation::Sign {
        *s.signing() = Some(SignTrack::new(mechanism, cert));
    }
}

/// A `C_SignUpdate`: the part is added to the hash while the operation goes on; a failure
/// ends the operation and is journaled as a failed signature (without a data hash).
pub fn sign_updated(d: &Daemon, c: &Client, s: &Session, op: Operation, data: &[u8], rv: Rv) {
    if op != Operation::Sign {
        return;
    }
    let mut track = s.signing();
    if rv == Rv::OK {
        if let Some(t) = track.as_mut() {
            t.update(data);
        }
        return;
    }
    if let Some(t) = track.take() {
        drop(track);
        let mut done = t.multi();
        done.data_sha256 = None;
        // A failed signature hands out nothing, recorded or not.
        let _ = d.audit.signature(c, &s.token, done, rv);
    }
}

/// A `C_Login` that reached a token, with its result and, for a login the token did not
/// check itself, a note saying how it was made.
pub fn logged_in(d: &Daemon, c: &Client, s: &Session, rv: Rv, detail: Option<&str>) {
    d.audit.login(c, &s.token, rv, detail);
}

/// A `C_Sign` (`data` given) or `C_SignFinal` (`data` `None`) answered by the module: when it
/// ended the operation, the result goes to the journal. Returns false when a signature could
/// not be journaled: the caller must then withhold it.
///
/// The journal is the legal record of what was signed, so a signature it cannot record (the
/// state directory is full or read-only) never reaches the application: the module made it,
/// but it does not leave kysod, and the application gets `CKR_FUNCTION_FAILED`.
#[must_use]
pub fn sign_operated(
    d: &Daemon,
    c: &Client,
    s: &Session,
    op: Operation,
    data: Option<&[u8]>,
    rv: Rv,
    out: OutBuf,
) -> bool {
    if op != Operation::Sign || !operation_ended(rv, out) {
        return true;
    }
    let Some(track) = s.signing().take() else {
        return true;
    };
    let done = match data {
        Some(data) => track.single(data),
        None => track.multi(),
    };
    d.audit.signature(c, &s.token, done, rv) || rv != Rv::OK
}
