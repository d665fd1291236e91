//! `prune --registry` on a real docker-registry: the tags no retained
//! release needs are listed (`--dry-run`, nothing changed) and deleted, the
//! retained releases' images still pull, a repository outside the prefix
//! and a tag sharing a needed digest survive, a registry refusing deletes
//! (405) is reported per tag (exit 0, a warning); and against a hostile
//! registry stand-in, names that are not valid repositories or tags are
//! refused, never requested, and printed escaped.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

use stoa_e2e::harness::{fails, json, ok, run, RegistryOptions};
use stoa_e2e::site::Site;

/// `repo:tag` of each entry of a report list.
fn tags(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["repo"].as_str().unwrap(),
                t["tag"].as_str().unwrap()
            )
        })
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// `skopeo copy` inside the site registry (`from` and `to` are repo:tag).
fn copy_in_registry(s: &Site, from: &str, to: &str) {
    let mut c = Command::new("skopeo");
    c.args(["copy", "--all", "--preserve-digests", "-q"])
        .args(s.registry.skopeo_flags(false))
        .args(s.registry.skopeo_flags(true))
        .arg(s.registry.docker_ref(from))
        .arg(s.registry.docker_ref(to));
    ok(&mut c);
}

/// A site with keep_releases = `keep` that applied 2.0.0, 2.1.0 and
/// 2.3.0 (2.0.0 forgotten), plus `other/x:1` (outside the prefix, a copy
/// of 2.0.0's api) and `site/stoa/api:alias` (2.1.0's api digest).
fn site_with_three_releases(s: &Site) {
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace("keep_releases = 3", "keep_releases = 2"),
    )
    .unwrap();
    for v in ["2.0.0", "2.1.0", "2.3.0"] {
        let b = s.bundle(v, None);
        ok(s.updater().arg("apply").arg(&b));
    }
    copy_in_registry(s, "site/stoa/api:2.0.0", "other/x:1");
    copy_in_registry(s, "site/stoa/api:2.1.0", "site/stoa/api:alias");
}

const OLD: [&str; 3] = [
    "site/stoa/api:2.0.0",
    "site/stoa/gateway:2.0.0",
    "site/stoa/portal:2.0.0",
];

