//! `stoa-updater repair <parts> --trust … --out <folder>`: rebuilds the
//! missing or damaged data parts of a split bundle from its parity parts,
//! checked against the signed parts index. `--out` may be the parts' own
//! folder (damaged parts are replaced there).

use std::path::PathBuf;
use stoa_format::cli::Output;

use stoa_format::parity;
use stoa_format::source::BundleSource;

use crate::error::{Result, UpdaterError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The parts: the `.parts.json` index, a folder holding it, or the part
    /// and parity files.
    #[arg(required = true, num_args = 1..)]
    pub parts: Vec<PathBuf>,
    #[command(flatten)]
    pub trust: super::TrustArgs,
    /// Where to write the rebuilt parts (and a copy of the index).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Flush the rebuilt parts to disk before renaming them into place (for
    /// repairing straight onto removable media). Off by default, as for
    /// `stoa-bundler build`: a part damaged by a power cut fails verify, and
    /// running repair again is the remedy.
    #[arg(long)]
    pub fsync: bool,
}

pub fn run(args: &Args, out: Output) -> Result<()> {
    let (trust, _) = args.trust.load()?;
    let src = BundleSource::resolve(&args.parts)?;
    let BundleSource::Parts(set) = &src else {
        return Err(UpdaterError::Format(
            stoa_format::FormatError::PartsResolve {
                reason: format!("{} is a single bundle file, not a part set", src.display()),
            },
        ));
    };
    set.index.check_signatures(&trust)?;
    let r = parity::repair(set, &args.out, parity::RepairOptions { fsync: args.fsync })?;
    if out.json {
        println!("{}", serde_json::json!({"ok": true, "repair": r}));
    } else if r.rebuilt.is_empty() {
        println!("nothing to rebuild: every data part matches the signed index");
        for b in &r.bad {
            println!("note: {b}");
        }
    } else {
        for b in &r.bad {
            println!("bad: {b}");
        }
        for (name, path) in &r.rebuilt {
            println!(
                "rebuilt {name} -> {} (matches the signed index)",
                path.display()
            );
        }
        let mb = r.bytes_read as f64 / 1e6 / r.seconds.max(1e-9);
        println!("read {:.0} MB at {mb:.0} MB/s", r.bytes_read as f64 / 1e6);
    }
    Ok(())
}
