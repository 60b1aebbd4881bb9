//! The socket side: accepting connections, checking who is on the other end, the handshake,
//! and each connection's request loop.
//!
//! Each connection is served by a thread of its own: it reads a frame from the socket, calls
//! the module and writes the answer, blocking all the while. A module call that hangs holds
//! only its own connection; the shim keeps a pool of connections, so an application's other
//! threads and every other client go on.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kyso_proto::frame::{self, FrameError};
use kyso_proto::{Call, Hello, HelloReply, Refusal, Request, Response, Welcome, PROTOCOL_VERSION};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, recv, sockopt::PeerCredentials, MsgFlags};
use parking_lot::Mutex;
use zeroize::Zeroize;

use crate::calls;
use crate::client::Client;
use crate::error::Rv;
use crate::state::State;

/// How long a new connection may take to say hello, from `accept`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a frame may take to arrive once its first byte has (a frame of the largest size
/// takes milliseconds over a local socket).
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of frames being read that all connections together may hold.
const FRAME_BYTES: usize = 64 << 20;
/// A buffer that grew past this for one large frame is let go afterwards.
const BUFFER_KEEP: usize = 64 << 10;

pub struct Server {
    state: Arc<State>,
    clients: Mutex<HashMap<(i32, u64), Arc<Client>>>,
    next_client: AtomicU64,
    connections: AtomicUsize,
    /// Open connections per process, counted from `accept` (before the handshake), so one
    /// process cannot hold more than `connections_per_client`, whatever its `Hello` says.
    per_process: Mutex<HashMap<i32, usize>>,
    /// Bytes of frames being read, across all connections (at most [`FRAME_BYTES`]).
    frame_bytes: AtomicUsize,
}

impl Server {
    pub fn new(state: Arc<State>) -> Server {
        Server {
            state,
            clients: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            per_process: Mutex::new(HashMap::new()),
            frame_bytes: AtomicUsize::new(0),
        }
    }

    /// Reads one frame from a client into `buf`: waiting for its first byte as long as it
    /// takes unless `deadline` is given, then the whole frame by `deadline` or within
    /// [`FRAME_TIMEOUT`], its bytes counted against [`FRAME_BYTES`] while it is read.
    fn read_frame(
        &self,
        stream: &UnixStream,
        timed: &Cell<bool>,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), FrameError> {
        let mut incoming = Incoming {
            stream,
            timed,
            deadline,
            counted: 0,
            total: &self.frame_bytes,
        };
        frame::read_payload(&mut incoming, buf)
    }

    /// Adds a connection to the client `(pid, instance)`, creating the client on its first.
    fn join(&self, uid: u32, pid: i32, instance: u64) -> Result<Arc<Client>, String> {
        let mut clients = self.clients.lock();
        let client = clients
            .entry((pid, instance))
            .or_insert_with(|| {
                let id = self.next_client.fetch_add(1, Ordering::Relaxed);
                let cursor = self.state.registry.events.cursor();
                let client = Arc::new(Client::new(id, uid, pid, cursor));
                tracing::info!(client = id, uid, pid, program = %client.program, "client connected");
                client
            })
            .clone();
        if client.connections.load(Ordering::Relaxed)
            >= self.state.settings().limits.connections_per_client
        {
            return Err(format!("too many connections from process {pid}"));
        }
        client.connections.fetch_add(1, Ordering::Relaxed);
        Ok(client)
    }

