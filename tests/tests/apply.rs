//! Apply and rollback on a site with a real docker-registry, a real
//! PostgreSQL and the Helm stand-in: upgrade, rollback, policy, failures,
//! the lock, a corrupt state file.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use stoa_e2e::harness::{fails, json, ok, RegistryOptions};
use stoa_e2e::site::{migrations, Site};

#[test]
fn apply_upgrade_rollback_and_reapply_uploads_nothing() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);

    // plan changes nothing
    let plan = json(&ok(s.updater().arg("plan").arg(&b200).arg("--json")));
    assert_eq!(plan["version"], "2.0.0");
    assert_eq!(plan["migrations"][0]["pending"][0], "0001_init");
    assert!(s.tables().is_empty());
    assert!(s.registry_digest("site/stoa/api:2.0.0").is_none());

    // apply 2.0.0
    let r = json(&ok(s.updater().arg("apply").arg(&b200).arg("--json")));
    assert!(r["apply"]["push"]["bytes_uploaded"].as_u64().unwrap() > 0);
    assert_eq!(s.tables(), ["apis", "stoa_schema_migrations", "tenants"]);
    assert_eq!(s.migration_ids(), ["0001"]);
    for img in ["api", "gateway", "portal"] {
        let want =
            Site::bundle_image_digest(&b200, &format!("registry.gostoa.dev/stoa/{img}:2.0.0"));
        assert_eq!(
            s.registry_digest(&format!("site/stoa/{img}:2.0.0"))
                .as_deref(),
            Some(want.as_str()),
            "{img}: the registry holds the bundle's manifest byte for byte"
        );
    }
    assert_eq!(s.helm_revision("stoa-api"), Some(1));
    assert_eq!(s.helm_revision("stoa-gateway"), Some(1));
    let tool = s.state_dir.join("files/bin/stoactl");
    assert_eq!(
        fs::metadata(&tool).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // the cluster got every image from the site registry, pinned to the
    // digest the bundle verified (the updater's post-renderer, real Helm)
    let calls = fs::read_to_string(s.helm_state.join("calls.log")).unwrap();
    assert!(calls.contains("--post-renderer"), "{calls}");
    for (rel, img) in [("stoa-api", "api"), ("stoa-gateway", "gateway")] {
        let want =
            Site::bundle_image_digest(&b200, &format!("registry.gostoa.dev/stoa/{img}:2.0.0"));
        let images = Site::images_of(&s.helm_manifest(rel));
        assert_eq!(
            images,
            [format!("{}/site/stoa/{img}:2.0.0@{want}", s.registry.host)],
            "{rel}"
        );
    }
    assert!(calls.contains("--atomic"), "helm 3 flags: {calls}");

    // upgrade to 2.1.0
    ok(s.updater().arg("apply").arg(&b210));
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
    assert_eq!(
        s.tables(),
        ["api_keys", "apis", "stoa_schema_migrations", "tenants"]
    );
    assert_eq!(s.migration_ids(), ["0001", "0002"]);
    assert_eq!(s.helm_revision("stoa-api"), Some(2));
    let want = Site::bundle_image_digest(&b210, "registry.gostoa.dev/stoa/api:2.1.0");
    assert_eq!(
        s.registry_digest("site/stoa/api:2.1.0").as_deref(),
        Some(want.as_str())
    );
    let st = s.status_json();
    assert_eq!(st["releases"].as_array().unwrap().len(), 2);
    assert!(st["pending"].is_null());
    let h = json(&ok(s.updater().args(["history", "--json"])));
    assert_eq!(h["history"].as_array().unwrap().len(), 2);

    // roll back: down migration, Helm back to revision 1 (as a new revision)
    let r = json(&ok(s.updater().args(["rollback", "--json"])));
    assert_eq!(r["rollback"]["to"], "2.0.0");
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert_eq!(s.tables(), ["apis", "stoa_schema_migrations", "tenants"]);
    assert_eq!(s.migration_ids(), ["0001"]);
    assert_eq!(s.helm_revision("stoa-api"), Some(3));
    assert!(tool.exists());
    // images stay
    assert!(s.registry_digest("site/stoa/api:2.1.0").is_some());
    let h = json(&ok(s.updater().args(["history", "--json"])));
    assert_eq!(
        h["history"].as_array().unwrap().last().unwrap()["op"],
        "rollback"
    );

    // re-apply: every blob is in the registry already
    let r = json(&ok(s.updater().arg("apply").arg(&b210).arg("--json")));
    assert_eq!(r["apply"]["push"]["bytes_uploaded"], 0, "{r}");
    assert_eq!(r["apply"]["push"]["blobs_uploaded"], 0, "{r}");
    assert!(r["apply"]["push"]["blobs_skipped"].as_u64().unwrap() > 0);
    assert_eq!(s.migration_ids(), ["0001", "0002"]);
}

