//! The kill matrix as unit tests: an apply of 2.0.0 over 1.0.0 is killed
//! right after each of its steps (and between a migration and its record),
//! then resumed, or reverted by rollback; the site must end exactly on 2.0.0
//! or exactly on 1.0.0. Kill points inside the `files` step (a file written,
//! the step not recorded done) come from the fake files driver. The drivers
//! (database, Helm, registry, files) are the in-process fakes; the state
//! folder and the staged content are real (a temp folder).
//! The e2e suite tests/tests/crash.rs does the same against the real
//! registry, PostgreSQL and a Helm stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use stoa_format::manifest::{
    ChartRecord, Entry, FileRecord, ImageRecord, MigrationSet, MigrationStep, Release,
};
use stoa_format::{BundleManifest, Sha256Digest};

use crate::config::SiteConfig;
use crate::state::State;

use super::fakes::Fakes;
use super::{ApplyOptions, ApplyReport, Killed, Site};

struct TestSite {
    dir: PathBuf,
    fakes: Fakes,
    site: Site,
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("stoa-kill-{}-{tag}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

impl TestSite {
    fn new(tag: &str) -> Self {
        let dir = temp_dir(tag);
        let toml = format!(
            "state_dir = {:?}\ntrust = {:?}\nfiles_dir = {:?}\n[databases.app]\nurl = \"postgres://u@localhost/app\"\nsnapshot = true\n[helm]\n[registry]\nurl = \"http://localhost:5000\"\n",
            dir.join("state").display().to_string(),
            dir.join("trust").display().to_string(),
            dir.join("files").display().to_string(),
        );
        let cfg: SiteConfig = toml::from_str(&toml).unwrap();
        let fakes = Fakes::default();
        let site = Site::with_drivers(cfg, fakes.drivers());
        site.sd.ensure().unwrap();
        Self { dir, fakes, site }
    }

    /// Stages release `v` (manifest and content in the store) as a verified
    /// apply would; returns its manifest and manifest sha256.
    fn stage(&self, v: &str, migrations: &[&str]) -> (BundleManifest, String) {
        let mut entries = Vec::new();
        let mut blob = |path: &str, body: &str| {
            let d = Sha256Digest::of(body.as_bytes());
            fs::write(self.site.sd.blob(&d.hex()), body).unwrap();
            entries.push(Entry {
                path: path.into(),
                size: body.len() as u64,
                sha256: d,
            });
        };
        let mut steps = Vec::new();
        for id in migrations {
            let up = format!("migrations/app/{id}_m{id}.up.sql");
            let down = format!("migrations/app/{id}_m{id}.down.sql");
            blob(&up, &format!("CREATE TABLE t{id} (x int);\n"));
            blob(&down, &format!("DROP TABLE t{id};\n"));
            steps.push(MigrationStep {
                id: id.parse().unwrap(),
                name: format!("m{id}"),
                up,
                down: Some(down),
            });
        }
        blob(&format!("charts/api-{v}.tgz"), &format!("chart {v}"));
        blob("files/app.conf", &format!("version = {v}\n"));
        let mut files = vec![FileRecord {
            dest: "conf/app.conf".into(),
            mode: "0644".parse().unwrap(),
            path: "files/app.conf".into(),
        }];
        // 2.0.0 adds a file: a rollback must remove it
        if v != "1.0.0" {
            blob("files/tool", &format!("#!/bin/sh\necho {v}\n"));
            files.push(FileRecord {
                dest: "bin/tool".into(),
                mode: "0755".parse().unwrap(),
                path: "files/tool".into(),
            });
        }
        let img = format!("image {v}");
        let img_d = Sha256Digest::of(img.as_bytes());
        blob(&format!("oci/blobs/sha256/{}", img_d.hex()), &img);
        blob("oci/index.json", "{}");
        blob("oci/oci-layout", "{}");
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let m = release_manifest(v, &img, entries, steps, files);
        let bytes = serde_json::to_vec_pretty(&m).unwrap();
        let rd = self.site.sd.release_dir(&m.release.version);
        fs::create_dir_all(&rd).unwrap();
        fs::write(rd.join("manifest.json"), &bytes).unwrap();
        // the manifest must be one the format accepts
        BundleManifest::from_bytes(&bytes, &stoa_format::Limits::default())
            .unwrap_or_else(|e| panic!("test manifest: {e}"));
        (m, Sha256Digest::of(&bytes).hex())
    }

    /// What `apply` does after verify+stage, under no lock.
    fn apply(&self, m: &BundleManifest, sha: &str) -> crate::error::Result<ApplyReport> {
        let mut state: State = self.site.sd.load()?;
        let resumed = state.pending.is_some();
        if !resumed {
            self.site.check_policy(&state, m, false)?;
        }
        let mut report = ApplyReport {
            resumed,
            ..ApplyReport::default()
        };
        self.site.execute_apply(
            &mut state,
            m,
            sha,
            &[],
            &ApplyOptions::default(),
            &mut report,
            &mut |_, _, _| {},
        )?;
        Ok(report)
    }

    /// The installed files: dest → (mode, content).
    fn files(&self) -> Vec<(String, u32, String)> {
        self.fakes
            .files
            .files
            .borrow()
            .iter()
            .map(|(d, (mode, b))| (d.clone(), *mode, String::from_utf8_lossy(b).into_owned()))
            .collect()
    }

    fn assert_on(&self, v: &str, ids: &[&str], ctx: &str) {
        let st = self.site.sd.load().unwrap();
        assert!(st.pending.is_none(), "{ctx}: pending {:?}", st.pending);
        assert_eq!(
            st.installed.as_ref().map(|x| x.to_string()).as_deref(),
            Some(v),
            "{ctx}"
        );
        assert_eq!(self.fakes.db.ids("app"), ids, "{ctx}");
        assert_eq!(
            self.fakes.helm.deployed("api", "stoa").as_deref(),
            Some(format!("api-{v}.tgz").as_str()),
            "{ctx}"
        );
        let mut want = vec![(
            "conf/app.conf".to_owned(),
            0o644,
            format!("version = {v}\n"),
        )];
        if v != "1.0.0" {
            want.insert(
                0,
                ("bin/tool".into(), 0o755, format!("#!/bin/sh\necho {v}\n")),
            );
        }
        assert_eq!(self.files(), want, "{ctx}");
        assert_eq!(
            self.fakes.files.content("conf/app.conf"),
            Some(format!("version = {v}\n")),
            "{ctx}"
        );
    }
}

/// The manifest of test release `v`: one image (`img` is its manifest blob's
/// text), the chart `api`, database `app`'s migration `steps`, `files`.
fn release_manifest(
    v: &str,
    img: &str,
    entries: Vec<Entry>,
    steps: Vec<MigrationStep>,
    files: Vec<FileRecord>,
) -> BundleManifest {
    let img_d = Sha256Digest::of(img.as_bytes());
    BundleManifest {
        format: stoa_format::FORMAT_NAME.into(),
        format_version: 1,
        release: Release {
            name: "stoa".into(),
            version: v.parse().unwrap(),
            upgrade_from: None,
            created: "2026-11-28T00:00:00Z".parse().unwrap(),
            expires: None,
        },
        images: vec![ImageRecord {
            name: stoa_format::names::ImageRef::parse("registry.example/stoa/api:1").unwrap(),
            digest: img_d.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            platforms: Vec::new(),
            size: img.len() as u64,
            source: None,
            source_digest: None,
            artifact_type: None,
            signatures: vec![],
        }],
        charts: vec![ChartRecord {
            name: "api".into(),
            version: v.into(),
            app_version: None,
            kube_version: None,
            release: "api".into(),
            namespace: "stoa".into(),
            path: format!("charts/api-{v}.tgz"),
            values: Vec::new(),
        }],
        migrations: vec![MigrationSet {
            database: "app".into(),
            steps,
        }],
        files,
        sbom: None,
        tools: vec![],
        signers: vec![],
        delta: None,
        entries,
    }
}

impl Drop for TestSite {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A kill prints nothing; any other panic as usual.
fn quiet_kills() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Killed>().is_none() {
                default(info);
            }
        }));
    });
}

