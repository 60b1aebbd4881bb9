//! kyso-bench: what an application feels through kyso, beside the same SoftHSM2 token loaded in
//! process and reached through p11-kit's remoting (`p11-kit server` + `p11-kit-client.so`),
//! measured side by side in one run through the modules' public PKCS#11 interface only.
//!
//! It prints two Markdown tables (calls; blocked calls and idle daemons) and one line per
//! target saying whether kyso meets it. It reports and does not judge: the exit status is 0
//! whenever it could run. `docs/benchmarks.md` says what each figure means.
//!
//! ```text
//! cargo build --release -p kyso-daemon -p kyso-pkcs11 -p kyso-slow-module
//! cargo run --release -p kyso-tests --bin kyso-bench [-- --seconds S] [--rounds N] [--quick]
//! ```
//!
//! The blocked-call figures run in child processes (this binary again, `child-wait` and
//! `child-sign`), so that the application's CPU time is that of a process doing nothing else.

use std::collections::HashMap;
use std::ffi::{c_void, OsString};
use std::io::{BufRead, BufReader};
use std::os::unix::thread::JoinHandleExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cryptoki_sys::{
    CKA_CLASS, CKA_ID, CKF_OS_LOCKING_OK, CKF_SERIAL_SESSION, CKM_ECDSA, CKM_SHA256_RSA_PKCS,
    CKO_PRIVATE_KEY, CKR_OK, CKU_USER, CK_ATTRIBUTE, CK_C_INITIALIZE_ARGS, CK_MECHANISM_TYPE,
    CK_OBJECT_CLASS, CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID, CK_TOKEN_INFO,
    CK_ULONG,
};
use kyso_tests::util::sha256;
use kyso_tests::{
    shim_path, target_dir, Daemon, DaemonConfig, Fixture, RawModule, ID_EC, ID_RSA, SOFTHSM_MODULE,
    USER_PIN,
};

const P11KIT_CLIENT: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so";
/// How long the application blocks in `C_WaitForSlotEvent`.
const WAIT: Duration = Duration::from_secs(5);
/// How long the test module holds the application's `C_Sign`.
const HOLD: Duration = Duration::from_secs(2);
/// The targets' bounds.
const TRIVIAL_VS_P11KIT: f64 = 1.1;
const BLOCKED_CPU: Duration = Duration::from_millis(20);
const IDLE_WAKEUPS: f64 = 1.0;
/// How long the daemons rest before their wake-ups are counted: after a load, kysod syncs
/// its audit journal and ends the threads of connections closed, for about a second.
const SETTLE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["child-wait", module] => child_wait(Path::new(module)),
        ["child-sign", module, serial] => child_sign(Path::new(module), serial),
        _ => match Options::parse(&args) {
            Some(options) => {
                bench(&options);
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("usage: kyso-bench [--seconds S] [--rounds N] [--quick]");
                ExitCode::from(2)
            }
        },
    }
}

struct Options {
    /// Length of one measurement (one figure, one contender, one round).
    window: Duration,
    /// Rounds; the contenders take turns within each, and each figure is their median.
    rounds: usize,
    /// How long the daemons' wake-ups are counted, in each state.
    idle: Duration,
}

impl Options {
    fn parse(args: &[String]) -> Option<Options> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut options = Options {
            window: Duration::from_millis(if quick { 200 } else { 500 }),
            rounds: if quick { 3 } else { 7 },
            idle: Duration::from_secs(if quick { 3 } else { 10 }),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--seconds" => {
                    options.window = Duration::try_from_secs_f64(next(&mut args)?).ok()?
                }
                "--rounds" => options.rounds = next::<usize>(&mut args)?.max(1),
                "--quick" => {}
                _ => return None,
            }
        }
        Some(options)
    }
}

fn next<T: std::str::FromStr>(args: &mut std::slice::Iter<String>) -> Option<T> {
    args.next()?.parse().ok()
}

/// Where the contenders sit in every list of results.
const IN_PROCESS: usize = 0;
const KYSO: usize = 1;
const P11KIT: usize = 2;

