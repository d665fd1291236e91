//! Charts pulled at build time: from a classic Helm repository (index.yaml
//! served over HTTP from a temp folder) and from an OCI registry (Helm's
//! media types), digests checked.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};
use stoa_e2e::harness::{fails, HttpServer, Registry, RegistryOptions};
use stoa_e2e::oci_fixture::put_blob;
use stoa_e2e::registry_fixture::*;
use stoa_e2e::release::Table;

fn chart_repo(dir: &Path, digest_override: Option<&str>) -> Vec<u8> {
    fs::create_dir_all(dir.join("charts")).unwrap();
    let tgz = chart_tgz("stoa-api", "2.3.0");
    fs::write(dir.join("charts/stoa-api-2.3.0.tgz"), &tgz).unwrap();
    let old = chart_tgz("stoa-api", "2.2.0");
    fs::write(dir.join("charts/stoa-api-2.2.0.tgz"), &old).unwrap();
    let d = digest_override
        .map(str::to_owned)
        .unwrap_or_else(|| hex::encode(Sha256::digest(&tgz)));
    let index = format!(
        "apiVersion: v1\nentries:\n  stoa-api:\n  - apiVersion: v2\n    name: stoa-api\n    version: 2.3.0\n    digest: {d}\n    urls:\n    - charts/stoa-api-2.3.0.tgz\n  - apiVersion: v2\n    name: stoa-api\n    version: 2.2.0\n    digest: {}\n    urls:\n    - charts/stoa-api-2.2.0.tgz\ngenerated: \"2026-01-01T00:00:00Z\"\n",
        hex::encode(Sha256::digest(&old))
    );
    fs::write(dir.join("index.yaml"), index).unwrap();
    tgz
}

fn repo_release(t: &Path, url: &str, version: &str) -> std::path::PathBuf {
    release()
        .table(Table::repo_chart(
            url,
            "stoa-api",
            version,
            "stoa-api",
            "stoa-system",
        ))
        .write(t)
}

#[test]
fn chart_from_classic_helm_repository() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    let tgz = chart_repo(&repo, None);
    let srv = HttpServer::start(&repo);
    let host = format!("127.0.0.1:{}", srv.port);
    let key = keygen(t.path());
    let manifest = repo_release(t.path(), &format!("http://{host}/"), "2.3.0");
    let out = t.path().join("b.stoa");
    let cache = t.path().join("c");
    let flags = vec!["--insecure-registry".to_owned(), host.clone()];
    let s = build_ok(&manifest, &key, &out, &cache, &flags);
    assert_eq!(s["pulled"]["blobs_downloaded"], 1, "{s}");
    let i = inspect(&out);
    assert_eq!(i["charts"][0]["name"], "stoa-api");
    assert_eq!(i["charts"][0]["version"], "2.3.0");
    // the archive is kept byte-exact
    let (names, m) = entries(&out);
    assert!(
        names.contains(&"charts/stoa-api-2.3.0.tgz".to_owned()),
        "{names:?}"
    );
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    let e = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "charts/stoa-api-2.3.0.tgz")
        .unwrap()
        .clone();
    assert_eq!(e["sha256"], hex::encode(Sha256::digest(&tgz)));
    // the second build takes it from the cache
    let s = build_ok(&manifest, &key, &t.path().join("b2.stoa"), &cache, &flags);
    assert_eq!(s["pulled"]["blobs_downloaded"], 0, "{s}");

    // a version the index lacks: named, with what it has
    let manifest = repo_release(t.path(), &format!("http://{host}"), "9.0.0");
    let err = fails(&mut build_cmd(&manifest, &key, &out, &cache, &flags), 3);
    assert!(
        err.contains("9.0.0") && err.contains("2.2.0, 2.3.0"),
        "{err}"
    );

    // plain HTTP without --insecure-registry is refused
    let manifest = repo_release(t.path(), &format!("http://{host}"), "2.3.0");
    let err = fails(
        &mut build_cmd(&manifest, &key, &out, &t.path().join("c3"), &[]),
        3,
    );
    assert!(err.contains("--insecure-registry"), "{err}");
}

#[test]
fn chart_with_wrong_digest_in_index_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    chart_repo(&repo, Some(&"ab".repeat(32)));
    let srv = HttpServer::start(&repo);
    let host = format!("127.0.0.1:{}", srv.port);
    let key = keygen(t.path());
    let manifest = repo_release(t.path(), &format!("http://{host}"), "2.3.0");
    let cache = t.path().join("c");
    let err = fails(
        &mut build_cmd(
            &manifest,
            &key,
            &t.path().join("b.stoa"),
            &cache,
            &["--insecure-registry".to_owned(), host],
        ),
        3,
    );
    assert!(
        err.contains("stoa-api 2.3.0") && err.contains("digest"),
        "{err}"
    );
    assert!(err.contains(&"ab".repeat(32)), "{err}");
    assert!(!t.path().join("b.stoa").exists());
    assert_eq!(fs::read_dir(cache.join("blobs/sha256")).unwrap().count(), 0);
}

/// Writes a Helm chart as an OCI artifact into a layout (Helm's media
/// types), tagged `ref_name`.
fn chart_layout(layout: &Path, tgz: &[u8], ref_name: &str) {
    let config = put_blob(
        layout,
        "application/vnd.cncf.helm.config.v1+json",
        br#"{"name":"stoa-api","version":"2.3.0","apiVersion":"v2"}"#,
    )
    .unwrap();
    let layer = put_blob(
        layout,
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        tgz,
    )
    .unwrap();
    let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer]});
    let mut d = put_blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    d["annotations"] = json!({"org.opencontainers.image.ref.name": ref_name});
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [d]})).unwrap(),
    )
    .unwrap();
}

