//! Preflight (issue 9, item 7) and what real Helm showed (item 9): `plan`
//! shows every named check and exits 9 when one failed; `apply` stops
//! before any change with exit 9. Each check has its negative test with the
//! site part that makes it fail (a missing kubeconfig, an old API server, an
//! unsupported Helm, a registry that refuses the credentials, a database
//! role without CREATE, too little disk, a release left pending by someone
//! else). Also: Helm gets `--kubeconfig` (never `KUBECONFIG`), no second
//! rollback after Helm's atomic one, `--history-max`, a failed rollback's
//! history line, Helm's error text, and the version check and flag choice
//! against REAL Helm 3.18 and 4.2.3.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::{Command, Stdio};

use stoa_e2e::harness::{self, fails, json, ok, KubeApi, RegistryOptions};
use stoa_e2e::site::Site;

/// `plan --json` whatever its exit code (0 or 9): the document.
fn plan_json(s: &Site, bundle: &std::path::Path) -> (i32, serde_json::Value) {
    let out = harness::run(s.updater().arg("plan").arg(bundle).arg("--json"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "one JSON document: {text}");
    (out.status.code().unwrap_or(-1), json(&text))
}

fn check<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["preflight"]
        .as_array()
        .unwrap_or_else(|| panic!("no preflight in {doc}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {doc}"))
}

/// Nothing on site changed: no image pushed, no migration, no Helm
/// upgrade, nothing installed or pending.
#[track_caller]
fn nothing_changed(s: &Site, installed: Option<&str>, migrations: &[&str]) {
    assert_eq!(s.installed().as_deref(), installed);
    assert!(s.status_json()["pending"].is_null());
    assert_eq!(s.migration_ids(), migrations);
    if installed.is_none() {
        assert!(s.registry_digest("site/stoa/api:2.0.0").is_none());
        assert_eq!(s.helm_calls("upgrade --install"), 0);
    }
}

#[test]
fn plan_shows_every_preflight_check_in_text_and_json() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    let (code, doc) = plan_json(&s, &b);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["ok"], true);
    let names: Vec<&str> = doc["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "kubeconfig",
            "helm",
            "kubernetes",
            "kube-version",
            "releases",
            "registry",
            "database:stoa",
            "disk"
        ]
    );
    for c in doc["preflight"].as_array().unwrap() {
        assert_eq!(c["outcome"], "ok", "{c}");
    }
    assert!(check(&doc, "kubernetes")["detail"]
        .as_str()
        .unwrap()
        .contains("v1.30.4, required >=1.28"));
    assert!(check(&doc, "helm")["detail"]
        .as_str()
        .unwrap()
        .contains("v3.18.0+gcc58e3f (Helm 3"));
    // the registry check leaves nothing behind: no repository, no blob
    let catalog = Command::new("curl")
        .args(["-sf"])
        .arg(format!("http://{}/v2/_catalog", s.registry.host))
        .output()
        .unwrap();
    let cat = json(&String::from_utf8_lossy(&catalog.stdout));
    assert_eq!(cat["repositories"], serde_json::json!([]), "{cat}");
    let text = ok(s.updater().arg("plan").arg(&b));
    let pf = &text[text.find("preflight:").expect("preflight block")..];
    for n in [
        "kubeconfig",
        "helm",
        "kubernetes",
        "kube-version",
        "releases",
        "registry",
        "database:stoa",
        "disk",
    ] {
        assert!(
            pf.lines()
                .any(|l| l.trim_start().starts_with("ok") && l.contains(n)),
            "{n}: {pf}"
        );
    }
    // apply prints them too, and its JSON carries them typed
    let r = json(&ok(s.updater().arg("apply").arg(&b).arg("--json")));
    assert_eq!(
        r["apply"]["preflight"]["checks"].as_array().unwrap().len(),
        8,
        "{r}"
    );
}

