//! What travels inside frames. A connection opens with [`Hello`] → [`Welcome`] (or
//! [`Refusal`]); then each [`Request`] gets exactly one [`Response`] with the same id.
//!
//! Calls mirror PKCS#11 functions one to one. Output buffers are described by [`OutBuf`] so that
//! a size query (`NULL` output pointer) or a too-small buffer keeps PKCS#11 semantics: the
//! daemon hands the module the same kind of buffer the application handed the shim, so the
//! module decides, exactly as it would in process, whether the operation goes on.

use serde::{Deserialize, Serialize};

use crate::mechanism::Mechanism;
use crate::{Pin, Ulong};

/// First frame from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    /// Random per `C_Initialize`: connections presenting the same instance from the same
    /// process are one client (one application), sharing sessions and login state.
    pub instance: u64,
}

impl Hello {
    /// The version a hello's payload names, read from its first field alone: a hello of
    /// another version may differ in the rest, and its sender should still learn which
    /// version the daemon speaks.
    pub fn version_of(payload: &[u8]) -> Option<u32> {
        postcard::take_from_bytes::<u32>(payload)
            .ok()
            .map(|(version, _)| version)
    }
}

/// The daemon's answer to a [`Hello`] it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u32,
}

/// The daemon's answer to a [`Hello`] it refuses, with a message for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: String,
}

pub type HelloReply = Result<Welcome, Refusal>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u32,
    pub call: Call,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: u32,
    /// The `CK_RV` of the call.
    pub rv: Ulong,
    /// Data returned; present with some non-OK results too (`CKR_BUFFER_TOO_SMALL` carries
    /// the needed length, `C_GetAttributeValue` per-attribute results).
    pub reply: Reply,
}

/// An output buffer as the application gave it: `None` for a `NULL` pointer (a size query),
/// `Some(n)` for a buffer of `n` bytes.
pub type OutBuf = Option<Ulong>;

/// A template entry (`CK_ATTRIBUTE` with its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub kind: Ulong,
    /// `None` for `pValue == NULL`.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// One entry of a `C_GetAttributeValue` query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeQuery {
    pub kind: Ulong,
    /// The application's buffer: `None` asks for the length only.
    pub len: OutBuf,
}

/// One entry of a `C_GetAttributeValue` answer, as the module filled it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeValue {
    /// `ulValueLen` after the call ([`crate::UNAVAILABLE`] when the module could not answer).
    pub len: Ulong,
    /// The value, when a buffer was given and filled.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// Which cryptographic operation an `*Init`/`*Update`/`*Final` call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    Encrypt,
    Decrypt,
    Digest,
    Sign,
    Verify,
    SignRecover,
    VerifyRecover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub cryptoki_version: Version,
    #[serde(with = "serde_bytes")]
    pub manufacturer: Vec<u8>,
    pub flags: Ulong,
    #[serde(with = "serde_bytes")]
    pub library_description: Vec<u8>,
    pub library_version: Version,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    #[serde(with = "serde_bytes")]
    pub description: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub manufacturer: Vec<u8>,
    pub flags: Ulong,
    pub hardware_version: Version,
    pub firmware_version: Version,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    #[serde(with = "serde_bytes")]
    pub label: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub manufacturer: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub model: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub serial: Vec<u8>,
    pub flags: Ulong,
    pub max_session_count: Ulong,
    pub session_count: Ulong,
    pub max_rw_session_count: Ulong,
    pub rw_session_count: Ulong,
    pub max_pin_len: Ulong,
    pub min_pin_len: Ulong,
    pub total_public_memory: Ulong,
    pub free_public_memory: Ulong,
    pub total_private_memory: Ulong,
    pub free_private_memory: Ulong,
    pub hardware_version: Version,
    pub firmware_version: Version,
    #[serde(with = "serde_bytes")]
    pub utc_time: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MechanismInfo {
    pub min_key_size: Ulong,
    pub max_key_size: Ulong,
    pub flags: Ulong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub slot: Ulong,
    pub state: Ulong,
    pub flags: Ulong,
    pub device_error: Ulong,
}

/// A token as `kyso status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStatus {
    pub slot: Ulong,
    pub present: bool,
    pub label: String,
    pub serial: String,
    pub model: String,
    pub manufacturer: String,
    pub module: String,
    pub flags: Ulong,
    /// The certificates on the token, read when it arrived.
    pub certificates: Vec<CertificateStatus>,
}

/// A certificate on a token, as `kyso status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    /// `CKA_ID`, lowercase hex (the key with the same id signs with it).
    pub id: String,
    /// `CN, O` of the subject.
    pub holder: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// `personal`, `organisation` or `other` (from the subject's UID).
    pub class: String,
    /// Validity, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The renewal cut-off: a renewal needs at least 30 days of validity left.
    pub renew_by: i64,
}

