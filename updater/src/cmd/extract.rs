//! `stoa-updater extract <bundle> --trust … --to <dir>`: verified content
//! only, in a folder that appears when every byte has been checked. For a
//! delta, the entries it omits are named (the JSON's `delta.omitted`).

use std::path::PathBuf;
use stoa_format::cli::Output;

use stoa_format::source::BundleSource;
use stoa_format::{extract, report};

use crate::error::Result;
use crate::progress::bytes_bar;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file; or its parts: the `.parts.json` index, a folder
    /// holding it, or the part files.
    #[arg(required = true, num_args = 1..)]
    pub bundle: Vec<PathBuf>,
    #[command(flatten)]
    pub trust: super::TrustArgs,
    /// The folder to create (must not exist).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
}

pub fn run(args: &Args, out: Output) -> Result<()> {
    let (trust, opts) = args.trust.load()?;
    let src = BundleSource::resolve(&args.bundle)?;
    let pb = bytes_bar(src.size(), "extract", !out.bars());
    let v = extract::extract(&src, &trust, &opts, &args.to, &mut |n| pb.inc(n))?;
    pb.finish_and_clear();
    if out.json {
        let mut doc = report::verified(&v);
        doc.extracted_to = Some(args.to.clone());
        println!("{}", report::to_json(&doc));
    } else {
        println!(
            "extracted {} {} to {} ({} entries, {})",
            v.manifest.release.name,
            v.manifest.release.version,
            args.to.display(),
            v.manifest.entries.len(),
            report::human_bytes(v.content_bytes)
        );
        if let Some(d) = &v.manifest.delta {
            println!(
                "a delta on {}: {} entries are omitted, not extracted (the base release has them):",
                d.bases[0],
                d.omitted.len()
            );
            for e in &d.omitted {
                println!(
                    "  omitted {}  {}  sha256:{}",
                    e.path,
                    report::human_bytes(e.size),
                    e.sha256
                );
            }
        }
    }
    Ok(())
}