/// Issue 9: with `[helm] kubeconfig` naming a missing file, plan exited 0
/// and apply pushed and migrated before Helm failed against localhost:8080.
/// Now: plan shows every check and exits 9 naming the file; apply changes
/// nothing; and `KUBECONFIG` from the environment is never used (Helm gets
/// `--kubeconfig`).
#[test]
fn missing_kubeconfig_fails_preflight_naming_the_file_and_apply_changes_nothing() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    let missing = s.path().join("no-such-kubeconfig");
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace(
            &format!("kubeconfig = \"{}\"", s.kube.kubeconfig.display()),
            &format!("kubeconfig = \"{}\"", missing.display()),
        ),
    )
    .unwrap();
    // a valid KUBECONFIG in the environment must not rescue (or redirect) it
    let (code, doc) = {
        let out = harness::run(
            s.updater()
                .env("KUBECONFIG", &s.kube.kubeconfig)
                .arg("plan")
                .arg(&b)
                .arg("--json"),
        );
        (
            out.status.code().unwrap(),
            json(&String::from_utf8_lossy(&out.stdout)),
        )
    };
    assert_eq!(code, 9, "{doc}");
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["error"]["kind"], "preflight-failed");
    assert_eq!(doc["error"]["exit_code"], 9);
    let kc = check(&doc, "kubeconfig");
    assert_eq!(kc["outcome"], "failed");
    assert!(
        kc["detail"].as_str().unwrap().contains(&format!(
            "[helm] kubeconfig {}: no such file",
            missing.display()
        )),
        "{kc}"
    );
    // everything else is still shown
    assert_eq!(check(&doc, "registry")["outcome"], "ok");
    assert_eq!(check(&doc, "database:stoa")["outcome"], "ok");
    assert!(doc["images"].as_array().is_some_and(|a| !a.is_empty()));
    let e = fails(s.updater().arg("plan").arg(&b), 9);
    assert!(
        e.contains("preflight failed") && e.contains(&missing.display().to_string()),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");

    let e = fails(
        s.updater()
            .env("KUBECONFIG", &s.kube.kubeconfig)
            .arg("apply")
            .arg(&b),
        9,
    );
    assert!(e.contains(&missing.display().to_string()), "{e}");
    nothing_changed(&s, None, &[]);
    // every Helm call had --kubeconfig (the stand-in refuses a call without,
    // as Helm falls back to localhost:8080)
    let calls = fs::read_to_string(s.helm_state.join("calls.log")).unwrap_or_default();
    for l in calls.lines().filter(|l| !l.starts_with("helm version")) {
        assert!(l.contains("--kubeconfig"), "{l}");
    }
}

#[test]
fn kubernetes_outside_the_required_range_fails_preflight() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    let old = KubeApi::start(&s.path().join("old-kube"), "v1.27.9+k3s1");
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace(
            &s.kube.kubeconfig.display().to_string(),
            &old.kubeconfig.display().to_string(),
        ),
    )
    .unwrap();
    let (code, doc) = plan_json(&s, &b);
    assert_eq!(code, 9);
    let k = check(&doc, "kubernetes");
    assert_eq!(k["outcome"], "failed");
    assert!(
        k["detail"]
            .as_str()
            .unwrap()
            .contains("server v1.27.9+k3s1 is outside the required range >=1.28"),
        "{k}"
    );
    fails(s.updater().arg("apply").arg(&b), 9);
    nothing_changed(&s, None, &[]);

    // the range is the site's: [preflight] kubernetes
    fs::write(
        &s.config,
        format!("{text}\n[preflight]\nkubernetes = \">=1.31\"\n"),
    )
    .unwrap();
    let (code, doc) = plan_json(&s, &b);
    assert_eq!(code, 9);
    assert!(check(&doc, "kubernetes")["detail"]
        .as_str()
        .unwrap()
        .contains("v1.30.4 is outside the required range >=1.31"));
    fs::write(
        &s.config,
        format!("{text}\n[preflight]\nkubernetes = \">=1.29, <1.31\"\n"),
    )
    .unwrap();
    assert_eq!(plan_json(&s, &b).0, 0);
}

