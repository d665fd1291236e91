//! Rollback to a retained release, and `remove` (a rollback to nothing
//! installed): plan it ([`RollbackPlan`]: the releases undone, Helm
//! targets, down steps or a confirmed snapshot per database), then the
//! journaled rollback steps, then commit. A pending apply is reverted
//! instead (`undo.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;
use stoa_format::BundleManifest;

use crate::config::hint;
use crate::error::{Result, UpdaterError};
use crate::stage::{self};
use crate::state::{now_rfc3339, OpKind, Pending, ReleaseRecord, SiteLock};
use crate::tool;

use crate::records::{HistoryEntry, RollbackHistory};

use super::*;

/// What a rollback to a retained release will do, decided before any step.
struct RollbackPlan {
    /// None: `remove`, nothing installed after.
    target: Option<semver::Version>,
    /// How many of `state.releases` stay (the target and those before it).
    keep: usize,
    target_m: Option<BundleManifest>,
    /// The releases after the target, oldest first, and their manifests.
    undone: Vec<ReleaseRecord>,
    undone_m: Vec<BundleManifest>,
    /// (database, id) → the undone release that ran it.
    ran_by: BTreeMap<(String, String), usize>,
    /// database → migration ids to undo, newest first.
    db: BTreeMap<String, Vec<String>>,
    /// database → the confirmed snapshot to restore instead of down steps.
    use_snapshot: BTreeMap<String, PathBuf>,
    /// (release, namespace, revision before the earliest undone apply).
    helm: Vec<(String, String, Option<u64>)>,
}

impl RollbackPlan {
    /// The undone releases' files the target has not: removed.
    fn files_removed(&self) -> Vec<String> {
        let keep: std::collections::BTreeSet<&str> = self
            .target_m
            .iter()
            .flat_map(|m| &m.files)
            .map(|f| f.dest.as_str())
            .collect();
        let gone: std::collections::BTreeSet<String> = self
            .undone_m
            .iter()
            .flat_map(|m| &m.files)
            .filter(|f| !keep.contains(f.dest.as_str()))
            .map(|f| f.dest.clone())
            .collect();
        gone.into_iter().collect()
    }

    /// The target as the operator reads it.
    fn target_name(&self) -> String {
        self.target
            .as_ref()
            .map_or_else(|| "nothing installed".into(), |v| v.to_string())
    }

    /// The verified down step of `id` from the undone release that ran it.
    fn verified(&self, site: &Site, dbname: &str, id: &str) -> Result<Option<VerifiedStep>> {
        match self.ran_by.get(&(dbname.to_owned(), id.to_owned())) {
            Some(i) => Ok(site
                .verified_step(&self.undone_m[*i], dbname, id)?
                .filter(|v| v.down.is_some())),
            None => Ok(None),
        }
    }
}

/// What `rollback --dry-run` shows: what a rollback would undo, decided
/// the way the rollback decides it, with nothing changed (no lock, no
/// journal, no state write; the database is only read).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RollbackPreview {
    pub from: Option<String>,
    pub to: Option<String>,
    /// An interrupted apply is pending: the rollback reverts it instead.
    pub reverts_interrupted_apply: bool,
    /// The retained releases undone, newest first.
    pub releases_undone: Vec<String>,
    /// Each Helm release and the revision it goes back to (`null`:
    /// uninstalled, it did not exist before).
    pub helm: Vec<serde_json::Value>,
    /// database → migration ids whose verified down steps would run, newest
    /// first (empty where a snapshot is restored instead).
    pub down_steps: BTreeMap<String, Vec<String>>,
    /// database → the snapshot that would be restored.
    pub snapshots: BTreeMap<String, PathBuf>,
    /// A snapshot restore needs `--restore-snapshot` (exit 7 without it).
    pub needs_restore_snapshot: bool,
    /// The files reinstated from the target release (dest paths).
    pub files: Vec<String>,
    /// The files of the undone releases that the target has not (removed).
    pub files_removed: Vec<String>,
    /// The trust root version accepted by what is undone: it stays in
    /// force (a root never goes back).
    pub trust_kept: Option<u64>,
}

