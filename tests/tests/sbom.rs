//! The SBOM end to end (issue 20 item 3): `build` writes a CycloneDX 1.6
//! SBOM as the signed entry `sbom.cdx.json`; `stoa-bundler sbom` and
//! `stoa-updater sbom` print it once the bundle verified; it validates
//! against the CycloneDX 1.6 schema with cyclonedx-python-lib (installed
//! by scripts/install-deps.sh), lists every image, chart (with its
//! vendored dependency), values file, migration and file with the digests
//! the manifest signs, is byte-reproducible under `SOURCE_DATE_EPOCH`, and
//! a bundle whose SBOM was altered is refused.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use stoa_e2e::harness::{bundler, fails, json, ok, repo_root, updater};
use stoa_e2e::release_fixture::write_release;
use stoa_e2e::tamper::Base;

const EPOCH: &str = "1767225600";

/// The Python of the venv install-deps.sh makes (STOA_CYCLONEDX_VENV,
/// default target/cyclonedx-venv); a missing one fails, naming the step.
fn cyclonedx_python() -> PathBuf {
    let venv = std::env::var_os("STOA_CYCLONEDX_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/cyclonedx-venv"));
    let py = venv.join("bin/python");
    let found = Command::new(&py)
        .args(["-c", "import cyclonedx.validation.json"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "cyclonedx-python-lib[json-validation] is required in {} (run scripts/install-deps.sh)",
        venv.display()
    );
    py
}

/// The sample release, with a vendor values file for stoa-api and a
/// dependency vendored as `charts/redis-1.2.3.tgz`; returns the manifest.
fn write_rich_release(dir: &Path, version: &str) -> PathBuf {
    let rel = write_release(dir, version);
    let api = dir.join("charts/stoa-api");
    let sub = dir.join("redis-src/redis");
    fs::create_dir_all(&sub).unwrap();
    fs::write(
        sub.join("Chart.yaml"),
        "apiVersion: v2\nname: redis\nversion: 1.2.3\n",
    )
    .unwrap();
    fs::create_dir_all(api.join("charts")).unwrap();
    ok(Command::new("tar")
        .arg("--sort=name")
        .arg("--mtime=@0")
        .arg("--owner=0")
        .arg("--group=0")
        .arg("-czf")
        .arg(api.join("charts/redis-1.2.3.tgz"))
        .arg("-C")
        .arg(dir.join("redis-src"))
        .arg("redis"));
    let chart_yaml = fs::read_to_string(api.join("Chart.yaml")).unwrap();
    fs::write(
        api.join("Chart.yaml"),
        format!("{chart_yaml}dependencies:\n  - name: redis\n    version: 1.2.3\n    repository: https://charts.example.invalid/stable\n"),
    )
    .unwrap();
    fs::create_dir_all(dir.join("values")).unwrap();
    fs::write(dir.join("values/prod.yaml"), "replicas: 2\n").unwrap();
    let text = fs::read_to_string(&rel).unwrap();
    let marker = "release = \"stoa-api\"";
    assert!(text.contains(marker), "{text}");
    fs::write(
        &rel,
        text.replacen(
            marker,
            &format!("{marker}\nvalues = [\"values/prod.yaml\"]"),
            1,
        ),
    )
    .unwrap();
    rel
}

struct Built {
    dir: tempfile::TempDir,
    bundle: PathBuf,
}

impl Built {
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

fn build_into(dir: &Path, rel: &Path, out: &Path) {
    ok(bundler()
        .arg("build")
        .arg(rel)
        .arg("--key")
        .arg(dir.join("release.key"))
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .env("SOURCE_DATE_EPOCH", EPOCH));
}

fn build() -> Built {
    let dir = tempfile::tempdir().unwrap();
    ok(bundler()
        .args(["keygen", "--out"])
        .arg(dir.path().join("release")));
    let rel = write_rich_release(&dir.path().join("src"), "2.3.0");
    let bundle = dir.path().join("dist/stoa.tar.zst");
    build_into(dir.path(), &rel, &bundle);
    Built { dir, bundle }
}

fn manifest_of(bundle: &Path) -> serde_json::Value {
    json(&ok(Command::new("tar")
        .arg("--zstd")
        .arg("-xOf")
        .arg(bundle)
        .arg("manifest.json")))
}

fn entry_sha<'a>(m: &'a serde_json::Value, path: &str) -> &'a str {
    m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("no entry {path}"))["sha256"]
        .as_str()
        .unwrap()
}

fn component<'a>(bom: &'a serde_json::Value, bom_ref: &str) -> &'a serde_json::Value {
    bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["bom-ref"] == bom_ref)
        .unwrap_or_else(|| panic!("no component {bom_ref}"))
}

fn sha256_of(c: &serde_json::Value) -> &str {
    c["hashes"][0]["content"].as_str().unwrap()
}

