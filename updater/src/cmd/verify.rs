//! `stoa-updater verify <bundle> --trust <pub|dir>`: trusted signature, then
//! every entry's size and digest. The same code and report in both programs
//! (`stoa_format::cli`).

use crate::error::Result;
use stoa_format::cli::Output;

pub use stoa_format::cli::VerifyArgs as Args;

pub fn run(args: &Args, out: Output) -> Result<()> {
    let (v, root) = stoa_format::cli::run_verify(args, out)?;
    crate::audit::note_bundle(&v);
    crate::audit::note_root(root);
    Ok(())
}