/// One way of reaching the token: a module, and the environment that points it at its
/// server (or, in process, at the fixture's token directory).
struct Contender {
    name: &'static str,
    module: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

fn bench(options: &Options) {
    let load_before = load_average();
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
    // The same kysod with its audit journal in memory (tmpfs): kyso's transport and work
    // without the disk's sync, which kysod waits for before it hands out each signature.
    let shm = tempfile::Builder::new()
        .prefix("kyso-bench-")
        .tempdir_in("/dev/shm")
        .ok();
    let in_memory = shm.as_ref().map(|shm| {
        Daemon::start_with(
            &fx,
            DaemonConfig {
                log: "info".into(),
                dir: "kysod-tmpfs".into(),
                state_dir: Some(shm.path().to_path_buf()),
                ..DaemonConfig::default()
            },
        )
    });
    let p11kit = P11KitServer::start(&fx, "p11-kit", Path::new(SOFTHSM_MODULE), &[]);
    if p11kit.is_none() {
        println!("(p11-kit server or {P11KIT_CLIENT} not found: no p11-kit figures)");
    }
    let mut contenders = vec![
        Contender {
            name: "SoftHSM2 in process",
            module: SOFTHSM_MODULE.into(),
            env: vec![("SOFTHSM2_CONF", fx.softhsm_conf().into())],
        },
        Contender {
            name: "kyso",
            module: shim_path(),
            env: vec![("KYSO_SOCKET", daemon.socket().into())],
        },
    ];
    if let Some(server) = &p11kit {
        contenders.push(Contender {
            name: "p11-kit",
            module: P11KIT_CLIENT.into(),
            env: vec![("P11_KIT_SERVER_ADDRESS", server.address().into())],
        });
    }
    if let Some(in_memory) = &in_memory {
        // A copy of the shim: the same file would be the same library, already initialised.
        let copy = fx.subdir("shim-copy").join("libkyso_pkcs11.so");
        std::fs::copy(shim_path(), &copy).expect("copy the shim");
        contenders.push(Contender {
            name: "kyso, journal on tmpfs",
            module: copy,
            env: vec![("KYSO_SOCKET", in_memory.socket().into())],
        });
    }
    // The process serving each contender, whose wake-ups are counted.
    let mut servers = vec![None, daemon.pid()];
    if let Some(server) = &p11kit {
        servers.push(Some(server.child.id()));
    }
    servers.extend(in_memory.iter().map(Daemon::pid));

    progress(&format!("idle daemons, no client ({:?})", options.idle));
    let idle_alone = wakeups_per_second(&servers, options.idle);

    let tokens: Vec<Token> = contenders
        .iter()
        .map(|c| {
            for (key, value) in &c.env {
                std::env::set_var(key, value);
            }
            Token::open(&c.module, &serial)
        })
        .collect();
    // PKCS#11 login is per application and token: one session per module stays logged in
    // for the whole run, and every session opened after it is logged in too.
    let logins: Vec<Session> = tokens
        .iter()
        .map(|t| {
            let s = t.session();
            t.login(&s);
            s
        })
        .collect();

    let calls = measure_calls(&tokens, options);

    progress(&format!(
        "idle daemons, one client connected and logged in ({:?})",
        options.idle
    ));
    let idle_client = wakeups_per_second(&servers, options.idle);
    drop(logins);
    drop(tokens);

    let waits: Vec<Blocked> = contenders
        .iter()
        .map(|c| {
            progress(&format!("C_WaitForSlotEvent(0) for {WAIT:?}, {}", c.name));
            blocked_wait(&c.module, &c.env)
        })
        .collect();
    let held = held_signs(&fx, &serial, contenders.len());

    let results = Results {
        names: contenders.iter().map(|c| c.name).collect(),
        calls,
        waits,
        held,
        idle: [idle_alone, idle_client],
        load: [load_before, load_average()],
    };
    report(&results, options);
}

fn progress(what: &str) {
    eprintln!("kyso-bench: {what}…");
}

// ---- Calls: a trivial one, and signatures with one and two threads ----

#[derive(Clone, Copy)]
enum Figure {
    Trivial,
    Sign(Algorithm, usize),
}

#[derive(Clone, Copy)]
enum Algorithm {
    Rsa,
    Ecdsa,
}

const FIGURES: [Figure; 5] = [
    Figure::Trivial,
    Figure::Sign(Algorithm::Rsa, 1),
    Figure::Sign(Algorithm::Rsa, 2),
    Figure::Sign(Algorithm::Ecdsa, 1),
    Figure::Sign(Algorithm::Ecdsa, 2),
];

impl Figure {
    fn label(self) -> String {
        match self {
            Figure::Trivial => "trivial call (`C_GetSessionInfo`), µs".into(),
            Figure::Sign(alg, threads) => format!(
                "{} sign, {threads} thread{}, signatures/s",
                alg.name(),
                if threads == 1 { "" } else { "s" }
            ),
        }
    }
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Rsa => "RSA-2048",
            Algorithm::Ecdsa => "ECDSA P-256",
        }
    }

    /// The key's `CKA_ID`, the mechanism, what is signed and the signature's length.
    fn params(self) -> (&'static [u8], CK_MECHANISM_TYPE, Vec<u8>, usize) {
        match self {
            Algorithm::Rsa => (ID_RSA, CKM_SHA256_RSA_PKCS, vec![0x5a; 1000], 256),
            // CKM_ECDSA signs a hash made by the application, as most applications do.
            Algorithm::Ecdsa => (ID_EC, CKM_ECDSA, sha256(&[0x5a; 1000]), 64),
        }
    }
}

