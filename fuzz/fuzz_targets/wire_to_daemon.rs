//! What kysod reads from a client: frames holding a `Hello`, then `Request`s.
#![no_main]

use kyso_proto::{Hello, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kyso_fuzz::frames::<Hello, Request>(data);
    // The input as one bare payload too, so mutations need not keep a prefix consistent.
    kyso_fuzz::round_trip::<Request>(data);
});
