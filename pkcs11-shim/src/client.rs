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
use std::path::PathBuf;

use cryptoki_sys::CKR_GENERAL_ERROR;
use kyso_proto::{Call, FrameError, Reply, Response, Ulong};
use parking_lot::Mutex;

use crate::error::{Error, Family, Result};

/// Idle connections kept beyond this many are closed when they come back.
const MAX_IDLE: usize = 32;

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

/// One handshaken connection to kysod and the link generation it was opened in.
pub(crate) struct Connection {
    link: kyso_proto::client::Connection,
    generation: u64,
}

impl Connection {
    fn open(socket: &std::path::Path, instance: u64, generation: u64) -> Option<Connection> {
        let link = kyso_proto::client::Connection::open(socket, instance).ok()?;
        Some(Connection { link, generation })
    }

    fn exchange(&mut self, call: Call) -> Result<Response, Failure> {
        self.link.call(call).map_err(|e| match e {
            FrameError::TooLarge(_) => Failure::Request(e),
            _ => Failure::Link,
        })
    }
}

impl Client {
    /// A client for `C_Initialize`, with its first connection if kysod answers. A daemon that
    /// is not there yet is no error: the link starts broken and the next slot query retries.
    pub(crate) fn start(socket: PathBuf, instance: u64) -> Client {
        let first = Connection::open(&socket, instance, 0);
        Client {
            socket,
            instance,
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

    /// Sends `call` and returns the daemon's answer, whatever its `rv`.
    pub(crate) fn call(&self, call: Call) -> Result<Answer> {
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
                    let generation = self.pool.lock().generation;
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
            .link
            .socket()
            .try_clone()
            .map_err(|_| Error::DaemonGone(family))?;
        let ticket = {
            let mut waiters = self.waiters.lock();
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
            let mut waiters = self.waiters.lock();
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
            let mut pool = self.pool.lock();
            pool.closed = true;
            pool.broken = true;
            mem::take(&mut pool.idle)
        };
        drop(idle);
        let parked = {
            let mut waiters = self.waiters.lock();
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
            let mut pool = self.pool.lock();
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
        let mut pool = self.pool.lock();
        if pool.generation == generation && !pool.closed {
            pool.broken = false;
        }
        Ok(conn)
    }

    fn checkin(&self, conn: Connection) {
        let surplus = {
            let mut pool = self.pool.lock();
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
            let mut pool = self.pool.lock();
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
        self.pool.lock().closed
    }
}
