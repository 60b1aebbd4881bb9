//! A PKCS#11 application for the fault and soak tests: loads the kyso shim (`KYSO_SOCKET`
//! names kysod's socket) in a process of its own, so a test can kill it or run several.
//!
//! ```text
//! kyso-test-client hold SERIAL PIN
//!     logs in on the token SERIAL, opens two sessions, prints `ready`, then waits to be killed
//! kyso-test-client soak SERIAL PIN PUBKEY_PEM SECONDS SEED
//!     signs with the key of CKA_ID 01 (RSA: SHA256-RSA-PKCS; EC: ECDSA over SHA-256) in a
//!     loop for SECONDS, verifying every signature with
//!     PUBKEY_PEM through `openssl`; disconnects (C_Finalize) at random; an error (token
//!     removed, kysod restarted) makes it start over once the token is back. Prints
//!     `stats ok=N wrong=N errors=N reconnects=N` after each batch; a call that takes longer
//!     than the per-operation deadline prints `HANG` and exits with status 3.
//! kyso-test-client signloop SERIAL PIN
//!     logs in and signs until a call fails; prints `signing` once under way, then
//!     `failed ERROR MS` with the error (cryptoki's name for it) and how long the call took
//! kyso-test-client flood N hello|silent
//!     opens N connections to kysod and keeps them: `hello` ones shake hands (prints how many
//!     kysod welcomed and refused), `silent` ones never say a word; prints `ready`, then waits
//! kyso-test-client slowflood N
//!     opens N connections, each announcing a frame of 8 MiB and sending one byte of it every
//!     2 s (half before the handshake, half after it); prints `ready`, then every 2 s
//!     `open=K` (connections kysod has not closed yet)
//! kyso-test-client noread N
//!     shakes hands, sends N requests without ever reading a reply (as far as the socket
//!     takes them), prints `written=K`, `ready`, then waits
//! ```

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::Error;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use kyso_proto::client::Connection;
use kyso_proto::{frame, Call, Request};
use kyso_tests::util::{ecdsa_raw_to_der, sha256};
use kyso_tests::{login, rv_of, shim_path, ID_RSA};

/// Longest time one PKCS#11 call may take before the soak calls it a hang.
const OP_DEADLINE: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["hold", serial, pin] => hold(serial, pin),
        ["soak", serial, pin, pubkey, seconds, seed] => {
            let (Ok(seconds), Ok(seed)) = (seconds.parse(), seed.parse()) else {
                eprintln!("SECONDS and SEED are numbers");
                return ExitCode::from(2);
            };
            soak(serial, pin, Path::new(pubkey), seconds, seed)
        }
        ["signloop", serial, pin] => signloop(serial, pin),
        ["slowflood", n] => match n.parse() {
            Ok(n) => slowflood(n),
            Err(_) => ExitCode::from(2),
        },
        ["flood", n, mode] => match (n.parse(), mode) {
            (Ok(n), "hello" | "silent") => flood(n, mode == "hello"),
            _ => ExitCode::from(2),
        },
        ["noread", n] => match n.parse() {
            Ok(n) => noread(n),
            Err(_) => ExitCode::from(2),
        },
        _ => {
            eprintln!("usage: kyso-test-client hold SERIAL PIN | soak SERIAL PIN PUBKEY_PEM SECONDS SEED | flood N hello|silent | noread N");
            ExitCode::from(2)
        }
    }
}

fn initialised() -> Result<Pkcs11, Error> {
    let ctx = Pkcs11::new(shim_path())?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    Ok(ctx)
}

