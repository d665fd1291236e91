//! Apply: verify and stage the bundle, then the journaled steps, then commit;
//! on failure, the automatic revert (or the state left for inspection).

use std::collections::BTreeMap;

use serde_json::json;
use stoa_format::source::{inspect_source, BundleSource};
use stoa_format::{BundleManifest, Limits};

use crate::config::hint;
use crate::db;
use crate::error::{Result, UpdaterError};
use crate::helm::Helm;
use crate::registry::{self};
use crate::stage::{self, chart_file_name, entry_blob};
use crate::state::{
    now_rfc3339, HelmRecord, OpKind, Pending, ReleaseRecord, SiteLock, State, StepRecord,
};
use crate::tool;

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

    pub(crate) fn apply_steps(
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
            let reg = self.cfg.registry.as_ref().map(registry::site_registry_ref);
            for c in &m.charts {
                let hname = format!("helm:{}", c.release);
                self.step(state, &hname, |site, st| {
                    if helm.is_none() {
                        helm = Some(Helm::new(hc)?);
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
                    h.upgrade(&c.release, &c.namespace, &chart, reg.as_deref())?;
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
}
