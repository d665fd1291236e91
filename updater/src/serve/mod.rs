//! `stoa-updater serve`: the site store as a read-only OCI distribution
//! registry (docs/OPERATIONS.md, *Serving the store*).
//!
//! - `store.rs`: what is served (every image of every retained release,
//!   under the names apply pushes) and where each manifest and blob is;
//! - `http.rs`: the HTTP/1.1 request head, target, `Range`, responses;
//! - `routes.rs`: the distribution API endpoints over the catalog;
//! - `stream.rs`: blobs re-hashed as they are sent, never sent whole when
//!   wrong;
//! - `pool.rs`: the acceptor, the fixed worker pool, timeouts, TLS.

pub mod http;
pub mod pool;
pub mod routes;
pub mod store;
pub mod stream;

use std::fs::File;
use std::io::BufReader;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, UpdaterError};

/// Loads the TLS server config from PEM files (certificate chain, key).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let bad = |p: &Path, reason: String| UpdaterError::Config {
        path: p.to_owned(),
        reason,
    };
    let f = File::open(cert).map_err(|e| bad(cert, format!("read TLS certificate: {e}")))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(f))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(cert, format!("TLS certificate: {e}")))?;
    if certs.is_empty() {
        return Err(bad(cert, "no PEM certificate in it".into()));
    }
    let f = File::open(key).map_err(|e| bad(key, format!("read TLS key: {e}")))?;
    let key_der = rustls_pemfile::private_key(&mut BufReader::new(f))
        .map_err(|e| bad(key, format!("TLS key: {e}")))?
        .ok_or_else(|| bad(key, "no PEM private key in it".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(key, format!("TLS certificate and key: {e}")))?;
    Ok(Arc::new(cfg))
}

/// The default listen address (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";

/// The address nodes use for `serve`: `[serve] url`, else
/// `http(s)://<listen>` (`listen` given, else `[serve] listen`, else the
/// default; https with `[serve] tls_cert`), as `mirror-config --serve`
/// writes it for nodes.
pub fn node_url(cfg: &crate::config::SiteConfig, listen: Option<&str>) -> String {
    let tls = cfg.serve.tls_cert.is_some();
    cfg.serve.url.clone().unwrap_or_else(|| {
        let listen = listen
            .map(str::to_owned)
            .or(cfg.serve.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        format!("{}://{listen}", if tls { "https" } else { "http" })
    })
}

/// What `serve` needs, resolved from the flags and the config.
#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub prefix: String,
    pub layout: crate::registry::Layout,
    pub listen: String,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub url: String,
    pub limits: pool::Limits,
    pub verbose: bool,
}

/// Binds, loads the catalog, calls `ready` with the catalog (the startup
/// line), then serves until the process ends.
pub fn run(opts: &Options, ready: &mut dyn FnMut(&store::Catalog)) -> Result<()> {
    let tls = match &opts.tls {
        Some((c, k)) => Some(tls_config(c, k)?),
        None => None,
    };
    let st = store::Store::new(opts.state_dir.clone(), &opts.prefix, opts.layout);
    let catalog = st.load()?;
    let listener = TcpListener::bind(&opts.listen)
        .map_err(|e| UpdaterError::io("listen on", &opts.listen, e))?;
    ready(&catalog);
    let shared = Arc::new(routes::Shared::new(st, catalog, opts.verbose));
    pool::run(listener, tls, shared, opts.limits)
        .map_err(|e| UpdaterError::io("serve on", &opts.listen, e))
}
