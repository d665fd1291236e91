//! Helpers for the registry tests: push fixture layouts into a test
//! registry with skopeo, read a registry's own digests back, start a release
//! manifest ([`release`]), build, and look inside bundles.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::harness::{self, bundler, ok, run, Registry};
use crate::release::Release;

/// Pushes `oci:<layout>:<reference>` to `<registry>/<repo_tag>` with
/// skopeo, keeping digests (all platforms of an index).
pub fn push(reg: &Registry, layout: &Path, reference: &str, repo_tag: &str) {
    let mut c = Command::new("skopeo");
    c.args(["copy", "--all", "--preserve-digests", "-q"])
        .args(reg.skopeo_flags(true))
        .arg(format!("oci:{}:{reference}", layout.display()))
        .arg(reg.docker_ref(repo_tag));
    ok(&mut c);
}

/// skopeo flags for `inspect` (no src-/dest- prefix).
pub fn inspect_flags(reg: &Registry) -> Vec<String> {
    reg.skopeo_flags(false)
        .into_iter()
        .map(|f| f.replacen("--src-", "--", 1))
        .collect()
}

/// The registry's digest of `repo_tag`: sha256 of `skopeo inspect --raw`.
pub fn registry_digest(reg: &Registry, repo_tag: &str) -> String {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(inspect_flags(reg))
        .arg(reg.docker_ref(repo_tag)));
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout)))
}

/// A signing key in `dir` (`<dir>/release.key`).
pub fn keygen(dir: &Path) -> PathBuf {
    harness::keygen(&dir.join("release"))
}

/// The registry tests' release, `stoa-platform` 2.3.0, with no tables yet:
/// add images or charts, then `.write(dir)` (`<dir>/release.toml`).
pub fn release() -> Release {
    Release::stoa("2.3.0")
}

/// `stoa-bundler build <manifest> --key <key> --out <out> --cache <cache>
/// --json -q` plus `extra`.
pub fn build_cmd(
    manifest: &Path,
    key: &Path,
    out: &Path,
    cache: &Path,
    extra: &[String],
) -> Command {
    let mut c = bundler();
    // --force: these tests build to the same --out again after a failure
    c.arg("build")
        .arg("--force")
        .arg(manifest)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .args(["--json", "-q"])
        .args(extra);
    c
}

/// Runs a build that must succeed; returns its JSON summary.
pub fn build_ok(
    manifest: &Path,
    key: &Path,
    out: &Path,
    cache: &Path,
    extra: &[String],
) -> serde_json::Value {
    let s = ok(&mut build_cmd(manifest, key, out, cache, extra));
    serde_json::from_str(s.trim()).expect("build --json output")
}

/// `stoa-bundler inspect --json`.
pub fn inspect(bundle: &Path) -> serde_json::Value {
    let s = ok(bundler().arg("inspect").arg("--json").arg(bundle));
    serde_json::from_str(s.trim()).expect("inspect --json output")
}

/// The bundle's image record named `name` (from inspect).
pub fn image_of(bundle: &Path, name: &str) -> serde_json::Value {
    inspect(bundle)["images"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no image {name} in the bundle"))
}

/// Every entry name of a bundle, and the signed manifest's bytes.
pub fn entries(bundle: &Path) -> (Vec<String>, Vec<u8>) {
    let f = fs::File::open(bundle).expect("open bundle");
    let mut ar = tar::Archive::new(zstd::Decoder::new(f).expect("zstd"));
    let mut names = Vec::new();
    let mut manifest = Vec::new();
    for e in ar.entries().expect("tar") {
        let mut e = e.expect("tar entry");
        let n = e.path().expect("path").to_string_lossy().into_owned();
        if n == "manifest.json" {
            e.read_to_end(&mut manifest).expect("read manifest");
        }
        names.push(n);
    }
    (names, manifest)
}

/// The registry storage file of a blob (to corrupt it).
pub fn registry_blob_file(reg: &Registry, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    reg.root
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Digests of the config and layers of a single-platform manifest in a layout.
pub fn layout_blobs(layout: &Path, manifest_digest: &str) -> Vec<String> {
    let read = |d: &str| {
        fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .expect("layout blob")
    };
    let m: serde_json::Value = serde_json::from_slice(&read(manifest_digest)).expect("manifest");
    let mut v = vec![m["config"]["digest"].as_str().unwrap_or("").to_owned()];
    for l in m["layers"].as_array().cloned().unwrap_or_default() {
        v.push(l["digest"].as_str().unwrap_or("").to_owned());
    }
    v
}

/// The top digest of `ref_name` in a layout's index.json.
pub fn layout_digest(layout: &Path, ref_name: &str) -> String {
    let idx: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json");
    idx["manifests"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == ref_name)
        })
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("no {ref_name} in layout"))
        .to_owned()
}

/// A Helm chart archive `name-version.tgz` (gzip tar with `name/Chart.yaml`).
pub fn chart_tgz(name: &str, version: &str) -> Vec<u8> {
    let chart_yaml =
        format!("apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"{version}\"\n");
    let values = b"replicas: 1\n".to_vec();
    crate::oci_fixture::layer_tgz(&[
        (&format!("{name}/Chart.yaml"), chart_yaml.as_bytes()),
        (&format!("{name}/values.yaml"), &values),
    ])
}
