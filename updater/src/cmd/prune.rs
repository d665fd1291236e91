//! `stoa-updater --config F prune [--dry-run] [--json]`: removes what no
//! retained release needs (releases beyond `keep_releases`, staged release
//! folders, store blobs, snapshots, post-render folders), the same prune
//! apply and rollback run, under the site lock; `--dry-run` lists it and
//! changes nothing. Refused while an operation is pending (exit 5).

use crate::error::Result;
use crate::state::SiteLock;
use stoa_format::cli::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// List what would be removed and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(site: &crate::engine::Site, args: &Args, out: Output) -> Result<()> {
    let _lock = if args.dry_run {
        None
    } else {
        site.sd.ensure()?;
        Some(SiteLock::take(&site.sd, "prune")?)
    };
    let mut state = site.sd.load()?;
    if let Some(p) = &state.pending {
        return Err(site.pending_refusal(p));
    }
    let r = site.prune_with(&mut state, args.dry_run, true)?;
    if out.json {
        println!("{}", serde_json::json!({"ok": true, "prune": r}));
        return Ok(());
    }
    let verb = if r.dry_run { "to remove" } else { "removed" };
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let paths = |v: &[std::path::PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    };
    if r.dry_run {
        println!("dry run: nothing was changed");
    }
    println!("releases forgotten: {}", list(&r.releases));
    println!("staged folders {verb}: {}", list(&paths(&r.staged)));
    println!(
        "store blobs {verb}: {} ({})",
        r.store_blobs,
        stoa_format::report::human_bytes(r.store_bytes)
    );
    println!("snapshots {verb}: {}", list(&paths(&r.snapshots)));
    println!(
        "post-render folders {verb}: {}",
        list(&paths(&r.post_render))
    );
    Ok(())
}
