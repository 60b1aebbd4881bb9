//! Login is per client, and only the daemon's own user may connect.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use cryptoki::object::{Attribute, ObjectClass};
use kyso_tests::util::{pkcs11_tool, run};
use kyso_tests::{shim_path, Daemon, Fixture, Module, LABEL_A, USER_PIN};

fn private_keys(s: &cryptoki::session::Session) -> usize {
    s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .expect("C_FindObjects")
        .len()
}

#[test]
fn a_client_that_has_not_logged_in_sees_no_private_objects() {
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    // Client A: this process, logged in.
    let shim = Module::shim(&daemon);
    let a = shim.user_session(fx.serial_a());
    assert_eq!(private_keys(&a), 2);

    // Client B: another process, no login, while A stays logged in.
    let b = pkcs11_tool(&shim_path(), &["--token-label", LABEL_A, "-O"]);
    assert!(b.status.success(), "{}", b.text());
    assert!(b.stdout.contains("Certificate Object"), "{}", b.text());
    assert!(b.stdout.contains("Public Key Object"), "{}", b.text());
    assert!(
        !b.stdout.contains("Private Key Object"),
        "B sees A's login:\n{}",
        b.text()
    );

    // B logging in itself does see them (so their absence above was the login, not the listing).
    let b2 = pkcs11_tool(
        &shim_path(),
        &["--token-label", LABEL_A, "-O", "--login", "--pin", USER_PIN],
    );
    assert!(b2.status.success(), "{}", b2.text());
    assert_eq!(
        b2.stdout.matches("Private Key Object").count(),
        2,
        "{}",
        b2.text()
    );

    // B has gone (and logged out, or just disconnected): A is still logged in.
    assert_eq!(private_keys(&a), 2);
    let key = kyso_tests::util::find_one(&a, ObjectClass::PRIVATE_KEY, kyso_tests::ID_RSA);
    a.sign(
        &cryptoki::mechanism::Mechanism::Sha256RsaPkcs,
        key,
        b"still here",
    )
    .expect("A can still sign");

    // And a fresh session of A shares A's login, a new B still does not.
    let a2 = shim.session(fx.serial_a());
    assert_eq!(private_keys(&a2), 2);
    let b3 = pkcs11_tool(&shim_path(), &["--token-label", LABEL_A, "-O"]);
    assert!(!b3.stdout.contains("Private Key Object"), "{}", b3.text());
}

#[test]
fn another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP another_user_is_refused: needs root to switch to uid 65534");
        return;
    }
    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    daemon.open_socket_to_everyone();

    // A copy of the shim that uid 65534 can load.
    let lib = fx.subdir("lib");
    let shim = lib.join("libkyso_pkcs11.so");
    fs::copy(shim_path(), &shim).expect("copy the shim");
    for p in [fx.dir(), lib.as_path(), shim.as_path()] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    let out = run(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "pkcs11-tool",
            ])
            .arg("--module")
            .arg(&shim)
            .arg("-L")
            .env("KYSO_SOCKET", daemon.socket()),
        Duration::from_secs(30),
    );
    let text = out.text();
    assert!(
        !text.contains(fx.serial_a()),
        "uid 65534 saw the token:\n{text}"
    );
    assert!(!text.contains(LABEL_A), "uid 65534 saw the token:\n{text}");
    // It got no slots or an error, not a hang (run() has a deadline) and not a crash.
    assert!(
        !out.status.success() || text.contains("No slots") || !text.contains("Slot 0"),
        "{text}"
    );
    assert!(
        out.status.code().is_some(),
        "pkcs11-tool died from a signal:\n{text}"
    );

    // The refusal is logged, naming the uid.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !daemon.log().contains("65534") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        daemon.log().contains("65534"),
        "no refusal logged:\n{}",
        daemon.log()
    );

    // The owner is still served.
    let me = Module::shim(&daemon);
    let s = me.session(fx.serial_a());
    assert!(s.get_session_info().is_ok());
}

