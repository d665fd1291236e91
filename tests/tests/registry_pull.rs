//! Building from a real `docker-registry` on loopback: anonymous and
//! authenticated pulls, TLS with a test CA, multi-platform indexes, shared
//! layers, missing images, a lying registry, and the cache (resume after a
//! kill, nothing downloaded the second time).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use stoa_e2e::harness::{fails, ok, Registry, RegistryOptions};
use stoa_e2e::oci_fixture::{layer_tgz, write_layout, write_random_layer, FixtureImage};
use stoa_e2e::registry_fixture::*;
use stoa_e2e::release::Table;

fn amd64() -> Vec<(String, String)> {
    vec![("linux".into(), "amd64".into())]
}

fn multi() -> Vec<(String, String)> {
    vec![
        ("linux".into(), "amd64".into()),
        ("linux".into(), "arm64".into()),
    ]
}

fn insecure(reg: &Registry) -> Vec<String> {
    vec!["--insecure-registry".into(), reg.host.clone()]
}

/// Two single-platform images sharing a base layer, and one multi-platform.
fn sample_layout(dir: &Path) -> std::path::PathBuf {
    let layout = dir.join("layout");
    let base = layer_tgz(&[("etc/os-release", b"ID=stoa-base\n")]);
    let app = |n: &str| layer_tgz(&[(&format!("opt/{n}"), n.as_bytes())]);
    write_layout(
        &layout,
        &[
            FixtureImage {
                ref_name: "api".into(),
                platforms: amd64(),
                layers: vec![base.clone(), app("api")],
            },
            FixtureImage {
                ref_name: "portal".into(),
                platforms: amd64(),
                layers: vec![base.clone(), app("portal")],
            },
            FixtureImage {
                ref_name: "gateway".into(),
                platforms: multi(),
                layers: vec![base, app("gateway")],
            },
        ],
    )
    .unwrap();
    layout
}

#[test]
fn registry_anonymous_by_tag_and_digest_shared_layers() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::start(t.path(), RegistryOptions::default());
    let layout = sample_layout(t.path());
    push(&reg, &layout, "api", "stoa/api:2.3.0");
    push(&reg, &layout, "portal", "stoa/portal:2.3.0");
    let api_digest = registry_digest(&reg, "stoa/api:2.3.0");
    let portal_digest = registry_digest(&reg, "stoa/portal:2.3.0");
    assert_eq!(api_digest, layout_digest(&layout, "api"));
    let key = keygen(t.path());
    let h = &reg.host;
    let manifest = release()
        .image(&format!("{h}/stoa/api:2.3.0"), None)
        .image(
            "registry.gostoa.dev/stoa/portal:2.3.0",
            Some(&format!("docker://{h}/stoa/portal@{portal_digest}")),
        )
        .write(t.path());
    let out = t.path().join("b.stoa");
    let cache = t.path().join("cache");
    let s = build_ok(&manifest, &key, &out, &cache, &insecure(&reg));
    // 2 configs + 3 distinct layers (the base is shared)
    assert_eq!(s["pulled"]["blobs_downloaded"], 5, "{s}");
    let api = image_of(&out, &format!("{h}/stoa/api:2.3.0"));
    assert_eq!(api["digest"], api_digest.as_str());
    assert_eq!(api["platforms"][0], "linux/amd64");
    let portal = image_of(&out, "registry.gostoa.dev/stoa/portal:2.3.0");
    assert_eq!(portal["digest"], portal_digest.as_str());
    // the shared layer is stored once; sources are recorded as written
    let (names, m) = entries(&out);
    let base = &layout_blobs(&layout, &api_digest)[1];
    let base_entry = format!("oci/blobs/sha256/{}", base.trim_start_matches("sha256:"));
    assert_eq!(
        names.iter().filter(|n| **n == base_entry).count(),
        1,
        "{names:?}"
    );
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains(&format!("docker://{h}/stoa/api:2.3.0")), "{m}");
    assert!(
        m.contains(&format!("docker://{h}/stoa/portal@{portal_digest}")),
        "{m}"
    );
    // the bundle verifies and skopeo reads the images out of it
    let pubkey = t.path().join("release.pub");
    ok(stoa_e2e::harness::updater()
        .arg("extract")
        .arg(&out)
        .arg("--trust")
        .arg(&pubkey)
        .arg("--to")
        .arg(t.path().join("x")));
    let raw = ok(std::process::Command::new("skopeo").args([
        "inspect".to_owned(),
        "--raw".to_owned(),
        format!(
            "oci:{}:{h}/stoa/api:2.3.0",
            t.path().join("x/oci").display()
        ),
    ]));
    assert_eq!(
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes()))
        ),
        api_digest
    );

    // a second build downloads nothing
    let out2 = t.path().join("b2.stoa");
    let s = build_ok(&manifest, &key, &out2, &cache, &insecure(&reg));
    assert_eq!(s["pulled"]["blobs_downloaded"], 0, "{s}");
    assert_eq!(s["pulled"]["bytes_downloaded"], 0, "{s}");
    assert_eq!(s["pulled"]["blobs_cached"], 5, "{s}");
}

