//! Apply and rollback: the journaled, resumable steps.
//!
//! Every step is recorded in `state.json` (begun, then done) and in the
//! journal before its side effect, and every step is idempotent, so an
//! interrupted operation can be resumed (apply the same bundle again) or
//! reverted (rollback). Undo of an apply works from what was recorded, not
//! from the bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use serde_json::json;
use stoa_format::reader::VerifyOptions;
use stoa_format::source::{inspect_source, BundleSource};
use stoa_format::{BundleManifest, Limits};

use crate::config::{hint, SiteConfig};
use crate::db;
use crate::error::{Result, UpdaterError};
use crate::helm::Helm;
use crate::registry::{self, PushStats};
use crate::stage::{self, chart_file_name, entry_blob};
use crate::state::{
    now_rfc3339, HelmRecord, OpKind, Pending, ReleaseRecord, SiteLock, State, StateDir, StepRecord,
};
use crate::tool;

/// Test hook (debug builds only): `STOA_UPDATER_TEST_CRASH_AFTER=<step>`
/// makes the process abort right after that step is recorded as done, as a
/// kill -9 would. Release builds ignore it.
fn crash_hook(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("STOA_UPDATER_TEST_CRASH_AFTER").as_deref() == Ok(step) {
        eprintln!("stoa-updater: test hook: aborting after step {step}");
        std::process::abort();
    }
    let _ = step;
}

#[derive(Debug)]
pub struct Site {
    pub cfg: SiteConfig,
    pub sd: StateDir,
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub allow_downgrade: bool,
    pub no_auto_rollback: bool,
    pub allow_expired: bool,
    /// Use the machine clock even when it is before the clock floor (audited).
    pub ignore_clock_floor: bool,
    /// Apply although Helm 3 would run hook images from outside the site
    /// registry (its post-renderer does not see hooks).
    pub accept_hook_images: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct ApplyReport {
    pub version: String,
    pub from: Option<String>,
    pub resumed: bool,
    pub staged_bytes_written: u64,
    pub staged_bytes_reused: u64,
    pub push: PushStats,
    /// Wall time of the verify+stage pass and of the image push.
    pub stage_seconds: f64,
    pub push_seconds: f64,
    pub migrations: BTreeMap<String, Vec<String>>,
    pub snapshots: BTreeMap<String, PathBuf>,
    pub helm: Vec<HelmRecord>,
    pub files: Vec<String>,
    pub pruned: Vec<String>,
}

/// The snapshot files in `state_dir/snapshots` (status shows it).
#[derive(Debug, Default, Serialize)]
pub struct SnapshotUsage {
    pub count: usize,
    pub bytes: u64,
    /// Files no retained release or pending operation needs.
    pub removable: Vec<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
pub struct RollbackReport {
    pub from: Option<String>,
    pub to: Option<String>,
    pub reverted_interrupted_apply: bool,
    pub helm: Vec<serde_json::Value>,
    pub migrations_undone: BTreeMap<String, Vec<String>>,
    pub snapshots_restored: BTreeMap<String, PathBuf>,
    /// History rows that disagreed with the verified release content
    /// (reported; their SQL was not run).
    pub edited_history_rows: Vec<db::RowMismatch>,
}

/// A migration step as the release's verified content has it.
#[derive(Debug)]
struct VerifiedStep {
    up_sha256: String,
    /// The down step's text and sha256, re-hashed from the store.
    down: Option<(String, String)>,
}

impl Site {
    pub fn new(cfg: SiteConfig) -> Self {
        let sd = StateDir::new(&cfg.state_dir);
        Self { cfg, sd }
    }

    pub fn verify_options(allow_expired: bool) -> VerifyOptions {
        VerifyOptions {
            allow_expired,
            ..VerifyOptions::default()
        }
    }

    fn save(&self, s: &State) -> Result<()> {
        self.sd.save(s)
    }

    fn journal(
        &self,
        p: &Pending,
        step: &str,
        event: &str,
        extra: serde_json::Value,
    ) -> Result<()> {
        let mut v = json!({
            "op": p.op, "op_id": p.op_id, "to": p.to.as_ref().map(|v| v.to_string()),
            "step": step, "event": event,
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                o.insert(k.clone(), val.clone());
            }
        }
        self.sd.journal(v)
    }

    /// Runs one recorded step: skipped when already done; otherwise
    /// recorded as begun (state + journal, fsynced) before `f` runs, and as
    /// done after.
    fn step<T: Default>(
        &self,
        state: &mut State,
        name: &str,
        f: impl FnOnce(&Self, &mut State) -> Result<T>,
    ) -> Result<T> {
        {
            let p = pending(state)?;
            if p.step_done(name) {
                return Ok(T::default());
            }
            if !p.step_begun(name) {
                p.steps.push(StepRecord {
                    name: name.to_owned(),
                    done: false,
                });
            }
        }
        self.save(state)?;
        self.journal(pending(state)?, name, "begin", json!({}))?;
        let out = f(self, state)?;
        {
            let p = pending(state)?;
            if let Some(s) = p.steps.iter_mut().find(|s| s.name == name) {
                s.done = true;
            }
        }
        self.save(state)?;
        self.journal(pending(state)?, name, "done", json!({}))?;
        crash_hook(name);
        Ok(out)
    }

