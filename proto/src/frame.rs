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

/// Reads one frame's payload into `buf` (resized to fit). A clean end of stream before the
/// first byte of the prefix is [`FrameError::Closed`].
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
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(())
}

/// Reads and decodes one frame.
pub fn read<T: DeserializeOwned, R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<T, FrameError> {
    read_payload(r, buf)?;
    decode(buf)
}

/// How many bytes a [`FrameReader`] asks for at a time: a request or an answer of the
/// signing path (tens to hundreds of bytes) arrives in one read.
const READ_AHEAD: usize = 4096;

/// Reads frames from one stream with one `read` per frame that fits in [`READ_AHEAD`]: the
/// prefix and the payload arrive together, and reading them apart cost a second system call
/// per message on both sides of every call. Bytes read past a frame (a peer that sent the
/// next one already) are kept for the next read; [`FrameReader::has_buffered`] says so. Bytes
/// are zeroized as they are handed out, and all of them when the reader is dropped: frames
/// carry PINs.
pub struct FrameReader {
    buf: Box<[u8]>,
    /// The bytes read and not handed out yet: `buf[start..end]`.
    start: usize,
    end: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader {
            buf: vec![0; READ_AHEAD].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Whether bytes of a next frame were read already (so the stream need not be waited for).
    pub fn has_buffered(&self) -> bool {
        self.start < self.end
    }

    /// One read into the empty buffer, to check whether the peer sent something and take it
    /// at once (see `crate::channel`): the bytes read, 0 at the end of the stream, or the
    /// stream's error (`WouldBlock` from a non-blocking one with nothing there). With bytes
    /// buffered already it reads nothing and says how many there are.
    pub fn read_ahead<R: Read>(&mut self, r: &mut R) -> io::Result<usize> {
        if self.has_buffered() {
            return Ok(self.end - self.start);
        }
        let n = r.read(&mut self.buf)?;
        self.start = 0;
        self.end = n;
        Ok(n)
    }

    /// Reads one frame's payload into `payload` (resized to fit), as [`read_payload`] does.
    pub fn read_payload<R: Read>(
        &mut self,
        r: &mut R,
        payload: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        while self.end - self.start < 4 {
            if self.start > 0 {
                // Fewer than four bytes move to the front; their old place is cleared.
                let held = self.end - self.start;
                self.buf.copy_within(self.start..self.end, 0);
                self.buf[held..self.end].zeroize();
                self.start = 0;
                self.end = held;
            }
            match r.read(&mut self.buf[self.end..]) {
                Ok(0) if self.end == 0 => return Err(FrameError::Closed),
                Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&self.buf[self.start..self.start + 4]);
        let len = u32::from_le_bytes(prefix) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        self.consume(4);
        payload.clear();
        payload.resize(len, 0);
        let here = len.min(self.end - self.start);
        payload[..here].copy_from_slice(&self.buf[self.start..self.start + here]);
        self.consume(here);
        if here < len {
            // A frame longer than what came with its prefix: the rest straight into place.
            r.read_exact(&mut payload[here..])?;
        }
        Ok(())
    }

    /// Reads and decodes one frame.
    pub fn read<T: DeserializeOwned, R: Read>(
        &mut self,
        r: &mut R,
        payload: &mut Vec<u8>,
    ) -> Result<T, FrameError> {
        self.read_payload(r, payload)?;
        decode(payload)
    }

    /// Hands out `n` bytes: they are cleared, and the buffer starts over once it is empty.
    fn consume(&mut self, n: usize) {
        self.buf[self.start..self.start + n].zeroize();
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
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
            cpu: Some(0),
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

    /// A stream that hands out at most `chunk` bytes per read.
    struct Chunked<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn frame_reader_reads_what_read_payload_reads_however_the_bytes_come() {
        let mut wire = Vec::new();
        let mut buf = Vec::new();
        for (i, size) in [
            0usize,
            1,
            3,
            200,
            READ_AHEAD - 4,
            READ_AHEAD,
            3 * READ_AHEAD + 5,
        ]
        .into_iter()
        .enumerate()
        {
            let msg = Request {
                id: i as u32,
                call: Call::SeedRandom {
                    session: 1,
                    seed: vec![i as u8; size],
                },
                cpu: None,
            };
            write(&mut wire, &msg, &mut buf).unwrap();
        }
        // A cut prefix at the end.
        wire.extend_from_slice(&[9, 0]);
        let mut expected = Vec::new();
        let mut plain = wire.as_slice();
        let mut payload = Vec::new();
        let end = loop {
            match read_payload(&mut plain, &mut payload) {
                Ok(()) => expected.push(payload.clone()),
                Err(e) => break e.to_string(),
            }
        };
        assert_eq!(expected.len(), 7);
        for chunk in [1, 2, 3, 5, 64, READ_AHEAD, usize::MAX] {
            let mut stream = Chunked { data: &wire, chunk };
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            let got_end = loop {
                match reader.read_payload(&mut stream, &mut payload) {
                    Ok(()) => got.push(payload.clone()),
                    Err(e) => break e.to_string(),
                }
            };
            assert_eq!(got, expected, "chunks of {chunk}");
            assert_eq!(got_end, end, "chunks of {chunk}");
        }
    }

    #[test]
    fn frame_reader_keeps_the_next_frame_and_clears_what_it_handed_out() {
        let mut wire = Vec::new();
        let mut buf = Vec::new();
        let pin = Request {
            id: 1,
            call: Call::SeedRandom {
                session: 1,
                seed: b"123456".to_vec(),
            },
            cpu: None,
        };
        write(&mut wire, &pin, &mut buf).unwrap();
        write(&mut wire, &pin, &mut buf).unwrap();
        let mut reader = FrameReader::new();
        let mut stream = wire.as_slice();
        let first: Request = reader.read(&mut stream, &mut buf).unwrap();
        assert_eq!(first, pin);
        assert!(
            reader.has_buffered(),
            "the second frame came with the first"
        );
        assert!(
            !reader.buf[..reader.start]
                .windows(6)
                .any(|w| w == b"123456"),
            "handed-out bytes are cleared"
        );
        let second: Request = reader.read(&mut stream, &mut buf).unwrap();
        assert_eq!(second, pin);
        assert!(!reader.has_buffered());
        assert!(!reader.buf.windows(6).any(|w| w == b"123456"));
        assert!(matches!(
            reader.read::<Request, _>(&mut stream, &mut buf),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn frame_reader_refuses_an_oversized_prefix_before_allocating() {
        let wire = (u32::MAX).to_le_bytes();
        let mut buf = Vec::new();
        let err = FrameReader::new()
            .read::<Request, _>(&mut wire.as_slice(), &mut buf)
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(n) if n == u32::MAX as usize));
        assert!(buf.capacity() < 1024);
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

    #[test]
    fn frame_reader_reads_ahead_once_and_only_into_an_empty_buffer() {
        let mut wire = Vec::new();
        for n in [1u8, 2] {
            let mut one = Vec::new();
            encode(&vec![n; 10], &mut one).unwrap();
            wire.extend_from_slice(&one);
        }
        let mut reader = FrameReader::new();
        let mut source = wire.as_slice();
        // Both frames come in the one read; the second read ahead reads nothing.
        assert_eq!(reader.read_ahead(&mut source).unwrap(), wire.len());
        assert_eq!(reader.read_ahead(&mut source).unwrap(), wire.len());
        let mut buf = Vec::new();
        let empty: &mut &[u8] = &mut &[][..];
        assert_eq!(
            reader.read::<Vec<u8>, _>(empty, &mut buf).unwrap(),
            vec![1; 10]
        );
        assert_eq!(
            reader.read::<Vec<u8>, _>(empty, &mut buf).unwrap(),
            vec![2; 10]
        );
        assert!(!reader.has_buffered());
        // Empty again: the end of the stream reads as 0.
        assert_eq!(reader.read_ahead(empty).unwrap(), 0);
        assert!(matches!(
            reader.read::<Vec<u8>, _>(empty, &mut buf),
            Err(FrameError::Closed)
        ));
    }
}
