//! Apply: verify and stage the bundle, then the journaled steps, then commit;
//! on failure, the automatic revert (or the state left for inspection).

use std::collections::BTreeMap;

use serde_json::json;
use stoa_format::root::SignedRoot;
use stoa_format::source::{inspect_source, BundleSource};
use stoa_format::{BundleManifest, Limits};

use crate::config::hint;
use crate::db::MigrationUp;
use crate::error::{Result, UpdaterError};
use crate::helm::ChartUpgrade;
use crate::stage::{self, chart_file_name, entry_blob};
use crate::state::{
    now_rfc3339, HelmRecord, OpKind, Pending, ReleaseRecord, SiteLock, State, StepRecord,
};
use crate::tool;

use super::plan::{Plan, Probe};
use crate::records::{ApplyHistory, HistoryEntry, JournalLine};

use super::*;

impl Site {
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
        let (trust, chain) = base.resolve(&head.anchors, now)?;
        crate::audit::note_root(chain.last().map_or(base.version(), |r| r.version()));
        head.check_signatures(&trust)
            .map_err(|e| crate::trust::explain_revoked(&self.sd, &chain, e))?;
        self.cfg.check_needs(&head.manifest)?;
        self.sd.ensure()?;
        // policy first on the state as read, again under the lock
        let _lock = SiteLock::take(&self.sd, "apply")?;
        let mut state = self.sd.load()?;
        let sha = head.manifest_sha256.hex();
        // never race a worker of the interrupted run when resuming it
        let resumed = self
            .admit(
                &state,
                &head.manifest,
                &sha,
                opts.allow_downgrade,
                &mut |p| tool::stop_leftovers(&self.sd, &p.op_id).map(drop),
            )?
            .resumed();
        // `"bundled"` Helm and kubectl are the bundle's own: from the store
        // when it already holds them (the signed digest re-checked), else
        // the preflight waits until they are verified and staged
        let tools_dir = crate::bundled::tools_dir(&self.sd);
        let at = crate::bundled::Place::site(&self.sd, &tools_dir);
        let early = self.with_tools_of(&head.manifest, at)?;
        let waiting = early
            .as_ref()
            .and_then(|s| s.cfg.helm.as_ref())
            .is_some_and(|h| h.bundled.waiting());
        // the site can take this release: checked before any change
        let preflight = match waiting {
            false => Some(crate::preflight::gate(
                &early.as_ref().unwrap_or(self).cfg,
                &self.sd,
                &head.manifest,
            )?),
            true => None,
        };

        // verify fully while staging; nothing on site has changed yet but
        // blobs pushed as soon as their own digest was checked (no manifest,
        // no tag: nothing names them before the push step)
        let pushing =
            match super::plan::apply_steps(&head.manifest, &self.cfg).contains(&Step::PushImages) {
                true => self
                    .drivers
                    .registry
                    .push_while_staging(&self.sd, &head.manifest),
                false => None,
            };
        let size = bundle.size();
        let mut done = 0u64;
        let t0 = std::time::Instant::now();
        let staged = stage::verify_and_stage(
            bundle,
            &trust,
            &Self::verify_options(opts.allow_expired),
            &self.sd,
            pushing.as_ref().and_then(|e| e.sender()),
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
        let stage_seconds = t0.elapsed().as_secs_f64();
        crate::audit::note_bundle(&staged.verified);
        // verified: its creation time is accepted; its roots are, by the
        // journaled `trust` step
        let r = &staged.verified.manifest.release;
        let t = r.created.time();
        crate::trust::raise_floor(&self.sd, t, &format!("bundle {} {}", r.name, r.version))?;
        let m = staged.verified.manifest.clone();
        let site = early.as_ref().unwrap_or(self);
        let preflight = match preflight {
            Some(p) => p,
            None => crate::preflight::gate(&site.cfg, &self.sd, &m)?,
        };
        // every chart renders with every image from the site registry, and
        // (Helm 3) no hook image leaves it unless accepted: before any change
        crate::postrender::preflight(
            &site.cfg,
            &self.sd,
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
            stage_seconds,
            preflight,
            ..ApplyReport::default()
        };
        // what was pushed while staging, waited for (the push step finds
        // it present and counts it once)
        if let Some(e) = pushing {
            let t = std::time::Instant::now();
            report.pushed_while_staging = e.finish();
            report.push = report.pushed_while_staging.clone();
            report.push_seconds = t.elapsed().as_secs_f64();
        }
        site.execute_apply(&mut state, &m, &sha, &chain, opts, &mut report, progress)?;
        Ok(report)
    }