#[test]
fn both_programs_print_the_signed_sbom_and_it_validates_as_cyclonedx_1_6() {
    let py = cyclonedx_python();
    let b = build();
    let key = b.p("release.pub");
    let from_bundler = ok(bundler()
        .arg("sbom")
        .arg(&b.bundle)
        .arg("--trust")
        .arg(&key)
        .arg("--quiet"));
    let from_updater = ok(updater()
        .arg("sbom")
        .arg(&b.bundle)
        .arg("--trust")
        .arg(&key)
        .arg("--quiet"));
    assert_eq!(from_bundler, from_updater);
    // byte for byte the signed entry
    let entry = ok(Command::new("tar")
        .arg("--zstd")
        .arg("-xOf")
        .arg(&b.bundle)
        .arg("sbom.cdx.json"));
    assert_eq!(from_bundler, entry);
    let out = b.p("sbom.cdx.json");
    let said = ok(updater()
        .arg("sbom")
        .arg(&b.bundle)
        .arg("--trust")
        .arg(&key)
        .arg("--out")
        .arg(&out));
    assert!(
        said.contains("wrote the SBOM of stoa-platform 2.3.0"),
        "{said}"
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), entry);

    // the CycloneDX project's schema, through cyclonedx-python-lib
    let valid = ok(Command::new(&py)
        .arg(repo_root().join("tests/scripts/validate_cyclonedx.py"))
        .arg(&out));
    assert!(valid.contains("valid"), "{valid}");

    let m = manifest_of(&b.bundle);
    assert_eq!(m["sbom"], "sbom.cdx.json");
    let bom = json(&entry);
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(bom["metadata"]["timestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(bom["metadata"]["component"]["name"], "stoa-platform");
    assert_eq!(bom["metadata"]["component"]["version"], "2.3.0");
    assert!(bom["serialNumber"]
        .as_str()
        .unwrap()
        .starts_with("urn:uuid:"));
    // every image: purl pkg:oci with the digest, the platforms
    for img in m["images"].as_array().unwrap() {
        let name = img["name"].as_str().unwrap();
        let hex = img["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let c = component(&bom, &format!("image:{name}"));
        assert_eq!(c["type"], "container");
        let (repo, tag) = name.rsplit_once(':').unwrap();
        let short = repo.rsplit('/').next().unwrap();
        assert_eq!(
            c["purl"],
            format!("pkg:oci/{short}@sha256%3A{hex}?repository_url={repo}&tag={tag}")
        );
        assert_eq!(sha256_of(c), hex);
        let platforms: Vec<&str> = c["properties"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "stoa:image:platform")
            .map(|p| p["value"].as_str().unwrap())
            .collect();
        assert_eq!(
            platforms,
            img["platforms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>()
        );
    }
    // charts, with the vendored dependency nested; the values file
    let api = component(&bom, "chart:stoa-system/stoa-api");
    assert_eq!(api["version"], "2.3.0");
    assert_eq!(api["purl"], "pkg:generic/stoa-api@2.3.0");
    assert_eq!(sha256_of(api), entry_sha(&m, "charts/stoa-api-2.3.0.tgz"));
    let redis = &api["components"][0];
    assert_eq!(redis["name"], "redis");
    assert_eq!(redis["version"], "1.2.3");
    let vendored = fs::read(b.p("src/charts/stoa-api/charts/redis-1.2.3.tgz")).unwrap();
    assert_eq!(
        sha256_of(redis),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&vendored))
    );
    assert!(redis
        .to_string()
        .contains("https://charts.example.invalid/stable"));
    component(&bom, "chart:stoa-system/stoa-gateway");
    let values = "values/stoa-system/stoa-api/00-prod.yaml";
    assert_eq!(
        sha256_of(component(&bom, &format!("values:{values}"))),
        entry_sha(&m, values)
    );
    // migrations (up and down) and the file
    for p in [
        "migrations/stoa/0001_init.sql",
        "migrations/stoa/0001_init.down.sql",
        "migrations/stoa/0002_apis.sql",
        "migrations/stoa/0002_apis.down.sql",
    ] {
        let c = component(&bom, &format!("migration:{p}"));
        assert_eq!(c["type"], "file");
        assert_eq!(sha256_of(c), entry_sha(&m, p));
    }
    assert_eq!(
        sha256_of(component(&bom, "file:bin/stoactl")),
        entry_sha(&m, "files/bin/stoactl")
    );
    // nothing of the build machine: no absolute path of it
    assert!(
        !entry.contains(&b.dir.path().display().to_string()),
        "{entry}"
    );

    // --json: a summary holding the document
    let j = json(&ok(bundler()
        .arg("sbom")
        .arg(&b.bundle)
        .arg("--trust")
        .arg(&key)
        .arg("--json")));
    assert_eq!(j["ok"], true);
    assert_eq!(j["sbom"], bom);
}

#[test]
fn two_builds_under_one_source_date_epoch_write_the_same_sbom_bytes() {
    let b = build();
    let again = b.p("again.tar.zst");
    build_into(b.dir.path(), &b.p("src/release.toml"), &again);
    let sbom = |bundle: &Path| {
        ok(bundler()
            .arg("sbom")
            .arg(bundle)
            .arg("--trust")
            .arg(b.p("release.pub"))
            .arg("--quiet"))
    };
    assert_eq!(sbom(&b.bundle), sbom(&again));
    assert_eq!(fs::read(&b.bundle).unwrap(), fs::read(&again).unwrap());
}

/// A bundle whose SBOM entry was altered fails verification: unsigned, by
/// its digest; re-signed by the release key (what a key holder could ship),
/// by the SBOM's own rule, since it no longer agrees with the manifest.
/// `sbom` prints nothing then.
#[test]
fn a_bundle_whose_sbom_was_altered_is_refused() {
    let b = build();
    let key = b.p("release.pub");
    let base = Base::from_file(&b.bundle, &b.p("release.key"));
    let sbom = base
        .entries
        .iter()
        .find(|e| e.name == "sbom.cdx.json")
        .unwrap()
        .data
        .clone();
    let text = String::from_utf8(sbom).unwrap();
    let forged = text.replacen("\"version\": \"2.3.0\"", "\"version\": \"2.2.0\"", 1);
    assert_ne!(forged, text);

    // the entry's bytes changed, the manifest not re-signed
    let bad = b.p("tampered.tar.zst");
    let mut entries = base.entries.clone();
    let i = entries
        .iter()
        .position(|e| e.name == "sbom.cdx.json")
        .unwrap();
    let mut flipped = entries[i].data.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0x20;
    entries[i].data = flipped;
    fs::write(
        &bad,
        stoa_e2e::tamper::compress(&stoa_e2e::tamper::write_tar(&entries)),
    )
    .unwrap();
    let e = fails(
        updater().arg("verify").arg(&bad).arg("--trust").arg(&key),
        1,
    );
    assert!(e.contains("sbom.cdx.json"), "{e}");

    // re-signed with the forged SBOM: the SBOM's rule refuses it
    let resigned = b.p("resigned.tar.zst");
    fs::write(
        &resigned,
        base.content_signed("sbom.cdx.json", forged.as_bytes()),
    )
    .unwrap();
    for prog in [updater, bundler] {
        let mut c = prog();
        let out = c
            .arg("sbom")
            .arg(&resigned)
            .arg("--trust")
            .arg(&key)
            .arg("--json")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let j = json(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(j["error"]["kind"], "sbom", "{j}");
        assert!(
            j["error"]["message"]
                .as_str()
                .unwrap()
                .contains("metadata.component is stoa-platform 2.2.0"),
            "{j}"
        );
    }
    let e = fails(
        updater()
            .arg("verify")
            .arg(&resigned)
            .arg("--trust")
            .arg(&key),
        1,
    );
    assert!(e.contains("check SBOM \"sbom.cdx.json\""), "{e}");
}

/// `diff` shows the SBOM's component changes: a new version changes every
/// component's hash and version; a component only in one is added/removed.
#[test]
fn diff_shows_component_changes() {
    let b = build();
    let rel = write_rich_release(&b.p("src-240"), "2.4.0");
    let text = fs::read_to_string(&rel).unwrap();
    fs::write(&rel, text.replacen("[[files]]", "[[files]]\nsource = \"tools/stoactl\"\ndest = \"bin/stoactl2\"\nmode = \"0755\"\n\n[[files]]", 1)).unwrap();
    let newer = b.p("dist/stoa-2.4.0.tar.zst");
    build_into(b.dir.path(), &rel, &newer);
    let d = json(&ok(bundler()
        .arg("diff")
        .arg(&b.bundle)
        .arg(&newer)
        .arg("--json")));
    let s = &d["sbom"];
    assert_eq!(s["added"][0]["bom_ref"], "file:bin/stoactl2", "{s}");
    assert!(s["removed"].as_array().unwrap().is_empty(), "{s}");
    let changed: Vec<&str> = s["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bom_ref"].as_str().unwrap())
        .collect();
    assert!(changed.contains(&"chart:stoa-system/stoa-api"), "{s}");
    let api = s["changed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["bom_ref"] == "chart:stoa-system/stoa-api")
        .unwrap();
    assert_eq!(api["old"]["version"], "2.3.0");
    assert_eq!(api["new"]["version"], "2.4.0");
    let text = ok(bundler().arg("diff").arg(&b.bundle).arg(&newer));
    assert!(text.contains("sbom: 1 component added"), "{text}");
    assert!(text.contains("+ file:bin/stoactl2"), "{text}");
}
