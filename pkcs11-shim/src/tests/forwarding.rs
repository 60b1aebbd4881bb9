//! Calls forwarded with full PKCS#11 semantics: size queries, per-attribute results,
//! mechanism parameters, and argument checks that stop bad calls before they reach kysod.

use std::ptr;

use cryptoki_sys::*;
use kyso_proto::mechanism::{Mechanism, MechanismParam};
use kyso_proto::{AttributeQuery, AttributeValue, Call, Operation, Reply, UNAVAILABLE};

use super::fake_daemon::{standard, FakeDaemon};
use super::{assert_rv, serial, Initialised, TestDir};
use crate::convert::padded;
use crate::*;

#[test]
fn slot_list_follows_the_two_call_convention() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), standard);
    let _init = Initialised::at(&dir.socket());

    let mut count: CK_ULONG = 0;
    assert_rv(
        unsafe { C_GetSlotList(CK_TRUE, ptr::null_mut(), &mut count) },
        CKR_OK,
    );
    assert_eq!(count, 3);

    let mut slots = [0 as CK_SLOT_ID; 3];
    count = 1;
    assert_rv(
        unsafe { C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), &mut count) },
        CKR_BUFFER_TOO_SMALL,
    );
    assert_eq!(count, 3);
    assert_eq!(slots, [0; 3], "nothing written into a too-small list");

    count = 3;
    assert_rv(
        unsafe { C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), &mut count) },
        CKR_OK,
    );
    assert_eq!((count, slots), (3, [1, 5, 9]));

    assert_rv(
        unsafe { C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    let calls = daemon.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|(_, c)| *c
        == Call::GetSlotList {
            token_present: true
        }));
}

/// A signer whose 256-byte signatures start with the data's first byte, answering size
/// queries and short buffers as a module does; key 99 does not exist.
fn signer(call: &Call) -> (CK_RV, Reply) {
    match call {
        Call::OperationInit { key: Some(99), .. } => (CKR_KEY_HANDLE_INVALID, Reply::None),
        Call::OperationInit { .. } | Call::Update { .. } => (CKR_OK, Reply::None),
        Call::Final { .. } => (
            CKR_OK,
            Reply::Output {
                len: 256,
                data: Some(vec![0xCD; 256]),
            },
        ),
        Call::Operate { data, out, .. } => match out {
            None => (
                CKR_OK,
                Reply::Output {
                    len: 256,
                    data: None,
                },
            ),
            Some(n) if *n < 256 => (
                CKR_BUFFER_TOO_SMALL,
                Reply::Output {
                    len: 256,
                    data: None,
                },
            ),
            Some(_) => {
                let mut signature = vec![0xAB; 256];
                signature[0] = data.first().copied().unwrap_or(0);
                (
                    CKR_OK,
                    Reply::Output {
                        len: 256,
                        data: Some(signature),
                    },
                )
            }
        },
        other => standard(other),
    }
}

fn sha256_rsa() -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: CKM_SHA256_RSA_PKCS,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    }
}

fn sign_init(key: CK_OBJECT_HANDLE) -> CK_RV {
    let mut mechanism = sha256_rsa();
    unsafe { C_SignInit(42, &mut mechanism, key) }
}

/// `C_Sign(42, data, buffer of `room` bytes or NULL)` → (rv, *pulSignatureLen, buffer).
fn sign(data: &[u8], room: Option<usize>) -> (CK_RV, CK_ULONG, Vec<u8>) {
    let mut data = data.to_vec();
    let mut buffer = vec![0u8; room.unwrap_or(0)];
    let mut len = buffer.len() as CK_ULONG;
    let out = if room.is_some() {
        buffer.as_mut_ptr()
    } else {
        ptr::null_mut()
    };
    let rv = unsafe { C_Sign(42, data.as_mut_ptr(), data.len() as CK_ULONG, out, &mut len) };
    (rv, len, buffer)
}

fn init_call(key: CK_OBJECT_HANDLE) -> Call {
    Call::OperationInit {
        session: 42,
        op: Operation::Sign,
        mechanism: Mechanism::new(CKM_SHA256_RSA_PKCS),
        key: Some(key),
    }
}

