//! The manifest parser: never panics; an accepted manifest re-serialises to
//! bytes that parse to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoa_format::{BundleManifest, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(m) = BundleManifest::from_bytes(data, &limits) {
        let again = BundleManifest::from_bytes(&m.to_bytes(), &limits).expect("re-parse");
        assert_eq!(again, m);
    }
});