/// Issue 21 item 17: a chart whose Chart.yaml `kubeVersion` the server
/// (the stand-in, v1.30.4, within the site's `>=1.28`) does not meet fails
/// the `kube-version` check naming the chart and its constraint (a chart
/// that supports only up to 1.29): plan exits
/// 9 after its report, apply exits 9 before any change. A constraint the
/// server meets passes.
#[test]
fn a_chart_kube_version_the_server_does_not_meet_fails_preflight_naming_the_chart() {
    let s = Site::start();
    let m = stoa_e2e::site::manifests_dir();
    let chart = s.path().join("kube-chart/stoa-api");
    harness::copy_dir(&m.join("charts-2.0.0/stoa-api"), &chart);
    let orig = m.join("charts-2.0.0/stoa-api").display().to_string();
    let cy = fs::read_to_string(chart.join("Chart.yaml")).unwrap();
    let bundle = |constraint: &str| {
        fs::write(
            chart.join("Chart.yaml"),
            format!("{cy}kubeVersion: \"{constraint}\"\n"),
        )
        .unwrap();
        let to = chart.display().to_string();
        s.bundle_with("2.0.0", None, &|t| t.replace(&orig, &to))
    };
    // built (and rendered) at the platform minimum 1.28, which it meets
    let b = bundle(">=1.28.0-0 <1.30.0-0");
    let (code, doc) = plan_json(&s, &b);
    assert_eq!(code, 9, "{doc}");
    assert_eq!(check(&doc, "kubernetes")["outcome"], "ok", "{doc}");
    let k = check(&doc, "kube-version");
    assert_eq!(k["outcome"], "failed", "{doc}");
    let detail = k["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("chart stoa-api 2.0.0 (release ")
            && detail
                .contains("/stoa-api) kubeVersion \">=1.28.0-0 <1.30.0-0\": the server is 1.30.4"),
        "{detail}"
    );
    let e = fails(s.updater().arg("apply").arg(&b), 9);
    assert!(e.contains("kube-version: chart stoa-api 2.0.0"), "{e}");
    nothing_changed(&s, None, &[]);

    let b = bundle(">=1.28.0-0");
    let (code, doc) = plan_json(&s, &b);
    assert_eq!(code, 0, "{doc}");
    let k = check(&doc, "kube-version");
    assert_eq!(k["outcome"], "ok", "{doc}");
    assert!(
        k["detail"]
            .as_str()
            .unwrap()
            .contains("kubeVersion \">=1.28.0-0\""),
        "{k}"
    );
}

/// Bad input: a Helm version outside the supported range is one clear
/// line, no change, no panic.
#[test]
fn helm_version_outside_the_supported_range_is_one_clear_line() {
    let mut s = Site::start();
    let b = s.bundle("2.0.0", None);
    for v in ["v2.17.0+ga690bad", "v5.0.0+g0000000", "v3.7.2+g663a896"] {
        s.env = vec![("FAKE_HELM_VERSION".into(), v.into())];
        let (code, doc) = plan_json(&s, &b);
        assert_eq!(code, 9, "{doc}");
        let h = check(&doc, "helm");
        assert_eq!(h["outcome"], "failed");
        let d = h["detail"].as_str().unwrap();
        assert!(
            d.contains(&format!(
                "helm {v} is not supported (supported: 3.8 or later 3.x, or 4.x)"
            )),
            "{d}"
        );
        let e = fails(s.updater().arg("apply").arg(&b), 9);
        let errors: Vec<&str> = e.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(errors.len(), 1, "{e}");
        assert!(errors[0].contains(v) && !e.contains("panicked"), "{e}");
        nothing_changed(&s, None, &[]);
    }
}

#[test]
fn registry_refusing_the_credentials_fails_preflight() {
    let s = Site::start_with(RegistryOptions {
        tls: false,
        auth: Some(("robot".into(), "right-password".into())),
    });
    let b = s.bundle("2.0.0", None);
    assert_eq!(plan_json(&s, &b).0, 0);
    fs::write(s.path().join("registry.pass"), "wrong-password\n").unwrap();
    let (code, doc) = plan_json(&s, &b);
    assert_eq!(code, 9);
    let r = check(&doc, "registry");
    assert_eq!(r["outcome"], "failed", "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("start an upload to site/"),
        "{r}"
    );
    assert!(!r["detail"].as_str().unwrap().contains("wrong-password"));
    fails(s.updater().arg("apply").arg(&b), 9);
    nothing_changed(&s, None, &[]);

    // unreachable: nothing listens there
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace(
            &s.registry.host,
            &format!("127.0.0.1:{}", harness::free_port()),
        ),
    )
    .unwrap();
    let (code, doc) = plan_json(&s, &b);
    assert_eq!(code, 9);
    assert_eq!(check(&doc, "registry")["outcome"], "failed");
}

