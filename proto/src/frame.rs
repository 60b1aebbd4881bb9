//! Length-prefixed frames: a little-endian `u32` length, then that many bytes of payload.
//!
//! The size limit is checked before anything is allocated, so a hostile length prefix costs
//! nothing. Payloads are postcard-encoded messages.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};
use zeroize::Zeroize;

/// Largest payload either side accepts (8 MiB): room for big single-part operations, small
/// enough that a misbehaving peer cannot make the other side allocate without bound.
pub const MAX_FRAME: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Encodes `msg` as one frame into `buf` (cleared first), ready for a single `write_all`.
pub fn encode<T: Serialize>(msg: &T, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    let mut out = postcard::to_extend(msg, std::mem::take(buf))?;
    let len = out.len() - 4;
    if len > MAX_FRAME {
        out.zeroize();
        *buf = out;
        buf.clear();
        return Err(FrameError::TooLarge(len));
    }
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    *buf = out;
    Ok(())
}

/// Decodes a payload (without its length prefix). Never panics, whatever the bytes.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    Ok(postcard::from_bytes(payload)?)
}

/// Writes `msg` as one frame, using `buf` as scratch space. If the message carries a secret
/// the caller zeroizes `buf` afterwards (see [`crate::Call::carries_secret`]).
pub fn write<T: Serialize, W: Write>(
    w: &mut W,
    msg: &T,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    encode(msg, buf)?;
    w.write_all(buf)?;
    Ok(())
}

/// Bytes of a frame taken from the stream at a time: the buffer grows with the bytes that
/// arrive, so a peer that announces a large frame and sends little costs little.
const CHUNK: usize = 64 << 10;

/// Reads one frame's payload into `buf`, which grows as the payload arrives. A clean end of
/// stream before the first byte of the prefix is [`FrameError::Closed`].
pub fn read_payload<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    buf.clear();
    while buf.len() < len {
        let start = buf.len();
        let end = len.min(start + CHUNK);
        buf.resize(end, 0);
        r.read_exact(&mut buf[start..end])?;
    }
    Ok(())
}

/// Reads and decodes one frame.
pub fn read<T: DeserializeOwned, R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<T, FrameError> {
    read_payload(r, buf)?;
    decode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Call, Request};

    #[test]
    fn round_trip_through_a_stream() {
        let msg = Request {
            id: 7,
            call: Call::GetSlotList {
                token_present: true,
            },
        };
        let mut buf = Vec::new();
        let mut wire = Vec::new();
        write(&mut wire, &msg, &mut buf).unwrap();
        let back: Request = read(&mut wire.as_slice(), &mut buf).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn oversized_prefix_is_refused_before_allocation() {
        let wire = (u32::MAX).to_le_bytes();
        let mut buf = Vec::new();
        let err = read::<Request, _>(&mut wire.as_slice(), &mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(n) if n == u32::MAX as usize));
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn a_frame_bigger_than_a_chunk_is_read_whole() {
        let msg = Request {
            id: 3,
            call: Call::SeedRandom {
                session: 1,
                seed: (0..3 * CHUNK + 5).map(|i| (i % 251) as u8).collect(),
            },
        };
        let mut buf = Vec::new();
        let mut wire = Vec::new();
        write(&mut wire, &msg, &mut buf).unwrap();
        let back: Request = read(&mut wire.as_slice(), &mut buf).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn an_announced_length_costs_only_the_bytes_that_came() {
        let mut wire = (MAX_FRAME as u32).to_le_bytes().to_vec();
        wire.extend_from_slice(&[7; 10]);
        let mut buf = Vec::new();
        assert!(read_payload(&mut wire.as_slice(), &mut buf).is_err());
        assert!(buf.capacity() <= 2 * CHUNK, "{}", buf.capacity());
    }

    #[test]
    fn truncated_frame_is_an_error_not_a_hang() {
        let mut wire = 100u32.to_le_bytes().to_vec();
        wire.extend_from_slice(&[1, 2, 3]);
        let mut buf = Vec::new();
        assert!(matches!(
            read::<Request, _>(&mut wire.as_slice(), &mut buf),
            Err(FrameError::Io(_))
        ));
        assert!(matches!(
            read::<Request, _>(&mut [].as_slice(), &mut buf),
            Err(FrameError::Closed)
        ));
    }
}
