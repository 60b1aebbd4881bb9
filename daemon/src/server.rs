//! The socket side: accepting connections, checking who is on the other end, the handshake,
//! and each connection's request loop.
//!
//! Each connection is served by a thread of its own doing blocking reads and calling the
//! module directly. A module call that hangs holds only that connection; the shim keeps a pool
//! of connections, so an application's other threads and every other client go on. Compared
//! with handing each call from an async reactor to a per-token worker thread, this saves two
//! thread hand-offs per call, which on a small machine are most of a round trip.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kyso_proto::channel::{Channel, Pipes};
use kyso_proto::frame::{self, FrameError};
use kyso_proto::{Call, Hello, HelloReply, Refusal, Request, Response, Welcome, PROTOCOL_VERSION};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use zeroize::Zeroize;

use crate::calls;
use crate::client::Client;
use crate::config::Limits;
use crate::cpus::CpuSet;
use crate::token::Registry;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a blocked slot-event wait checks that its client is still there.
const WAIT_CHECK: Duration = Duration::from_millis(500);

/// The part of the configuration that a reload (SIGHUP) replaces while kysod runs: each call
/// takes the settings in force when it starts. Everything else in the file (socket, state
/// directory, log filter, modules, token table) is read once at start.
pub struct Settings {
    pub limits: Limits,
    /// PIN collection (`[pin]`, `pinentry`).
    pub pin: crate::config::PinConfig,
    pub pinentry: std::path::PathBuf,
    /// The signing policy (`[policy]`).
    pub policy: crate::policy::Policy,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        Settings {
            limits: config.limits.clone(),
            pin: config.pin.clone(),
            pinentry: config.pinentry.clone().unwrap_or_else(|| "pinentry".into()),
            policy: crate::policy::Policy::new(config.policy.clone()),
        }
    }
}

pub struct Daemon {
    pub registry: Registry,
    settings: RwLock<Arc<Settings>>,
    /// The only uid served.
    pub uid: u32,
    /// The audit journal (`state_dir/audit.jsonl`).
    pub audit: crate::audit::Journal,
    /// Remote recovery: pending requests' keys, SO PIN generations, trusted helpdesk keys.
    pub recovery: crate::recovery::RecoveryState,
    clients: Mutex<HashMap<(i32, u64), Arc<Client>>>,
    next_client: AtomicU64,
    connections: AtomicUsize,
    /// Open connections per process, counted from `accept` (before the handshake), so one
    /// process cannot hold more than `connections_per_client`, whatever its `Hello` says.
    per_process: Mutex<HashMap<i32, usize>>,
}

impl Daemon {
    pub fn new(registry: Registry, settings: Settings, uid: u32) -> Daemon {
        Daemon {
            registry,
            settings: RwLock::new(Arc::new(settings)),
            uid,
            audit: crate::audit::Journal::disabled(),
            recovery: crate::recovery::RecoveryState::none(&std::env::temp_dir()),
            clients: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            per_process: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `settings` in force for the calls that start from now on.
    pub fn replace_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    /// Adds a connection to the client `(pid, instance)`, creating the client on its first.
    fn join(&self, uid: u32, pid: i32, instance: u64) -> Result<Arc<Client>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let client = clients
            .entry((pid, instance))
            .or_insert_with(|| {
                let id = self.next_client.fetch_add(1, Ordering::Relaxed);
                let client = Arc::new(Client::new(id, uid, pid, self.registry.events.cursor()));
                tracing::info!(client = id, uid, pid, program = %client.program, "client connected");
                client
            })
            .clone();
        if client.connections.load(Ordering::Relaxed)
            >= self.settings().limits.connections_per_client
        {
            return Err(format!("too many connections from process {pid}"));
        }
        client.connections.fetch_add(1, Ordering::Relaxed);
        Ok(client)
    }

    /// Removes a connection; the client's last one takes its sessions and logins with it.
    fn leave(&self, client: &Arc<Client>) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if client.connections.fetch_sub(1, Ordering::Relaxed) != 1 {
            return;
        }
        clients.retain(|_, c| !Arc::ptr_eq(c, client));
        drop(clients);
        calls::close_everything(client);
        tracing::info!(
            client = client.id,
            uid = client.uid,
            pid = client.pid,
            "client disconnected"
        );
    }