impl Site {
    /// `rollback --dry-run`: what [`Site::rollback`] would undo, changing
    /// nothing.
    pub fn rollback_preview(
        &self,
        to: Option<&semver::Version>,
        remove: bool,
        restore_snapshot: bool,
    ) -> Result<RollbackPreview> {
        let state = self.sd.load()?;
        let mut pv = RollbackPreview {
            from: state.installed.as_ref().map(|v| v.to_string()),
            ..RollbackPreview::default()
        };
        if let Some(p) = state.pending.as_ref().filter(|p| p.op == OpKind::Apply) {
            if remove {
                return Err(self.pending_refusal(p));
            }
            pv.reverts_interrupted_apply = true;
            pv.from = p.to.as_ref().map(|v| v.to_string());
            pv.to = p.from.as_ref().map(|v| v.to_string());
            pv.trust_kept = p.record.trust_root;
            return Ok(pv);
        }
        let rp = self.plan_rollback(&state, to, remove, true)?;
        pv.to = rp.target.as_ref().map(|v| v.to_string());
        pv.releases_undone = rp
            .undone
            .iter()
            .rev()
            .map(|r| r.version.to_string())
            .collect();
        pv.helm = rp
            .helm
            .iter()
            .map(|(rel, ns, rev)| json!({"release": rel, "namespace": ns, "revision": rev}))
            .collect();
        for (db, ids) in &rp.db {
            if !rp.use_snapshot.contains_key(db) {
                pv.down_steps.insert(db.clone(), ids.clone());
            }
        }
        pv.snapshots = rp.use_snapshot.clone();
        pv.needs_restore_snapshot = !rp.use_snapshot.is_empty() && !restore_snapshot;
        pv.files = rp
            .target_m
            .iter()
            .flat_map(|m| &m.files)
            .map(|f| f.dest.clone())
            .collect();
        pv.files_removed = rp.files_removed();
        pv.trust_kept = rp.undone.iter().filter_map(|r| r.trust_root).max();
        Ok(pv)
    }

    /// Rollback: revert an interrupted apply, or go back to a retained release.
    pub fn rollback(
        &self,
        to: Option<&semver::Version>,
        restore_snapshot: bool,
    ) -> Result<RollbackReport> {
        self.go_back(to, false, restore_snapshot)
    }

    /// `remove`: the site back to nothing installed, the way rollback goes
    /// back (newest release first; Helm releases uninstalled, every
    /// migration's verified down step or the confirmed first snapshot, the
    /// files removed; images stay). Journaled as a `remove` operation and
    /// resumed by running it again. An interrupted apply must be reverted
    /// first (`rollback`).
    pub fn remove(&self, restore_snapshot: bool) -> Result<RollbackReport> {
        self.go_back(None, true, restore_snapshot)
    }