/// Every kill point of an apply of 2.0.0 over 1.0.0: after each step, and
/// inside two (`migration-run:…` between a migration and its record;
/// `install:<dest>` in the `files` step, after that file is written: the
/// first file new and the second not yet, then both new and the step not
/// recorded done). `helm:api` is also "just before `files`".
const KILL_POINTS: &[&str] = &[
    "stage",
    "push-images",
    "snapshot:app",
    "migration-run:app:0002",
    "migrate:app",
    "helm:api",
    "install:conf/app.conf",
    "install:bin/tool",
    "files",
    "commit",
];

/// Applies 2.0.0 with a kill after `point`; the process "dies" there.
fn killed_apply(t: &mut TestSite, point: &str) -> (BundleManifest, String) {
    let (m1, s1) = t.stage("1.0.0", &["0001"]);
    t.apply(&m1, &s1).unwrap();
    t.assert_on("1.0.0", &["0001"], "1.0.0 applied");
    let (m2, s2) = t.stage("2.0.0", &["0001", "0002"]);
    match point.strip_prefix("install:") {
        Some(dest) => *t.fakes.files.kill_after_install.borrow_mut() = Some(dest.to_owned()),
        None => t.site.kill_after = Some(point.to_owned()),
    }
    let r = catch_unwind(AssertUnwindSafe(|| t.apply(&m2, &s2)));
    let payload = r.expect_err("the kill point was never reached");
    let k = payload
        .downcast_ref::<Killed>()
        .unwrap_or_else(|| panic!("{point}: not a kill"));
    assert_eq!(k.0, point);
    t.site.kill_after = None;
    *t.fakes.files.kill_after_install.borrow_mut() = None;
    (m2, s2)
}

