//! What the shim and the tools read from kysod: frames holding a `HelloReply` (a welcome or a
//! refusal), then `Response`s.
#![no_main]

use kyso_proto::{HelloReply, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kyso_fuzz::frames::<HelloReply, Response>(data);
    kyso_fuzz::round_trip::<Response>(data);
});
