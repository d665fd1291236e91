//! Pruning of releases, staged content, snapshots and post-render folders
//! no longer needed: after every apply, rollback and revert, and on demand
//! (`stoa-updater prune [--dry-run]`), with a report of what went.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::stage::{self};
use crate::state::{ReleaseRecord, State};

use crate::records::{HistoryEntry, PruneHistory};

use super::*;

/// What a prune removed, or (`dry_run`) would remove.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Releases forgotten beyond `keep_releases`, oldest first.
    pub releases: Vec<String>,
    /// Staged release folders no retained release is (pruned, rolled back,
    /// left by killed runs).
    pub staged: Vec<PathBuf>,
    /// Store blobs no retained release uses, and their bytes.
    pub store_blobs: usize,
    pub store_bytes: u64,
    /// Snapshot files no retained release records.
    pub snapshots: Vec<PathBuf>,
    /// Runnable copies of carried tools (`state_dir/tools/<sha256>`,
    /// crate::bundled) no retained release carries.
    pub tools: Vec<PathBuf>,
    /// Post-render folders (Helm's image maps; only needed while an apply
    /// runs Helm). Only the `prune` command removes them.
    pub post_render: Vec<PathBuf>,
}

fn entries(dir: &Path) -> Vec<fs::DirEntry> {
    let mut v: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    v.sort_by_key(fs::DirEntry::file_name);
    v
}

impl Site {
    /// The prune after an apply's commit, a rollback and a revert: the
    /// releases it forgot.
    pub(crate) fn prune(&self, state: &mut State) -> Result<Vec<String>> {
        Ok(self.prune_with(state, false, false)?.releases)
    }

    /// Keeps the newest `keep_releases` records (dropping the others'
    /// snapshots), then removes staged release folders of releases no longer
    /// retained (pruned or rolled back), leftovers of killed runs, store
    /// blobs no retained release uses, snapshots no retained release
    /// records (those of failed, reverted and rolled-back applies) and, with
    /// `post_render`, the post-render folders. Runs under the lock; never
    /// removes more than the release records while an operation is pending
    /// (its snapshots may be needed). `dry_run`: changes nothing and
    /// reports what it would remove.
    pub(crate) fn prune_with(
        &self,
        state: &mut State,
        dry_run: bool,
        post_render: bool,
    ) -> Result<PruneReport> {
        let mut report = PruneReport {
            dry_run,
            ..PruneReport::default()
        };
        let keep = self.cfg.keep_releases;
        let mut work = state.clone();
        let mut dropped_snapshots = Vec::new();
        if work.releases.len() > keep {
            let drop_n = work.releases.len() - keep;
            let dropped: Vec<ReleaseRecord> = work.releases.drain(..drop_n).collect();
            for r in &dropped {
                dropped_snapshots.extend(r.snapshots.values().cloned());
                report.releases.push(r.version.to_string());
            }
            if !dry_run {
                *state = work.clone();
                self.save(state)?;
                for s in &dropped_snapshots {
                    let _ = fs::remove_file(s);
                }
            }
        }
        if work.pending.is_some() {
            return Ok(report);
        }
        let retained: BTreeSet<String> = work
            .releases
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        for e in entries(&self.sd.root.join("releases")) {
            let n = e.file_name().to_string_lossy().into_owned();
            if !retained.contains(&n) {
                report.staged.push(e.path());
            }
        }
        // what every retained release uses; if one cannot be read, delete
        // nothing from the store (a rollback to it would need its content)
        let mut used: BTreeSet<String> = BTreeSet::new();
        for v in work.releases.iter().map(|r| &r.version) {
            let m = stage::load_release(&self.sd, v)?;
            used.extend(m.release_entries().map(|e| e.sha256.hex()));
        }
        let mut blobs = Vec::new();
        for e in entries(&self.sd.store_dir()) {
            let n = e.file_name().to_string_lossy().into_owned();
            if !used.contains(&n) {
                report.store_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                blobs.push(e.path());
            }
        }
        report.store_blobs = blobs.len();
        for e in entries(&crate::bundled::tools_dir(&self.sd)) {
            if !used.contains(&*e.file_name().to_string_lossy()) {
                report.tools.push(e.path());
            }
        }
        report.snapshots = self.snapshot_usage(&work).removable;
        if dry_run {
            // the dropped releases' snapshots are gone once they are dropped
            for s in dropped_snapshots {
                if s.exists() && !report.snapshots.contains(&s) {
                    report.snapshots.push(s);
                }
            }
            report.snapshots.sort();
        }
        if post_render {
            report.post_render = entries(&self.cfg.state_dir.join("post-render"))
                .iter()
                .map(fs::DirEntry::path)
                .collect();
        }
        if dry_run {
            return Ok(report);
        }
        for d in report
            .staged
            .iter()
            .chain(&report.tools)
            .chain(&report.post_render)
        {
            let _ = fs::remove_dir_all(d);
        }
        for f in blobs.iter().chain(&report.snapshots) {
            let _ = fs::remove_file(f);
        }
        if !report.releases.is_empty() {
            self.sd.history(HistoryEntry::Prune(PruneHistory {
                outcome: "pruned".into(),
                releases: report.releases.clone(),
            }))?;
        }
        Ok(report)
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
