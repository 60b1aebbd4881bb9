//! The blocking client of kysod: one connection over its Unix socket, the check that kysod is
//! the one listening, the handshake, and one request and its response at a time. The shim
//! keeps a pool of these; the `kyso` tools and the tests use one each.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{getsockopt, send, sockopt::PeerCredentials, MsgFlags};
use zeroize::Zeroize;

use crate::frame::{self, FrameError};
use crate::{Call, Hello, HelloReply, Pin, Request, Response, PROTOCOL_VERSION};

/// How long kysod may take to answer the hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A scratch buffer that grew past this for one big reply is let go afterwards.
const SCRATCH_KEEP: usize = 64 << 10;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach kysod at {path}: {source}")]
    Unreachable { path: PathBuf, source: io::Error },
    #[error("kysod refused the connection: {0}")]
    Refused(String),
    #[error("kysod's answer to the hello: {0}")]
    Handshake(#[from] FrameError),
    /// The socket's server is not kysod as this user runs it: nothing was sent to it.
    #[error("the program listening on {path} runs as uid {uid} (pid {pid}), not as this user (uid {expected}): it is not your kysod, and nothing was sent to it; check the socket path (KYSO_SOCKET) and who created it")]
    NotKysod {
        path: PathBuf,
        uid: u32,
        pid: i32,
        expected: u32,
    },
}

/// The socket kysod listens on: `KYSO_SOCKET`, else `$XDG_RUNTIME_DIR/kyso/kysod.sock`, else
/// `/run/user/<uid>/kyso/kysod.sock`.
pub fn default_socket() -> PathBuf {
    let set = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = set("KYSO_SOCKET") {
        return path.into();
    }
    let runtime = set("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", nix::unistd::getuid())));
    runtime.join("kyso").join("kysod.sock")
}

/// One handshaken connection to kysod.
pub struct Connection {
    stream: UnixStream,
    scratch: Vec<u8>,
    next_id: u32,
}

impl Connection {
    /// Connects to `socket` and says hello as the client `instance` (connections of one
    /// process that present the same instance are one client to kysod). kysod serves only
    /// its own user, so a server running as anyone else is refused before a byte is sent.
    pub fn open(socket: &Path, instance: u64) -> Result<Connection, ConnectError> {
        Self::open_expecting(socket, instance, nix::unistd::getuid().as_raw())
    }

    /// As [`Connection::open`], with the server required to run as `uid`.
    pub fn open_expecting(
        socket: &Path,
        instance: u64,
        uid: u32,
    ) -> Result<Connection, ConnectError> {
        let stream = UnixStream::connect(socket).map_err(|source| ConnectError::Unreachable {
            path: socket.to_path_buf(),
            source,
        })?;
        // SO_PEERCRED: who created the listening socket, as the kernel recorded it.
        let peer = getsockopt(&stream, PeerCredentials).map_err(|e| ConnectError::Unreachable {
            path: socket.to_path_buf(),
            source: e.into(),
        })?;
        if peer.uid() != uid {
            return Err(ConnectError::NotKysod {
                path: socket.to_path_buf(),
                uid: peer.uid(),
                pid: peer.pid(),
                expected: uid,
            });
        }
        let mut conn = Connection {
            stream,
            scratch: Vec::with_capacity(256),
            next_id: 1,
        };
        let hello = Hello {
            version: PROTOCOL_VERSION,
            instance,
        };
        frame::encode(&hello, &mut conn.scratch)?;
        conn.send_scratch().map_err(FrameError::from)?;
        conn.stream
            .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(FrameError::from)?;
        let reply: HelloReply = frame::read(&mut &conn.stream, &mut conn.scratch)?;
        conn.stream
            .set_read_timeout(None)
            .map_err(FrameError::from)?;
        match reply {
            Ok(welcome) if welcome.version == PROTOCOL_VERSION => Ok(conn),
            Ok(welcome) => Err(ConnectError::Refused(format!(
                "kysod speaks protocol version {}, this program {PROTOCOL_VERSION}",
                welcome.version
            ))),
            Err(refusal) => Err(ConnectError::Refused(refusal.reason)),
        }
    }

    /// Bounds the wait for each answer from now on (`None`: waits as long as it takes, as
    /// for a call that asks the user).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// The connection's socket, for another thread to shut down a call that waits.
    pub fn socket(&self) -> &UnixStream {
        &self.stream
    }

