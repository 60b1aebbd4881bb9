//! Faults and hostile clients: kysod killed in the middle of a signature, an application killed
//! while logged in, `fork()` after `C_Initialize`, and clients that open connections in a loop
//! or never read their replies, and a module call that hangs. Each test checks what the client sees and that kysod goes on
//! serving others, with descriptor and memory figures read from `/proc`.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use cryptoki_sys::{CKR_CRYPTOKI_NOT_INITIALIZED, CKR_OK};
use kyso_tests::util::{ecdsa_raw_to_der, find_one, openssl_verify_sha256, sha256};
use kyso_tests::{
    login, rv_of, target_dir, Daemon, DaemonConfig, Fixture, Module, ID_RSA, USER_PIN, WRONG_PIN,
};

/// A `kyso-test-client` child process whose stdout lines arrive on a channel.
struct ClientProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ClientProcess {
    fn start(daemon: &Daemon, args: &[&str]) -> ClientProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kyso-test-client"))
            .args(args)
            .env("KYSO_SOCKET", daemon.socket())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn kyso-test-client");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ClientProcess { child, lines }
    }

    /// The next line of output, within 20 s.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("kyso-test-client said nothing within 20 s")
    }

    /// SIGKILL and reap.
    fn kill(mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Polls `what` until it holds, for up to `limit`.
fn eventually(limit: Duration, mut what: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if what() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Signs and verifies one RSA signature through `shim` on the fixture's token A, in a
/// session of its own, and says how long it took.
fn signs_within(shim: &Module, fx: &Fixture, limit: Duration, what: &str) {
    let start = Instant::now();
    let s = shim.session(fx.serial_a());
    match login(&s, USER_PIN) {
        Err(e) if rv_of(&e) == Some(RvError::UserAlreadyLoggedIn) => {}
        other => other.unwrap_or_else(|e| panic!("{what}: C_Login: {e}")),
    }
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    let sig = s
        .sign(&Mechanism::Sha256RsaPkcs, key, what.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: C_Sign: {e}"));
    let took = start.elapsed();
    assert!(
        openssl_verify_sha256(&fx.cert_pem(1), what.as_bytes(), &sig),
        "{what}: signature does not verify"
    );
    assert!(took < limit, "{what}: took {took:?}");
}

#[test]
fn kysod_killed_during_signatures_fails_fast_and_a_new_session_signs_after_restart() {
    let fx = Fixture::new();
    let mut daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let (tx, failed) = mpsc::channel();
    std::thread::scope(|scope| {
        let shim = &shim;
        let fx = &fx;
        scope.spawn(move || {
            let s = shim.user_session(fx.serial_a());
            let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
            let mut signed = 0u32;
            loop {
                match s.sign(&Mechanism::Sha256RsaPkcs, key, b"mid-flight") {
                    Ok(_) => signed += 1,
                    Err(e) => {
                        let _ = tx.send((signed, Instant::now(), rv_of(&e)));
                        return;
                    }
                }
            }
        });
        // Let the signer get going: it is then inside C_Sign nearly all the time.
        std::thread::sleep(Duration::from_millis(400));
        let killed_at = Instant::now();
        daemon.kill();
        let (signed, failed_at, rv) = failed
            .recv_timeout(Duration::from_secs(10))
            .expect("the signing thread hangs after kysod was killed");
        assert!(signed > 0, "no signature before the kill");
        let took = failed_at.saturating_duration_since(killed_at);
        assert!(
            took < Duration::from_secs(2),
            "the signature in flight failed only {took:?} after the kill"
        );
        assert!(
            matches!(
                rv,
                Some(
                    RvError::DeviceError
                        | RvError::DeviceRemoved
                        | RvError::SessionHandleInvalid
                        | RvError::TokenNotPresent
                )
            ),
            "unexpected error for a signature cut by kysod's death: {rv:?}"
        );
    });

    daemon.restart();
    let reconnected = eventually(Duration::from_secs(10), || {
        let (rv, slots) = shim.raw().get_slot_list(true);
        rv == CKR_OK && !slots.is_empty()
    });
    assert!(reconnected, "the shim did not reconnect to the new kysod");
    signs_within(&shim, &fx, Duration::from_secs(5), "after the restart");
}

#[test]
fn a_killed_application_loses_its_sessions_and_the_token_logs_out_when_no_one_needs_it() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(fx.serial_a());
    let mine = shim.session(fx.serial_a());

    let app = ClientProcess::start(&daemon, &["hold", fx.serial_a(), USER_PIN]);
    assert_eq!(app.line(), "ready");
    let app_pid = app.child.id();
    // The token is logged in for the application: this client's right PIN joins that login,
    // checked by kysod, and leaves it again.
    login(&mine, USER_PIN).expect("C_Login joins the application's login");
    mine.logout().expect("C_Logout");

    app.kill();

    // kysod saw it go (its sessions are closed before this line is logged)...
    let gone = eventually(Duration::from_secs(3), || {
        daemon
            .log()
            .lines()
            .any(|l| l.contains("client disconnected") && l.contains(&format!("pid={app_pid}")))
    });
    assert!(gone, "kysod did not notice the killed application");
    // ...and, its last session on the token closed, logged the token out at the module
    // (SoftHSM2 reports no session count to check). Now a wrong PIN is the token's to judge
    // (and to count).
    let logged_out = eventually(Duration::from_secs(3), || {
        wrong_pin_reaches_token(&shim, slot, &mine)
    });
    assert!(
        logged_out,
        "the token stayed logged in after its only user was killed"
    );
    // kysod goes on serving this client.
    signs_within(&shim, &fx, Duration::from_secs(5), "after the kill");
}

/// Tries a wrong PIN on `session` (refused either way) and says whether it reached the token:
/// SoftHSM2 then sets `CKF_USER_PIN_COUNT_LOW`, while a PIN that kysod judges against the
/// logged-in token's verifier leaves the flag alone.
fn wrong_pin_reaches_token(shim: &Module, slot: Slot, session: &Session) -> bool {
    let e = login(session, WRONG_PIN).expect_err("wrong PIN accepted");
    assert_eq!(rv_of(&e), Some(RvError::PinIncorrect));
    shim.ctx()
        .get_token_info(slot)
        .expect("C_GetTokenInfo")
        .user_pin_count_low()
}

#[test]
fn fork_after_initialize_leaves_parent_and_child_each_working() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    s.sign(&Mechanism::Sha256RsaPkcs, key, b"before fork")
        .expect("C_Sign before fork");

    // SAFETY: the child only calls the shim and exits with _exit; it never returns into the
    // test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child_after_fork(&shim, &fx)
        }))
        .unwrap_or(99);
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }

    // The parent signs while the child works on its own connection.
    for i in 0..20 {
        let data = format!("parent {i}");
        let sig = s
            .sign(&Mechanism::Sha256RsaPkcs, key, data.as_bytes())
            .expect("C_Sign in the parent after fork");
        if i == 0 {
            assert!(openssl_verify_sha256(
                &fx.cert_pem(1),
                data.as_bytes(),
                &sig
            ));
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status),
        "the child did not exit normally: {status:#x}"
    );
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child failed at step {}",
        libc::WEXITSTATUS(status)
    );
    // The parent's session survived the child's whole life and exit.
    assert!(s.get_session_info().is_ok());
    s.sign(&Mechanism::Sha256RsaPkcs, key, b"after the child")
        .expect("C_Sign after the child exited");
}

