//! `stoa-updater sbom <bundle> [--trust <pub|dir|root.json>] [--out FILE]`:
//! the bundle verified in full, with `--trust` or else with the site's trust
//! in force (as `verify` does), then its signed CycloneDX 1.6 SBOM
//! (`sbom.cdx.json`) printed byte for byte: the evidence a change board's
//! tooling ingests. The same code as `stoa-bundler sbom`
//! (`stoa_format::cli::sbom`).

use std::path::PathBuf;

use stoa_format::cli::sbom::{print_sbom, verified_sbom, SbomOut};
use stoa_format::cli::Output;

use crate::engine::Site;
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file; or its parts: the `.parts.json` index, a folder
    /// holding it, or the part files.
    #[arg(required = true, num_args = 1..)]
    pub bundle: Vec<PathBuf>,
    /// A trusted public key (.pub), a folder of them, or a signed trust
    /// root. Without it, the site's trust in force, from the site config.
    #[arg(long, value_name = "PATH")]
    pub trust: Option<PathBuf>,
    /// How many distinct trusted keys must have signed (with --trust).
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Accept a bundle past its expiry time.
    #[arg(long)]
    pub allow_expired: bool,
    #[command(flatten)]
    pub out: SbomOut,
}

/// Verifies against `--trust`, else against `site`'s trust in force, and
/// prints the SBOM.
pub fn run(args: &Args, site: Option<&Site>, out: Output) -> Result<()> {
    let (base, opts) = super::verify::trust_for(
        args.trust.as_deref(),
        args.threshold,
        args.allow_expired,
        site,
        "sbom",
    )?;
    let (v, bytes) = verified_sbom(&args.bundle, &base, &opts, out)?;
    print_sbom(&v, &bytes, &args.out, out)?;
    Ok(())
}
