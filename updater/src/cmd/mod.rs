//! One module per subcommand.

pub mod apply;
pub mod extract;
pub mod history;
pub mod inspect;
pub mod plan;
pub mod rollback;
pub mod status;
pub mod verify;

use std::path::PathBuf;

use stoa_format::reader::VerifyOptions;
use stoa_format::TrustStore;

use crate::error::Result;

/// How a bundle is checked: the flags shared by verify, extract and (later)
/// plan and apply.
#[derive(Debug, Clone, clap::Args)]
pub struct TrustArgs {
    /// A trusted public key (.pub) or a folder of them.
    #[arg(long, value_name = "PATH")]
    pub trust: PathBuf,
    /// How many distinct trusted keys must have signed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Accept a bundle past its expiry time (logged by apply).
    #[arg(long)]
    pub allow_expired: bool,
}

impl TrustArgs {
    pub fn load(&self) -> Result<(TrustStore, VerifyOptions)> {
        let trust = TrustStore::load(&self.trust)?.with_threshold(self.threshold);
        Ok((
            trust,
            VerifyOptions {
                allow_expired: self.allow_expired,
                ..VerifyOptions::default()
            },
        ))
    }
}

/// Loads the site config and opens the site.
pub fn site(config: &std::path::Path) -> Result<crate::engine::Site> {
    let cfg = crate::config::SiteConfig::load(config)?;
    Ok(crate::engine::Site::new(cfg))
}