fn sign_call(data: &[u8], out: Option<CK_ULONG>) -> Call {
    Call::Operate {
        session: 42,
        op: Operation::Sign,
        data: data.to_vec(),
        out,
    }
}

#[test]
fn sign_size_query_then_sign() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), signer);
    let _init = Initialised::at(&dir.socket());

    assert_rv(sign_init(7), CKR_OK);
    // Size query: the length, nothing written.
    let (rv, len, _) = sign(b"to be signed", None);
    assert_rv(rv, CKR_OK);
    assert_eq!(len, 256);
    // A short buffer: CKR_BUFFER_TOO_SMALL, the length, the buffer untouched.
    let (rv, len, small) = sign(b"to be signed", Some(10));
    assert_rv(rv, CKR_BUFFER_TOO_SMALL);
    assert_eq!(len, 256);
    assert_eq!(small, [0; 10]);
    // Room enough: the signature, and only its bytes written.
    let (rv, len, signature) = sign(b"to be signed", Some(300));
    assert_rv(rv, CKR_OK);
    assert_eq!(len, 256);
    assert_eq!(signature[0], b't');
    assert!(signature[1..256].iter().all(|&b| b == 0xAB));
    assert!(signature[256..].iter().all(|&b| b == 0));
    // A NULL length pointer is the caller's mistake, stopped before kysod.
    let mut data = *b"x";
    let mut out = [0u8; 300];
    assert_rv(
        unsafe { C_Sign(42, data.as_mut_ptr(), 1, out.as_mut_ptr(), ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    // A key the module does not know: its error comes from C_SignInit.
    assert_rv(sign_init(99), CKR_KEY_HANDLE_INVALID);

    // Each call reaches kysod as the application made it, buffer shape included.
    let calls: Vec<Call> = daemon.calls().into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        calls,
        [
            init_call(7),
            sign_call(b"to be signed", None),
            sign_call(b"to be signed", Some(10)),
            sign_call(b"to be signed", Some(300)),
            init_call(99),
        ]
    );
}

#[test]
fn updates_without_output_send_no_buffer() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), signer);
    let _init = Initialised::at(&dir.socket());
    let mut part = *b"part";
    assert_rv(unsafe { C_SignUpdate(42, part.as_mut_ptr(), 4) }, CKR_OK);
    assert_rv(unsafe { C_DigestUpdate(42, part.as_mut_ptr(), 4) }, CKR_OK);
    let mut signature = [1u8; 8];
    assert_rv(
        unsafe { C_VerifyFinal(42, signature.as_mut_ptr(), 8) },
        CKR_OK,
    );
    let calls: Vec<Call> = daemon.calls().into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        calls,
        [
            Call::Update {
                session: 42,
                op: Operation::Sign,
                data: b"part".to_vec(),
                out: None
            },
            Call::Update {
                session: 42,
                op: Operation::Digest,
                data: b"part".to_vec(),
                out: None
            },
            Call::VerifyFinal {
                session: 42,
                signature: vec![1; 8]
            },
        ]
    );
}

#[test]
fn attribute_values_come_back_per_attribute() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), |call| match call {
        Call::GetAttributeValue { .. } => (
            CKR_ATTRIBUTE_SENSITIVE,
            Reply::Attributes(vec![
                AttributeValue {
                    len: 5,
                    value: None,
                },
                AttributeValue {
                    len: 2,
                    value: Some(vec![1, 2]),
                },
                AttributeValue {
                    len: UNAVAILABLE,
                    value: None,
                },
            ]),
        ),
        other => standard(other),
    });
    let _init = Initialised::at(&dir.socket());

    let mut id = [0u8; 8];
    let mut value = [0u8; 32];
    let mut wrap = [0u8; 16];
    let mut template = [
        CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        },
        CK_ATTRIBUTE {
            type_: CKA_ID,
            pValue: id.as_mut_ptr().cast(),
            ulValueLen: 8,
        },
        CK_ATTRIBUTE {
            type_: CKA_VALUE,
            pValue: value.as_mut_ptr().cast(),
            ulValueLen: 32,
        },
        CK_ATTRIBUTE {
            type_: CKA_WRAP_TEMPLATE,
            pValue: wrap.as_mut_ptr().cast(),
            ulValueLen: 16,
        },
    ];
    let rv = unsafe { C_GetAttributeValue(42, 9, template.as_mut_ptr(), 4) };
    assert_rv(rv, CKR_ATTRIBUTE_SENSITIVE);
    let lens: Vec<CK_ULONG> = template.iter().map(|a| a.ulValueLen).collect();
    assert_eq!(
        lens,
        [5, 2, CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION]
    );
    assert_eq!(id, [1, 2, 0, 0, 0, 0, 0, 0]);
    assert_eq!(value, [0; 32]);
    assert_eq!(wrap, [0; 16], "array attributes are never sent nor written");

    let (_, call) = daemon.calls().pop().unwrap();
    assert_eq!(
        call,
        Call::GetAttributeValue {
            session: 42,
            object: 9,
            queries: vec![
                AttributeQuery {
                    kind: CKA_LABEL,
                    len: None
                },
                AttributeQuery {
                    kind: CKA_ID,
                    len: Some(8)
                },
                AttributeQuery {
                    kind: CKA_VALUE,
                    len: Some(32)
                },
            ],
        }
    );
}