    /// Sends `call` and waits for its response. [`FrameError::TooLarge`] is a call that could
    /// not be encoded (the connection is still good); any other error leaves it unusable.
    pub fn call(&mut self, call: Call) -> Result<Response, FrameError> {
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        let secret = call.carries_secret();
        if secret {
            // Room for the whole frame up front, so no reallocation leaves a copy behind.
            self.scratch.reserve(secret_room(&call));
        }
        let encoded = frame::encode(&Request { id, call }, &mut self.scratch);
        let sent = match encoded {
            Ok(()) => self.send_scratch().map_err(FrameError::from),
            Err(e) => Err(e),
        };
        if secret {
            self.scratch.zeroize();
        }
        sent?;
        let response: Response = frame::read(&mut &self.stream, &mut self.scratch)?;
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::with_capacity(256);
        }
        if response.id != id {
            return Err(FrameError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("kysod answered request {} to request {id}", response.id),
            )));
        }
        Ok(response)
    }

    /// Writes the encoded frame in `scratch` with `MSG_NOSIGNAL`: a kysod that went away gives
    /// `EPIPE`, never a `SIGPIPE` that would kill the host application.
    fn send_scratch(&self) -> io::Result<()> {
        let mut rest = self.scratch.as_slice();
        while !rest.is_empty() {
            match send(self.stream.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// An upper bound on the encoded size of a secret-bearing call.
fn secret_room(call: &Call) -> usize {
    let pin = |p: &Option<Pin>| p.as_ref().map_or(0, Pin::len);
    let candidates = |c: &[crate::SoPinCandidate]| {
        c.iter()
            .map(|c| c.pin.len() + c.generation.len() + 16)
            .sum::<usize>()
    };
    64 + match call {
        Call::InitToken { so_pin, label, .. } => pin(so_pin) + label.len(),
        Call::InitPin { pin: p, .. } | Call::Login { pin: p, .. } => pin(p),
        Call::SetPin { old, new, .. } => pin(old) + pin(new),
        Call::Wipe {
            candidates: c,
            label,
            case_ref,
            ..
        } => candidates(c) + label.len() + case_ref.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Refusal, Reply, Welcome};

    /// A one-connection kysod stand-in: answers the hello with `reply`, then each request with
    /// its own id and `rv` 0.
    fn serve(listener: std::os::unix::net::UnixListener, reply: HelloReply) {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let _: Hello = frame::read(&mut stream, &mut buf).unwrap();
        frame::write(&mut stream, &reply, &mut buf).unwrap();
        while let Ok(request) = frame::read::<Request, _>(&mut stream, &mut buf) {
            let response = Response {
                id: request.id,
                rv: 0,
                reply: Reply::None,
            };
            frame::write(&mut stream, &response, &mut buf).unwrap();
        }
    }

    fn socket(name: &str) -> (std::os::unix::net::UnixListener, PathBuf) {
        let path = std::env::temp_dir().join(format!("kyso-client-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (std::os::unix::net::UnixListener::bind(&path).unwrap(), path)
    }

    #[test]
    fn calls_are_answered_in_turn() {
        let (listener, path) = socket("calls");
        let server = std::thread::spawn(move || {
            serve(
                listener,
                Ok(Welcome {
                    version: PROTOCOL_VERSION,
                }),
            )
        });
        let mut conn = Connection::open(&path, 7).unwrap();
        for _ in 0..3 {
            let response = conn.call(Call::GetInfo).unwrap();
            assert_eq!(response.rv, 0);
        }
        drop(conn);
        server.join().unwrap();
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_refusal_says_why() {
        let (listener, path) = socket("refused");
        let server = std::thread::spawn(move || {
            serve(
                listener,
                Err(Refusal {
                    reason: "too many connections".into(),
                }),
            )
        });
        let err = Connection::open(&path, 7).err().unwrap();
        assert!(err.to_string().contains("too many connections"), "{err}");
        server.join().unwrap();
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_server_of_another_user_is_refused_before_anything_is_sent() {
        let (listener, path) = socket("other-user");
        let me = nix::unistd::getuid().as_raw();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut stream, &mut got).unwrap();
            got
        });
        let err = Connection::open_expecting(&path, 7, me + 1).err().unwrap();
        assert!(
            matches!(err, ConnectError::NotKysod { uid, expected, .. } if uid == me && expected == me + 1),
            "{err}"
        );
        assert!(err.to_string().contains("not your kysod"), "{err}");
        assert!(server.join().unwrap().is_empty(), "no byte was sent");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn no_daemon_is_an_error_naming_the_socket() {
        let path = std::env::temp_dir().join("kyso-client-nobody-listens");
        let err = Connection::open(&path, 1).err().unwrap();
        assert!(matches!(err, ConnectError::Unreachable { .. }));
        assert!(err.to_string().contains("kyso-client-nobody-listens"));
    }
}