#[test]
fn chart_from_oci_registry() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::start(t.path(), RegistryOptions::default());
    let layout = t.path().join("chart-layout");
    let tgz = chart_tgz("stoa-api", "2.3.0");
    chart_layout(&layout, &tgz, "2.3.0");
    push(&reg, &layout, "2.3.0", "charts/stoa-api:2.3.0");
    let key = keygen(t.path());
    let manifest = release()
        .table(Table::chart_ref(
            &format!("oci://{}/charts/stoa-api", reg.host),
            "2.3.0",
            "stoa-api",
            "stoa-system",
        ))
        .write(t.path());
    let out = t.path().join("b.stoa");
    let flags = vec!["--insecure-registry".to_owned(), reg.host.clone()];
    build_ok(&manifest, &key, &out, &t.path().join("c"), &flags);
    let i = inspect(&out);
    assert_eq!(i["charts"][0]["name"], "stoa-api");
    assert_eq!(i["charts"][0]["version"], "2.3.0");
    let (_, m) = entries(&out);
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    assert!(m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["sha256"] == hex::encode(Sha256::digest(&tgz))));

    // a version that is not there
    let manifest = release()
        .table(Table::chart_ref(
            &format!("oci://{}/charts/stoa-api", reg.host),
            "2.4.0",
            "stoa-api",
            "stoa-system",
        ))
        .write(t.path());
    let err = fails(
        &mut build_cmd(&manifest, &key, &out, &t.path().join("c"), &flags),
        3,
    );
    assert!(
        err.contains("charts/stoa-api") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn pulled_chart_and_image_fields_are_checked_with_line_numbers() {
    let t = tempfile::tempdir().unwrap();
    let key = keygen(t.path());
    let chart = || Table::new("charts");
    let cases = [
        (
            chart()
                .str("path", "charts/x")
                .str("repo", "https://c.example")
                .str("name", "x")
                .str("version", "1.0.0")
                .str("release", "x")
                .str("namespace", "n"),
            "charts[0]",
        ),
        (
            chart()
                .str("repo", "https://c.example")
                .str("name", "x")
                .str("release", "x")
                .str("namespace", "n"),
            "charts[0].version",
        ),
        (
            chart()
                .str("repo", "https://c.example")
                .str("version", "1.0.0")
                .str("release", "x")
                .str("namespace", "n"),
            "charts[0].name",
        ),
        (
            Table::chart_ref("https://c.example/x", "1.0.0", "x", "n"),
            "charts[0].chart",
        ),
        (
            Table::repo_chart("ftp://c.example", "x", "1.0.0", "x", "n"),
            "charts[0].repo",
        ),
        (
            Table::image("x").str("source", "docker://UPPER/x::y"),
            "images[0].source",
        ),
    ];
    for (table, field) in cases {
        let manifest = release().table(table).write(t.path());
        let err = fails(
            &mut build_cmd(
                &manifest,
                &key,
                &t.path().join("b.stoa"),
                &t.path().join("c"),
                &[],
            ),
            2,
        );
        assert!(err.contains(&format!(": {field}: ")), "{field}: {err}");
        assert!(err.contains("release.toml:"), "{err}");
    }
}

#[test]
fn chart_repo_mirror_first_then_the_repository() {
    let t = tempfile::tempdir().unwrap();
    let mirror_dir = t.path().join("mirror");
    let tgz = chart_repo(&mirror_dir, None);
    let mirror = HttpServer::start(&mirror_dir);
    let m = format!("127.0.0.1:{}", mirror.port);
    let key = keygen(t.path());
    // the release names the vendor's repository, which is never contacted:
    // the mirror has the chart
    let upstream = "https://charts.stoa-upstream.invalid/stable";
    let manifest = repo_release(t.path(), upstream, "2.3.0");
    let out = t.path().join("b.stoa");
    let flags = vec![
        "--chart-repo-mirror".to_owned(),
        format!("{upstream}/=http://{m}"),
        "--insecure-registry".to_owned(),
        m.clone(),
    ];
    build_ok(&manifest, &key, &out, &t.path().join("c"), &flags);
    let (_, bm) = entries(&out);
    let bm: serde_json::Value = serde_json::from_slice(&bm).unwrap();
    let e = bm["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "charts/stoa-api-2.3.0.tgz")
        .unwrap()
        .clone();
    assert_eq!(e["sha256"], hex::encode(Sha256::digest(&tgz)));
    assert!(!String::from_utf8_lossy(&fs::read(&out).unwrap()).contains(&m));

    // a mirror without the chart (no index at all): the repository is next
    let origin_dir = t.path().join("origin");
    chart_repo(&origin_dir, None);
    let origin = HttpServer::start(&origin_dir);
    let o = format!("127.0.0.1:{}", origin.port);
    let empty = t.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let dead_mirror = HttpServer::start(&empty);
    let d = format!("127.0.0.1:{}", dead_mirror.port);
    let manifest = repo_release(t.path(), &format!("http://{o}"), "2.2.0");
    let flags = vec![
        "--chart-repo-mirror".to_owned(),
        format!("http://{o}=http://{d}"),
        "--insecure-registry".to_owned(),
        o.clone(),
        "--insecure-registry".to_owned(),
        d.clone(),
    ];
    build_ok(&manifest, &key, &out, &t.path().join("c2"), &flags);
    assert_eq!(inspect(&out)["charts"][0]["version"], "2.2.0");

    // neither has it: the error names the mirror's answer too
    let manifest = repo_release(t.path(), &format!("http://{o}"), "9.0.0");
    let err = fails(
        &mut build_cmd(&manifest, &key, &out, &t.path().join("c2"), &flags),
        3,
    );
    assert!(
        err.contains("9.0.0") && err.contains(&format!("mirror http://{d}")),
        "{err}"
    );
}
