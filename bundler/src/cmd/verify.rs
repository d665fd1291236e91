//! `stoa-bundler verify <bundle> --trust <pub|dir>`: the same check the site
//! runs, from the shared format crate.

use std::fs::File;
use std::path::PathBuf;

use stoa_format::reader::{verify, NullSink, VerifyOptions};
use stoa_format::report;
use stoa_format::TrustStore;

use crate::error::{BundlerError, Result};
use crate::progress::bytes_bar;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub bundle: PathBuf,
    /// A trusted public key (.pub) or a folder of them.
    #[arg(long, value_name = "PATH")]
    pub trust: PathBuf,
    /// How many distinct trusted keys must have signed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Accept a bundle past its expiry time.
    #[arg(long)]
    pub allow_expired: bool,
    #[arg(long)]
    pub json: bool,
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let trust = TrustStore::load(&args.trust)?.with_threshold(args.threshold);
    let f = File::open(&args.bundle).map_err(|e| BundlerError::OpenBundle {
        path: args.bundle.clone(),
        source: e,
    })?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let opts = VerifyOptions {
        allow_expired: args.allow_expired,
        ..VerifyOptions::default()
    };
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
