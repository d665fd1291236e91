//! `stoa-updater verify <bundle> [--trust <pub|dir|root.json>]`: trusted
//! signature, then every entry's size and digest. With `--trust`, the same
//! code and report as stoa-bundler's (`stoa_format::cli`): the courier's
//! desk check away from the site. Without it, the site's trust in force,
//! read through the site config (`--config`, `$STOA_UPDATER_CONFIG`, the
//! default path): the accepted root in `state_dir/trust/root.json` once a
//! root was accepted, else the config's `trust`; the check apply makes.

use std::path::PathBuf;

use stoa_format::cli::{Output, TrustArgs};
use stoa_format::VerifyOptions;

use crate::engine::Site;
use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file; or its parts: the `.parts.json` index, a folder
    /// holding it, or the part files.
    #[arg(required = true, num_args = 1..)]
    pub bundle: Vec<PathBuf>,
    /// A trusted public key (.pub), a folder of them, or a signed trust
    /// root (root.json; roots the bundle carries extend it). Without it,
    /// the site's trust in force, from the site config.
    #[arg(long, value_name = "PATH")]
    pub trust: Option<PathBuf>,
    /// How many distinct trusted keys must have signed (with --trust; the
    /// site's trust has its own).
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Accept a bundle past its expiry time.
    #[arg(long)]
    pub allow_expired: bool,
}

/// Verifies against `--trust`, else against `site`'s trust in force.
pub fn run(args: &Args, site: Option<&Site>, out: Output) -> Result<()> {
    let (base, opts) = trust_for(
        args.trust.as_deref(),
        args.threshold,
        args.allow_expired,
        site,
        "verify",
    )?;
    let (v, root) = stoa_format::cli::verify_with_base(&args.bundle, &base, &opts, out)?;
    crate::audit::note_bundle(&v);
    crate::audit::note_root(root);
    Ok(())
}

/// The trust a bundle is checked with by `command` (verify, sbom):
/// `--trust` (with its threshold), else the site's trust in force.
pub fn trust_for(
    trust: Option<&std::path::Path>,
    threshold: usize,
    allow_expired: bool,
    site: Option<&Site>,
    command: &str,
) -> Result<(stoa_format::root::TrustBase, VerifyOptions)> {
    Ok(match (trust, site) {
        (Some(trust), _) => TrustArgs {
            trust: trust.to_owned(),
            threshold,
            allow_expired,
        }
        .base()?,
        (None, Some(s)) => {
            let now = crate::trust::checked_now(&s.sd, false)?;
            let t = crate::trust::load(&s.cfg, &s.sd, now)?;
            let opts = VerifyOptions {
                allow_expired,
                now,
                ..VerifyOptions::default()
            };
            (t.base, opts)
        }
        (None, None) => {
            return Err(crate::error::UpdaterError::Refused(format!(
                "{command} needs --trust or a site config"
            )))
        }
    })
}
