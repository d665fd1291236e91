//! Making the clients of one build: the OCI client (extra CAs, plain HTTP
//! per registry, timeouts, parallel downloads), the content cache, the
//! download runtime, and, on first use, the HTTP client for chart
//! repositories and token challenges with the same roots.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::Client;

use super::cache::Cache;
use super::mirrors::RegistriesConf;
use super::{Counters, PullOptions, Puller, DELAY_ENV};
use crate::error::{BundlerError, Result};

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
}
