//! The example release is the Full On-Premises stack (manifests/): the
//! upstream charts where they live (bitnami OCI charts on
//! registry-1.docker.io, opensearch and vault from their classic
//! repositories) with their upstream images, then STOA. Built here as a
//! vendor without internet would: through the local mirror
//! (`harness::Mirror`, scripts/local-mirror.sh: real docker-registry, real
//! Helm push, a classic repository, a registries.conf), then checked with
//! the updater, tar, openssl and skopeo. The bundle names what the release
//! manifest names, never the mirror. The vendor's values files
//! (manifests/values/) are bundled and signed, bitnami's `common` is
//! vendored in the charts that need it, and every image the charts run (real
//! Helm 3 renders them) is carried: `stoa-bundler images` lists them all and
//! a release missing one is refused.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use stoa_e2e::harness::{bundler, fails, ok, real_helm, require, run, updater, Mirror};
use stoa_e2e::oci_fixture::{sample_images, write_layout, STACK_IMAGES};
use stoa_e2e::registry_fixture::{build_ok, entries, inspect, keygen};
use stoa_e2e::site::{manifests_dir, Site};

/// The upstream charts of the stack: (name, version).
const STACK_CHARTS: &[(&str, &str)] = &[
    ("postgresql-ha", "16.3.4"),
    ("opensearch", "3.6.0"),
    ("minio", "17.0.23"),
    ("vault", "0.34.1"),
];

/// manifests/stoa-platform[-<v>].toml with its local paths made absolute
/// (the STOA images from a layout made in `dir`).
fn stack_manifest(dir: &Path, version: &str) -> PathBuf {
    let m = manifests_dir();
    let file = if version == "2.3.0" {
        m.join("stoa-platform.toml")
    } else {
        m.join(format!("stoa-platform-{version}.toml"))
    };
    let images = dir.join("vendor-images");
    write_layout(&images, &sample_images(version)).unwrap();
    let text = fs::read_to_string(file)
        .unwrap()
        .replace(
            "\"oci:vendor/images:",
            &format!("\"oci:{}:", images.display()),
        )
        .replace(
            "path = \"charts",
            &format!("path = \"{}/charts", m.display()),
        )
        .replace(
            "source = \"tools/",
            &format!("source = \"{}/tools/", m.display()),
        )
        .replace(
            "dir = \"migrations/",
            &format!("dir = \"{}/migrations/", m.display()),
        )
        .replace("[\"values/", &format!("[\"{}/values/", m.display()));
    let out = dir.join(format!("stoa-platform-{version}.toml"));
    fs::write(&out, text).unwrap();
    out
}

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(p).unwrap()))
}