/// Every figure of every contender, `rounds` times, the contenders taking turns (starting
/// with a different one each round) so that a change in the machine's load touches them
/// alike; returns the medians, `[contender][figure]`.
fn measure_calls(tokens: &[Token], options: &Options) -> Vec<Vec<f64>> {
    let n = tokens.len();
    let mut samples = vec![vec![Vec::new(); FIGURES.len()]; n];
    for round in 0..options.rounds {
        progress(&format!("calls, round {} of {}", round + 1, options.rounds));
        for (f, figure) in FIGURES.iter().enumerate() {
            for i in (0..n).map(|k| (k + round) % n) {
                let value = match *figure {
                    Figure::Trivial => trivial_call_us(&tokens[i], options.window),
                    Figure::Sign(alg, threads) => {
                        sign_rate(&tokens[i], alg, threads, options.window)
                    }
                };
                samples[i][f].push(value);
            }
        }
    }
    samples
        .into_iter()
        .map(|per_figure| per_figure.into_iter().map(median).collect())
        .collect()
}

/// Median time of one `C_GetSessionInfo`, in µs, over calls made for `window` (at most
/// 200 000), after 1 000 unmeasured ones.
fn trivial_call_us(token: &Token, window: Duration) -> f64 {
    let session = token.session();
    let info = || token.check(token.raw.get_session_info(session.0).0, "C_GetSessionInfo");
    for _ in 0..1_000 {
        info();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < window && times.len() < 200_000 {
        let t = Instant::now();
        info();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(times)
}

/// Signatures per second made by `threads` threads for `window`, each on a session of its
/// own, each signature a `C_SignInit` and a `C_Sign` into a buffer large enough for it.
fn sign_rate(token: &Token, alg: Algorithm, threads: usize, window: Duration) -> f64 {
    let (id, mechanism, data, len) = alg.params();
    let sessions: Vec<Session> = (0..threads).map(|_| token.session()).collect();
    let key = token.private_key(&sessions[0], id);
    let count = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let start = Instant::now();
        for session in &sessions {
            let (count, stop, data) = (&count, &stop, &data);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    token.sign(session, mechanism, key, data, len);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(window);
        let made = count.load(Ordering::Relaxed);
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        made as f64 / elapsed.as_secs_f64()
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

// ---- Idle daemons ----

/// Context switches per second of each server (all threads of the process and of the
/// processes below it: p11-kit's server forks one per connection), counted over the same
/// `window` after [`SETTLE`]. A thread that sleeps and wakes counts one switch, so this
/// counts how often the daemon wakes up. A thread that ends within the window takes its count
/// with it: it counts once (it woke at least to end); a thread that starts counts all its
/// switches.
fn wakeups_per_second(servers: &[Option<u32>], window: Duration) -> Vec<Option<f64>> {
    std::thread::sleep(SETTLE);
    let before: Vec<_> = servers.iter().map(|s| s.map(context_switches)).collect();
    let start = Instant::now();
    std::thread::sleep(window);
    let seconds = start.elapsed().as_secs_f64();
    servers
        .iter()
        .zip(before)
        .map(|(server, before)| {
            let (before, after) = (before?, context_switches((*server)?));
            let switches: u64 = before
                .iter()
                .map(|(tid, n)| after.get(tid).map_or(1, |m| m.saturating_sub(*n)))
                .sum::<u64>()
                + after
                    .iter()
                    .filter(|(tid, _)| !before.contains_key(tid))
                    .map(|(_, m)| m)
                    .sum::<u64>();
            Some(switches as f64 / seconds)
        })
        .collect()
}

/// `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` of every thread of `pid` and of
/// its descendants, by thread id.
fn context_switches(pid: u32) -> HashMap<u32, u64> {
    let mut counts = HashMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten();
    for task in tasks {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        counts.insert(tid, switches);
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            counts.extend(context_switches(child));
        }
    }
    counts
}

// ---- Blocked calls, measured in child processes ----

/// What a child application measured about its one blocking call.
struct Blocked {
    /// The call's return value and how long it took, when it returned within the window.
    returned: Option<(CK_RV, Duration)>,
    /// CPU time of the whole application process while the call lasted (or over the window).
    process_cpu: Duration,
    /// CPU time of the calling thread.
    thread_cpu: Duration,
}

impl Blocked {
    /// The line a child prints.
    fn line(&self) -> String {
        let (rv, took) = match self.returned {
            Some((rv, took)) => (format!("{rv:#x}"), took.as_micros().to_string()),
            None => ("-".into(), "-".into()),
        };
        format!(
            "blocked {rv} {took} {} {}",
            self.process_cpu.as_micros(),
            self.thread_cpu.as_micros()
        )
    }

    fn parse(line: &str) -> Option<Blocked> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ["blocked", rv, took, process, thread] = fields[..] else {
            return None;
        };
        let micros = |s: &str| s.parse().ok().map(Duration::from_micros);
        let returned = match (rv, took) {
            ("-", "-") => None,
            _ => Some((
                CK_RV::from_str_radix(rv.trim_start_matches("0x"), 16).ok()?,
                micros(took)?,
            )),
        };
        Some(Blocked {
            returned,
            process_cpu: micros(process)?,
            thread_cpu: micros(thread)?,
        })
    }
}

/// Runs `kyso-bench child-wait MODULE` with `env` and reads what it measured.
fn blocked_wait(module: &Path, env: &[(&str, OsString)]) -> Blocked {
    let child = spawn_child(&["child-wait".as_ref(), module.as_os_str()], env);
    read_child(child)
}

/// The `C_Sign` held by `tests/slow-module` for [`HOLD`], for each contender: the test module
/// loaded in process, served by a kysod of its own, served by a p11-kit server of its own.
/// Empty when the test module is not built.
fn held_signs(fx: &Fixture, serial: &str, contenders: usize) -> Vec<Blocked> {
    let slow = target_dir().join("libkyso_slow_module.so");
    if !slow.exists() {
        println!(
            "({} not built: no held-call figures; cargo build --release -p kyso-slow-module)",
            slow.display()
        );
        return Vec::new();
    }
    let gate = fx.dir().join("gate");
    let gated = [
        ("KYSO_SLOW_MODULE_GATE", gate.clone().into_os_string()),
        ("SOFTHSM2_CONF", fx.softhsm_conf().into_os_string()),
    ];
    let daemon = Daemon::start_with(
        fx,
        DaemonConfig {
            log: "info".into(),
            modules: vec![(slow.clone(), true)],
            dir: "kysod-slow".into(),
            env: vec![(
                "KYSO_SLOW_MODULE_GATE".into(),
                gate.to_string_lossy().into_owned(),
            )],
            ..DaemonConfig::default()
        },
    );
    let p11kit = (contenders > P11KIT)
        .then(|| P11KitServer::start(fx, "p11-kit-slow", &slow, &gated))
        .flatten();
    let mut runs = vec![
        Contender {
            name: "the test module in process",
            module: slow.clone(),
            env: gated.to_vec(),
        },
        Contender {
            name: "kyso",
            module: shim_path(),
            env: vec![("KYSO_SOCKET", daemon.socket().into())],
        },
    ];
    if let Some(server) = &p11kit {
        runs.push(Contender {
            name: "p11-kit",
            module: P11KIT_CLIENT.into(),
            env: vec![("P11_KIT_SERVER_ADDRESS", server.address().into())],
        });
    }
    runs.iter()
        .map(|c| {
            progress(&format!("C_Sign held {HOLD:?}, {}", c.name));
            held_sign(&gate, &c.module, serial, &c.env)
        })
        .collect()
}

/// Runs `kyso-bench child-sign MODULE SERIAL` with `env`, lets the test module hold its
/// `C_Sign` for [`HOLD`] (creates the gate it claims, removes the claimed gate), and reads
/// what the child measured.
fn held_sign(gate: &Path, module: &Path, serial: &str, env: &[(&str, OsString)]) -> Blocked {
    let held = gate.with_extension("held");
    std::fs::write(gate, b"").expect("create the gate");
    let child = spawn_child(
        &["child-sign".as_ref(), module.as_os_str(), serial.as_ref()],
        env,
    );
    let start = Instant::now();
    while !held.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(HOLD);
    let _ = std::fs::remove_file(&held);
    let _ = std::fs::remove_file(gate);
    read_child(child)
}

fn spawn_child(args: &[&std::ffi::OsStr], env: &[(&str, OsString)]) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn kyso-bench child")
}

fn read_child(mut child: Child) -> Blocked {
    let out = child.stdout.take().expect("child stdout");
    let line = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("blocked "));
    let status = child.wait().expect("wait for child");
    line.as_deref()
        .and_then(Blocked::parse)
        .unwrap_or_else(|| panic!("kyso-bench child ({status}) printed no measurement"))
}

