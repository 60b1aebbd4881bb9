//! Writes the seed corpora: small, valid examples of every format the fuzz targets read.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --bin seed_corpus`
//! (writes `fuzz/corpus/<target>/seed-*`; the same files every time).

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use kyso_proto::audit::{self, AuditEntry, AuditEvent};
use kyso_proto::mechanism::{Mechanism, MechanismParam};
use kyso_proto::{
    frame, Attribute, AttributeQuery, AttributeValue, Call, Hello, HelloReply, Info, Operation,
    Pin, Refusal, Reply, Request, Response, SlotInfo, TokenInfo, TokenStatus, Version, Welcome,
    PROTOCOL_VERSION,
};
use cryptoki_sys::{
    CKA_CLASS, CKA_ID, CKF_DUAL_CRYPTO_OPERATIONS, CKF_LOGIN_REQUIRED, CKF_RNG,
    CKF_TOKEN_INITIALIZED, CKF_USER_PIN_INITIALIZED, CKG_MGF1_SHA256, CKM_AES_GCM, CKM_ECDSA,
    CKM_RSA_PKCS_OAEP, CKM_SHA256, CKM_SHA256_RSA_PKCS, CKO_PRIVATE_KEY, CKR_BUFFER_TOO_SMALL,
    CKR_OK, CKR_USER_NOT_LOGGED_IN, CKZ_DATA_SPECIFIED, CK_FLAGS,
};
use serde::Serialize;

/// The token flags of the examples: a SoftHSM2 token with its user PIN set.
const TOKEN_FLAGS: CK_FLAGS = CKF_RNG
    | CKF_LOGIN_REQUIRED
    | CKF_USER_PIN_INITIALIZED
    | CKF_DUAL_CRYPTO_OPERATIONS
    | CKF_TOKEN_INITIALIZED;

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    wire_to_daemon(&root.join("wire_to_daemon"));
    wire_to_client(&root.join("wire_to_client"));
    config(&root.join("config"));
    audit_journal(&root.join("audit_journal"));
    pinentry_response(&root.join("pinentry_response"));
    recovery_artefact(&root.join("recovery_artefact"));
    bridge_request(&root.join("bridge_request"));
    println!("seed corpora written under {}", root.display());
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create the corpus directory");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
}

/// Frames as they travel: each message length-prefixed, one after the other.
struct Stream(Vec<u8>);

impl Stream {
    fn new() -> Stream {
        Stream(Vec::new())
    }
    fn push<T: Serialize>(mut self, msg: &T) -> Stream {
        let mut buf = Vec::new();
        frame::encode(msg, &mut buf).expect("encode a seed message");
        self.0.extend_from_slice(&buf);
        self
    }
}

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        instance: 0x1234_5678_9abc_def0,
    }
}

fn requests() -> Vec<(&'static str, Call)> {
    vec![
        ("get-info", Call::GetInfo),
        (
            "slot-list",
            Call::GetSlotList {
                token_present: true,
            },
        ),
        ("token-info", Call::GetTokenInfo { slot: 1 }),
        ("open-session", Call::OpenSession { slot: 1, flags: 6 }),
        (
            "login",
            Call::Login {
                session: 1,
                user_type: 1,
                pin: Some(Pin::new(b"123456")),
            },
        ),
        (
            "login-protected-path",
            Call::Login {
                session: 1,
                user_type: 1,
                pin: None,
            },
        ),
        (
            "find-keys",
            Call::FindObjectsInit {
                session: 1,
                template: vec![
                    Attribute {
                        kind: CKA_CLASS,
                        value: Some(CKO_PRIVATE_KEY.to_le_bytes().to_vec()),
                    },
                    Attribute {
                        kind: CKA_ID,
                        value: Some(vec![1]),
                    },
                ],
            },
        ),
        (
            "find",
            Call::FindObjects {
                session: 1,
                max: 16,
            },
        ),
        (
            "attributes",
            Call::GetAttributeValue {
                session: 1,
                object: 2,
                queries: vec![
                    AttributeQuery {
                        kind: CKA_ID,
                        len: None,
                    },
                    AttributeQuery {
                        kind: CKA_CLASS,
                        len: Some(8),
                    },
                ],
            },
        ),
        (
            "sign-init",
            Call::OperationInit {
                session: 1,
                op: Operation::Sign,
                mechanism: Mechanism {
                    kind: CKM_ECDSA,
                    param: MechanismParam::None,
                },
                key: Some(2),
            },
        ),
        (
            "sign",
            Call::Operate {
                session: 1,
                op: Operation::Sign,
                data: b"hello".to_vec(),
                out: Some(256),
            },
        ),
        (
            "decrypt-oaep",
            Call::OperationInit {
                session: 1,
                op: Operation::Decrypt,
                mechanism: Mechanism {
                    kind: CKM_RSA_PKCS_OAEP,
                    param: MechanismParam::RsaOaep {
                        hash: CKM_SHA256,
                        mgf: CKG_MGF1_SHA256,
                        source: CKZ_DATA_SPECIFIED,
                        source_data: b"label".to_vec(),
                    },
                },
                key: Some(3),
            },
        ),
        (
            "encrypt-gcm",
            Call::OperationInit {
                session: 1,
                op: Operation::Encrypt,
                mechanism: Mechanism {
                    kind: CKM_AES_GCM,
                    param: MechanismParam::Gcm {
                        iv: vec![7; 12],
                        iv_bits: 96,
                        aad: b"aad".to_vec(),
                        tag_bits: 128,
                    },
                },
                key: Some(4),
            },
        ),
        (
            "set-pin",
            Call::SetPin {
                session: 1,
                old: Some(Pin::new(b"123456")),
                new: Some(Pin::new(b"654321")),
            },
        ),
        ("logout", Call::Logout { session: 1 }),
        ("close", Call::CloseSession { session: 1 }),
    ]
}