/// The mirror registry's digest of `name` (sha256 of `skopeo inspect --raw`).
fn mirror_digest(mirror: &Mirror, name: &str) -> String {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{name}", mirror.registry)));
    assert!(
        out.status.success(),
        "skopeo inspect {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout)))
}

#[test]
fn stack_release_builds_through_the_local_mirror_and_verifies() {
    require("skopeo", "skopeo");
    require("openssl", "openssl");
    let t = tempfile::tempdir().unwrap();
    let mirror = Mirror::start(t.path());
    let key = keygen(t.path());
    let cache = t.path().join("cache");
    let manifest = stack_manifest(t.path(), "2.3.0");

    let bundle = t.path().join("stack.tar.zst");
    let s = build_ok(&manifest, &key, &bundle, &cache, &mirror.build_flags);
    assert!(s["pulled"]["blobs_downloaded"].as_u64().unwrap() > 0, "{s}");

    // the site's verify accepts it
    let v: serde_json::Value = serde_json::from_str(
        ok(updater()
            .arg("verify")
            .arg(&bundle)
            .arg("--trust")
            .arg(t.path().join("release.pub"))
            .arg("--json"))
        .trim(),
    )
    .unwrap();
    assert_eq!(v["ok"], true);

    // names as written, never the mirror's; digests are the registry's
    let (names, manifest_bytes) = entries(&bundle);
    let manifest_text = String::from_utf8(manifest_bytes).unwrap();
    assert!(
        !manifest_text.contains(&mirror.registry) && !manifest_text.contains("127.0.0.1"),
        "the bundle names the mirror: {manifest_text}"
    );
    let doc: serde_json::Value = serde_json::from_str(&manifest_text).unwrap();
    for name in STACK_IMAGES {
        let rec = doc["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == *name)
            .unwrap_or_else(|| panic!("{name} is not in the bundle"));
        assert_eq!(rec["source"], format!("docker://{name}"));
        assert_eq!(rec["digest"], mirror_digest(&mirror, name), "{name}");
    }
    // the charts, in the guide's order, byte for byte what Helm packaged
    let charts: Vec<(String, String)> = doc["charts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut want: Vec<(String, String)> = STACK_CHARTS
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    want.push(("stoa-api".into(), "2.3.0".into()));
    want.push(("stoa-gateway".into(), "2.3.0".into()));
    assert_eq!(charts, want);

    // the vendor's values files: bundled, signed (digest in the manifest)
    for (name, _) in STACK_CHARTS {
        let rec = doc["charts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == *name)
            .unwrap();
        let values = rec["values"].as_array().unwrap();
        assert_eq!(values.len(), 1, "{name}: {rec}");
        let want = manifests_dir().join(format!("values/{name}.yaml"));
        assert_eq!(values[0]["sha256"], sha256_file(&want), "{name}");
        let entry = values[0]["path"].as_str().unwrap();
        assert!(names.iter().any(|n| n == entry), "{entry} missing");
    }

    // independent readers: tar, openssl, skopeo
    let raw = t.path().join("raw");
    fs::create_dir_all(&raw).unwrap();
    ok(Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&bundle)
        .arg("-C")
        .arg(&raw));
    for (name, version) in STACK_CHARTS {
        let entry = format!("charts/{name}-{version}.tgz");
        assert!(names.contains(&entry), "{entry} missing");
        assert_eq!(
            sha256_file(&raw.join(&entry)),
            sha256_file(&mirror.chart_archive(name, version)),
            "{entry} is not the archive the repository served"
        );
    }
    // real Helm 3 and 4 as independent readers of every bundled chart:
    // `show chart` names what the signed manifest says, `lint` passes
    for c in doc["charts"].as_array().unwrap() {
        let archive = raw.join(c["path"].as_str().unwrap());
        for major in [3, 4] {
            let helm = || {
                let mut cmd = Command::new(real_helm(major));
                cmd.env("HELM_CONFIG_HOME", t.path().join("helm-config"))
                    .env("HELM_CACHE_HOME", t.path().join("helm-cache"));
                cmd
            };
            let shown = ok(helm().args(["show", "chart"]).arg(&archive));
            assert!(
                shown
                    .lines()
                    .any(|l| l == format!("name: {}", c["name"].as_str().unwrap()))
                    && shown
                        .lines()
                        .any(|l| l == format!("version: {}", c["version"].as_str().unwrap())),
                "helm{major} show chart {}: {shown}",
                archive.display()
            );
            let linted = ok(helm().arg("lint").arg(&archive));
            assert!(
                linted.contains("0 chart(s) failed"),
                "helm{major} lint: {linted}"
            );
        }
    }
    // and `helm pull` from the mirror (pushed there by real `helm push`)
    // gives back the very archive the bundle carries
    let pulled = t.path().join("pulled");
    fs::create_dir_all(&pulled).unwrap();
    ok(Command::new(real_helm(4))
        .args([
            "pull",
            &format!("oci://{}/docker.io/bitnamicharts/minio", mirror.registry),
        ])
        .args(["--version", "17.0.23", "--plain-http", "--destination"])
        .arg(&pulled)
        .env("HELM_CONFIG_HOME", t.path().join("helm-config"))
        .env("HELM_CACHE_HOME", t.path().join("helm-cache")));
    assert_eq!(
        sha256_file(&pulled.join("minio-17.0.23.tgz")),
        sha256_file(&raw.join("charts/minio-17.0.23.tgz"))
    );
    // postgresql-ha carries its `common` dependency and renders with real
    // Helm, offline, with the bundled vendor values (2 PostgreSQL nodes, not
    // the chart's 3)
    let pg = raw.join("charts/postgresql-ha-16.3.4.tgz");
    let list = ok(Command::new("tar").arg("-tzf").arg(&pg));
    assert!(
        list.contains("postgresql-ha/charts/common/Chart.yaml"),
        "{list}"
    );
    let pg_values = raw.join("values/stoa-data/postgresql-ha/00-postgresql-ha.yaml");
    let rendered = ok(Command::new(real_helm(3))
        .args(["template", "postgresql-ha"])
        .arg(&pg)
        .args(["--namespace", "stoa-data", "-f"])
        .arg(&pg_values)
        .env("HELM_CONFIG_HOME", t.path().join("helm-config"))
        .env("HELM_CACHE_HOME", t.path().join("helm-cache")));
    assert!(rendered.contains("kind: StatefulSet"), "{rendered}");
    assert!(rendered.contains("replicas: 2"), "{rendered}");
    assert!(!rendered.contains("replicas: 3"), "{rendered}");

    for sig in fs::read_dir(raw.join("signatures")).unwrap() {
        let out = ok(Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
            .arg(t.path().join("release.pub"))
            .arg("-rawin")
            .arg("-in")
            .arg(raw.join("manifest.json"))
            .arg("-sigfile")
            .arg(sig.unwrap().path()));
        assert!(out.contains("Signature Verified Successfully"), "{out}");
    }
    let out = ok(Command::new("skopeo").arg("inspect").arg(format!(
        "oci:{}:docker.io/bitnami/pgpool:4.6.3-debian-12-r0",
        raw.join("oci").display()
    )));
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        info["Digest"],
        mirror_digest(&mirror, "docker.io/bitnami/pgpool:4.6.3-debian-12-r0")
    );

    // the earlier releases of the upgrade story build the same way; the
    // upstream blobs come from the cache now
    for v in ["2.0.0", "2.1.0"] {
        let m = stack_manifest(&t.path().join(v), v);
        let out = t.path().join(format!("stack-{v}.tar.zst"));
        let s = build_ok(&m, &key, &out, &cache, &mirror.build_flags);
        assert_eq!(s["pulled"]["blobs_downloaded"], 0, "{v}: {s}");
        let doc = inspect(&out);
        assert_eq!(doc["version"], v);
        assert_eq!(doc["charts"].as_array().unwrap().len(), 6);
        assert_eq!(
            doc["images"].as_array().unwrap().len(),
            STACK_IMAGES.len() + 3
        );
    }
}

/// `stoa-bundler images` on the stack release (through the local mirror,
/// real Helm 3): every chart renders with its vendor values, every image it
/// runs is listed with its template and is carried; the same release without
/// pgpool's image is refused by build (exit 2) naming chart, template and
/// image.
#[test]
fn stack_images_are_all_listed_and_carried_and_a_missing_one_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let mirror = Mirror::start(t.path());
    let manifest = stack_manifest(t.path(), "2.3.0");
    let cache = t.path().join("cache");
    let out = ok(bundler()
        .arg("images")
        .arg(&manifest)
        .arg("--json")
        .arg("--cache")
        .arg(&cache)
        .args(&mirror.build_flags));
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["refused"], 0, "{r}");
    let uses = r["images"].as_array().unwrap();
    for u in uses {
        assert_eq!(u["carried"]["status"], "yes", "{u}");
        assert!(!u["template"].as_str().unwrap().is_empty(), "{u}");
    }
    let found = |chart: &str, image: &str, field: &str| {
        uses.iter().any(|u| {
            u["chart"] == chart && u["field"] == field && u["carried"]["by"].as_str() == Some(image)
        })
    };
    // one rendered use of each chart's main image, hook/injector ones too
    for (chart, image, field) in [
        (
            "postgresql-ha",
            "docker.io/bitnami/postgresql-repmgr:17.6.0-debian-12-r2",
            "containers",
        ),
        (
            "postgresql-ha",
            "docker.io/bitnami/pgpool:4.6.3-debian-12-r0",
            "containers",
        ),
        (
            "postgresql-ha",
            "docker.io/bitnami/os-shell:12-debian-12-r51",
            "annotation",
        ),
        (
            "opensearch",
            "docker.io/opensearchproject/opensearch:3.6.0",
            "containers",
        ),
        (
            "opensearch",
            "docker.io/library/busybox:latest",
            "initContainers",
        ),
        (
            "minio",
            "docker.io/bitnami/minio:2025.7.23-debian-12-r3",
            "containers",
        ),
        (
            "minio",
            "docker.io/bitnami/minio-client:2025.7.21-debian-12-r2",
            "annotation",
        ),
        ("vault", "docker.io/hashicorp/vault:2.0.4", "containers"),
        ("vault", "docker.io/hashicorp/vault:2.0.4", "env"),
        ("vault", "docker.io/hashicorp/vault-k8s:1.7.6", "containers"),
        (
            "stoa-api",
            "registry.gostoa.dev/stoa/api:2.3.0",
            "containers",
        ),
        (
            "stoa-gateway",
            "registry.gostoa.dev/stoa/gateway:2.3.0",
            "containers",
        ),
    ] {
        assert!(found(chart, image, field), "{chart} {image} {field}: {r}");
    }

    // without pgpool's image, build refuses, naming chart, template, image
    let text = fs::read_to_string(&manifest).unwrap().replace(
        "[[images]]\nname = \"docker.io/bitnami/pgpool:4.6.3-debian-12-r0\"\n",
        "",
    );
    assert!(!text.contains("bitnami/pgpool"));
    let missing = t.path().join("missing.toml");
    fs::write(&missing, text).unwrap();
    let key = keygen(t.path());
    let bundle = t.path().join("missing.tar.zst");
    let e = fails(
        bundler()
            .arg("build")
            .arg(&missing)
            .arg("--key")
            .arg(&key)
            .arg("--out")
            .arg(&bundle)
            .arg("--quiet")
            .arg("--cache")
            .arg(&cache)
            .args(&mirror.build_flags),
        2,
    );
    assert!(
        e.contains("chart postgresql-ha: postgresql-ha/templates/pgpool/deployment.yaml: image docker.io/bitnami/pgpool:4.6.3-debian-12-r0 is not carried"),
        "{e}"
    );
    assert!(!bundle.exists());
}

