//! `stoa-updater inspect <bundle>`: what a bundle holds, from its signed
//! manifest. The same code and report in both programs (`stoa_format::cli`).

use crate::error::Result;
use stoa_format::cli::Output;

pub use stoa_format::cli::InspectArgs as Args;

pub fn run(args: &Args, out: Output) -> Result<()> {
    Ok(stoa_format::cli::run_inspect(args, out)?)
}
