//! Signatures kysod prepares ahead (`C_SignInit` on spare sessions of its own) verify, and are
//! never made once the token has changed under them: a key another application stripped of
//! its right to sign, or destroyed, does not sign. kysod serves signatures on the caller's CPU,
//! and its modules allocate through kysod's allocator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use kyso_tests::cpus::{connection_cpus, cpu_list, hold_to_last_cpu, thread_cpus};
use kyso_tests::shim_path;
use kyso_tests::util::{ecdsa_raw_to_der, find_one, openssl_verify_sha256, sha256};
use kyso_tests::{rv_of, Daemon, DaemonConfig, Fixture, Module, ID_EC};

/// DER of the P-256 curve's OID, `CKA_EC_PARAMS` of a key on it.
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const PREPARING: &str = "preparing signatures ahead";

/// Signs `n` documents with the EC key, each verified against the key's certificate.
fn sign_batch(fx: &Fixture, s: &Session, key: ObjectHandle, n: usize) {
    for i in 0..n {
        let document = format!("Cong van so {i}/UBND");
        let raw = s
            .sign(&Mechanism::Ecdsa, key, &sha256(document.as_bytes()))
            .expect("C_Sign");
        // Every fifth through OpenSSL and the certificate, the rest through C_Verify.
        if i % 5 == 0 {
            assert!(openssl_verify_sha256(
                &fx.cert_pem(2),
                document.as_bytes(),
                &ecdsa_raw_to_der(&raw)
            ));
        } else {
            let public = find_one(s, ObjectClass::PUBLIC_KEY, ID_EC);
            s.verify(
                &Mechanism::Ecdsa,
                public,
                &sha256(document.as_bytes()),
                &raw,
            )
            .expect("C_Verify");
        }
    }
}

fn wait_for_log(daemon: &Daemon, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if daemon.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// kysod on a fresh fixture, an application logged in on token A, and a batch of `n`
/// signatures made with its EC key, after which kysod is preparing. (Fields drop in this
/// order: the session, the shim, kysod, then the fixture's files.)
struct Batch {
    session: Session,
    key: ObjectHandle,
    shim: Module,
    daemon: Daemon,
    fx: Fixture,
}

impl Batch {
    fn signed(n: usize) -> Batch {
        let fx = Fixture::new();
        let daemon = Daemon::start(&fx);
        let shim = Module::shim(&daemon);
        let session = shim.user_session(fx.serial_a());
        let key = find_one(&session, ObjectClass::PRIVATE_KEY, ID_EC);
        sign_batch(&fx, &session, key, n);
        assert!(
            wait_for_log(&daemon, PREPARING),
            "kysod never prepared a signature:\n{}",
            daemon.log()
        );
        // Give the preparing thread time to have the next operations ready.
        std::thread::sleep(Duration::from_millis(100));
        Batch {
            session,
            key,
            shim,
            daemon,
            fx,
        }
    }
}

/// Asserts that `err` carries one of `rvs`.
fn assert_rv_in(err: &cryptoki::error::Error, rvs: &[RvError]) {
    assert!(
        rv_of(err).is_some_and(|rv| rvs.contains(&rv)),
        "{err}, expected one of {rvs:?}"
    );
}

/// A second copy of the shim, loaded from another path: a separate library instance, so a
/// separate application to kysod, in this process.
fn second_application(fx: &Fixture) -> Module {
    let copy: PathBuf = fx.dir().join("libkyso_pkcs11_second.so");
    std::fs::copy(shim_path(), &copy).expect("copy the shim");
    Module::load(&copy)
}

/// The second application with a read-write session on token A, logged in.
fn second_application_logged_in(fx: &Fixture) -> (Module, Session) {
    let other = second_application(fx);
    let session = other
        .ctx()
        .open_rw_session(other.slot_with_serial(fx.serial_a()))
        .expect("C_OpenSession(RW)");
    kyso_tests::login(&session, kyso_tests::USER_PIN).expect("the second application's C_Login");
    (other, session)
}

#[test]
fn prepared_signatures_verify_and_stop_when_the_key_changes() {
    let b = Batch::signed(30);
    let (fx, s, key) = (&b.fx, &b.session, b.key);

    // Another application takes the key's right to sign: the operations prepared before are
    // not used; the module refuses as it would in process.
    let (_other, o) = second_application_logged_in(fx);
    let their_key = find_one(&o, ObjectClass::PRIVATE_KEY, ID_EC);
    o.update_attributes(their_key, &[Attribute::Sign(false)])
        .expect("C_SetAttributeValue(CKA_SIGN = false)");
    let err = s
        .sign(&Mechanism::Ecdsa, key, &sha256(b"after CKA_SIGN = false"))
        .expect_err("a key without CKA_SIGN must not sign");
    assert_rv_in(&err, &[RvError::KeyFunctionNotPermitted]);

    // Given back, the key signs again (and is prepared again).
    o.update_attributes(their_key, &[Attribute::Sign(true)])
        .expect("C_SetAttributeValue(CKA_SIGN = true)");
    sign_batch(fx, s, key, 10);
    std::thread::sleep(Duration::from_millis(100));

    // Destroyed by the other application: no signature from what was prepared with it.
    o.destroy_object(their_key).expect("C_DestroyObject");
    let err = s
        .sign(&Mechanism::Ecdsa, key, &sha256(b"after C_DestroyObject"))
        .expect_err("a destroyed key must not sign");
    assert_rv_in(
        &err,
        &[RvError::KeyHandleInvalid, RvError::ObjectHandleInvalid],
    );
}

/// kysod prepares with a session copy of the key, which no application finds, not even the one
/// signing; a key that may not be copied is prepared with as it is, and signs.
#[test]
fn prepared_with_a_session_copy_no_application_finds() {
    let b = Batch::signed(30);
    let (fx, s, key) = (&b.fx, &b.session, b.key);
    assert!(
        wait_for_log(&b.daemon, "key copied to a session object"),
        "{}",
        b.daemon.log()
    );
    let private_keys = |s: &Session| {
        s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .expect("C_FindObjects")
            .len()
    };
    assert_eq!(private_keys(s), 2, "the signing application's search");
    assert_eq!(find_one(s, ObjectClass::PRIVATE_KEY, ID_EC), key);
    let (_other, o) = second_application_logged_in(fx);
    assert_eq!(private_keys(&o), 2, "another application's search");

    // A key pair made not copyable: prepared with as it is.
    let (public, private) = o
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(P256_OID.to_vec()),
                Attribute::Verify(true),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sign(true),
                Attribute::Copyable(false),
            ],
        )
        .expect("C_GenerateKeyPair");
    for i in 0..40 {
        let digest = sha256(format!("To trinh {i}").as_bytes());
        let signature = o.sign(&Mechanism::Ecdsa, private, &digest).expect("C_Sign");
        o.verify(&Mechanism::Ecdsa, public, &digest, &signature)
            .expect("C_Verify");
    }
    assert!(
        wait_for_log(&b.daemon, "key not copied"),
        "{}",
        b.daemon.log()
    );
    assert_eq!(private_keys(s), 3);
    assert_eq!(private_keys(&o), 3);
}

