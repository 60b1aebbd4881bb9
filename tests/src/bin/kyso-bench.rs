//! kyso-bench: SoftHSM2 in process against the same token through libkyso_pkcs11.so + kysod
//! (and through p11-kit's remoting when it is installed), measured side by side in one run,
//! printing figures and ratios, and the CPU time per signature of each contender (the
//! application with its daemon). Not a test: the machines are shared and noisy, so it reports
//! rather than judges.
//!
//! Run: `cargo run --release -p kyso-tests --bin kyso-bench [-- --seconds N]`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use kyso_tests::{Daemon, DaemonConfig, Fixture, Module};

const P11KIT_CLIENT: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so";

struct Figures {
    trivial_us: f64,
    rsa: [f64; 2],
    ecdsa: [f64; 2],
    /// CPU time and signatures of each signing figure (RSA 1T, 2T, ECDSA 1T, 2T), summed over
    /// the rounds.
    cpu: [Cpu; 4],
}

/// CPU time spent on signatures, by the application and its daemon, and how many were made.
#[derive(Default, Clone, Copy)]
struct Cpu {
    seconds: f64,
    signatures: u64,
}

impl Cpu {
    /// Counts one more round of a figure in.
    fn add(&mut self, round: Cpu) {
        self.seconds += round.seconds;
        self.signatures += round.signatures;
    }

    fn per_signature_us(&self) -> f64 {
        self.seconds / self.signatures.max(1) as f64 * 1e6
    }
}

/// One way of reaching the token: its name, its module, and the process serving it, if any
/// (kysod, p11-kit's server), whose CPU time counts with the application's.
type Contender<'a> = (&'a str, &'a Module, Option<u32>);

