//! A signed bundle written by the format before the manifest's fields were
//! typed (main at 72964ff, `stoa-bundler build` with SOURCE_DATE_EPOCH =
//! 2026-01-01): today's reader still verifies it, reads every typed field
//! (digest, mode, migration id, times), and re-serialises its manifest to the
//! exact signed bytes. If this test fails, signed bundles in the field stop
//! verifying or change meaning.
//!
//! Fixture: `tests/fixtures/signed-1.0.0.tar.zst` (one image, one chart, one
//! migration with a down step, one file with mode 0755, expires 2099) and the
//! public key it was signed with, `tests/fixtures/release.pub`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use stoa_format::reader::{verify, NullSink, VerifyOptions};
use stoa_format::{BundleManifest, Limits, Sha256Digest, TrustStore};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The manifest digest `stoa-updater verify` printed when the fixture was made.
const MANIFEST_SHA256: &str = "436f0509e8e4e5b5ca979aec0750941ad9742c6e92d1541bac23194b8387f185";

#[test]
fn a_bundle_signed_before_the_typed_fields_verifies_and_keeps_its_bytes() {
    let bytes = std::fs::read(fixture("signed-1.0.0.tar.zst")).unwrap();
    let key = stoa_format::keys::load_public_key(&fixture("release.pub")).unwrap();
    let trust = TrustStore::from_keys([key]);
    let v = verify(
        std::io::Cursor::new(bytes),
        &trust,
        &VerifyOptions::default(),
        &mut NullSink,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(v.manifest_sha256.hex(), MANIFEST_SHA256);
    assert_eq!(v.trusted_signers.len(), 1);

    // the typed fields hold the written text and its parsed value
    let m = &v.manifest;
    assert_eq!(m.release.created.as_str(), "2026-01-01T00:00:00Z");
    assert_eq!(
        m.release.created.time(),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600)
    );
    assert_eq!(
        m.release.expires.as_ref().map(|t| t.as_str()),
        Some("2099-01-01T00:00:00Z")
    );
    assert_eq!(m.files[0].mode.as_str(), "0755");
    assert_eq!(m.files[0].mode.bits(), 0o755);
    assert_eq!(m.migrations[0].steps[0].id.as_str(), "0001");
    assert_eq!(m.migrations[0].steps[0].id.number(), 1);
    let d = &m.images[0].digest;
    assert_eq!(d.digest().oci(), d.as_str());

    // re-serialised: the signed bytes, byte for byte
    assert_eq!(m.to_bytes(), v.manifest_bytes);
    assert_eq!(Sha256Digest::of(&m.to_bytes()).hex(), MANIFEST_SHA256);
    // and parsed again from them: the same value
    let again = BundleManifest::from_bytes(&v.manifest_bytes, &Limits::default()).unwrap();
    assert_eq!(&again, m);
}