/// With operations prepared, a logout leaves nothing to sign with (the key's handle goes with
/// the login, and the module login ends with it), and a new login signs again. (kysod's handle
/// table alone already refuses here; the login stamp is the second line behind it.)
#[test]
fn after_a_logout_nothing_signs_and_a_new_login_signs_again() {
    let b = Batch::signed(20);
    let (fx, s, key) = (&b.fx, &b.session, b.key);

    // The only application logs out: the token is logged out at the module.
    s.logout().expect("C_Logout");
    let err = s
        .sign(&Mechanism::Ecdsa, key, &sha256(b"after C_Logout"))
        .expect_err("no signature after logout");
    assert_rv_in(&err, &[RvError::KeyHandleInvalid, RvError::UserNotLoggedIn]);
    // Logged in again, the key signs again.
    kyso_tests::login(s, kyso_tests::USER_PIN).expect("C_Login");
    let key = find_one(s, ObjectClass::PRIVATE_KEY, ID_EC);
    sign_batch(fx, s, key, 10);
}

#[test]
fn modules_can_opt_out_of_preparing() {
    let fx = Fixture::new();
    let daemon = Daemon::start_with(
        &fx,
        DaemonConfig {
            modules: Vec::new(),
            extra: format!(
                "[[module]]\npath = {}\nalways_present = true\nprepare_signatures = false\n",
                kyso_tests::toml_str(&fx.softhsm_module().display().to_string())
            ),
            ..DaemonConfig::default()
        },
    );
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_EC);
    sign_batch(&fx, &s, key, 20);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !daemon.log().contains(PREPARING),
        "prepared although the module opted out"
    );
    // Nor is it lent kysod's locks: it keeps its own.
    assert!(
        daemon.log().contains(r#"locks="module""#),
        "{}",
        daemon.log()
    );
}

/// A module kysod prepares signatures on, called from several threads at once, takes kysod's
/// locks, and signatures made concurrently on them verify.
#[test]
fn a_software_token_takes_kysods_locks() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    // Logged in once: a login holds for every session of the application.
    let _login = shim.user_session(fx.serial_a());
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                let s = shim.session(fx.serial_a());
                let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_EC);
                sign_batch(&fx, &s, key, 30);
            });
        }
    });
    assert!(
        daemon.log().contains(r#"locks="kysod""#),
        "{}",
        daemon.log()
    );
}

