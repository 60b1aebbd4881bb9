//! Raw DER walking for the few places where the exact bytes a signature covers must be kept
//! (signed attributes, the to-be-signed parts of CRLs and OCSP answers): decoding into typed
//! structures re-sorts SET OF values and would change them.

use der::asn1::AnyRef;
use der::{Decode, Encode, Reader, SliceReader};

/// Every TLV of `bytes`, in order.
pub fn items(bytes: &[u8]) -> Result<Vec<AnyRef<'_>>, String> {
    let mut reader = SliceReader::new(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        out.push(AnyRef::decode(&mut reader).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// The first TLV of `bytes`, ignoring what follows (the zero padding of `/Contents`).
pub fn first(bytes: &[u8]) -> Result<AnyRef<'_>, String> {
    let mut reader = SliceReader::new(bytes).map_err(|e| e.to_string())?;
    AnyRef::decode(&mut reader).map_err(|e| e.to_string())
}

/// The complete encoding (tag, length, value) of a TLV.
pub fn encoding(any: AnyRef<'_>) -> Result<Vec<u8>, String> {
    any.to_der().map_err(|e| e.to_string())
}

/// A GeneralizedTime's value (`YYYYMMDDHHMMSS[.f…]Z`), fractions allowed as RFC 3161 allows
/// them, as seconds since the Unix epoch.
pub fn generalized_time(value: &[u8]) -> Result<time::OffsetDateTime, String> {
    let text = std::str::from_utf8(value).map_err(|_| "time is not text".to_string())?;
    let body = text
        .strip_suffix('Z')
        .ok_or_else(|| format!("time {text} is not in UTC"))?;
    let (main, _fraction) = body.split_once('.').unwrap_or((body, ""));
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("malformed time {text}"));
    }
    let n = |r: std::ops::Range<usize>| main[r].parse::<u32>().unwrap_or(0);
    let month = time::Month::try_from(n(4..6) as u8).map_err(|e| e.to_string())?;
    let date = time::Date::from_calendar_date(n(0..4) as i32, month, n(6..8) as u8)
        .map_err(|e| e.to_string())?;
    let clock = time::Time::from_hms(n(8..10) as u8, n(10..12) as u8, n(12..14) as u8)
        .map_err(|e| e.to_string())?;
    Ok(time::PrimitiveDateTime::new(date, clock).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_and_without_fractions() {
        let t = generalized_time(b"20240305123456.789Z").unwrap();
        assert_eq!(t.unix_timestamp(), 1709642096);
        assert_eq!(
            generalized_time(b"20240305123456Z").unwrap(),
            t.replace_nanosecond(0).unwrap()
        );
        assert!(generalized_time(b"2024030512Z").is_err());
        assert!(generalized_time(b"20241305123456Z").is_err());
        assert!(generalized_time(b"20240305123456").is_err());
    }

    #[test]
    fn walks_junk_without_panicking() {
        assert!(items(&[0x30, 0x05, 0x01]).is_err());
        assert!(first(&[]).is_err());
        assert_eq!(items(&[0x05, 0x00, 0x05, 0x00]).unwrap().len(), 2);
    }
}