    fn go_back(
        &self,
        to: Option<&semver::Version>,
        remove: bool,
        restore_snapshot: bool,
    ) -> Result<RollbackReport> {
        tool::check_setpriv()?;
        self.sd.ensure()?;
        let _lock = SiteLock::take(&self.sd, if remove { "remove" } else { "rollback" })?;
        let mut state = self.sd.load()?;
        // the other kind of pending operation is finished first
        if let Some(p) = &state.pending {
            // rollback reverts an interrupted apply; nothing else crosses over
            let takes = match p.op {
                OpKind::Apply | OpKind::Rollback => !remove,
                OpKind::Remove => remove,
            };
            if !takes {
                return Err(self.pending_refusal(p));
            }
        }
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
        if let Some(p) = state.pending.clone().filter(|p| p.op == OpKind::Apply) {
            self.revert_interrupted(&mut state, &p, to, restore_snapshot, &mut report)?;
            return Ok(report);
        }
        let rp = self.plan_rollback(&state, to, remove, restore_snapshot)?;
        self.begin_rollback(&mut state, &rp, remove, restore_snapshot)?;
        report.to = rp.target.as_ref().map(|v| v.to_string());
        report.trust_kept = rp.undone.iter().filter_map(|r| r.trust_root).max();
        let mut edited = RollbackReport::default();
        let res = self.rollback_steps(&mut state, &rp, &mut report, &mut edited);
        report.edited_history_rows = edited.edited_history_rows;
        if let Err(e) = res {
            if let Ok(p) = pending(&mut state) {
                p.failed = Some(e.to_string());
            }
            let _ = self.save(&state);
            return Err(e);
        }
        self.commit_rollback(&mut state, &rp, &report)?;
        // the rolled-back releases' snapshots and staged content go now
        if let Err(e) = self.prune(&mut state) {
            eprintln!("stoa-updater: warning: prune: {e}");
        }
        Ok(report)
    }

    /// `rollback` with an interrupted apply pending: revert it.
    fn revert_interrupted(
        &self,
        state: &mut State,
        p: &Pending,
        to: Option<&semver::Version>,
        restore_snapshot: bool,
        report: &mut RollbackReport,
    ) -> Result<()> {
        if let Some(t) = to {
            if Some(t) != p.from.as_ref() {
                return Err(UpdaterError::Refused(format!(
                    "an interrupted apply of {} is pending; revert it first: `{}`",
                    p.to.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                    hint(&self.cfg.path, "rollback")
                )));
            }
        }
        self.undo_pending(state, restore_snapshot, report)?;
        let _ = self.sd.history(HistoryEntry::Rollback(RollbackHistory {
            from: p.to.as_ref().map(|v| v.to_string()),
            to: p.from.as_ref().map(|v| v.to_string()),
            outcome: "reverted interrupted apply".into(),
            ..RollbackHistory::default()
        }));
        if let Err(e) = self.prune(state) {
            eprintln!("stoa-updater: warning: prune: {e}");
        }
        report.reverted_interrupted_apply = true;
        report.trust_kept = p.record.trust_root;
        report.from = p.to.as_ref().map(|v| v.to_string());
        report.to = p.from.as_ref().map(|v| v.to_string());
        Ok(())
    }

    /// The target: `--to`, a pending rollback's target, or the previous
    /// release; and its index among the retained releases.
    fn rollback_target(
        &self,
        state: &State,
        to: Option<&semver::Version>,
        remove: bool,
    ) -> Result<(Option<semver::Version>, usize)> {
        if remove {
            if state.releases.is_empty() {
                return Err(UpdaterError::NothingToRollBack(
                    "nothing is installed".into(),
                ));
            }
            return Ok((None, 0));
        }
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
        Ok((Some(target), ti + 1))
    }