fn slot_of(ctx: &Pkcs11, serial: &str) -> Result<Option<Slot>, Error> {
    for slot in ctx.get_slots_with_token()? {
        if ctx.get_token_info(slot)?.serial_number().trim() == serial {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

fn hold(serial: &str, pin: &str) -> ExitCode {
    let ctx = initialised().expect("C_Initialize");
    let slot = slot_of(&ctx, serial)
        .expect("C_GetSlotList")
        .expect("token present");
    let first = ctx.open_ro_session(slot).expect("C_OpenSession");
    let second = ctx.open_ro_session(slot).expect("C_OpenSession");
    login(&first, pin).expect("C_Login");
    // Both sessions (and the context) stay open until the process is killed.
    std::mem::forget((first, second, ctx));
    wait_forever()
}

fn signloop(serial: &str, pin: &str) -> ExitCode {
    let ctx = initialised().expect("C_Initialize");
    let slot = slot_of(&ctx, serial)
        .expect("C_GetSlotList")
        .expect("token present");
    let s = ctx.open_ro_session(slot).expect("C_OpenSession");
    login(&s, pin).expect("C_Login");
    let (key, ec) = key_of(&s).expect("the key of CKA_ID 01");
    let mechanism = if ec {
        Mechanism::Ecdsa
    } else {
        Mechanism::Sha256RsaPkcs
    };
    let data = sha256(b"signloop");
    for n in 0u64.. {
        let start = Instant::now();
        match s.sign(&mechanism, key, &data) {
            Ok(_) if n == 10 => println!("signing"),
            Ok(_) => {}
            Err(e) => {
                let error = rv_of(&e).map_or_else(|| e.to_string(), |rv| format!("{rv:?}"));
                println!("failed {error} {}", start.elapsed().as_millis());
                return ExitCode::SUCCESS;
            }
        }
    }
    ExitCode::SUCCESS
}

fn socket() -> PathBuf {
    std::env::var_os("KYSO_SOCKET")
        .expect("KYSO_SOCKET names kysod's socket")
        .into()
}

/// Waits, holding everything open, until the process is killed.
fn wait_forever() -> ! {
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn flood(n: usize, hello: bool) -> ExitCode {
    let path = socket();
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
    let (mut welcomed, mut refused) = (0, 0);
    for i in 0..n {
        if hello {
            // A different instance each time: as if every connection were another application.
            match Connection::open(&path, 1000 + i as u64) {
                Ok(conn) => {
                    welcomed += 1;
                    held.push(Box::new(conn));
                }
                Err(_) => refused += 1,
            }
        } else {
            match UnixStream::connect(&path) {
                Ok(conn) => held.push(Box::new(conn)),
                Err(_) => refused += 1,
            }
        }
    }
    println!("welcomed={welcomed} refused={refused}");
    wait_forever()
}

fn slowflood(n: usize) -> ExitCode {
    let path = socket();
    let announce = (8u32 << 20).to_le_bytes();
    let mut held: Vec<UnixStream> = Vec::new();
    for i in 0..n {
        let stream = if i % 2 == 0 {
            UnixStream::connect(&path).ok()
        } else {
            Connection::open(&path, 2000 + i as u64)
                .ok()
                .and_then(|c| c.socket().try_clone().ok())
        };
        if let Some(mut stream) = stream {
            if stream.write_all(&announce).is_ok() {
                held.push(stream);
            }
        }
    }
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(2));
        held.retain(|mut s| s.write_all(&[0x55]).is_ok());
        println!("open={}", held.len());
    }
}

fn noread(n: usize) -> ExitCode {
    let kysod = Connection::open(&socket(), 7).expect("handshake");
    let mut conn = kysod.socket().try_clone().expect("the connection's socket");
    conn.set_nonblocking(true).expect("non-blocking");
    let mut written = 0;
    let mut frame_bytes = Vec::new();
    'requests: for id in 0..n {
        frame::encode(
            &Request {
                id: id as u32,
                call: Call::GetInfo,
            },
            &mut frame_bytes,
        )
        .expect("encode");
        let mut rest = &frame_bytes[..];
        let started = Instant::now();
        while !rest.is_empty() {
            match conn.write(rest) {
                Ok(k) => rest = &rest[k..],
                // kysod stopped reading (its answers are not read): give it a moment, then stop.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if started.elapsed() > Duration::from_millis(500) {
                        break 'requests;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break 'requests,
            }
        }
        written += 1;
    }
    println!("written={written}");
    wait_forever()
}

/// A small xorshift generator: the soak's choices are reproducible from its seed.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True with probability 1/n.
    fn one_in(&mut self, n: u64) -> bool {
        self.next().checked_rem(n) == Some(0)
    }
}

#[derive(Default)]
struct Stats {
    ok: u64,
    wrong: u64,
    errors: u64,
    reconnects: u64,
}

/// Watches the current call: `started` holds its start (ms since `epoch`, plus one), 0 when idle.
fn watchdog(epoch: Instant, started: Arc<AtomicU64>) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        let at = started.load(Ordering::Relaxed);
        if at == 0 {
            continue;
        }
        let now = epoch.elapsed().as_millis() as u64 + 1;
        if now.saturating_sub(at) > OP_DEADLINE.as_millis() as u64 {
            println!("HANG a call has not returned for {OP_DEADLINE:?}");
            std::process::exit(3);
        }
    });
}