/// A client speaking kyso's wire protocol directly, as the shim does.
struct WireClient {
    conn: kyso_proto::client::Connection,
}

impl WireClient {
    fn connect(daemon: &Daemon, instance: u64) -> WireClient {
        let conn = kyso_proto::client::Connection::open(daemon.socket(), instance).unwrap();
        WireClient { conn }
    }

    /// Two clients of `daemon`, and the slot of its first token.
    fn two(daemon: &Daemon) -> (WireClient, WireClient, u64) {
        use kyso_proto::{Call, Reply};
        let mut a = WireClient::connect(daemon, 1);
        let b = WireClient::connect(daemon, 2);
        let slot = match a.call(Call::GetSlotList {
            token_present: true,
        }) {
            (0, Reply::SlotList(s)) => s[0],
            other => panic!("{other:?}"),
        };
        (a, b, slot)
    }

    fn call(&mut self, call: kyso_proto::Call) -> (u64, kyso_proto::Reply) {
        let resp = self.conn.call(call).unwrap();
        (resp.rv, resp.reply)
    }

    /// Opens a session on `slot`, logs the user in with the fixture's PIN and finds the RSA
    /// private key: (session, key).
    fn logged_in_key(&mut self, slot: u64) -> (u64, u64) {
        use cryptoki_sys::*;
        use kyso_proto::{Attribute, Call, Pin, Reply};
        let session = self.handle(Call::OpenSession {
            slot,
            flags: CKF_SERIAL_SESSION,
        });
        let login = Call::Login {
            session,
            user_type: CKU_USER,
            pin: Some(Pin::new(USER_PIN.as_bytes())),
        };
        assert_eq!(self.call(login).0, CKR_OK);
        let template = vec![
            Attribute {
                kind: CKA_CLASS,
                value: Some(CKO_PRIVATE_KEY.to_ne_bytes().to_vec()),
            },
            Attribute {
                kind: CKA_ID,
                value: Some(vec![0x01]),
            },
        ];
        assert_eq!(
            self.call(Call::FindObjectsInit { session, template }).0,
            CKR_OK
        );
        let key = match self.call(Call::FindObjects { session, max: 10 }) {
            (0, Reply::Handles(h)) if h.len() == 1 => h[0],
            other => panic!("the key: {other:?}"),
        };
        assert_eq!(self.call(Call::FindObjectsFinal { session }).0, CKR_OK);
        (session, key)
    }

    fn handle(&mut self, call: kyso_proto::Call) -> u64 {
        match self.call(call) {
            (0, kyso_proto::Reply::Handle(h)) => h,
            other => panic!("expected a handle, got {other:?}"),
        }
    }
}

