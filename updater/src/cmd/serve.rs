//! `stoa-updater --config F serve [--listen ADDR] [--tls-cert PEM --tls-key
//! PEM] [--json]`: the site store as a read-only OCI registry
//! (crate::serve). Prints one startup line (the URL nodes use, the
//! releases and repositories served; JSON with `--json`), then serves until
//! stopped. Exit 2: bad flags, config or TLS files; 3: cannot listen or
//! read the state.

use std::path::PathBuf;

use stoa_format::cli::Output;

use crate::error::{Result, UpdaterError};
use crate::serve::{self, pool::Limits, routes::versions};

/// The default listen address (loopback only).
pub use crate::serve::DEFAULT_LISTEN;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to listen on [default: [serve] listen, else 127.0.0.1:5000].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// TLS certificate chain, PEM [default: [serve] tls_cert]; with --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM [default: [serve] tls_key]; with --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Worker threads, each serving one connection at a time.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
}

pub fn run(site: &crate::engine::Site, args: &Args, out: Output, verbose: bool) -> Result<()> {
    let cfg = &site.cfg;
    let listen = args
        .listen
        .clone()
        .or(cfg.serve.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    if listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(UpdaterError::Config {
            path: cfg.path.clone(),
            reason: format!("serve listen address {listen:?} is not IP:PORT"),
        });
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => cfg.serve.tls_cert.clone().zip(cfg.serve.tls_key.clone()),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = cfg
        .serve
        .url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{listen}"));
    let (prefix, layout) = cfg
        .registry
        .as_ref()
        .map(|r| (r.prefix.clone(), r.layout))
        .unwrap_or_default();
    let opts = serve::Options {
        state_dir: cfg.state_dir.clone(),
        prefix,
        layout,
        listen: listen.clone(),
        tls,
        url: url.clone(),
        limits: Limits {
            workers: usize::from(args.workers),
            ..Limits::default()
        },
        verbose,
    };
    let json = out.json;
    serve::run(&opts, &mut |cat| {
        if json {
            let v = serde_json::json!({
                "serving": {
                    "url": url, "listen": listen, "tls": scheme == "https",
                    "releases": cat.releases.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "repositories": cat.repos.keys().collect::<Vec<_>>(),
                    "skipped": cat.skipped,
                }
            });
            println!("{v}");
        } else {
            println!(
                "serving {url} (listening on {listen}): releases {}, {} repositories",
                versions(cat),
                cat.repos.len()
            );
        }
        stoa_format::cli::pipe::stdout_written(std::io::Write::flush(&mut std::io::stdout()));
    })
}
