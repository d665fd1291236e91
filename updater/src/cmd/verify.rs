//! `stoa-updater verify <bundle> --trust <pub|dir>`.

use std::fs::File;
use std::path::PathBuf;

use stoa_format::reader::{verify, NullSink};
use stoa_format::report;

use crate::error::{Result, UpdaterError};
use crate::progress::bytes_bar;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub bundle: PathBuf,
    #[command(flatten)]
    pub trust: super::TrustArgs,
    #[arg(long)]
    pub json: bool,
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let (trust, opts) = args.trust.load()?;
    let f = File::open(&args.bundle).map_err(|e| UpdaterError::OpenBundle {
        path: args.bundle.clone(),
        source: e,
    })?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let pb = bytes_bar(size, "verify", args.quiet || args.json);
    let v = verify(f, &trust, &opts, &mut NullSink, &mut |n| pb.inc(n))?;
    pb.finish_and_clear();
    if args.json {
        println!("{}", report::verified(&v));
    } else {
        println!(
            "OK {} {}: {} entries, {} verified, manifest sha256:{}",
            v.manifest.release.name,
            v.manifest.release.version,
            v.manifest.entries.len(),
            report::human_bytes(v.content_bytes),
            v.manifest_sha256
        );
        for k in &v.trusted_signers {
            println!("signed by trusted key {k}");
        }
    }
    Ok(())
}
