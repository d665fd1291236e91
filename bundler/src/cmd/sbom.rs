//! `stoa-bundler sbom <bundle> --trust <pub|dir|root.json> [--out FILE]`:
//! the bundle verified in full, then its signed CycloneDX 1.6 SBOM
//! (`sbom.cdx.json`) printed byte for byte. The same code as
//! `stoa-updater sbom` (`stoa_format::cli::sbom`).

use std::path::PathBuf;

use stoa_format::cli::sbom::{print_sbom, verified_sbom, SbomOut};
use stoa_format::cli::{Output, TrustArgs};

use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file; or its parts: the `.parts.json` index, a folder
    /// holding it, or the part files.
    #[arg(required = true, num_args = 1..)]
    pub bundle: Vec<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub out: SbomOut,
}

pub fn run(args: &Args, out: Output) -> Result<()> {
    let (base, opts) = args.trust.base()?;
    let (v, bytes) = verified_sbom(&args.bundle, &base, &opts, out)?;
    print_sbom(&v, &bytes, &args.out, out)?;
    Ok(())
}
