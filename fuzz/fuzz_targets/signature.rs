//! The upstream signature parsers (cosign `.sig` manifests and
//! simple-signing payloads): never panic, whatever the bytes; a parsed
//! manifest's blobs are within their caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoa_format::limits::{MAX_SIGNATURE_LAYERS, MAX_SIGNATURE_PAYLOAD};
use stoa_format::signature::{identity_matches, parse_payload, parse_sig_manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse_sig_manifest(data) {
        assert!(m.layers.len() <= MAX_SIGNATURE_LAYERS);
        assert!(m.blobs().iter().all(|(_, s)| *s <= MAX_SIGNATURE_PAYLOAD));
    }
    if let Ok(p) = parse_payload(data) {
        if let Ok(name) = stoa_format::names::ImageRef::parse("docker.io/bitnami/redis:7.2") {
            let _ = identity_matches(&p.critical.identity.docker_reference, &name);
        }
    }
});
