//! Issue 10, delta bundles: `build --base` leaves out what the base release
//! has; a site applies a delta exactly as the full bundle (same registry
//! content, same state and history but for the manifest digest and the
//! recorded chain), rollback the same; deltas chain. The named bad inputs
//! (tests/src/delta_fixture.rs): a delta whose base is absent on site, a
//! pruned store, a damaged stored blob, a delta listing an omitted entry
//! with a bad digest. Each is refused with exit 1 naming the blob and the
//! release, before any change (the state folder is byte-for-byte the same),
//! with no panic.

#![allow(clippy::unwrap_used)]

use std::fs;

use serde_json::Value;
use stoa_e2e::delta_fixture as df;
use stoa_e2e::harness::{bundler, fails, json, ok, updater};
use stoa_e2e::site::Site;
use stoa_e2e::tamper::{decompress, read_tar};

const IMAGES: [&str; 3] = ["api", "gateway", "portal"];

/// What a site looks like from outside, minus what differs by nature
/// between a delta and its full bundle (the manifest digest) and by time.
fn site_view(s: &Site, version: &str) -> Value {
    let mut st = s.status_json();
    strip(&mut st);
    let registry: Vec<Option<String>> = IMAGES
        .iter()
        .map(|i| s.registry_digest(&format!("site/stoa/{i}:{version}")))
        .collect();
    let mut history = json(&ok(s.updater().args(["history", "--json"])))["history"].clone();
    strip(&mut history);
    serde_json::json!({
        "status": st, "registry": registry, "tables": s.tables(),
        "migrations": s.migration_ids(), "helm": s.helm_revision("stoa-api"),
        "history": history,
        "tool": fs::read(s.state_dir.join("files/bin/stoactl")).ok(),
    })
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in [
                "manifest_sha256",
                "applied_at",
                "at",
                "time",
                "started_at",
                "delta",
                "push",
                "state_dir",
                "snapshot",
                "snapshots",
                "op_id",
            ] {
                m.remove(k);
            }
            for (_, x) in m.iter_mut() {
                strip(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

#[test]
fn delta_apply_matches_full_apply_and_rolls_back_the_same() {
    let full = Site::start();
    let b210 = full.bundle("2.1.0", None);
    let b230 = full.bundle("2.3.0", None);
    let d230 = full.delta_bundle("2.3.0", &b210);
    // the delta relies on what 2.1.0 carries, and is smaller
    let i = json(&ok(updater().arg("inspect").arg(&d230).arg("--json")));
    assert_eq!(i["format_version"], 2);
    assert_eq!(i["delta"]["base"]["version"], "2.1.0");
    assert!(i["delta"]["omitted_entries"].as_u64().unwrap() > 0, "{i}");
    assert!(fs::metadata(&d230).unwrap().len() < fs::metadata(&b230).unwrap().len());
    // verify checks the delta alone
    let v = ok(updater()
        .arg("verify")
        .arg(&d230)
        .arg("--trust")
        .arg(full.path().join("release.pub")));
    assert!(v.contains("a delta on stoa-platform 2.1.0"), "{v}");

    ok(full.updater().arg("apply").arg(&b210));
    ok(full.updater().arg("apply").arg(&b230));

    let delta = Site::start();
    // the same bundles on the second site (same key: copy the trust)
    fs::copy(
        full.path().join("release.pub"),
        delta.path().join("trust/release.pub"),
    )
    .unwrap();
    ok(delta.updater().arg("apply").arg(&b210));
    let plan = json(&ok(delta.updater().arg("plan").arg(&d230).arg("--json")));
    assert_eq!(plan["delta"]["base"]["version"], "2.1.0", "{plan}");
    let r = json(&ok(delta.updater().arg("apply").arg(&d230).arg("--json")));
    assert_eq!(r["apply"]["version"], "2.3.0", "{r}");

    assert_eq!(site_view(&delta, "2.3.0"), site_view(&full, "2.3.0"));
    for img in IMAGES {
        let want =
            Site::bundle_image_digest(&b230, &format!("registry.gostoa.dev/stoa/{img}:2.3.0"));
        assert_eq!(
            delta.registry_digest(&format!("site/stoa/{img}:2.3.0")),
            Some(want)
        );
    }
    // the chain is in history
    let h = json(&ok(delta.updater().args(["history", "--json"])));
    let last = h["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["delta"]["base"]["version"], "2.1.0", "{last}");
    assert_eq!(last["delta"]["chain"].as_array().unwrap().len(), 1);

    // rollback works the same
    ok(full.updater().args(["rollback", "--json"]));
    ok(delta.updater().args(["rollback", "--json"]));
    assert_eq!(delta.installed().as_deref(), Some("2.1.0"));
    assert_eq!(site_view(&delta, "2.3.0"), site_view(&full, "2.3.0"));
    // and the delta applies again after the rollback (its blobs were kept)
    ok(delta.updater().arg("apply").arg(&d230));
    assert_eq!(delta.installed().as_deref(), Some("2.3.0"));
}

#[test]
fn delta_on_a_delta_applies_when_the_site_holds_the_chain() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let d210 = s.delta_bundle("2.1.0", &b200);
    let d230 = s.delta_bundle("2.3.0", &d210);
    let i = json(&ok(updater().arg("inspect").arg(&d230).arg("--json")));
    let chain: Vec<&str> = i["delta"]["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["version"].as_str().unwrap())
        .collect();
    assert_eq!(chain, ["2.1.0", "2.0.0"]);
    let text = ok(updater().arg("inspect").arg(&d230));
    assert!(
        text.contains("which is a delta on stoa-platform 2.0.0"),
        "{text}"
    );
    ok(s.updater().arg("apply").arg(&b200));
    ok(s.updater().arg("apply").arg(&d210));
    ok(s.updater().arg("apply").arg(&d230));
    assert_eq!(s.installed().as_deref(), Some("2.3.0"));
    // every migration of 2.3.0 ran (its SQL came from the chain's store)
    let steps = i["migrations"][0]["steps"].as_array().unwrap().len();
    assert_eq!(s.migration_ids().len(), steps);
    let h = json(&ok(s.updater().args(["history", "--json"])));
    let last = h["history"].as_array().unwrap().last().unwrap().clone();
    let chain: Vec<&str> = last["delta"]["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["version"].as_str().unwrap())
        .collect();
    assert_eq!(chain, ["2.1.0", "2.0.0"], "{last}");
    for img in IMAGES {
        assert!(s
            .registry_digest(&format!("site/stoa/{img}:2.3.0"))
            .is_some());
    }
}

/// Runs a refused apply and plan: exit 1, the error names `names`, and the
/// state folder, the registry and the database are unchanged.
fn refused(s: &Site, delta: &std::path::Path, names: &[&str]) -> String {
    let before = df::state_snapshot(&s.state_dir);
    let tables = s.tables();
    let mut err = String::new();
    for cmd in ["plan", "apply"] {
        err = fails(s.updater().arg(cmd).arg(delta).arg("--json"), 1);
        for n in names {
            assert!(err.contains(n), "{cmd}: {err:?} lacks {n:?}");
        }
        assert!(err.contains("delta"), "{err}");
    }
    assert_eq!(
        df::state_snapshot(&s.state_dir),
        before,
        "nothing on site changes"
    );
    assert_eq!(s.tables(), tables);
    for img in IMAGES {
        assert!(s
            .registry_digest(&format!("site/stoa/{img}:2.3.0"))
            .is_none());
    }
    err
}

#[test]
fn delta_whose_base_is_absent_on_site_is_refused() {
    // a site that never had 2.1.0 (a first install from the delta)
    let s = Site::start();
    let b210 = s.bundle("2.1.0", None);
    let d230 = s.delta_bundle("2.3.0", &b210);
    let (path, _) = df::omitted_blob(&d230);
    let err = refused(
        &s,
        &d230,
        &[
            "stoa-platform 2.3.0",
            "built on stoa-platform 2.1.0",
            "not among this site's retained releases",
            &path,
            "not in the store",
        ],
    );
    assert!(
        err.contains("apply the full bundle of stoa-platform 2.3.0"),
        "{err}"
    );
    assert_eq!(s.installed(), None);
}

#[test]
fn delta_on_a_pruned_store_is_refused() {
    let s = Site::start();
    let b210 = s.bundle("2.1.0", None);
    let d230 = s.delta_bundle("2.3.0", &b210);
    ok(s.updater().arg("apply").arg(&b210));
    let (path, hex) = df::omitted_blob(&d230);
    df::prune_blob(&s.state_dir, &hex);
    refused(
        &s,
        &d230,
        &[&path, &hex, "not in the store", "which this site applied"],
    );
    assert!(!s.state_dir.join("store/sha256").join(&hex).exists());
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
}

#[test]
fn delta_on_a_damaged_stored_blob_is_refused() {
    let s = Site::start();
    let b210 = s.bundle("2.1.0", None);
    let d230 = s.delta_bundle("2.3.0", &b210);
    ok(s.updater().arg("apply").arg(&b210));
    let (path, hex) = df::omitted_blob(&d230);
    df::damage_blob(&s.state_dir, &hex);
    refused(&s, &d230, &[&path, &hex, "damaged in the store"]);
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
}

#[test]
fn delta_listing_an_omitted_entry_with_a_bad_digest_is_refused() {
    let s = Site::start();
    let b210 = s.bundle("2.1.0", None);
    let d230 = s.delta_bundle("2.3.0", &b210);
    let (path, _) = df::omitted_blob(&d230);
    let bad = df::omitted_bad_digest(
        &d230,
        &path,
        &s.key,
        &s.path().join("delta-omitted-bad-digest.tar.zst"),
    );
    let err = fails(
        updater()
            .arg("verify")
            .arg(&bad)
            .arg("--trust")
            .arg(s.path().join("release.pub")),
        1,
    );
    assert!(err.contains(&path), "{err}");
    ok(s.updater().arg("apply").arg(&b210));
    let before = df::state_snapshot(&s.state_dir);
    let err = fails(s.updater().arg("apply").arg(&bad), 1);
    assert!(err.contains(&path), "{err}");
    assert_eq!(df::state_snapshot(&s.state_dir), before);
    // inspect refuses it too: the manifest is not well formed
    fails(updater().arg("inspect").arg(&bad), 1);
}

#[test]
fn diff_lists_what_changed_and_the_delta_size() {
    let s = Site::start();
    let b210 = s.bundle("2.1.0", None);
    let b230 = s.bundle("2.3.0", None);
    let d230 = s.delta_bundle("2.3.0", &b210);
    let trust = s.path().join("release.pub");
    let d = json(&ok(bundler()
        .arg("diff")
        .arg(&b210)
        .arg(&b230)
        .arg("--trust")
        .arg(&trust)
        .arg("--json")));
    assert_eq!(d["old"]["version"], "2.1.0");
    assert_eq!(d["new"]["version"], "2.3.0");
    assert!(
        !d["images"]["changed"].as_array().unwrap().is_empty(),
        "{d}"
    );
    for c in d["images"]["changed"].as_array().unwrap() {
        let (n, sh) = (
            c["bytes_new"].as_u64().unwrap(),
            c["bytes_shared"].as_u64().unwrap(),
        );
        assert!(n > 0, "a changed image has a new manifest at least: {c}");
        assert!(n + sh >= c["new"]["size"].as_u64().unwrap() / 2, "{c}");
    }
    assert!(!d["migrations_added"].as_array().unwrap().is_empty(), "{d}");
    assert!(!d["charts"].as_array().unwrap().is_empty(), "{d}");
    // the estimate is what build --base left out
    let i = json(&ok(updater().arg("inspect").arg(&d230).arg("--json")));
    assert_eq!(
        d["delta"]["bytes_omitted"], i["delta"]["omitted_bytes"],
        "{d}"
    );
    assert_eq!(d["delta"]["bytes_carried"], i["content_bytes"], "{d}");
    // from the bare signed manifest (entry 0 of the bundle) the same estimate
    let entries = read_tar(&decompress(&fs::read(&b210).unwrap()));
    let mf = s.path().join("manifest-2.1.0.json");
    fs::write(&mf, &entries[0].data).unwrap();
    let d2 = json(&ok(bundler().arg("diff").arg(&mf).arg(&b230).arg("--json")));
    assert_eq!(d2["delta"], d["delta"]);
    let text = ok(bundler().arg("diff").arg(&b210).arg(&b230));
    assert!(text.contains("a delta would carry"), "{text}");
}

/// Issue 21 item 1: a re-release of an unchanged release (2.1.1 to extend
/// `expires`, same content as 2.1.0) built as a delta on 2.1.0 holds no
/// content entry but its own SBOM (issue 20): the manifest, its signature,
/// `sbom.cdx.json`, the end of the archive. It is a valid bundle: both programs verify it, GNU tar lists it,
/// and a site at 2.1.0 applies it from its store.
#[test]
fn a_re_release_delta_without_content_entries_verifies_everywhere() {
    let s = Site::start();
    let b210 = s.bundle("2.1.0", None);
    let d211 = s.delta_bundle_with("2.1.0", &b210, &|t| {
        t.replace(
            "version = \"2.1.0\"",
            "version = \"2.1.1\"\nexpires = \"2099-01-01T00:00:00Z\"",
        )
        .replace(
            "upgrade_from = \">=2.0.0, <2.1.0\"",
            "upgrade_from = \">=2.1.0, <2.1.1\"",
        )
    });
    let listing = ok(std::process::Command::new("tar")
        .arg("--zstd")
        .arg("-tf")
        .arg(&d211));
    let names: Vec<&str> = listing.lines().collect();
    // the head and the release's own SBOM (issue 20: every release has one)
    assert!(
        names.iter().all(|n| *n == "manifest.json"
            || n.starts_with("signatures/")
            || *n == "sbom.cdx.json"),
        "only the head and the SBOM: {listing}"
    );
    let i = json(&ok(updater().arg("inspect").arg(&d211).arg("--json")));
    assert_eq!(i["version"], "2.1.1", "{i}");
    assert_eq!(i["entries"], 1, "{i}");
    assert_eq!(i["delta"]["base"]["version"], "2.1.0", "{i}");
    let key = s.path().join("release.pub");
    let v = ok(updater().arg("verify").arg(&d211).arg("--trust").arg(&key));
    assert!(v.contains("a delta on stoa-platform 2.1.0"), "{v}");
    let v = ok(bundler()
        .arg("verify")
        .arg(&d211)
        .arg("--trust")
        .arg(&key)
        .arg("--quiet"));
    assert!(v.contains("OK") || v.contains("verified"), "{v}");
    ok(s.updater().arg("apply").arg(&b210));
    ok(s.updater().arg("apply").arg(&d211));
    assert_eq!(s.installed().as_deref(), Some("2.1.1"));
}

/// Issue 21 item 12: `diff --json` without the bundles' blobs (no
/// `--trust`) says the new/shared split is unknown (`null`), never 0; a
/// chart whose version changed is reported as changed, with its kind.
#[test]
fn diff_json_reports_unknown_bytes_as_null_and_a_new_chart_version_as_changed() {
    let s = Site::start();
    let b210 = s.bundle("2.1.0", None);
    let b230 = s.bundle("2.3.0", None);
    let d = json(&ok(bundler()
        .arg("diff")
        .arg(&b210)
        .arg(&b230)
        .arg("--json")));
    let changed = d["images"]["changed"].as_array().unwrap();
    assert!(!changed.is_empty(), "{d}");
    for c in changed {
        assert!(c["bytes_shared"].is_null(), "unknown, not 0: {c}");
        assert!(c["bytes_new"].is_null(), "unknown, not a guess: {c}");
    }
    let charts = d["charts"].as_array().unwrap();
    assert!(!charts.is_empty(), "{d}");
    for c in charts {
        assert_ne!(c["old_version"], c["new_version"], "{c}");
        assert_eq!(c["change"], "version", "{c}");
        assert_eq!(c["version_changed"], true, "{c}");
        assert_eq!(c["content_changed"], false, "{c}");
    }
    // with --trust the split is known
    let d = json(&ok(bundler()
        .arg("diff")
        .arg(&b210)
        .arg(&b230)
        .arg("--trust")
        .arg(s.path().join("release.pub"))
        .arg("--json")));
    for c in d["images"]["changed"].as_array().unwrap() {
        assert!(c["bytes_shared"].is_u64(), "{c}");
        assert!(c["bytes_new"].as_u64().unwrap() > 0, "{c}");
    }
}