#[test]
fn an_array_attribute_alone_makes_the_call_type_invalid() {
    let _serial = serial();
    let dir = TestDir::new();
    let _daemon = FakeDaemon::start(&dir.socket(), |call| match call {
        Call::GetAttributeValue { .. } => (
            CKR_OK,
            Reply::Attributes(vec![AttributeValue {
                len: 4,
                value: Some(b"RSA1".to_vec()),
            }]),
        ),
        other => standard(other),
    });
    let _init = Initialised::at(&dir.socket());
    let mut label = [0u8; 4];
    let mut template = [
        CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: label.as_mut_ptr().cast(),
            ulValueLen: 4,
        },
        CK_ATTRIBUTE {
            type_: CKA_UNWRAP_TEMPLATE,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        },
    ];
    let rv = unsafe { C_GetAttributeValue(42, 9, template.as_mut_ptr(), 2) };
    assert_rv(rv, CKR_ATTRIBUTE_TYPE_INVALID);
    assert_eq!(&label, b"RSA1");
    assert_eq!(template[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
}

#[test]
fn templates_carry_values_and_refuse_pointer_attributes() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), |call| match call {
        Call::CreateObject { .. } => (CKR_OK, Reply::Handle(77)),
        other => standard(other),
    });
    let _init = Initialised::at(&dir.socket());
    let mut class: CK_OBJECT_CLASS = CKO_DATA;
    let mut token: CK_BBOOL = CK_TRUE;
    let mut template = [
        CK_ATTRIBUTE {
            type_: CKA_CLASS,
            pValue: (&mut class as *mut CK_ULONG).cast(),
            ulValueLen: 8,
        },
        CK_ATTRIBUTE {
            type_: CKA_TOKEN,
            pValue: (&mut token as *mut u8).cast(),
            ulValueLen: 1,
        },
        CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        },
    ];
    let mut object = 0;
    assert_rv(
        unsafe { C_CreateObject(42, template.as_mut_ptr(), 3, &mut object) },
        CKR_OK,
    );
    assert_eq!(object, 77);
    let (_, call) = daemon.calls().pop().unwrap();
    let Call::CreateObject { template: sent, .. } = call else {
        panic!("{call:?}")
    };
    assert_eq!(sent[0].value.as_deref(), Some(&CKO_DATA.to_ne_bytes()[..]));
    assert_eq!(sent[1].value.as_deref(), Some(&[1u8][..]));
    assert_eq!(sent[2].value, None);

    template[2].type_ = CKA_WRAP_TEMPLATE;
    assert_rv(
        unsafe { C_CreateObject(42, template.as_mut_ptr(), 3, &mut object) },
        CKR_ATTRIBUTE_TYPE_INVALID,
    );
    assert_rv(
        unsafe { C_CreateObject(42, ptr::null_mut(), 1, &mut object) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_CreateObject(42, template.as_mut_ptr(), 2, ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_eq!(daemon.calls().len(), 1, "refused calls never reach kysod");
}

#[test]
fn mechanism_parameters_travel_by_shape() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), standard);
    let _init = Initialised::at(&dir.socket());
    let last_mechanism = || match daemon.calls().pop() {
        Some((_, Call::OperationInit { mechanism, .. })) => mechanism,
        other => panic!("{other:?}"),
    };

    let mut label = *b"label";
    let mut oaep = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: label.as_mut_ptr().cast(),
        ulSourceDataLen: 5,
    };
    let mut mechanism = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: (&mut oaep as *mut CK_RSA_PKCS_OAEP_PARAMS).cast(),
        ulParameterLen: std::mem::size_of::<CK_RSA_PKCS_OAEP_PARAMS>() as CK_ULONG,
    };
    assert_rv(unsafe { C_DecryptInit(42, &mut mechanism, 3) }, CKR_OK);
    assert_eq!(
        last_mechanism().param,
        MechanismParam::RsaOaep {
            hash: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            source: CKZ_DATA_SPECIFIED,
            source_data: b"label".to_vec()
        }
    );
    mechanism.ulParameterLen -= 1;
    assert_rv(
        unsafe { C_DecryptInit(42, &mut mechanism, 3) },
        CKR_MECHANISM_PARAM_INVALID,
    );

    let mut iv = [7u8; 12];
    let mut aad = *b"header";
    let mut gcm = CK_GCM_PARAMS {
        pIv: iv.as_mut_ptr(),
        ulIvLen: 12,
        ulIvBits: 96,
        pAAD: aad.as_mut_ptr(),
        ulAADLen: 6,
        ulTagBits: 128,
    };
    let mut mechanism = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: (&mut gcm as *mut CK_GCM_PARAMS).cast(),
        ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
    };
    assert_rv(unsafe { C_EncryptInit(42, &mut mechanism, 3) }, CKR_OK);
    assert_eq!(
        last_mechanism().param,
        MechanismParam::Gcm {
            iv: vec![7; 12],
            iv_bits: 96,
            aad: b"header".to_vec(),
            tag_bits: 128
        }
    );

    let mut pss = [1u8; 24];
    let mut mechanism = CK_MECHANISM {
        mechanism: CKM_SHA256_RSA_PKCS_PSS,
        pParameter: pss.as_mut_ptr().cast(),
        ulParameterLen: 24,
    };
    assert_rv(unsafe { C_SignInit(42, &mut mechanism, 3) }, CKR_OK);
    assert_eq!(last_mechanism().param, MechanismParam::Flat(vec![1; 24]));

    let calls_before = daemon.calls().len();
    mechanism.mechanism = CKM_ECDH1_DERIVE;
    assert_rv(
        unsafe { C_SignInit(42, &mut mechanism, 3) },
        CKR_MECHANISM_PARAM_INVALID,
    );
    mechanism.mechanism = CKM_EDDSA;
    assert_rv(
        unsafe { C_SignInit(42, &mut mechanism, 3) },
        CKR_MECHANISM_PARAM_INVALID,
    );
    assert_rv(
        unsafe { C_SignInit(42, ptr::null_mut(), 3) },
        CKR_ARGUMENTS_BAD,
    );
    assert_eq!(daemon.calls().len(), calls_before);
}

