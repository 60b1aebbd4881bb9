//! A crash or restart of the daemon never wedges the application; hostile bytes on the socket
//! never take the daemon down; parallel threads of one application all get served.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectClass;
use cryptoki_sys::CKR_OK;
use kyso_proto::{frame, Hello, HelloReply, PROTOCOL_VERSION};
use kyso_tests::util::{find_one, openssl_verify_sha256};
use kyso_tests::{
    login, target_dir, Daemon, DaemonConfig, Fixture, Module, ID_EC, ID_RSA, USER_PIN,
};

#[test]
fn daemon_crash_fails_fast_and_restart_recovers_with_the_same_slot_id() {
    let fx = Fixture::new();
    let mut daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    let slot = shim.slot_with_serial(fx.serial_a());
    let s = shim.user_session(fx.serial_a());
    let h = s.handle();
    assert_eq!(shim.raw().get_session_info(h).0, CKR_OK);
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);

    daemon.kill();

    // Every call fails with an error, quickly.
    let start = Instant::now();
    let (rv, _) = shim.raw().get_session_info(h);
    assert_ne!(rv, CKR_OK, "C_GetSessionInfo on a dead daemon");
    let (rv, _) = shim.raw().generate_random(h, 16);
    assert_ne!(rv, CKR_OK, "C_GenerateRandom on a dead daemon");
    assert!(s.sign(&Mechanism::Sha256RsaPkcs, key, b"x").is_err());
    // The slot list may be empty or an error, but must come back at once too.
    let (rv, slots) = shim.raw().get_slot_list(true);
    assert!(
        rv != CKR_OK || !slots.contains(&slot.id()),
        "slot still listed: rv {rv:#x}"
    );
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "calls on a dead daemon took {took:?}"
    );

    daemon.restart();

    // The shim reconnects on C_GetSlotList / C_OpenSession; the slot ID is the same.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (rv, slots) = shim.raw().get_slot_list(true);
        if rv == CKR_OK && slots.contains(&slot.id()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot {} not back: rv {rv:#x} {slots:?}",
            slot.id()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(shim.slot_with_serial(fx.serial_a()).id(), slot.id());
    let s2 = shim
        .ctx()
        .open_ro_session(slot)
        .expect("C_OpenSession after restart");
    login(&s2, USER_PIN).expect("C_Login after restart");
    let key = find_one(&s2, ObjectClass::PRIVATE_KEY, ID_RSA);
    let sig = s2
        .sign(&Mechanism::Sha256RsaPkcs, key, b"after restart")
        .expect("C_Sign after restart");
    assert!(openssl_verify_sha256(
        &fx.cert_pem(1),
        b"after restart",
        &sig
    ));
    // The old session died with the old daemon. Closing its stale handle must not close the
    // new session: a handle from before the restart never aliases one made after it.
    drop(s);
    assert!(s2.get_session_info().is_ok());

    // A clean stop works too.
    assert!(daemon.terminate(), "kysod did not exit on SIGTERM");
}

/// Reads until the peer closes; fails if it is still open after `timeout`.
fn expect_closed(mut conn: UnixStream, timeout: Duration, what: &str) {
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {} // a refusal or error frame first is fine
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return
            }
            Err(e) => panic!("{what}: read error {e}"),
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: daemon kept the connection open"
        );
    }
}

fn shim_still_works(shim: &Module, fx: &Fixture, what: &str) {
    let s = shim.session(fx.serial_a());
    let r = s.generate_random_vec(8);
    assert!(r.is_ok(), "after {what}: {r:?}");
}