#[test]
fn handles_are_meaningless_to_another_client() {
    use cryptoki_sys::*;
    use kyso_proto::mechanism::Mechanism;
    use kyso_proto::{Attribute, AttributeQuery, Call, Operation, Pin, Reply};

    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let (mut a, mut b, slot) = WireClient::two(&daemon);

    // A logs in and finds its RSA private key.
    let (sa, key) = a.logged_in_key(slot);
    let template = vec![
        Attribute {
            kind: CKA_CLASS,
            value: Some(CKO_PRIVATE_KEY.to_ne_bytes().to_vec()),
        },
        Attribute {
            kind: CKA_ID,
            value: Some(vec![0x01]),
        },
    ];

    // B, not logged in, on the same token that A keeps logged in.
    let sb = b.handle(Call::OpenSession {
        slot,
        flags: CKF_SERIAL_SESSION,
    });
    // A's session handle is not B's.
    assert_eq!(
        b.call(Call::GetSessionInfo { session: sa }).0,
        CKR_SESSION_HANDLE_INVALID
    );
    // A's key handle is nothing to B: no attributes, no signature.
    let query = vec![AttributeQuery {
        kind: CKA_LABEL,
        len: None,
    }];
    assert_eq!(
        b.call(Call::GetAttributeValue {
            session: sb,
            object: key,
            queries: query
        })
        .0,
        CKR_OBJECT_HANDLE_INVALID
    );
    let sign = Call::OperationInit {
        session: sb,
        op: Operation::Sign,
        mechanism: Mechanism::new(CKM_SHA256_RSA_PKCS),
        key: Some(key),
    };
    assert_eq!(b.call(sign).0, CKR_KEY_HANDLE_INVALID);
    // B's search for the key finds nothing, and its session state is public.
    assert_eq!(
        b.call(Call::FindObjectsInit {
            session: sb,
            template
        })
        .0,
        CKR_OK
    );
    assert!(
        matches!(b.call(Call::FindObjects { session: sb, max: 10 }), (0, Reply::Handles(h)) if h.is_empty())
    );
    match b.call(Call::GetSessionInfo { session: sb }) {
        (0, Reply::SessionInfo(i)) => assert_eq!(i.state, CKS_RO_PUBLIC_SESSION),
        other => panic!("{other:?}"),
    }
    // A signs while logged in.
    let sign = Call::OperationInit {
        session: sa,
        op: Operation::Sign,
        mechanism: Mechanism::new(CKM_SHA256_RSA_PKCS),
        key: Some(key),
    };
    assert_eq!(a.call(sign.clone()).0, CKR_OK);
    match a.call(Call::Operate {
        session: sa,
        op: Operation::Sign,
        data: b"isolated".to_vec(),
        out: Some(512),
    }) {
        (
            0,
            Reply::Output {
                len: 256,
                data: Some(sig),
            },
        ) => assert_eq!(sig.len(), 256),
        other => panic!("A signs: {other:?}"),
    }
    // B cannot slip in with a wrong PIN while A is logged in. The token never counted that
    // guess, so the token is logged out for everyone: the next guess is the token's to count.
    let wrong = Call::Login {
        session: sb,
        user_type: CKU_USER,
        pin: Some(Pin::new(b"000000")),
    };
    assert_eq!(b.call(wrong).0, CKR_PIN_INCORRECT);
    assert_ne!(a.call(sign).0, CKR_OK, "A still signs after a wrong guess");
    match a.call(Call::GetSessionInfo { session: sa }) {
        (0, Reply::SessionInfo(i)) => assert_eq!(i.state, CKS_RO_PUBLIC_SESSION),
        other => panic!("{other:?}"),
    }

    // B's right PIN then logs B in at the token.
    let right = Call::Login {
        session: sb,
        user_type: CKU_USER,
        pin: Some(Pin::new(USER_PIN.as_bytes())),
    };
    assert_eq!(b.call(right).0, CKR_OK);
    match b.call(Call::GetSessionInfo { session: sb }) {
        (0, Reply::SessionInfo(i)) => assert_eq!(i.state, CKS_RO_USER_FUNCTIONS),
        other => panic!("{other:?}"),
    }
}

