//! One round trip per signature.
//!
//! Applications sign with three calls: `C_SignInit`, `C_Sign` with a NULL buffer (a size
//! query), `C_Sign` again. Forwarded one by one that is three round trips to kysod, and on
//! small machines the round trips, not the token, bound the signing rate. The shim folds them
//! into one [`Call::SignComplete`] while keeping what the application can observe:
//!
//! - **Size queries and short buffers.** `C_Sign` always asks kysod for the whole signature.
//!   A size query or a short buffer gets the length (and `CKR_BUFFER_TOO_SMALL`) from it, and
//!   the signature is kept for the next `C_Sign` on the session, exactly the call that would
//!   have ended the operation in process. Should that call bring other data, it is signed
//!   afresh rather than answered with a signature of something else.
//! - **`C_SignInit` is deferred only when it cannot fail differently.** The first
//!   `C_SignInit` of a (mechanism, key) pair on a session goes to kysod, so a wrong key,
//!   mechanism or login state, or a policy refusal, surfaces there as in process. After kysod
//!   accepted the pair once, a repeated `C_SignInit` with it answers `CKR_OK` at once and
//!   travels with the `C_Sign` that follows. Only a change between the two calls (the key
//!   destroyed by another application, the token removed, the certificate expiring that
//!   second) moves an error from `C_SignInit` to `C_Sign`, whose error codes cover those
//!   events. Accepted pairs are forgotten when the session closes, on any login or logout and
//!   when an object is destroyed through this library, and when a deferred signature fails.
//! - **Other calls see a started operation.** A deferred `C_SignInit` is sent before any call
//!   that continues or depends on the operation (`C_SignUpdate`, `C_SignFinal`, `C_Login` for
//!   `CKU_CONTEXT_SPECIFIC`); while one is pending or a signature is kept, `C_SignInit` answers
//!   `CKR_OPERATION_ACTIVE` as the module would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use cryptoki_sys::{CKR_OK, CKR_OPERATION_ACTIVE, CK_OBJECT_HANDLE, CK_SESSION_HANDLE};
use kyso_proto::mechanism::Mechanism;
use kyso_proto::{Call, Operation, Reply};

use crate::client::Client;
use crate::error::{check, Error, Result};
use crate::ffi::OutBytes;

/// (mechanism, key) pairs remembered per session; beyond this the oldest is forgotten.
const ACCEPTED_PER_SESSION: usize = 8;

type Pair = (Mechanism, CK_OBJECT_HANDLE);

/// The shim's view of the signature operations of its sessions.
#[derive(Default)]
pub(crate) struct Signing {
    /// Sessions with a deferred `C_SignInit` or a kept signature: while 0, calls skip the lock.
    busy: AtomicUsize,
    sessions: Mutex<HashMap<CK_SESSION_HANDLE, SessionSigning>>,
}

#[derive(Default)]
struct SessionSigning {
    /// Pairs kysod accepted in a `C_SignInit` on this session.
    accepted: Vec<Pair>,
    op: Op,
}

#[derive(Default)]
enum Op {
    /// No signature operation: the last one ended in a `C_Sign` answered here.
    #[default]
    Idle,
    /// The module may have an operation running: kysod accepted this `C_SignInit`, or the
    /// application went on with `C_SignUpdate`/`C_SignFinal`, which kysod alone follows.
    Running(Option<Pair>),
    /// `C_SignInit` answered here; sent with the next `C_Sign` or before a dependent call.
    Deferred(Pair),
    /// The module signed `data`; the application has not taken the signature yet.
    Kept {
        pair: Pair,
        data: Vec<u8>,
        signature: Vec<u8>,
    },
}

