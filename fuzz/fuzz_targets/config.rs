//! kysod's configuration file: any text parses to a configuration or to an error that names
//! the line at fault, a line the text has.
#![no_main]

use kyso_daemon::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The daemon reads the file as UTF-8 first; other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(message) = Config::parse(text) {
        let line: usize = message
            .strip_prefix("line ")
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the error names no line: {message:?}"));
        let lines = text.split('\n').count();
        assert!(
            (1..=lines).contains(&line),
            "line {line} of a {lines}-line text: {message:?}"
        );
    }
});