#[test]
fn helm_4_gets_its_own_flags() {
    let mut s = Site::start();
    s.env.push(("FAKE_HELM_VERSION".into(), "4".into()));
    let b = s.bundle("2.0.0", None);
    ok(s.updater().arg("apply").arg(&b));
    let calls = fs::read_to_string(s.helm_state.join("calls.log")).unwrap();
    assert!(calls.contains("--rollback-on-failure"), "{calls}");
    assert!(!calls.contains("--atomic"), "{calls}");
    assert_eq!(s.helm_revision("stoa-api"), Some(1));
}

#[test]
fn downgrade_and_upgrade_from_are_refused_override_is_logged() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    let b230 = s.bundle("2.3.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    // 2.3.0 upgrades only from >=2.1.0
    let e = fails(s.updater().arg("apply").arg(&b230), 5);
    assert!(e.contains("upgrades only from"), "{e}");
    let e = fails(s.updater().arg("plan").arg(&b230), 5);
    assert!(e.contains("upgrades only from"), "{e}");
    ok(s.updater().arg("apply").arg(&b210));
    // replay of the installed version and of an older one
    let e = fails(s.updater().arg("apply").arg(&b210), 5);
    assert!(e.contains("not newer"), "{e}");
    let e = fails(s.updater().arg("apply").arg(&b200), 5);
    assert!(e.contains("not newer"), "{e}");
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
    // explicit override, logged
    ok(s.updater().arg("apply").arg(&b200).arg("--allow-downgrade"));
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    let h = json(&ok(s.updater().args(["history", "--json"])));
    let last = h["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["allow_downgrade"], true, "{last}");
    let text = ok(s.updater().arg("history"));
    assert!(text.contains("--allow-downgrade"), "{text}");
}

#[test]
fn failing_migration_leaves_database_untouched_and_site_on_old_release() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    let before_tables = s.tables();
    let bad = migrations(
        &s.path().join("mig-bad"),
        2,
        &[(
            "0003_half.sql",
            "CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nSELECT 1/0;\n",
        )],
    );
    let b = s.bundle("2.1.0", Some(&bad));
    let e = fails(s.updater().arg("apply").arg(&b), 6);
    assert!(e.contains("migrate:stoa"), "{e}");
    assert!(e.contains("division by zero"), "{e}");
    assert!(e.contains("rolled back"), "{e}");
    assert_eq!(s.tables(), before_tables, "no half_done, no api_keys");
    assert_eq!(s.migration_ids(), ["0001"]);
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert!(s.status_json()["pending"].is_null());
    assert_eq!(s.helm_revision("stoa-api"), Some(1), "Helm untouched");
    let h = json(&ok(s.updater().args(["history", "--json"])));
    assert_eq!(
        h["history"].as_array().unwrap().last().unwrap()["outcome"],
        "failed, rolled back"
    );
}

#[test]
fn edited_applied_migration_is_refused() {
    let s = Site::start();
    ok(s.updater().arg("apply").arg(s.bundle("2.0.0", None)));
    let edited = migrations(&s.path().join("mig-edit"), 2, &[]);
    fs::write(
        edited.join("0001_init.sql"),
        "CREATE TABLE tenants (id int);\n",
    )
    .unwrap();
    let b = s.bundle("2.1.0", Some(&edited));
    // plan and apply refuse it alike: exit 5, before anything changes
    let e = fails(s.updater().arg("plan").arg(&b), 5);
    assert!(e.contains("edited") && e.contains("0001_init"), "{e}");
    let e = fails(s.updater().arg("apply").arg(&b), 5);
    assert!(e.contains("edited") && e.contains("0001_init"), "{e}");
    assert!(s.status_json()["pending"].is_null());
    assert_eq!(s.migration_ids(), ["0001"]);
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
}

