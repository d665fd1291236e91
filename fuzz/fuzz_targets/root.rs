//! The trust-root parser and chain rules: never panic; a parsed root's
//! signed bytes are its canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoa_format::root::SignedRoot;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SignedRoot::parse(data) {
        let _ = r.check_self(std::time::SystemTime::now());
        let _ = r.walk_chain(vec![r.clone()], std::time::SystemTime::now(), true);
        let _ = r.check_successor(&r, std::time::SystemTime::now());
        let _ = r.trust_store();
    }
});
