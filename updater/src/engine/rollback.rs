//! Rollback to a retained release: plan the database part, then the
//! journaled rollback steps, then commit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;
use stoa_format::BundleManifest;

use crate::config::hint;
use crate::error::{Result, UpdaterError};
use crate::stage::{self};
use crate::state::{now_rfc3339, OpKind, Pending, ReleaseRecord, SiteLock};
use crate::tool;

use super::*;

impl Site {
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
            let now = self.drivers.database.applied(dbname, &dbc.url)?;
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
            for (rel, ns, rev) in &helm_targets {
                let name = Step::RollbackHelm(rel.clone());
                let v = self
                    .step(&mut state, &name, |site, _| {
                        site.helm_back(rel, ns, *rev).map(Some)
                    })
                    .map_err(|e| UpdaterError::RollbackFailed {
                        step: name.to_string(),
                        cause: Box::new(e),
                    })?;
                if let Some(v) = v {
                    report.helm.push(v);
                }
            }
            for (dbname, (ids, _)) in &db_plan {
                let name = Step::RollbackMigrate(dbname.clone());
                let dbc = self.cfg.databases.get(dbname).cloned().ok_or(
                    UpdaterError::MissingSection {
                        section: format!("databases.{dbname}"),
                    },
                )?;
                let snap = use_snapshot.get(dbname).cloned();
                let undone_ids = self
                    .step(&mut state, &name, |site, st| {
                        if let Some(snap) = &snap {
                            site.drivers.database.restore(dbname, &dbc.url, snap)?;
                            return Ok(Vec::new());
                        }
                        let p = pending(st)?.clone();
                        // resumed: skip what is undone already (down steps
                        // run, or a snapshot restored before a kill)
                        let now = site.drivers.database.applied(dbname, &dbc.url)?;
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
                        step: name.to_string(),
                        cause: Box::new(e),
                    })?;
                if let Some(s) = snap {
                    report.snapshots_restored.insert(dbname.clone(), s);
                } else {
                    report.migrations_undone.insert(dbname.clone(), undone_ids);
                }
            }
            self.step(&mut state, &Step::RollbackFiles, |site, _| {
                site.sync_files(Some(&target_m), &undone_m)
            })
            .map_err(|e| UpdaterError::RollbackFailed {
                step: Step::RollbackFiles.to_string(),
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
        self.journal(&p, &Step::RollbackCommit, "begin", json!({}))?;
        state.releases.truncate(ti + 1);
        state.installed = Some(target.clone());
        state.pending = None;
        self.save(&state)?;
        self.journal(&p, &Step::RollbackCommit, "done", json!({}))?;
        self.sd.history(json!({
            "op": "rollback", "from": p.from.as_ref().map(|v| v.to_string()), "to": target.to_string(),
            "outcome": "rolled back", "helm": report.helm, "migrations_undone": report.migrations_undone,
            "snapshots_restored": report.snapshots_restored,
        }))?;
        self.crash_hook(&Step::RollbackCommit);
        // the rolled-back releases' snapshots and staged content go now
        if let Err(e) = self.prune(&mut state) {
            eprintln!("stoa-updater: warning: prune: {e}");
        }
        Ok(report)
    }
}
