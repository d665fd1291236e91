//! The signed bundle end to end: keygen, build, inspect, verify, extract;
//! reproducibility; and tar, openssl and skopeo as independent readers of
//! what we write.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use stoa_e2e::harness::{bundler, fails, json, ok, require, run, updater};
use stoa_e2e::release::Release;
use stoa_e2e::release_fixture::write_release;

struct Built {
    dir: tempfile::TempDir,
    bundle: PathBuf,
}

impl Built {
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

fn build(version: &str) -> Built {
    let dir = tempfile::tempdir().unwrap();
    ok(bundler()
        .args(["keygen", "--out"])
        .arg(dir.path().join("release")));
    let rel = write_release(&dir.path().join("src"), version);
    let bundle = dir.path().join("dist/stoa.tar.zst");
    ok(bundler()
        .arg("build")
        .arg(&rel)
        .arg("--key")
        .arg(dir.path().join("release.key"))
        .arg("--out")
        .arg(&bundle)
        .env("SOURCE_DATE_EPOCH", "1767225600"));
    Built { dir, bundle }
}

#[test]
fn build_inspect_verify_extract_roundtrip() {
    let b = build("2.3.0");
    let doc = json(&ok(updater().arg("inspect").arg(&b.bundle).arg("--json")));
    assert_eq!(doc["name"], "stoa-platform");
    assert_eq!(doc["version"], "2.3.0");
    assert_eq!(doc["created"], "2026-01-01T00:00:00Z");
    assert_eq!(doc["signatures_checked"], false);
    assert_eq!(doc["images"].as_array().unwrap().len(), 3);
    let gw = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "registry.gostoa.dev/stoa/gateway:2.3.0")
        .unwrap();
    assert_eq!(
        gw["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(doc["charts"][0]["release"], "stoa-api");
    assert_eq!(doc["charts"][0]["namespace"], "stoa-system");
    assert_eq!(doc["migrations"][0]["steps"][1]["down"], true);
    assert_eq!(doc["files"][0]["dest"], "bin/stoactl");
    assert_eq!(doc["files"][0]["mode"], "0755");
    // the bundler's inspect is the same document
    assert_eq!(
        json(&ok(bundler().arg("inspect").arg(&b.bundle).arg("--json"))),
        doc
    );

    let v = json(&ok(updater()
        .arg("verify")
        .arg(&b.bundle)
        .arg("--trust")
        .arg(b.p("release.pub"))
        .arg("--json")));
    assert_eq!(v["ok"], true);
    assert_eq!(v["trusted_signers"].as_array().unwrap().len(), 1);

    let site = b.p("site/2.3.0");
    ok(updater()
        .arg("extract")
        .arg(&b.bundle)
        .arg("--trust")
        .arg(b.p("release.pub"))
        .arg("--to")
        .arg(&site));
    assert_eq!(
        fs::read_to_string(site.join("files/bin/stoactl")).unwrap(),
        "#!/bin/sh\necho stoactl 2.3.0\n"
    );
    assert!(site.join("migrations/stoa/0002_apis.down.sql").is_file());
    assert!(site.join("charts/stoa-api-2.3.0.tgz").is_file());
    // extract never writes into an existing folder
    let e = fails(
        updater()
            .arg("extract")
            .arg(&b.bundle)
            .arg("--trust")
            .arg(b.p("release.pub"))
            .arg("--to")
            .arg(&site),
        3,
    );
    assert!(e.contains("already exists"), "{e}");
}

#[test]
fn same_inputs_same_epoch_give_identical_bytes() {
    let b = build("2.3.0");
    let again = b.p("again.tar.zst");
    ok(bundler()
        .arg("build")
        .arg(b.p("src/release.toml"))
        .arg("--key")
        .arg(b.p("release.key"))
        .arg("--out")
        .arg(&again)
        .env("SOURCE_DATE_EPOCH", "1767225600"));
    assert_eq!(
        fs::read(&b.bundle).unwrap(),
        fs::read(&again).unwrap(),
        "two builds differ"
    );
    // and a different epoch changes the bytes (the epoch is really used)
    let later = b.p("later.tar.zst");
    ok(bundler()
        .arg("build")
        .arg(b.p("src/release.toml"))
        .arg("--key")
        .arg(b.p("release.key"))
        .arg("--out")
        .arg(&later)
        .env("SOURCE_DATE_EPOCH", "1767225601"));
    assert_ne!(fs::read(&b.bundle).unwrap(), fs::read(&later).unwrap());
    // but the charts packed from folders depend on their content only: an
    // unchanged chart built later has the same digest (a delta leaves it out)
    let chart_digests = |bundle: &std::path::Path| -> Vec<String> {
        let m = json(&ok(Command::new("tar")
            .arg("--zstd")
            .arg("-xOf")
            .arg(bundle)
            .arg("manifest.json")));
        m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["path"].as_str().unwrap().starts_with("charts/"))
            .map(|e| format!("{} {}", e["path"], e["sha256"]))
            .collect()
    };
    let charts = chart_digests(&b.bundle);
    assert!(!charts.is_empty());
    assert_eq!(charts, chart_digests(&later));
}

#[test]
fn shared_layers_are_stored_once() {
    let b = build("2.3.0");
    let doc = json(&ok(updater().arg("inspect").arg(&b.bundle).arg("--json")));
    let listing = ok(Command::new("tar").arg("--zstd").arg("-tf").arg(&b.bundle));
    let blobs: Vec<&str> = listing
        .lines()
        .filter(|l| l.starts_with("oci/blobs/"))
        .collect();
    let mut unique = blobs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(blobs.len(), unique.len(), "a blob is stored twice");
    // the three images share the base layer: per-image sizes add up to more than the blobs stored
    let m = json(&ok(Command::new("tar")
        .arg("--zstd")
        .arg("-xOf")
        .arg(&b.bundle)
        .arg("manifest.json")));
    let stored: u64 = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["path"].as_str().unwrap().starts_with("oci/blobs/"))
        .map(|e| e["size"].as_u64().unwrap())
        .sum();
    let per_image: u64 = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["size"].as_u64().unwrap())
        .sum();
    assert!(
        per_image > stored,
        "no sharing seen: {per_image} <= {stored}"
    );
}

