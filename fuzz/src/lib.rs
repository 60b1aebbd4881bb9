//! Properties the fuzz targets check, shared between them.

use std::fmt::Debug;

use kyso_proto::frame;
use serde::{de::DeserializeOwned, Serialize};

/// Feeds `data` to a reader of frames as a peer would send them: the first frame decoded as
/// `First`, every later one as `Rest`, until the stream ends or a frame is refused. Every
/// message that decodes must survive a round trip (see [`round_trip`]).
pub fn frames<First, Rest>(data: &[u8])
where
    First: Serialize + DeserializeOwned + PartialEq + Debug,
    Rest: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let mut stream = data;
    let mut payload = Vec::new();
    let mut first = true;
    let mut payloads = Vec::new();
    let end = loop {
        if let Err(e) = frame::read_payload(&mut stream, &mut payload) {
            break e.to_string();
        }
        if first {
            round_trip::<First>(&payload);
            first = false;
        } else {
            round_trip::<Rest>(&payload);
        }
        payloads.push(payload.clone());
    };
    // A socket may cut the bytes anywhere (here in pieces of 1 to 8 bytes, or all at once):
    // the same frames are read, and reading stops the same way.
    let chunk = data.first().map_or(1, |b| usize::from(b % 9)).max(1);
    let chunk = if chunk == 8 { usize::MAX } else { chunk };
    let mut pieces = Pieces { data, chunk };
    let mut cut = Vec::new();
    let cut_end = loop {
        match frame::read_payload(&mut pieces, &mut payload) {
            Ok(()) => cut.push(payload.clone()),
            Err(e) => break e.to_string(),
        }
    };
    assert_eq!(cut, payloads, "a stream cut in pieces gave other frames");
    assert_eq!(cut_end, end, "a stream cut in pieces stopped otherwise");
}

/// A stream that gives at most `chunk` bytes per read.
struct Pieces<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl std::io::Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Decodes `payload` as a `T`; when that works, encoding the message again gives a frame
/// whose prefix is its length, which decodes (as bytes and through a stream) to an equal
/// message and encodes to the same bytes. Returns whether the payload decoded.
pub fn round_trip<T>(payload: &[u8]) -> bool
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(msg) = frame::decode::<T>(payload) else {
        return false;
    };
    let mut wire = Vec::new();
    match frame::encode(&msg, &mut wire) {
        Ok(()) => {}
        // A payload near the frame limit may re-encode just over it; that is a refusal,
        // not a crash.
        Err(kyso_proto::FrameError::TooLarge(_)) => return true,
        Err(e) => panic!("a decoded message does not encode: {e}"),
    }
    let prefix = u32::from_le_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
    assert_eq!(
        prefix,
        wire.len() - 4,
        "the prefix is not the payload length"
    );
    let back: T = frame::decode(&wire[4..]).expect("an encoded message decodes");
    assert_eq!(back, msg, "decode(encode(m)) != m");
    let mut scratch = Vec::new();
    let streamed: T = frame::read(&mut wire.as_slice(), &mut scratch).expect("frame reads back");
    assert_eq!(streamed, msg, "the stream reader disagrees with decode");
    let mut again = Vec::new();
    frame::encode(&back, &mut again).expect("encodes twice");
    assert_eq!(again, wire, "encoding is not deterministic");
    true
}
