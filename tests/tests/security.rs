//! Threats 1-5, 7, 9, 10 of the design brief and the format-level findings
//! of issue 7 (THREAT-MODEL.md rows 17-23): one named test per negative
//! fixture (tests/src/tamper.rs). Each must be refused by `verify` with exit
//! 1, one error line naming the check, no panic; and `extract` of it must
//! leave no target folder and write nothing outside it.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use stoa_e2e::harness::{bundler, fails, ok, updater};
use stoa_e2e::release_fixture::write_release;
use stoa_e2e::tamper::{self, Base, Trust};

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    fixtures: Vec<(tamper::Fixture, PathBuf)>,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        ok(bundler().args(["keygen", "--out"]).arg(root.join("signer")));
        ok(bundler()
            .args(["keygen", "--out"])
            .arg(root.join("stranger")));
        let mut bases = Vec::new();
        for v in ["2.3.0", "2.1.0"] {
            let rel = write_release(&root.join(format!("src-{v}")), v);
            let out = root.join(format!("{v}.tar.zst"));
            ok(bundler()
                .arg("build")
                .arg(&rel)
                .arg("--key")
                .arg(root.join("signer.key"))
                .arg("--out")
                .arg(&out));
            bases.push(Base::from_file(&out, &root.join("signer.key")));
        }
        let all = tamper::all(&bases[0], &bases[1]);
        let dirs = tamper::write_all(
            &root.join("negative"),
            &all,
            &root.join("signer.pub"),
            &root.join("stranger.pub"),
        );
        Setup {
            fixtures: all.into_iter().zip(dirs).collect(),
            root,
            _dir: dir,
        }
    })
}