fn main() {
    let seconds: f64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let window = Duration::from_secs_f64(seconds);

    let fx = Fixture::new();
    let serial = fx.serial_a().to_string();
    // As installed: kysod logs at its default level (debug would write a line per signature).
    let daemon = Daemon::start_with(
        &fx,
        DaemonConfig {
            log: "info".into(),
            ..DaemonConfig::default()
        },
    );

    let direct = Module::softhsm(&fx);
    let shim = Module::shim(&daemon);
    let p11kit = P11KitServer::start(&fx);
    let remote = p11kit.as_ref().map(|s| {
        std::env::set_var(
            "P11_KIT_SERVER_ADDRESS",
            format!("unix:path={}", s.socket.display()),
        );
        Module::load(Path::new(P11KIT_CLIENT))
    });

    // KYSO_BENCH_VERSUS=DIR adds another build's kysod and shim (DIR/kysod,
    // DIR/libkyso_pkcs11.so) as a contender taking turns with this one, for comparing a change
    // with what it changes in one run: two runs apart differ by more than most changes do.
    let versus = std::env::var_os("KYSO_BENCH_VERSUS").map(|dir| {
        let dir = PathBuf::from(dir);
        let daemon = Daemon::start_with(
            &fx,
            DaemonConfig {
                log: "info".into(),
                program: Some(dir.join("kysod")),
                dir: "kysod-versus".into(),
                ..DaemonConfig::default()
            },
        );
        let shim = Module::shim_from(&dir.join("libkyso_pkcs11.so"), daemon.socket());
        (daemon, shim)
    });
    let mut contenders: Vec<Contender> = vec![
        ("SoftHSM2 in process", &direct, None),
        ("kyso shim + kysod", &shim, daemon.pid()),
    ];
    if let Some((daemon, shim)) = &versus {
        contenders.push(("kyso versus", shim, daemon.pid()));
    }
    match &remote {
        Some(remote) => contenders.push((
            "p11-kit remote",
            remote,
            p11kit.as_ref().map(|s| s.child.id()),
        )),
        None => println!("(p11-kit server or {P11KIT_CLIENT} not found: p11-kit column skipped)"),
    }
    // KYSO_BENCH_ONLY=shim (a substring of the names) keeps only some contenders, for profiling.
    if let Ok(only) = std::env::var("KYSO_BENCH_ONLY") {
        contenders.retain(|(name, _, _)| name.contains(only.as_str()));
    }
    println!(
        "kyso-bench: {seconds} s per figure and contender, in {ROUNDS} interleaved rounds; token \"NGUYEN VAN A\" (SoftHSM2); {} CPUs",
        cpus()
    );
    let rows = measure_all(&contenders, &serial, window);
    let base = &rows[0].1;
    println!();
    println!(
        "{:<22} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "", "trivial call", "RSA-2048 1T", "RSA-2048 2T", "ECDSA P-256 1T", "ECDSA P-256 2T"
    );
    for (name, f) in &rows {
        println!(
            "{:<22} {:>11.1} µs {:>12.0}/s {:>12.0}/s {:>12.0}/s {:>12.0}/s",
            name, f.trivial_us, f.rsa[0], f.rsa[1], f.ecdsa[0], f.ecdsa[1]
        );
    }
    for (name, f) in rows.iter().skip(1) {
        println!(
            "{:<22} {:>11.1} µs {:>13.2}× {:>13.2}× {:>13.2}× {:>13.2}×",
            format!("{name} / direct"),
            f.trivial_us - base.trivial_us,
            f.rsa[0] / base.rsa[0],
            f.rsa[1] / base.rsa[1],
            f.ecdsa[0] / base.ecdsa[0],
            f.ecdsa[1] / base.ecdsa[1]
        );
    }
    println!(
        "targets for the shim: trivial call ≤ 10 µs; RSA ≥ 0.95×; ECDSA ≥ 0.85× (1 and 2 threads)"
    );
    // With as many signing threads as CPUs the rate is bound by the CPU each signature costs,
    // which the host's load moves less than the rate itself.
    println!();
    println!("CPU per signature, the application's and its daemon's (µs):");
    for (name, f) in &rows {
        print!("{name:<22} {:>14}", "");
        for cpu in &f.cpu {
            print!(" {:>11.1} µs", cpu.per_signature_us());
        }
        println!();
    }
    for (name, f) in rows.iter().skip(1) {
        print!("{:<22} {:>14}", format!("direct / {name}"), "");
        for (own, direct) in f.cpu.iter().zip(&base.cpu) {
            print!(
                " {:>13.2}×",
                direct.per_signature_us() / own.per_signature_us()
            );
        }
        println!();
    }
    drop(remote);
    drop(p11kit);
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Rounds each figure is split into. The contenders take turns within every round, so a
/// change in the machine's load during the run touches them all alike.
const ROUNDS: u32 = 10;

fn measure_all<'a>(
    contenders: &[Contender<'a>],
    serial: &str,
    window: Duration,
) -> Vec<(&'a str, Figures)> {
    // Log in once per module: PKCS#11 login is per application and outlives these sessions.
    let logins: Vec<_> = contenders
        .iter()
        .map(|(_, m, _)| {
            let s = m
                .ctx()
                .open_rw_session(m.slot_with_serial(serial))
                .expect("open session");
            s.login(UserType::User, Some(&AuthPin::new("123456".into())))
                .expect("login");
            s
        })
        .collect();
    let slice = window / ROUNDS;
    let share = 1.0 / ROUNDS as f64;
    let mut figures: Vec<Figures> = contenders
        .iter()
        .map(|_| Figures {
            trivial_us: 0.0,
            rsa: [0.0; 2],
            ecdsa: [0.0; 2],
            cpu: [Cpu::default(); 4],
        })
        .collect();
    for _ in 0..ROUNDS {
        for ((name, m, server), f) in contenders.iter().zip(figures.iter_mut()) {
            if wanted("trivial") {
                f.trivial_us += trivial_call(m, serial) * share;
            }
            for t in 0..2 {
                if !wanted(&format!("rsa-{}t", t + 1)) {
                    continue;
                }
                let (rate, cpu, tenths) = sign_rate(
                    m,
                    *server,
                    serial,
                    0x01,
                    || Mechanism::Sha256RsaPkcs,
                    &[0x5a; 1000],
                    t + 1,
                    slice,
                );
                log_round(&format!("rsa-{}t", t + 1), name, rate, &tenths);
                f.rsa[t] += rate * share;
                f.cpu[t].add(cpu);
            }
            for t in 0..2 {
                if !wanted(&format!("ecdsa-{}t", t + 1)) {
                    continue;
                }
                let (rate, cpu, tenths) = sign_rate(
                    m,
                    *server,
                    serial,
                    0x02,
                    || Mechanism::Ecdsa,
                    &[0x5a; 32],
                    t + 1,
                    slice,
                );
                log_round(&format!("ecdsa-{}t", t + 1), name, rate, &tenths);
                f.ecdsa[t] += rate * share;
                f.cpu[2 + t].add(cpu);
            }
        }
    }
    drop(logins);
    contenders
        .iter()
        .map(|(name, _, _)| *name)
        .zip(figures)
        .collect()
}

/// `KYSO_BENCH_ROUNDS=1` prints each round's rate to stderr, and the rate in each tenth of
/// it, to see how the rounds of one run spread (the host's load, a contender's threads
/// settling differently from round to round) and spells within a round (two signing threads
/// sharing one CPU while the other idles show as tenths at about half the rate).
fn log_round(figure: &str, contender: &str, rate: f64, tenths: &[u64]) {
    if std::env::var_os("KYSO_BENCH_ROUNDS").is_some_and(|v| v == "1") {
        eprintln!("round {figure} {contender}: {rate:.0}/s, by tenths {tenths:?}");
    }
}

/// Whether to measure `figure` (`trivial`, `rsa-1t`, `rsa-2t`, `ecdsa-1t`, `ecdsa-2t`):
/// `KYSO_BENCH_FIGURES=ecdsa-1t,ecdsa-2t` keeps only some figures, for profiling (the others
/// print as 0).
fn wanted(figure: &str) -> bool {
    match std::env::var("KYSO_BENCH_FIGURES") {
        Ok(list) => list.split(',').any(|f| f.trim() == figure),
        Err(_) => true,
    }
}

/// Median time of one `C_GetSessionInfo`, over 4 000 calls after a warm-up.
fn trivial_call(module: &Module, serial: &str) -> f64 {
    let session = module.session(serial);
    for _ in 0..500 {
        session.get_session_info().expect("session info");
    }
    let mut times: Vec<Duration> = (0..4_000)
        .map(|_| {
            let t = Instant::now();
            session.get_session_info().expect("session info");
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e6
}

/// Signatures per second with `threads` threads, each on its own session, for `window`, the
/// CPU time this process and `server` (the daemon serving the module, if any) spent, and the
/// rate in each tenth of the window.
///
/// The threads sign for a tenth of the window before it starts (`warm_up`): the ten rounds
/// start new threads each time, and the scheduler often puts both on one CPU and takes a few
/// milliseconds to part them, longer with kyso, where the application's threads and kysod's
/// connection threads move as pairs (~8 ms in one `perf` trace). Counted from the start, at
/// the default 0.2 s a round, RSA 2T signed in the first tenth at 0.77–0.93 of its rate over
/// the rest of the round with kyso and 0.93–0.97 in process (four runs): ~2 % of kyso's
/// figure and ~0.5 % of SoftHSM2's went to a cost a signing job pays once.
#[allow(clippy::too_many_arguments)]
fn sign_rate(
    module: &Module,
    server: Option<u32>,
    serial: &str,
    id: u8,
    mech: fn() -> Mechanism<'static>,
    data: &[u8],
    threads: usize,
    window: Duration,
) -> (f64, Cpu, Vec<u64>) {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let step = window / 10;
    let mut tenths = Vec::with_capacity(10);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (count, stop) = (count.clone(), stop.clone());
            scope.spawn(move || {
                let session = module.session(serial);
                let key = *session
                    .find_objects(&[
                        Attribute::Class(ObjectClass::PRIVATE_KEY),
                        Attribute::Id(vec![id]),
                    ])
                    .expect("find key")
                    .first()
                    .expect("key present");
                let mech = mech();
                while !stop.load(Ordering::Relaxed) {
                    let sig = session.sign(&mech, key, data).expect("sign");
                    assert!(!sig.is_empty());
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let warm_up = step;
        std::thread::sleep(warm_up);
        let cpu_before = cpu_seconds(server);
        let start = Instant::now();
        let first = count.load(Ordering::Relaxed);
        let mut counted = first;
        for _ in 0..10 {
            std::thread::sleep(step);
            let now = count.load(Ordering::Relaxed);
            tenths.push(((now - counted) as f64 / step.as_secs_f64()).round() as u64);
            counted = now;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = Cpu {
            seconds: cpu_seconds(server) - cpu_before,
            signatures: counted - first,
        };
        stop.store(true, Ordering::Relaxed);
        ((counted - first) as f64 / elapsed, cpu, tenths)
    })
}

/// CPU time (user and system, s) this process and `server` have used so far: the server's
/// with its children's (p11-kit's server forks one per connection), from `/proc/PID/stat` in
/// clock ticks (summed over the rounds, a few ticks either way do not matter).
fn cpu_seconds(server: Option<u32>) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let own = stat_ticks("self", false).unwrap_or(0.0);
    let served = server.map_or(0.0, |pid| tree_ticks(pid, 0));
    (own + served) / hz.max(1.0)
}

/// A process's user and system ticks, with those of its children it waited for if `reaped`.
fn stat_ticks(pid: &str, reaped: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let take = if reaped { 11..15 } else { 11..13 };
    fields
        .get(take)?
        .iter()
        .map(|f| f.parse::<f64>().ok())
        .sum()
}

/// The ticks of `pid` and of every process below it.
fn tree_ticks(pid: u32, depth: u32) -> f64 {
    let own = stat_ticks(&pid.to_string(), true).unwrap_or(0.0);
    if depth > 8 {
        return own;
    }
    let children: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    own + children
        .into_iter()
        .map(|c| tree_ticks(c, depth + 1))
        .sum::<f64>()
}

/// `p11-kit server` exporting the fixture's token on a socket of its own.
struct P11KitServer {
    child: Child,
    socket: PathBuf,
}

impl P11KitServer {
    fn start(fx: &Fixture) -> Option<P11KitServer> {
        if !Path::new(P11KIT_CLIENT).exists() {
            return None;
        }
        let socket = fx.dir().join("p11-kit.sock");
        let child = Command::new("p11-kit")
            .args([
                "server",
                "-f",
                "--provider",
                &fx.softhsm_module().display().to_string(),
                "-n",
            ])
            .arg(&socket)
            .arg("pkcs11:token=NGUYEN%20VAN%20A")
            .env("SOFTHSM2_CONF", fx.softhsm_conf())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let t = Instant::now();
        while !socket.exists() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        socket.exists().then_some(P11KitServer { child, socket })
    }
}

impl Drop for P11KitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
