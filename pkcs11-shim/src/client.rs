//! The blocking client of kysod: a small pool of Unix-socket connections, all presenting the
//! same `Hello::instance` so the daemon sees one client, plus the reconnect policy.
//!
//! A call takes an idle connection (or opens one), does one write and one read, and puts the
//! connection back, so parallel threads never queue behind each other; the pool lock is held only
//! to push or pop. The pool never drops its last connection while the link is healthy: the
//! daemon ends a client, closing its sessions, when the client's last connection closes.
//!
//! When a connection breaks the link is marked broken and every idle connection is dropped.
//! From then on only calls that can sensibly start afresh ([`may_reconnect`]) make one connect
//! attempt each; the rest fail at once. Each break starts a new *generation*, so a connection
//! that was in flight across a break is closed when it comes back instead of rejoining the pool.

use std::mem;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cryptoki_sys::{CKR_GENERAL_ERROR, CKR_OK};
use kyso_proto::channel::Channel;
use kyso_proto::{
    frame, Call, FrameError, Hello, HelloReply, Operation, Pin, Reply, Request, Response, Ulong,
    PROTOCOL_VERSION,
};
use zeroize::Zeroize;

use crate::error::{Error, Family, Result};
use crate::os::{read_welcome, NoSigPipe};
use crate::signing::Signing;

/// Idle connections kept beyond this many are closed when they come back.
const MAX_IDLE: usize = 32;
/// A scratch buffer that grew past this for one big reply is let go afterwards.
const SCRATCH_KEEP: usize = 64 << 10;

/// The daemon's answer to one call.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) rv: Ulong,
    pub(crate) reply: Reply,
}

/// Calls that may try to reach a daemon after the link broke: the ones an application makes
/// when it starts looking for tokens afresh. Session calls cannot: their sessions are gone.
pub(crate) fn may_reconnect(call: &Call) -> bool {
    matches!(
        call,
        Call::GetInfo
            | Call::GetSlotList { .. }
            | Call::GetSlotInfo { .. }
            | Call::GetTokenInfo { .. }
            | Call::OpenSession { .. }
            | Call::WaitForSlotEvent { .. }
            | Call::Status
    )
}

pub(crate) struct Client {
    socket: PathBuf,
    instance: u64,
    signing: Signing,
    pool: Mutex<Pool>,
    waiters: Mutex<Waiters>,
}

struct Pool {
    generation: u64,
    broken: bool,
    closed: bool,
    idle: Vec<Connection>,
}

/// Streams of threads blocked in `C_WaitForSlotEvent`, kept (as `dup`s, so a closed and
/// reused fd number can never be hit) for `C_Finalize` to shut down.
struct Waiters {
    closed: bool,
    next_ticket: u64,
    parked: Vec<(u64, UnixStream)>,
}

/// Why an exchange failed: before anything was sent (the connection is still good), or on the
/// link itself (the connection is unusable).
enum Failure {
    Request(FrameError),
    Link,
}

/// One handshaken connection to kysod, its frames going through the shared pages and the pipes
/// that came with the welcome (see `kyso_proto::channel`), with its own scratch buffer.
pub(crate) struct Connection {
    channel: Channel,
    scratch: Vec<u8>,
    next_id: u32,
    generation: u64,
    /// kysod found the last call that worked at the token long (`Response::long`: mostly
    /// asleep, waiting on a device, or over 3 ms of CPU): a USB token's signature, an RSA-4096
    /// signature with a software token. Such calls are not served on the caller's CPU, and the
    /// caller sleeps until the answer comes instead of checking for it first: the wake-up is a
    /// small share of them, and yielding the CPU through a whole budget first would only delay
    /// the sleep. Shorter ones (an RSA-2048 signature with a software token, ~600 µs) are
    /// served on the caller's CPU while it yields: measured in one benchmark against the build
    /// that let every call over 250 µs go to any CPU while the caller slept, RSA-2048 2T
    /// 0.94–0.98× of SoftHSM2 in process against 0.90–0.95×, 1T 1.01–1.02× against
    /// 0.99–1.00× (three runs, ahead in all), as the application's wake-ups across CPUs and
    /// kysod's connection threads meeting on one CPU went away.
    long_calls: bool,
}

impl Connection {
    fn open(socket: &Path, instance: u64, generation: u64) -> Option<Connection> {
        let stream = UnixStream::connect(socket).ok()?;
        let mut scratch = Vec::with_capacity(256);
        let hello = Hello {
            version: PROTOCOL_VERSION,
            instance,
            pipes: true,
        };
        frame::write(&mut NoSigPipe(&stream), &hello, &mut scratch).ok()?;
        let fds = read_welcome(&stream, &mut scratch).ok()?;
        match (frame::decode::<HelloReply>(&scratch).ok()?, fds) {
            (Ok(welcome), Some(fds)) if welcome.version == PROTOCOL_VERSION => Some(Connection {
                channel: Channel::joined(stream, fds).ok()?,
                scratch,
                next_id: 1,
                generation,
                long_calls: false,
            }),
            _ => None,
        }
    }

