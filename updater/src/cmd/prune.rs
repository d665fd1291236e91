//! `stoa-updater --config F prune [--dry-run] [--json]`: removes what no
//! retained release needs (releases beyond `keep_releases`, staged release
//! folders, store blobs, snapshots, post-render folders), the same prune
//! apply and rollback run, under the site lock; `--dry-run` lists it and
//! changes nothing. Refused while an operation is pending (exit 5).
//! `--registry` also lists the site registry's tags (under `[registry]
//! prefix`) that no retained release needs and deletes them where the
//! registry allows it (a registry refusing deletes, 405, is a warning:
//! exit 0); the plain prune never touches the network.

use crate::engine::{RegistryPruneReport, RegistryTag};
use crate::error::Result;
use crate::state::SiteLock;
use stoa_format::cli::Output;
use stoa_format::text::escape;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// List what would be removed and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also the site registry: delete the tags (under `[registry] prefix`)
    /// no retained release needs, where the registry allows deletes.
    #[arg(long)]
    pub registry: bool,
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
    let reg = if args.registry {
        // the releases kept after this prune (a dry run forgot none yet)
        let retained: Vec<semver::Version> = state
            .releases
            .iter()
            .map(|x| x.version.clone())
            .filter(|v| !r.releases.contains(&v.to_string()))
            .collect();
        Some(site.prune_registry(&retained, args.dry_run)?)
    } else {
        None
    };
    if out.json {
        let mut v = serde_json::json!({"ok": true, "prune": r});
        if let Some(g) = &reg {
            v["registry"] = serde_json::json!(g);
        }
        println!("{v}");
        warn_refused(reg.as_ref());
        return Ok(());
    }
    print_prune(&r);
    if let Some(g) = &reg {
        print_registry(g);
    }
    warn_refused(reg.as_ref());
    Ok(())
}

fn print_prune(r: &crate::engine::PruneReport) {
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
    if !r.tools.is_empty() {
        println!("carried tool copies {verb}: {}", list(&paths(&r.tools)));
    }
    println!(
        "post-render folders {verb}: {}",
        list(&paths(&r.post_render))
    );
}

fn tag_list(v: &[RegistryTag], with_reason: bool) -> String {
    if v.is_empty() {
        return "none".to_owned();
    }
    v.iter()
        .map(|t| {
            let mut s = format!("{}:{}", escape(&t.repo), escape(&t.tag));
            if let Some(d) = &t.digest {
                s.push_str(&format!(" ({})", escape(d)));
            }
            if let (true, Some(r)) = (with_reason, &t.reason) {
                s.push_str(&format!(": {}", escape(r)));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_registry(g: &RegistryPruneReport) {
    let verb = if g.dry_run { "to delete" } else { "deleted" };
    println!(
        "site registry {}: {} repositories, {} tags retained releases need",
        escape(&g.registry),
        g.repositories,
        g.needed_tags
    );
    println!(
        "site registry: {} tags no retained release needs",
        g.deleted.len() + g.skipped.len() + g.refused.len()
    );
    println!("registry tags {verb}: {}", tag_list(&g.deleted, false));
    println!("registry tags skipped: {}", tag_list(&g.skipped, true));
    for t in &g.refused {
        println!(
            "registry tag {}:{}: {}",
            escape(&t.repo),
            escape(&t.tag),
            t.reason.as_deref().map(escape).unwrap_or_default()
        );
    }
    for n in &g.invalid {
        println!("registry name refused (not a valid name, left alone): {n}");
    }
    println!("hint: {}", g.hint);
}

/// The warning line (stderr) of a registry that refused deletes.
fn warn_refused(g: Option<&RegistryPruneReport>) {
    if let Some(g) = g.filter(|g| !g.refused.is_empty()) {
        eprintln!(
            "stoa-updater: warning: {} registry tags not deleted: the registry does not allow deletes (405); \
             enable them (docker-registry: storage.delete.enabled, REGISTRY_STORAGE_DELETE_ENABLED=true) and run prune --registry again",
            g.refused.len()
        );
    }
}
