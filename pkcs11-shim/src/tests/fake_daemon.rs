//! A stand-in for kysod: accepts connections on a Unix socket, answers the handshake, records
//! every call with the instance of the connection it came on, and answers from a script.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use cryptoki_sys::{CKR_NO_EVENT, CKR_OK, CK_RV};
use kyso_proto::{
    frame, Call, Hello, HelloReply, Reply, Request, Response, SessionInfo, Welcome,
    PROTOCOL_VERSION,
};
use parking_lot::Mutex;

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
                        shared.streams.lock().push(clone);
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
        self.shared.calls.lock().clone()
    }

    pub(crate) fn hellos(&self) -> Vec<Hello> {
        self.shared.hellos.lock().clone()
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
        for stream in self.shared.streams.lock().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn serve(shared: &Shared, stream: UnixStream) {
    let mut buf = Vec::new();
    let Ok(hello) = frame::read::<Hello, _>(&mut &stream, &mut buf) else {
        return;
    };
    let instance = hello.instance;
    shared.hellos.lock().push(hello);
    let welcome: HelloReply = Ok(Welcome {
        version: PROTOCOL_VERSION,
    });
    if frame::write(&mut &stream, &welcome, &mut buf).is_err() {
        return;
    }
    let mut out = Vec::new();
    while let Ok(request) = frame::read::<Request, _>(&mut &stream, &mut buf) {
        // Dying: a request that was already on its way gets no answer, as from a daemon
        // that is gone.
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        shared.calls.lock().push((instance, request.call.clone()));
        let (rv, reply) = (shared.script)(&request.call);
        let response = Response {
            id: request.id,
            rv,
            reply,
        };
        if frame::encode(&response, &mut out).is_err() || (&stream).write_all(&out).is_err() {
            return;
        }
    }
}
