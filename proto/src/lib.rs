//! kyso's wire protocol: how `libkyso_pkcs11.so` and the `kyso` tools talk to `kysod`.
//!
//! The layers are the ones you would draw on a whiteboard: [`frame`] moves length-prefixed byte
//! frames over a stream, [`message`] says what is inside them, [`pin`] carries the one kind of
//! secret that crosses the wire, and [`client`] is the blocking client every program of kyso
//! uses to reach kysod. Messages mirror PKCS#11 closely so that the shim stays a translator.
//! Decoding is total: any byte string decodes to a message or to an error.
#![deny(unsafe_code)]

pub mod audit;
pub mod class;
pub mod client;
pub mod dates;
pub mod frame;
pub mod hex;
pub mod mechanism;
pub mod message;
pub mod pin;
pub mod standing;
pub mod tokens;

pub use frame::{FrameError, MAX_FRAME};
pub use message::*;
pub use pin::Pin;

/// Version spoken by this build; the handshake refuses any other. Raised whenever a message
/// changes shape.
pub const PROTOCOL_VERSION: u32 = 8;

/// A serial number as written in the configuration or by tools (`0A:1B`, `0x0a1b`, `A1B`)
/// in the form used for comparison: lowercase hex, no separators, no leading zeros.
pub fn normalise_serial(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let hex: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// `CK_ULONG` on the wire. kyso runs on LP64 Linux, where `CK_ULONG` is 64 bits wide.
pub type Ulong = u64;

/// `CK_UNAVAILABLE_INFORMATION`: the length PKCS#11 reports for an attribute it cannot return.
pub const UNAVAILABLE: Ulong = Ulong::MAX;

#[cfg(test)]
mod tests {
    use super::normalise_serial;

    #[test]
    fn serials_compare_in_one_form() {
        assert_eq!(normalise_serial("0A:1B"), "a1b");
        assert_eq!(normalise_serial("0x00a1b"), "a1b");
        assert_eq!(normalise_serial(" 0a 1b "), "a1b");
        assert_eq!(normalise_serial("00"), "0");
    }
}