#[test]
fn null_pointers_are_arguments_bad_and_never_reach_kysod() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), standard);
    let _init = Initialised::at(&dir.socket());
    let mut count: CK_ULONG = 4;
    let mut byte = 0u8;
    let mut reserved = 0u8;
    assert_rv(
        unsafe { C_GetSlotList(0, ptr::null_mut(), ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_GetSlotInfo(1, ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_GetTokenInfo(1, ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_GetMechanismList(1, ptr::null_mut(), ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_GetMechanismInfo(1, CKM_RSA_PKCS, ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe {
            C_OpenSession(
                1,
                CKF_SERIAL_SESSION,
                ptr::null_mut(),
                None,
                ptr::null_mut(),
            )
        },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_GetSessionInfo(1, ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_InitToken(1, ptr::null_mut(), 0, ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(unsafe { C_Login(1, CKU_USER, ptr::null_mut(), 0) }, CKR_OK);
    assert_rv(
        unsafe { C_GetObjectSize(1, 2, ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_GetAttributeValue(1, 2, ptr::null_mut(), 1) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_FindObjects(1, ptr::null_mut(), 4, &mut count) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_FindObjects(1, &mut count, 1, ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_Encrypt(1, ptr::null_mut(), 4, ptr::null_mut(), &mut count) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_EncryptFinal(1, &mut byte, ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_Verify(1, &mut byte, 1, ptr::null_mut(), 8) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_GenerateRandom(1, ptr::null_mut(), 8) },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe {
            C_GenerateKeyPair(
                1,
                ptr::null_mut(),
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        },
        CKR_ARGUMENTS_BAD,
    );
    assert_rv(
        unsafe { C_WaitForSlotEvent(CKF_DONT_BLOCK, ptr::null_mut(), ptr::null_mut()) },
        CKR_ARGUMENTS_BAD,
    );
    let mut slot = 0;
    assert_rv(
        unsafe { C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, (&mut reserved as *mut u8).cast()) },
        CKR_ARGUMENTS_BAD,
    );
    let mut session = 0;
    assert_rv(
        unsafe { C_OpenSession(1, CKF_RW_SESSION, ptr::null_mut(), None, &mut session) },
        CKR_SESSION_PARALLEL_NOT_SUPPORTED,
    );

    let calls: Vec<Call> = daemon.calls().into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        calls,
        [Call::Login {
            session: 1,
            user_type: CKU_USER,
            pin: None
        }],
        "only the NULL-PIN login is valid"
    );
}

#[test]
fn sessions_logins_and_searches_round_trip() {
    let _serial = serial();
    let dir = TestDir::new();
    let daemon = FakeDaemon::start(&dir.socket(), |call| match call {
        Call::FindObjects { .. } => (CKR_OK, Reply::Handles(vec![3, 4])),
        Call::GenerateRandom { len, .. } => (CKR_OK, Reply::Bytes(vec![9; *len as usize])),
        Call::WaitForSlotEvent { block: false } => (CKR_OK, Reply::Slot(5)),
        other => standard(other),
    });
    let _init = Initialised::at(&dir.socket());
    let mut session = 0;
    assert_rv(
        unsafe {
            C_OpenSession(
                1,
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                ptr::null_mut(),
                None,
                &mut session,
            )
        },
        CKR_OK,
    );
    assert_eq!(session, 42);
    let mut pin = *b"123456";
    assert_rv(
        unsafe { C_Login(session, CKU_USER, pin.as_mut_ptr(), 6) },
        CKR_OK,
    );
    let mut found = [0; 8];
    let mut count = 0;
    assert_rv(
        unsafe { C_FindObjects(session, found.as_mut_ptr(), 8, &mut count) },
        CKR_OK,
    );
    assert_eq!((count, &found[..2]), (2, &[3, 4][..]));
    let mut random = [0u8; 16];
    assert_rv(
        unsafe { C_GenerateRandom(session, random.as_mut_ptr(), 16) },
        CKR_OK,
    );
    assert_eq!(random, [9; 16]);
    let mut slot = 0;
    assert_rv(
        unsafe { C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut slot, ptr::null_mut()) },
        CKR_OK,
    );
    assert_eq!(slot, 5);

    let calls: Vec<Call> = daemon.calls().into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        calls[0],
        Call::OpenSession {
            slot: 1,
            flags: CKF_SERIAL_SESSION | CKF_RW_SESSION
        }
    );
    let Call::Login {
        pin: Some(sent),
        user_type,
        ..
    } = &calls[1]
    else {
        panic!("{:?}", calls[1])
    };
    assert_eq!((sent.expose(), *user_type), (&b"123456"[..], CKU_USER));
    assert_eq!(
        calls[2],
        Call::FindObjects {
            session: 42,
            max: 8
        }
    );
    assert_eq!(calls[4], Call::WaitForSlotEvent { block: false });
}

#[test]
fn fixed_strings_are_blank_padded_and_truncated_on_character_boundaries() {
    assert_eq!(&padded::<8>(b"kyso"), b"kyso    ");
    assert_eq!(&padded::<4>(b"kysod"), b"kyso");
    // "NGUYỄN" — Ễ is three bytes; cutting inside it would leave invalid UTF-8.
    let name = "NGUYỄN".as_bytes();
    assert_eq!(&padded::<6>(name), b"NGUY  ");
    assert_eq!(&padded::<7>(name), "NGUYỄ".as_bytes());
}
