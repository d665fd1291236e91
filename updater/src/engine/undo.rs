//! Undo of an interrupted apply from what was recorded, and the verified
//! down steps and Helm rollbacks rollback shares.

use std::collections::BTreeSet;

use serde_json::json;
use stoa_format::BundleManifest;

use crate::config::hint;
use crate::db;
use crate::error::{Result, UpdaterError};
use crate::stage::{self};
use crate::state::{Pending, State};
use crate::tool;

use super::*;

impl Site {
    /// Reverts the steps of a pending apply, newest first, from what was
    /// recorded. Clears `pending` when done.
    pub(crate) fn undo_pending(
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
                let now = self.drivers.database.applied(dbname, &dbc.url)?;
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
        self.journal(&p, &Step::Undo, "begin", json!({}))?;
        for s in p.steps.iter().rev() {
            // an accepted root is not undone: the journal says it stays
            let detail = match (&s.name, p.record.trust_root) {
                (Step::Trust, Some(v)) => json!({"kept_root_version": v}),
                _ => json!({}),
            };
            self.journal(&p, &s.name, "undo", detail)?;
            let Some(undo) = s.name.undo() else { continue };
            self.undo_step(&p, &undo, &new_m, &old_m, restore_snapshot, report)
                .map_err(|e| match e {
                    e @ UpdaterError::NeedsConfirmation(_) => e,
                    e => UpdaterError::RollbackFailed {
                        step: format!("undo {}", s.name),
                        cause: Box::new(e),
                    },
                })?;
        }
        state.pending = None;
        self.save(state)?;
        self.journal(&p, &Step::Undo, "done", json!({}))?;
        Ok(())
    }

    /// Undoes one recorded step of the pending apply `p`.
    fn undo_step(
        &self,
        p: &Pending,
        undo: &Undo,
        new_m: &Option<BundleManifest>,
        old_m: &Option<BundleManifest>,
        restore_snapshot: bool,
        report: &mut RollbackReport,
    ) -> Result<()> {
        match undo {
            Undo::Files => self.restore_files(old_m.as_ref(), new_m.as_slice()),
            Undo::Helm(rel) => {
                let Some(rec) = p.record.helm.iter().find(|r| &r.release == rel) else {
                    return Ok(());
                };
                let back = self.helm_back(&rec.release, &rec.namespace, rec.before)?;
                report.helm.push(back);
                if rec.before.is_none() && rec.created_namespace {
                    self.drivers.charts.delete_namespace(&rec.namespace)?;
                }
                Ok(())
            }
            Undo::Migrate(dbname) => {
                self.undo_migrate(p, dbname, new_m.as_ref(), restore_snapshot, report)
            }
        }
    }

    /// Undoes what the pending apply ran on `dbname`: the verified down
    /// steps, or (confirmed) the snapshot taken before.
    fn undo_migrate(
        &self,
        p: &Pending,
        dbname: &str,
        new_m: Option<&BundleManifest>,
        restore_snapshot: bool,
        report: &mut RollbackReport,
    ) -> Result<()> {
        let Some(before) = p.migrations_before.get(dbname) else {
            return Ok(());
        };
        let before: BTreeSet<&String> = before.iter().collect();
        let dbc = self.db_config(dbname)?;
        let now = self.drivers.database.applied(dbname, &dbc.url)?;
        // down steps from the verified release content only; an id the
        // release does not have (or without a down step) needs the snapshot
        let mut undo: Vec<(&String, Option<VerifiedStep>)> = Vec::new();
        for id in now.keys().rev().filter(|id| !before.contains(id)) {
            let vs = match new_m {
                Some(m) => self.verified_step(m, dbname, id)?,
                None => None,
            };
            undo.push((id, vs.filter(|v| v.down.is_some())));
        }
        if undo.is_empty() {
            return Ok(());
        }
        if undo.iter().all(|(_, v)| v.is_some()) {
            for (id, vs) in &undo {
                let Some(vs) = vs else { continue };
                self.run_verified_down(p, dbname, &dbc.url, id, vs, report)?;
                report
                    .migrations_undone
                    .entry(dbname.to_owned())
                    .or_default()
                    .push((*id).clone());
            }
            return Ok(());
        }
        let snap =
            p.record
                .snapshots
                .get(dbname)
                .cloned()
                .ok_or_else(|| UpdaterError::Database {
                    database: dbname.into(),
                    step: "undo".into(),
                    reason: "a migration to undo has no down step and no snapshot was taken".into(),
                })?;
        if !restore_snapshot {
            return Err(UpdaterError::NeedsConfirmation(format!(
                "database {dbname}: migration(s) {} have no down step; going back needs the snapshot {} taken before them. Data written since is LOST. To confirm: `{}`",
                undo.iter().filter(|(_, v)| v.is_none()).map(|(i, _)| i.as_str()).collect::<Vec<_>>().join(", "),
                snap.display(),
                hint(&self.cfg.path, "rollback --restore-snapshot")
            )));
        }
        self.drivers.database.restore(dbname, &dbc.url, &snap)?;
        report.snapshots_restored.insert(dbname.to_owned(), snap);
        Ok(())
    }

    /// Migration `id` of database `db` as release `m` has it, with its down
    /// step read from the store and re-hashed. None when `m` has no such
    /// step.
    pub(crate) fn verified_step(
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
            m.listed(path).ok_or_else(|| UpdaterError::Database {
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
    pub(crate) fn run_verified_down(
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
        let Some(row) =
            self.drivers
                .database
                .migrate_down(dbname, url, id, &vs.up_sha256, sql, sha)?
        else {
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
                &Step::RollbackMigrate(dbname.to_owned()),
                "edited_history_row",
                json!({"database": dbname, "id": id, "down_sql_edited": row.down_sql_edited, "checksum_edited": row.checksum_edited}),
            );
            report.edited_history_rows.push(row);
        }
        Ok(true)
    }

    /// Helm `release` back to revision `to`, or uninstalled when it had none.
    pub(crate) fn helm_back(&self, release: &str, ns: &str, to: Option<u64>) -> Result<HelmBack> {
        let h = &self.drivers.charts;
        match to {
            // once: not again after Helm's own atomic rollback
            Some(rev) => h.back_to(release, ns, rev)?,
            None => h.uninstall(release, ns)?,
        }
        Ok(HelmBack {
            release: release.to_owned(),
            namespace: ns.to_owned(),
            rolled_back_to: to,
            uninstalled: to.is_none(),
        })
    }
}
