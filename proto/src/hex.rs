//! Hexadecimal as kyso writes it (digests, serial numbers, identifiers): lowercase, two digits
//! a byte, no separators.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// The bytes `text` spells: an even number of hex digits of either case and nothing else
/// (no `0x`, separators or white space); `None` for anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| byte(pair[0], pair[1]))
        .collect()
}

/// The byte two hex digits (ASCII, either case) spell, e.g. of a `%xx` escape; `None` unless
/// both are hex digits.
pub fn byte(high: u8, low: u8) -> Option<u8> {
    Some(digit(high)? << 4 | digit(low)?)
}

/// The value of one hex digit (ASCII, either case).
pub fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lowercase() {
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn decodes_either_case_and_refuses_the_rest() {
        assert_eq!(decode("000fA0fF"), Some(vec![0x00, 0x0f, 0xa0, 0xff]));
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(byte(b'0', b'A'), Some(0x0a));
        assert_eq!(byte(b'+', b'a'), None);
        for bad in ["0", "abc", "0x00", "0g", "00 ", "0a:1b", "é0"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_inverts_encode(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            proptest::prop_assert_eq!(decode(&encode(&bytes)), Some(bytes));
        }

        #[test]
        fn any_text_decodes_without_panic(text in ".{0,40}") {
            let _ = decode(&text);
        }
    }
}
