//! `stoa-updater --config F rollback [--to <version>] [--restore-snapshot]`.

use crate::error::{Result, UpdaterError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The retained release to go back to (default: the previous one).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Confirm restoring a database snapshot where a migration has no down
    /// step. Data written since the snapshot is lost.
    #[arg(long)]
    pub restore_snapshot: bool,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config: &std::path::Path, args: &Args) -> Result<()> {
    let site = super::site(config)?;
    let to = match &args.to {
        Some(t) => Some(semver::Version::parse(t).map_err(|e| UpdaterError::Config {
            path: "--to".into(),
            reason: format!("{t:?} is not a version: {e}"),
        })?),
        None => None,
    };
    let r = site.rollback(to.as_ref(), args.restore_snapshot)?;
    if args.json {
        println!("{}", serde_json::json!({"ok": true, "rollback": r}));
    } else {
        if r.reverted_interrupted_apply {
            println!(
                "reverted the interrupted apply of {}; the site is on {}",
                r.from.as_deref().unwrap_or("?"),
                r.to.as_deref().unwrap_or("nothing installed")
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
        for r in &r.edited_history_rows {
            println!(
                "database {}: migration {}: its history row was edited (not executed; the verified down step ran)",
                r.database, r.id
            );
        }
        println!("images stay in the registry");
    }
    Ok(())
}