    /// Accepts connections until the listener fails.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of descriptors, most likely: let clients finish before trying again.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if self.connections.fetch_add(1, Ordering::Relaxed)
                >= self.settings().limits.connections_total
            {
                self.connections.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!("connection refused: too many connections");
                refuse(&stream, "kysod is serving too many connections");
                continue;
            }
            let cred = match getsockopt(&stream, PeerCredentials) {
                Ok(cred) => cred,
                Err(e) => {
                    self.connections.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "cannot identify a connecting process; refused");
                    continue;
                }
            };
            let pid = cred.pid();
            if !self.process_joins(pid) {
                self.connections.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(
                    pid,
                    "connection refused: too many connections from one process"
                );
                refuse(&stream, &format!("too many connections from process {pid}"));
                continue;
            }
            let daemon = self.clone();
            let spawned = std::thread::Builder::new()
                .name("kysod-conn".into())
                .spawn(move || {
                    daemon.connection(stream, cred.uid(), pid);
                    daemon.process_leaves(pid);
                    daemon.connections.fetch_sub(1, Ordering::Relaxed);
                });
            if let Err(e) = spawned {
                self.process_leaves(pid);
                self.connections.fetch_sub(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot start a connection thread");
            }
        }
    }

    /// Counts a new connection of process `pid`; false when it has its limit already.
    fn process_joins(&self, pid: i32) -> bool {
        let mut counts = self.per_process.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(pid).or_insert(0);
        if *count >= self.settings().limits.connections_per_client {
            return false;
        }
        *count += 1;
        true
    }

    fn process_leaves(&self, pid: i32) {
        let mut counts = self.per_process.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&pid) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&pid);
            }
        }
    }

    /// Serves one connection of the process `pid` (its peer credentials, read at `accept`).
    fn connection(&self, mut stream: UnixStream, uid: u32, pid: i32) {
        if uid != self.uid {
            tracing::warn!(
                uid,
                pid,
                "refused a connection from another user (uid {uid}, pid {pid})"
            );
            refuse(&stream, "kysod serves only its own user");
            return;
        }
        let mut buf = Vec::new();
        let _ = stream.set_read_timeout(Some(HELLO_TIMEOUT));
        if let Err(e) = frame::read_payload(&mut stream, &mut buf) {
            tracing::warn!(pid, error = %e, "bad handshake; connection closed");
            return;
        }
        // The version first: it is the first field of every version's hello, so a client of
        // another version is told what kysod speaks even when the rest has another shape.
        if let Some(version) = Hello::version_of(&buf).filter(|v| *v != PROTOCOL_VERSION) {
            tracing::warn!(
                pid,
                version,
                "client speaks another protocol version; refused"
            );
            refuse(
                &stream,
                &format!(
                    "protocol version {version} is not supported (kysod speaks {PROTOCOL_VERSION})"
                ),
            );
            return;
        }
        let hello: Hello = match frame::decode(&buf) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(pid, error = %e, "bad handshake; connection closed");
                return;
            }
        };
        let client = match self.join(uid, pid, hello.instance) {
            Ok(c) => c,
            Err(reason) => {
                tracing::warn!(pid, %reason, "connection refused");
                refuse(&stream, &reason);
                return;
            }
        };
        let _ = stream.set_read_timeout(None);
        let welcome: HelloReply = Ok(Welcome {
            version: PROTOCOL_VERSION,
        });
        let channel = match frame::encode(&welcome, &mut buf) {
            Ok(()) if hello.pipes => match Pipes::new() {
                Ok(pipes) => Channel::offer(stream, &buf, pipes),
                Err(e) => {
                    tracing::warn!(pid, error = %e, "cannot make a connection's pipes and shared pages; refused");
                    refuse(
                        &stream,
                        &format!("kysod cannot take more connections now: {e}"),
                    );
                    self.leave(&client);
                    return;
                }
            },
            Ok(()) => (&stream)
                .write_all(&buf)
                .and_then(|()| Channel::over_socket(stream)),
            Err(e) => Err(std::io::Error::other(e)),
        };
        match channel {
            Ok(mut channel) => self.requests(&client, &mut channel, &mut buf),
            Err(e) => tracing::debug!(pid, error = %e, "handshake not completed"),
        }
        self.leave(&client);
    }

    /// The request loop of one connection.
    fn requests(&self, client: &Client, channel: &mut Channel, buf: &mut Vec<u8>) {
        let mut out = Vec::new();
        let spin = spin_budget();
        let mut cpu = CpuFollower::new();
        let mut pace = crate::pace::Pace::default();
        let _deferring = crate::prepared::defer_wakes();
        loop {
            let received = channel.receive(buf, spin, cpu.is_held());
            crate::prepared::wake_deferred();
            let request: Request = match received {
                Ok(r) => r,
                Err(FrameError::Closed) => return,
                Err(e) => {
                    buf.zeroize();
                    tracing::warn!(client = client.id, pid = client.pid, error = %e, "bad request; connection closed");
                    return;
                }
            };
            if request.call.carries_secret() {
                buf.zeroize();
            }
            cpu.follow(request.cpu);
            let timing = pace.start(request.call.works_at_token());
            let (rv, reply) = match request.call {
                Call::WaitForSlotEvent { block: true } => match self.wait_event(client, channel) {
                    Some(slot) => (crate::error::Rv::OK, kyso_proto::Reply::Slot(slot)),
                    None => return,
                },
                call => calls::handle(self, client, call),
            };
            let response = Response {
                id: request.id,
                rv: rv.0,
                reply,
                long: pace.finish(timing),
            };
            let sent = frame::encode(&response, &mut out)
                .and_then(|()| channel.send(&out).map_err(FrameError::from));
            if let Err(e) = sent {
                tracing::debug!(client = client.id, error = %e, "cannot answer; connection closed");
                return;
            }
        }
    }

    /// Blocks until a slot event for `client`; `None` when the client went away meanwhile.
    fn wait_event(&self, client: &Client, channel: &Channel) -> Option<kyso_proto::Ulong> {
        let mut cursor = *client
            .event_cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(slot) = self.registry.events.wait(&mut cursor, WAIT_CHECK) {
                let mut shared = client
                    .event_cursor
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                *shared = (*shared).max(cursor);
                return Some(slot);
            }
            // A waiting client sends nothing more; readable or hung up means it is gone.
            if channel.peer_stirred() {
                return None;
            }
        }
    }
}