/// Session objects are the application's own, as PKCS#11 has them: another client never finds
/// them (at the module they are all kysod's), token objects are found by every client, and a
/// search that passes over other clients' objects still answers one object per call until
/// there are no more.
#[test]
fn session_objects_are_the_applications_own() {
    use cryptoki_sys::*;
    use kyso_proto::{Attribute, AttributeQuery, Call, Pin, Reply};

    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let (mut a, mut b, slot) = WireClient::two(&daemon);
    let rw = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    let sa = a.handle(Call::OpenSession { slot, flags: rw });
    let sb = b.handle(Call::OpenSession { slot, flags: rw });
    let label = |l: &str| Attribute {
        kind: CKA_LABEL,
        value: Some(l.as_bytes().to_vec()),
    };
    let data = |token: bool| {
        vec![
            Attribute {
                kind: CKA_CLASS,
                value: Some(CKO_DATA.to_ne_bytes().to_vec()),
            },
            label("phieu trinh"),
            Attribute {
                kind: CKA_TOKEN,
                value: Some(vec![token as u8]),
            },
            Attribute {
                kind: CKA_PRIVATE,
                value: Some(vec![CK_FALSE]),
            },
        ]
    };

    // A is logged in (its handles then end with its logout).
    let login = Call::Login {
        session: sa,
        user_type: CKU_USER,
        pin: Some(Pin::new(USER_PIN.as_bytes())),
    };
    assert_eq!(a.call(login).0, CKR_OK);

    // B's two session objects first, then A's token object and A's own session object.
    for _ in 0..2 {
        b.handle(Call::CreateObject {
            session: sb,
            template: data(false),
        });
    }
    let shared = a.handle(Call::CreateObject {
        session: sa,
        template: data(true),
    });
    let own = a.handle(Call::CreateObject {
        session: sa,
        template: data(false),
    });

    // Searches for the label, one object per C_FindObjects until one answers none.
    let find = |c: &mut WireClient, session| {
        let init = Call::FindObjectsInit {
            session,
            template: vec![label("phieu trinh")],
        };
        assert_eq!(c.call(init).0, CKR_OK);
        let mut found = Vec::new();
        loop {
            match c.call(Call::FindObjects { session, max: 1 }) {
                (0, Reply::Handles(h)) if h.is_empty() => break,
                (0, Reply::Handles(h)) if h.len() == 1 => found.push(h[0]),
                other => panic!("C_FindObjects: {other:?}"),
            }
            assert!(found.len() <= 4, "the search does not end: {found:?}");
        }
        assert_eq!(c.call(Call::FindObjectsFinal { session }).0, CKR_OK);
        found
    };
    let is_token = |c: &mut WireClient, session, object| {
        let query = vec![AttributeQuery {
            kind: CKA_TOKEN,
            len: Some(1),
        }];
        match c.call(Call::GetAttributeValue {
            session,
            object,
            queries: query,
        }) {
            (0, Reply::Attributes(v)) => v[0].value.as_deref() == Some(&[CK_TRUE][..]),
            other => panic!("C_GetAttributeValue: {other:?}"),
        }
    };

    // A finds its two, and none of B's, which the module holds before them.
    let mut found = find(&mut a, sa);
    found.sort_unstable();
    let mut mine = vec![shared, own];
    mine.sort_unstable();
    assert_eq!(found, mine, "A's search");

    // B finds its own two and A's token object, not A's session object.
    let found = find(&mut b, sb);
    assert_eq!(found.len(), 3, "B's search: {found:?}");
    let tokens = found.iter().filter(|&&o| is_token(&mut b, sb, o)).count();
    assert_eq!(tokens, 1, "B's search: {found:?}");

    // Once B's session closes its objects go; A still finds its two.
    assert_eq!(b.call(Call::CloseSession { session: sb }).0, CKR_OK);
    assert_eq!(find(&mut a, sa).len(), 2);

    // Logged out, A has no handles from its login, and finds its public objects again: its
    // own session object too, which outlives the logout.
    assert_eq!(a.call(Call::Logout { session: sa }).0, CKR_OK);
    let found = find(&mut a, sa);
    assert_eq!(found.len(), 2, "A's search after its logout");
    assert!(
        !found.contains(&own),
        "a handle from before the logout: {found:?}"
    );
}

