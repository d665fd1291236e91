//! One module per subcommand.

pub mod apply;
pub mod extract;
pub mod history;
pub mod inspect;
pub mod mirror_config;
pub mod plan;
pub mod prune;
pub mod remove;
pub mod repair;
pub mod rollback;
pub mod sbom;
pub mod self_update;
pub mod serve;
pub mod state;
pub mod status;
pub mod support_bundle;
pub mod trust;
pub mod verify;

use crate::error::Result;

/// How a bundle is checked: the trust flags shared with stoa-bundler.
pub use stoa_format::cli::TrustArgs;

/// Loads the site config and opens the site.
pub fn site(config: &std::path::Path) -> Result<crate::engine::Site> {
    let cfg = crate::config::SiteConfig::load(config)?;
    Ok(crate::engine::Site::new(cfg))
}
