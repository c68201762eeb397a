//! Feeds arbitrary bytes to the spool's state-file decoder (`SpoolState::decode`, after the
//! UTF-8 check reading the file makes): nothing may panic, and a state that decodes must
//! encode to text that decodes to the same state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replica::spool::SpoolState;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(state) = SpoolState::decode(text) {
        assert_eq!(SpoolState::decode(&state.encode()), Ok(state));
    }
});