/// What a forked child does; returns the step that failed (0: all well).
fn child_after_fork(shim: &Module, fx: &Fixture) -> i32 {
    // Inherited state is not the child's: calls say "not initialised".
    let (rv, _) = shim.raw().get_slot_list(true);
    if rv != CKR_CRYPTOKI_NOT_INITIALIZED {
        return 1;
    }
    // SAFETY: C_Initialize with NULL arguments is valid for any PKCS#11 module.
    let rv = unsafe { shim.raw().list().C_Initialize.expect("C_Initialize")(std::ptr::null_mut()) };
    if rv != CKR_OK {
        return 2;
    }
    let Ok(s) = shim
        .ctx()
        .open_ro_session(shim.slot_with_serial(fx.serial_a()))
    else {
        return 3;
    };
    if login(&s, USER_PIN).is_err() {
        return 4;
    }
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    match s.sign(&Mechanism::Sha256RsaPkcs, key, b"child") {
        Ok(sig) if openssl_verify_sha256(&fx.cert_pem(1), b"child", &sig) => 0,
        Ok(_) => 5,
        Err(_) => 6,
    }
}

/// kysod serving a fixture, warmed up by one signature through the shim: the daemon, the
/// shim, kysod's pid and its descriptor count and RSS (KiB) at rest.
fn at_rest(fx: &Fixture) -> (Daemon, Module, u32, usize, u64) {
    let daemon = Daemon::start(fx);
    let shim = Module::shim(&daemon);
    signs_within(&shim, fx, Duration::from_secs(5), "warm-up");
    let pid = daemon.pid().expect("kysod pid");
    let (fds, rss) = (open_fds(pid), rss_kib(pid));
    (daemon, shim, pid, fds, rss)
}