#[test]
fn prune_registry_deletes_the_tags_no_retained_release_needs() {
    let s = Site::start();
    site_with_three_releases(&s);
    let before: Vec<_> = ["2.1.0", "2.3.0"]
        .iter()
        .flat_map(|v| ["api", "gateway", "portal"].map(|i| format!("site/stoa/{i}:{v}")))
        .map(|t| (s.registry_digest(&t).unwrap(), t))
        .collect();
    // page size 1: every catalog and tag-list page follows the Link header
    let prune = |dry: bool| {
        let mut c = s.updater();
        c.args(["prune", "--registry", "--json"])
            .env("STOA_UPDATER_TEST_REGISTRY_PAGE", "1");
        if dry {
            c.arg("--dry-run");
        }
        json(&ok(&mut c))
    };
    let dry = prune(true);
    let r = &dry["registry"];
    assert_eq!(r["dry_run"], true, "{dry}");
    assert_eq!(tags(&r["deleted"]), set(&OLD), "{dry}");
    assert_eq!(tags(&r["skipped"]), set(&["site/stoa/api:alias"]), "{dry}");
    assert!(r["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("retained release"));
    assert_eq!(r["repositories"], 3, "{dry}");
    assert_eq!(r["needed_tags"], 6, "{dry}");
    assert!(r["hint"].as_str().unwrap().contains("garbage-collect"));
    for t in OLD {
        assert!(s.registry_digest(t).is_some(), "dry run deleted {t}");
    }

    let done = prune(false);
    let r = &done["registry"];
    assert_eq!(tags(&r["deleted"]), set(&OLD), "{done}");
    assert!(r["refused"].as_array().unwrap().is_empty(), "{done}");
    for t in OLD {
        assert_eq!(s.registry_digest(t), None, "{t} still pulls");
    }
    for (digest, t) in &before {
        assert_eq!(s.registry_digest(t).as_ref(), Some(digest), "{t}");
    }
    assert!(
        s.registry_digest("other/x:1").is_some(),
        "outside the prefix"
    );
    assert!(s.registry_digest("site/stoa/api:alias").is_some());

    // again: nothing left to delete; the text report says so
    let text = ok(s.updater().args(["prune", "--registry"]));
    assert!(text.contains("registry tags deleted: none"), "{text}");
    assert!(
        text.contains("site registry: 1 tags no retained release needs"),
        "{text}"
    );
    assert!(
        text.contains("hint: blob space is reclaimed only"),
        "{text}"
    );
    // the plain prune never asks the registry
    let plain = ok(s.updater().arg("prune"));
    assert!(!plain.contains("registry"), "{plain}");
}

#[test]
fn prune_registry_on_a_registry_refusing_deletes_reports_405_and_exits_0() {
    let s = Site::start_without_registry_deletes();
    site_with_three_releases(&s);
    let out = run(s.updater().args(["prune", "--registry", "--json"]));
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = json(&stdout);
    let r = &v["registry"];
    assert_eq!(tags(&r["refused"]), set(&OLD), "{v}");
    assert!(r["deleted"].as_array().unwrap().is_empty(), "{v}");
    for t in r["refused"].as_array().unwrap() {
        assert_eq!(
            t["reason"],
            "not deleted: the registry does not allow deletes (405)"
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: 3 registry tags not deleted: the registry does not allow deletes (405)"
        ),
        "{stderr}"
    );
    for t in OLD {
        assert!(s.registry_digest(t).is_some(), "{t}");
    }
    let text = ok(s.updater().args(["prune", "--registry"]));
    assert!(
        text.contains(
            "registry tag site/stoa/api:2.0.0: not deleted: the registry does not allow deletes (405)"
        ),
        "{text}"
    );
}

/// A registry stand-in whose catalog and tag list carry names no real
/// registry would: each request line is logged.
fn hostile_registry() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let long = format!("site/{}", "a".repeat(300));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut st) = stream else { continue };
            let mut r = BufReader::new(st.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            log2.lock().unwrap().push(line.clone());
            let p: Vec<&str> = line.split_whitespace().collect();
            let (method, path) = (
                p.first().copied().unwrap_or(""),
                p.get(1).copied().unwrap_or(""),
            );
            let (code, extra, body) = match (method, path) {
                ("GET", "/v2/_catalog?n=100") => (
                    200,
                    "Link: </v2/_catalog?n=100&last=p1>; rel=\"next\"\r\n".to_owned(),
                    serde_json::json!({"repositories":
                        ["site/../etc", "site/x\u{1b}[2J", long, "other/x"]})
                    .to_string(),
                ),
                ("GET", "/v2/_catalog?n=100&last=p1") => (
                    200,
                    String::new(),
                    r#"{"repositories":["site/ok","sitex/y"]}"#.to_owned(),
                ),
                ("GET", "/v2/site/ok/tags/list?n=100") => (
                    200,
                    String::new(),
                    serde_json::json!({"name": "site/ok", "tags": ["1", "bad\u{1b}]0;x", "../x"]})
                        .to_string(),
                ),
                ("HEAD", "/v2/site/ok/manifests/1") => (
                    200,
                    format!("Docker-Content-Digest: sha256:{}\r\n", "a".repeat(64)),
                    String::new(),
                ),
                ("DELETE", p)
                    if p == format!("/v2/site/ok/manifests/sha256:{}", "a".repeat(64)) =>
                {
                    (202, String::new(), String::new())
                }
                _ => (404, String::new(), r#"{"errors":[]}"#.to_owned()),
            };
            let len = if method == "HEAD" { 0 } else { body.len() };
            let _ = write!(
                st,
                "HTTP/1.1 {code} X\r\nContent-Length: {len}\r\nContent-Type: application/json\r\nConnection: close\r\n{extra}\r\n{}",
                if method == "HEAD" { "" } else { &body }
            );
        }
    });
    (host, log)
}