    /// One request, one response: a single `send` of the whole frame, then the reply.
    fn exchange(&mut self, call: Call) -> Result<Response, Failure> {
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        let secret = call.carries_secret();
        if secret {
            // Room for the whole frame up front, so no reallocation leaves a copy behind.
            self.scratch.reserve(secret_room(&call));
        }
        // How to wait (see `kyso_proto::wait`): a call at the token is served on this CPU while
        // this thread yields it, unless such calls have been long: those are served on any CPU
        // while this thread sleeps. Other calls are served on any CPU while this thread checks
        // in a tight loop.
        let at_token = call.works_at_token();
        let cpu = if at_token && !self.long_calls {
            kyso_proto::wait::current_cpu()
        } else {
            None
        };
        let request = Request { id, call, cpu };
        let encoded = frame::encode(&request, &mut self.scratch);
        drop(request);
        let sent = match encoded {
            Ok(()) => self.channel.send(&self.scratch).map_err(|_| Failure::Link),
            Err(e) => Err(Failure::Request(e)),
        };
        if secret {
            self.scratch.zeroize();
        }
        sent?;
        let budget = if at_token && self.long_calls {
            Duration::ZERO
        } else {
            spin_budget()
        };
        let response: Response = self
            .channel
            .receive(&mut self.scratch, budget, cpu.is_some())
            .map_err(|_| Failure::Link)?;
        if at_token {
            self.long_calls = response.long;
        }
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::with_capacity(256);
        }
        if response.id != id {
            return Err(Failure::Link);
        }
        Ok(response)
    }
}

/// An upper bound on the encoded size of a secret-bearing call.
fn secret_room(call: &Call) -> usize {
    let pin = |p: &Option<Pin>| p.as_ref().map_or(0, Pin::len);
    64 + match call {
        Call::InitToken { so_pin, label, .. } => pin(so_pin) + label.len(),
        Call::InitPin { pin: p, .. } | Call::Login { pin: p, .. } => pin(p),
        Call::SetPin { old, new, .. } => pin(old) + pin(new),
        _ => 0,
    }
}

