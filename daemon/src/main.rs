//! kysod: serves the user's PKCS#11 tokens to local applications over a Unix socket.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

mod audit;
mod calls;
mod certs;
mod client;
mod events;
mod hotplug;
mod login;
mod module;
mod policy;
mod recovery;
mod server;
mod slots;
mod state;
mod token;
mod tokentable;
mod tries;

// The parsers that take outside text (configuration, pinentry answers) live in the library
// so that the fuzz targets can reach them.
use kyso_daemon::{config, error, pinentry};

use config::Config;

/// kysod — serves the user's PKCS#11 tokens to local applications.
#[derive(Parser)]
#[command(name = "kysod", version)]
struct Args {
    /// Configuration file (TOML). Default: $XDG_CONFIG_HOME/kyso/kysod.toml when it exists,
    /// else /etc/kyso/kysod.toml when it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Writes the man page of kysod (roff) into DIR and exits; used when packaging.
    #[arg(long, hide = true, value_name = "DIR")]
    man_page: Option<PathBuf>,
}

fn main() {
    keep_out_other_programs();
    let args = Args::parse();
    if let Some(dir) = args.man_page {
        let man = clap_mangen::Man::new(<Args as clap::CommandFactory>::command()).section("8");
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| man.generate_to(&dir)) {
            eprintln!("kysod: cannot write the man page to {}: {e}", dir.display());
            std::process::exit(1);
        }
        return;
    }
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kysod: {e}");
            std::process::exit(2);
        }
    };
    init_logging(&config);
    if let Err(e) = run(config, args.config) {
        tracing::error!("{e}");
        eprintln!("kysod: {e}");
        std::process::exit(1);
    }
}

/// Makes kysod non-dumpable and gives it no core files, as ssh-agent does: the user's other
/// programs cannot trace it, read its memory or have a core dump written, where PINs pass.
/// (root, or a program holding `CAP_SYS_PTRACE`, still can.)
fn keep_out_other_programs() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("kysod: cannot make itself non-dumpable: {e}");
    }
    use nix::sys::resource::{setrlimit, Resource};
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        eprintln!("kysod: cannot turn core files off: {e}");
    }
}

/// The configuration the package installs, used by users who have none of their own.
const SYSTEM_CONFIG: &str = "/etc/kyso/kysod.toml";