#[test]
fn tar_and_openssl_read_and_check_what_we_write() {
    require("openssl", "openssl");
    let b = build("2.3.0");
    let raw = b.p("raw");
    fs::create_dir_all(&raw).unwrap();
    ok(Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&b.bundle)
        .arg("-C")
        .arg(&raw));
    let listing = ok(Command::new("tar").arg("--zstd").arg("-tvf").arg(&b.bundle));
    let first = listing.lines().next().unwrap();
    assert!(
        first.ends_with(" manifest.json") && first.contains("0/0"),
        "{first}"
    );
    let sigs: Vec<PathBuf> = fs::read_dir(raw.join("signatures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sigs.len(), 1);
    let out = ok(Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(b.p("release.pub"))
        .arg("-rawin")
        .arg("-in")
        .arg(raw.join("manifest.json"))
        .arg("-sigfile")
        .arg(&sigs[0]));
    assert!(out.contains("Signature Verified Successfully"), "{out}");
    // the key id in the signature's name is sha256 of the SPKI DER, as openssl computes it
    let der = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(b.p("release.pub")))
    .stdout;
    let id = hex::encode(Sha256::digest(&der));
    assert_eq!(
        sigs[0].file_name().unwrap().to_string_lossy(),
        format!("{id}.sig")
    );
    // every listed entry has the size and digest the manifest says
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(raw.join("manifest.json")).unwrap()).unwrap();
    for e in m["entries"].as_array().unwrap() {
        let bytes = fs::read(raw.join(e["path"].as_str().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, e["size"].as_u64().unwrap());
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            e["sha256"].as_str().unwrap()
        );
    }
    // a tampered extracted manifest no longer verifies with openssl either
    let mut bad = fs::read(raw.join("manifest.json")).unwrap();
    bad[20] ^= 1;
    fs::write(raw.join("bad.json"), bad).unwrap();
    let out = run(Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(b.p("release.pub"))
        .arg("-rawin")
        .arg("-in")
        .arg(raw.join("bad.json"))
        .arg("-sigfile")
        .arg(&sigs[0]));
    assert!(!out.status.success());
    // zstd's own integrity test passes on the mixed raw/compressed frames
    ok(Command::new("zstd").arg("-tq").arg(&b.bundle));
}

#[test]
fn skopeo_reads_every_image_by_its_full_name() {
    require("skopeo", "skopeo");
    let b = build("2.3.0");
    let site = b.p("site");
    ok(updater()
        .arg("extract")
        .arg(&b.bundle)
        .arg("--trust")
        .arg(b.p("release.pub"))
        .arg("--to")
        .arg(&site));
    let doc = json(&ok(updater().arg("inspect").arg(&b.bundle).arg("--json")));
    for img in doc["images"].as_array().unwrap() {
        let name = img["name"].as_str().unwrap();
        let r = format!("oci:{}:{name}", site.join("oci").display());
        let raw = run(Command::new("skopeo").args(["inspect", "--raw", &r]));
        assert!(
            raw.status.success(),
            "skopeo inspect --raw {r}: {}",
            String::from_utf8_lossy(&raw.stderr)
        );
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&raw.stdout))),
            img["digest"].as_str().unwrap(),
            "{name}"
        );
        // skopeo can copy it out, reading every blob
        let copy = format!("oci:{}:copy", b.p("copied").display());
        ok(Command::new("skopeo").args(["copy", "--quiet", &r, &copy]));
    }
}

