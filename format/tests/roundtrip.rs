//! In-process round trips and mutation tests of the whole format: whatever
//! happens to a bundle's bytes, the reader returns an error and never panics,
//! and it never accepts a changed bundle.

#![allow(clippy::unwrap_used)]

use std::io::Cursor;

use proptest::prelude::*;
use stoa_format::manifest::{FileRecord, Release};
use stoa_format::reader::{inspect, verify, NullSink, VerifyOptions};
use stoa_format::writer::PlannedEntry;
use stoa_format::{
    BundleManifest, BundleWriter, ContentSource, Limits, Sha256Digest, SigningKeyPair, TrustStore,
};

fn entry(path: &str, bytes: Vec<u8>) -> PlannedEntry {
    PlannedEntry {
        path: path.into(),
        size: bytes.len() as u64,
        sha256: Sha256Digest::of(&bytes),
        source: ContentSource::Bytes(bytes),
    }
}

fn sample_bundle(key: &SigningKeyPair) -> Vec<u8> {
    let mut gz = vec![0x1f, 0x8b];
    gz.extend((0..20_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)); // "already compressed": raw frames
    let manifest = BundleManifest {
        format: stoa_format::FORMAT_NAME.into(),
        format_version: stoa_format::FORMAT_VERSION,
        release: Release {
            name: "t".into(),
            version: semver::Version::new(1, 0, 0),
            upgrade_from: None,
            created: "2026-01-01T00:00:00Z".parse().unwrap(),
            expires: None,
        },
        images: vec![],
        charts: vec![],
        migrations: vec![],
        files: vec![
            FileRecord {
                dest: "a.txt".into(),
                mode: "0644".parse().unwrap(),
                path: "files/a.txt".into(),
            },
            FileRecord {
                dest: "layer.gz".into(),
                mode: "0644".parse().unwrap(),
                path: "files/layer.gz".into(),
            },
        ],
        sbom: None,
        tools: vec![],
        signers: vec![],
        delta: None,
        entries: vec![],
    };
    let planned = vec![
        entry("files/a.txt", b"hello\n".repeat(100)),
        entry("files/layer.gz", gz),
    ];
    let w = BundleWriter::new(manifest, planned, 1_767_225_600, &Limits::default()).unwrap();
    w.write(Vec::new(), std::slice::from_ref(key), &mut |_| {})
        .unwrap()
        .0
}

fn check(bytes: Vec<u8>, trust: &TrustStore) -> Result<(), stoa_format::FormatError> {
    verify(
        Cursor::new(bytes),
        trust,
        &VerifyOptions::default(),
        &mut NullSink,
        &mut |_| {},
    )
    .map(|_| ())
}

#[test]
fn writes_verifies_and_is_reproducible() {
    let key = SigningKeyPair::generate();
    let trust = TrustStore::from_keys([key.verifying_key()]);
    let a = sample_bundle(&key);
    assert_eq!(a, sample_bundle(&key), "same inputs, same bytes");
    check(a.clone(), &trust).unwrap();
    let i = inspect(Cursor::new(a), &Limits::default()).unwrap();
    assert_eq!(i.signers, vec![key.id()]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A changed byte is refused, unless it sits in zstd framing that
    /// decodes to the very same tar stream (a raw frame's window size, say):
    /// then every signed byte is still what the vendor wrote.
    #[test]
    fn any_changed_byte_is_refused_or_changes_nothing(pos in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let key = SigningKeyPair::generate();
        let trust = TrustStore::from_keys([key.verifying_key()]);
        let orig = sample_bundle(&key);
        let mut b = orig.clone();
        let i = pos.index(b.len());
        b[i] ^= xor;
        if check(b.clone(), &trust).is_ok() {
            let same = zstd::decode_all(&b[..]).ok() == zstd::decode_all(&orig[..]).ok();
            prop_assert!(same, "byte {} changed the content and was still accepted", i);
        }
    }

    #[test]
    fn any_truncation_is_refused_without_panic(cut in any::<prop::sample::Index>()) {
        let key = SigningKeyPair::generate();
        let trust = TrustStore::from_keys([key.verifying_key()]);
        let b = sample_bundle(&key);
        let n = cut.index(b.len());
        prop_assert!(check(b[..n].to_vec(), &trust).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let trust = TrustStore::from_keys([SigningKeyPair::generate().verifying_key()]);
        prop_assert!(check(bytes, &trust).is_err());
    }
}

/// A bundle with no content entries (a re-release delta of an unchanged
/// release): the manifest and signature entries, then the end of the
/// archive. It is a valid bundle: it verifies, and it inspects.
#[test]
fn a_bundle_without_content_entries_verifies() {
    let key = SigningKeyPair::generate();
    let trust = TrustStore::from_keys([key.verifying_key()]);
    let manifest = BundleManifest {
        format: stoa_format::FORMAT_NAME.into(),
        format_version: stoa_format::FORMAT_VERSION,
        release: Release {
            name: "t".into(),
            version: semver::Version::new(1, 0, 1),
            upgrade_from: None,
            created: "2026-01-01T00:00:00Z".parse().unwrap(),
            expires: None,
        },
        images: vec![],
        charts: vec![],
        migrations: vec![],
        files: vec![],
        sbom: None,
        tools: vec![],
        signers: vec![],
        delta: None,
        entries: vec![],
    };
    let w = BundleWriter::new(manifest, vec![], 1_767_225_600, &Limits::default()).unwrap();
    let bytes = w
        .write(Vec::new(), std::slice::from_ref(&key), &mut |_| {})
        .unwrap()
        .0;
    check(bytes.clone(), &trust).unwrap();
    let i = inspect(Cursor::new(bytes.clone()), &Limits::default()).unwrap();
    assert!(i.manifest.entries.is_empty());
    // one byte after the end-of-archive marker is still refused
    let mut tar = zstd::decode_all(&bytes[..]).unwrap();
    tar.push(0);
    let extra = zstd::encode_all(&tar[..], 3).unwrap();
    assert!(matches!(
        check(extra, &trust),
        Err(stoa_format::FormatError::TrailingData)
    ));
}