    /// The policy checks of apply: newer than installed, within upgrade_from.
    pub fn check_policy(
        &self,
        state: &State,
        m: &BundleManifest,
        allow_downgrade: bool,
    ) -> Result<()> {
        let new = &m.release.version;
        // a first install is not an upgrade: upgrade_from applies only when
        // a release is installed (docs/RELEASE-MANIFEST.md)
        if let Some(cur) = &state.installed {
            if !is_newer(new, cur) && !allow_downgrade {
                return Err(UpdaterError::Refused(format!(
                    "{} {new} is not newer than the installed {cur} (--allow-downgrade overrides, and is logged)",
                    m.release.name
                )));
            }
            if let Some(req) = &m.release.upgrade_from {
                let r = semver::VersionReq::parse(req)
                    .map_err(|e| UpdaterError::Refused(format!("upgrade_from {req:?}: {e}")))?;
                if !r.matches(cur) && !allow_downgrade {
                    return Err(UpdaterError::Refused(format!(
                        "{} {new} upgrades only from {req}, and {cur} is installed",
                        m.release.name
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn apply(
        &self,
        bundle: &BundleSource,
        opts: &ApplyOptions,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<ApplyReport> {
        tool::check_setpriv()?;
        // the site's root, extended by the roots the bundle carries
        let now = crate::trust::checked_now(&self.sd, opts.ignore_clock_floor)?;
        let base = crate::trust::load(&self.cfg, &self.sd, now)?.base;
        // every file is read twice (head, then content): regular files only
        for p in bundle_files(bundle) {
            check_regular(p)?;
        }
        // a part set: signed index, every part present with its size
        bundle.check(&base.store())?;
        let head = inspect_source(bundle, &Limits::default())?;
        let (trust, chain) = base.resolve(&head, now)?;
        crate::audit::note_root(chain.last().map_or(base.version(), |r| r.version()));
        head.check_signatures(&trust)?;
        self.cfg.check_needs(&head.manifest)?;
        self.sd.ensure()?;
        // policy first on the state as read, again under the lock
        let _lock = SiteLock::take(&self.sd, "apply")?;
        let mut state = self.sd.load()?;
        let sha = head.manifest_sha256.hex();
        let resumed = match &state.pending {
            Some(p)
                if p.op == OpKind::Apply && p.manifest_sha256.as_deref() == Some(sha.as_str()) =>
            {
                // never race a worker of the interrupted run
                tool::stop_leftovers(&self.sd, &p.op_id)?;
                true
            }
            Some(p) => return Err(self.pending_refusal(p)),
            None => {
                self.check_policy(&state, &head.manifest, opts.allow_downgrade)?;
                false
            }
        };

        // verify fully while staging; nothing on site has changed yet
        let size = bundle.size();
        let mut done = 0u64;
        let t0 = std::time::Instant::now();
        let staged = stage::verify_and_stage(
            bundle,
            &trust,
            &Self::verify_options(opts.allow_expired),
            &self.sd,
            &mut |n| {
                done += n;
                progress("verify+stage", done, size);
            },
        )?;
        if staged.verified.manifest_sha256.hex() != sha {
            return Err(UpdaterError::Refused(
                "the bundle changed while it was read".into(),
            ));
        }
        crate::audit::note_bundle(&staged.verified);
        // verified: its roots and its creation time are accepted
        crate::trust::accept_roots(&self.sd, &chain)?;
        if let Ok(t) = humantime::parse_rfc3339(&staged.verified.manifest.release.created) {
            let r = &staged.verified.manifest.release;
            crate::trust::raise_floor(&self.sd, t, &format!("bundle {} {}", r.name, r.version))?;
        }
        let m = staged.verified.manifest.clone();
        // every chart renders with every image from the site registry, and
        // (Helm 3) no hook image leaves it unless accepted: before any change
        crate::postrender::preflight(
            &self.cfg,
            &m,
            &self.sd.release_dir(&m.release.version).join("charts"),
            opts.accept_hook_images,
        )?;
        let mut report = ApplyReport {
            version: m.release.version.to_string(),
            from: state.installed.as_ref().map(|v| v.to_string()),
            resumed,
            staged_bytes_written: staged.bytes_written,
            staged_bytes_reused: staged.bytes_reused,
            stage_seconds: t0.elapsed().as_secs_f64(),
            ..ApplyReport::default()
        };

        if !resumed {
            self.check_edited_migrations(&m)?;
            let op_id = format!("{}-{}", now_rfc3339(), std::process::id());
            state.pending = Some(Pending {
                op: OpKind::Apply,
                op_id,
                started_at: now_rfc3339(),
                from: state.installed.clone(),
                to: Some(m.release.version.clone()),
                manifest_sha256: Some(sha.clone()),
                steps: vec![StepRecord {
                    name: "stage".into(),
                    done: true,
                }],
                record: ReleaseRecord {
                    version: m.release.version.clone(),
                    manifest_sha256: sha.clone(),
                    applied_at: String::new(),
                    allow_downgrade: opts.allow_downgrade
                        && state
                            .installed
                            .as_ref()
                            .is_some_and(|c| !is_newer(&m.release.version, c)),
                    allow_expired: opts.allow_expired
                        && m.expires_at()
                            .is_some_and(|e| e <= std::time::SystemTime::now()),
                    ..ReleaseRecord::default()
                },
                migrations_before: BTreeMap::new(),
                failed: None,
            });
            self.save(&state)?;
            let p = pending(&mut state)?.clone();
            tool::record_children(&self.sd, &p.op_id);
            self.journal(&p, "stage", "done", json!({"from": p.from.as_ref().map(|v| v.to_string()), "allow_downgrade": p.record.allow_downgrade}))?;
            crash_hook("stage");
        } else {
            let p = pending(&mut state)?;
            p.failed = None;
            let p = p.clone();
            tool::record_children(&self.sd, &p.op_id);
            self.save(&state)?;
            self.journal(&p, "resume", "begin", json!({}))?;
        }

        match self.apply_steps(&mut state, &m, &mut report, progress) {
            Ok(()) => {}
            Err((step, e)) => return Err(self.apply_failed(&mut state, &m, step, e, opts)),
        }

        // prune (after commit; a failure here is reported, not fatal)
        match self.prune(&mut state) {
            Ok(p) => report.pruned = p,
            Err(e) => eprintln!("stoa-updater: warning: prune: {e}"),
        }
        Ok(report)
    }

    fn apply_steps(
        &self,
        state: &mut State,
        m: &BundleManifest,
        report: &mut ApplyReport,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> std::result::Result<(), (String, UpdaterError)> {
        let at = |s: &str| {
            let s = s.to_owned();
            move |e| (s, e)
        };
        // images
        if !m.images.is_empty() {
            let total: u64 = m.images.iter().map(|i| i.size).sum();
            let t0 = std::time::Instant::now();
            let stats = self
                .step(state, "push-images", |site, _| {
                    let rc = site
                        .cfg
                        .registry
                        .as_ref()
                        .ok_or(UpdaterError::MissingSection {
                            section: "registry".into(),
                        })?;
                    let mut c = registry::Client::new(rc)?;
                    let mut done = 0u64;
                    c.push_release(&site.sd, m, &rc.prefix, &mut |n| {
                        done += n;
                        progress("push", done, total);
                    })
                })
                .map_err(at("push-images"))?;
            report.push = stats;
            report.push_seconds = t0.elapsed().as_secs_f64();
        }
        // snapshots, then migrations, per database
        for set in &m.migrations {
            let dbc = self
                .cfg
                .databases
                .get(&set.database)
                .ok_or(UpdaterError::MissingSection {
                    section: format!("databases.{}", set.database),
                })
                .map_err(at("migrate"))?
                .clone();
            let name = set.database.clone();
            if dbc.snapshot {
                let sname = format!("snapshot:{name}");
                self.step(state, &sname, |site, st| {
                    let p = pending(st)?;
                    let file = site.sd.snapshots_dir().join(format!(
                        "{}-{}-{}.dump",
                        m.release.version,
                        name,
                        &p.op_id.replace([':', ' '], "")
                    ));
                    if !file.exists() {
                        db::snapshot(&name, &dbc.url, &file)?;
                    }
                    p.record.snapshots.insert(name.clone(), file);
                    Ok(())
                })
                .map_err(at(&sname))?;
            }
            let mname = format!("migrate:{name}");
            self.step(state, &mname, |site, st| {
                let applied = db::applied(&name, &dbc.url)?;
                {
                    let p = pending(st)?;
                    if !p.migrations_before.contains_key(&name) {
                        p.migrations_before
                            .insert(name.clone(), applied.keys().cloned().collect());
                    }
                }
                site.save(st)?;
                for s in &set.steps {
                    let e = m.entry(&s.up).ok_or_else(|| UpdaterError::Database {
                        database: name.clone(),
                        step: s.id.clone(),
                        reason: "up step is not in the bundle".into(),
                    })?;
                    let checksum = e.sha256.hex();
                    if let Some(a) = applied.get(&s.id) {
                        if a.checksum != checksum {
                            return Err(UpdaterError::Database {
                                database: name.clone(),
                                step: format!("migration {}_{}", s.id, s.name),
                                reason: format!(
                                    "already applied with checksum {}, the bundle's is {checksum}: an applied migration was edited; refusing",
                                    a.checksum
                                ),
                            });
                        }
                        // run by this apply before a kill, not yet recorded:
                        // record it now, or a later rollback would miss it
                        let p = pending(st)?;
                        let ran_here = !p
                            .migrations_before
                            .get(&name)
                            .is_some_and(|b| b.contains(&s.id));
                        let recorded = p
                            .record
                            .migrations
                            .get(&name)
                            .is_some_and(|r| r.contains(&s.id));
                        if ran_here && !recorded {
                            p.record
                                .migrations
                                .entry(name.clone())
                                .or_default()
                                .push(s.id.clone());
                            site.save(st)?;
                        }
                        continue;
                    }
                    let up = read_text(&site.sd.blob(&checksum))?;
                    let down = match &s.down {
                        Some(d) => Some(read_text(&entry_blob(&site.sd, m, d)?)?),
                        None => None,
                    };
                    site.journal(
                        pending(st)?,
                        &mname_of(&name),
                        "migration",
                        json!({"id": s.id, "name": s.name}),
                    )?;
                    db::migrate_up(
                        &name,
                        &dbc.url,
                        &s.id,
                        &s.name,
                        &up,
                        &checksum,
                        down.as_deref(),
                        &m.release.version.to_string(),
                    )?;
                    crash_hook(&format!("migration-run:{name}:{}", s.id));
                    let p = pending(st)?;
                    p.record
                        .migrations
                        .entry(name.clone())
                        .or_default()
                        .push(s.id.clone());
                    site.save(st)?;
                }
                Ok(())
            })
            .map_err(at(&mname))?;
        }
        // charts, in manifest order
        if !m.charts.is_empty() {
            let hc = self
                .cfg
                .helm
                .as_ref()
                .ok_or(UpdaterError::MissingSection {
                    section: "helm".into(),
                })
                .map_err(at("helm"))?;
            let mut helm: Option<Helm> = None;
            let mut post: Option<crate::postrender::PostRender> = None;
            let reg = crate::postrender::registry_value(&self.cfg);
            for c in &m.charts {
                let hname = format!("helm:{}", c.release);
                self.step(state, &hname, |site, st| {
                    if helm.is_none() {
                        helm = Some(Helm::new(hc)?);
                    }
                    if let (None, Some(h)) = (&post, &helm) {
                        let images = crate::postrender::site_images(&site.cfg, m)?;
                        post = Some(crate::postrender::prepare(
                            &site.cfg.state_dir.join("post-render"),
                            &images,
                            h.major,
                        )?);
                    }
                    let h = helm.as_ref().ok_or_else(|| UpdaterError::Helm {
                        release: c.release.clone(),
                        step: "driver".into(),
                        reason: "no helm".into(),
                    })?;
                    {
                        let known = pending(st)?
                            .record
                            .helm
                            .iter()
                            .any(|r| r.release == c.release && r.namespace == c.namespace);
                        if !known {
                            let before = h.revision(&c.release, &c.namespace)?;
                            pending(st)?.record.helm.push(HelmRecord {
                                release: c.release.clone(),
                                namespace: c.namespace.clone(),
                                before,
                                after: None,
                            });
                            site.save(st)?;
                        }
                    }
                    let chart = site
                        .sd
                        .release_dir(&m.release.version)
                        .join("charts")
                        .join(chart_file_name(c));
                    h.upgrade(
                        &c.release,
                        &c.namespace,
                        &chart,
                        reg.as_deref(),
                        post.as_ref(),
                    )?;
                    let after = h.revision(&c.release, &c.namespace)?;
                    if let Some(r) = pending(st)?
                        .record
                        .helm
                        .iter_mut()
                        .find(|r| r.release == c.release && r.namespace == c.namespace)
                    {
                        r.after = after;
                    }
                    Ok(())
                })
                .map_err(at(&hname))?;
            }
        }
        // files
        if !m.files.is_empty() {
            self.step(state, "files", |site, _| {
                for f in &m.files {
                    site.install_file(m, f)?;
                }
                Ok(())
            })
            .map_err(at("files"))?;
            report.files = m.files.iter().map(|f| f.dest.clone()).collect();
        }
        // commit
        let p = pending(state).map_err(at("commit"))?.clone();
        self.journal(&p, "commit", "begin", json!({}))
            .map_err(at("commit"))?;
        let mut rec = p.record.clone();
        rec.applied_at = now_rfc3339();
        state.releases.retain(|r| r.version != rec.version);
        state.releases.push(rec.clone());
        state.installed = Some(rec.version.clone());
        state.pending = None;
        self.save(state).map_err(at("commit"))?;
        self.journal(&p, "commit", "done", json!({}))
            .map_err(at("commit"))?;
        self.sd
            .history(json!({
                "op": "apply", "from": p.from.as_ref().map(|v| v.to_string()),
                "to": rec.version.to_string(), "outcome": "applied", "resumed": report.resumed,
                "allow_downgrade": rec.allow_downgrade, "allow_expired": rec.allow_expired,
                "manifest_sha256": rec.manifest_sha256,
                "migrations": rec.migrations, "helm": rec.helm,
                "push": report.push,
            }))
            .map_err(at("commit"))?;
        crash_hook("commit");
        report.migrations = rec.migrations.clone();
        report.snapshots = rec.snapshots.clone();
        report.helm = rec.helm.clone();
        Ok(())
    }

    fn apply_failed(
        &self,
        state: &mut State,
        m: &BundleManifest,
        step: String,
        cause: UpdaterError,
        opts: &ApplyOptions,
    ) -> UpdaterError {
        let version = m.release.version.to_string();
        let msg = cause.to_string();
        let p = match pending(state) {
            Ok(p) => {
                p.failed = Some(format!("step {step}: {msg}"));
                p.clone()
            }
            Err(e) => return e,
        };
        let _ = self.save(state);
        let _ = self.journal(&p, &step, "failed", json!({"error": msg}));
        if opts.no_auto_rollback {
            let _ = self.sd.history(json!({"op": "apply", "from": p.from.as_ref().map(|v| v.to_string()), "to": version, "outcome": "failed, left for inspection", "step": step, "error": msg}));
            return UpdaterError::ApplyFailed {
                version,
                step,
                cause: Box::new(cause),
                outcome: format!(
                    "left for inspection (--no-auto-rollback): to resume, `{}`; to revert, `{}`",
                    hint(&self.cfg.path, "apply <the same bundle>"),
                    hint(&self.cfg.path, "rollback")
                ),
            };
        }
        let from = p
            .from
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "nothing installed".into());
        match self.undo_pending(state, true, &mut RollbackReport::default()) {
            Ok(()) => {
                let _ = self.sd.history(json!({"op": "apply", "from": p.from.as_ref().map(|v| v.to_string()), "to": version, "outcome": "failed, rolled back", "step": step, "error": msg}));
                UpdaterError::ApplyFailed {
                    version,
                    step,
                    cause: Box::new(cause),
                    outcome: format!("rolled back; the site is on {from}"),
                }
            }
            Err(e2) => {
                let _ = self.sd.history(json!({"op": "apply", "from": p.from.as_ref().map(|v| v.to_string()), "to": version, "outcome": "failed, automatic rollback failed", "step": step, "error": msg, "rollback_error": e2.to_string()}));
                UpdaterError::ApplyFailed {
                    version,
                    step,
                    cause: Box::new(cause),
                    outcome: format!(
                        "automatic rollback also failed ({e2}); see `{}`, then run `{}`",
                        hint(&self.cfg.path, "status"),
                        hint(&self.cfg.path, "rollback")
                    ),
                }
            }
        }
    }

    /// Reverts the steps of a pending apply, newest first, from what was
    /// recorded. Clears `pending` when done.
    fn undo_pending(
        &self,
        state: &mut State,
        restore_snapshot: bool,
        report: &mut RollbackReport,
    ) -> Result<()> {
        let p = pending(state)?.clone();
        tool::stop_leftovers(&self.sd, &p.op_id)?;
        let new_m = match (&p.to, &p.manifest_sha256) {
            (Some(v), Some(sha)) => Some(stage::load_release_checked(&self.sd, v, sha)?),
            _ => None,
        };
        // every down step this undo may need is read and re-hashed before
        // anything is undone: staged content that no longer matches stops here
        if let Some(m) = &new_m {
            for set in &m.migrations {
                for st in &set.steps {
                    self.verified_step(m, &set.database, &st.id)?;
                }
            }
        }
        let old_m = match &p.from {
            Some(v) => Some(stage::load_release(&self.sd, v)?),
            None => None,
        };
        // a snapshot restore needs confirmation: ask before undoing anything
        if !restore_snapshot {
            for (dbname, before) in &p.migrations_before {
                let Some(dbc) = self.cfg.databases.get(dbname) else {
                    continue;
                };
                let now = db::applied(dbname, &dbc.url)?;
                let mut no_down: Vec<&str> = Vec::new();
                for id in now.keys().filter(|id| !before.contains(id)) {
                    let vs = match &new_m {
                        Some(m) => self.verified_step(m, dbname, id)?,
                        None => None,
                    };
                    if vs.is_none_or(|v| v.down.is_none()) {
                        no_down.push(id.as_str());
                    }
                }
                if !no_down.is_empty() {
                    return Err(UpdaterError::NeedsConfirmation(format!(
                        "database {dbname}: migration(s) {} have no down step; reverting the interrupted apply restores the snapshot taken before them. Data written since is LOST. To confirm: `{}`",
                        no_down.join(", "),
                        hint(&self.cfg.path, "rollback --restore-snapshot")
                    )));
                }
            }
        }
        self.journal(&p, "undo", "begin", json!({}))?;
        for s in p.steps.iter().rev() {
            let rb = |e: UpdaterError| UpdaterError::RollbackFailed {
                step: format!("undo {}", s.name),
                cause: Box::new(e),
            };
            self.journal(&p, &s.name, "undo", json!({}))?;
            if s.name == "files" {
                self.sync_files(old_m.as_ref(), new_m.as_slice())
                    .map_err(rb)?;
            } else if let Some(rel) = s.name.strip_prefix("helm:") {
                let Some(rec) = p.record.helm.iter().find(|r| r.release == rel) else {
                    continue;
                };
                let hc = self
                    .cfg
                    .helm
                    .as_ref()
                    .ok_or(UpdaterError::MissingSection {
                        section: "helm".into(),
                    })
                    .map_err(rb)?;
                let h = Helm::new(hc).map_err(rb)?;
                report.helm.push(
                    self.helm_back(&h, &rec.release, &rec.namespace, rec.before)
                        .map_err(rb)?,
                );
            } else if let Some(dbname) = s.name.strip_prefix("migrate:") {
                let Some(before) = p.migrations_before.get(dbname) else {
                    continue;
                };
                let before: BTreeSet<&String> = before.iter().collect();
                let dbc = self
                    .cfg
                    .databases
                    .get(dbname)
                    .ok_or(UpdaterError::MissingSection {
                        section: format!("databases.{dbname}"),
                    })
                    .map_err(rb)?;
                let now = db::applied(dbname, &dbc.url).map_err(rb)?;
                // down steps from the verified release content only; an id
                // the release does not have (or without a down step) needs
                // the snapshot
                let mut undo: Vec<(&String, Option<VerifiedStep>)> = Vec::new();
                for id in now.keys().rev().filter(|id| !before.contains(id)) {
                    let vs = match &new_m {
                        Some(m) => self.verified_step(m, dbname, id).map_err(rb)?,
                        None => None,
                    };
                    undo.push((id, vs.filter(|v| v.down.is_some())));
                }
                if undo.is_empty() {
                    continue;
                }
                if undo.iter().all(|(_, v)| v.is_some()) {
                    for (id, vs) in &undo {
                        let Some(vs) = vs else { continue };
                        self.run_verified_down(&p, dbname, &dbc.url, id, vs, report)
                            .map_err(rb)?;
                        report
                            .migrations_undone
                            .entry(dbname.to_owned())
                            .or_default()
                            .push((*id).clone());
                    }
                } else {
                    let snap = p.record.snapshots.get(dbname).cloned().ok_or_else(|| {
                        rb(UpdaterError::Database {
                            database: dbname.into(),
                            step: "undo".into(),
                            reason:
                                "a migration to undo has no down step and no snapshot was taken"
                                    .into(),
                        })
                    })?;
                    if !restore_snapshot {
                        return Err(UpdaterError::NeedsConfirmation(format!(
                            "database {dbname}: migration(s) {} have no down step; going back needs the snapshot {} taken before them. Data written since is LOST. To confirm: `{}`",
                            undo.iter().filter(|(_, v)| v.is_none()).map(|(i, _)| i.as_str()).collect::<Vec<_>>().join(", "),
                            snap.display(),
                            hint(&self.cfg.path, "rollback --restore-snapshot")
                        )));
                    }
                    db::restore(dbname, &dbc.url, &snap).map_err(rb)?;
                    report.snapshots_restored.insert(dbname.to_owned(), snap);
                }
            }
        }
        state.pending = None;
        self.save(state)?;
        self.journal(&p, "undo", "done", json!({}))?;
        Ok(())
    }

    /// Migration `id` of database `db` as release `m` has it, with its down
    /// step read from the store and re-hashed. None when `m` has no such
    /// step.
    fn verified_step(
        &self,
        m: &BundleManifest,
        db: &str,
        id: &str,
    ) -> Result<Option<VerifiedStep>> {
        let Some(step) = m
            .migrations
            .iter()
            .filter(|s| s.database == db)
            .flat_map(|s| s.steps.iter())
            .find(|s| s.id == id)
        else {
            return Ok(None);
        };
        let entry = |path: &str| {
            m.entry(path).ok_or_else(|| UpdaterError::Database {
                database: db.to_owned(),
                step: format!("migration {id}"),
                reason: format!("{path} is not in the release's manifest"),
            })
        };
        let up_sha256 = entry(&step.up)?.sha256.hex();
        let down = match &step.down {
            Some(d) => {
                let e = entry(d)?;
                Some((stage::read_verified_text(&self.sd, e)?, e.sha256.hex()))
            }
            None => None,
        };
        Ok(Some(VerifiedStep { up_sha256, down }))
    }

    /// Runs the verified down step of `id` (never the history row's SQL);
    /// a row that disagreed is reported on stderr, in the journal and in
    /// `report`. Returns whether a row was undone.
    fn run_verified_down(
        &self,
        p: &Pending,
        dbname: &str,
        url: &str,
        id: &str,
        vs: &VerifiedStep,
        report: &mut RollbackReport,
    ) -> Result<bool> {
        let Some((sql, sha)) = &vs.down else {
            return Err(UpdaterError::Database {
                database: dbname.to_owned(),
                step: format!("down migration {id}"),
                reason: "the release has no down step for it".into(),
            });
        };
        let Some(row) = db::migrate_down(dbname, url, id, &vs.up_sha256, sql, sha)? else {
            return Ok(false);
        };
        if row.down_sql_edited || row.checksum_edited {
            eprintln!(
                "stoa-updater: warning: database {dbname}: the history row of migration {id} was edited in {} ({}); it was NOT executed: the release's verified down step ran instead",
                db::TABLE,
                match (row.down_sql_edited, row.checksum_edited) {
                    (true, true) => "down_sql and checksum differ",
                    (true, false) => "down_sql differs",
                    _ => "checksum differs",
                }
            );
            let _ = self.journal(
                p,
                &format!("rollback:migrate:{dbname}"),
                "edited_history_row",
                json!({"database": dbname, "id": id, "down_sql_edited": row.down_sql_edited, "checksum_edited": row.checksum_edited}),
            );
            report.edited_history_rows.push(row);
        }
        Ok(true)
    }

    fn helm_back(
        &self,
        h: &Helm,
        release: &str,
        ns: &str,
        to: Option<u64>,
    ) -> Result<serde_json::Value> {
        match to {
            Some(rev) => {
                if h.revision(release, ns)? != Some(rev) {
                    h.rollback(release, ns, rev)?;
                }
                Ok(json!({"release": release, "namespace": ns, "rolled_back_to": rev}))
            }
            None => {
                h.uninstall(release, ns)?;
                Ok(json!({"release": release, "namespace": ns, "uninstalled": true}))
            }
        }
    }

    /// Rollback: revert an interrupted apply, or go back to a retained release.
    pub fn rollback(
        &self,
        to: Option<&semver::Version>,
        restore_snapshot: bool,
    ) -> Result<RollbackReport> {
        tool::check_setpriv()?;
        self.sd.ensure()?;
        let _lock = SiteLock::take(&self.sd, "rollback")?;
        let mut state = self.sd.load()?;
        if let Some(p) = &state.pending {
            // never race a worker of the interrupted operation; the undo
            // records its own children under the same operation
            tool::stop_leftovers(&self.sd, &p.op_id)?;
            tool::record_children(&self.sd, &p.op_id);
        }
        let mut report = RollbackReport {
            from: state.installed.as_ref().map(|v| v.to_string()),
            ..RollbackReport::default()
        };
        if let Some(p) = state.pending.clone() {
            if p.op == OpKind::Apply {
                if let Some(t) = to {
                    if Some(t) != p.from.as_ref() {
                        return Err(UpdaterError::Refused(format!(
                            "an interrupted apply of {} is pending; revert it first: `{}`",
                            p.to.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                            hint(&self.cfg.path, "rollback")
                        )));
                    }
                }
                self.undo_pending(&mut state, restore_snapshot, &mut report)?;
                let _ = self.sd.history(json!({"op": "rollback", "from": p.to.as_ref().map(|v| v.to_string()), "to": p.from.as_ref().map(|v| v.to_string()), "outcome": "reverted interrupted apply"}));
                if let Err(e) = self.prune(&mut state) {
                    eprintln!("stoa-updater: warning: prune: {e}");
                }
                report.reverted_interrupted_apply = true;
                report.from = p.to.as_ref().map(|v| v.to_string());
                report.to = p.from.as_ref().map(|v| v.to_string());
                return Ok(report);
            }
        }
        // target: --to, a pending rollback's target, or the previous release
        let target = match (&state.pending, to) {
            (Some(p), _) => p.to.clone().ok_or_else(|| {
                UpdaterError::NothingToRollBack("pending rollback without target".into())
            })?,
            (None, Some(t)) => t.clone(),
            (None, None) => {
                let n = state.releases.len();
                if n < 2 {
                    return Err(UpdaterError::NothingToRollBack(
                        "no earlier retained release".into(),
                    ));
                }
                state.releases[n - 2].version.clone()
            }
        };
        let Some(ti) = state.releases.iter().position(|r| r.version == target) else {
            return Err(UpdaterError::NothingToRollBack(format!(
                "{target} is not a retained release (retained: {})",
                state
                    .releases
                    .iter()
                    .map(|r| r.version.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if state.installed.as_ref() == Some(&target) && state.pending.is_none() {
            return Err(UpdaterError::NothingToRollBack(format!(
                "{target} is already installed"
            )));
        }
        let undone: Vec<ReleaseRecord> = state.releases[ti + 1..].to_vec();
        let target_m = stage::load_release(&self.sd, &target)?;
        let undone_m: Vec<BundleManifest> = undone
            .iter()
            .map(|r| stage::load_release_checked(&self.sd, &r.version, &r.manifest_sha256))
            .collect::<Result<_>>()?;
        // (database, id) → the undone release that ran it, for its verified
        // down step
        let mut ran_by: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (i, r) in undone.iter().enumerate() {
            for (dbname, ids) in &r.migrations {
                for id in ids {
                    ran_by.insert((dbname.clone(), id.clone()), i);
                }
            }
        }
        let verified = |dbname: &str, id: &str| -> Result<Option<VerifiedStep>> {
            match ran_by.get(&(dbname.to_owned(), id.to_owned())) {
                Some(i) => Ok(self
                    .verified_step(&undone_m[*i], dbname, id)?
                    .filter(|v| v.down.is_some())),
                None => Ok(None),
            }
        };

        // plan the database part first: down steps, or a confirmed snapshot
        let mut db_plan: BTreeMap<String, (Vec<String>, Option<PathBuf>)> = BTreeMap::new();
        for r in undone.iter().rev() {
            for (dbname, ids) in &r.migrations {
                let e = db_plan.entry(dbname.clone()).or_default();
                e.0.extend(ids.iter().rev().cloned());
            }
        }
        for r in &undone {
            for (dbname, snap) in &r.snapshots {
                if let Some(e) = db_plan.get_mut(dbname) {
                    if e.1.is_none() {
                        e.1 = Some(snap.clone());
                    }
                }
            }
        }
        let mut use_snapshot: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (dbname, (ids, snap)) in &db_plan {
            let dbc = self
                .cfg
                .databases
                .get(dbname)
                .ok_or(UpdaterError::MissingSection {
                    section: format!("databases.{dbname}"),
                })?;
            let now = db::applied(dbname, &dbc.url)?;
            let mut missing: Vec<&String> = Vec::new();
            for id in ids.iter().filter(|id| now.contains_key(*id)) {
                if verified(dbname, id)?.is_none() {
                    missing.push(id);
                }
            }
            if !missing.is_empty() {
                let snap = snap.clone().ok_or_else(|| UpdaterError::Database {
                    database: dbname.clone(),
                    step: "rollback".into(),
                    reason: format!(
                        "migration(s) {missing:?} have no down step and there is no snapshot"
                    ),
                })?;
                if !restore_snapshot {
                    let again = match (&state.pending, to) {
                        (None, Some(t)) => format!("rollback --to {t} --restore-snapshot"),
                        _ => "rollback --restore-snapshot".to_owned(),
                    };
                    return Err(UpdaterError::NeedsConfirmation(format!(
                        "database {dbname}: migration(s) {} have no down step; rolling back to {target} restores the snapshot {} taken before they ran. Data written since then is LOST. To confirm: `{}`",
                        missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                        snap.display(),
                        hint(&self.cfg.path, &again)
                    )));
                }
                use_snapshot.insert(dbname.clone(), snap);
            }
        }

        if state.pending.is_none() {
            state.pending = Some(Pending {
                op: OpKind::Rollback,
                op_id: format!("{}-{}", now_rfc3339(), std::process::id()),
                started_at: now_rfc3339(),
                from: state.installed.clone(),
                to: Some(target.clone()),
                manifest_sha256: None,
                steps: Vec::new(),
                record: ReleaseRecord::default(),
                migrations_before: BTreeMap::new(),
                failed: None,
            });
            self.save(&state)?;
            if let Some(p) = &state.pending {
                tool::record_children(&self.sd, &p.op_id);
            }
        }
        report.to = Some(target.to_string());
        let mut edited = RollbackReport::default();
        let res = (|| -> Result<()> {
            // helm: each release back to its revision before the earliest undone apply
            let mut helm_targets: Vec<(String, String, Option<u64>)> = Vec::new();
            for r in undone.iter().rev() {
                for h in r.helm.iter().rev() {
                    if let Some(e) = helm_targets
                        .iter_mut()
                        .find(|(rel, ns, _)| rel == &h.release && ns == &h.namespace)
                    {
                        e.2 = h.before;
                    } else {
                        helm_targets.push((h.release.clone(), h.namespace.clone(), h.before));
                    }
                }
            }
            let mut helm: Option<Helm> = None;
            for (rel, ns, rev) in &helm_targets {
                let name = format!("rollback:helm:{rel}");
                let v = self
                    .step(&mut state, &name, |site, _| {
                        if helm.is_none() {
                            let hc =
                                site.cfg.helm.as_ref().ok_or(UpdaterError::MissingSection {
                                    section: "helm".into(),
                                })?;
                            helm = Some(Helm::new(hc)?);
                        }
                        match &helm {
                            Some(h) => site.helm_back(h, rel, ns, *rev).map(Some),
                            None => Ok(None),
                        }
                    })
                    .map_err(|e| UpdaterError::RollbackFailed {
                        step: name.clone(),
                        cause: Box::new(e),
                    })?;
                if let Some(v) = v {
                    report.helm.push(v);
                }
            }
            for (dbname, (ids, _)) in &db_plan {
                let name = format!("rollback:migrate:{dbname}");
                let dbc = self.cfg.databases.get(dbname).cloned().ok_or(
                    UpdaterError::MissingSection {
                        section: format!("databases.{dbname}"),
                    },
                )?;
                let snap = use_snapshot.get(dbname).cloned();
                let undone_ids = self
                    .step(&mut state, &name, |site, st| {
                        if let Some(snap) = &snap {
                            db::restore(dbname, &dbc.url, snap)?;
                            return Ok(Vec::new());
                        }
                        let p = pending(st)?.clone();
                        // resumed: skip what is undone already (down steps
                        // run, or a snapshot restored before a kill)
                        let now = db::applied(dbname, &dbc.url)?;
                        let mut out = Vec::new();
                        for id in ids.iter().filter(|id| now.contains_key(*id)) {
                            let vs =
                                verified(dbname, id)?.ok_or_else(|| UpdaterError::Database {
                                    database: dbname.clone(),
                                    step: format!("down migration {id}"),
                                    reason: "no verified down step".into(),
                                })?;
                            if site.run_verified_down(&p, dbname, &dbc.url, id, &vs, &mut edited)? {
                                out.push(id.clone());
                            }
                        }
                        Ok(out)
                    })
                    .map_err(|e| UpdaterError::RollbackFailed {
                        step: name.clone(),
                        cause: Box::new(e),
                    })?;
                if let Some(s) = snap {
                    report.snapshots_restored.insert(dbname.clone(), s);
                } else {
                    report.migrations_undone.insert(dbname.clone(), undone_ids);
                }
            }
            self.step(&mut state, "rollback:files", |site, _| {
                site.sync_files(Some(&target_m), &undone_m)
            })
            .map_err(|e| UpdaterError::RollbackFailed {
                step: "rollback:files".into(),
                cause: Box::new(e),
            })?;
            Ok(())
        })();
        report.edited_history_rows = edited.edited_history_rows;
        if let Err(e) = res {
            if let Ok(p) = pending(&mut state) {
                p.failed = Some(e.to_string());
            }
            let _ = self.save(&state);
            return Err(e);
        }
        let p = pending(&mut state)?.clone();
        self.journal(&p, "rollback:commit", "begin", json!({}))?;
        state.releases.truncate(ti + 1);
        state.installed = Some(target.clone());
        state.pending = None;
        self.save(&state)?;
        self.journal(&p, "rollback:commit", "done", json!({}))?;
        self.sd.history(json!({
            "op": "rollback", "from": p.from.as_ref().map(|v| v.to_string()), "to": target.to_string(),
            "outcome": "rolled back", "helm": report.helm, "migrations_undone": report.migrations_undone,
            "snapshots_restored": report.snapshots_restored,
        }))?;
        crash_hook("rollback:commit");
        // the rolled-back releases' snapshots and staged content go now
        if let Err(e) = self.prune(&mut state) {
            eprintln!("stoa-updater: warning: prune: {e}");
        }
        Ok(report)
    }

    /// Keeps the newest `keep_releases` records (dropping the others'
    /// snapshots), then removes staged release folders of releases no longer
    /// retained (pruned or rolled back), leftovers of killed runs, store
    /// blobs no retained release uses, and snapshots no retained release
    /// records (those of failed, reverted and rolled-back applies). Runs
    /// under the lock, after an apply's commit, a rollback and a revert;
    /// never while an operation is pending (its snapshots may be needed).
    fn prune(&self, state: &mut State) -> Result<Vec<String>> {
        let keep = self.cfg.keep_releases;
        let mut names = Vec::new();
        if state.releases.len() > keep {
            let drop_n = state.releases.len() - keep;
            let dropped: Vec<ReleaseRecord> = state.releases.drain(..drop_n).collect();
            self.save(state)?;
            for r in &dropped {
                for s in r.snapshots.values() {
                    let _ = fs::remove_file(s);
                }
                names.push(r.version.to_string());
            }
        }
        if state.pending.is_some() {
            return Ok(names);
        }
        let retained: BTreeSet<String> = state
            .releases
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        let mut used: BTreeSet<String> = BTreeSet::new();
        if let Ok(rd) = fs::read_dir(self.sd.root.join("releases")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !retained.contains(&n) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        // what every retained release uses; if one cannot be read, delete
        // nothing from the store (a rollback to it would need its content)
        for v in state.releases.iter().map(|r| &r.version) {
            let m = stage::load_release(&self.sd, v)?;
            used.extend(m.entries.iter().map(|e| e.sha256.hex()));
        }
        if let Ok(rd) = fs::read_dir(self.sd.store_dir()) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !used.contains(&n) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        for f in self.snapshot_usage(state).removable {
            let _ = fs::remove_file(f);
        }
        if !names.is_empty() {
            self.sd
                .history(json!({"op": "prune", "outcome": "pruned", "releases": names}))?;
        }
        Ok(names)
    }

    /// The snapshot files and which of them are still needed: those a
    /// retained release or the pending operation records. The others
    /// (`removable`) are left by failed, reverted and rolled-back applies;
    /// the next prune deletes them.
    pub fn snapshot_usage(&self, state: &State) -> SnapshotUsage {
        let mut needed: BTreeSet<std::ffi::OsString> = BTreeSet::new();
        let records = state
            .releases
            .iter()
            .chain(state.pending.as_ref().map(|p| &p.record));
        for r in records {
            for f in r.snapshots.values() {
                if let Some(n) = f.file_name() {
                    needed.insert(n.to_owned());
                }
            }
        }
        let mut u = SnapshotUsage::default();
        if let Ok(rd) = fs::read_dir(self.sd.snapshots_dir()) {
            for e in rd.flatten() {
                let Ok(md) = e.metadata() else { continue };
                if !md.is_file() {
                    continue;
                }
                u.count += 1;
                u.bytes += md.len();
                if !needed.contains(&e.file_name()) {
                    u.removable.push(e.path());
                }
            }
        }
        u.removable.sort();
        u
    }

    /// The refusal when another operation is pending: what works for it.
    pub fn pending_refusal(&self, p: &Pending) -> UpdaterError {
        let at = p.current_step().map(|s| s.name.as_str()).unwrap_or("start");
        let to =
            p.to.as_ref()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into());
        UpdaterError::Refused(match p.op {
            OpKind::Apply => format!(
                "an interrupted apply to {to} is pending (stopped at {at}): to resume it, apply that same bundle (`{}`); to revert it, `{}`",
                hint(&self.cfg.path, "apply <the same bundle>"),
                hint(&self.cfg.path, "rollback")
            ),
            OpKind::Rollback => format!(
                "an interrupted rollback to {to} is pending (stopped at {at}): finish it first with `{}`",
                hint(&self.cfg.path, "rollback")
            ),
        })
    }

    /// An applied migration whose checksum differs from the bundle's (someone
    /// edited it) is refused the same way by plan and apply, exit 5, before
    /// anything on the site changes. A database that cannot be read here is
    /// left to the migrate step to report.
    pub fn check_edited_migrations(&self, m: &BundleManifest) -> Result<()> {
        for set in &m.migrations {
            let Some(dbc) = self.cfg.databases.get(&set.database) else {
                continue;
            };
            let Ok(applied) = db::applied(&set.database, &dbc.url) else {
                continue;
            };
            for st in &set.steps {
                let sum = m.entry(&st.up).map(|e| e.sha256.hex()).unwrap_or_default();
                if let Some(a) = applied.get(&st.id) {
                    if a.checksum != sum {
                        return Err(UpdaterError::MigrationEdited {
                            database: set.database.clone(),
                            migration: format!("{}_{}", st.id, st.name),
                            checksums: format!(
                                "already applied with checksum {}, the bundle's is {sum}",
                                a.checksum
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn file_dest(&self, dest: &str) -> Result<PathBuf> {
        let p = Path::new(dest);
        if p.components().any(|c| !matches!(c, Component::Normal(_))) || dest.is_empty() {
            return Err(UpdaterError::InstallFile {
                dest: dest.into(),
                reason: "not a plain relative path".into(),
            });
        }
        Ok(self.cfg.files_dir().join(p))
    }

    /// The destination of a file, with every folder between `files_dir` and
    /// it created when missing and checked to be a real folder: a symlink
    /// (to a folder outside `files_dir`, say) is refused, never followed. A
    /// symlink at the destination itself is replaced (rename) or removed,
    /// never written through.
    fn file_dest_checked(&self, dest: &str, create: bool) -> Result<Option<PathBuf>> {
        let full = self.file_dest(dest)?;
        let mut dir = self.cfg.files_dir();
        let rel = Path::new(dest);
        let parents: Vec<_> = rel
            .parent()
            .map(|p| p.components().collect())
            .unwrap_or_default();
        for c in parents {
            dir.push(c);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UpdaterError::InstallFile {
                        dest: dest.into(),
                        reason: format!(
                            "{} is a symlink; refusing to follow it out of files_dir",
                            dir.display()
                        ),
                    })
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(UpdaterError::InstallFile {
                        dest: dest.into(),
                        reason: format!("{} is not a folder", dir.display()),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    match fs::create_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            return Err(UpdaterError::InstallFile {
                                dest: dest.into(),
                                reason: format!("create {}: {e}", dir.display()),
                            })
                        }
                    }
                    // created by someone else in between: check it again
                    if fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
                        return Err(UpdaterError::InstallFile {
                            dest: dest.into(),
                            reason: format!("{} is not a folder", dir.display()),
                        });
                    }
                }
                Err(e) => {
                    return Err(UpdaterError::InstallFile {
                        dest: dest.into(),
                        reason: format!("{}: {e}", dir.display()),
                    })
                }
            }
        }
        Ok(Some(full))
    }

    fn install_file(
        &self,
        m: &BundleManifest,
        f: &stoa_format::manifest::FileRecord,
    ) -> Result<()> {
        let ierr = |reason: String| UpdaterError::InstallFile {
            dest: f.dest.clone(),
            reason,
        };
        let files_dir = self.cfg.files_dir();
        fs::create_dir_all(&files_dir)
            .map_err(|e| ierr(format!("create {}: {e}", files_dir.display())))?;
        let dest = self
            .file_dest_checked(&f.dest, true)?
            .ok_or_else(|| ierr("no destination".into()))?;
        let mode = u32::from_str_radix(f.mode.trim_start_matches("0o"), 8)
            .map_err(|_| ierr(format!("mode {:?} is not octal", f.mode)))?;
        let src = entry_blob(&self.sd, m, &f.path)?;
        let dir = dest.parent().unwrap_or(Path::new("/")).to_owned();
        let tmp = dir.join(format!(
            ".{}.stoa-tmp-{}",
            dest.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let res = (|| -> io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut r = fs::File::open(&src)?;
            let _ = fs::remove_file(&tmp);
            let mut w = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            io::copy(&mut r, &mut w)?;
            use std::os::unix::fs::PermissionsExt;
            w.set_permissions(fs::Permissions::from_mode(mode))?;
            w.sync_all()?;
            fs::rename(&tmp, &dest)?;
            fs::File::open(&dir)?.sync_all()
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(|e| ierr(e.to_string()))
    }

    /// Makes the files dir hold `target`'s files: installs them, and removes
    /// files of `others` that `target` does not have.
    fn sync_files(&self, target: Option<&BundleManifest>, others: &[BundleManifest]) -> Result<()> {
        let mut keep = BTreeSet::new();
        if let Some(t) = target {
            for f in &t.files {
                self.install_file(t, f)?;
                keep.insert(f.dest.clone());
            }
        }
        for o in others {
            for f in &o.files {
                if !keep.contains(&f.dest) {
                    let Some(d) = self.file_dest_checked(&f.dest, false)? else {
                        continue;
                    };
                    match fs::remove_file(&d) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(UpdaterError::InstallFile {
                                dest: f.dest.clone(),
                                reason: format!("remove: {e}"),
                            })
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// SemVer precedence, the one comparison of the version policy: build
/// metadata has none (`1.1.0+b2` is not newer than `1.1.0`).
pub fn is_newer(new: &semver::Version, cur: &semver::Version) -> bool {
    new.cmp_precedence(cur) == std::cmp::Ordering::Greater
}

fn mname_of(db: &str) -> String {
    format!("migrate:{db}")
}

fn pending(state: &mut State) -> Result<&mut Pending> {
    state
        .pending
        .as_mut()
        .ok_or_else(|| UpdaterError::StateCorrupt {
            path: PathBuf::from("state.json"),
            reason: "no pending operation where one was expected".into(),
        })
}

/// Opens a bundle that must be a regular file: apply reads it twice
/// (signature, then content while staging), which a FIFO, `/dev/stdin` or
/// `<(…)` cannot give; refused at once instead of hanging.
/// The files a bundle source reads: the bundle, or the parts present.
fn bundle_files(src: &BundleSource) -> Vec<&Path> {
    match src {
        BundleSource::File(p) => vec![p.as_path()],
        BundleSource::Parts(s) => s
            .files
            .iter()
            .chain(s.parity_files.iter())
            .flatten()
            .map(|p| p.as_path())
            .collect(),
    }
}

/// Refuses a bundle file that is not a regular file (a FIFO, `/dev/stdin`
/// from a pipe, a device), without opening it: opening a FIFO without a
/// writer would block.
pub fn check_regular(bundle: &Path) -> Result<()> {
    let bad = |e| UpdaterError::OpenBundle {
        path: bundle.to_owned(),
        source: e,
    };
    let ft = fs::metadata(bundle).map_err(bad)?.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_fifo() {
            "a pipe"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_dir() {
            "a folder"
        } else {
            "not a file"
        };
        return Err(UpdaterError::BundleNotRegular {
            path: bundle.to_owned(),
            kind: kind.into(),
        });
    }
    Ok(())
}

fn read_text(p: &Path) -> Result<String> {
    fs::read_to_string(p).map_err(|e| UpdaterError::io("read staged migration", p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_metadata_is_not_newer() {
        let v = |s: &str| semver::Version::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(!is_newer(&v("1.1.0+b2"), &v("1.1.0")));
        assert!(!is_newer(&v("1.1.0"), &v("1.1.0+b2")));
        assert!(!is_newer(&v("1.1.0+b1"), &v("1.1.0+b2")));
        assert!(!is_newer(&v("1.1.0-rc.1"), &v("1.1.0")));
        assert!(is_newer(&v("1.1.0"), &v("1.1.0-rc.1")));
        assert!(is_newer(&v("1.1.1+b0"), &v("1.1.0+b9")));
    }
}