impl Op {
    fn busy(&self) -> bool {
        matches!(self, Op::Deferred(_) | Op::Kept { .. })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Signing {
    fn sessions(&self) -> MutexGuard<'_, HashMap<CK_SESSION_HANDLE, SessionSigning>> {
        lock(&self.sessions)
    }

    /// Replaces a session's operation state, keeping `busy` in step.
    fn set(&self, entry: &mut SessionSigning, op: Op) {
        match (entry.op.busy(), op.busy()) {
            (false, true) => {
                self.busy.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.busy.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        entry.op = op;
    }

    fn forget_session(&self, session: CK_SESSION_HANDLE) {
        if let Some(entry) = self.sessions().remove(&session) {
            if entry.op.busy() {
                self.busy.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn forget_accepted(&self) {
        for entry in self.sessions().values_mut() {
            entry.accepted.clear();
        }
    }

    /// Forgets what `call`, about to be sent, may make untrue. (Forgetting too much only costs
    /// a round trip at the next `C_SignInit`.) Sessions closed by `C_CloseAllSessions` keep
    /// their entries, small and harmless: their handles are never handed out again.
    pub(crate) fn observe(&self, call: &Call) {
        match call {
            Call::CloseSession { session } => self.forget_session(*session),
            Call::Login { .. }
            | Call::Logout { .. }
            | Call::DestroyObject { .. }
            | Call::CloseAllSessions { .. } => self.forget_accepted(),
            Call::Update {
                session,
                op: Operation::Sign,
                ..
            }
            | Call::Final {
                session,
                op: Operation::Sign,
                ..
            } => {
                // Multi-part: kysod and the module follow the operation from here on.
                let mut sessions = self.sessions();
                let entry = sessions.entry(*session).or_default();
                let pair = match std::mem::take(&mut entry.op) {
                    Op::Running(pair) => pair,
                    Op::Deferred(pair) | Op::Kept { pair, .. } => {
                        self.busy.fetch_sub(1, Ordering::Relaxed);
                        Some(pair)
                    }
                    Op::Idle => None,
                };
                entry.op = Op::Running(pair);
            }
            _ => {}
        }
    }

    /// The deferred `C_SignInit` that must reach kysod before `call`, if any.
    pub(crate) fn due_before(&self, call: &Call) -> Option<(CK_SESSION_HANDLE, Pair)> {
        if self.busy.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let session = match call {
            Call::Update {
                session,
                op: Operation::Sign,
                ..
            }
            | Call::Final {
                session,
                op: Operation::Sign,
                ..
            }
            | Call::Login { session, .. } => *session,
            _ => return None,
        };
        let mut sessions = self.sessions();
        let entry = sessions.get_mut(&session)?;
        let Op::Deferred(pair) = &entry.op else {
            return None;
        };
        let pair = pair.clone();
        self.set(entry, Op::Running(Some(pair.clone())));
        Some((session, pair))
    }

    /// A deferred `C_SignInit` that kysod refused when it was finally sent.
    pub(crate) fn init_refused(&self, session: CK_SESSION_HANDLE, pair: &Pair) {
        let mut sessions = self.sessions();
        if let Some(entry) = sessions.get_mut(&session) {
            entry.accepted.retain(|p| p != pair);
            self.set(entry, Op::Idle);
        }
    }
}

/// `C_SignInit`.
pub(crate) fn sign_init(
    client: &Client,
    session: CK_SESSION_HANDLE,
    mechanism: Mechanism,
    key: CK_OBJECT_HANDLE,
) -> Result<()> {
    let signing = client.signing();
    let pair = (mechanism, key);
    {
        let mut sessions = signing.sessions();
        let entry = sessions.entry(session).or_default();
        if entry.op.busy() {
            return Err(Error::Rv(CKR_OPERATION_ACTIVE));
        }
        if matches!(entry.op, Op::Idle) && entry.accepted.contains(&pair) {
            signing.set(entry, Op::Deferred(pair));
            return Ok(());
        }
    }
    let rv = client
        .call(Call::OperationInit {
            session,
            op: Operation::Sign,
            mechanism: pair.0.clone(),
            key: Some(key),
        })?
        .rv;
    if rv == CKR_OK {
        let mut sessions = signing.sessions();
        let entry = sessions.entry(session).or_default();
        if !entry.accepted.contains(&pair) {
            if entry.accepted.len() == ACCEPTED_PER_SESSION {
                entry.accepted.remove(0);
            }
            entry.accepted.push(pair.clone());
        }
        signing.set(entry, Op::Running(Some(pair)));
    }
    check(rv)
}

/// `C_Sign`.
pub(crate) fn sign(
    client: &Client,
    session: CK_SESSION_HANDLE,
    data: Vec<u8>,
    out: OutBytes,
) -> Result<()> {
    let signing = client.signing();
    let (init, pair) = {
        let mut sessions = signing.sessions();
        let entry = sessions.entry(session).or_default();
        let op = std::mem::take(&mut entry.op);
        if op.busy() {
            signing.busy.fetch_sub(1, Ordering::Relaxed);
        }
        match op {
            Op::Kept {
                pair,
                data: kept_data,
                signature,
            } => {
                if kept_data == data {
                    return hand_over(signing, entry, pair, data, signature, out);
                }
                // Other data than the size query's: sign it (the kept one is not given out).
                (Some(pair.clone()), Some(pair))
            }
            Op::Deferred(pair) => (Some(pair.clone()), Some(pair)),
            Op::Running(pair) => (None, pair),
            Op::Idle => (None, None),
        }
    };
    let answer = client.call(Call::SignComplete {
        session,
        init: init.clone(),
        data: data.clone(),
    })?;
    let signature = match answer {
        crate::client::Answer {
            rv: CKR_OK,
            reply:
                Reply::Output {
                    data: Some(signature),
                    ..
                },
        } => signature,
        crate::client::Answer { rv: CKR_OK, .. } => return Err(Error::Protocol),
        crate::client::Answer { rv, .. } => {
            if let Some(pair) = &init {
                signing.init_refused(session, pair);
            }
            return Err(Error::Rv(rv));
        }
    };
    let mut sessions = signing.sessions();
    let entry = sessions.entry(session).or_default();
    match pair {
        Some(pair) => hand_over(signing, entry, pair, data, signature, out),
        // An operation started outside the shim's view (no `C_SignInit` seen since the last
        // `C_Sign`): the signature is delivered if it fits; nothing is kept for a retry.
        None => out.deliver(&signature).map(drop),
    }
}

/// Gives the application the signature, or keeps it when the call was a size query or the
/// buffer too short.
fn hand_over(
    signing: &Signing,
    entry: &mut SessionSigning,
    pair: Pair,
    data: Vec<u8>,
    signature: Vec<u8>,
    out: OutBytes,
) -> Result<()> {
    match out.deliver(&signature) {
        Ok(true) => {
            signing.set(entry, Op::Idle);
            Ok(())
        }
        Ok(false) => {
            signing.set(
                entry,
                Op::Kept {
                    pair,
                    data,
                    signature,
                },
            );
            Ok(())
        }
        Err(e) => {
            signing.set(
                entry,
                Op::Kept {
                    pair,
                    data,
                    signature,
                },
            );
            Err(e)
        }
    }
}
