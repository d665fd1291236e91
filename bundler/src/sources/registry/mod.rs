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

pub mod auth;
pub mod cache;
pub mod chart_repo;
pub mod mirrors;

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::ProgressBar;
use oci_client::client::{
    BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol,
};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use stoa_format::names::ImageRef;
use stoa_format::oci::{self, Descriptor, ImageIndex, ImageManifest, MediaTypeProbe};
use stoa_format::retry::{RetryPolicy, TransportError};
use stoa_format::Sha256Digest;

use crate::error::{BundlerError, Result};
use crate::sources::oci_layout::{self, LayoutStore, ResolvedImage, MAX_JSON_BLOB};
use cache::Cache;
use mirrors::{ChartRepoMirror, RegistriesConf};

/// The one retry policy (attempts, backoff, Retry-After), shared with the
/// chart fetches and the updater's pushes.
pub const RETRY: RetryPolicy = RetryPolicy::DEFAULT;

/// Media types accepted for an image's top manifest.
const IMAGE_ACCEPT: &[&str] = &[
    oci::MT_OCI_INDEX,
    oci::MT_OCI_MANIFEST,
    oci::MT_DOCKER_LIST,
    oci::MT_DOCKER_MANIFEST,
];

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

/// `docker://<ref>` or a bare reference (the image name).
pub fn parse_reference(s: &str) -> std::result::Result<Reference, String> {
    let r = s.strip_prefix("docker://").unwrap_or(s);
    reference(r).map_err(|e| format!("{r:?} is not an image reference: {e}"))
}

/// `s` as the OCI client's reference, as `Reference::try_from` reads it. A
/// name the format's [`ImageRef`] accepts (every name a release manifest
/// may give) is built directly: the client's parser compiles a large
/// regular expression on first use, tens of milliseconds (measured: a
/// third of `images`' own CPU on the stack). Anything else goes through
/// that parser, for its answer and its error.
pub fn reference(s: &str) -> std::result::Result<Reference, oci_client::ParseError> {
    let Ok(r) = ImageRef::parse(s) else {
        return Reference::try_from(s);
    };
    // Docker's defaults, as the client's split_domain applies them
    let registry = match r.domain() {
        None | Some("index.docker.io") => "docker.io",
        Some(d) => d,
    }
    .to_owned();
    let repository = if registry == "docker.io" && !r.path().contains('/') {
        format!("library/{}", r.path())
    } else {
        r.path().to_owned()
    };
    let tag = r.tag().map(str::to_owned);
    Ok(match (tag, r.digest().map(Sha256Digest::oci)) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t, d),
        (Some(t), None) => Reference::with_tag(registry, repository, t),
        (None, Some(d)) => Reference::with_digest(registry, repository, d),
        (None, None) => Reference::with_tag(registry, repository, "latest".to_owned()),
    })
}

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

/// Why a request failed (typed: whether it is retried is the policy's call).
type Failure = TransportError;

fn fatal(m: impl Into<String>) -> Failure {
    TransportError::Other(m.into())
}

/// reqwest's error with its source chain (the useful part: connection
/// refused, TLS…).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut m = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        m.push_str(": ");
        m.push_str(&s.to_string());
        src = s.source();
    }
    m
}

/// A reqwest failure, classified.
pub(crate) fn classify_reqwest(r: &reqwest::Error) -> TransportError {
    let message = error_chain(r);
    if let Some(tls) = tls_failure(&message) {
        return tls;
    }
    if r.is_timeout() {
        TransportError::Timeout(message)
    } else if r.is_connect() {
        TransportError::Connect(message)
    } else if r.is_request() || r.is_body() || r.is_decode() {
        TransportError::Body(message)
    } else {
        TransportError::Other(message)
    }
}