    /// Runs the apply of a verified, staged release: records it as pending
    /// (or resumes the pending one), runs the plan's steps, commits, then
    /// prunes. On failure: the automatic revert, or the state left for
    /// inspection. `roots` are the verified roots the bundle carries beyond
    /// the site's (accepted by the `trust` step). The unit tests' kill
    /// matrix enters here.
    #[allow(clippy::too_many_arguments)]
    pub fn execute_apply(
        &self,
        state: &mut State,
        m: &BundleManifest,
        sha: &str,
        roots: &[SignedRoot],
        opts: &ApplyOptions,
        report: &mut ApplyReport,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<()> {
        // the same computation `plan` prints; apply runs exactly its steps
        let mut plan = Plan::compute(self, m, state, Probe::Databases);
        // a trust change begun by an interrupted run is finished by its resume
        let begun = state
            .pending
            .as_ref()
            .is_some_and(|p| p.step_begun(&Step::Trust));
        if crate::trust::change_of(&self.sd, roots).is_some() || begun {
            plan.accept_trust();
        }
        if report.resumed {
            let p = pending(state)?;
            p.failed = None;
            let p = p.clone();
            tool::record_children(&self.sd, &p.op_id);
            self.save(state)?;
            self.journal(&p, &Step::Resume, "begin", json!({}))?;
        } else {
            plan.refuse_edited()?;
            self.begin_apply(state, m, sha, opts)?;
        }
        if let Err((step, e)) = self.apply_steps(state, m, &plan.steps, roots, report, progress) {
            return Err(self.apply_failed(state, m, step, e, opts));
        }
        // prune (after commit; a failure here is reported, not fatal)
        match self.prune(state) {
            Ok(p) => report.pruned = p,
            Err(e) => eprintln!("stoa-updater: warning: prune: {e}"),
        }
        Ok(())
    }

    /// Records a new apply as pending, its `stage` step done.
    fn begin_apply(
        &self,
        state: &mut State,
        m: &BundleManifest,
        sha: &str,
        opts: &ApplyOptions,
    ) -> Result<()> {
        let op_id = format!("{}-{}", now_rfc3339(), std::process::id());
        state.pending = Some(Pending {
            op: OpKind::Apply,
            op_id,
            started_at: now_rfc3339(),
            from: state.installed.clone(),
            to: Some(m.release.version.clone()),
            manifest_sha256: Some(sha.to_owned()),
            bundle: opts.bundle.clone(),
            restore_snapshot: false,
            steps: vec![StepRecord {
                name: Step::Stage,
                done: true,
            }],
            record: ReleaseRecord {
                name: Some(m.release.name.clone()),
                version: m.release.version.clone(),
                manifest_sha256: sha.to_owned(),
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
        self.save(state)?;
        let p = pending(state)?.clone();
        tool::record_children(&self.sd, &p.op_id);
        self.journal(&p, &Step::Stage, "done", json!({"from": p.from.as_ref().map(|v| v.to_string()), "allow_downgrade": p.record.allow_downgrade}))?;
        self.crash_hook(&Step::Stage);
        Ok(())
    }

    /// The `trust` step: the change journaled (versions, keys added and
    /// revoked), then audited and the newest root persisted; the version in
    /// force is recorded in the release record.
    fn accept_trust(&self, state: &mut State, roots: &[SignedRoot]) -> Result<()> {
        if let Some(c) = crate::trust::change_of(&self.sd, roots) {
            let detail = serde_json::to_value(&c).unwrap_or_default();
            self.journal(pending(state)?, &Step::Trust, "accept", detail)?;
        }
        crate::trust::accept_roots(&self.sd, roots)?;
        pending(state)?.record.trust_root = crate::trust::persisted_version(&self.sd);
        Ok(())
    }

    /// The plan's steps, each journaled, then the commit.
    fn apply_steps(
        &self,
        state: &mut State,
        m: &BundleManifest,
        steps: &[Step],
        roots: &[SignedRoot],
        report: &mut ApplyReport,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> std::result::Result<(), (String, UpdaterError)> {
        for step in steps {
            // each step announced as it begins (a byte count for the push)
            let total = match step {
                Step::PushImages => m.images.iter().map(|i| i.size).sum(),
                _ => 0,
            };
            progress(&step.to_string(), 0, total);
            self.apply_step(state, m, step, roots, report, progress)
                .map_err(|e| (step.to_string(), e))?;
        }
        self.commit_apply(state, m, report)
            .map_err(|e| (Step::Commit.to_string(), e))
    }

    /// One step of apply, skipped when already done.
    fn apply_step(
        &self,
        state: &mut State,
        m: &BundleManifest,
        step: &Step,
        roots: &[SignedRoot],
        report: &mut ApplyReport,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<()> {
        match step {
            Step::Trust => self.step(state, step, |site, st| site.accept_trust(st, roots))?,
            Step::PushImages => {
                let total: u64 = m.images.iter().map(|i| i.size).sum();
                let t0 = std::time::Instant::now();
                let step_stats = self.step(state, step, |site, _| {
                    let mut done = 0u64;
                    site.drivers.registry.push_release(&site.sd, m, &mut |n| {
                        done += n;
                        progress(&Step::PushImages.to_string(), done, total);
                    })
                })?;
                report.push = std::mem::take(&mut report.push).then(step_stats);
                report.push_seconds += t0.elapsed().as_secs_f64();
            }
            Step::Snapshot(db) => self.step(state, step, |site, st| site.snapshot_db(st, m, db))?,
            Step::Migrate(db) => self.step(state, step, |site, st| site.migrate_db(st, m, db))?,
            Step::Helm(release) => {
                self.step(state, step, |site, st| site.helm_upgrade(st, m, release))?
            }
            Step::Files => {
                self.step(state, step, |site, _| site.install_files(m))?;
                report.files = m.files.iter().map(|f| f.dest.clone()).collect();
            }
            other => {
                return Err(UpdaterError::StateCorrupt {
                    path: self.sd.state_path(),
                    reason: format!("{other} is not a step of apply"),
                })
            }
        }
        Ok(())
    }

    pub(crate) fn db_config(&self, db: &str) -> Result<crate::config::DatabaseConfig> {
        self.cfg
            .databases
            .get(db)
            .cloned()
            .ok_or(UpdaterError::MissingSection {
                section: format!("databases.{db}"),
            })
    }

    /// `snapshot:{db}`: pg_dump before migrating (kept when a killed run
    /// took it already).
    fn snapshot_db(&self, st: &mut State, m: &BundleManifest, name: &str) -> Result<()> {
        let dbc = self.db_config(name)?;
        let p = pending(st)?;
        let file = self.sd.snapshots_dir().join(format!(
            "{}-{}-{}.dump",
            m.release.version,
            name,
            &p.op_id.replace([':', ' '], "")
        ));
        if !file.exists() {
            self.drivers.database.snapshot(name, &dbc.url, &file)?;
        }
        p.record.snapshots.insert(name.to_owned(), file);
        Ok(())
    }

    /// `migrate:{db}`: the pending migrations, each recorded as it runs.
    fn migrate_db(&self, st: &mut State, m: &BundleManifest, name: &str) -> Result<()> {
        let dbc = self.db_config(name)?;
        let Some(set) = m.migrations.iter().find(|s| s.database == name) else {
            return Ok(());
        };
        let applied = self.drivers.database.applied(name, &dbc.url)?;
        {
            let p = pending(st)?;
            if !p.migrations_before.contains_key(name) {
                p.migrations_before
                    .insert(name.to_owned(), applied.keys().cloned().collect());
            }
        }
        self.save(st)?;
        for s in &set.steps {
            let e = m.listed(&s.up).ok_or_else(|| UpdaterError::Database {
                database: name.to_owned(),
                step: s.id.to_string(),
                reason: "up step is not in the bundle".into(),
            })?;
            let checksum = e.sha256.hex();
            if let Some(a) = applied.get(s.id.as_str()) {
                if a.checksum != checksum {
                    return Err(UpdaterError::Database {
                        database: name.to_owned(),
                        step: format!("migration {}_{}", s.id, s.name),
                        reason: format!(
                            "already applied with checksum {}, the bundle's is {checksum}: an applied migration was edited; refusing",
                            a.checksum
                        ),
                    });
                }
                self.record_if_ran_here(st, name, &s.id)?;
                continue;
            }
            let up = read_text(&self.sd.blob(&checksum))?;
            let down = match &s.down {
                Some(d) => Some(read_text(&entry_blob(&self.sd, m, d)?)?),
                None => None,
            };
            self.journal(
                pending(st)?,
                &Step::Migrate(name.to_owned()),
                "migration",
                json!({"id": s.id, "name": s.name}),
            )?;
            self.drivers.database.migrate_up(&MigrationUp {
                database: name,
                url: &dbc.url,
                id: s.id.as_str(),
                name: &s.name,
                sql: &up,
                checksum: &checksum,
                down: down.as_deref(),
                release: &m.release.version.to_string(),
            })?;
            self.crash_hook(&format!("migration-run:{name}:{}", s.id));
            let p = pending(st)?;
            p.record
                .migrations
                .entry(name.to_owned())
                .or_default()
                .push(s.id.to_string());
            self.save(st)?;
        }
        Ok(())
    }

    /// A migration run by this apply before a kill, not yet recorded: record
    /// it now, or a later rollback would miss it.
    fn record_if_ran_here(&self, st: &mut State, name: &str, id: &str) -> Result<()> {
        let p = pending(st)?;
        let ran_here = !p
            .migrations_before
            .get(name)
            .is_some_and(|b| b.iter().any(|x| x == id));
        let recorded = p
            .record
            .migrations
            .get(name)
            .is_some_and(|r| r.iter().any(|x| x == id));
        if ran_here && !recorded {
            p.record
                .migrations
                .entry(name.to_owned())
                .or_default()
                .push(id.to_owned());
            self.save(st)?;
        }
        Ok(())
    }

    /// `helm:{release}`: records the revision before, upgrades, records after.
    fn helm_upgrade(&self, st: &mut State, m: &BundleManifest, release: &str) -> Result<()> {
        let Some(c) = m.charts.iter().find(|c| c.release == release) else {
            return Ok(());
        };
        let charts = &self.drivers.charts;
        // recorded by an earlier run of this apply: our upgrade may have been
        // killed during --wait, leaving the release pending; recover it
        // (a pending release we did not start is refused, untouched)
        let ours = pending(st)?
            .record
            .helm
            .iter()
            .find(|r| r.release == c.release && r.namespace == c.namespace)
            .map(|r| r.before);
        if let Some(before) = ours {
            if let Some(done) =
                charts.recover_interrupted(&c.release, &c.namespace, before, true)?
            {
                let p = pending(st)?.clone();
                self.journal(
                    &p,
                    &Step::Helm(c.release.clone()),
                    "recovered",
                    json!({"what": done}),
                )?;
            }
        } else {
            charts.recover_interrupted(&c.release, &c.namespace, None, false)?;
            let before = charts.revision(&c.release, &c.namespace)?;
            // --create-namespace: a namespace this first install creates
            // goes again with its undo
            let created_namespace = before.is_none() && !charts.namespace_exists(&c.namespace)?;
            pending(st)?.record.helm.push(HelmRecord {
                release: c.release.clone(),
                namespace: c.namespace.clone(),
                before,
                after: None,
                created_namespace,
            });
            self.save(st)?;
        }
        let chart = self
            .sd
            .release_dir(&m.release.version)
            .join("charts")
            .join(chart_file_name(c));
        let reg = crate::postrender::registry_value(&self.cfg);
        let values = c
            .values
            .iter()
            .map(|v| entry_blob(&self.sd, m, &v.path))
            .collect::<Result<Vec<_>>>()?;
        let post = crate::postrender::PostRenderSetup {
            base: self.cfg.state_dir.join("post-render"),
            images: crate::postrender::site_images(&self.cfg, m)?,
        };
        let up = ChartUpgrade {
            release: &c.release,
            namespace: &c.namespace,
            chart: &chart,
            values: &values,
            registry_value: reg.as_deref(),
        };
        charts.upgrade(&up, &post)?;
        let after = charts.revision(&c.release, &c.namespace)?;
        if let Some(r) = pending(st)?
            .record
            .helm
            .iter_mut()
            .find(|r| r.release == c.release && r.namespace == c.namespace)
        {
            r.after = after;
        }
        Ok(())
    }

    /// `commit`: the release becomes the installed one; history line.
    fn commit_apply(
        &self,
        state: &mut State,
        m: &BundleManifest,
        report: &mut ApplyReport,
    ) -> Result<()> {
        let p = pending(state)?.clone();
        self.journal(&p, &Step::Commit, "begin", json!({}))?;
        let mut rec = p.record.clone();
        rec.applied_at = now_rfc3339();
        state.releases.retain(|r| r.version != rec.version);
        state.releases.push(rec.clone());
        state.installed = Some(rec.version.clone());
        state.pending = None;
        self.save(state)?;
        self.journal(&p, &Step::Commit, "done", json!({}))?;
        self.sd.history(HistoryEntry::Apply(ApplyHistory {
            from: p.from.as_ref().map(|v| v.to_string()),
            to: rec.version.to_string(),
            outcome: "applied".into(),
            resumed: Some(report.resumed),
            allow_downgrade: Some(rec.allow_downgrade),
            allow_expired: Some(rec.allow_expired),
            manifest_sha256: Some(rec.manifest_sha256.clone()),
            migrations: Some(rec.migrations.clone()),
            helm: Some(rec.helm.clone()),
            push: Some((&report.push).into()),
            delta: crate::delta::history_field(m),
            ..ApplyHistory::default()
        }))?;
        self.crash_hook(&Step::Commit);
        report.migrations = rec.migrations.clone();
        report.snapshots = rec.snapshots.clone();
        report.helm = rec.helm.clone();
        Ok(())
    }

    pub(crate) fn apply_failed(
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
        let _ = self.sd.journal(&JournalLine {
            op: p.op,
            op_id: p.op_id.clone(),
            to: p.to.as_ref().map(|v| v.to_string()),
            step: step.clone(),
            event: "failed".into(),
            detail: [("error".to_owned(), json!(msg))].into_iter().collect(),
            time: String::new(),
        });
        let failed = |outcome: &str, rollback_error: Option<String>| {
            HistoryEntry::Apply(ApplyHistory {
                from: p.from.as_ref().map(|v| v.to_string()),
                to: version.clone(),
                outcome: outcome.into(),
                step: Some(step.clone()),
                error: Some(msg.clone()),
                rollback_error,
                ..ApplyHistory::default()
            })
        };
        let cfg = &self.cfg.path;
        let (outcome, history, rollback_error) = if opts.no_auto_rollback {
            let o = format!(
                "left for inspection (--no-auto-rollback): to resume, `{}`; to revert, `{}`",
                p.resume_hint(cfg),
                hint(cfg, "rollback")
            );
            (o, "failed, left for inspection", None)
        } else {
            match self.undo_pending(state, true, &mut RollbackReport::default()) {
                Ok(()) => {
                    let from = p.from.as_ref().map(|v| v.to_string());
                    let from = from.as_deref().unwrap_or("nothing installed");
                    let o = format!("rolled back; the site is on {from}");
                    (o, "failed, rolled back", None)
                }
                Err(e2) => {
                    let o = format!(
                        "automatic rollback also failed ({e2}); see `{}`, then run `{}`",
                        hint(cfg, "status"),
                        hint(cfg, "rollback")
                    );
                    (o, "failed, automatic rollback failed", Some(e2.to_string()))
                }
            }
        };
        let _ = self.sd.history(failed(history, rollback_error));
        UpdaterError::ApplyFailed {
            version,
            step,
            cause: Box::new(cause),
            outcome,
        }
    }
}
