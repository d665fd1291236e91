//! A whole bundle file: zstd frames (window capped), then tar, manifest,
//! signatures and carried roots, then content verification against a fixed
//! key. Never panics; nothing is accepted (the key signed nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoa_format::reader::{inspect, verify, NullSink, VerifyOptions};
use stoa_format::{Limits, SigningKeyPair, TrustStore};

fuzz_target!(|data: &[u8]| {
    let _ = inspect(std::io::Cursor::new(data.to_vec()), &Limits::default());
    let trust = TrustStore::from_keys([SigningKeyPair::generate().verifying_key()]);
    let r = verify(
        std::io::Cursor::new(data.to_vec()),
        &trust,
        &VerifyOptions::default(),
        &mut NullSink,
        &mut |_| {},
    );
    assert!(
        r.is_err(),
        "a bundle verified against a key that signed nothing"
    );
});