/// TLS failures do not go away by trying again; say what usually helps.
/// (reqwest does not type them: its error chain is read once, here.)
fn tls_failure(message: &str) -> Option<TransportError> {
    let lower = message.to_ascii_lowercase();
    if lower.contains("invalidcontenttype") {
        return Some(TransportError::Tls(format!(
            "{message} (the server does not speak TLS: for a plain-HTTP registry use --insecure-registry <host:port>)"
        )));
    }
    if lower.contains("certificate")
        || lower.contains("unknownissuer")
        || lower.contains("handshake")
    {
        return Some(TransportError::Tls(format!(
            "{message} (for a registry with a private CA use --ca-cert <pem>)"
        )));
    }
    None
}

fn classify(e: OciDistributionError) -> Failure {
    use OciDistributionError as E;
    match &e {
        E::RequestError(r) => classify_reqwest(r),
        E::IoError(_) => TransportError::Body(e.to_string()),
        E::ServerError { code, .. } => TransportError::status(*code, None, e.to_string()),
        E::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|x| x.code == OciErrorCode::Toomanyrequests) =>
        {
            TransportError::status(429, None, e.to_string())
        }
        _ => {
            let message = e.to_string();
            tls_failure(&message).unwrap_or(TransportError::Other(message))
        }
    }
}

/// "… (after N attempts)" on a failure that was retried.
fn after(e: Failure, attempt: u32) -> Failure {
    if e.is_retryable() {
        e.map_message(|m| format!("{m} (after {attempt} attempts)"))
    } else {
        e
    }
}

async fn with_retries<T, F, Fut>(counters: &Counters, mut f: F) -> std::result::Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, Failure>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => match RETRY.delay(attempt, &e) {
                Some(delay) => {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => return Err(after(e, attempt)),
            },
        }
    }
}

