//! Pruning of releases, staged content and snapshots no longer needed.

use std::collections::BTreeSet;
use std::fs;

use crate::error::Result;
use crate::stage::{self};
use crate::state::{ReleaseRecord, State};

use crate::records::{HistoryEntry, PruneHistory};

use super::*;

impl Site {
    /// Keeps the newest `keep_releases` records (dropping the others'
    /// snapshots), then removes staged release folders of releases no longer
    /// retained (pruned or rolled back), leftovers of killed runs, store
    /// blobs no retained release uses, and snapshots no retained release
    /// records (those of failed, reverted and rolled-back applies). Runs
    /// under the lock, after an apply's commit, a rollback and a revert;
    /// never while an operation is pending (its snapshots may be needed).
    pub(crate) fn prune(&self, state: &mut State) -> Result<Vec<String>> {
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
            used.extend(m.release_entries().map(|e| e.sha256.hex()));
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
            self.sd.history(HistoryEntry::Prune(PruneHistory {
                outcome: "pruned".into(),
                releases: names.clone(),
            }))?;
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
}