/// The sockets among a process's open descriptors.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[test]
fn the_shims_connections_go_with_c_finalize() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let kysod = daemon.pid().expect("kysod pid");
    let me = std::process::id();
    let me0 = open_sockets(me);

    let shim = Module::shim(&daemon);
    signs_within(&shim, &fx, Duration::from_secs(5), "connected");
    let (kysod1, me1) = (open_sockets(kysod), open_sockets(me));
    let connections = me1 - me0;
    assert!(connections >= 1, "the application holds no connection");

    // C_Finalize closes them, and kysod lets go of its ends: one socket per connection on
    // each side, and nothing else.
    drop(shim);
    assert_eq!(open_sockets(me), me0);
    assert!(
        eventually(Duration::from_secs(3), || open_sockets(kysod)
            == kysod1 - connections),
        "kysod holds {} sockets, {kysod1} with {connections} connections",
        open_sockets(kysod)
    );
}

#[test]
fn kysod_raises_its_descriptor_limit_to_what_its_connections_take() {
    // Started as services usually are: a soft limit of 1024 under a higher hard one.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0);
    let hard = limit.rlim_max;
    limit.rlim_cur = hard.min(1024);
    // SAFETY: lowers this test process's own soft limit (each test runs in its own process);
    // kysod inherits it.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(set, 0);

    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let pid = daemon.pid().expect("kysod pid");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files limit");
    let soft: u64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // The default connections_total, 1024, two descriptors each, and room for the rest.
    let wanted = (2 * 1024 + 256).min(hard);
    assert!(
        soft >= wanted,
        "kysod's soft limit is {soft}, wanted {wanted}: {line}"
    );
}

#[test]
fn a_process_opening_connections_in_a_loop_is_held_to_its_limit() {
    let fx = Fixture::new();
    let (daemon, shim, pid, fds0, rss0) = at_rest(&fx);

    // Every connection claims to be another application (a new instance): the limit is the
    // process's, whatever its handshake says. Default limit: 64 connections per process.
    let flood = ClientProcess::start(&daemon, &["flood", "500", "hello"]);
    let counts = flood.line();
    assert_eq!(flood.line(), "ready");
    assert_eq!(counts, "welcomed=64 refused=436", "{counts}");
    let (fds1, rss1) = (open_fds(pid), rss_kib(pid));
    eprintln!("hello flood: kysod fds {fds0} -> {fds1}, RSS {rss0} -> {rss1} KiB");
    assert!(
        fds1 <= fds0 + 64 + 4,
        "kysod holds {fds1} descriptors ({fds0} before)"
    );
    assert!(
        rss1 < rss0 + 16 * 1024,
        "kysod's RSS grew {rss0} -> {rss1} KiB"
    );
    signs_within(
        &shim,
        &fx,
        Duration::from_secs(2),
        "during a connection flood",
    );

    flood.kill();
    assert!(
        eventually(Duration::from_secs(3), || open_fds(pid) <= fds0 + 2),
        "kysod did not let go of the flood's connections: {} fds ({fds0} before)",
        open_fds(pid)
    );

    // Connections that never shake hands count too (until the handshake times out).
    let silent = ClientProcess::start(&daemon, &["flood", "500", "silent"]);
    assert_eq!(silent.line(), "welcomed=0 refused=0");
    assert_eq!(silent.line(), "ready");
    std::thread::sleep(Duration::from_millis(300));
    let fds2 = open_fds(pid);
    eprintln!("silent flood: kysod fds {fds0} -> {fds2}");
    assert!(
        fds2 <= fds0 + 64 + 4,
        "kysod holds {fds2} descriptors for silent connections ({fds0} before)"
    );
    signs_within(&shim, &fx, Duration::from_secs(2), "during a silent flood");
    silent.kill();
    assert!(
        eventually(Duration::from_secs(3), || open_fds(pid) <= fds0 + 2),
        "kysod did not let go of the silent connections"
    );
}

