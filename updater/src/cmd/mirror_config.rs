//! `stoa-updater --config F mirror-config --for containerd|cri-o|k3s|openshift
//! --out DIR [--serve] [--ca PEM] [--json]`: writes the nodes' mirror
//! configuration for the source registries of the retained releases' images
//! (crate::mirror), pointing at `[registry] url` (or, with `--serve`, at
//! `[serve] url`). Needs `[registry] layout = "mirror"`. Prints each file
//! written (`--json`: `{"ok": true, "mirror_config": {…, "files": […]}}`).
//! Exit 2: not the mirror layout, a CA or `--out` that cannot be used; 3:
//! the state cannot be read or a file written; 5: no retained release has
//! images.

use std::path::PathBuf;

use stoa_format::cli::Output;

use crate::error::{Result, UpdaterError};
use crate::mirror::{self, Runtime};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container runtime the files are for.
    #[arg(long = "for", value_enum, value_name = "RUNTIME")]
    pub runtime: Runtime,
    /// The folder the files are written into (created when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Point nodes at `stoa-updater serve` ([serve] url) instead of [registry] url.
    #[arg(long)]
    pub serve: bool,
    /// The CA (PEM) nodes verify the site with [default: [registry] ca_cert; none with --serve].
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
}

pub fn run(site: &crate::engine::Site, args: &Args, out: Output) -> Result<()> {
    let mut t = mirror::target(&site.cfg, args.serve, args.ca.as_deref())?;
    t.sources = mirror::sources(&site.sd)?;
    if t.sources.is_empty() {
        return Err(UpdaterError::Refused(
            "mirror-config: no retained release has images (apply a release first)".into(),
        ));
    }
    if args.out.exists() && !args.out.is_dir() {
        return Err(UpdaterError::MirrorConfig {
            path: args.out.clone(),
            reason: "--out is not a folder".into(),
        });
    }
    let files = mirror::render(args.runtime, &t);
    let written = mirror::write(&args.out, &files)?;
    let site_url = format!("{}://{}", t.scheme, t.host);
    if out.json {
        let v = serde_json::json!({"ok": true, "mirror_config": {
            "for": args.runtime.as_str(),
            "site": site_url,
            "prefix": t.prefix,
            "sources": t.sources,
            "files": written,
        }});
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} mirror configuration: {} → {site_url} (prefix {:?})",
        args.runtime.as_str(),
        t.sources.join(", "),
        t.prefix
    );
    for p in &written {
        println!("wrote {}", p.display());
    }
    Ok(())
}