    /// Everything the rollback will do, read and checked before any step:
    /// the manifests, the Helm targets, and per database the down steps or
    /// the snapshot (which needs `--restore-snapshot`).
    fn plan_rollback(
        &self,
        state: &State,
        to: Option<&semver::Version>,
        remove: bool,
        restore_snapshot: bool,
    ) -> Result<RollbackPlan> {
        let (target, keep) = self.rollback_target(state, to, remove)?;
        let undone: Vec<ReleaseRecord> = state.releases[keep..].to_vec();
        let target_m = match &target {
            Some(t) => Some(stage::load_release(&self.sd, t)?),
            None => None,
        };
        let undone_m: Vec<BundleManifest> = undone
            .iter()
            .map(|r| stage::load_release_checked(&self.sd, &r.version, &r.manifest_sha256))
            .collect::<Result<_>>()?;
        let mut rp = RollbackPlan {
            target,
            keep,
            target_m,
            undone_m,
            ran_by: BTreeMap::new(),
            db: BTreeMap::new(),
            use_snapshot: BTreeMap::new(),
            helm: Vec::new(),
            undone,
        };
        for (i, r) in rp.undone.iter().enumerate() {
            for (dbname, ids) in &r.migrations {
                for id in ids {
                    rp.ran_by.insert((dbname.clone(), id.clone()), i);
                }
            }
        }
        for r in rp.undone.iter().rev() {
            for (dbname, ids) in &r.migrations {
                let e = rp.db.entry(dbname.clone()).or_default();
                e.extend(ids.iter().rev().cloned());
            }
            // each Helm release back to its revision before the earliest undone apply
            for h in r.helm.iter().rev() {
                match rp
                    .helm
                    .iter_mut()
                    .find(|(rel, ns, _)| rel == &h.release && ns == &h.namespace)
                {
                    Some(e) => e.2 = h.before,
                    None => rp
                        .helm
                        .push((h.release.clone(), h.namespace.clone(), h.before)),
                }
            }
        }
        let again = match (&state.pending, to) {
            _ if remove => "remove --yes --restore-snapshot".to_owned(),
            (None, Some(t)) => format!("rollback --to {t} --restore-snapshot"),
            _ => "rollback --restore-snapshot".to_owned(),
        };
        let dbs: Vec<String> = rp.db.keys().cloned().collect();
        for dbname in dbs {
            if let Some(snap) = self.snapshot_needed(&rp, &dbname, restore_snapshot, &again)? {
                rp.use_snapshot.insert(dbname, snap);
            }
        }
        Ok(rp)
    }

    /// The snapshot to restore for `dbname` when some migration to undo has
    /// no verified down step (refused without `--restore-snapshot`).
    fn snapshot_needed(
        &self,
        rp: &RollbackPlan,
        dbname: &str,
        restore_snapshot: bool,
        again: &str,
    ) -> Result<Option<PathBuf>> {
        let dbc = self.db_config(dbname)?;
        let now = self.drivers.database.applied(dbname, &dbc.url)?;
        let mut missing: Vec<&String> = Vec::new();
        for id in rp.db[dbname].iter().filter(|id| now.contains_key(*id)) {
            if rp.verified(self, dbname, id)?.is_none() {
                missing.push(id);
            }
        }
        if missing.is_empty() {
            return Ok(None);
        }
        // the snapshot of the earliest undone apply that took one
        let snap = rp
            .undone
            .iter()
            .find_map(|r| r.snapshots.get(dbname).cloned())
            .ok_or_else(|| UpdaterError::Database {
                database: dbname.to_owned(),
                step: "rollback".into(),
                reason: format!(
                    "migration(s) {missing:?} have no down step and there is no snapshot"
                ),
            })?;
        if !restore_snapshot {
            return Err(UpdaterError::NeedsConfirmation(format!(
                "database {dbname}: migration(s) {} have no down step; going back to {} restores the snapshot {} taken before they ran. Data written since then is LOST. To confirm: `{}`",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                rp.target_name(),
                snap.display(),
                hint(&self.cfg.path, again)
            )));
        }
        Ok(Some(snap))
    }

    /// Records the rollback as pending (unless resuming one).
    fn begin_rollback(
        &self,
        state: &mut State,
        rp: &RollbackPlan,
        remove: bool,
        restore_snapshot: bool,
    ) -> Result<()> {
        if state.pending.is_some() {
            return Ok(());
        }
        let p = Pending {
            op: if remove {
                OpKind::Remove
            } else {
                OpKind::Rollback
            },
            op_id: format!("{}-{}", now_rfc3339(), std::process::id()),
            started_at: now_rfc3339(),
            from: state.installed.clone(),
            to: rp.target.clone(),
            manifest_sha256: None,
            steps: Vec::new(),
            record: ReleaseRecord::default(),
            migrations_before: BTreeMap::new(),
            failed: None,
            bundle: Vec::new(),
            restore_snapshot,
        };
        let op_id = p.op_id.clone();
        state.pending = Some(p);
        self.save(state)?;
        tool::record_children(&self.sd, &op_id);
        Ok(())
    }

