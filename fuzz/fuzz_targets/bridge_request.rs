//! A web page's call to kyso-bridge: the WebSocket path, the `Origin` header and the one text
//! frame, as three lines. Any input gives a request or a failure with a status (never a
//! panic); a decoded digest has its algorithm's length; every failure answers as JSON with
//! the status and a message; an origin that parses is already in canonical form.
#![no_main]

use kyso_bridge::origin::Origin;
use kyso_bridge::request::{decode, operation_of, Request, Signed};
use kyso_bridge::status::Status;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let (path, origin, frame) = (
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
    );
    if let Ok(o) = Origin::parse(origin) {
        assert_eq!(Origin::parse(o.as_str()).as_ref(), Ok(&o), "canonical form is stable");
    }
    let Some(op) = operation_of(path) else {
        return;
    };
    match decode(op, frame) {
        Ok(Request::SignMsg(d)) => assert_eq!(d.value.len(), d.alg.digest_len()),
        Ok(Request::VerifyMsg { signed: Signed::Digest(d), .. }) => {
            assert_eq!(d.value.len(), d.alg.digest_len())
        }
        Ok(_) => {}
        Err(f) => {
            assert!(matches!(f.status, Status::BadRequest | Status::NotSupported), "{f:?}");
            let answer = f.answer();
            assert_eq!(answer["Status"], f.status.code());
            assert!(answer["Message"].as_str().is_some_and(|m| m.contains(" / ")));
        }
    }
});