fn soak(serial: &str, pin: &str, pubkey: &Path, seconds: u64, seed: u64) -> ExitCode {
    let epoch = Instant::now();
    let end = epoch + Duration::from_secs(seconds);
    let started = Arc::new(AtomicU64::new(0));
    watchdog(epoch, started.clone());
    let timed = |f: &mut dyn FnMut() -> Result<(), Error>| {
        started.store(epoch.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        let r = f();
        started.store(0, Ordering::Relaxed);
        r
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dice = Dice(seed | 1);
    let mut stats = Stats::default();
    let mut counter = 0u64;
    while Instant::now() < end {
        let mut ctx = None;
        let outcome = timed(&mut || {
            ctx = Some(initialised()?);
            Ok(())
        });
        let Some(ctx) = ctx.filter(|_| outcome.is_ok()) else {
            stats.errors += 1;
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        // One connection's life: sessions come and go until a random disconnect.
        while Instant::now() < end {
            let mut slot = None;
            if timed(&mut || {
                slot = slot_of(&ctx, serial)?;
                Ok(())
            })
            .is_err()
            {
                stats.errors += 1;
            }
            let Some(slot) = slot else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let batch = 1 + dice.next() % 20;
            let result = timed(&mut || {
                let s = ctx.open_ro_session(slot)?;
                match login(&s, pin) {
                    Err(e) if rv_of(&e) == Some(cryptoki::error::RvError::UserAlreadyLoggedIn) => {}
                    other => other?,
                }
                let (key, ec) = key_of(&s)?;
                for _ in 0..batch {
                    counter += 1;
                    let data = format!("soak {seed} {counter}");
                    let sig = if ec {
                        let raw = s.sign(&Mechanism::Ecdsa, key, &sha256(data.as_bytes()))?;
                        ecdsa_raw_to_der(&raw)
                    } else {
                        s.sign(&Mechanism::Sha256RsaPkcs, key, data.as_bytes())?
                    };
                    if verifies(pubkey, dir.path(), data.as_bytes(), &sig) {
                        stats.ok += 1;
                    } else {
                        stats.wrong += 1;
                        println!("WRONG signature over {data:?}");
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                stats.errors += 1;
                eprintln!("error: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            println!(
                "stats ok={} wrong={} errors={} reconnects={}",
                stats.ok, stats.wrong, stats.errors, stats.reconnects
            );
            if dice.one_in(8) {
                break;
            }
        }
        stats.reconnects += 1;
        let mut ending = Some(ctx);
        let _ = timed(&mut || {
            if let Some(ctx) = ending.take() {
                let _ = ctx.finalize();
            }
            Ok(())
        });
    }
    println!(
        "stats ok={} wrong={} errors={} reconnects={}",
        stats.ok, stats.wrong, stats.errors, stats.reconnects
    );
    println!("done");
    if stats.wrong == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The private key of `CKA_ID` 01, and whether it is an EC key.
fn key_of(s: &Session) -> Result<(ObjectHandle, bool), Error> {
    let found = s.find_objects(&[
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Id(ID_RSA.to_vec()),
    ])?;
    match found[..] {
        [key] => {
            let ec = s
                .get_attributes(key, &[AttributeType::KeyType])?
                .iter()
                .any(|a| matches!(a, Attribute::KeyType(t) if *t == KeyType::EC));
            Ok((key, ec))
        }
        // A token without the key (or two) would make every signature wrong: say so loudly.
        _ => {
            println!("WRONG key lookup found {} keys", found.len());
            Err(Error::InvalidValue)
        }
    }
}

/// `openssl dgst -sha256 -verify` of `sig` over `data`, through files in `dir`.
fn verifies(pubkey: &Path, dir: &Path, data: &[u8], sig: &[u8]) -> bool {
    let (data_path, sig_path): (PathBuf, PathBuf) = (dir.join("data"), dir.join("sig"));
    if std::fs::write(&data_path, data).is_err() || std::fs::write(&sig_path, sig).is_err() {
        return false;
    }
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(pubkey)
        .arg("-signature")
        .arg(&sig_path)
        .arg(&data_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