/// Child: loads `module` (its environment says where its server is), blocks one thread in
/// `C_WaitForSlotEvent(0)`, and prints the CPU time the process and that thread used over
/// [`WAIT`], or what the call returned if it returned.
fn child_wait(module: &Path) -> ExitCode {
    let token = Token::load(module);
    let wait = token
        .raw
        .list()
        .C_WaitForSlotEvent
        .expect("C_WaitForSlotEvent");
    let (tx, returned) = mpsc::channel();
    let process_before = process_cpu();
    let start = Instant::now();
    let waiter = std::thread::spawn(move || {
        let mut slot: CK_SLOT_ID = 0;
        // SAFETY: `slot` is a valid out-pointer; the reserved argument is NULL, as required.
        let rv = unsafe { wait(0, &mut slot, ptr::null_mut()) };
        let _ = tx.send((
            rv,
            start.elapsed(),
            thread_cpu(libc::CLOCK_THREAD_CPUTIME_ID),
        ));
    });
    let clock = thread_clock(&waiter);
    std::thread::sleep(WAIT);
    let process_cpu = process_cpu() - process_before;
    let blocked = match returned.try_recv() {
        Ok((rv, took, thread_cpu)) => Blocked {
            returned: Some((rv, took)),
            process_cpu,
            thread_cpu,
        },
        Err(_) => Blocked {
            returned: None,
            process_cpu,
            thread_cpu: clock.map_or(Duration::ZERO, thread_cpu),
        },
    };
    println!("{}", blocked.line());
    // Without C_Finalize: the waiter may still be blocked, and the process ends here.
    std::process::exit(0)
}