fn check(name: &str) {
    let s = setup();
    let (f, dir) = s
        .fixtures
        .iter()
        .find(|(f, _)| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"));
    let bundle = dir.join("bundle.tar.zst");
    let threshold = if f.trust == Trust::SignerTwiceThreshold2 {
        "2"
    } else {
        "1"
    };
    let trust = dir.join("trust");

    // verify: exit 1, one line, the expected check
    let out = stoa_e2e::harness::run(
        updater()
            .arg("verify")
            .arg(&bundle)
            .arg("--trust")
            .arg(&trust)
            .args(["--threshold", threshold, "--json"]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name}: verify exit {:?}, stderr: {stderr}",
        out.status.code()
    );
    assert!(!stderr.contains("panicked"), "{name}: panic: {stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "{name}: not one line: {stderr}"
    );
    assert!(
        stderr.starts_with("stoa-updater: error: "),
        "{name}: {stderr}"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: json {e}"));
    let kind = doc["error"]["kind"].as_str().unwrap_or("");
    assert!(
        f.expect.contains(&kind),
        "{name}: refused by {kind:?} ({stderr}), expected one of {:?}",
        f.expect
    );

    // extract: nothing appears, nothing escapes
    let here = s.root.join("extract").join(name);
    std::fs::create_dir_all(&here).unwrap();
    let target = here.join("site");
    fails(
        updater()
            .arg("extract")
            .arg(&bundle)
            .arg("--trust")
            .arg(&trust)
            .args(["--threshold", threshold])
            .arg("--to")
            .arg(&target),
        1,
    );
    assert!(
        !target.exists(),
        "{name}: extract left {}",
        target.display()
    );
    assert_no_escape(&here);
}

fn assert_no_escape(root: &Path) {
    assert!(!root.join("escaped.txt").exists());
    assert!(!Path::new("/tmp/stoa-absolute.txt").exists());
    let leftovers: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging folders left behind: {leftovers:?}"
    );
}

macro_rules! negative {
    ($($test:ident => $fixture:literal),* $(,)?) => {
        $( #[test] fn $test() { check($fixture) } )*

        #[test]
        fn every_fixture_has_a_named_test() {
            let named = [$($fixture),*];
            for (f, _) in &setup().fixtures {
                assert!(named.contains(&f.name), "fixture {} has no named test", f.name);
            }
        }
    };
}

negative! {
    flipped_byte_in_blob => "flipped-byte-in-blob",
    flipped_byte_in_manifest => "flipped-byte-in-manifest",
    flipped_byte_in_signature => "flipped-byte-in-signature",
    flipped_byte_in_zstd_head => "flipped-byte-in-zstd-head",
    flipped_byte_in_zstd_middle => "flipped-byte-in-zstd-middle",
    flipped_byte_in_zstd_tail => "flipped-byte-in-zstd-tail",
    edited_manifest_not_resigned => "edited-manifest-not-resigned",
    truncated_at_10_bytes => "truncated-at-10-bytes",
    truncated_in_head => "truncated-in-head",
    truncated_at_half => "truncated-at-half",
    truncated_last_byte => "truncated-last-byte",
    empty_file => "empty-file",
    random_file => "random-file",
    random_zstd_content => "random-zstd-content",
    unknown_key => "unknown-key",
    same_key_twice_does_not_meet_threshold_2 => "same-key-twice-for-threshold-2",
    duplicate_signature_entry => "duplicate-signature-entry",
    expired => "expired",
    // issue 17 weak spot
    created_in_future_is_refused => "created-in-future",
    created_after_expires_is_refused => "created-after-expires",
    blob_from_other_signed_bundle => "blob-from-other-signed-bundle",
    extra_unlisted_entry => "extra-unlisted-entry",
    missing_entry => "missing-entry",
    duplicate_entry => "duplicate-entry",
    dotdot_name => "dotdot-name",
    dotdot_name_signed => "dotdot-name-signed",
    absolute_name => "absolute-name",
    symlink_entry => "symlink-entry",
    hardlink_entry => "hardlink-entry",
    device_entry => "device-entry",
    very_long_name => "very-long-name",
    manifest_not_first => "manifest-not-first",
    size_lie_bigger_entry => "size-lie-bigger-entry",
    huge_zstd_window => "huge-zstd-window",
    trailing_data => "trailing-data",
    newer_format_version => "newer-format-version",
    // issue 7
    migration_psql_shell_is_refused => "migration-psql-shell",
    migration_psql_meta_mid_line_is_refused => "migration-psql-meta-mid-line",
    migration_down_psql_copy_is_refused => "migration-down-psql-copy",
    migration_commit_is_refused => "migration-commit",
    image_name_dotdot_is_refused => "image-name-dotdot",
    image_name_query_fragment_is_refused => "image-name-query-fragment",
    image_name_uppercase_is_refused => "image-name-uppercase",
    chart_version_dotdot_is_refused => "chart-version-dotdot",
    chart_release_invalid_is_refused => "chart-release-invalid",
    chart_namespace_invalid_is_refused => "chart-namespace-invalid",
    migration_name_newline_is_refused => "migration-name-newline",
    skippable_frame_before_is_refused => "skippable-frame-before",
    skippable_frame_between_is_refused => "skippable-frame-between",
    skippable_frame_after_is_refused => "skippable-frame-after",
    setuid_mode_header_is_refused => "setuid-mode-header",
    uid_gid_header_is_refused => "uid-gid-header",
    pax_gnu_sparse_is_refused => "pax-gnu-sparse",
}

#[test]
fn expired_bundle_is_accepted_with_explicit_flag() {
    let s = setup();
    let (_, dir) = s
        .fixtures
        .iter()
        .find(|(f, _)| f.name == "expired")
        .unwrap();
    let out = ok(updater()
        .arg("verify")
        .arg(dir.join("bundle.tar.zst"))
        .arg("--trust")
        .arg(dir.join("trust"))
        .arg("--allow-expired"));
    assert!(out.starts_with("OK "), "{out}");
}

#[test]
fn bundler_verify_refuses_like_the_updater() {
    // the same code from format/: spot-check a few fixtures through stoa-bundler
    let s = setup();
    for name in [
        "flipped-byte-in-blob",
        "unknown-key",
        "symlink-entry",
        "migration-psql-shell",
        "skippable-frame-after",
        "setuid-mode-header",
    ] {
        let (_, dir) = s.fixtures.iter().find(|(f, _)| f.name == name).unwrap();
        let e = fails(
            bundler()
                .arg("verify")
                .arg(dir.join("bundle.tar.zst"))
                .arg("--trust")
                .arg(dir.join("trust")),
            1,
        );
        assert!(e.starts_with("stoa-bundler: error: "), "{e}");
    }
}

#[test]
fn stranger_signature_alongside_trusted_one_is_ignored() {
    // a bundle signed by two keys verifies against either one alone
    let s = setup();
    let rel = write_release(&s.root.join("src-two-keys"), "2.2.0");
    let out = s.root.join("two-keys.tar.zst");
    ok(bundler()
        .arg("build")
        .arg(&rel)
        .arg("--key")
        .arg(s.root.join("signer.key"))
        .arg("--key")
        .arg(s.root.join("stranger.key"))
        .arg("--out")
        .arg(&out));
    ok(updater()
        .arg("verify")
        .arg(&out)
        .arg("--trust")
        .arg(s.root.join("stranger.pub")));
    let doc: serde_json::Value = serde_json::from_str(&ok(updater()
        .arg("verify")
        .arg(&out)
        .arg("--trust")
        .arg(s.root.join("signer.pub"))
        .arg("--json")))
    .unwrap();
    assert_eq!(doc["trusted_signers"].as_array().unwrap().len(), 1);
    assert_eq!(doc["signers"].as_array().unwrap().len(), 2);
}