fn load_config(path: Option<&Path>) -> Result<Config, config::ConfigError> {
    if let Some(path) = path {
        return Config::load(path);
    }
    let default = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("kyso/kysod.toml"));
    match default {
        Some(p) if p.exists() => Config::load(&p),
        _ if Path::new(SYSTEM_CONFIG).exists() => Config::load(Path::new(SYSTEM_CONFIG)),
        _ => Ok(Config::default()),
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(config.log.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd the journal adds its own timestamps.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    if journal {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// Raises the soft limit on open descriptors to what `connections` connections take: two
/// each (the socket, and the doorbell of a connection waiting for slot events), and room for
/// the modules and the journal. Never above the hard limit, and never lowered.
fn raise_descriptor_limit(connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let wanted = (connections as u64).saturating_mul(2).saturating_add(256);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let target = wanted.min(hard);
    if target > soft {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            tracing::warn!(error = %e, "cannot raise the limit on open files to {target}");
        }
    }
}

fn run(config: Config, config_path: Option<PathBuf>) -> Result<(), String> {
    // Signals are taken by one thread with sigwait; block them before any thread starts.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;

    raise_descriptor_limit(config.limits.connections_total);

    let state_dir = config.state_path().map_err(|e| e.to_string())?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&state_dir)
        .map_err(|e| {
            format!(
                "cannot create the state directory {}: {e}",
                state_dir.display()
            )
        })?;

    // Checked at start so a typo in a `[[token]]` entry is reported at once; USB detection
    // matches plugged devices against it.
    let token_table = tokentable::TokenTable::new(&config.tokens)?;
    tracing::debug!(?token_table, "token table");

    let modules = config
        .modules
        .iter()
        .map(|m| token::ModuleEntry::new(m.path.clone(), m.always_present))
        .collect();
    let journal = audit::Journal::open(&state_dir);
    let registry = token::Registry::new(
        modules,
        slots::SlotTable::open(&state_dir),
        journal.clone(),
        config.policy.warn_days,
    );
    registry.rescan();
    let present = registry.slots(true).len();
    if present == 0 {
        tracing::warn!(
            modules = config.modules.len(),
            "no token present yet: check the [[module]] entries and the modules' own configuration"
        );
    } else {
        tracing::info!(tokens = present, "tokens present at start");
    }

    let (listener, socket) = listen(&config)?;
    let recovery = recovery::RecoveryState::open(&state_dir, &config.recovery.helpdesk_keys)?;
    let state = Arc::new(state::State::new(
        registry,
        state::Settings::from_config(&config),
        journal,
        recovery,
        tries::PinFailures::open(&state_dir),
        nix::unistd::getuid().as_raw(),
    ));
    let ending = state.clone();
    std::thread::Builder::new()
        .name("kysod-logins".into())
        .spawn(move || ending.registry.expire_shared_logins())
        .map_err(|e| format!("cannot start: {e}"))?;
    tracing::info!(socket = %socket.as_deref().unwrap_or(Path::new("(from systemd)")).display(), state_dir = %state_dir.display(), "kysod ready");

    // Already-plugged token devices arrive now; without libusb kysod goes on (one warning).
    let _devices = hotplug::start(token_table, state.clone());

    let server = Arc::new(server::Server::new(state.clone()));
    std::thread::Builder::new()
        .name("kysod-accept".into())
        .spawn(move || server.serve(listener))
        .map_err(|e| format!("cannot start: {e}"))?;

    let mut running = config;
    let signal = loop {
        match signals.wait().map_err(|e| format!("sigwait: {e}"))? {
            Signal::SIGHUP => reload(&state, &mut running, config_path.as_deref()),
            signal => break signal,
        }
    };
    tracing::info!(?signal, "stopping");
    if let Some(socket) = socket {
        let _ = std::fs::remove_file(socket);
    }
    Ok(())
}

/// SIGHUP: reads the configuration file again and puts its run-time part in force (see
/// [`state::Settings`]: limits, PIN collection, pinentry, policy). A file that does not parse
/// changes nothing: the running configuration stays in force. Changes to what is read only at
/// start are reported as waiting for a restart.
fn reload(state: &state::State, running: &mut Config, path: Option<&Path>) {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "configuration NOT reloaded; the running configuration stays in force");
            return;
        }
    };
    for (setting, changed) in running.start_only_changes(&config) {
        if changed {
            tracing::warn!(
                setting,
                "changed in the configuration file; takes effect when kysod restarts"
            );
        }
    }
    raise_descriptor_limit(config.limits.connections_total);
    state.replace_settings(state::Settings::from_config(&config));
    tracing::info!("configuration reloaded (limits, pin, pinentry, policy)");
    let start_only = Config {
        limits: config.limits,
        pin: config.pin,
        pinentry: config.pinentry,
        policy: config.policy,
        ..running.clone()
    };
    *running = start_only;
}

/// The listening socket: passed by systemd (socket activation) or created here. Returns the
/// path when kysod created it (and must remove it at exit).
fn listen(config: &Config) -> Result<(UnixListener, Option<PathBuf>), String> {
    if let Some(listener) = systemd_listener() {
        return Ok((listener, None));
    }
    let path = config.socket_path().map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return Err(format!(
                "another kysod is already serving {}",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    Ok((listener, Some(path)))
}

/// The first socket passed by systemd (`LISTEN_PID`/`LISTEN_FDS`), if any.
fn systemd_listener() -> Option<UnixListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    // SAFETY: systemd passes the listening sockets as descriptors 3.. to this process
    // (LISTEN_PID matched), and nothing else in kysod owns descriptor 3.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    let _ = nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(UnixListener::from(fd))
}
