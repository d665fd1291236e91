//! Images (and OCI charts) pulled from registries over the OCI distribution
//! API, into the content cache, then resolved out of the cache by the same
//! code as OCI layouts ([`oci_layout::resolve_top`]), so platform filtering
//! and byte-exactness are the same for both.
//!
//! The client is the maintained `oci-client` crate (0.18): it does the
//! token (bearer) and basic auth flows, custom CAs (`extra_root_certificates`),
//! plain HTTP per registry (`ClientProtocol::HttpsExcept`), raw manifest
//! bytes with their digest (`pull_manifest_raw`, byte-exact) and streamed
//! blob pulls with ranges (`pull_blob_stream_partial`). What it does not do
//! is done here: retries (the one [`RetryPolicy`] over typed [`TransportError`]s: connection errors, 5xx, 429),
//! resuming a blob by range after a dropped connection, bounded parallel
//! downloads, the verified content cache, docker/containers auth files,
//! and classic Helm repositories (plain HTTPS GETs with the same TLS
//! settings, in [`chart_repo`]).
//!
//! Everything is checked: a manifest's bytes against the digest asked for
//! (or recorded when pulled by tag), a blob's bytes and size against its
//! descriptor before it enters the cache; the bundle writer checks them all
//! again as it streams them from the cache.
//!
//! One job a file: this one holds the [`Puller`] and its settings and
//! counters; [`client`] makes its clients, [`reference`] reads image
//! references, [`transport`] classifies failures and retries, [`auth`]
//! finds credentials, [`endpoints`] tries mirrors in order, [`manifest`]
//! pulls images by manifest, [`blob`] downloads blobs, [`oci_chart`] pulls
//! OCI charts, [`chart_repo`] classic Helm repositories, [`cache`] keeps
//! what was verified, [`mirrors`] reads registries.conf and [`slot`] makes
//! the puller on first use.

pub mod auth;
mod blob;
pub mod cache;
pub mod chart_repo;
mod client;
mod endpoints;
mod manifest;
pub mod mirrors;
mod oci_chart;
pub mod reference;
pub mod signature;
pub mod slot;
mod transport;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oci_client::client::Certificate;
use oci_client::Client;
use stoa_format::retry::RetryPolicy;
#[cfg(doc)]
use stoa_format::retry::TransportError;
use stoa_format::Sha256Digest;

#[cfg(doc)]
use crate::sources::oci_layout;
use cache::Cache;
use mirrors::{ChartRepoMirror, RegistriesConf};

pub use reference::{parse_reference, reference};

/// The one retry policy (attempts, backoff, Retry-After), shared with the
/// chart fetches and the updater's pushes.
pub const RETRY: RetryPolicy = RetryPolicy::DEFAULT;

/// Settings of the `build` command for pulling.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub cache_dir: PathBuf,
    /// PEM files of extra trusted CAs (added to the system roots).
    pub ca_certs: Vec<PathBuf>,
    /// `host[:port]` reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Parallel blob downloads.
    pub jobs: usize,
    pub quiet: bool,
    /// `--registries-conf` (else `$CONTAINERS_REGISTRIES_CONF`, else
    /// /etc/containers/registries.conf when it exists); read when the
    /// first pull starts, so local-only builds never read it.
    pub registries_conf: Option<PathBuf>,
    /// `--chart-repo-mirror <repo>=<mirror>`.
    pub chart_repo_mirrors: Vec<ChartRepoMirror>,
}

/// What was fetched, for the build summary.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PullStats {
    pub manifests_fetched: u64,
    pub blobs_downloaded: u64,
    pub bytes_downloaded: u64,
    pub blobs_cached: u64,
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    manifests_fetched: AtomicU64,
    blobs_downloaded: AtomicU64,
    bytes_downloaded: AtomicU64,
    blobs_cached: AtomicU64,
    retries: AtomicU64,
}

/// A test hook: milliseconds to wait after each blob download, so a test
/// can kill a build between two blobs.
const DELAY_ENV: &str = "STOA_BUNDLER_TEST_PULL_DELAY_MS";

/// True for a `source` this module pulls.
pub fn is_registry_source(s: &str) -> bool {
    s.starts_with("docker://")
}

/// Pulls images and charts; one per build.
pub struct Puller {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// Chart repositories and token challenges: made on first use (a
    /// client loads the system's CA roots, which OCI-only pulls need not
    /// pay twice).
    http: std::sync::OnceLock<reqwest::Client>,
    /// `--ca-cert` roots for it.
    extra_roots: Vec<Certificate>,
    cache: Arc<Cache>,
    opts: PullOptions,
    counters: Arc<Counters>,
    /// registry → whether credentials were found (for error messages)
    creds: HashMap<String, Option<PathBuf>>,
    /// Blobs already counted in this build (shared layers count once).
    seen: std::collections::HashSet<Sha256Digest>,
    delay: Option<Duration>,
    /// The build host's registries.conf, when there is one.
    mirrors: Option<RegistriesConf>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("cache", &self.cache)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Puller {
    pub fn stats(&self) -> PullStats {
        let c = &self.counters;
        PullStats {
            manifests_fetched: c.manifests_fetched.load(Ordering::Relaxed),
            blobs_downloaded: c.blobs_downloaded.load(Ordering::Relaxed),
            bytes_downloaded: c.bytes_downloaded.load(Ordering::Relaxed),
            blobs_cached: c.blobs_cached.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Plain HTTP allowed for this `host[:port]`?
    pub fn is_insecure(&self, host: &str) -> bool {
        self.opts.insecure.iter().any(|h| h == host)
    }

    /// `--chart-repo-mirror` entries.
    pub fn chart_repo_mirrors(&self) -> &[ChartRepoMirror] {
        &self.opts.chart_repo_mirrors
    }

    /// Is output quiet (no notes on stderr)?
    pub fn quiet(&self) -> bool {
        self.opts.quiet
    }

    pub fn counters_add_download(&self, bytes: u64) {
        self.counters
            .blobs_downloaded
            .fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_downloaded
            .fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn counters_add_cached(&self) {
        self.counters.blobs_cached.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counters_add_retry(&self) {
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counters_add_manifest(&self) {
        self.counters
            .manifests_fetched
            .fetch_add(1, Ordering::Relaxed);
    }
}