/// A PKCS#11 call (or one of kyso's own, at the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    GetInfo,
    GetSlotList {
        token_present: bool,
    },
    GetSlotInfo {
        slot: Ulong,
    },
    GetTokenInfo {
        slot: Ulong,
    },
    /// `C_WaitForSlotEvent`; with `block` the daemon answers only when a slot changes.
    WaitForSlotEvent {
        block: bool,
    },
    GetMechanismList {
        slot: Ulong,
    },
    GetMechanismInfo {
        slot: Ulong,
        mechanism: Ulong,
    },
    InitToken {
        slot: Ulong,
        so_pin: Option<Pin>,
        #[serde(with = "serde_bytes")]
        label: Vec<u8>,
    },
    InitPin {
        session: Ulong,
        pin: Option<Pin>,
    },
    SetPin {
        session: Ulong,
        old: Option<Pin>,
        new: Option<Pin>,
    },
    OpenSession {
        slot: Ulong,
        flags: Ulong,
    },
    CloseSession {
        session: Ulong,
    },
    CloseAllSessions {
        slot: Ulong,
    },
    GetSessionInfo {
        session: Ulong,
    },
    Login {
        session: Ulong,
        user_type: Ulong,
        pin: Option<Pin>,
    },
    Logout {
        session: Ulong,
    },
    CreateObject {
        session: Ulong,
        template: Vec<Attribute>,
    },
    CopyObject {
        session: Ulong,
        object: Ulong,
        template: Vec<Attribute>,
    },
    DestroyObject {
        session: Ulong,
        object: Ulong,
    },
    GetObjectSize {
        session: Ulong,
        object: Ulong,
    },
    GetAttributeValue {
        session: Ulong,
        object: Ulong,
        queries: Vec<AttributeQuery>,
    },
    SetAttributeValue {
        session: Ulong,
        object: Ulong,
        template: Vec<Attribute>,
    },
    FindObjectsInit {
        session: Ulong,
        template: Vec<Attribute>,
    },
    FindObjects {
        session: Ulong,
        max: Ulong,
    },
    FindObjectsFinal {
        session: Ulong,
    },
    /// `C_EncryptInit`, `C_SignInit`, … (`key` is `None` for `C_DigestInit`).
    OperationInit {
        session: Ulong,
        op: Operation,
        mechanism: Mechanism,
        key: Option<Ulong>,
    },
    /// Single-part `C_Encrypt`, `C_Decrypt`, `C_Digest`, `C_Sign`, `C_SignRecover`, `C_VerifyRecover`.
    Operate {
        session: Ulong,
        op: Operation,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        out: OutBuf,
    },
    /// `C_*Update`. Encrypt/decrypt updates return output; the others ignore `out`.
    Update {
        session: Ulong,
        op: Operation,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        out: OutBuf,
    },
    /// `C_EncryptFinal`, `C_DecryptFinal`, `C_DigestFinal`, `C_SignFinal`.
    Final {
        session: Ulong,
        op: Operation,
        out: OutBuf,
    },
    Verify {
        session: Ulong,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    VerifyFinal {
        session: Ulong,
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    DigestKey {
        session: Ulong,
        key: Ulong,
    },
    GenerateKey {
        session: Ulong,
        mechanism: Mechanism,
        template: Vec<Attribute>,
    },
    GenerateKeyPair {
        session: Ulong,
        mechanism: Mechanism,
        public: Vec<Attribute>,
        private: Vec<Attribute>,
    },
    GenerateRandom {
        session: Ulong,
        len: Ulong,
    },
    SeedRandom {
        session: Ulong,
        #[serde(with = "serde_bytes")]
        seed: Vec<u8>,
    },
    /// kyso: the tokens the daemon knows, present or not.
    Status,
    /// kyso: change the user PIN of the token in `slot`; kysod asks for the current PIN and
    /// the new one (twice) through the pinentry, so no PIN passes through the caller.
    ChangePin {
        slot: Ulong,
    },
    /// kyso: start a recovery of the token in `slot`: kysod makes an ephemeral X25519 key
    /// pair, keeps the private half in its memory (until the grant is applied, the request
    /// expires or kysod stops) and answers with the request file ([`Reply::Bytes`]).
    RecoveryRequest {
        slot: Ulong,
    },
    /// kyso: apply a recovery grant (the file's bytes). kysod checks it, logs in as SO, has the
    /// user choose the new PIN through the pinentry, rotates the SO PIN and answers with the
    /// receipt file ([`Reply::Bytes`]); a refusal comes with [`Reply::Text`]. `force` allows
    /// spending the SO PIN's final try.
    RecoveryApply {
        #[serde(with = "serde_bytes")]
        grant: Vec<u8>,
        force: bool,
    },
    /// kyso-helpdesk, on the helpdesk's own machine: re-initialise a returned token
    /// (`C_InitToken` with the SO PIN chosen among `candidates`), with a new label.
    Wipe {
        slot: Ulong,
        candidates: Vec<SoPinCandidate>,
        label: String,
        case_ref: String,
    },
    /// kyso: what this client's next calls are for, as a signing service in front of kysod
    /// knows it (kyso's web bridge): the site that asked and what it asked to sign. kysod names
    /// them in its prompts and journal entries until the client says otherwise; `None` ends it.
    Purpose(Option<Purpose>),
}

/// The site a signing service acts for, and what that site asked to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purpose {
    /// The site's origin, e.g. `https://vpdt.example.gov.vn`.
    pub site: String,
    /// What is signed: a document's name or address, or what kind of data.
    pub document: String,
}