#[test]
fn registry_plain_http_needs_insecure_flag() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::start(t.path(), RegistryOptions::default());
    let layout = sample_layout(t.path());
    push(&reg, &layout, "api", "stoa/api:2.3.0");
    let key = keygen(t.path());
    let manifest = release()
        .image(&format!("{}/stoa/api:2.3.0", reg.host), None)
        .write(t.path());
    let err = fails(
        &mut build_cmd(
            &manifest,
            &key,
            &t.path().join("b.stoa"),
            &t.path().join("c"),
            &[],
        ),
        3,
    );
    assert!(err.contains("stoa/api:2.3.0"), "{err}");
    assert!(!t.path().join("b.stoa").exists());
}

#[test]
fn registry_missing_image_is_named() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::start(t.path(), RegistryOptions::default());
    let layout = sample_layout(t.path());
    push(&reg, &layout, "api", "stoa/api:2.3.0");
    let key = keygen(t.path());
    for missing in ["stoa/api:9.9.9", "stoa/nothing:1.0"] {
        let name = format!("{}/{missing}", reg.host);
        let manifest = release().image(&name, None).write(t.path());
        let err = fails(
            &mut build_cmd(
                &manifest,
                &key,
                &t.path().join("b.stoa"),
                &t.path().join("c"),
                &insecure(&reg),
            ),
            3,
        );
        assert!(err.contains(&format!("image {name}")), "{err}");
        assert!(err.contains("not found"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn registry_multi_platform_filtered_and_whole() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::start(t.path(), RegistryOptions::default());
    let layout = sample_layout(t.path());
    push(&reg, &layout, "gateway", "stoa/gateway:2.3.0");
    let index_digest = registry_digest(&reg, "stoa/gateway:2.3.0");
    let key = keygen(t.path());
    let h = &reg.host;
    let manifest = release()
        .image(
            "whole/gateway:2.3.0",
            Some(&format!("docker://{h}/stoa/gateway:2.3.0")),
        )
        .table(
            Table::image("arm/gateway:2.3.0")
                .str("source", &format!("docker://{h}/stoa/gateway:2.3.0"))
                .list("platforms", &["linux/arm64"]),
        )
        .write(t.path());
    let out = t.path().join("b.stoa");
    build_ok(&manifest, &key, &out, &t.path().join("c"), &insecure(&reg));
    let whole = image_of(&out, "whole/gateway:2.3.0");
    assert_eq!(whole["digest"], index_digest.as_str());
    assert_eq!(whole["platforms"].as_array().unwrap().len(), 2);
    assert!(whole["source_digest"].is_null());
    let arm = image_of(&out, "arm/gateway:2.3.0");
    assert_ne!(arm["digest"], index_digest.as_str());
    assert_eq!(arm["source_digest"], index_digest.as_str());
    assert_eq!(arm["platforms"], serde_json::json!(["linux/arm64"]));
    assert!(arm["size"].as_u64().unwrap() < whole["size"].as_u64().unwrap());

    // filtered only: the amd64 child manifest is not even downloaded
    let manifest = release()
        .table(
            Table::image("arm/gateway:2.3.0")
                .str("source", &format!("docker://{h}/stoa/gateway:2.3.0"))
                .list("platforms", &["linux/arm64"]),
        )
        .write(t.path());
    let out = t.path().join("arm.stoa");
    let s = build_ok(&manifest, &key, &out, &t.path().join("c2"), &insecure(&reg));
    // base + gateway app + arm marker + arm config
    assert_eq!(s["pulled"]["blobs_downloaded"], 4, "{s}");
    let (_, m) = entries(&out);
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    assert_eq!(
        m["images"][0]["platforms"],
        serde_json::json!(["linux/arm64"])
    );

    // a platform the index lacks is refused, naming what it has
    let manifest = release()
        .table(Table::image(&format!("{h}/stoa/gateway:2.3.0")).list("platforms", &["linux/s390x"]))
        .write(t.path());
    let err = fails(
        &mut build_cmd(
            &manifest,
            &key,
            &t.path().join("x.stoa"),
            &t.path().join("c"),
            &insecure(&reg),
        ),
        3,
    );
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
}

#[test]
fn registry_htpasswd_over_tls_with_test_ca() {
    let t = tempfile::tempdir().unwrap();
    let password = "s3cret-Pa55word";
    let reg = Registry::start(
        t.path(),
        RegistryOptions {
            tls: true,
            auth: Some(("stoa".into(), password.into())),
        },
    );
    let layout = sample_layout(t.path());
    push(&reg, &layout, "gateway", "stoa/gateway:2.3.0");
    let digest = registry_digest(&reg, "stoa/gateway:2.3.0");
    let key = keygen(t.path());
    let ca = reg.tls.as_ref().unwrap().ca_cert.clone();
    let manifest = release()
        .image(&format!("{}/stoa/gateway:2.3.0", reg.host), None)
        .write(t.path());
    let ca_flags = vec!["--ca-cert".to_owned(), ca.display().to_string()];
    let out = t.path().join("b.stoa");
    let home = t.path().join("home");
    fs::create_dir_all(&home).unwrap();

    // no credentials: refused, saying where credentials are looked for
    let mut c = build_cmd(&manifest, &key, &out, &t.path().join("c"), &ca_flags);
    c.env("HOME", &home)
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    let err = fails(&mut c, 3);
    assert!(
        err.contains("stoa/gateway:2.3.0") && err.contains("no credentials"),
        "{err}"
    );

    // credentials in $DOCKER_CONFIG/config.json (base64 auth)
    let docker = t.path().join("docker");
    fs::create_dir_all(&docker).unwrap();
    let auth = base64_encode(format!("stoa:{password}").as_bytes());
    fs::write(
        docker.join("config.json"),
        format!("{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}", reg.host),
    )
    .unwrap();
    // without the CA the TLS handshake fails
    let mut c = build_cmd(&manifest, &key, &out, &t.path().join("c"), &[]);
    c.env("HOME", &home)
        .env("DOCKER_CONFIG", &docker)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    let err = fails(&mut c, 3);
    assert!(err.contains("stoa/gateway:2.3.0"), "{err}");
    assert!(!err.contains(password) && !err.contains(&auth), "{err}");

    let mut c = build_cmd(&manifest, &key, &out, &t.path().join("c"), &ca_flags);
    c.env("HOME", &home)
        .env("DOCKER_CONFIG", &docker)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    let s = ok(&mut c);
    assert!(!s.contains(password) && !s.contains(&auth), "{s}");
    assert_eq!(
        image_of(&out, &format!("{}/stoa/gateway:2.3.0", reg.host))["digest"],
        digest.as_str()
    );

    // $REGISTRY_AUTH_FILE wins (wrong password there: refused, file named)
    let authfile = t.path().join("auth.json");
    fs::write(
        &authfile,
        format!(
            "{{\"auths\":{{\"{}\":{{\"username\":\"stoa\",\"password\":\"wrong\"}}}}}}",
            reg.host
        ),
    )
    .unwrap();
    let mut c = build_cmd(
        &manifest,
        &key,
        &t.path().join("b2.stoa"),
        &t.path().join("c2"),
        &ca_flags,
    );
    c.env("HOME", &home)
        .env("DOCKER_CONFIG", &docker)
        .env("REGISTRY_AUTH_FILE", &authfile)
        .env_remove("XDG_RUNTIME_DIR");
    let err = fails(&mut c, 3);
    assert!(err.contains("auth.json"), "{err}");
    assert!(!err.contains("wrong") && !err.contains(password), "{err}");

    // nothing secret in the bundle or the cache
    let (_, m) = entries(&out);
    assert!(!String::from_utf8_lossy(&m).contains(password));
    for e in walk(&t.path().join("c")) {
        let b = fs::read(&e).unwrap();
        assert!(
            !b.windows(password.len()).any(|w| w == password.as_bytes()),
            "{}",
            e.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn registry_lying_blob_is_refused_naming_image_and_blob() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::start(t.path(), RegistryOptions::default());
    let layout = sample_layout(t.path());
    push(&reg, &layout, "api", "stoa/api:2.3.0");
    let digest = registry_digest(&reg, "stoa/api:2.3.0");
    let app_layer = layout_blobs(&layout, &digest)[2].clone();
    // flip one byte of the layer in the registry's storage (same size)
    let f = registry_blob_file(&reg, &app_layer);
    let mut b = fs::read(&f).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    fs::write(&f, b).unwrap();
    let key = keygen(t.path());
    let name = format!("{}/stoa/api:2.3.0", reg.host);
    let manifest = release().image(&name, None).write(t.path());
    let cache = t.path().join("c");
    let err = fails(
        &mut build_cmd(
            &manifest,
            &key,
            &t.path().join("b.stoa"),
            &cache,
            &insecure(&reg),
        ),
        3,
    );
    assert!(err.contains(&format!("image {name}")), "{err}");
    assert!(err.contains(&app_layer), "{err}");
    assert!(err.contains("digest"), "{err}");
    // the bad bytes never enter the cache
    let hex = app_layer.trim_start_matches("sha256:");
    assert!(!cache.join("blobs/sha256").join(hex).exists());
    assert!(!t.path().join("b.stoa").exists());
}

#[test]
fn registry_killed_build_resumes_with_only_missing_blobs() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::start(t.path(), RegistryOptions::default());
    let layout = t.path().join("layout");
    // one image with six 1 MiB incompressible layers
    let layers: Vec<serde_json::Value> = (0..6)
        .map(|i| write_random_layer(&layout, 1 << 20, 77 + i).unwrap())
        .collect();
    let blobs: Vec<Vec<u8>> = layers
        .iter()
        .map(|l| {
            fs::read(
                layout
                    .join("blobs/sha256")
                    .join(l["digest"].as_str().unwrap().trim_start_matches("sha256:")),
            )
            .unwrap()
        })
        .collect();
    write_layout(
        &layout,
        &[FixtureImage {
            ref_name: "big".into(),
            platforms: amd64(),
            layers: blobs,
        }],
    )
    .unwrap();
    push(&reg, &layout, "big", "stoa/big:1");
    let digest = registry_digest(&reg, "stoa/big:1");
    let all = layout_blobs(&layout, &digest);
    assert_eq!(all.len(), 7);
    let key = keygen(t.path());
    let manifest = release()
        .image(&format!("{}/stoa/big:1", reg.host), None)
        .write(t.path());
    let cache = t.path().join("cache");
    let cached = || {
        all.iter()
            .filter(|d| {
                cache
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:"))
                    .exists()
            })
            .count()
    };

    // one download at a time, a pause after each: kill after two are in
    let mut flags = insecure(&reg);
    flags.extend(["--jobs".to_owned(), "1".to_owned()]);
    let mut c = build_cmd(&manifest, &key, &t.path().join("b.stoa"), &cache, &flags);
    c.env("STOA_BUNDLER_TEST_PULL_DELAY_MS", "700")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    while cached() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        assert!(child.try_wait().unwrap().is_none(), "build ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let have = cached();
    assert!((2..7).contains(&have), "{have}");
    assert!(!t.path().join("b.stoa").exists());

    // re-run: fetches only what is missing
    let out = t.path().join("b.stoa");
    let s = build_ok(&manifest, &key, &out, &cache, &insecure(&reg));
    assert_eq!(s["pulled"]["blobs_downloaded"], 7 - have as u64, "{s}");
    assert_eq!(s["pulled"]["blobs_cached"], have as u64, "{s}");
    assert_eq!(
        image_of(&out, &format!("{}/stoa/big:1", reg.host))["digest"],
        digest.as_str()
    );
    // no temp files left behind once the killed build is gone (the cache
    // writes through stoa_format::durable: temps beside the blobs)
    let temps: Vec<String> = fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(stoa_format::durable::TEMP_MARKER))
        .collect();
    assert_eq!(temps, Vec::<String>::new());

    // third build: nothing downloaded, byte-identical bundle
    let out3 = t.path().join("b3.stoa");
    let mut c = build_cmd(&manifest, &key, &out3, &cache, &insecure(&reg));
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    let s: serde_json::Value = serde_json::from_str(ok(&mut c).trim()).unwrap();
    assert_eq!(s["pulled"]["blobs_downloaded"], 0, "{s}");
    let out4 = t.path().join("b4.stoa");
    let mut c = build_cmd(&manifest, &key, &out4, &cache, &insecure(&reg));
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    ok(&mut c);
    assert_eq!(fs::read(&out3).unwrap(), fs::read(&out4).unwrap());
}