#[test]
fn kill_matrix_every_step_then_resume() {
    quiet_kills();
    for point in KILL_POINTS {
        let mut t = TestSite::new("resume");
        let (m2, s2) = killed_apply(&mut t, point);
        let st = t.site.sd.load().unwrap();
        if *point == "commit" {
            assert!(st.pending.is_none(), "{point}");
        } else {
            let p = st
                .pending
                .unwrap_or_else(|| panic!("{point}: nothing pending"));
            assert_eq!(p.to.map(|v| v.to_string()).as_deref(), Some("2.0.0"));
            assert_eq!(
                st.installed.map(|v| v.to_string()).as_deref(),
                Some("1.0.0")
            );
        }
        if *point != "commit" {
            let r = t
                .apply(&m2, &s2)
                .unwrap_or_else(|e| panic!("{point}: resume: {e}"));
            assert!(r.resumed, "{point}");
        }
        t.assert_on("2.0.0", &["0001", "0002"], &format!("{point}: resumed"));
        // the record lets a later rollback undo 0002
        let rec = t.site.sd.load().unwrap().releases.pop().unwrap();
        assert_eq!(
            rec.migrations.get("app").cloned(),
            Some(vec!["0002".to_owned()]),
            "{point}"
        );
    }
}

#[test]
fn kill_matrix_every_step_then_rollback() {
    quiet_kills();
    for point in KILL_POINTS {
        let mut t = TestSite::new("rollback");
        killed_apply(&mut t, point);
        let r = t
            .site
            .rollback(None, false)
            .unwrap_or_else(|e| panic!("{point}: rollback: {e}"));
        assert_eq!(r.reverted_interrupted_apply, *point != "commit", "{point}");
        t.assert_on("1.0.0", &["0001"], &format!("{point}: rolled back"));
    }
}

#[test]
fn kill_matrix_during_rollback_then_rollback_finishes() {
    quiet_kills();
    for point in [
        "rollback:helm:api",
        "rollback:migrate:app",
        "rollback:files",
        "rollback:commit",
    ] {
        let t = TestSite::new("rb");
        let (m1, s1) = t.stage("1.0.0", &["0001"]);
        t.apply(&m1, &s1).unwrap();
        let (m2, s2) = t.stage("2.0.0", &["0001", "0002"]);
        t.apply(&m2, &s2).unwrap();
        t.assert_on("2.0.0", &["0001", "0002"], "2.0.0 applied");
        let mut t = t;
        t.site.kill_after = Some(point.to_owned());
        let r = catch_unwind(AssertUnwindSafe(|| t.site.rollback(None, false)));
        assert!(r.is_err(), "{point}: not killed");
        t.site.kill_after = None;
        if point != "rollback:commit" {
            t.site
                .rollback(None, false)
                .unwrap_or_else(|e| panic!("{point}: finish: {e}"));
        }
        t.assert_on("1.0.0", &["0001"], &format!("{point}: finished"));
    }
}