#[test]
fn database_role_without_create_fails_preflight() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    s.pg.psql(
        "stoa",
        "CREATE ROLE stoa_weak LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    );
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace("postgres://postgres@", "postgres://stoa_weak@"),
    )
    .unwrap();
    let (code, doc) = plan_json(&s, &b);
    assert_eq!(code, 9);
    let d = check(&doc, "database:stoa");
    assert_eq!(d["outcome"], "failed");
    assert!(
        d["detail"].as_str().unwrap().contains(
            "connected as stoa_weak, which lacks CREATE on the database and CREATE on schema \"public\""
        ),
        "{d}"
    );
    fails(s.updater().arg("apply").arg(&b), 9);
    nothing_changed(&s, None, &[]);
    // granted, it passes
    s.pg.psql(
        "stoa",
        "GRANT CREATE ON DATABASE stoa TO stoa_weak; GRANT CREATE ON SCHEMA public TO stoa_weak",
    );
    assert_eq!(
        check(&plan_json(&s, &b).1, "database:stoa")["outcome"],
        "ok"
    );
}

#[test]
fn too_little_disk_for_staging_fails_preflight() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        format!("{text}\n[preflight]\nkeep_free_bytes = 1152921504606846976\n"),
    )
    .unwrap();
    let (code, doc) = plan_json(&s, &b);
    assert_eq!(code, 9);
    let d = check(&doc, "disk");
    assert_eq!(d["outcome"], "failed");
    assert!(
        d["detail"].as_str().unwrap().contains("staging needs"),
        "{d}"
    );
    fails(s.updater().arg("apply").arg(&b), 9);
    nothing_changed(&s, None, &[]);
    assert!(
        !s.state_dir.join("store").exists()
            || fs::read_dir(s.state_dir.join("store/sha256"))
                .map(|d| d.count())
                .unwrap_or(0)
                == 0
    );
}