#[test]
fn failing_helm_upgrade_is_rolled_back_or_left_for_inspection() {
    let mut s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    s.env
        .push(("FAKE_HELM_FAIL_RELEASE".into(), "stoa-gateway".into()));
    let e = fails(s.updater().arg("apply").arg(&b210), 6);
    assert!(e.contains("helm:stoa-gateway"), "{e}");
    assert!(e.contains("rolled back"), "{e}");
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert_eq!(s.migration_ids(), ["0001"], "0002 undone by its down step");
    // stoa-api was upgraded (2) then rolled back to 1 (3)
    assert_eq!(s.helm_revision("stoa-api"), Some(3));
    assert!(s.status_json()["pending"].is_null());

    // --no-auto-rollback leaves it for inspection; apply again resumes
    let e = fails(
        s.updater()
            .arg("apply")
            .arg(&b210)
            .arg("--no-auto-rollback"),
        6,
    );
    assert!(e.contains("left for inspection"), "{e}");
    let st = s.status_json();
    assert_eq!(
        st["pending"]["stopped_at_step"], "helm:stoa-gateway",
        "{st}"
    );
    assert_eq!(s.migration_ids(), ["0001", "0002"]);
    let text = s.status_text();
    assert!(text.contains("INTERRUPTED"), "{text}");
    s.env.clear();
    let r = json(&ok(s.updater().arg("apply").arg(&b210).arg("--json")));
    assert_eq!(r["apply"]["resumed"], true);
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
}

#[test]
fn second_apply_while_locked_fails_fast_with_busy() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    let state_before = fs::read(s.state_dir.join("state.json")).unwrap();
    // another process holds the site lock (flock(1) takes the same flock)
    let mut holder = Command::new("flock")
        .arg(s.state_dir.join("lock"))
        .args(["sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t = std::time::Instant::now();
    let e = fails(s.updater().arg("apply").arg(&b210), 4);
    assert!(e.contains("busy"), "{e}");
    let e = fails(s.updater().arg("rollback"), 4);
    assert!(e.contains("busy"), "{e}");
    assert!(t.elapsed().as_secs() < 10, "fails fast");
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        fs::read(s.state_dir.join("state.json")).unwrap(),
        state_before
    );
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
}

#[test]
fn corrupt_state_fails_closed() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    fs::write(
        s.state_dir.join("state.json"),
        b"{\"format\": 1, \"installed\": \"2.0",
    )
    .unwrap();
    let e = fails(s.updater().arg("apply").arg(&b210), 3);
    assert!(e.contains("state"), "{e}");
    fails(s.updater().arg("status"), 3);
    fails(s.updater().arg("rollback"), 3);
    // a deleted state file is not a fresh site: the journal remembers
    fs::remove_file(s.state_dir.join("state.json")).unwrap();
    let e = fails(s.updater().arg("apply").arg(&b200), 3);
    assert!(e.contains("journal"), "{e}");
    assert_eq!(s.migration_ids(), ["0001"]);
}

#[test]
fn missing_site_section_is_an_error_at_plan() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    let text = fs::read_to_string(&s.config).unwrap();
    let cut = text.find("[helm]").unwrap();
    fs::write(&s.config, &text[..cut]).unwrap();
    let e = fails(s.updater().arg("plan").arg(&b), 2);
    assert!(e.contains("[helm]"), "{e}");
    fs::write(&s.config, format!("{text}\nbogus = 1\n")).unwrap();
    let e = fails(s.updater().arg("plan").arg(&b), 2);
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn rollback_without_down_steps_needs_confirmed_snapshot_restore() {
    let s = Site::start();
    ok(s.updater().arg("apply").arg(s.bundle("2.0.0", None)));
    s.pg.psql("stoa", "INSERT INTO tenants (name) VALUES ('acme')");
    let nodown = migrations(
        &s.path().join("mig-nodown"),
        1,
        &[(
            "0002_api_keys.sql",
            "CREATE TABLE api_keys (id bigserial PRIMARY KEY);\n",
        )],
    );
    ok(s.updater()
        .arg("apply")
        .arg(s.bundle("2.1.0", Some(&nodown))));
    s.pg.psql(
        "stoa",
        "INSERT INTO tenants (name) VALUES ('written-after-snapshot')",
    );
    let e = fails(s.updater().arg("rollback"), 7);
    assert!(
        e.contains("--restore-snapshot") && e.contains("LOST"),
        "{e}"
    );
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
    assert!(s.status_json()["pending"].is_null(), "nothing started");
    ok(s.updater().args(["rollback", "--restore-snapshot"]));
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert_eq!(s.tables(), ["apis", "stoa_schema_migrations", "tenants"]);
    assert_eq!(s.migration_ids(), ["0001"]);
    assert_eq!(
        s.pg.psql("stoa", "SELECT string_agg(name, ',') FROM tenants"),
        "acme"
    );
}