/// A signing service in front of kysod (the web bridge) names the site it acts for and what
/// it signs; kysod's journal records them with each entry from then on.
#[test]
fn the_site_a_client_acts_for_is_journaled_with_its_signatures() {
    use cryptoki_sys::*;
    use kyso_proto::mechanism::Mechanism;
    use kyso_proto::{Call, Operation, Purpose, Reply};

    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    let (mut a, _b, slot) = WireClient::two(&daemon);
    let (session, key) = a.logged_in_key(slot);
    let purpose = Purpose {
        site: "https://vpdt.example.gov.vn".into(),
        document: "to-trinh-15.pdf".into(),
    };
    assert_eq!(a.call(Call::Purpose(Some(purpose))).0, CKR_OK);
    let init = Call::OperationInit {
        session,
        op: Operation::Sign,
        mechanism: Mechanism::new(CKM_SHA256_RSA_PKCS),
        key: Some(key),
    };
    assert_eq!(a.call(init).0, CKR_OK);
    let signed = a.call(Call::Operate {
        session,
        op: Operation::Sign,
        data: b"document".to_vec(),
        out: Some(512),
    });
    assert!(
        matches!(signed, (0, Reply::Output { len: 256, .. })),
        "{signed:?}"
    );

    let journal = fx.subdir("kysod").join("state").join("audit.jsonl");
    let entries: Vec<serde_json::Value> = std::fs::read_to_string(journal)
        .expect("journal")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let login = entries.iter().rfind(|e| e["event"] == "login").unwrap();
    assert!(login.get("site").is_none(), "{login}");
    let signature = entries.iter().rfind(|e| e["event"] == "signature").unwrap();
    assert_eq!(
        signature["site"], "https://vpdt.example.gov.vn",
        "{signature}"
    );
    assert_eq!(signature["document"], "to-trinh-15.pdf", "{signature}");
    assert_eq!(signature["result"], "CKR_OK", "{signature}");
}

/// Without a login an application makes public session objects as it would in process (key
/// generation included), while another application keeps the token logged in; private or
/// token objects need its own login.
#[test]
fn public_session_objects_need_no_login() {
    use cryptoki::error::RvError;
    use cryptoki::mechanism::Mechanism;
    use kyso_tests::rv_of;

    let fx = Fixture::new();
    let daemon = Daemon::start(&fx);
    // Another client keeps the module logged in.
    let (mut other, _b, slot) = WireClient::two(&daemon);
    other.logged_in_key(slot);

    let shim = Module::shim(&daemon);
    let s = shim.session(fx.serial_a());
    let p256 = Attribute::EcParams(vec![
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ]);
    let (public, private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                p256.clone(),
                Attribute::Token(false),
                Attribute::Verify(true),
            ],
            &[
                Attribute::Token(false),
                Attribute::Private(false),
                Attribute::Sign(true),
            ],
        )
        .expect("a public session key pair without a login");
    let digest = kyso_tests::util::sha256(b"public session key");
    let signature = s.sign(&Mechanism::Ecdsa, private, &digest).expect("C_Sign");
    s.verify(&Mechanism::Ecdsa, public, &digest, &signature)
        .expect("the signature verifies");
    // A private key whose template does not say is made public, not private behind the
    // other client's login.
    let (_, unmarked) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[p256.clone(), Attribute::Token(false)],
            &[Attribute::Token(false), Attribute::Sign(true)],
        )
        .expect("a key pair with an unmarked template");
    let private_attr = s
        .get_attributes(unmarked, &[cryptoki::object::AttributeType::Private])
        .expect("C_GetAttributeValue");
    assert!(
        matches!(private_attr.as_slice(), [Attribute::Private(false)]),
        "{private_attr:?}"
    );
    let aes = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::Private(false),
                Attribute::ValueLen(32.into()),
            ],
        )
        .expect("a public session secret key without a login");
    assert!(s.destroy_object(aes).is_ok());

    // Private or token objects are refused without the client's own login.
    for (public, private) in [
        (
            vec![p256.clone(), Attribute::Token(true)],
            vec![Attribute::Token(true), Attribute::Private(false)],
        ),
        (
            vec![p256.clone(), Attribute::Token(false)],
            vec![Attribute::Token(false), Attribute::Private(true)],
        ),
    ] {
        let err = s
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .expect_err("refused without a login");
        assert_eq!(rv_of(&err), Some(RvError::UserNotLoggedIn), "{err}");
    }
}
