//! A stand-in for kysod: accepts connections on a Unix socket, answers the handshake, records
//! every call with the instance of the connection it came on, and answers from a script.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use cryptoki_sys::{CKR_NO_EVENT, CKR_OK, CK_RV};
use kyso_proto::channel::{Channel, Pipes};
use kyso_proto::{
    frame, Call, Hello, HelloReply, Reply, Request, Response, SessionInfo, Welcome,
    PROTOCOL_VERSION,
};

use crate::os::NoSigPipe;

type Script = dyn Fn(&Call) -> (CK_RV, Reply) + Send + Sync;

pub(crate) struct FakeDaemon {
    path: PathBuf,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    script: Box<Script>,
    calls: Mutex<Vec<(u64, Call)>>,
    hellos: Mutex<Vec<Hello>>,
    streams: Mutex<Vec<UnixStream>>,
    stopping: AtomicBool,
}

/// Plausible answers for the calls most tests make.
pub(crate) fn standard(call: &Call) -> (CK_RV, Reply) {
    match call {
        Call::GetSlotList { .. } => (CKR_OK, Reply::SlotList(vec![1, 5, 9])),
        Call::OpenSession { .. } => (CKR_OK, Reply::Handle(42)),
        Call::GetSessionInfo { session } => (
            CKR_OK,
            Reply::SessionInfo(SessionInfo {
                slot: 1,
                state: *session,
                flags: 4,
                device_error: 0,
            }),
        ),
        Call::WaitForSlotEvent { block: false } => (CKR_NO_EVENT, Reply::None),
        _ => (CKR_OK, Reply::None),
    }
}

impl FakeDaemon {
    pub(crate) fn start(
        path: &Path,
        script: impl Fn(&Call) -> (CK_RV, Reply) + Send + Sync + 'static,
    ) -> FakeDaemon {
        let listener = UnixListener::bind(path).unwrap();
        let shared = Arc::new(Shared {
            script: Box::new(script),
            calls: Mutex::default(),
            hellos: Mutex::default(),
            streams: Mutex::default(),
            stopping: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if shared.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Ok(clone) = stream.try_clone() {
                        lock(&shared.streams).push(clone);
                    }
                    let shared = shared.clone();
                    thread::spawn(move || serve(&shared, stream));
                }
            })
        };
        FakeDaemon {
            path: path.to_owned(),
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Every call so far, with the `Hello::instance` of its connection.
    pub(crate) fn calls(&self) -> Vec<(u64, Call)> {
        lock(&self.shared.calls).clone()
    }

    pub(crate) fn hellos(&self) -> Vec<Hello> {
        lock(&self.shared.hellos).clone()
    }
}

impl Drop for FakeDaemon {
    /// Dies like a daemon does: the socket file goes, every connection is cut.
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let _ = std::fs::remove_file(&self.path);
        for stream in lock(&self.shared.streams).drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve(shared: &Shared, stream: UnixStream) {
    let mut buf = Vec::new();
    let Ok(hello) = frame::read::<Hello, _>(&mut &stream, &mut buf) else {
        return;
    };
    let instance = hello.instance;
    let hello_pipes = hello.pipes;
    lock(&shared.hellos).push(hello);
    let welcome: HelloReply = Ok(Welcome {
        version: PROTOCOL_VERSION,
    });
    // As kysod does: the shim asks for pipes, and they come with the welcome.
    let channel = match frame::encode(&welcome, &mut buf) {
        Ok(()) if hello_pipes => Pipes::new().and_then(|pipes| Channel::offer(stream, &buf, pipes)),
        Ok(()) => NoSigPipe(&stream)
            .write_all(&buf)
            .and_then(|()| Channel::over_socket(stream)),
        Err(_) => return,
    };
    let Ok(mut channel) = channel else {
        return;
    };
    let mut out = Vec::new();
    while let Ok(request) = channel.receive::<Request>(&mut buf, Duration::ZERO, false) {
        // Dying: a request that was already in the pipe gets no answer, as from a daemon
        // that is gone.
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        lock(&shared.calls).push((instance, request.call.clone()));
        let (rv, reply) = (shared.script)(&request.call);
        let response = Response {
            id: request.id,
            rv,
            reply,
            long: false,
        };
        if frame::encode(&response, &mut out).is_err() || channel.send(&out).is_err() {
            return;
        }
    }
}
