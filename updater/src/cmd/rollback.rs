//! `stoa-updater --config F rollback [--to <version>] [--restore-snapshot]
//! [--dry-run]`: a rollback, or (`--dry-run`) what it would undo.

use crate::engine::{RollbackPreview, RollbackReport};
use crate::error::{Result, UpdaterError};
use crate::records::{HistoryEntry, RollbackHistory};
use crate::state::OpKind;
use stoa_format::cli::Output;

/// A rollback that started and failed is a history line like a failed
/// apply's (`outcome: failed`, the step and the error); refusals before
/// anything started (busy, nothing to roll back, needs confirmation) are
/// not history.
pub(super) fn record_failure(site: &crate::engine::Site, e: &UpdaterError) {
    let UpdaterError::RollbackFailed { step, cause } = e else {
        return;
    };
    let Ok(state) = site.sd.load() else {
        return;
    };
    // a rollback's pending record goes from → to; a revert of an
    // interrupted apply goes back from the apply's target to its origin
    let (from, to) = match &state.pending {
        Some(p) if p.op == OpKind::Apply => (p.to.clone(), p.from.clone()),
        Some(p) => (p.from.clone(), p.to.clone()),
        None => (state.installed.clone(), None),
    };
    let _ = site.sd.history(HistoryEntry::Rollback(RollbackHistory {
        from: from.map(|v| v.to_string()),
        to: to.map(|v| v.to_string()),
        outcome: "failed".into(),
        step: Some(step.clone()),
        error: Some(cause.to_string()),
        ..RollbackHistory::default()
    }));
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The retained release to go back to (default: the previous one).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Confirm restoring a database snapshot where a migration has no down
    /// step. Data written since the snapshot is lost.
    #[arg(long)]
    pub restore_snapshot: bool,
    /// Show what the rollback would undo (Helm revisions, down steps,
    /// snapshot, files) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The trust root accepted by what is undone stays in force.
fn print_trust_kept(v: Option<u64>) {
    if let Some(v) = v {
        println!("trust: root version {v} stays in force (a root never goes back; a key it revoked stays revoked)");
    }
}

/// `rollback --dry-run`: the preview, in text or JSON.
fn dry_run(
    site: &crate::engine::Site,
    to: Option<&semver::Version>,
    args: &Args,
    out: Output,
) -> Result<()> {
    let p = site.rollback_preview(to, false, args.restore_snapshot)?;
    print_preview(&p, "rollback", "roll back", out);
    Ok(())
}

/// A preview (`rollback --dry-run`, `remove --dry-run`) in text or JSON;
/// `key` names the JSON object, `verb` the text's action.
pub(super) fn print_preview(p: &RollbackPreview, key: &str, verb: &str, out: Output) {
    if out.json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "dry_run": true, key: p})
        );
        return;
    }
    let (from, to) = (
        p.from.as_deref().unwrap_or("nothing installed"),
        p.to.as_deref().unwrap_or("nothing installed"),
    );
    if p.reverts_interrupted_apply {
        println!("dry run: would revert the interrupted apply of {from}, back to {to} (its journaled steps, in reverse)");
        print_trust_kept(p.trust_kept);
        return;
    }
    println!("dry run: would {verb} from {from} to {to}; nothing was changed");
    println!("releases undone: {}", p.releases_undone.join(", "));
    for h in &p.helm {
        let (ns, rel) = (
            h["namespace"].as_str().unwrap_or(""),
            h["release"].as_str().unwrap_or(""),
        );
        match h["revision"].as_u64() {
            Some(r) => println!("helm {ns}/{rel}: back to revision {r}"),
            None => println!("helm {ns}/{rel}: uninstall (it did not exist before)"),
        }
    }
    for (db, ids) in &p.down_steps {
        println!("database {db}: down steps {}", ids.join(", "));
    }
    for (db, s) in &p.snapshots {
        println!(
            "database {db}: restore snapshot {} (data written since is lost)",
            s.display()
        );
    }
    if p.needs_restore_snapshot {
        println!("the snapshot restore needs --restore-snapshot");
    }
    for f in &p.files {
        println!("file {f}: reinstated from {to}");
    }
    for f in &p.files_removed {
        println!("file {f}: removed");
    }
    print_trust_kept(p.trust_kept);
    println!("images stay in the registry");
}

pub fn run(site: &crate::engine::Site, args: &Args, out: Output) -> Result<()> {
    let to = match &args.to {
        Some(t) => Some(semver::Version::parse(t).map_err(|e| UpdaterError::Config {
            path: "--to".into(),
            reason: format!("{t:?} is not a version: {e}"),
        })?),
        None => None,
    };
    if args.dry_run {
        return dry_run(site, to.as_ref(), args, out);
    }
    let r = match site.rollback(to.as_ref(), args.restore_snapshot) {
        Ok(r) => r,
        Err(e) => {
            record_failure(site, &e);
            return Err(e);
        }
    };
    print_report(&r, "rollback", out);
    Ok(())
}

/// What a rollback (or `remove`) did, in text or JSON under `key`.
pub(super) fn print_report(r: &RollbackReport, key: &str, out: Output) {
    if out.json {
        println!("{}", serde_json::json!({"ok": true, key: r}));
        return;
    }
    if r.reverted_interrupted_apply {
        println!(
            "reverted the interrupted apply of {}; the site is on {}",
            r.from.as_deref().unwrap_or("?"),
            r.to.as_deref().unwrap_or("nothing installed")
        );
    } else if r.to.is_none() {
        println!(
            "removed {}; nothing is installed",
            r.from.as_deref().unwrap_or("?")
        );
    } else {
        println!(
            "rolled back from {} to {}",
            r.from.as_deref().unwrap_or("?"),
            r.to.as_deref().unwrap_or("?")
        );
    }
    for h in &r.helm {
        println!("helm {h}");
    }
    for (db, ids) in &r.migrations_undone {
        println!("database {db}: down migrations {}", ids.join(", "));
    }
    for (db, s) in &r.snapshots_restored {
        println!(
            "database {db}: restored snapshot {} (data written since it was taken is lost)",
            s.display()
        );
    }
    for m in &r.edited_history_rows {
        println!(
            "database {}: migration {}: its history row was edited (not executed; the verified down step ran)",
            m.database, m.id
        );
    }
    print_trust_kept(r.trust_kept);
    println!("images stay in the registry");
}