#[test]
fn push_with_tls_and_basic_auth() {
    let s = Site::start_with(RegistryOptions {
        tls: true,
        auth: Some(("robot".into(), "s3cret".into())),
    });
    let b = s.bundle("2.0.0", None);
    ok(s.updater().arg("apply").arg(&b));
    let want = Site::bundle_image_digest(&b, "registry.gostoa.dev/stoa/gateway:2.0.0");
    assert_eq!(
        s.registry_digest("site/stoa/gateway:2.0.0").as_deref(),
        Some(want.as_str())
    );
}

#[test]
fn chunked_upload_and_prune_beyond_keep_releases() {
    let s = Site::start();
    // tiny chunks: every blob goes up in several PATCH requests
    let text = fs::read_to_string(&s.config).unwrap();
    let text = text
        .replace("keep_releases = 3", "keep_releases = 2")
        .replace(
            "prefix = \"site\"\n",
            "prefix = \"site\"\nchunk_size = 200\n",
        );
    fs::write(&s.config, text).unwrap();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    let b230 = s.bundle("2.3.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    for img in ["api", "gateway", "portal"] {
        let want =
            Site::bundle_image_digest(&b200, &format!("registry.gostoa.dev/stoa/{img}:2.0.0"));
        assert_eq!(
            s.registry_digest(&format!("site/stoa/{img}:2.0.0"))
                .as_deref(),
            Some(want.as_str())
        );
    }
    ok(s.updater().arg("apply").arg(&b210));
    let r = json(&ok(s.updater().arg("apply").arg(&b230).arg("--json")));
    assert_eq!(r["apply"]["pruned"][0], "2.0.0", "{r}");
    let st = s.status_json();
    let kept: Vec<_> = st["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kept, ["2.1.0", "2.3.0"]);
    assert!(!s.state_dir.join("releases/2.0.0").exists());
    let old = Site::bundle_image_digest(&b200, "registry.gostoa.dev/stoa/api:2.0.0");
    assert!(!s
        .state_dir
        .join("store/sha256")
        .join(old.trim_start_matches("sha256:"))
        .exists());
    let e = fails(s.updater().args(["rollback", "--to", "2.0.0"]), 5);
    assert!(e.contains("not a retained release"), "{e}");
    ok(s.updater().args(["rollback", "--to", "2.1.0"]));
    assert_eq!(s.migration_ids(), ["0001", "0002"]);
}

/// Real Helm leaves a release `pending-upgrade` when it is killed during
/// `upgrade --wait` (the stand-in does the same): both the revert and the
/// resume recover it, from the journal's word that the step was ours.
#[test]
fn real_sigkill_during_helm_upgrade_then_rollback_and_resume() {
    let mut s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    s.env.push(("FAKE_HELM_SLEEP_MS".into(), "1500".into()));
    for revert in [true, false] {
        let mut child = s
            .updater()
            .arg("apply")
            .arg(&b210)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let marker = "upgrade --install stoa-api";
        let before = s.helm_calls(marker);
        s.wait_for_helm_call(marker, before);
        // Helm has recorded the new revision, pending while it waits
        let t = std::time::Instant::now();
        while s.helm_status("stoa-api")["info"]["status"] != "pending-upgrade" {
            assert!(t.elapsed().as_secs() < 60, "no pending revision");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // helm dies with the updater (setpriv --pdeathsig): past its sleep,
        // no orphaned upgrade has landed; the release stays pending-upgrade
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let hs = s.helm_status("stoa-api");
        assert_eq!(hs["info"]["status"], "pending-upgrade", "{hs}");
        let pending_rev = hs["version"].as_u64().unwrap();
        let st = s.status_json();
        assert_eq!(st["pending"]["stopped_at_step"], "helm:stoa-api", "{st}");
        assert_eq!(st["pending"]["step_finished"], false, "{st}");
        assert_eq!(s.migration_ids(), ["0001", "0002"]);
        // plan names the pending release as ours, to be recovered
        let p = json(&ok(s.updater().arg("plan").arg(&b210).arg("--json")));
        let rel = p["preflight"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "releases")
            .unwrap()
            .clone();
        assert_eq!(rel["outcome"], "ok", "{p}");
        assert!(
            rel["detail"]
                .as_str()
                .unwrap()
                .contains("recovered on resume"),
            "{rel}"
        );
        if revert {
            ok(s.updater().arg("rollback"));
            assert_eq!(s.installed().as_deref(), Some("2.0.0"));
            assert_eq!(s.migration_ids(), ["0001"]);
            let h = s.helm_history("stoa-api");
            let last = h.last().unwrap();
            assert_eq!(
                (last.1.as_str(), last.2.as_str()),
                ("deployed", "Rollback to 1"),
                "{h:?}"
            );
        } else {
            let r = json(&ok(s.updater().arg("apply").arg(&b210).arg("--json")));
            assert_eq!(r["apply"]["resumed"], true);
            assert_eq!(s.installed().as_deref(), Some("2.1.0"));
            let h = s.helm_history("stoa-api");
            // the pending revision, the recovery's rollback, the upgrade
            let tail: Vec<_> = h[h.len() - 3..]
                .iter()
                .map(|r| (r.0, r.1.as_str(), r.2.as_str()))
                .collect();
            assert_eq!(tail[0].0, pending_rev, "{h:?}");
            assert!(tail[1].2.starts_with("Rollback to "), "{h:?}");
            assert_eq!(
                (tail[2].1, tail[2].2),
                ("deployed", "Upgrade complete"),
                "{h:?}"
            );
            let journal = fs::read_to_string(s.state_dir.join("journal.jsonl")).unwrap();
            assert!(journal.contains("\"recovered\""), "{journal}");
        }
    }
}

#[test]
fn bundle_changed_on_the_medium_after_staging_has_no_effect() {
    let mut s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let medium = s.path().join("usb.tar.zst");
    fs::copy(&b200, &medium).unwrap();
    s.env.push(("FAKE_HELM_SLEEP_MS".into(), "1000".into()));
    let child = s
        .updater()
        .arg("apply")
        .arg(&medium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = s.helm_state.join("calls.log");
    let t = std::time::Instant::now();
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("upgrade --install")
    {
        assert!(t.elapsed().as_secs() < 60, "apply never reached helm");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // the medium is rewritten with garbage while apply runs
    fs::write(
        &medium,
        vec![0x5a; fs::metadata(&b200).unwrap().len() as usize],
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    let tool = fs::read(s.state_dir.join("files/bin/stoactl")).unwrap();
    let want = fs::read(stoa_e2e::site::manifests_dir().join("tools/stoactl")).unwrap();
    assert_eq!(tool, want);
}

#[test]
fn rollback_to_an_older_retained_release_undoes_every_later_one() {
    let s = Site::start();
    ok(s.updater().arg("apply").arg(s.bundle("2.0.0", None)));
    ok(s.updater().arg("apply").arg(s.bundle("2.1.0", None)));
    ok(s.updater().arg("apply").arg(s.bundle("2.3.0", None)));
    assert_eq!(s.migration_ids(), ["0001", "0002", "0003"]);
    assert_eq!(s.helm_revision("stoa-api"), Some(3));
    let r = json(&ok(s
        .updater()
        .args(["rollback", "--to", "2.0.0", "--json"])));
    assert_eq!(
        r["rollback"]["migrations_undone"]["stoa"],
        serde_json::json!(["0003", "0002"]),
        "{r}"
    );
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert_eq!(s.migration_ids(), ["0001"]);
    assert_eq!(s.tables(), ["apis", "stoa_schema_migrations", "tenants"]);
    // back to revision 1's content, as revision 4
    assert_eq!(s.helm_revision("stoa-api"), Some(4));
    let calls = fs::read_to_string(s.helm_state.join("calls.log")).unwrap();
    assert!(calls.contains("rollback stoa-api 1 "), "{calls}");
    let e = fails(s.updater().arg("rollback"), 5);
    assert!(e.contains("nothing to roll back"), "{e}");
}

/// Issue 21 item 21: `remove` takes the site to nothing installed the way
/// rollback goes back: needs `--yes` (exit 7, nothing changed), shows its
/// plan with `--dry-run`, undoes newest first (verified down steps of every
/// migration, Helm releases uninstalled, files removed; images stay),
/// journaled as a `remove` operation that a kill leaves resumable and that
/// `rollback` will not take over.
#[test]
fn remove_takes_the_site_to_nothing_installed_and_resumes_after_a_kill() {
    let s = Site::start();
    let b20 = s.bundle("2.0.0", None);
    ok(s.updater().arg("apply").arg(&b20));
    ok(s.updater().arg("apply").arg(s.bundle("2.1.0", None)));
    assert_eq!(s.migration_ids(), ["0001", "0002"]);
    let stoactl = s.state_dir.join("files/bin/stoactl");
    assert!(stoactl.exists());
    let api = s.registry_digest("site/stoa/api:2.1.0");
    assert!(api.is_some());

    // without --yes: refused, nothing changed
    let e = fails(s.updater().arg("remove"), 7);
    assert!(e.contains("remove --yes"), "{e}");
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
    // the dry run: what it would undo
    let d = json(&ok(s.updater().args(["remove", "--dry-run", "--json"])));
    let p = &d["remove"];
    assert_eq!(p["to"], serde_json::Value::Null, "{d}");
    assert_eq!(
        p["releases_undone"],
        serde_json::json!(["2.1.0", "2.0.0"]),
        "{d}"
    );
    assert_eq!(
        p["down_steps"]["stoa"],
        serde_json::json!(["0002", "0001"]),
        "{d}"
    );
    assert_eq!(
        p["files_removed"],
        serde_json::json!(["bin/stoactl"]),
        "{d}"
    );
    assert!(
        p["helm"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["revision"].is_null()),
        "{d}"
    );
    let text = ok(s.updater().args(["remove", "--dry-run"]));
    assert!(
        text.contains("helm stoa-system/stoa-api: uninstall"),
        "{text}"
    );
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));

    // killed after the first Helm uninstall: a pending remove
    s.crash_after(
        &["remove".as_ref(), "--yes".as_ref()],
        "rollback:helm:stoa-api",
    );
    let st = s.status_text();
    assert!(
        st.contains("INTERRUPTED: Remove from 2.1.0 to nothing installed"),
        "{st}"
    );
    assert!(st.contains("remove --yes"), "{st}");
    // rollback does not take it over; apply neither
    let e = fails(s.updater().arg("rollback"), 5);
    assert!(e.contains("an interrupted remove is pending"), "{e}");
    // the resume finishes it
    let out = ok(s.updater().args(["remove", "--yes"]));
    assert!(out.contains("removed 2.1.0; nothing is installed"), "{out}");
    assert!(out.contains("images stay in the registry"), "{out}");
    assert_eq!(s.installed(), None);
    assert_eq!(s.migration_ids(), Vec::<String>::new());
    assert_eq!(s.tables(), ["stoa_schema_migrations"]);
    assert!(
        s.helm_status("stoa-api").is_null(),
        "{}",
        s.helm_status("stoa-api")
    );
    assert!(!stoactl.exists());
    assert_eq!(s.registry_digest("site/stoa/api:2.1.0"), api, "images stay");
    let journal = fs::read_to_string(s.state_dir.join("journal.jsonl")).unwrap();
    assert!(journal.contains("\"op\":\"remove\""), "{journal}");
    let h = ok(s.updater().args(["history", "--json"]));
    assert!(h.contains("\"outcome\":\"removed\""), "{h}");
    // nothing left to remove; the site takes a first install again
    let e = fails(s.updater().args(["remove", "--yes"]), 5);
    assert!(e.contains("nothing is installed"), "{e}");
    ok(s.updater().arg("apply").arg(&b20));
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
}