    /// Removes a connection; the client's last one takes its sessions and logins with it.
    fn leave(&self, client: &Arc<Client>) {
        let mut clients = self.clients.lock();
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
                >= self.state.settings().limits.connections_total
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
            let server = self.clone();
            let spawned = std::thread::Builder::new()
                .name("kysod-conn".into())
                .spawn(move || {
                    server.connection(stream, cred.uid(), pid);
                    server.process_leaves(pid);
                    server.connections.fetch_sub(1, Ordering::Relaxed);
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
        let mut counts = self.per_process.lock();
        let count = counts.entry(pid).or_insert(0);
        if *count >= self.state.settings().limits.connections_per_client {
            return false;
        }
        *count += 1;
        true
    }

    fn process_leaves(&self, pid: i32) {
        let mut counts = self.per_process.lock();
        if let Some(count) = counts.get_mut(&pid) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&pid);
            }
        }
    }

    /// Serves one connection of the process `pid` (its peer credentials, read at `accept`).
    fn connection(&self, mut stream: UnixStream, uid: u32, pid: i32) {
        if uid != self.state.uid {
            tracing::warn!(
                uid,
                pid,
                "refused a connection from another user (uid {uid}, pid {pid})"
            );
            refuse(&stream, "kysod serves only its own user");
            return;
        }
        let mut buf = Vec::new();
        let hello_by = Instant::now() + HELLO_TIMEOUT;
        let timed = Cell::new(false);
        if let Err(e) = self.read_frame(&stream, &timed, &mut buf, Some(hello_by)) {
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
        let welcome: HelloReply = Ok(Welcome {
            version: PROTOCOL_VERSION,
        });
        let welcomed = frame::write(&mut stream, &welcome, &mut buf);
        match welcomed {
            Ok(()) => self.requests(&client, &mut stream, &timed, &mut buf),
            Err(e) => tracing::debug!(pid, error = %e, "handshake not completed"),
        }
        self.leave(&client);
    }

    /// The request loop of one connection.
    fn requests(
        &self,
        client: &Client,
        stream: &mut UnixStream,
        timed: &Cell<bool>,
        buf: &mut Vec<u8>,
    ) {
        let mut out = Vec::new();
        loop {
            if buf.capacity() > BUFFER_KEEP {
                *buf = Vec::new();
            }
            if out.capacity() > BUFFER_KEEP {
                out = Vec::new();
            }
            let request: Request = match self
                .read_frame(stream, timed, buf, None)
                .and_then(|()| frame::decode(buf))
            {
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
            let (rv, reply) = match request.call {
                Call::WaitForSlotEvent { block: true } => match self.wait_event(client, stream) {
                    Some(slot) => (Rv::OK, kyso_proto::Reply::Slot(slot)),
                    None => return,
                },
                call => calls::handle(&self.state, client, call),
            };
            let response = Response {
                id: request.id,
                rv: rv.0,
                reply,
            };
            if let Err(e) = frame::write(stream, &response, &mut out) {
                tracing::debug!(client = client.id, error = %e, "cannot answer; connection closed");
                return;
            }
        }
    }

    /// Blocks until a slot event for `client`; `None` when the client went away meanwhile
    /// (a waiting client sends nothing more, so its socket turning readable means it left).
    fn wait_event(&self, client: &Client, stream: &UnixStream) -> Option<kyso_proto::Ulong> {
        let events = &self.state.registry.events;
        let doorbell = match events.subscribe() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(client = client.id, error = %e, "cannot wait for slot events");
                return None;
            }
        };
        loop {
            if let Some(slot) = events.poll(&mut client.event_cursor.lock()) {
                return Some(slot);
            }
            let mut fds = [
                PollFd::new(stream.as_fd(), PollFlags::POLLIN),
                PollFd::new(doorbell.fd(), PollFlags::POLLIN),
            ];
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!(client = client.id, error = %e, "waiting for slot events failed");
                    return None;
                }
            }
            if fds[0].any().unwrap_or(true) {
                return None;
            }
            doorbell.clear();
        }
    }
}

/// A connection's input while one frame is read: a deadline for the frame, set when its first
/// byte arrives (or given, for the hello), and the frame's bytes counted against the bytes
/// all connections may hold.
struct Incoming<'a> {
    stream: &'a UnixStream,
    /// Whether the socket has a read timeout set (changed only when a read must wait).
    timed: &'a Cell<bool>,
    deadline: Option<Instant>,
    counted: usize,
    total: &'a AtomicUsize,
}

impl Incoming<'_> {
    /// Reads what has arrived, waiting (until the deadline, if any) only when nothing has.
    fn read_some(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match recv(self.stream.as_raw_fd(), out, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => return Ok(n),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let timeout = match self.deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(io::ErrorKind::TimedOut.into()),
            },
        };
        if timeout.is_some() || self.timed.get() {
            self.stream.set_read_timeout(timeout)?;
            self.timed.set(timeout.is_some());
        }
        (&mut &*self.stream).read(out)
    }
}

impl Read for Incoming<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.read_some(out)?;
        if n > 0 {
            self.deadline
                .get_or_insert_with(|| Instant::now() + FRAME_TIMEOUT);
            let before = self.total.fetch_add(n, Ordering::Relaxed);
            self.counted += n;
            if before + n > FRAME_BYTES {
                return Err(io::Error::other(
                    "kysod holds too many bytes of unfinished frames",
                ));
            }
        }
        Ok(n)
    }
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(self.counted, Ordering::Relaxed);
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