#[test]
fn hostile_catalog_names_are_refused_never_requested_and_printed_escaped() {
    let (host, log) = hostile_registry();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("trust")).unwrap();
    ok(stoa_e2e::harness::bundler()
        .args(["keygen", "--out"])
        .arg(d.join("release")));
    fs::copy(d.join("release.pub"), d.join("trust/release.pub")).unwrap();
    let config = d.join("updater.toml");
    fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\ntrust = \"{}\"\nkeep_releases = 2\n\n[registry]\nurl = \"http://{host}\"\nprefix = \"site\"\n",
            d.join("state").display(),
            d.join("trust").display()
        ),
    )
    .unwrap();
    let updater = || {
        let mut c = stoa_e2e::harness::updater();
        c.arg("--config").arg(&config);
        c
    };
    let text = ok(updater().args(["prune", "--registry", "--dry-run"]));
    assert!(
        !text.contains('\u{1b}'),
        "a raw escape reached the terminal: {text:?}"
    );
    assert!(text.contains("site/x\\u{1b}[2J"), "{text}");
    assert!(
        text.contains("registry tags to delete: site/ok:1"),
        "{text}"
    );
    let v = json(&ok(updater().args(["prune", "--registry", "--json"])));
    let r = &v["registry"];
    assert_eq!(tags(&r["deleted"]), set(&["site/ok:1"]), "{v}");
    // three repositories and two tags refused
    assert_eq!(r["invalid"].as_array().unwrap().len(), 5, "{v}");
    assert_eq!(r["repositories"], 1, "{v}");
    let seen = log.lock().unwrap().clone();
    for l in &seen {
        for bad in [
            "..",
            "other",
            "sitex",
            "\u{1b}",
            "aaaaaaaaaa/",
            "%1B",
            "%1b",
        ] {
            assert!(!l.contains(bad), "requested {l:?}");
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.starts_with("DELETE /v2/site/ok/manifests/sha256:")),
        "{seen:?}"
    );
    // without a prefix every repository would be a candidate: refused
    // before the registry is asked
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, text.replace("prefix = \"site\"\n", "")).unwrap();
    let e = fails(updater().args(["prune", "--registry"]), 2);
    assert!(e.contains("prune --registry needs a prefix"), "{e}");
    assert_eq!(
        log.lock().unwrap().len(),
        seen.len(),
        "the registry was asked"
    );
}

/// Over TLS with the test CA and Basic credentials (the password never
/// printed), and refused while an apply is pending: its pushed images may
/// be the ones a resume needs.
#[test]
fn prune_registry_over_tls_with_credentials_and_refused_while_pending() {
    let pass = "Prune-S3cret-7";
    let s = Site::start_with(RegistryOptions {
        tls: true,
        auth: Some(("robot".into(), pass.into())),
    });
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace("keep_releases = 3", "keep_releases = 1"),
    )
    .unwrap();
    for v in ["2.0.0", "2.1.0"] {
        let b = s.bundle(v, None);
        ok(s.updater().arg("apply").arg(&b));
    }
    let out = run(s.updater().args(["prune", "--registry", "--json"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains(pass) && !stderr.contains(pass));
    let v = json(&stdout);
    assert_eq!(tags(&v["registry"]["deleted"]), set(&OLD), "{v}");
    assert_eq!(s.registry_digest("site/stoa/api:2.0.0"), None);
    assert!(s.registry_digest("site/stoa/api:2.1.0").is_some());

    let b230 = s.bundle("2.3.0", None);
    s.crash_after(&[OsStr::new("apply"), b230.as_os_str()], "push-images");
    let e = fails(s.updater().args(["prune", "--registry"]), 5);
    assert!(e.contains("pending"), "{e}");
    assert!(s.registry_digest("site/stoa/api:2.3.0").is_some());
    assert!(s.registry_digest("site/stoa/api:2.1.0").is_some());
}
