//! `stoa-updater --config F remove --yes [--restore-snapshot] [--dry-run]`:
//! the site back to nothing installed, the way rollback goes back (newest
//! release first: Helm releases uninstalled, every migration's verified
//! down step or the confirmed first snapshot, the release files removed;
//! images stay in the registry). Journaled as a `remove` operation;
//! running it again resumes an interrupted one. Without `--yes` it changes
//! nothing and exits 7 with the command to confirm.

use stoa_format::cli::Output;

use crate::config::hint;
use crate::error::{Result, UpdaterError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Confirm: remove the installed release(s) from the site.
    #[arg(long)]
    pub yes: bool,
    /// Confirm restoring a database snapshot where a migration has no down
    /// step. Data written since the snapshot is lost.
    #[arg(long)]
    pub restore_snapshot: bool,
    /// Show what remove would undo and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(site: &crate::engine::Site, args: &Args, out: Output) -> Result<()> {
    if args.dry_run {
        let p = site.rollback_preview(None, true, args.restore_snapshot)?;
        super::rollback::print_preview(&p, "remove", "remove everything", out);
        return Ok(());
    }
    if !args.yes {
        let installed = site
            .sd
            .load()?
            .installed
            .map_or_else(|| "nothing".to_owned(), |v| v.to_string());
        return Err(UpdaterError::NeedsConfirmation(format!(
            "remove takes the site from {installed} to nothing installed (Helm releases uninstalled, migrations undone, files removed). To see what it would do: `{}`; to confirm: `{}`",
            hint(&site.cfg.path, "remove --dry-run"),
            hint(&site.cfg.path, "remove --yes")
        )));
    }
    let r = match site.remove(args.restore_snapshot) {
        Ok(r) => r,
        Err(e) => {
            super::rollback::record_failure(site, &e);
            return Err(e);
        }
    };
    super::rollback::print_report(&r, "remove", out);
    Ok(())
}
