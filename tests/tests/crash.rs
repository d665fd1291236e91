//! kill -9 at each step boundary of apply (and in rollback): `status` names
//! the interrupted operation and step; applying the same bundle again
//! resumes it; `rollback` reverts it. Uses the debug-build test hook
//! `STOA_UPDATER_TEST_CRASH_AFTER=<step>`, which aborts the process right
//! after the step is recorded as done.

#![allow(clippy::unwrap_used)]

use stoa_e2e::harness::{ok, run};
use stoa_e2e::site::Site;

const STEPS: &[&str] = &[
    "stage",
    "push-images",
    "snapshot:stoa",
    "migrate:stoa",
    "helm:stoa-api",
    "helm:stoa-gateway",
    "files",
];

fn assert_on_200(s: &Site) {
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert!(s.status_json()["pending"].is_null());
    assert_eq!(s.migration_ids(), ["0001"]);
    assert_eq!(s.tables(), ["apis", "stoa_schema_migrations", "tenants"]);
}

fn assert_on_210(s: &Site) {
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
    assert!(s.status_json()["pending"].is_null());
    assert_eq!(s.migration_ids(), ["0001", "0002"]);
    assert!(s.tables().contains(&"api_keys".to_owned()));
}

#[test]
fn kill_at_each_apply_step_then_resume_or_rollback() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    let apply = [std::ffi::OsStr::new("apply"), b210.as_os_str()];
    for step in STEPS {
        // killed, then reverted by rollback
        s.crash_after(&apply, step);
        let st = s.status_json();
        assert_eq!(st["pending"]["op"], "apply", "{step}: {st}");
        assert_eq!(st["pending"]["to"], "2.1.0", "{step}: {st}");
        assert_eq!(st["pending"]["stopped_at_step"], *step, "{step}: {st}");
        assert_eq!(st["installed"], "2.0.0", "{step}: the floor is unchanged");
        let text = s.status_text();
        assert!(
            text.contains("INTERRUPTED") && text.contains(step),
            "{text}"
        );
        let r = ok(s.updater().args(["rollback", "--json"]));
        assert!(
            r.contains("\"reverted_interrupted_apply\":true"),
            "{step}: {r}"
        );
        assert_on_200(&s);
        let api = s.helm_revision("stoa-api");

        // killed again, then resumed by applying the same bundle
        s.crash_after(&apply, step);
        let r = ok(s.updater().arg("apply").arg(&b210).arg("--json"));
        assert!(r.contains("\"resumed\":true"), "{step}: {r}");
        assert_on_210(&s);
        assert!(s.helm_revision("stoa-api") > api);

        // back to 2.0.0 for the next round
        ok(s.updater().arg("rollback"));
        assert_on_200(&s);
    }
}

#[test]
fn kill_during_rollback_then_rollback_finishes() {
    let s = Site::start();
    ok(s.updater().arg("apply").arg(s.bundle("2.0.0", None)));
    ok(s.updater().arg("apply").arg(s.bundle("2.1.0", None)));
    for step in ["rollback:helm:stoa-gateway", "rollback:migrate:stoa"] {
        s.crash_after(&[std::ffi::OsStr::new("rollback")], step);
        let st = s.status_json();
        assert_eq!(st["pending"]["op"], "rollback", "{st}");
        assert_eq!(st["pending"]["stopped_at_step"], step, "{st}");
        ok(s.updater().arg("rollback"));
        assert_on_200(&s);
        assert_eq!(s.helm_revision("stoa-gateway"), s.helm_revision("stoa-api"));
        ok(s.updater().arg("apply").arg(s.bundle("2.1.0", None)));
        assert_on_210(&s);
    }
}

#[test]
fn reverting_an_interrupted_apply_asks_before_restoring_a_snapshot() {
    let s = Site::start();
    ok(s.updater().arg("apply").arg(s.bundle("2.0.0", None)));
    let nodown = stoa_e2e::site::migrations(
        &s.path().join("mig-nodown"),
        1,
        &[(
            "0002_api_keys.sql",
            "CREATE TABLE api_keys (id bigserial PRIMARY KEY);\n",
        )],
    );
    let b = s.bundle("2.1.0", Some(&nodown));
    s.crash_after(
        &[std::ffi::OsStr::new("apply"), b.as_os_str()],
        "helm:stoa-api",
    );
    assert_eq!(s.helm_revision("stoa-api"), Some(2));
    let out = run(s.updater().arg("rollback"));
    assert_eq!(out.status.code(), Some(7));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("--restore-snapshot") && e.contains("LOST"),
        "{e}"
    );
    // nothing was undone while asking
    assert_eq!(s.helm_revision("stoa-api"), Some(2));
    assert_eq!(s.migration_ids(), ["0001", "0002"]);
    assert_eq!(s.status_json()["pending"]["op"], "apply");
    ok(s.updater().args(["rollback", "--restore-snapshot"]));
    assert_on_200(&s);
    assert_eq!(s.helm_revision("stoa-api"), Some(3));
}

/// Killed after a migration committed but before the apply recorded it:
/// the resumed apply records it, so a later rollback undoes it.
#[test]
fn kill_between_migration_and_its_record_then_resume_and_rollback() {
    let s = Site::start();
    ok(s.updater().arg("apply").arg(s.bundle("2.0.0", None)));
    let b210 = s.bundle("2.1.0", None);
    s.crash_after(
        &[std::ffi::OsStr::new("apply"), b210.as_os_str()],
        "migration-run:stoa:0002",
    );
    assert_eq!(s.migration_ids(), ["0001", "0002"]);
    let r = ok(s.updater().arg("apply").arg(&b210).arg("--json"));
    assert!(r.contains("\"resumed\":true"), "{r}");
    assert_on_210(&s);
    let st = s.status_json();
    assert_eq!(
        st["releases"][1]["migrations"]["stoa"],
        serde_json::json!(["0002"]),
        "{st}"
    );
    ok(s.updater().arg("rollback"));
    assert_on_200(&s);
}