#[test]
fn malformed_frames_are_dropped_and_other_clients_keep_working() {
    let fx = Fixture::new();
    let mut daemon = Daemon::start(&fx);
    let shim = Module::shim(&daemon);
    shim_still_works(&shim, &fx, "start");
    let limit = Duration::from_secs(3);
    let connect = || UnixStream::connect(daemon.socket()).expect("connect");

    // A length prefix of 4 GiB: refused at once, before any allocation.
    let mut c = connect();
    c.write_all(&u32::MAX.to_le_bytes()).unwrap();
    expect_closed(c, limit, "0xFFFFFFFF length");
    shim_still_works(&shim, &fx, "oversized frame");

    // Just over the limit.
    let mut c = connect();
    c.write_all(&((kyso_proto::MAX_FRAME as u32) + 1).to_le_bytes())
        .unwrap();
    expect_closed(c, limit, "MAX_FRAME + 1 length");

    // A frame whose payload is not a message (varints that never end).
    let mut c = connect();
    let mut f = 64u32.to_le_bytes().to_vec();
    f.extend_from_slice(&[0xFF; 64]);
    c.write_all(&f).unwrap();
    expect_closed(c, limit, "undecodable Hello");
    shim_still_works(&shim, &fx, "undecodable frame");

    // Random bytes, then end of input.
    let mut c = connect();
    let mut noise = vec![0u8; 4096];
    getrandom_fill(&mut noise);
    c.write_all(&noise).ok();
    c.shutdown(Shutdown::Write).ok();
    expect_closed(c, limit, "random bytes");

    // A truncated frame, then close.
    let mut c = connect();
    let mut f = 100u32.to_le_bytes().to_vec();
    f.extend_from_slice(&[1, 2, 3]);
    c.write_all(&f).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    expect_closed(c, limit, "truncated frame");
    // And one just dropped mid-frame.
    let mut c = connect();
    c.write_all(&f).unwrap();
    drop(c);
    shim_still_works(&shim, &fx, "truncated frames");

    // A wrong protocol version is refused.
    let mut c = connect();
    let mut buf = Vec::new();
    frame::write(
        &mut c,
        &Hello {
            version: PROTOCOL_VERSION + 99,
            instance: 7,
        },
        &mut buf,
    )
    .unwrap();
    c.set_read_timeout(Some(limit)).unwrap();
    match frame::read::<HelloReply, _>(&mut c, &mut buf) {
        Ok(Err(_refusal)) => {}
        Ok(Ok(w)) => panic!("version {} accepted: {w:?}", PROTOCOL_VERSION + 99),
        Err(_) => {} // closing without a word is a refusal too
    }
    expect_closed(c, limit, "wrong version");

    // So is a client of another protocol version whose hello has another shape: it is told
    // which version kysod speaks.
    let mut c = connect();
    frame::write(&mut c, &(PROTOCOL_VERSION - 1, 7u64), &mut buf).unwrap();
    c.set_read_timeout(Some(limit)).unwrap();
    match frame::read::<HelloReply, _>(&mut c, &mut buf) {
        Ok(Err(refusal)) => assert!(
            refusal.reason.contains(&format!(
                "protocol version {} is not supported",
                PROTOCOL_VERSION - 1
            )),
            "{refusal:?}"
        ),
        other => panic!("a previous version's hello: {other:?}"),
    }
    expect_closed(c, limit, "previous version");

    // After a good handshake, a garbage request closes the connection.
    let mut c = connect();
    frame::write(
        &mut c,
        &Hello {
            version: PROTOCOL_VERSION,
            instance: 42,
        },
        &mut buf,
    )
    .unwrap();
    c.set_read_timeout(Some(limit)).unwrap();
    let reply: HelloReply = frame::read(&mut c, &mut buf).expect("handshake reply");
    assert!(reply.is_ok(), "handshake refused: {reply:?}");
    let mut f = 16u32.to_le_bytes().to_vec();
    f.extend_from_slice(&[0xFF; 16]);
    c.write_all(&f).unwrap();
    expect_closed(c, limit, "garbage request");

    assert!(daemon.is_running(), "kysod died:\n{}", daemon.log());
    shim_still_works(&shim, &fx, "all of it");
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    let sig = s
        .sign(&Mechanism::Sha256RsaPkcs, key, b"ok")
        .expect("C_Sign");
    assert!(openssl_verify_sha256(&fx.cert_pem(1), b"ok", &sig));
}