/// How long a connection waits for the next request after answering, yielding its CPU, before
/// blocking (see `kyso_proto::wait`): applications often call again at once (the next
/// signature of a batch). `KYSOD_SPIN_US` overrides it.
fn spin_budget() -> Duration {
    kyso_proto::wait::budget_from_env("KYSOD_SPIN_US", Duration::from_micros(200))
}

/// Keeps a connection's thread on the CPU its caller runs on (see `kyso_proto::wait`).
struct CpuFollower {
    /// The CPUs the thread may run on when no caller says otherwise.
    allowed: Option<CpuSet>,
    current: Option<u32>,
}

impl CpuFollower {
    fn new() -> CpuFollower {
        CpuFollower {
            allowed: CpuSet::of_process(),
            current: None,
        }
    }

    /// Whether the thread is held to a caller's CPU.
    fn is_held(&self) -> bool {
        self.current.is_some()
    }

    /// Moves the thread to `cpu` (or back to every allowed CPU for `None`) if it is not there.
    /// A CPU kysod may not use is ignored: the call is served wherever the thread is.
    fn follow(&mut self, cpu: Option<u32>) {
        let Some(allowed) = self.allowed else {
            return;
        };
        if cpu == self.current {
            return;
        }
        let set = match cpu {
            Some(c) if allowed.contains(c) => match CpuSet::only(c) {
                Some(one) => one,
                None => return,
            },
            Some(_) => return,
            None => allowed,
        };
        if set.apply(None) {
            self.current = cpu;
        }
    }
}

fn refuse(mut stream: &UnixStream, reason: &str) {
    let reply: HelloReply = Err(Refusal {
        reason: reason.into(),
    });
    let mut buf = Vec::new();
    if frame::encode(&reply, &mut buf).is_ok() {
        let _ = stream.write_all(&buf);
    }
}