/// Issue 9 item 6 on the real stack: the 2.3.0 bundle (every upstream chart
/// with its vendor values) planned on a site with `plan --render`, the
/// stand-in rendering each chart with real Helm 3 through the updater's
/// post-renderer: every pod image of every chart is served from the site
/// registry, pinned to the digest the bundle verified, and nothing in a
/// hook is left pulling from elsewhere.
#[test]
fn plan_render_of_the_stack_serves_every_image_from_the_site_registry() {
    let s = Site::start();
    let mirror = Mirror::start(s.path());
    let manifest = stack_manifest(s.path(), "2.3.0");
    let bundle = s.path().join("stack.tar.zst");
    build_ok(
        &manifest,
        &s.key,
        &bundle,
        &s.path().join("cache"),
        &mirror.build_flags,
    );

    let out = run(s
        .updater()
        .args(["plan", "--render", "--json"])
        .arg(&bundle));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let plan: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let render = plan["render"].as_array().unwrap();
    let rendered: Vec<&str> = render
        .iter()
        .map(|c| c["release"].as_str().unwrap())
        .collect();
    for (chart, _) in STACK_CHARTS {
        assert!(
            rendered.contains(chart),
            "{chart} not rendered: {rendered:?}"
        );
    }
    let site = format!("{}/site/", s.registry.host);
    let mut n = 0;
    for c in render {
        assert!(
            c["hook_images_outside"].as_array().unwrap().is_empty(),
            "{c}"
        );
        for i in c["images"].as_array().unwrap() {
            let image = i["image"].as_str().unwrap();
            let (name, digest) = image.split_once('@').unwrap_or((image, ""));
            assert!(
                name.starts_with(&site) && digest.len() == 71 && digest.starts_with("sha256:"),
                "{} {}/{} {}: {image}",
                c["release"],
                i["kind"],
                i["name"],
                i["container"]
            );
            n += 1;
        }
        // the final manifests hold no other image line
        let manifests = c["manifests"].as_str().unwrap();
        for l in manifests
            .lines()
            .filter(|l| l.trim_start().starts_with("image:"))
        {
            assert!(l.contains(&site), "{}: {l}", c["release"]);
        }
    }
    assert!(n >= 10, "only {n} pod images rendered");
}