/// A release left pending by a Helm run we did not start (someone's
/// killed `helm upgrade`): refused before any change, untouched.
#[test]
fn release_left_pending_by_someone_else_is_refused_before_any_change() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    let chart = fs::read_dir(s.state_dir.join("releases/2.0.0/charts"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().contains("api"))
        .unwrap();
    let mut other = Command::new(harness::bin_dir().join("fake-helm"))
        .env("FAKE_HELM_STATE", &s.helm_state)
        .env("FAKE_HELM_SLEEP_MS", "30000")
        .args(["upgrade", "--install", "stoa-api"])
        .arg(&chart)
        .args(["-n", "stoa-system", "--wait", "--kubeconfig"])
        .arg(&s.kube.kubeconfig)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while s.helm_status("stoa-api")["info"]["status"] != "pending-upgrade" {
        assert!(t.elapsed().as_secs() < 20);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    other.kill().unwrap();
    other.wait().unwrap();
    let (code, doc) = plan_json(&s, &b210);
    assert_eq!(code, 9);
    let r = check(&doc, "releases");
    assert_eq!(r["outcome"], "failed");
    assert!(
        r["detail"].as_str().unwrap().contains(
            "release stoa-system/stoa-api is pending-upgrade (revision 2), left by a Helm operation this updater did not start"
        ),
        "{r}"
    );
    let e = fails(s.updater().arg("apply").arg(&b210), 9);
    assert!(e.contains("did not start"), "{e}");
    nothing_changed(&s, Some("2.0.0"), &["0001"]);
    assert_eq!(
        s.helm_status("stoa-api")["info"]["status"],
        "pending-upgrade"
    );
    assert_eq!(s.helm_history("stoa-api").len(), 2, "untouched");
}

/// Issue 9: after Helm's own atomic rollback the updater rolled back again
/// (two identical "Rollback to N" revisions). Now once; and every upgrade
/// and rollback passes `--history-max` (10 per retained release).
#[test]
fn no_second_rollback_after_helms_atomic_rollback() {
    let mut s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    s.env
        .push(("FAKE_HELM_FAIL_RELEASE".into(), "stoa-gateway".into()));
    let e = fails(s.updater().arg("apply").arg(&b210), 6);
    assert!(e.contains("rolled back"), "{e}");
    let h = s.helm_history("stoa-gateway");
    let rollbacks = h.iter().filter(|r| r.2.starts_with("Rollback to")).count();
    assert_eq!(rollbacks, 1, "{h:?}");
    assert_eq!(
        h.len(),
        3,
        "install, failed upgrade, Helm's rollback: {h:?}"
    );
    // stoa-api's upgrade succeeded: the updater rolls it back (once)
    let h = s.helm_history("stoa-api");
    assert_eq!(h.last().unwrap().2, "Rollback to 1", "{h:?}");
    assert_eq!(h.len(), 3, "{h:?}");
    let calls = fs::read_to_string(s.helm_state.join("calls.log")).unwrap();
    for l in calls
        .lines()
        .filter(|l| l.starts_with("helm upgrade") || l.starts_with("helm rollback"))
    {
        assert!(l.contains("--history-max 30"), "{l}");
    }
}

/// Issue 9: a failed `rollback` wrote no history line.
#[test]
fn failed_rollback_writes_a_history_line() {
    let mut s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    ok(s.updater().arg("apply").arg(&b210));
    s.env
        .push(("FAKE_HELM_FAIL_ROLLBACK".into(), "stoa-api".into()));
    let e = fails(s.updater().arg("rollback"), 6);
    assert!(e.contains("rollback failed"), "{e}");
    let h = json(&ok(s.updater().args(["history", "--json"])));
    let last = h["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["op"], "rollback", "{h}");
    assert_eq!(last["outcome"], "failed", "{last}");
    assert_eq!(last["from"], "2.1.0", "{last}");
    assert_eq!(last["to"], "2.0.0", "{last}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("context deadline exceeded"),
        "{last}"
    );
    // Helm 3 names nothing: the workloads of the failed rollback revision
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains(": Deployment/stoa-system/stoa-api)"),
        "{last}"
    );
    let text = ok(s.updater().arg("history"));
    assert!(text.lines().last().unwrap().contains("failed"), "{text}");
}

/// Issue 9: Helm 4's `level=WARN` line doubled the cause in the message and
/// history; Helm 3 said only "context deadline exceeded". Now the cause
/// once, and for Helm 3 the workloads Helm waited for.
#[test]
fn helm_error_text_names_the_cause_once_and_the_unready_workloads() {
    let mut s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    s.env = vec![
        ("FAKE_HELM_FAIL_RELEASE".into(), "stoa-api".into()),
        ("FAKE_HELM_VERSION".into(), "4".into()),
    ];
    let e = fails(s.updater().arg("apply").arg(&b210), 6);
    assert!(!e.contains("level=WARN"), "{e}");
    // the stand-in names the Deployment of the chart it rendered with real Helm
    assert_eq!(
        e.matches("Deployment/stoa-system/stoa-api not ready")
            .count(),
        1,
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let hist = fs::read_to_string(s.state_dir.join("history.jsonl")).unwrap();
    let last = hist.lines().last().unwrap();
    assert_eq!(
        last.matches("Deployment/stoa-system/stoa-api not ready")
            .count(),
        1,
        "{last}"
    );

    s.env = vec![("FAKE_HELM_FAIL_RELEASE".into(), "stoa-api".into())];
    let e = fails(s.updater().arg("apply").arg(&b210), 6);
    assert!(
        e.contains("context deadline exceeded (not ready within 60s, revision ")
            && e.contains(": Deployment/stoa-system/stoa-api)"),
        "{e}"
    );
}

/// Version parsing and the version check against REAL Helm 3.18.0 and
/// 4.2.3 `version --short` output.
#[test]
fn real_helm_versions_pass_the_helm_check() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    let text = fs::read_to_string(&s.config).unwrap();
    for (major, want) in [
        (3u8, "v3.18.0+gcc58e3f (Helm 3"),
        (4, "v4.2.3+g43e8b7f (Helm 4"),
    ] {
        let helm = harness::real_helm(major);
        fs::write(
            &s.config,
            text.replace(
                &harness::bin_dir().join("fake-helm").display().to_string(),
                &helm.display().to_string(),
            ),
        )
        .unwrap();
        let (_, doc) = plan_json(&s, &b);
        let h = check(&doc, "helm");
        assert_eq!(h["outcome"], "ok", "{h}");
        assert!(h["detail"].as_str().unwrap().contains(want), "{h}");
    }
}

/// Flag choice against REAL Helm: the updater's upgrade gets past flag
/// parsing to the (stand-in) API server with Helm 3 and 4 alike — a flag the version does
/// not know would fail first with "unknown flag" (Helm 3 rejects
/// `--rollback-on-failure`); a logging wrapper shows the flags and that
/// every call has `--kubeconfig`.
#[test]
fn real_helm_takes_the_flags_chosen_for_its_version() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    let text = fs::read_to_string(&s.config).unwrap();
    for (major, flag, not) in [
        (3u8, "--atomic", "--rollback-on-failure"),
        (4, "--rollback-on-failure", "--atomic"),
    ] {
        let log = s.path().join(format!("helm{major}.log"));
        let wrapper = s.path().join(format!("helm{major}-logged"));
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
                log.display(),
                harness::real_helm(major).display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            &s.config,
            text.replace(
                &harness::bin_dir().join("fake-helm").display().to_string(),
                &wrapper.display().to_string(),
            ),
        )
        .unwrap();
        let (_, doc) = plan_json(&s, &b);
        assert_eq!(check(&doc, "releases")["outcome"], "ok", "{doc}");
        let e = fails(s.updater().arg("apply").arg(&b), 6);
        assert!(
            // Helm parsed the flags and went on to the (stand-in) API
            // server, which has no OpenAPI document to validate with
            e.contains("helm:stoa-api") && e.contains("failed to download openapi"),
            "{e}"
        );
        assert!(
            !e.contains("unknown flag") && !e.contains("memcache.go"),
            "{e}"
        );
        assert_eq!(s.installed(), None);
        let calls = fs::read_to_string(&log).unwrap();
        let upgrade = calls.lines().find(|l| l.starts_with("upgrade")).unwrap();
        assert!(
            upgrade.contains(flag) && !upgrade.contains(not),
            "{upgrade}"
        );
        for l in calls.lines().filter(|l| !l.starts_with("version")) {
            assert!(
                l.contains(&format!("--kubeconfig {}", s.kube.kubeconfig.display())),
                "{l}"
            );
        }
    }
}