#[test]
fn signatures_are_served_on_the_callers_cpu() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let everywhere = connection_cpus(&daemon);
    let serial = fx.serial_a().to_string();
    // A thread held to one CPU signs; kysod's thread serving it moves to that CPU, and goes
    // back to every CPU for a call that does not work at the token.
    let (cpu, (during, after)) = on_last_cpu(&shim, &serial, |s, key| {
        s.sign(&Mechanism::Ecdsa, key, &sha256(b"on one CPU"))
            .expect("C_Sign");
        let during = connection_cpus(&daemon);
        s.get_session_info().expect("C_GetSessionInfo");
        (during, connection_cpus(&daemon))
    });
    assert!(
        during.contains(&cpu.to_string()),
        "no connection thread on CPU {cpu}: {during:?}"
    );
    assert!(
        !after.contains(&cpu.to_string()) || everywhere.iter().all(|l| *l == cpu.to_string()),
        "the connection stayed on CPU {cpu} for a light call: {after:?}"
    );
}

/// The thread preparing signatures keeps off the CPU of the connection thread that hands it
/// work (a signature served there on the caller's CPU), whichever CPU the connection thread
/// was on when it started the preparing thread.
#[test]
fn the_preparing_thread_keeps_off_the_signing_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let serial = fx.serial_a().to_string();
    let (cpu, (serving, preparing)) = on_last_cpu(&shim, &serial, |s, key| {
        sign_batch(&fx, s, key, 20);
        assert!(wait_for_log(&daemon, PREPARING), "{}", daemon.log());
        for i in 0..5 {
            s.sign(&Mechanism::Ecdsa, key, &sha256(format!("{i}").as_bytes()))
                .expect("C_Sign");
        }
        let serving = connection_cpus(&daemon);
        (serving, thread_cpus(&daemon, "kysod-prepare"))
    });
    assert_eq!(preparing.len(), 1, "one preparing thread: {preparing:?}");
    let allowed = cpu_list(&preparing[0]);
    assert!(!allowed.is_empty(), "{preparing:?}");
    // Signatures kysod found long are served on any CPU: then there is no one CPU to keep
    // off. (On a loaded machine a signature can spend most of its time asleep on a lock.)
    let held = serving.contains(&cpu.to_string());
    if !held {
        eprintln!("signatures not served on CPU {cpu} ({serving:?}): not checked");
    }
    if cpus > 1 && held {
        assert!(
            !allowed.contains(&cpu),
            "the preparing thread may run on CPU {cpu}, where the signatures are made: {allowed:?}"
        );
    }
}

