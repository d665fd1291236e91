//! Threat 11: sizes past 32 bits. One entry of 4 GiB + 1 MiB + 1 byte from a
//! sparse source: the manifest, the tar codec, GNU tar and the verifier must
//! all agree on the exact size. (Sizes past the 8 GiB a ustar size field
//! holds use a pax record: format/src/archive.rs tests that codec.)

#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::Command;

use stoa_e2e::harness::{bundler, ok, updater};
use stoa_e2e::release::Release;

#[test]
fn an_entry_over_4_gib_round_trips() {
    let d = tempfile::tempdir().unwrap();
    let size: u64 = (4 << 30) + (1 << 20) + 1;
    let big = d.path().join("big.bin");
    let f = fs::File::create(&big).unwrap();
    f.set_len(size).unwrap(); // sparse zeros: cheap to make, compresses to little
    drop(f);
    let rel = d.path().join("r.toml");
    Release::new("large", "1.0.0")
        .file("big.bin", "data/big.bin", None)
        .write_to(&rel);
    ok(bundler().args(["keygen", "--out"]).arg(d.path().join("k")));
    let out = d.path().join("large.tar.zst");
    ok(bundler()
        .arg("build")
        .arg(&rel)
        .arg("--key")
        .arg(d.path().join("k.key"))
        .arg("--out")
        .arg(&out));
    let v: serde_json::Value = serde_json::from_str(&ok(updater()
        .arg("verify")
        .arg(&out)
        .arg("--trust")
        .arg(d.path().join("k.pub"))
        .arg("--json")))
    .unwrap();
    // GNU tar, an independent reader, sees the same size
    let listing = ok(Command::new("tar").arg("--zstd").arg("-tvf").arg(&out));
    // the content is the file and the release's SBOM, nothing else
    let sbom: u64 = listing
        .lines()
        .find(|l| l.ends_with(" sbom.cdx.json"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|w| w.parse().ok())
        .expect("sbom.cdx.json listed with its size");
    assert_eq!(v["content_bytes"].as_u64(), Some(size + sbom));
    let line = listing
        .lines()
        .find(|l| l.ends_with("files/data/big.bin"))
        .expect("entry listed");
    assert!(
        line.split_whitespace().any(|w| w == size.to_string()),
        "{line}"
    );
}
