//! `stoa-updater --config F state rebuild [--force] <BUNDLE>...`: a lost or
//! stale state folder made again from what the site records (migration
//! tables, Helm history) and the verified bundles given (each a bundle
//! file, a `.parts.json` index or a folder holding one), printing every
//! inference (`engine/rebuild.rs`). Refused when a state file exists,
//! unless `--force` (the old one is kept beside).

use std::path::PathBuf;

use stoa_format::cli::Output;
use stoa_format::source::BundleSource;

use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Rebuild state.json from the site and the bundles installed on it.
    Rebuild(RebuildArgs),
}

#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    /// The bundles of the releases installed on the site (each a bundle
    /// file, a `.parts.json` index or a folder holding one), any order.
    #[arg(required = true, num_args = 1..)]
    pub bundles: Vec<PathBuf>,
    /// Replace an existing state.json (kept beside as
    /// state.json.before-rebuild-<time>).
    #[arg(long)]
    pub force: bool,
}

impl Args {
    /// The name an audit line records.
    pub fn audit_name(&self) -> Option<&'static str> {
        match &self.command {
            StateCommand::Rebuild(_) => Some("state rebuild"),
        }
    }
}

pub fn run(site: &crate::engine::Site, args: &Args, out: Output) -> Result<()> {
    let StateCommand::Rebuild(a) = &args.command;
    let sources = a
        .bundles
        .iter()
        .map(|p| BundleSource::resolve(std::slice::from_ref(p)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let r = site.rebuild_state(&sources, a.force)?;
    if out.json {
        println!("{}", serde_json::json!({"ok": true, "rebuild": r}));
        return Ok(());
    }
    for l in &r.inferences {
        println!("{}", stoa_format::text::escape(l));
    }
    if let Some(p) = &r.previous_state {
        println!("the previous state file is kept as {p}");
    }
    println!(
        "state rebuilt: {} installed; retained releases {}",
        r.installed,
        r.releases.join(", ")
    );
    Ok(())
}