/// Child: loads `module`, logs in on the token `serial`, and makes one RSA signature, which
/// the test module holds; prints the CPU time the process and the thread used in `C_Sign`.
fn child_sign(module: &Path, serial: &str) -> ExitCode {
    let token = Token::open(module, serial);
    let session = token.session();
    token.login(&session);
    let key = token.private_key(&session, ID_RSA);
    token.check(
        token.raw.sign_init(session.0, CKM_SHA256_RSA_PKCS, key),
        "C_SignInit",
    );
    let process_before = process_cpu();
    let thread_before = thread_cpu(libc::CLOCK_THREAD_CPUTIME_ID);
    let start = Instant::now();
    let signed = token.raw.sign(session.0, b"held", Some(256));
    let blocked = Blocked {
        returned: Some((signed.rv, start.elapsed())),
        process_cpu: process_cpu() - process_before,
        thread_cpu: thread_cpu(libc::CLOCK_THREAD_CPUTIME_ID) - thread_before,
    };
    println!("{}", blocked.line());
    ExitCode::SUCCESS
}

/// User and system CPU time of this process so far.
fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the rusage it is given; RUSAGE_SELF cannot fail.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The CPU-time clock of a running thread.
fn thread_clock<T>(thread: &std::thread::JoinHandle<T>) -> Option<libc::clockid_t> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the thread is not joined yet, so its pthread_t is valid; `clock` is an
    // out-pointer.
    let rc = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
    (rc == 0).then_some(clock)
}

/// The time of a CPU-time clock (zero if it cannot be read).
fn thread_cpu(clock: libc::clockid_t) -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer.
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

// ---- Report ----

/// Everything measured, by contender (in the order [`IN_PROCESS`], [`KYSO`], [`P11KIT`]).
struct Results<'a> {
    names: Vec<&'a str>,
    /// Medians, by figure (see [`FIGURES`]).
    calls: Vec<Vec<f64>>,
    waits: Vec<Blocked>,
    /// Empty when the test module is not built.
    held: Vec<Blocked>,
    /// The daemon's wake-ups per second with no client, and with one idle client.
    idle: [Vec<Option<f64>>; 2],
    /// The machine's load average over a minute, before and after the run.
    load: [String; 2],
}