fn getrandom_fill(buf: &mut [u8]) {
    // Deterministic noise is as good as random here, and needs no extra crate.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// (data, RSA signature, ECDSA signature).
type Signed = (Vec<u8>, Vec<u8>, Vec<u8>);

#[test]
fn four_threads_sign_concurrently_through_one_initialisation() {
    const THREADS: usize = 4;
    const SIGNATURES: usize = 20;
    let fx = Fixture::new();
    let direct = Module::softhsm(&fx);
    let daemon = Daemon::start(&fx);
    let shim = Arc::new(Module::shim(&daemon));
    let slot = shim.slot_with_serial(fx.serial_a());
    // Login is per application: one login serves every session of this process.
    let first = shim.user_session(fx.serial_a());

    let results: Vec<Vec<Signed>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let ctx = shim.ctx().clone();
                scope.spawn(move || {
                    let s = ctx.open_ro_session(slot).expect("C_OpenSession");
                    let rsa = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
                    let ec = find_one(&s, ObjectClass::PRIVATE_KEY, ID_EC);
                    (0..SIGNATURES)
                        .map(|i| {
                            let data = format!("thread {t} document {i}").into_bytes();
                            let rsa_sig = s
                                .sign(&Mechanism::Sha256RsaPkcs, rsa, &data)
                                .expect("RSA C_Sign");
                            let ec_sig = s
                                .sign(&Mechanism::Ecdsa, ec, &kyso_tests::util::sha256(&data))
                                .expect("ECDSA C_Sign");
                            (data, rsa_sig, ec_sig)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("signing thread"))
            .collect()
    });
    drop(first);

    // Every signature checks out with SoftHSM2 directly; a few with openssl as well.
    let ds = direct.session(fx.serial_a());
    let rsa_pub = find_one(&ds, ObjectClass::PUBLIC_KEY, ID_RSA);
    let ec_pub = find_one(&ds, ObjectClass::PUBLIC_KEY, ID_EC);
    let mut n = 0;
    for (data, rsa_sig, ec_sig) in results.iter().flatten() {
        ds.verify(&Mechanism::Sha256RsaPkcs, rsa_pub, data, rsa_sig)
            .unwrap_or_else(|e| {
                panic!("RSA signature of {:?}: {e}", String::from_utf8_lossy(data))
            });
        ds.verify(
            &Mechanism::Ecdsa,
            ec_pub,
            &kyso_tests::util::sha256(data),
            ec_sig,
        )
        .unwrap_or_else(|e| panic!("EC signature of {:?}: {e}", String::from_utf8_lossy(data)));
        n += 1;
    }
    assert_eq!(n, THREADS * SIGNATURES);
    let (data, rsa_sig, _) = &results[THREADS - 1][SIGNATURES - 1];
    assert!(openssl_verify_sha256(&fx.cert_pem(1), data, rsa_sig));
}

#[test]
fn kysod_serves_software_tokens_where_libusb_cannot_start() {
    // A machine or container without USB: libusb's initialisation fails (preloaded
    // `kyso-no-usb`). kysod warns and goes on serving its always-present tokens.
    let fx = Fixture::new();
    let daemon = Daemon::start_with(
        &fx,
        DaemonConfig {
            env: vec![(
                "LD_PRELOAD".into(),
                target_dir()
                    .join("libkyso_no_usb.so")
                    .to_string_lossy()
                    .into_owned(),
            )],
            ..DaemonConfig::default()
        },
    );
    let shim = Module::shim(&daemon);
    let s = shim.user_session(fx.serial_a());
    let key = find_one(&s, ObjectClass::PRIVATE_KEY, ID_RSA);
    let sig = s
        .sign(&Mechanism::Sha256RsaPkcs, key, b"no usb here")
        .expect("C_Sign without USB");
    assert!(openssl_verify_sha256(&fx.cert_pem(1), b"no usb here", &sig));
    let log = daemon.log();
    assert!(log.contains("cannot start libusb"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