    /// The journaled steps: Helm releases, databases, files.
    fn rollback_steps(
        &self,
        state: &mut State,
        rp: &RollbackPlan,
        report: &mut RollbackReport,
        edited: &mut RollbackReport,
    ) -> Result<()> {
        let failed = |name: &Step| {
            let step = name.to_string();
            move |e| UpdaterError::RollbackFailed {
                step,
                cause: Box::new(e),
            }
        };
        for (rel, ns, rev) in &rp.helm {
            let name = Step::RollbackHelm(rel.clone());
            let v = self
                .step(state, &name, |site, _| {
                    site.helm_back(rel, ns, *rev).map(Some)
                })
                .map_err(failed(&name))?;
            report.helm.extend(v);
        }
        for dbname in rp.db.keys() {
            let name = Step::RollbackMigrate(dbname.clone());
            let snap = rp.use_snapshot.get(dbname);
            let undone_ids = self
                .step(state, &name, |site, st| {
                    site.rollback_db(st, rp, dbname, edited)
                })
                .map_err(failed(&name))?;
            match snap {
                Some(s) => {
                    report.snapshots_restored.insert(dbname.clone(), s.clone());
                }
                None => {
                    report.migrations_undone.insert(dbname.clone(), undone_ids);
                }
            }
        }
        let name = Step::RollbackFiles;
        self.step(state, &name, |site, _| {
            site.restore_files(rp.target_m.as_ref(), &rp.undone_m)
        })
        .map_err(failed(&name))
    }

    /// `rollback:migrate:{db}`: the confirmed snapshot, or the verified down
    /// steps of what is still applied (resumed: what a kill left).
    fn rollback_db(
        &self,
        st: &mut State,
        rp: &RollbackPlan,
        dbname: &str,
        edited: &mut RollbackReport,
    ) -> Result<Vec<String>> {
        let dbc = self.db_config(dbname)?;
        if let Some(snap) = rp.use_snapshot.get(dbname) {
            self.drivers.database.restore(dbname, &dbc.url, snap)?;
            return Ok(Vec::new());
        }
        let p = pending(st)?.clone();
        let now = self.drivers.database.applied(dbname, &dbc.url)?;
        let mut out = Vec::new();
        for id in rp.db[dbname].iter().filter(|id| now.contains_key(*id)) {
            let vs = rp
                .verified(self, dbname, id)?
                .ok_or_else(|| UpdaterError::Database {
                    database: dbname.to_owned(),
                    step: format!("down migration {id}"),
                    reason: "no verified down step".into(),
                })?;
            if self.run_verified_down(&p, dbname, &dbc.url, id, &vs, edited)? {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    /// `rollback:commit`: the target becomes the installed release.
    fn commit_rollback(
        &self,
        state: &mut State,
        rp: &RollbackPlan,
        report: &RollbackReport,
    ) -> Result<()> {
        let p = pending(state)?.clone();
        self.journal(&p, &Step::RollbackCommit, "begin", json!({}))?;
        state.releases.truncate(rp.keep);
        state.installed = rp.target.clone();
        state.pending = None;
        self.save(state)?;
        self.journal(&p, &Step::RollbackCommit, "done", json!({}))?;
        self.sd.history(HistoryEntry::Rollback(RollbackHistory {
            from: p.from.as_ref().map(|v| v.to_string()),
            to: rp.target.as_ref().map(|v| v.to_string()),
            outcome: if rp.target.is_some() {
                "rolled back"
            } else {
                "removed"
            }
            .into(),
            helm: Some(report.helm.clone()),
            migrations_undone: Some(report.migrations_undone.clone()),
            snapshots_restored: Some(report.snapshots_restored.clone()),
            ..RollbackHistory::default()
        }))?;
        self.crash_hook(&Step::RollbackCommit);
        Ok(())
    }
}