fn report(results: &Results, options: &Options) {
    println!();
    println!(
        "kyso-bench: {} rounds of {:?} per figure and contender, medians; {} CPUs, load average {} before the run, {} after",
        options.rounds,
        options.window,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        results.load[0],
        results.load[1]
    );
    println!();
    calls_table(results);
    println!();
    blocked_table(results);
    println!();
    targets(results);
}

fn calls_table(r: &Results) {
    let has_p11kit = r.names.get(P11KIT) == Some(&"p11-kit");
    let mut header = format!("| call | {} | kyso / in process |", r.names.join(" | "));
    let mut rule = format!("|---|{}---:|", "---:|".repeat(r.names.len()));
    if has_p11kit {
        header.push_str(" kyso / p11-kit |");
        rule.push_str("---:|");
    }
    println!("{header}\n{rule}");
    for (f, figure) in FIGURES.iter().enumerate() {
        let values: Vec<String> = r.calls.iter().map(|c| number(c[f])).collect();
        let mut row = format!("| {} | {} |", figure.label(), values.join(" | "));
        let kyso = r.calls[KYSO][f];
        row.push_str(&format!(" {} |", ratio(kyso / r.calls[IN_PROCESS][f])));
        if has_p11kit {
            row.push_str(&format!(" {} |", ratio(kyso / r.calls[P11KIT][f])));
        }
        println!("{row}");
    }
}

fn blocked_table(r: &Results) {
    println!("| blocked call, idle daemon | {} |", r.names.join(" | "));
    println!("|---|{}", "---:|".repeat(r.names.len()));
    let row = |label: &str, cell: &dyn Fn(usize) -> String| {
        let cells: Vec<String> = (0..r.names.len()).map(cell).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    row(
        &format!(
            "`C_WaitForSlotEvent(0)` for {}: application CPU",
            secs(WAIT)
        ),
        &|i| blocked_cell(&r.waits[i]),
    );
    if !r.held.is_empty() {
        row(
            &format!(
                "`C_Sign` held {} by the module: application CPU",
                secs(HOLD)
            ),
            &|i| r.held.get(i).map_or("–".into(), blocked_cell),
        );
    }
    for (label, idle) in ["no client", "one idle client"].iter().zip(&r.idle) {
        row(&format!("daemon wake-ups/s, {label}"), &|i| {
            idle[i].map_or("–".into(), |w| format!("{w:.1}"))
        });
    }
}

fn targets(r: &Results) {
    if r.names.get(P11KIT) == Some(&"p11-kit") {
        // The ratio, with both figures.
        let versus = |f: usize| {
            let (kyso, p11kit) = (r.calls[KYSO][f], r.calls[P11KIT][f]);
            let unit = if f == 0 { " µs" } else { "/s" };
            let text = format!(
                "{}: kyso {}{unit}, p11-kit {}{unit}",
                ratio(kyso / p11kit),
                number(kyso),
                number(p11kit)
            );
            (kyso / p11kit, text)
        };
        let (trivial, text) = versus(0);
        target(
            &format!("kyso's trivial call takes at most {TRIVIAL_VS_P11KIT}× p11-kit's time"),
            trivial <= TRIVIAL_VS_P11KIT,
            &text,
        );
        for (f, figure) in FIGURES.iter().enumerate() {
            if let Figure::Sign(alg, 2) = figure {
                let (ahead, text) = versus(f);
                target(
                    &format!("{} with 2 threads, kyso ahead of p11-kit", alg.name()),
                    ahead > 1.0,
                    &text,
                );
                if let Some(memory) = r.names.iter().position(|n| *n == "kyso, journal on tmpfs") {
                    let (kyso, p11kit) = (r.calls[memory][f], r.calls[P11KIT][f]);
                    println!(
                        "- the same with kysod's journal on tmpfs (no disk sync): {} ({}/s against {}/s)",
                        ratio(kyso / p11kit),
                        number(kyso),
                        number(p11kit)
                    );
                }
            }
        }
    }
    let limit = BLOCKED_CPU.as_millis();
    let wait = &r.waits[KYSO];
    target(
        &format!(
            "an application blocked {} in C_WaitForSlotEvent through kyso uses under {limit} ms of CPU",
            secs(WAIT)
        ),
        wait.returned.is_none() && wait.process_cpu < BLOCKED_CPU,
        &blocked_cell(wait),
    );
    if let Some(sign) = r.held.get(KYSO) {
        let held = sign
            .returned
            .is_some_and(|(rv, took)| rv == CKR_OK && took >= HOLD);
        target(
            &format!(
                "an application in a C_Sign held {} through kyso uses under {limit} ms of CPU",
                secs(HOLD)
            ),
            held && sign.process_cpu < BLOCKED_CPU,
            &blocked_cell(sign),
        );
    }
    let kysod: Vec<f64> = r.idle.iter().filter_map(|idle| idle[KYSO]).collect();
    let worst = kysod.iter().copied().fold(0.0, f64::max);
    target(
        &format!("an idle kysod wakes up less than {IDLE_WAKEUPS} time a second"),
        kysod.len() == 2 && worst < IDLE_WAKEUPS,
        &format!("{worst:.1}/s at most, with no client and with one"),
    );
}

/// The one-minute load average (`/proc/loadavg`): the machine may be shared.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn target(what: &str, met: bool, figure: &str) {
    let verdict = if met { "met" } else { "NOT met" };
    println!("- target: {what} — {verdict} ({figure})");
}