fn wire_to_daemon(dir: &Path) {
    let mut conversation = Stream::new().push(&hello());
    for (id, (name, call)) in requests().into_iter().enumerate() {
        let request = Request {
            id: id as u32 + 1,
            call,
        };
        write(dir, name, &Stream::new().push(&hello()).push(&request).0);
        conversation = conversation.push(&request);
    }
    write(dir, "conversation", &conversation.0);
}

fn fixed(text: &str, len: usize) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    out.resize(len, b' ');
    out
}

fn replies() -> Vec<(&'static str, u64, Reply)> {
    let version = Version {
        major: 2,
        minor: 40,
    };
    vec![
        (
            "info",
            CKR_OK,
            Reply::Info(Info {
                cryptoki_version: version,
                manufacturer: fixed("kyso", 32),
                flags: 0,
                library_description: fixed("kyso PKCS#11", 32),
                library_version: Version { major: 0, minor: 1 },
            }),
        ),
        ("slot-list", CKR_OK, Reply::SlotList(vec![1, 2, 7])),
        (
            "slot-info",
            CKR_OK,
            Reply::SlotInfo(SlotInfo {
                description: fixed("ePass2003", 64),
                manufacturer: fixed("Feitian", 32),
                flags: 7,
                hardware_version: version,
                firmware_version: version,
            }),
        ),
        (
            "token-info",
            CKR_OK,
            Reply::TokenInfo(TokenInfo {
                label: fixed("NGUYEN VAN A", 32),
                manufacturer: fixed("SoftHSM project", 32),
                model: fixed("SoftHSM v2", 16),
                serial: fixed("1f2e3d4c5b6a7988", 16),
                flags: TOKEN_FLAGS,
                max_session_count: 0,
                session_count: 1,
                max_rw_session_count: 0,
                rw_session_count: 0,
                max_pin_len: 255,
                min_pin_len: 4,
                total_public_memory: u64::MAX,
                free_public_memory: u64::MAX,
                total_private_memory: u64::MAX,
                free_private_memory: u64::MAX,
                hardware_version: version,
                firmware_version: version,
                utc_time: b"2026112316100000".to_vec(),
            }),
        ),
        ("session", CKR_OK, Reply::Handle(1)),
        (
            "attributes",
            CKR_OK,
            Reply::Attributes(vec![
                AttributeValue {
                    len: 1,
                    value: Some(vec![1]),
                },
                AttributeValue {
                    len: u64::MAX,
                    value: None,
                },
            ]),
        ),
        ("handles", CKR_OK, Reply::Handles(vec![2, 3])),
        (
            "signature",
            CKR_OK,
            Reply::Output {
                len: 64,
                data: Some(vec![0x5a; 64]),
            },
        ),
        (
            "too-small",
            CKR_BUFFER_TOO_SMALL,
            Reply::Output {
                len: 256,
                data: None,
            },
        ),
        (
            "status",
            CKR_OK,
            Reply::Status(vec![TokenStatus {
                slot: 1,
                present: true,
                label: "NGUYEN VAN A".into(),
                serial: "1f2e3d4c5b6a7988".into(),
                model: "ePass2003".into(),
                manufacturer: "Feitian".into(),
                module: "/usr/lib/softhsm/libsofthsm2.so".into(),
                flags: TOKEN_FLAGS,
                certificates: vec![kyso_proto::CertificateStatus {
                    id: "01".into(),
                    holder: "Nguyễn Văn A".into(),
                    serial: "0a1b2c".into(),
                    class: "personal".into(),
                    not_before: 1_700_000_000,
                    not_after: 1_800_000_000,
                    renew_by: 1_794_816_000,
                }],
            }]),
        ),
        ("none", CKR_USER_NOT_LOGGED_IN, Reply::None),
    ]
}

