//! The audit journal reader (`kyso audit verify`): any bytes give a verdict, never a panic; the
//! verdict does not depend on how the reader's buffer splits the lines; an intact journal
//! stays intact when a correct entry is appended.
#![no_main]

use std::io::BufReader;
use std::time::UNIX_EPOCH;

use kyso_proto::audit::{self, AuditEntry, AuditEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verdict = audit::verify_bytes(data);
    let lines = data.split_inclusive(|&b| b == b'\n').count();
    match &verdict {
        Ok(v) => {
            assert_eq!(v.entries, lines);
            assert!(data.is_empty() || data.ends_with(b"\n"));
        }
        Err(e) => assert!((1..=lines).contains(&e.line), "{e} of {lines} lines"),
    }

    let small_reads = audit::verify(BufReader::with_capacity(3, data));
    assert_eq!(small_reads, verdict);

    if let Ok(v) = verdict {
        let mut entry = AuditEntry::new(AuditEvent::Signature, UNIX_EPOCH);
        entry.prev = v.last_hash;
        let mut longer = data.to_vec();
        longer.extend_from_slice(entry.to_line().unwrap().as_bytes());
        longer.push(b'\n');
        let grown = audit::verify_bytes(&longer).expect("an appended entry keeps the chain");
        assert_eq!(grown.entries, v.entries + 1);
    }
});
