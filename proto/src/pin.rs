//! The one secret that crosses the wire: a PIN (user, SO, or a new PIN).

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// PIN bytes, zeroized when dropped; `Debug` prints nothing of them.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(Zeroizing<Vec<u8>>);

impl Pin {
    pub fn new(bytes: &[u8]) -> Self {
        Pin(Zeroizing::new(bytes.to_vec()))
    }

    /// The PIN's bytes, for handing to a module call. Do not copy them anywhere else.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin([redacted])")
    }
}

impl Serialize for Pin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Pin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PinVisitor;
        impl de::Visitor<'_> for PinVisitor {
            type Value = Pin;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("PIN bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Pin, E> {
                Ok(Pin::new(v))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Pin, E> {
                Ok(Pin(Zeroizing::new(v)))
            }
        }
        d.deserialize_byte_buf(PinVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_reveals_nothing() {
        let pin = Pin::new(b"123456");
        assert_eq!(format!("{pin:?}"), "Pin([redacted])");
        assert!(!format!("{:?}", Some(&pin)).contains("123456"));
    }

    #[test]
    fn survives_the_wire() {
        let pin = Pin::new(b"87654321");
        let bytes = postcard::to_allocvec(&pin).unwrap();
        let back: Pin = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.expose(), b"87654321");
    }
}
