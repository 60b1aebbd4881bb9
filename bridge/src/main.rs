//! `kyso-bridge [--config FILE]`: the local web-signing service (see the crate docs).

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use kyso_bridge::config::Config;
use kyso_bridge::consent::ConsentStore;
use kyso_bridge::origin::Origin;
use kyso_bridge::prompt::Prompts;
use kyso_bridge::server::{self, Bridge};
use kyso_bridge::settings::SettingsPage;
use kyso_bridge::sites::Sites;

/// kyso-bridge — answers Vietnamese web applications' signing calls (wss://127.0.0.1:8987).
#[derive(Parser)]
#[command(name = "kyso-bridge", version)]
struct Args {
    /// kyso's configuration file (its [bridge] table). Default: $XDG_CONFIG_HOME/kyso/kysod.toml,
    /// else /etc/kyso/kysod.toml, else the defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The listening socket systemd passed (socket activation), if any.
fn systemd_listener() -> Option<std::net::TcpListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    // SAFETY: systemd passes the listening sockets as descriptors 3.. to this process
    // (LISTEN_PID matched), and nothing else in the bridge owns descriptor 3.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    Some(std::net::TcpListener::from(fd))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match kyso_bridge::config::load(args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kyso-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or(config.log.clone())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("kyso-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<(), String> {
    let kyso_state = config.state_path().map_err(|e| e.to_string())?;
    let dir = kyso_bridge::config::bridge_dir(&config)?;
    let (paths, made) = kyso_bridge::cert::ensure(&dir).map_err(|e| e.to_string())?;
    // A new certificate is registered at once in the user's own browsers (Chromium's NSS
    // database, Firefox profiles), as `kyso bridge trust --user-only` would.
    if made {
        let registered = kyso_bridge::trust::home()
            .and_then(|home| kyso_bridge::trust::trust(&dir, &home, false, &[]));
        match registered {
            Ok(done) => tracing::info!(
                "made a new certificate ({}), trusted in: {}",
                paths.cert.display(),
                done.join(", ")
            ),
            Err(e) => tracing::warn!(
                "made a new certificate ({}) but could not register it ({e}): run `kyso bridge trust`",
                paths.cert.display()
            ),
        }
    }
    let tls = server::tls_acceptor(&paths)?;
    let mut configured = Vec::new();
    for o in &config.bridge.origins {
        match Origin::parse(o) {
            Ok(o) => configured.push(o),
            Err(e) => return Err(format!("[bridge] origins: {o}: {e}")),
        }
    }
    // The managed policy is root's, written from /etc/kyso/kysod.toml: origins configured only
    // in the user's own file are not in it, and Chromium asks before letting them through.
    let chromium = std::path::Path::new(kyso_bridge::trust::POLICY_DIRS[0]);
    if chromium.parent().is_some_and(|d| d.exists()) {
        let missing =
            kyso_bridge::trust::origins_missing_from_policy(chromium, &config.bridge.origins);
        if !missing.is_empty() {
            tracing::warn!(
                "Chromium's managed policy does not let {} reach the bridge: Chromium asks the user for each (local network access); list them in /etc/kyso/kysod.toml's [bridge] origins",
                missing.join(", ")
            );
        }
    }
    let consent = ConsentStore::load(&dir.join("consent.json"), configured);
    let prompts = Arc::new(Prompts::new(
        config
            .pinentry
            .clone()
            .unwrap_or_else(|| PathBuf::from("pinentry")),
    ));
    let socket = kyso_proto::client::default_socket();
    let documents =
        kyso_bridge::documents::Settings::new(kyso_bridge::config::documents(&config)?)?;
    let sites = Sites::new(socket.clone(), prompts.clone(), Arc::new(documents));

    let std_listener = match systemd_listener() {
        Some(l) => l,
        None => std::net::TcpListener::bind(&config.bridge.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", config.bridge.listen))?,
    };
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: the bridge serves this machine only"
        ));
    }
    let settings = SettingsPage::new(
        addr.port(),
        socket,
        kyso_state.join(kyso_proto::audit::FILE_NAME),
    );
    let bridge = Arc::new(Bridge::new(tls, consent, prompts, sites, settings));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
        tracing::info!(%addr, "kyso-bridge listening");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            () = server::serve(bridge, listener) => {}
            _ = term.recv() => tracing::info!("stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
        }
        Ok::<(), String>(())
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