#[test]
fn images_come_from_skopeo_written_layouts_and_oci_archives() {
    // skopeo as an independent *writer*: copy the sample layout, archive it, build from both
    require("skopeo", "skopeo");
    let b = build("2.3.0");
    let src = format!("oci:{}:api-2.3.0", b.p("src/images").display());
    let copied = b.p("skopeo-layout");
    ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &src,
        &format!("oci:{}:api", copied.display()),
    ]));
    ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &src,
        &format!("oci-archive:{}:api", b.p("api.tar").display()),
    ]));
    let rel = b.p("from-skopeo.toml");
    Release::stoa("2.3.1")
        .image(
            "registry.gostoa.dev/stoa/api:2.3.1",
            Some("oci:skopeo-layout:api"),
        )
        .image(
            "registry.gostoa.dev/stoa/api-archived:2.3.1",
            Some("oci-archive:api.tar:api"),
        )
        .write_to(&rel);
    let out = b.p("from-skopeo.tar.zst");
    ok(bundler()
        .arg("build")
        .arg(&rel)
        .arg("--key")
        .arg(b.p("release.key"))
        .arg("--out")
        .arg(&out));
    let doc = json(&ok(updater()
        .arg("verify")
        .arg(&out)
        .arg("--trust")
        .arg(b.p("release.pub"))
        .arg("--json")));
    assert_eq!(doc["ok"], true);
    let insp = json(&ok(updater().arg("inspect").arg(&out).arg("--json")));
    // the same image from both sources has one digest, and is stored once
    assert_eq!(insp["images"][0]["digest"], insp["images"][1]["digest"]);
}