#[test]
fn a_client_that_never_reads_its_replies_costs_kysod_one_connection() {
    let fx = Fixture::new();
    let (daemon, shim, pid, fds0, rss0) = at_rest(&fx);

    let greedy = ClientProcess::start(&daemon, &["noread", "1000000"]);
    let written = greedy.line();
    assert_eq!(greedy.line(), "ready");
    let written: usize = written
        .strip_prefix("written=")
        .and_then(|n| n.parse().ok())
        .expect("written=N");
    // kysod stops reading once its answers pile up in the socket: the requests it takes are
    // bounded by the socket buffers, not by what the client would send.
    assert!(
        written < 1_000_000,
        "kysod took all {written} requests without their replies being read"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (fds1, rss1) = (open_fds(pid), rss_kib(pid));
    eprintln!(
        "client not reading: {written} requests taken; kysod fds {fds0} -> {fds1}, RSS {rss0} -> {rss1} KiB"
    );
    assert!(fds1 <= fds0 + 2, "fds {fds0} -> {fds1}");
    assert!(rss1 < rss0 + 4 * 1024, "RSS {rss0} -> {rss1} KiB");
    signs_within(
        &shim,
        &fx,
        Duration::from_secs(2),
        "beside a client not reading",
    );
    greedy.kill();
    assert!(
        eventually(Duration::from_secs(3), || open_fds(pid) <= fds0),
        "kysod kept the greedy client's connection"
    );
}

#[test]
fn a_call_stuck_in_a_module_stalls_no_other_token_session_or_client() {
    let fx = Fixture::with_second_token();
    // The test module holds the first C_Sign that finds the gate file, until released.
    let gate = fx.dir().join("gate");
    let held = fx.dir().join("gate.held");
    std::env::set_var("KYSO_SLOW_MODULE_GATE", &gate);
    let cfg = DaemonConfig {
        modules: vec![(target_dir().join("libkyso_slow_module.so"), true)],
        ..DaemonConfig::default()
    };
    let daemon = Daemon::start_with(&fx, cfg);
    let shim = Module::shim(&daemon);
    signs_within(
        &shim,
        &fx,
        Duration::from_secs(5),
        "through the test module",
    );

    std::fs::write(&gate, b"").expect("create the gate");
    let (tx, stuck) = mpsc::channel();
    std::thread::scope(|scope| {
        // Whatever happens below, the held call is released before the scope joins it.
        let _release = Release(held.clone());
        let (shim, fx) = (&shim, &fx);
        scope.spawn(move || {
            let s = shim.user_session(fx.serial_a());
            let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
            let _ = tx.send(s.sign(&Mechanism::Sha256RsaPkcs, key, b"held"));
        });
        assert!(
            eventually(Duration::from_secs(5), || held.exists()),
            "no C_Sign reached the test module"
        );

        // While that call hangs in the module: the other token signs...
        let start = Instant::now();
        let b = shim.user_session(fx.serial_b().expect("second token"));
        let key = find_one(&b, ObjectClass::PRIVATE_KEY, &[0x01]);
        let sig = b
            .sign(&Mechanism::Ecdsa, key, &sha256(b"token B"))
            .expect("C_Sign on the other token");
        let took_b = start.elapsed();
        assert!(openssl_verify_sha256(
            &fx.cert_b_pem(),
            b"token B",
            &ecdsa_raw_to_der(&sig)
        ));
        // ...another session of the same token and application signs...
        let start = Instant::now();
        signs_within(
            shim,
            fx,
            Duration::from_secs(2),
            "same token, another session",
        );
        let took_a = start.elapsed();
        // ...and another application connects and logs in.
        let start = Instant::now();
        let other = ClientProcess::start(&daemon, &["hold", fx.serial_a(), USER_PIN]);
        assert_eq!(other.line(), "ready");
        let took_app = start.elapsed();
        eprintln!(
            "beside a stuck call: other token {took_b:?}, same token {took_a:?}, another application {took_app:?}"
        );
        assert!(took_b < Duration::from_secs(2), "other token: {took_b:?}");
        assert!(
            took_app < Duration::from_secs(5),
            "another application: {took_app:?}"
        );
        assert!(
            stuck.try_recv().is_err(),
            "the held signature returned before it was released"
        );

        std::fs::remove_file(&held).expect("release the held call");
        let sig = stuck
            .recv_timeout(Duration::from_secs(10))
            .expect("the released call did not return")
            .expect("C_Sign after release");
        assert!(openssl_verify_sha256(&fx.cert_pem(1), b"held", &sig));
    });
}

/// Removes a file when dropped (releases the test module's held call, even on a failure).
struct Release(std::path::PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// 17 processes × 64 connections each announce an 8 MiB frame and send a byte of it every
/// 2 s: kysod's buffers grow with the bytes that come, not the announced length, each frame
/// has one deadline, and the bytes held across connections are capped. kysod stays small, the
/// slow frames are closed, and an application connecting during the flood signs.
#[test]
fn a_slow_flood_of_large_frames_neither_bloats_kysod_nor_shuts_applications_out() {
    let fx = Fixture::new();
    let mut daemon = Daemon::start(&fx);
    let pid = daemon.pid().expect("kysod pid");
    let rss0 = rss_kib(pid);
    let flood: Vec<ClientProcess> = (0..17)
        .map(|_| ClientProcess::start(&daemon, &["slowflood", "64"]))
        .collect();
    for f in &flood {
        assert_eq!(f.line(), "ready");
    }
    let started = Instant::now();
    let mut rss_max = rss_kib(pid);
    // The application comes while the flood holds its connections.
    let shim = Module::shim(&daemon);
    let mut signed = None;
    while started.elapsed() < Duration::from_secs(30) {
        rss_max = rss_max.max(rss_kib(pid));
        let s = shim.session_if_present(fx.serial_a());
        if let Some(s) = s {
            if login(&s, USER_PIN).is_ok() {
                let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
                if s.sign(&Mechanism::Sha256RsaPkcs, key, b"during the flood")
                    .is_ok()
                {
                    signed = Some(started.elapsed());
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // The flood's connections do not outlive their frames' deadline.
    let open: Vec<String> = flood
        .iter()
        .map(|f| {
            let mut last = String::new();
            while let Ok(line) = f.lines.recv_timeout(Duration::from_millis(100)) {
                last = line;
            }
            last
        })
        .collect();
    rss_max = rss_max.max(rss_kib(pid));
    eprintln!(
        "slow flood: kysod RSS {rss0} -> at most {rss_max} KiB; signed after {signed:?}; {open:?}"
    );
    assert!(
        rss_max < 200 * 1024,
        "kysod grew to {rss_max} KiB under the flood"
    );
    assert!(
        signed.is_some(),
        "no signature within 30 s of the flood:\n{}",
        daemon.log()
    );
    assert!(daemon.is_running(), "kysod died under the flood");
    drop(flood);
    signs_within(&shim, &fx, Duration::from_secs(5), "after the flood");
}