/// A blocked call's cell: the application's CPU time (the thread's in brackets), or what
/// the call returned at once.
fn blocked_cell(b: &Blocked) -> String {
    let cpu = format!("{} (thread {})", ms(b.process_cpu), ms(b.thread_cpu));
    match b.returned {
        Some((CKR_OK, took)) => format!("{cpu}, returned after {}", secs(took)),
        Some((rv, took)) => format!("returned {} after {}", rv_name(rv), ms(took)),
        None => cpu,
    }
}

fn rv_name(rv: CK_RV) -> String {
    match cryptoki::error::Rv::from(rv) {
        cryptoki::error::Rv::Error(e) => format!("{e:?} ({rv:#x})"),
        cryptoki::error::Rv::Ok => "CKR_OK".into(),
    }
}

fn number(x: f64) -> String {
    match x {
        x if x < 10.0 => format!("{x:.2}"),
        x if x < 100.0 => format!("{x:.1}"),
        x => format!("{x:.0}"),
    }
}

fn ratio(r: f64) -> String {
    format!("{}×", number(r))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{} s", (d.as_secs_f64() * 10.0).round() / 10.0)
}

// ---- A module through its raw function list ----

/// A PKCS#11 module loaded and initialised through the function list the harness's
/// [`RawModule`] gets, every call measured going through that same list: `p11-kit-client.so`
/// hands out a separate client, with a connection of its own, for each `C_GetFunctionList`.
/// Finalised on drop.
struct Token {
    raw: RawModule,
    slot: CK_SLOT_ID,
    path: PathBuf,
}

/// A session of a [`Token`]'s, closed on drop.
struct Session<'a>(CK_SESSION_HANDLE, &'a Token);

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.1.raw.close_session(self.0);
    }
}