/// How long a caller waits for its reply before blocking (see `kyso_proto::wait`), unless
/// its calls at the token have been long (`Connection::long_calls`); long enough to cover a
/// software-token signature (ECDSA P-256 ~60 µs, RSA-2048 ~600 µs), so the reply does not pay
/// for a wake-up. `KYSO_SPIN_US` overrides it (0 blocks at once).
fn spin_budget() -> Duration {
    static BUDGET: OnceLock<Duration> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        kyso_proto::wait::budget_from_env("KYSO_SPIN_US", Duration::from_micros(1000))
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    /// A client for `C_Initialize`, with its first connection if kysod answers. A daemon that
    /// is not there yet is no error: the link starts broken and the next slot query retries.
    pub(crate) fn start(socket: PathBuf, instance: u64) -> Client {
        let first = Connection::open(&socket, instance, 0);
        Client {
            socket,
            instance,
            signing: Signing::default(),
            pool: Mutex::new(Pool {
                generation: 0,
                broken: first.is_none(),
                closed: false,
                idle: first.into_iter().collect(),
            }),
            waiters: Mutex::new(Waiters {
                closed: false,
                next_ticket: 0,
                parked: Vec::new(),
            }),
        }
    }

    /// The signature operations of this client's sessions (see [`crate::signing`]).
    pub(crate) fn signing(&self) -> &Signing {
        &self.signing
    }

    /// Sends `call` and returns the daemon's answer, whatever its `rv`. A `C_SignInit` the shim
    /// deferred goes first when `call` depends on it; if kysod refuses it, that is the answer.
    pub(crate) fn call(&self, call: Call) -> Result<Answer> {
        if let Some((session, pair)) = self.signing.due_before(&call) {
            let init = Call::OperationInit {
                session,
                op: Operation::Sign,
                mechanism: pair.0.clone(),
                key: Some(pair.1),
            };
            let answer = self.forward(init)?;
            if answer.rv != CKR_OK {
                self.signing.init_refused(session, &pair);
                return Ok(Answer {
                    rv: answer.rv,
                    reply: Reply::None,
                });
            }
        }
        self.signing.observe(&call);
        self.forward(call)
    }

    fn forward(&self, call: Call) -> Result<Answer> {
        let family = Family::of(&call);
        let reconnect = may_reconnect(&call);
        let (mut conn, reused) = self.checkout(reconnect, family)?;
        if reused && reconnect {
            // An idle connection may have died unnoticed (daemon restarted while the
            // application was quiet): calls allowed to reconnect get one fresh attempt.
            // Only link failures retry; the daemon never saw a request it could act on twice
            // on a live link.
            let retry = call.clone();
            match self.exchange(conn, call, family) {
                Err(Error::DaemonGone(_)) if !self.is_closed() => {
                    let generation = lock(&self.pool).generation;
                    conn = self.connect(generation, family)?;
                    return self.exchange(conn, retry, family);
                }
                other => return other,
            }
        }
        self.exchange(conn, call, family)
    }

    fn exchange(&self, mut conn: Connection, call: Call, family: Family) -> Result<Answer> {
        match conn.exchange(call) {
            Ok(response) => {
                self.checkin(conn);
                Ok(Answer {
                    rv: response.rv,
                    reply: response.reply,
                })
            }
            Err(Failure::Request(e)) => {
                self.checkin(conn);
                Err(match e {
                    FrameError::TooLarge(_) => Error::TooLarge,
                    _ => Error::Rv(CKR_GENERAL_ERROR),
                })
            }
            Err(Failure::Link) => {
                let generation = conn.generation;
                drop(conn);
                if self.is_closed() {
                    return Err(Error::NotInitialized);
                }
                self.break_link(generation);
                Err(Error::DaemonGone(family))
            }
        }
    }

    /// `C_WaitForSlotEvent` without `CKF_DONT_BLOCK`: a connection of its own, parked where
    /// `C_Finalize` can wake it, so the waiting thread holds up no other call.
    pub(crate) fn wait_for_slot_event(&self) -> Result<Answer> {
        let family = Family::SlotEvent;
        // The waiting connection is taken out of the pool like any call's (so the pool does
        // not grow by one connection per wait) and is nobody else's while the wait lasts.
        let (mut conn, _reused) = self.checkout(true, family)?;
        let parked = conn
            .channel
            .socket()
            .try_clone()
            .map_err(|_| Error::DaemonGone(family))?;
        let ticket = {
            let mut waiters = lock(&self.waiters);
            if waiters.closed {
                return Err(Error::NotInitialized);
            }
            let ticket = waiters.next_ticket;
            waiters.next_ticket += 1;
            waiters.parked.push((ticket, parked));
            ticket
        };
        let result = conn.exchange(Call::WaitForSlotEvent { block: true });
        let unparked = {
            let mut waiters = lock(&self.waiters);
            let at = waiters.parked.iter().position(|(t, _)| *t == ticket);
            at.map(|i| waiters.parked.swap_remove(i))
        };
        drop(unparked);
        match result {
            Ok(response) => {
                self.checkin(conn);
                Ok(Answer {
                    rv: response.rv,
                    reply: response.reply,
                })
            }
            Err(_) if self.is_closed() => Err(Error::NotInitialized),
            Err(Failure::Request(_)) => Err(Error::Rv(CKR_GENERAL_ERROR)),
            Err(Failure::Link) => {
                self.break_link(conn.generation);
                Err(Error::DaemonGone(family))
            }
        }
    }

    /// `C_Finalize`: closes idle connections and wakes parked waiters. Connections in flight
    /// are closed when they come back. Deliberately not a `Drop`: nothing runs at process exit.
    pub(crate) fn close(&self) {
        let idle = {
            let mut pool = lock(&self.pool);
            pool.closed = true;
            pool.broken = true;
            mem::take(&mut pool.idle)
        };
        drop(idle);
        let parked = {
            let mut waiters = lock(&self.waiters);
            waiters.closed = true;
            mem::take(&mut waiters.parked)
        };
        for (_, stream) in parked {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// An idle connection (`true`: reused) or a new one.
    fn checkout(&self, may_reconnect: bool, family: Family) -> Result<(Connection, bool)> {
        let generation = {
            let mut pool = lock(&self.pool);
            if pool.closed {
                return Err(Error::NotInitialized);
            }
            if pool.broken {
                if !may_reconnect {
                    return Err(Error::DaemonGone(family));
                }
            } else if let Some(conn) = pool.idle.pop() {
                return Ok((conn, true));
            }
            pool.generation
        };
        Ok((self.connect(generation, family)?, false))
    }

    /// One connect attempt (outside the pool lock); success heals a broken link. A failure
    /// does not break a healthy link: only a failure on an established connection shows the
    /// daemon is gone, and dropping the idle connections on a mere refusal (a daemon at its
    /// connection limit) would end this client's sessions.
    fn connect(&self, generation: u64, family: Family) -> Result<Connection> {
        let conn = Connection::open(&self.socket, self.instance, generation)
            .ok_or(Error::DaemonGone(family))?;
        let mut pool = lock(&self.pool);
        if pool.generation == generation && !pool.closed {
            pool.broken = false;
        }
        Ok(conn)
    }

    fn checkin(&self, conn: Connection) {
        let surplus = {
            let mut pool = lock(&self.pool);
            let keep = !pool.closed
                && !pool.broken
                && conn.generation == pool.generation
                && pool.idle.len() < MAX_IDLE;
            if keep {
                pool.idle.push(conn);
                None
            } else {
                Some(conn)
            }
        };
        drop(surplus);
    }

    fn break_link(&self, generation: u64) {
        let dead = {
            let mut pool = lock(&self.pool);
            if pool.generation != generation {
                return;
            }
            pool.generation += 1;
            pool.broken = true;
            mem::take(&mut pool.idle)
        };
        drop(dead);
    }

    fn is_closed(&self) -> bool {
        lock(&self.pool).closed
    }
}