#[test]
fn platform_filter_keeps_manifests_byte_exact_and_records_the_source_index() {
    let b = build("2.3.0");
    let full = json(&ok(updater().arg("inspect").arg(&b.bundle).arg("--json")));
    let gw_full = full["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str().unwrap().contains("gateway"))
        .unwrap()
        .clone();
    let toml = fs::read_to_string(b.p("src/release.toml"))
        .unwrap()
        .replace(
            "source = \"oci:images:gateway-2.3.0\"",
            "source = \"oci:images:gateway-2.3.0\"\nplatforms = [\"linux/arm64\"]",
        );
    fs::write(b.p("src/filtered.toml"), toml).unwrap();
    let out = b.p("filtered.tar.zst");
    ok(bundler()
        .arg("build")
        .arg(b.p("src/filtered.toml"))
        .arg("--key")
        .arg(b.p("release.key"))
        .arg("--out")
        .arg(&out));
    let f = json(&ok(updater().arg("inspect").arg(&out).arg("--json")));
    let gw = f["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str().unwrap().contains("gateway"))
        .unwrap();
    assert_eq!(gw["platforms"], serde_json::json!(["linux/arm64"]));
    assert_eq!(
        gw["source_digest"], gw_full["digest"],
        "filtered index must record the source index digest"
    );
    assert_ne!(gw["digest"], gw_full["digest"]);
    assert!(gw["size"].as_u64() < gw_full["size"].as_u64());
    // asking for a platform the index lacks is an error naming it
    let toml = fs::read_to_string(b.p("src/filtered.toml"))
        .unwrap()
        .replace("linux/arm64", "linux/s390x");
    fs::write(b.p("src/missing.toml"), toml).unwrap();
    let e = fails(
        bundler()
            .arg("build")
            .arg(b.p("src/missing.toml"))
            .arg("--key")
            .arg(b.p("release.key"))
            .arg("--out")
            .arg(b.p("x.tar.zst")),
        3,
    );
    assert!(e.contains("linux/s390x") && e.contains("gateway"), "{e}");
}

#[test]
fn keygen_refuses_to_overwrite_and_openssl_keys_work() {
    require("openssl", "openssl");
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("k");
    let out = ok(bundler().args(["keygen", "--json", "--out"]).arg(&prefix));
    let doc = json(&out);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(d.path().join("k.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(doc["key_id"].as_str().unwrap().len(), 64);
    let before = fs::read(d.path().join("k.key")).unwrap();
    let e = fails(bundler().args(["keygen", "--out"]).arg(&prefix), 3);
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(fs::read(d.path().join("k.key")).unwrap(), before);

    // a key made by openssl signs, a public key extracted by openssl trusts
    ok(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(d.path().join("o.key")));
    ok(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(d.path().join("o.key"))
        .arg("-out")
        .arg(d.path().join("o.pub")));
    let rel = write_release(&d.path().join("src"), "1.0.0");
    let out = d.path().join("b.tar.zst");
    ok(bundler()
        .arg("build")
        .arg(&rel)
        .arg("--key")
        .arg(d.path().join("o.key"))
        .arg("--out")
        .arg(&out));
    ok(updater()
        .arg("verify")
        .arg(&out)
        .arg("--trust")
        .arg(d.path().join("o.pub")));
    // and the folder form of --trust, with an unrelated key beside it
    fs::create_dir(d.path().join("trust")).unwrap();
    fs::copy(d.path().join("o.pub"), d.path().join("trust/o.pub")).unwrap();
    fs::copy(d.path().join("k.pub"), d.path().join("trust/k.pub")).unwrap();
    ok(updater()
        .arg("verify")
        .arg(&out)
        .arg("--trust")
        .arg(d.path().join("trust")));
}

/// Builds the release manifest `toml` (text, for tests about its lines) and
/// returns the error of the refused build (exit 2).
fn build_err(dir: &Path, toml: &str) -> String {
    let p = dir.join("bad.toml");
    fs::write(&p, toml).unwrap();
    if !dir.join("k.key").exists() {
        ok(bundler().args(["keygen", "--out"]).arg(dir.join("k")));
    }
    fails(
        bundler()
            .arg("build")
            .arg(&p)
            .arg("--key")
            .arg(dir.join("k.key"))
            .arg("--out")
            .arg(dir.join("o.tar.zst")),
        2,
    )
}

#[test]
fn a_bad_release_manifest_gets_one_error_naming_field_and_line() {
    let d = tempfile::tempdir().unwrap();
    // inline TOML, not release::Release: the errors name lines of this text
    let e = build_err(d.path(), "[release]\nname = \"x\"\nversion = \"2.3\"\n");
    assert!(e.contains(":3:") && e.contains("release.version"), "{e}");
    let e = build_err(
        d.path(),
        "[release]\nname = \"x\"\nversion = \"2.3.0\"\ncolour = \"blue\"\n",
    );
    assert!(e.contains("line 4") && e.contains("colour"), "{e}");
    let e = build_err(
        d.path(),
        "[release]\nname = \"x\"\nversion = \"2.3.0\"\nupgrade_from = \"banana\"\n",
    );
    assert!(e.contains(":4:") && e.contains("upgrade_from"), "{e}");
    let e = build_err(d.path(), "[release]\nname = \"x\"\nversion = \"1.0.0\"\n[[files]]\nsource = \"a\"\ndest = \"../etc/passwd\"\n");
    assert!(e.contains(":6:") && e.contains("files[0].dest"), "{e}");
    let e = build_err(d.path(), "[release]\nname = \"x\"\nversion = \"1.0.0\"\n[[images]]\nname = \"a\"\nsource = \"tarball:x\"\n");
    assert!(e.contains(":6:") && e.contains("images[0].source"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

/// One release-name rule (the format's): a name the bundle manifest would
/// refuse (here: starting with '-') fails when the release manifest is
/// parsed, naming the field and its line, exit 2; not late, without a line.
#[test]
fn a_bad_release_name_fails_at_parse_with_its_line() {
    let d = tempfile::tempdir().unwrap();
    // inline TOML, not release::Release: `name` after `version`, on line 3
    for bad in ["-stoa", "Stoa", ".x"] {
        let e = build_err(
            d.path(),
            &format!("[release]\nversion = \"1.0.0\"\nname = \"{bad}\"\n"),
        );
        assert!(e.contains(":3:") && e.contains("release.name"), "{e}");
        assert!(e.contains("starting with a letter or digit"), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
}

#[test]
fn a_source_blob_that_does_not_match_its_digest_is_refused_at_build() {
    let b = build("2.3.0");
    // corrupt one layer in the source layout: the build must fail naming it, leave no bundle
    let blobs = b.p("src/images/blobs/sha256");
    let victim = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| fs::read(p).unwrap().starts_with(&[0x1f, 0x8b]))
        .unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
    let out = b.p("corrupt.tar.zst");
    let e = fails(
        bundler()
            .arg("build")
            .arg(b.p("src/release.toml"))
            .arg("--key")
            .arg(b.p("release.key"))
            .arg("--out")
            .arg(&out),
        3,
    );
    assert!(
        e.contains(&victim.file_name().unwrap().to_string_lossy().to_string()),
        "{e}"
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = fs::read_dir(b.p(""))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
}

/// Issue 7: what a release engineer's inputs may not carry is refused at
/// build, naming the file and line, exit 2 (and no bundle is written).
fn build_src_err(src: &Path) -> String {
    let out = src.join("o.tar.zst");
    ok(bundler().args(["keygen", "--out"]).arg(src.join("k")));
    let e = fails(
        bundler()
            .arg("build")
            .arg(src.join("release.toml"))
            .arg("--key")
            .arg(src.join("k.key"))
            .arg("--out")
            .arg(&out),
        2,
    );
    assert!(!out.exists());
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    e
}

#[test]
fn build_refuses_a_migration_with_a_psql_meta_command_naming_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let rel = write_release(&d.path().join("src"), "2.3.0");
    let src = rel.parent().unwrap();
    fs::write(
        src.join("migrations/0002_apis.sql"),
        "CREATE TABLE apis (id int);\nSELECT 1; \\! touch /tmp/stoa-pwned\n",
    )
    .unwrap();
    let e = build_src_err(src);
    assert!(
        e.contains("0002_apis.sql:2:") && e.contains("meta-command"),
        "{e}"
    );
}

#[test]
fn build_refuses_a_down_migration_with_commit_naming_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let rel = write_release(&d.path().join("src"), "2.3.0");
    let src = rel.parent().unwrap();
    fs::write(
        src.join("migrations/0001_init.down.sql"),
        "DROP TABLE tenants;\n\ncommit;\n",
    )
    .unwrap();
    let e = build_src_err(src);
    assert!(
        e.contains("0001_init.down.sql:3:") && e.contains("transaction control"),
        "{e}"
    );
}

#[test]
fn build_refuses_a_symlinked_file_source() {
    let d = tempfile::tempdir().unwrap();
    let rel = write_release(&d.path().join("src"), "2.3.0");
    let src = rel.parent().unwrap();
    fs::remove_file(src.join("tools/stoactl")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("tools/stoactl")).unwrap();
    let out = src.join("o.tar.zst");
    ok(bundler().args(["keygen", "--out"]).arg(src.join("k")));
    let e = fails(
        bundler()
            .arg("build")
            .arg(&rel)
            .arg("--key")
            .arg(src.join("k.key"))
            .arg("--out")
            .arg(&out),
        3,
    );
    assert!(e.contains("stoactl") && e.contains("symbolic link"), "{e}");
    assert!(!out.exists());
}

#[test]
fn build_refuses_bad_image_chart_and_migration_names_naming_field_and_line() {
    let d = tempfile::tempdir().unwrap();
    // inline TOML, not release::Release: the errors name lines of this text
    for (name, line) in [
        ("registry.gostoa.dev/../victim/app:1", 5),
        ("registry.gostoa.dev/stoa/api:1?x=y#frag", 5),
        ("registry.gostoa.dev/Stoa/api:1", 5),
    ] {
        let e = build_err(
            d.path(),
            &format!("[release]\nname = \"x\"\nversion = \"1.0.0\"\n[[images]]\nname = \"{name}\"\nsource = \"oci:images:a\"\n"),
        );
        assert!(
            e.contains(&format!(":{line}:")) && e.contains("images[0].name"),
            "{name}: {e}"
        );
    }
    let e = build_err(
        d.path(),
        "[release]\nname = \"x\"\nversion = \"1.0.0\"\n[[charts]]\npath = \"c\"\nrelease = \"Stoa_API\"\nnamespace = \"stoa\"\n",
    );
    assert!(e.contains(":6:") && e.contains("charts[0].release"), "{e}");
    let e = build_err(
        d.path(),
        "[release]\nname = \"x\"\nversion = \"1.0.0\"\n[[charts]]\npath = \"c\"\nrelease = \"a\"\nnamespace = \"a/../b\"\n",
    );
    assert!(
        e.contains(":7:") && e.contains("charts[0].namespace"),
        "{e}"
    );
    let e = build_err(
        d.path(),
        "[release]\nname = \"x\"\nversion = \"1.0.0\"\n[[charts]]\nrepo = \"https://charts.example\"\nname = \"c\"\nversion = \"1.0.0/../../x\"\nrelease = \"a\"\nnamespace = \"b\"\n",
    );
    assert!(e.contains(":7:") && e.contains("charts[0].version"), "{e}");
}