impl Token {
    /// Loads and initialises `module` (`CKF_OS_LOCKING_OK`).
    fn load(module: &Path) -> Token {
        let raw = RawModule::load(module);
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: CKF_OS_LOCKING_OK,
            pReserved: ptr::null_mut(),
        };
        let initialize = raw.list().C_Initialize.expect("C_Initialize");
        // SAFETY: `args` is a valid CK_C_INITIALIZE_ARGS, alive for the call.
        let rv = unsafe { initialize((&mut args as *mut CK_C_INITIALIZE_ARGS).cast()) };
        let token = Token {
            raw,
            slot: 0,
            path: module.to_path_buf(),
        };
        token.check(rv, "C_Initialize");
        token
    }

    /// Loads and initialises `module`, on the slot of the token with serial number `serial`.
    fn open(module: &Path, serial: &str) -> Token {
        let mut token = Token::load(module);
        let (rv, slots) = token.raw.get_slot_list(true);
        token.check(rv, "C_GetSlotList");
        let get_info = token.raw.list().C_GetTokenInfo.expect("C_GetTokenInfo");
        token.slot = *slots
            .iter()
            .find(|&&slot| {
                // SAFETY: CK_TOKEN_INFO is plain data, for which all zeroes is a valid value.
                let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
                // SAFETY: `info` is a valid out-pointer.
                let rv = unsafe { get_info(slot, &mut info) };
                rv == CKR_OK && String::from_utf8_lossy(&info.serialNumber).trim() == serial
            })
            .unwrap_or_else(|| panic!("{}: no token {serial}", module.display()));
        token
    }

    /// `C_OpenSession` (read-only) on the token's slot.
    fn session(&self) -> Session<'_> {
        let open = self.raw.list().C_OpenSession.expect("C_OpenSession");
        let mut h: CK_SESSION_HANDLE = 0;
        // SAFETY: no application callback; `h` is a valid out-pointer.
        let rv = unsafe { open(self.slot, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut h) };
        self.check(rv, "C_OpenSession");
        Session(h, self)
    }

    /// `C_Login` of the user.
    fn login(&self, session: &Session) {
        let login = self.raw.list().C_Login.expect("C_Login");
        let pin = USER_PIN.as_bytes();
        // SAFETY: the PIN is read-only input of the given length (the C API takes a mutable
        // pointer but never writes through it).
        let rv = unsafe {
            login(
                session.0,
                CKU_USER,
                pin.as_ptr() as *mut u8,
                pin.len() as CK_ULONG,
            )
        };
        self.check(rv, "C_Login");
    }

    /// The private key with `CKA_ID` `id`.
    fn private_key(&self, session: &Session, id: &[u8]) -> CK_OBJECT_HANDLE {
        let list = self.raw.list();
        let class: CK_OBJECT_CLASS = CKO_PRIVATE_KEY;
        let mut template = [
            CK_ATTRIBUTE {
                type_: CKA_CLASS,
                pValue: &class as *const CK_OBJECT_CLASS as *mut c_void,
                ulValueLen: std::mem::size_of::<CK_OBJECT_CLASS>() as CK_ULONG,
            },
            CK_ATTRIBUTE {
                type_: CKA_ID,
                pValue: id.as_ptr() as *mut c_void,
                ulValueLen: id.len() as CK_ULONG,
            },
        ];
        let (mut key, mut found): (CK_OBJECT_HANDLE, CK_ULONG) = (0, 0);
        // SAFETY: the template's values are read-only inputs alive for the call; `key` has
        // room for the one handle asked for, `found` is a valid out-pointer.
        unsafe {
            let init = list.C_FindObjectsInit.expect("C_FindObjectsInit");
            self.check(
                init(session.0, template.as_mut_ptr(), 2),
                "C_FindObjectsInit",
            );
            let find = list.C_FindObjects.expect("C_FindObjects");
            self.check(find(session.0, &mut key, 1, &mut found), "C_FindObjects");
            let finish = list.C_FindObjectsFinal.expect("C_FindObjectsFinal");
            self.check(finish(session.0), "C_FindObjectsFinal");
        }
        assert_eq!(found, 1, "private key {id:02x?} not found");
        key
    }

    /// One signature: `C_SignInit` and `C_Sign` into a buffer of `len` bytes.
    fn sign(
        &self,
        session: &Session,
        mechanism: CK_MECHANISM_TYPE,
        key: CK_OBJECT_HANDLE,
        data: &[u8],
        len: usize,
    ) {
        self.check(self.raw.sign_init(session.0, mechanism, key), "C_SignInit");
        self.check(self.raw.sign(session.0, data, Some(len)).rv, "C_Sign");
    }

    /// Panics unless `rv` is `CKR_OK`.
    fn check(&self, rv: CK_RV, call: &str) {
        assert_eq!(
            rv,
            CKR_OK,
            "{}: {call}: {}",
            self.path.display(),
            rv_name(rv)
        );
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if let Some(finalize) = self.raw.list().C_Finalize {
            // SAFETY: the reserved argument is NULL, as required.
            unsafe { finalize(ptr::null_mut()) };
        }
    }
}

// ---- p11-kit's server ----

/// `p11-kit server` exporting the fixture's main token from `provider` on a socket of its
/// own (`name`.sock in the fixture), with `env` added to its environment.
struct P11KitServer {
    child: Child,
    socket: PathBuf,
}

impl P11KitServer {
    fn start(
        fx: &Fixture,
        name: &str,
        provider: &Path,
        env: &[(&str, OsString)],
    ) -> Option<P11KitServer> {
        if !Path::new(P11KIT_CLIENT).exists() {
            return None;
        }
        let socket = fx.dir().join(format!("{name}.sock"));
        let child = Command::new("p11-kit")
            .args(["server", "-f", "--provider"])
            .arg(provider)
            .arg("-n")
            .arg(&socket)
            .arg("pkcs11:token=NGUYEN%20VAN%20A")
            .env("SOFTHSM2_CONF", fx.softhsm_conf())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let start = Instant::now();
        while !socket.exists() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        socket.exists().then_some(P11KitServer { child, socket })
    }

    /// What `P11_KIT_SERVER_ADDRESS` should say.
    fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }
}

impl Drop for P11KitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
