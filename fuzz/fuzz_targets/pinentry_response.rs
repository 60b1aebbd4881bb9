//! The pinentry's answers, line by line: any line gives a response or a fixed protocol error
//! (never one that quotes the line, which may hold the PIN), and `D` data survives Assuan's
//! escaping.
#![no_main]

use kyso_daemon::pinentry::{parse_response, PinentryError, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        match parse_response(line) {
            Ok(Response::Data(bytes)) => {
                assert!(bytes.len() <= line.len());
                let mut escaped = b"D ".to_vec();
                for &b in bytes.iter() {
                    if b == b'%' || b < 0x20 || b == 0x7f {
                        escaped.extend_from_slice(format!("%{b:02X}").as_bytes());
                    } else {
                        escaped.push(b);
                    }
                }
                match parse_response(&escaped) {
                    Ok(Response::Data(again)) => assert_eq!(again, bytes),
                    other => panic!("escaped data parses as {other:?}"),
                }
            }
            Ok(_) => {}
            Err(PinentryError::Protocol(_)) => {}
            Err(e) => panic!("a parse error that is not a protocol error: {e:?}"),
        }
    }
});
