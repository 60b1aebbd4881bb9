//! kyso's wire protocol: how `libkyso_pkcs11.so` and the `kyso` tools talk to `kysod`.
//!
//! The layers are the ones you would draw on a whiteboard: [`frame`] moves length-prefixed byte
//! frames over a stream, [`message`] says what is inside them, [`pin`] carries the one kind of
//! secret that crosses the wire. Messages mirror PKCS#11 closely so that the shim stays a
//! translator. Decoding is total: any byte string decodes to a message or to an error.
#![forbid(unsafe_code)]

pub mod audit;
pub mod frame;
pub mod mechanism;
pub mod message;
pub mod pin;
pub mod tokens;
pub mod wait;

pub use frame::{FrameError, MAX_FRAME};
pub use message::*;
pub use pin::Pin;

/// Version spoken by this build; the handshake refuses any other. Raised whenever a message
/// changes shape: 2 added the one-round-trip signature and the recovery calls.
pub const PROTOCOL_VERSION: u32 = 2;

/// `CK_ULONG` on the wire. kyso runs on LP64 Linux, where `CK_ULONG` is 64 bits wide.
pub type Ulong = u64;

/// `CK_UNAVAILABLE_INFORMATION`: the length PKCS#11 reports for an attribute it cannot return.
pub const UNAVAILABLE: Ulong = Ulong::MAX;