/// A signature that takes long only because its CPU is shared (two busy threads on the
/// caller's CPU) is still served on the caller's CPU: it is the work kysod's thread does that
/// decides, not how long the answer took. Judged by the time, such a meeting of callers on one
/// CPU sent the next call to any CPU with its caller asleep, and lasted.
#[test]
fn signatures_slowed_by_a_busy_cpu_stay_on_the_callers_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let serial = fx.serial_a().to_string();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (cpu, rounds) = std::thread::scope(|scope| {
        let cpu = hold_to_last_cpu();
        for _ in 0..2 {
            scope.spawn(|| {
                hold_to_last_cpu();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        let s = shim.user_session(&serial);
        let key = find_one(&s, ObjectClass::PRIVATE_KEY, kyso_tests::ID_RSA);
        let mut rounds = Vec::new();
        for i in 0..10 {
            let started = Instant::now();
            s.sign(
                &Mechanism::Sha256RsaPkcs,
                key,
                format!("busy {i}").as_bytes(),
            )
            .expect("C_Sign");
            rounds.push((started.elapsed(), connection_cpus(&daemon)));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (cpu, rounds)
    });
    // Signatures that follow one that took over a millisecond (most do: the scheduler lets
    // kysod's thread make a whole signature at once now and then).
    let slow = rounds[..9]
        .iter()
        .filter(|(took, _)| *took > Duration::from_millis(1))
        .count();
    assert!(
        slow >= 3,
        "the busy threads did not slow the signatures: {rounds:?}"
    );
    if cpus > 1 {
        for (before, (_, serving)) in rounds.iter().zip(&rounds[1..]) {
            assert!(
                serving.contains(&cpu.to_string()),
                "a signature after one that took {:?} was not served on CPU {cpu}: {rounds:?}\n{}",
                before.0,
                daemon.log()
            );
        }
    }
}

/// A signature that waits in its module (as on a USB token's card) is long, and the next one
/// is served on any CPU while its caller sleeps; one that then takes no time brings the
/// calls back to the caller's CPU. The test module holds a `C_Sign` while a gate file exists.
#[test]
fn signatures_waiting_in_the_module_are_served_on_any_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fx = Fixture::new();
    let gate = fx.dir().join("gate");
    let held = fx.dir().join("gate.held");
    std::env::set_var("KYSO_SLOW_MODULE_GATE", &gate);
    let cfg = DaemonConfig {
        modules: vec![(
            kyso_tests::target_dir().join("libkyso_slow_module.so"),
            true,
        )],
        ..DaemonConfig::default()
    };
    let daemon = Daemon::start_with(&fx, cfg);
    let shim = Module::shim(&daemon);
    let serial = fx.serial_a().to_string();
    let (cpu, (after_waits, after_quick)) = on_last_cpu(&shim, &serial, |s, key| {
        let sign = |i: u32| {
            s.sign(&Mechanism::Ecdsa, key, &sha256(format!("{i}").as_bytes()))
                .expect("C_Sign")
        };
        // Three held signatures: the first, over a millisecond, has the next ones measured,
        // and two spent asleep in a row make the calls long.
        for i in 0..3 {
            std::fs::write(&gate, b"").expect("create the gate");
            std::thread::scope(|inner| {
                inner.spawn(|| {
                    let start = Instant::now();
                    while !held.exists() && start.elapsed() < Duration::from_secs(10) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    let _ = std::fs::remove_file(&held);
                });
                sign(i);
            });
        }
        sign(3);
        let after_waits = connection_cpus(&daemon);
        sign(4);
        (after_waits, connection_cpus(&daemon))
    });
    if cpus > 1 {
        assert!(
            !after_waits.contains(&cpu.to_string()),
            "a signature after one that waited in the module was held to CPU {cpu}: {after_waits:?}"
        );
        assert!(
            after_quick.contains(&cpu.to_string()),
            "a signature after a quick one was not served on CPU {cpu}: {after_quick:?}"
        );
    }
}

/// Runs `work` in a thread held to the last CPU, with a logged-in session of `shim` on the
/// token `serial` and that token's EC key; returns the CPU and what `work` returned.
fn on_last_cpu<T: Send>(
    shim: &Module,
    serial: &str,
    work: impl FnOnce(&Session, ObjectHandle) -> T + Send,
) -> (usize, T) {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let cpu = hold_to_last_cpu();
                let s = shim.user_session(serial);
                let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_EC);
                (cpu, work(&s, key))
            })
            .join()
            .unwrap()
    })
}

#[test]
fn a_token_can_be_initialised_right_after_signing() {
    let Batch {
        session,
        shim,
        daemon,
        fx,
        ..
    } = Batch::signed(20);
    session.logout().expect("C_Logout");
    drop(session);
    // The module refuses C_InitToken while any session is open: kysod closes its spare
    // sessions first.
    shim.ctx()
        .init_token(
            shim.slot_with_serial(fx.serial_a()),
            &cryptoki::types::AuthPin::new(kyso_tests::SO_PIN.into()),
            "TOKEN MOI",
        )
        .expect("C_InitToken right after a batch of signatures");
    drop((shim, daemon, fx));
}

#[test]
fn another_operation_on_the_session_is_not_bypassed() {
    let b = Batch::signed(20);
    let (fx, s, key) = (&b.fx, &b.session, b.key);
    // A digest under way on the session: the module answers CKR_OPERATION_ACTIVE to a
    // signature there, and so does kysod, prepared operations or not.
    s.digest_init(&Mechanism::Sha256).expect("C_DigestInit");
    let err = s
        .sign(&Mechanism::Ecdsa, key, &sha256(b"while digesting"))
        .expect_err("a signature while a digest is under way");
    assert_rv_in(&err, &[RvError::OperationActive]);
    // Once the digest is over, the session signs again.
    s.digest_update(b"van ban").expect("C_DigestUpdate");
    s.digest_final().expect("C_DigestFinal");
    sign_batch(fx, s, key, 5);
}

/// kysod's allocator (mimalloc, see kysod's `allocator`) is what the modules it loads
/// allocate through: kysod asks the dynamic linker what a module's `malloc` resolves to and
/// logs it; it signs so, and keeps its program's name (no longer running itself again).
#[test]
fn modules_allocate_through_kysods_allocator() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_EC);
    sign_batch(&fx, &s, key, 10);
    let log = daemon.log();
    assert!(
        log.lines().any(
            |l| l.contains(" DEBUG memory allocator, for kysod and its modules")
                && l.contains("allocator=\"mimalloc\"")
        ),
        "{log}"
    );
    assert!(!log.contains("another malloc"), "{log}");
    // Named after its program, as `ps`, `pgrep` and the journal show it.
    let pid = daemon.pid().expect("kysod's pid");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim_end(), "kysod");
}