/// An SO PIN the helpdesk's escrow holds for a token, named by its generation: the grant digest
/// that installed it (`escrow` for one recorded by hand). Until a rotation is confirmed the
/// escrow holds both the old and the new SO PIN; kysod records the generation it installed on
/// each token, so it picks the right one without spending an SO PIN try on the wrong one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoPinCandidate {
    pub generation: String,
    pub pin: Pin,
}

impl Call {
    /// Whether the encoded call holds a PIN, so the buffers it passed through must be zeroized.
    pub fn carries_secret(&self) -> bool {
        matches!(
            self,
            Call::InitToken {
                so_pin: Some(_),
                ..
            } | Call::InitPin { pin: Some(_), .. }
                | Call::SetPin { .. }
                | Call::Login { pin: Some(_), .. }
                | Call::Wipe { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    None,
    Info(Info),
    SlotList(Vec<Ulong>),
    SlotInfo(SlotInfo),
    TokenInfo(TokenInfo),
    /// A slot id (`C_WaitForSlotEvent`).
    Slot(Ulong),
    Mechanisms(Vec<Ulong>),
    MechanismInfo(MechanismInfo),
    /// A session or object handle.
    Handle(Ulong),
    KeyPair {
        public: Ulong,
        private: Ulong,
    },
    SessionInfo(SessionInfo),
    Size(Ulong),
    Attributes(Vec<AttributeValue>),
    Handles(Vec<Ulong>),
    /// Output of an operation: the length the module reported, and the bytes when it wrote them.
    Output {
        len: Ulong,
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
    },
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    Status(Vec<TokenStatus>),
    /// A message for a person (why a recovery call was refused, which SO PIN was used).
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode;
    use crate::mechanism::MechanismParam;
    use proptest::prelude::*;

    fn samples() -> Vec<Call> {
        vec![
            Call::GetInfo,
            Call::Login {
                session: 3,
                user_type: 1,
                pin: Some(Pin::new(b"123456")),
            },
            Call::GetAttributeValue {
                session: 1,
                object: 9,
                queries: vec![
                    AttributeQuery {
                        kind: 0x11,
                        len: None,
                    },
                    AttributeQuery {
                        kind: 0x3,
                        len: Some(32),
                    },
                ],
            },
            Call::OperationInit {
                session: 1,
                op: Operation::Sign,
                mechanism: Mechanism {
                    kind: 0x43,
                    param: MechanismParam::Flat(vec![1, 2, 3]),
                },
                key: Some(5),
            },
            Call::Operate {
                session: 1,
                op: Operation::Sign,
                data: vec![0; 100],
                out: Some(256),
            },
        ]
    }

    #[test]
    fn sample_calls_round_trip() {
        for call in samples() {
            let req = Request { id: 1, call };
            let bytes = postcard::to_allocvec(&req).unwrap();
            assert_eq!(decode::<Request>(&bytes).unwrap(), req);
        }
    }

    /// Byte strings are (de)serialized as bytes, one copy instead of a call per byte, and
    /// keep the wire format they had as sequences of `u8` (so protocol 4 is unchanged).
    #[test]
    fn byte_strings_keep_the_wire_format_of_byte_sequences() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct AsSequence(Vec<u8>, Option<Vec<u8>>);
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct AsBytes(
            #[serde(with = "serde_bytes")] Vec<u8>,
            #[serde(with = "serde_bytes")] Option<Vec<u8>>,
        );
        for len in [0, 1, 127, 128, 300, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sequence =
                postcard::to_allocvec(&AsSequence(data.clone(), Some(data.clone()))).unwrap();
            let bytes = postcard::to_allocvec(&AsBytes(data.clone(), Some(data.clone()))).unwrap();
            assert_eq!(sequence, bytes, "{len} bytes");
            assert_eq!(
                postcard::from_bytes::<AsBytes>(&sequence).unwrap(),
                AsBytes(data.clone(), Some(data))
            );
        }
    }

    #[test]
    fn secret_bearing_calls_are_flagged() {
        assert!(samples()[1].carries_secret());
        assert!(!samples()[0].carries_secret());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_a_message_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
            let _ = decode::<Hello>(&bytes);
            let _ = decode::<HelloReply>(&bytes);
        }

        #[test]
        fn mutated_valid_frames_never_panic(idx in 0usize..5, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let req = Request { id: 2, call: samples()[idx].clone() };
            let mut bytes = postcard::to_allocvec(&req).unwrap();
            for (pos, val) in flips {
                let n = bytes.len();
                bytes[pos % n] = val;
            }
            let _ = decode::<Request>(&bytes);
        }

        #[test]
        fn responses_round_trip(id in any::<u32>(), rv in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..300), len in any::<u64>()) {
            let resp = Response { id, rv, reply: Reply::Output { len, data: Some(data) } };
            let bytes = postcard::to_allocvec(&resp).unwrap();
            prop_assert_eq!(decode::<Response>(&bytes).unwrap(), resp);
        }
    }
}