fn wire_to_client(dir: &Path) {
    let welcome: HelloReply = Ok(Welcome {
        version: PROTOCOL_VERSION,
    });
    let refusal: HelloReply = Err(Refusal {
        reason: "kysod speaks protocol 1; this client speaks 2".into(),
    });
    write(dir, "refusal", &Stream::new().push(&refusal).0);
    let mut conversation = Stream::new().push(&welcome);
    for (id, (name, rv, reply)) in replies().into_iter().enumerate() {
        let response = Response {
            id: id as u32 + 1,
            rv,
            reply,
        };
        write(dir, name, &Stream::new().push(&welcome).push(&response).0);
        conversation = conversation.push(&response);
    }
    write(dir, "conversation", &conversation.0);
}

fn config(dir: &Path) {
    write(
        dir,
        "full",
        br#"socket = "/run/user/1000/kyso/kysod.sock"
state_dir = "/home/user/.local/state/kyso"
log = "info"
pinentry = "/usr/bin/pinentry-curses"

[[module]]
path = "/usr/lib/softhsm/libsofthsm2.so"
always_present = true

[[token]]
name = "ePass2003"
usb = ["096e:0807", "25dd:*"]
module = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"

[limits]
connections_per_client = 64
sessions_per_client = 1024
connections_total = 1024

[pin]
protected_path = true

[policy]
confirm_organisation = true
warn_days = 60
classes = { "0a1b2c3d4e5f" = "organisation", "77" = "personal", "ff" = "other" }
"#,
    );
    write(dir, "empty", b"");
    write(
        dir,
        "unknown-key",
        b"[[module]]\npath = \"/m.so\"\nalways_presnt = true\n",
    );
}