fn oci_descriptor(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size as i64,
        urls: None,
        annotations: None,
        artifact_type: None,
    }
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
    pub fn new(opts: &PullOptions) -> Result<Self> {
        let mirrors = RegistriesConf::load(opts.registries_conf.as_deref())?;
        let mut opts = opts.clone();
        if let Some(m) = &mirrors {
            // `insecure = true` locations and mirrors: plain HTTP
            opts.insecure.extend(m.insecure_hosts());
        }
        let opts = &opts;
        // One TLS crypto provider for the whole workspace (ring, as the
        // updater uses): reqwest is built without a provider of its own, so
        // the process default must be set before a client is made. A second
        // call finds it set already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = Vec::new();
        for p in &opts.ca_certs {
            let data = std::fs::read(p).map_err(|e| BundlerError::CaCert {
                path: p.clone(),
                message: e.to_string(),
            })?;
            if reqwest::Certificate::from_pem_bundle(&data).map_or(true, |v| v.is_empty()) {
                return Err(BundlerError::CaCert {
                    path: p.clone(),
                    message: "no PEM certificate in it".into(),
                });
            }
            roots.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(opts.insecure.clone()),
            extra_root_certificates: roots.clone(),
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            max_concurrent_download: opts.jobs.max(1),
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| BundlerError::CaCert {
            path: opts.ca_certs.first().cloned().unwrap_or_default(),
            message: e.to_string(),
        })?;
        let cache = Cache::open(&opts.cache_dir).map_err(|e| BundlerError::Cache {
            path: opts.cache_dir.clone(),
            message: e.to_string(),
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.jobs.clamp(2, 8))
            .enable_all()
            .build()
            .map_err(|e| BundlerError::Cache {
                path: opts.cache_dir.clone(),
                message: format!("start the download runtime: {e}"),
            })?;
        let delay = std::env::var(DELAY_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        Ok(Self {
            rt,
            client,
            http: std::sync::OnceLock::new(),
            extra_roots: roots,
            cache: Arc::new(cache),
            opts: opts.clone(),
            counters: Arc::new(Counters::default()),
            creds: HashMap::new(),
            seen: Default::default(),
            delay,
            mirrors,
        })
    }

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

    /// The credential for the reference's registry, remembered per build.
    fn auth_for(&mut self, reference: &Reference) -> Result<RegistryAuth> {
        let reg = reference.resolve_registry().to_owned();
        match auth::lookup(&reg) {
            Ok(Some(c)) => {
                self.check_token_realm(&reg)?;
                self.creds.insert(reg, Some(c.file.clone()));
                Ok(c.auth)
            }
            Ok(None) => {
                self.creds.insert(reg, None);
                Ok(RegistryAuth::Anonymous)
            }
            Err((file, message)) => Err(BundlerError::AuthFile {
                path: file,
                message,
            }),
        }
    }

    /// Before credentials go anywhere: asks the registry for its challenge
    /// and refuses a bearer token realm that breaks the URL rule
    /// ([`auth::check_realm`]: userinfo, or clear text off loopback). The
    /// HTTP client would send the credentials to the host after an `@`.
    fn check_token_realm(&self, reg: &str) -> Result<()> {
        let scheme = if self.is_insecure(reg) {
            "http"
        } else {
            "https"
        };
        let url = format!("{scheme}://{reg}/v2/");
        let http = self.http().map_err(|message| BundlerError::RegistryPull {
            image: reg.to_owned(),
            reference: url.clone(),
            message,
        })?;
        let challenge = self.rt.block_on(async {
            let r = http.get(&url).send().await.ok()?;
            if r.status() != reqwest::StatusCode::UNAUTHORIZED {
                return None;
            }
            r.headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        // unreachable or no challenge: the pull itself reports what happens
        let Some(realm) = challenge.as_deref().and_then(auth::bearer_realm) else {
            return Ok(());
        };
        auth::check_realm(&realm).map_err(|message| BundlerError::RegistryPull {
            image: reg.to_owned(),
            reference: url.clone(),
            message,
        })
    }

    /// A hint added to "not authorized" errors.
    fn auth_hint(&self, reference: &Reference) -> String {
        match self.creds.get(reference.resolve_registry()) {
            Some(Some(f)) => format!(" (credentials from {} were refused)", f.display()),
            _ => format!(
                " (no credentials for {} in $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json or ~/.docker/config.json)",
                reference.resolve_registry()
            ),
        }
    }

    fn pull_error(&self, image: &str, reference: &Reference, f: Failure) -> BundlerError {
        let mut message = f.message().to_owned();
        if message.contains("Not authorized") || message.contains("Authentication failure") {
            message.push_str(&self.auth_hint(reference));
        }
        let lower = message.to_ascii_lowercase();
        if [
            "manifest unknown",
            "name unknown",
            "not known to registry",
            "manifest_unknown",
            "name_unknown",
        ]
        .iter()
        .any(|p| lower.contains(p))
        {
            message = format!("not found in the registry: {message}");
        }
        BundlerError::RegistryPull {
            image: image.to_owned(),
            reference: reference.whole(),
            message,
        }
    }

    /// Fetches a manifest (by tag or digest) and stores it in the cache;
    /// returns its bytes and digest. By digest, the cache is used first.
    async fn fetch_manifest(
        client: &Client,
        cache: &Cache,
        counters: &Counters,
        reference: &Reference,
        auth: &RegistryAuth,
        accept: &[&str],
        want_size: Option<u64>,
    ) -> std::result::Result<(Vec<u8>, Sha256Digest), Failure> {
        if let Some(d) = reference.digest().and_then(Sha256Digest::from_oci) {
            // pinned by digest: the cache has it when a blob of that digest
            // (and size, when known) is there; checked again, it is small
            if let Ok(b) = cache.read(&d) {
                if Sha256Digest::of(&b) == d && want_size.is_none_or(|s| s == b.len() as u64) {
                    return Ok((b, d));
                }
            }
        }
        let (bytes, _) = with_retries(counters, || async {
            client
                .pull_manifest_raw(reference, auth, accept)
                .await
                .map_err(classify)
        })
        .await?;
        counters.manifests_fetched.fetch_add(1, Ordering::Relaxed);
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(fatal(format!(
                "manifest is {} bytes, over the {MAX_JSON_BLOB}-byte limit",
                bytes.len()
            )));
        }
        let got = Sha256Digest::of(&bytes);
        if let Some(want) = reference.digest() {
            if got.oci() != want {
                return Err(fatal(format!(
                    "the registry sent a manifest with digest {}, not {want}",
                    got.oci()
                )));
            }
        }
        if let Some(size) = want_size {
            if bytes.len() as u64 != size {
                return Err(fatal(format!(
                    "manifest {} is {} bytes, its descriptor says {size}",
                    got.oci(),
                    bytes.len()
                )));
            }
        }
        cache
            .put_bytes(&got, &bytes)
            .map_err(|e| fatal(format!("cache: {e}")))?;
        Ok((bytes.to_vec(), got))
    }

    /// Downloads one blob into the cache, resuming by range after a dropped
    /// connection; its digest and size are checked before it is kept.
    async fn download_blob(
        client: Client,
        cache: Arc<Cache>,
        counters: Arc<Counters>,
        reference: Reference,
        d: Descriptor,
        pb: ProgressBar,
    ) -> std::result::Result<(), Failure> {
        let digest =
            Sha256Digest::from_oci(&d.digest).ok_or_else(|| fatal("digest is not sha256"))?;
        let mut w = cache
            .writer(&digest)
            .map_err(|e| fatal(format!("cache: {e}")))?;
        let od = oci_descriptor(&d);
        let mut attempt = 1;
        loop {
            if d.size == 0 {
                break;
            }
            let off = w.len();
            let outcome: std::result::Result<bool, Failure> = async {
                let resp = client
                    .pull_blob_stream_partial(&reference, &od, off, Some(d.size - off))
                    .await
                    .map_err(classify)?;
                let mut stream = match resp {
                    BlobResponse::Full(s) => {
                        if off > 0 {
                            w.restart().map_err(|e| fatal(format!("cache: {e}")))?;
                        }
                        s
                    }
                    BlobResponse::Partial(s) => s,
                };
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| {
                        // a digest mismatch reported by the client is final;
                        // any other stream error is a dropped body
                        let m = e.to_string();
                        if m.to_ascii_lowercase().contains("digest") {
                            TransportError::Other(m)
                        } else {
                            TransportError::Body(m)
                        }
                    })?;
                    if w.len() + chunk.len() as u64 > d.size {
                        return Err(fatal(format!(
                            "the registry sent more than the {} bytes of the descriptor",
                            d.size
                        )));
                    }
                    w.write_all(&chunk)
                        .map_err(|e| fatal(format!("cache: {e}")))?;
                    pb.inc(chunk.len() as u64);
                    counters
                        .bytes_downloaded
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Ok(w.len() == d.size)
            }
            .await;
            let wait = match &outcome {
                Ok(true) => break,
                // a short body: resumed by range, like a dropped connection
                Ok(false) => RETRY.next(attempt, None),
                Err(e) => RETRY.delay(attempt, e),
            };
            match (wait, outcome) {
                (Some(delay), _) => {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                (None, Ok(_)) => {
                    return Err(fatal(format!(
                        "the registry sent {} of {} bytes (after {attempt} attempts)",
                        w.len(),
                        d.size
                    )))
                }
                (None, Err(e)) => return Err(after(e, attempt)),
            }
        }
        w.commit(d.size).map_err(|e| fatal(e.to_string()))?;
        counters.blobs_downloaded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Downloads the blobs not in the cache yet, `jobs` at a time.
    fn download_all(
        &mut self,
        image: &str,
        reference: &Reference,
        blobs: Vec<Descriptor>,
    ) -> Result<()> {
        let mut todo = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for d in blobs {
            let digest =
                Sha256Digest::from_oci(&d.digest).ok_or_else(|| BundlerError::RegistryBlob {
                    image: image.to_owned(),
                    blob: d.digest.clone(),
                    message: "digest is not sha256".into(),
                })?;
            if !seen.insert(digest) || !self.seen.insert(digest) {
                continue;
            }
            if self.cache.has(&digest, d.size) {
                self.counters.blobs_cached.fetch_add(1, Ordering::Relaxed);
            } else {
                todo.push(d);
            }
        }
        let total: u64 = todo.iter().map(|d| d.size).sum();
        let n = todo.len();
        let pb = crate::progress::pull_bar(total, image, n, self.opts.quiet);
        let jobs = self.opts.jobs.max(1);
        let delay = self.delay;
        let result = self.rt.block_on(async {
            let sem = Arc::new(tokio::sync::Semaphore::new(jobs));
            let mut set = tokio::task::JoinSet::new();
            for d in todo {
                let permit_sem = sem.clone();
                let client = self.client.clone();
                let cache = self.cache.clone();
                let counters = self.counters.clone();
                let reference = reference.clone();
                let pb = pb.clone();
                set.spawn(async move {
                    let _permit = permit_sem.acquire_owned().await;
                    let digest = d.digest.clone();
                    let r = Self::download_blob(client, cache, counters, reference, d, pb.clone())
                        .await;
                    if r.is_ok() {
                        if let Some(t) = delay {
                            tokio::time::sleep(t).await;
                        }
                    }
                    (digest, r)
                });
            }
            let mut done = 0;
            while let Some(j) = set.join_next().await {
                match j {
                    Ok((_, Ok(()))) => {
                        done += 1;
                        crate::progress::pull_bar_blobs(&pb, image, done, n);
                    }
                    Ok((digest, Err(f))) => return Err((digest, f.to_string())),
                    Err(e) => return Err((String::new(), format!("download task failed: {e}"))),
                }
            }
            Ok(())
        });
        pb.finish_and_clear();
        result.map_err(|(blob, message)| BundlerError::RegistryBlob {
            image: image.to_owned(),
            blob,
            message,
        })
    }

    /// Where to pull `reference` from: the mirrors of the build host's
    /// registries.conf that apply, then the location (or the reference
    /// itself when nothing matches or there is no file).
    fn endpoints(&self, what: &str, reference: &Reference) -> Result<Vec<(Reference, bool)>> {
        let Some(conf) = &self.mirrors else {
            return Ok(vec![(reference.clone(), false)]);
        };
        let eps = conf.endpoints(&reference.whole()).map_err(|message| {
            BundlerError::RegistryBlocked {
                image: what.to_owned(),
                message,
            }
        })?;
        eps.into_iter()
            .map(|e| {
                self::reference(e.reference.as_str())
                    .map(|r| (r, e.mirror))
                    .map_err(|x| BundlerError::RegistriesConf {
                        path: conf.path().to_owned(),
                        message: format!(
                            "{} maps to {:?}, which is not an image reference: {x}",
                            reference.whole(),
                            e.reference
                        ),
                    })
            })
            .collect()
    }

    /// Tries `f` on each endpoint in order; the first success wins. A
    /// failed mirror is reported (unless quiet) and the next one tried;
    /// when all fail, the error says what each mirror answered.
    fn first_success<T>(
        &mut self,
        endpoints: Vec<(Reference, bool)>,
        mut f: impl FnMut(&mut Self, &Reference) -> Result<T>,
    ) -> Result<T> {
        let mut tried: Vec<String> = Vec::new();
        let n = endpoints.len();
        for (i, (r, mirror)) in endpoints.into_iter().enumerate() {
            match f(self, &r) {
                Ok(v) => return Ok(v),
                Err(e) if i + 1 < n => {
                    let what = if mirror { "mirror" } else { "location" };
                    if !self.opts.quiet {
                        eprintln!(
                            "stoa-bundler: {what} {} failed, trying the next: {e}",
                            r.whole()
                        );
                    }
                    tried.push(format!("{what} {}: {e}", r.whole()));
                }
                Err(e) if tried.is_empty() => return Err(e),
                Err(e) => {
                    let also = format!(" (tried first: {})", tried.join("; "));
                    return Err(match e {
                        BundlerError::RegistryPull {
                            image,
                            reference,
                            message,
                        } => BundlerError::RegistryPull {
                            image,
                            reference,
                            message: message + &also,
                        },
                        BundlerError::RegistryBlob {
                            image,
                            blob,
                            message,
                        } => BundlerError::RegistryBlob {
                            image,
                            blob,
                            message: message + &also,
                        },
                        BundlerError::ChartPull {
                            chart,
                            url,
                            message,
                        } => BundlerError::ChartPull {
                            chart,
                            url,
                            message: message + &also,
                        },
                        other => other,
                    });
                }
            }
        }
        // endpoints() always returns at least the location
        Err(BundlerError::RegistryBlocked {
            image: String::new(),
            message: "nowhere to pull from".into(),
        })
    }

    /// Pulls an image by tag or digest into the cache and resolves it,
    /// through the build host's mirrors (module [`mirrors`]). The bundle
    /// records `source_text`, never a mirror's name.
    pub fn pull_image(
        &mut self,
        name: &str,
        source_text: &str,
        reference: &Reference,
        platforms: Option<&[String]>,
    ) -> Result<ResolvedImage> {
        let eps = self.endpoints(name, reference)?;
        self.first_success(eps, |p, r| p.pull_image_at(name, source_text, r, platforms))
    }

    /// Pulls an image from one place.
    fn pull_image_at(
        &mut self,
        name: &str,
        source_text: &str,
        reference: &Reference,
        platforms: Option<&[String]>,
    ) -> Result<ResolvedImage> {
        let auth = self.auth_for(reference)?;
        let top = self.rt.block_on(async {
            if !matches!(auth, RegistryAuth::Anonymous) {
                with_retries(&self.counters, || async {
                    self.client
                        .auth(reference, &auth, RegistryOperation::Pull)
                        .await
                        .map_err(classify)
                })
                .await?;
            }
            Self::fetch_manifest(
                &self.client,
                &self.cache,
                &self.counters,
                reference,
                &auth,
                IMAGE_ACCEPT,
                None,
            )
            .await
        });
        let (top_bytes, top_digest) = top.map_err(|f| self.pull_error(name, reference, f))?;
        let probe: MediaTypeProbe =
            serde_json::from_slice(&top_bytes).map_err(|e| BundlerError::RegistryPull {
                image: name.to_owned(),
                reference: reference.whole(),
                message: format!("manifest {}: not JSON: {e}", top_digest.oci()),
            })?;
        let media_type = probe.kind().unwrap_or_default().to_owned();
        let bad = |m: String| BundlerError::RegistryPull {
            image: name.to_owned(),
            reference: reference.whole(),
            message: m,
        };
        let mut manifests: Vec<Vec<u8>> = Vec::new();
        if oci::is_index(&media_type) {
            let idx: ImageIndex = serde_json::from_slice(&top_bytes)
                .map_err(|e| bad(format!("index {}: {e}", top_digest.oci())))?;
            let keep = oci_layout::select_platforms(name, &idx, platforms)?;
            for i in keep {
                let child = &idx.manifests[i];
                if oci::is_index(&child.media_type) {
                    return Err(bad(format!(
                        "nested index {} is not supported",
                        child.digest
                    )));
                }
                let r = reference.clone_with_digest(child.digest.clone());
                let got = self.rt.block_on(Self::fetch_manifest(
                    &self.client,
                    &self.cache,
                    &self.counters,
                    &r,
                    &auth,
                    IMAGE_ACCEPT,
                    Some(child.size),
                ));
                let (bytes, _) = got.map_err(|f| self.pull_error(name, &r, f))?;
                manifests.push(bytes);
            }
        } else if oci::is_manifest(&media_type) || probe.config.is_some() {
            manifests.push(top_bytes.clone());
        } else {
            return Err(bad(format!(
                "{}: media type {media_type:?} is neither an image manifest nor an index",
                top_digest.oci()
            )));
        }
        let mut blobs = Vec::new();
        for m in &manifests {
            let m: ImageManifest = serde_json::from_slice(m)
                .map_err(|e| bad(format!("not an image manifest: {e}")))?;
            blobs.push(m.config);
            blobs.extend(m.layers);
        }
        self.download_all(name, reference, blobs)?;
        let top = Descriptor {
            media_type,
            digest: top_digest.oci(),
            size: top_bytes.len() as u64,
            platform: None,
            annotations: None,
            artifact_type: None,
        };
        let store = LayoutStore::Dir(self.cache.root().to_owned());
        oci_layout::resolve_top(name, source_text, &store, &top, platforms)
    }

    /// Pulls a Helm chart stored in an OCI registry (`oci://host/repo/name`
    /// with `version`): its manifest by tag, then its chart layer
    /// (`application/vnd.cncf.helm.chart.content.v1.tar+gzip`) into the
    /// cache. Returns the cached `.tgz` path and the manifest digest.
    pub fn pull_oci_chart(&mut self, url: &str, version: &str) -> Result<(PathBuf, String)> {
        let cerr = |m: String| BundlerError::ChartPull {
            chart: url.to_owned(),
            url: url.to_owned(),
            message: m,
        };
        let base = url
            .strip_prefix("oci://")
            .ok_or_else(|| cerr("not an oci:// reference".into()))?;
        // Helm stores versions with '+' as '_' in tags
        let tag = version.replace('+', "_");
        let reference = reference(&format!("{base}:{tag}"))
            .map_err(|e| cerr(format!("not a chart reference: {e}")))?;
        let eps = self.endpoints(url, &reference)?;
        self.first_success(eps, |p, r| p.pull_oci_chart_at(url, r))
    }

    /// Pulls an OCI chart from one place.
    fn pull_oci_chart_at(&mut self, url: &str, reference: &Reference) -> Result<(PathBuf, String)> {
        let cerr = |m: String| BundlerError::ChartPull {
            chart: url.to_owned(),
            url: url.to_owned(),
            message: m,
        };
        let reference = reference.clone();
        let auth = self.auth_for(&reference)?;
        let got = self.rt.block_on(async {
            if !matches!(auth, RegistryAuth::Anonymous) {
                with_retries(&self.counters, || async {
                    self.client
                        .auth(&reference, &auth, RegistryOperation::Pull)
                        .await
                        .map_err(classify)
                })
                .await?;
            }
            Self::fetch_manifest(
                &self.client,
                &self.cache,
                &self.counters,
                &reference,
                &auth,
                &[oci::MT_OCI_MANIFEST],
                None,
            )
            .await
        });
        let (bytes, digest) = got.map_err(|f| {
            let e = self.pull_error(url, &reference, f);
            cerr(match e {
                BundlerError::RegistryPull { message, .. } => message,
                other => other.to_string(),
            })
        })?;
        let m: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| cerr(format!("manifest {}: {e}", digest.oci())))?;
        let layers: Vec<&Descriptor> = m
            .layers
            .iter()
            .filter(|l| l.media_type == HELM_CHART_LAYER)
            .collect();
        let [layer] = layers.as_slice() else {
            return Err(cerr(format!(
                "manifest {} has {} layers of type {HELM_CHART_LAYER}, expected 1 (is it a Helm chart?)",
                digest.oci(),
                layers.len()
            )));
        };
        let layer = (*layer).clone();
        let ld = Sha256Digest::from_oci(&layer.digest)
            .ok_or_else(|| cerr(format!("layer digest {} is not sha256", layer.digest)))?;
        self.download_all(url, &reference, vec![layer.clone()])
            .map_err(|e| cerr(e.to_string()))?;
        Ok((self.cache.blob_path(&ld), digest.oci()))
    }

    /// The versions of an OCI chart (`oci://host/repo/name`): its tags, with
    /// Helm's `_` for `+` turned back; through the build host's mirrors
    /// (the first that answers gives the list), with the same credentials
    /// and retries as pulls.
    pub fn list_oci_chart_versions(&mut self, url: &str) -> Result<Vec<String>> {
        let cerr = |m: String| BundlerError::ChartPull {
            chart: url.to_owned(),
            url: url.to_owned(),
            message: m,
        };
        let base = url
            .strip_prefix("oci://")
            .ok_or_else(|| cerr("not an oci:// reference".into()))?;
        // a tag reference: the listing is a tag lookup for the mirrors'
        // `pull-from-mirror` rules
        let reference = reference(&format!("{base}:latest"))
            .map_err(|e| cerr(format!("not a chart reference: {e}")))?;
        let eps = self.endpoints(url, &reference)?;
        self.first_success(eps, |p, r| p.list_oci_chart_versions_at(url, r))
    }

    /// Lists an OCI chart's tags at one place.
    fn list_oci_chart_versions_at(
        &mut self,
        url: &str,
        reference: &Reference,
    ) -> Result<Vec<String>> {
        let cerr = |m: String| BundlerError::ChartPull {
            chart: url.to_owned(),
            url: url.to_owned(),
            message: m,
        };
        let reference = reference.clone();
        let auth = self.auth_for(&reference)?;
        let got = self.rt.block_on(with_retries(&self.counters, || async {
            self.client
                .list_tags(&reference, &auth, None, None)
                .await
                .map_err(classify)
        }));
        let tags = got.map_err(|f| {
            let e = self.pull_error(url, &reference, f);
            cerr(format!(
                "list versions: {}",
                match e {
                    BundlerError::RegistryPull { message, .. } => message,
                    other => other.to_string(),
                }
            ))
        })?;
        self.counters_add_manifest();
        Ok(tags.tags.into_iter().map(|t| t.replace('_', "+")).collect())
    }

    /// Runs a future on the pull runtime (chart repositories).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The HTTP client for chart repositories (made on first use).
    pub fn http(&self) -> std::result::Result<&reqwest::Client, String> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let mut hb = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("stoa-bundler/", env!("CARGO_PKG_VERSION")));
        for r in &self.extra_roots {
            if let Ok(certs) = reqwest::Certificate::from_pem_bundle(&r.data) {
                for c in certs {
                    hb = hb.add_root_certificate(c);
                }
            }
        }
        let c = hb
            .build()
            .map_err(|e| format!("make the HTTP client: {e}"))?;
        Ok(self.http.get_or_init(|| c))
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

/// The layer media type of a Helm chart in an OCI registry.
pub const HELM_CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = parse_reference("docker://127.0.0.1:5000/stoa/api:2.3.0")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "stoa/api");
        assert_eq!(r.tag(), Some("2.3.0"));
        assert!(parse_reference("docker://UPPER/x::y").is_err());
    }

    /// The regex-free path gives what the client's parser gives.
    #[test]
    fn references_built_without_the_regex_equal_the_clients() {
        let d = format!("sha256:{}", "ab".repeat(32));
        for s in [
            "busybox".to_owned(),
            "busybox:1.36".to_owned(),
            "library/busybox:latest".to_owned(),
            "docker.io/busybox".to_owned(),
            "index.docker.io/bitnami/pgpool:4.6.3-debian-12-r0".to_owned(),
            "registry-1.docker.io/bitnamicharts/common:2.31.4".to_owned(),
            "127.0.0.1:5000/docker.io/bitnamicharts/common:latest".to_owned(),
            "localhost/x/y:1".to_owned(),
            "quay.io/org/app".to_owned(),
            format!("registry.gostoa.dev/stoa/api@{d}"),
            format!("registry.gostoa.dev/stoa/api:2.3.0@{d}"),
            format!("nginx@{d}"),
        ] {
            let ours = reference(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
            let theirs = Reference::try_from(s.as_str()).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(ours.whole(), theirs.whole(), "{s}");
            assert_eq!(ours.registry(), theirs.registry(), "{s}");
            assert_eq!(ours.repository(), theirs.repository(), "{s}");
            assert_eq!(ours.tag(), theirs.tag(), "{s}");
            assert_eq!(ours.digest(), theirs.digest(), "{s}");
        }
        // not a name the format accepts: the client's parser and error
        assert!(reference("UPPER/x::y").is_err());
    }
}