/// Issue 9: the namespace `--create-namespace` made for a first install was
/// left behind by that install's undo. Now it goes (deleted through
/// kubectl), but only when the updater's install created it: one that
/// existed before stays.
#[test]
fn undo_of_a_first_install_deletes_only_the_namespace_it_created() {
    let mut s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let ns = s.helm_state.join("namespaces/stoa-system");
    s.env
        .push(("FAKE_HELM_FAIL_RELEASE".into(), "stoa-gateway".into()));
    let e = fails(s.updater().arg("apply").arg(&b200), 6);
    assert!(e.contains("rolled back"), "{e}");
    assert!(
        !ns.exists(),
        "the namespace the first install created is gone"
    );
    assert!(s.helm_status("stoa-api").is_null());
    assert_eq!(s.installed(), None);
    let calls = fs::read_to_string(s.helm_state.join("calls.log")).unwrap();
    assert!(calls.contains("--create-namespace"), "{calls}");

    // the namespace existed before the install: kept
    fs::create_dir_all(ns.parent().unwrap()).unwrap();
    fs::write(&ns, "").unwrap();
    fails(s.updater().arg("apply").arg(&b200), 6);
    assert!(ns.exists(), "a namespace the updater did not create stays");
    s.env.clear();
    ok(s.updater().arg("apply").arg(&b200));
    assert!(ns.exists());
}