fn journal(events: &[AuditEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = audit::GENESIS.to_string();
    for (i, &event) in events.iter().enumerate() {
        let mut e = AuditEntry::new(
            event,
            UNIX_EPOCH + Duration::from_secs(1_795_000_000 + i as u64),
        );
        e.uid = Some(1000);
        e.pid = Some(4242);
        e.application = Some("/usr/bin/pkcs11-tool".into());
        e.token_serial = Some("1f2e3d4c5b6a7988".into());
        e.token_label = Some("NGUYEN VAN A".into());
        e.slot = Some(1);
        if event == AuditEvent::Signature {
            e.cert_serial = Some("0a1b2c".into());
            e.cert_subject = Some("Nguyễn Văn A, Bộ Nội vụ".into());
            e.class = Some("personal".into());
            e.cert_not_after = Some("2027-01-01T00:00:00Z".into());
            e.mechanism = Some("0x40".into());
            e.data_sha256 = Some(audit::sha256_hex(b"hello"));
        }
        if event == AuditEvent::RecoveryApply {
            e.case_ref = Some("123/CV-BNV".into());
            e.detail = Some("PIN reset by the agency".into());
        }
        e.result = Some("CKR_OK".into());
        e.prev = prev;
        let line = e.to_line().expect("an entry serialises");
        prev = audit::line_hash(line.as_bytes());
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

fn audit_journal(dir: &Path) {
    use AuditEvent::*;
    write(dir, "empty", b"");
    write(
        dir,
        "day",
        &journal(&[
            TokenPresent,
            Login,
            Signature,
            Signature,
            LoginFailed,
            TokenRemoved,
        ]),
    );
    write(
        dir,
        "recovery",
        &journal(&[
            Lockout,
            RecoveryRequest,
            RecoveryApply,
            Unlock,
            PinChange,
            Wipe,
            Refusal,
        ]),
    );
}

fn pinentry_response(dir: &Path) {
    write(
        dir,
        "getpin",
        b"OK Pleased to meet you\nOK\nOK\nS PASSWORD_FROM_CACHE\nD 12%2534%0A\nOK\n",
    );
    write(
        dir,
        "cancel",
        b"OK Pleased to meet you\nERR 83886179 Operation cancelled <Pinentry>\n",
    );
    write(
        dir,
        "confirm",
        b"# comment\nINQUIRE QUALITY\nERR 83886194 Not confirmed\r\nOK\n",
    );
}

/// One artefact of each kind, in the shape the tools write them (fixed keys and times, so the
/// files are the same every run), and a helpdesk public key.
fn recovery_artefact(dir: &Path) {
    use ed25519_dalek::Signer;
    use kyso_recovery::artefact::{
        encode_b64, Grant, GrantBody, Receipt, RecoveryRequest, RequestCertificate, GRANT_KIND,
        RECEIPT_KIND, REQUEST_KIND, VERSION,
    };
    let nonce = "00112233445566778899aabbccddeeff".to_string();
    let request = RecoveryRequest {
        kind: REQUEST_KIND.into(),
        version: VERSION,
        serial: "7d1f2a9c0b3e4f51".into(),
        label: "NGUYEN VAN A".into(),
        model: "SoftHSM v2".into(),
        // A self-signed certificate made once with openssl (recovery/testdata/).
        certificates: vec![RequestCertificate::from_der(
            include_bytes!("../recovery/testdata/certificate.der"),
            "personal",
        )
        .expect("the seed certificate parses")],
        nonce: nonce.clone(),
        public_key: encode_b64(&[0x42; 32]),
        min_pin_len: 4,
        max_pin_len: 255,
        created: 1_780_000_000,
        expires: 1_780_604_800,
    };
    let request_json = serde_json::to_vec_pretty(&request).expect("serialise the request");
    write(dir, "request", &request_json);

    let body = GrantBody {
        serial: request.serial.clone(),
        nonce: nonce.clone(),
        request_sha256: kyso_recovery::sha256_hex(&request_json),
        case_ref: "15/CV-UBND".into(),
        operator: "helpdesk".into(),
        issued: 1_780_000_600,
        expires: 1_780_087_000,
        enc: encode_b64(&[0x17; 32]),
        sealed: encode_b64(&[0x5a; 98]),
        so_generation: Some("escrow".into()),
    };
    let helpdesk = kyso_recovery::grant::signing_key(&[0x21; 32]);
    let grant = Grant {
        kind: GRANT_KIND.into(),
        version: VERSION,
        signature: encode_b64(&helpdesk.sign(&body.signed_bytes()).to_bytes()),
        body,
    };
    write(
        dir,
        "grant",
        &serde_json::to_vec_pretty(&grant).expect("serialise the grant"),
    );

    // The MAC is in shape but made with no key: receipt::make takes the time of day, and the
    // seeds must be the same every run.
    let receipt = Receipt {
        kind: RECEIPT_KIND.into(),
        version: VERSION,
        serial: request.serial.clone(),
        nonce,
        grant_sha256: grant.body.digest(),
        applied: 1_780_001_000,
        mac: "c0".repeat(32),
    };
    write(
        dir,
        "receipt",
        &serde_json::to_vec_pretty(&receipt).expect("serialise the receipt"),
    );
    write(
        dir,
        "helpdesk-key",
        format!("{}\n", encode_b64(helpdesk.verifying_key().as_bytes())).as_bytes(),
    );
}

/// Calls to kyso-bridge as `path\norigin\nframe`.
fn bridge_request(dir: &Path) {
    let site = "https://vpdt.example.gov.vn";
    let hash = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
    for (name, path, frame) in [
        ("getcertinfo", "/GetCertInfo", "get_cert_info".to_string()),
        ("signmsg", "/SignMsg", format!(r#"{{"HashAlg":"SHA256","HashValue":"{hash}","Encode":"RSA"}}"#)),
        ("signmsg-bare", "/SignMsg", hash.to_string()),
        ("verifymsg", "/VerifyMsg", r#"{"Base64Content":"aGVsbG8=","Signature":"AAEC","CertBase64":"MAA="}"#.to_string()),
        ("signxml", "/SignXML", r#"{"Base64Content":"PGEvPg==","ReturnSignatureOnly":"true","HashAlg":"Sha256","XmlDsigForm":"true"}"#.to_string()),
        ("auth", "/Auth", "challenge-123".to_string()),
        ("license", "/GetLicenseRequest", "request".to_string()),
        ("unsupported", "/SignPDF", r#"{"FileUploadHandler":"https://a/up","SessionId":"","FileName":"https://a/f.pdf","MetaData":[]}"#.to_string()),
    ] {
        write(dir, name, format!("{path}\n{site}\n{frame}").as_bytes());
    }
}
