//! `kysod` as a child process.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::Fixture;
use crate::paths::{kysod_path, SOFTHSM_MODULE};

/// How long `kysod` may take to bind its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `kysod` may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What goes into the daemon's TOML configuration.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `log = "..."`.
    pub log: String,
    /// `[[module]]` tables: module path and `always_present`.
    pub modules: Vec<(PathBuf, bool)>,
    /// Further TOML written after `log` (top-level keys first, then tables).
    pub extra: String,
    /// The `kysod` to run: this build's by default (see [`kysod_path`]).
    pub program: Option<PathBuf>,
    /// The fixture subdirectory holding its socket, state and log: `kysod` by default. Two
    /// daemons on one fixture need two.
    pub dir: String,
    /// Environment variables for `kysod` besides `SOFTHSM2_CONF`.
    pub env: Vec<(String, String)>,
    /// The state directory (journal, slot table), when not the fixture subdirectory's.
    pub state_dir: Option<PathBuf>,
}

impl Default for DaemonConfig {
    /// SoftHSM2, always present, debug logging.
    fn default() -> Self {
        DaemonConfig {
            log: "debug".into(),
            modules: vec![(PathBuf::from(SOFTHSM_MODULE), true)],
            extra: String::new(),
            program: None,
            dir: "kysod".into(),
            env: Vec::new(),
            state_dir: None,
        }
    }
}

impl DaemonConfig {
    /// The default configuration with opencryptoki's module added (always present), for a
    /// [`Fixture::with_opencryptoki`].
    pub fn with_opencryptoki() -> Self {
        let mut cfg = Self::default();
        cfg.modules.push((
            PathBuf::from(crate::opencryptoki::OPENCRYPTOKI_MODULE),
            true,
        ));
        cfg
    }
}

/// A running `kysod` serving a [`Fixture`]'s tokens on a socket of its own. Its stderr goes to
/// a log file (kept across restarts). Dropping it stops the daemon (SIGTERM, then SIGKILL).
pub struct Daemon {
    socket: PathBuf,
    config: PathBuf,
    log: PathBuf,
    softhsm_conf: PathBuf,
    program: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `kysod` with [`DaemonConfig::default`] and waits until its socket accepts.
    pub fn start(fx: &Fixture) -> Daemon {
        Self::start_with(fx, DaemonConfig::default())
    }

    /// Starts `kysod` with the given configuration and waits until its socket accepts.
    pub fn start_with(fx: &Fixture, cfg: DaemonConfig) -> Daemon {
        let root = fx.subdir(&cfg.dir);
        let run = root.join("run");
        let state = cfg.state_dir.clone().unwrap_or_else(|| root.join("state"));
        fs::create_dir_all(&run).expect("create run dir");
        fs::create_dir_all(&state).expect("create state dir");
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).expect("chmod run dir");
        let socket = run.join("kysod.sock");
        let config = root.join("kysod.toml");
        let mut text = format!(
            "socket = {}\nstate_dir = {}\nlog = {}\n",
            toml_str(&socket.to_string_lossy()),
            toml_str(&state.to_string_lossy()),
            toml_str(&cfg.log)
        );
        text.push_str(&cfg.extra);
        text.push('\n');
        for (path, always_present) in &cfg.modules {
            text.push_str(&format!(
                "\n[[module]]\npath = {}\nalways_present = {}\n",
                toml_str(&path.to_string_lossy()),
                always_present
            ));
        }
        fs::write(&config, text).expect("write kysod config");
        let mut d = Daemon {
            socket,
            config,
            log: root.join("kysod.log"),
            softhsm_conf: fx.softhsm_conf(),
            program: cfg.program.clone().unwrap_or_else(kysod_path),
            env: cfg.env.clone(),
            child: None,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "kysod already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open kysod log");
        writeln!(log, "---- kyso-tests: starting kysod").ok();
        let child = Command::new(&self.program)
            .arg("--config")
            .arg(&self.config)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn kysod");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "kysod exited ({status}) before binding {}; its log:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            if start.elapsed() > START_TIMEOUT {
                self.kill();
                panic!(
                    "kysod did not bind {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The socket clients connect to (what `KYSO_SOCKET` should say).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The file collecting the daemon's stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the daemon has logged so far (over all restarts).
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The running daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the daemon process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, then reap: a crash, as far as clients can tell.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited by itself in time
    /// (it is killed otherwise).
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        // SAFETY: kill(2) on the pid of our own unreaped child: it cannot have been recycled.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        c.kill().ok();
        c.wait().ok();
        false
    }

    /// Starts the daemon again with the same configuration and socket (killing it first if it
    /// is still running), and waits until it accepts.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Makes the socket and its directory world-accessible (for tests of other local users).
    pub fn open_socket_to_everyone(&self) {
        let dir = self.socket.parent().expect("socket dir");
        for p in [dir, &self.socket] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o777)).expect("chmod 0777");
        }
        let mut p = dir.parent();
        while let Some(d) = p {
            let mode = fs::metadata(d).map(|m| m.permissions().mode()).unwrap_or(0);
            fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o755)).ok();
            p = d.parent();
            if d == Path::new("/") {
                break;
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// `s` as a TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
