//! `stoa-updater inspect <bundle>`: what a bundle holds, from its manifest.

use std::fs::File;
use std::path::PathBuf;

use stoa_format::reader::inspect;
use stoa_format::{report, Limits, TrustStore};

use crate::error::{Result, UpdaterError};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub bundle: PathBuf,
    /// Also check the signatures against these keys (.pub file or folder).
    #[arg(long, value_name = "PATH")]
    pub trust: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let f = File::open(&args.bundle).map_err(|e| UpdaterError::OpenBundle {
        path: args.bundle.clone(),
        source: e,
    })?;
    let size = f.metadata().ok().map(|m| m.len());
    let i = inspect(f, &Limits::default())?;
    let trusted = match &args.trust {
        Some(t) => Some(i.check_signatures(&TrustStore::load(t)?)?),
        None => None,
    };
    let doc = report::inspection(&i, trusted.as_deref(), size);
    if args.json {
        println!("{doc}");
    } else {
        print!("{}", report::inspection_text(&doc));
    }
    Ok(())
}
