//! kysod: serves the user's PKCS#11 tokens to local applications over a Unix socket.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
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
mod files;
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
    /// Configuration file (TOML). Default: $XDG_CONFIG_HOME/kyso/kysod.toml when it exists.
    /// The administrator's /etc/kyso/kysod.toml, when it exists, binds the pinentry program,
    /// [pin], [policy] and [recovery]: this file may only make them stricter.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The administrator's configuration file (for tests).
    #[arg(long, hide = true, value_name = "FILE", default_value = ADMIN_CONFIG)]
    admin_config: PathBuf,
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
    let sources = Sources {
        user: args.config,
        admin: args.admin_config,
    };
    let (config, held) = match sources.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kysod: {e}");
            std::process::exit(2);
        }
    };
    init_logging(&config);
    report_held(&held);
    if let Err(e) = run(config, sources) {
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

/// The administrator's configuration, which the package installs.
const ADMIN_CONFIG: &str = "/etc/kyso/kysod.toml";

/// Where the configuration comes from: the user's file and the administrator's.
struct Sources {
    /// `--config`, else the user's default file if it exists.
    user: Option<PathBuf>,
    admin: PathBuf,
}

impl Sources {
    /// The configuration in force: the user's file under the administrator's (see
    /// [`Config::bound_by`]), either alone when the other is missing, the defaults when both
    /// are. Also the settings the user's file could not loosen.
    fn load(&self) -> Result<(Config, Vec<&'static str>), config::ConfigError> {
        let admin = if self.admin.exists() {
            Some(Config::load(&self.admin)?)
        } else {
            None
        };
        let user_path = self.user.clone().or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .map(|d| d.join("kyso/kysod.toml"))
                .filter(|p| p.exists())
        });
        let user = match user_path {
            Some(p) if p != self.admin => Some(Config::load(&p)?),
            _ => None,
        };
        Ok(match (user, admin) {
            (Some(user), Some(admin)) => user.bound_by(&admin),
            (Some(only), None) | (None, Some(only)) => (only, Vec::new()),
            (None, None) => (Config::default(), Vec::new()),
        })
    }
}

fn report_held(held: &[&str]) {
    for setting in held {
        tracing::warn!(
            setting,
            "the user's configuration would loosen the administrator's setting; the administrator's is in force"
        );
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

fn run(config: Config, sources: Sources) -> Result<(), String> {
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
    files::private_dir(&state_dir, "state directory")?;

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
            Signal::SIGHUP => reload(&state, &mut running, &sources),
            signal => break signal,
        }
    };
    tracing::info!(?signal, "stopping");
    if let Some(socket) = socket {
        let _ = std::fs::remove_file(socket);
    }
    Ok(())
}

/// SIGHUP: reads the configuration files again and puts their run-time part in force (see
/// [`state::Settings`]: limits, PIN collection, pinentry, policy). A file that does not parse
/// changes nothing: the running configuration stays in force. A reload that would loosen a
/// setting that protects the user (a longer shared login, no confirmation of seal
/// signatures, another pinentry …) takes effect only once the user confirms it in the running
/// pinentry: a program of the user's could have written the file. Changes to what is read
/// only at start are reported as waiting for a restart.
fn reload(state: &state::State, running: &mut Config, sources: &Sources) {
    let config = match sources.load() {
        Ok((c, held)) => {
            report_held(&held);
            c
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration NOT reloaded; the running configuration stays in force");
            return;
        }
    };
    let loosened = running.loosened(&config);
    if !loosened.is_empty() && !loosening_confirmed(running, &loosened) {
        tracing::warn!(changes = ?loosened, "configuration NOT reloaded: it loosens settings that protect the user, and the user did not confirm it");
        return;
    }
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

/// Asks the user, through the pinentry in force, to confirm settings made looser.
fn loosening_confirmed(running: &Config, changes: &[String]) -> bool {
    let program = running
        .pinentry
        .clone()
        .unwrap_or_else(|| "pinentry".into());
    let prompt = pinentry::PinPrompt {
        title: "kyso — cấu hình / configuration".into(),
        description: format!(
            "Tệp cấu hình của kyso vừa được sửa, nới lỏng các thiết lập bảo vệ bạn:\n{list}\nChỉ đồng ý nếu chính bạn đã sửa.\n\nkyso's configuration file was changed to loosen settings that protect you:\n{list}\nAgree only if you made this change yourself.",
            list = changes.join("\n")
        ),
        prompt: String::new(),
        error: None,
    };
    match pinentry::confirm(&pinentry::PinentrySettings::new(program), &prompt) {
        Ok(confirmed) => confirmed,
        Err(e) => {
            tracing::warn!(error = %e, "no confirmation from the pinentry");
            false
        }
    }
}

/// The listening socket: passed by systemd (socket activation) or created here. Returns the
/// path when kysod created it (and must remove it at exit).
fn listen(config: &Config) -> Result<(UnixListener, Option<PathBuf>), String> {
    if let Some(listener) = systemd_listener() {
        return Ok((listener, None));
    }
    let path = config.socket_path().map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        files::private_dir(dir, "socket directory")?;
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
