//! One module per subcommand, and the pull flags `build` and `images`
//! share ([`PullArgs`]).

use std::path::PathBuf;

use crate::sources::registry::mirrors::ChartRepoMirror;
use crate::sources::registry::{cache, PullOptions};

pub mod build;
pub mod diff;
pub mod diff_sbom;
pub mod images;
pub mod inspect;
pub mod keygen;
pub mod root;
pub mod sbom;
pub mod split;
pub mod support;
pub mod support_summary;
pub mod verify;

/// How registries and chart repositories are reached: the same flags, with
/// the same meaning, for `build` and `images`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The download cache (default: $XDG_CACHE_HOME/stoa-bundler or
    /// ~/.cache/stoa-bundler). Blobs are kept only once verified.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// A PEM file of extra CA certificates trusted for registries and Helm
    /// repositories (beside the system roots); repeatable.
    #[arg(long = "ca-cert", value_name = "PEM")]
    pub ca_certs: Vec<PathBuf>,
    /// A registry or chart repository `host[:port]` reached over plain
    /// HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// The containers registries.conf (v2) giving mirrors and locations for
    /// image and OCI chart pulls (default: $CONTAINERS_REGISTRIES_CONF, else
    /// /etc/containers/registries.conf when it exists).
    #[arg(long = "registries-conf", value_name = "FILE")]
    pub registries_conf: Option<PathBuf>,
    /// A classic Helm repository served from a mirror, tried first:
    /// `<repo-url>=<mirror-url>`; repeatable (in order).
    #[arg(long = "chart-repo-mirror", value_name = "REPO=MIRROR")]
    pub chart_repo_mirrors: Vec<ChartRepoMirror>,
}

impl PullArgs {
    /// The pull options these flags give, with `jobs` parallel downloads.
    pub fn options(&self, jobs: usize, quiet: bool) -> PullOptions {
        PullOptions {
            cache_dir: self.cache.clone().unwrap_or_else(cache::default_dir),
            ca_certs: self.ca_certs.clone(),
            insecure: self.insecure_registries.clone(),
            jobs,
            quiet,
            registries_conf: self.registries_conf.clone(),
            chart_repo_mirrors: self.chart_repo_mirrors.clone(),
        }
    }
}
