//! `kyso-bridge` as a child process, a client that calls it as a web page does (TLS trusting
//! only the bridge's own CA, one text frame, one answer), and a scripted pinentry for its
//! prompts and kysod's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::paths::target_dir;
use crate::pinentry::sh_quote;

/// Writes `dir/pinentry-bridge`: `GETPIN` answers the fixture's PIN; each `CONFIRM` takes the
/// first line of `dir/confirms` (`ok`, `notok` or `cancel`; `ok` when the file is empty) and
/// removes it. Every command it receives is appended to `dir/seen`.
pub fn bridge_pinentry(dir: &Path) -> PathBuf {
    let path = dir.join("pinentry-bridge");
    let script = format!(
        "#!/bin/sh\n\
         seen={seen}\n\
         confirms={confirms}\n\
         echo 'OK pleased'\n\
         while IFS= read -r line; do\n\
         \x20 printf '%s\\n' \"$line\" >>\"$seen\"\n\
         \x20 case $line in\n\
         \x20   GETPIN*) echo 'D {pin}'; echo OK;;\n\
         \x20   CONFIRM*) a=$(head -n1 \"$confirms\" 2>/dev/null); sed -i 1d \"$confirms\" 2>/dev/null; echo \"CONFIRMED ${{a:-ok}}\" >>\"$seen\";\n\
         \x20     case ${{a:-ok}} in ok) echo OK;; notok) echo 'ERR 83886194 Not confirmed';; *) echo 'ERR 83886179 Operation cancelled';; esac;;\n\
         \x20   BYE*) echo OK; exit 0;;\n\
         \x20   *) echo OK;;\n\
         \x20 esac\n\
         done\n",
        seen = sh_quote(&dir.join("seen")),
        confirms = sh_quote(&dir.join("confirms")),
        pin = crate::USER_PIN,
    );
    std::fs::write(&path, script).expect("write the pinentry");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.join("confirms"), "").expect("confirms");
    path
}

/// The TOML for kysod's configuration that makes `pinentry` its prompt and gives the bridge a
/// free port and `origins` (for [`crate::DaemonConfig::extra`]).
pub fn bridge_config(pinentry: &Path, port: u16, origins: &[&str]) -> String {
    let origins: Vec<String> = origins.iter().map(|o| crate::toml_str(o)).collect();
    format!(
        "pinentry = {}\n\n[bridge]\nlisten = \"127.0.0.1:{port}\"\norigins = [{}]\n",
        crate::toml_str(&pinentry.to_string_lossy()),
        origins.join(", ")
    )
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `target/<profile>/kyso-bridge`.
pub fn bridge_path() -> PathBuf {
    let p = target_dir().join("kyso-bridge");
    assert!(
        p.exists(),
        "{} not built: cargo build --workspace",
        p.display()
    );
    p
}

/// A running `kyso-bridge` for a [`Daemon`]. Dropping it kills it.
pub struct Bridge {
    child: Option<Child>,
    port: u16,
    state: PathBuf,
    log: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Bridge {
    /// Starts the bridge on the daemon's configuration (its `[bridge]` table must name `port`)
    /// and waits until it accepts.
    pub fn start(daemon: &Daemon, port: u16, env: &[(&str, &str)]) -> Bridge {
        let root = daemon
            .config_path()
            .parent()
            .expect("config dir")
            .to_path_buf();
        let mut b = Bridge {
            child: None,
            port,
            state: root.join("state/bridge"),
            log: root.join("bridge.log"),
            config: daemon.config_path().to_path_buf(),
            // A home of its own: a new certificate is registered in the home's browsers.
            env: [
                (
                    "KYSO_SOCKET".to_string(),
                    daemon.socket().display().to_string(),
                ),
                ("HOME".to_string(), root.join("home").display().to_string()),
            ]
            .into_iter()
            .chain(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("bridge log");
        let child = Command::new(bridge_path())
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "kyso_bridge=debug,info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn kyso-bridge");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("kyso-bridge exited ({status}):\n{}", self.log());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "kyso-bridge did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bridge's state directory (certificate, consent.json).
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// The CA certificate the bridge made (PEM).
    pub fn ca_pem(&self) -> PathBuf {
        self.state.join("ca.pem")
    }

    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the bridge and starts it again (its remembered answers are on disk).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// A TLS connection to the bridge that trusts only the bridge's CA.
    pub fn tls(&self) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        tls_to(self.port, &self.ca_pem())
    }

    /// Calls `operation` as a page of `origin` does: one text frame, one answer.
    pub fn call(&self, operation: &str, origin: Option<&str>, frame: &str) -> serde_json::Value {
        self.call_message(operation, origin, tungstenite::Message::text(frame))
            .unwrap_or_else(|e| panic!("{operation}: {e}\nbridge log:\n{}", self.log()))
    }

    /// Sends any message and returns the answer frame (parsed).
    pub fn call_message(
        &self,
        operation: &str,
        origin: Option<&str>,
        message: tungstenite::Message,
    ) -> Result<serde_json::Value, String> {
        let mut ws = self.websocket(operation, origin)?;
        ws.send(message).map_err(|e| format!("send: {e}"))?;
        read_answer(&mut ws)
    }

    /// An open WebSocket to `operation`, nothing sent yet.
    pub fn websocket(
        &self,
        operation: &str,
        origin: Option<&str>,
    ) -> Result<
        tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
        String,
    > {
        use tungstenite::client::IntoClientRequest;
        let mut request = format!("wss://127.0.0.1:{}/{operation}", self.port)
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if let Some(o) = origin {
            request
                .headers_mut()
                .insert("Origin", o.parse().map_err(|_| "origin header")?);
        }
        let stream = self.tls();
        stream
            .sock
            .set_read_timeout(Some(Duration::from_secs(120)))
            .ok();
        let (ws, _) =
            tungstenite::client::client(request, stream).map_err(|e| format!("handshake: {e}"))?;
        Ok(ws)
    }

    /// A plain HTTPS request to the bridge; the status code and the body.
    pub fn https(&self, request: &str) -> (u16, String) {
        let mut s = self.tls();
        s.write_all(request.as_bytes()).expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

/// Reads frames until the answer's text frame.
pub fn read_answer<S: Read + Write>(
    ws: &mut tungstenite::WebSocket<S>,
) -> Result<serde_json::Value, String> {
    loop {
        match ws.read().map_err(|e| format!("read: {e}"))? {
            tungstenite::Message::Text(t) => {
                return serde_json::from_str(t.as_str()).map_err(|e| format!("answer {t}: {e}"))
            }
            tungstenite::Message::Close(_) => return Err("closed without an answer".into()),
            _ => continue,
        }
    }
}

/// TLS to 127.0.0.1:`port` trusting only the CA in `ca_pem`.
pub fn tls_to(
    port: u16,
    ca_pem: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).expect("ca.pem") {
        roots
            .add(cert.expect("a certificate"))
            .expect("a usable CA");
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect to the bridge");
    sock.set_nodelay(true).ok();
    rustls::StreamOwned::new(conn, sock)
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop();
    }
}
