//! `stoa-updater --config F apply <bundle> [--allow-downgrade] [--no-auto-rollback]`.

use std::path::PathBuf;
use stoa_format::cli::Output;

use stoa_format::source::BundleSource;

use crate::engine::{ApplyOptions, ApplyReport};
use crate::error::{Result, UpdaterError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file; or its parts: the `.parts.json` index, a folder
    /// holding it, or the part files.
    #[arg(required = true, num_args = 1..)]
    pub bundle: Vec<PathBuf>,
    /// Apply a version not newer than the installed one, or outside the
    /// bundle's upgrade_from (logged in history).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// On failure, leave the site as it is for inspection instead of undoing
    /// the completed steps.
    #[arg(long)]
    pub no_auto_rollback: bool,
    /// Accept a bundle past its expiry time.
    #[arg(long)]
    pub allow_expired: bool,
    /// Check expiry against the machine clock even when it is before the
    /// clock floor (logged in the audit log).
    #[arg(long)]
    pub ignore_clock_floor: bool,
    /// Apply although Helm 3 would run hook images (which its post-renderer
    /// never sees) from outside the site registry; plan names them.
    #[arg(long)]
    pub accept_hook_images: bool,
}

pub fn run(site: &crate::engine::Site, args: &Args, out: Output) -> Result<()> {
    let mut progress = crate::progress::Reporter::new("apply", out);
    let opts = ApplyOptions {
        allow_downgrade: args.allow_downgrade,
        no_auto_rollback: args.no_auto_rollback,
        allow_expired: args.allow_expired,
        ignore_clock_floor: args.ignore_clock_floor,
        accept_hook_images: args.accept_hook_images,
        bundle: args.bundle.clone(),
    };
    let src = BundleSource::resolve(&args.bundle)?;
    let r = site.apply(&src, &opts, &mut |phase, done, total| {
        progress.update(phase, done, total)
    });
    progress.finish();
    let r = match r {
        Err(UpdaterError::PreflightFailed { report, .. }) => {
            // every check, then the error; nothing was changed
            let e = UpdaterError::PreflightFailed {
                report: report.clone(),
                reported: out.json,
            };
            if out.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "preflight": report.checks, "error": {"kind": e.kind(), "exit_code": e.exit_code(), "message": e.to_string()}})
                );
            } else {
                report.print_text();
            }
            return Err(e);
        }
        r => r?,
    };
    if out.json {
        println!("{}", serde_json::json!({"ok": true, "apply": r}));
    } else {
        print_text(&r);
    }
    Ok(())
}

/// The text of a finished apply.
fn print_text(r: &ApplyReport) {
    r.preflight.print_text();
    println!(
        "applied {} (from {}){}",
        r.version,
        r.from.as_deref().unwrap_or("nothing installed"),
        if r.resumed { ", resumed" } else { "" }
    );
    println!(
        "images: {} pushed, {} blobs uploaded ({} bytes), {} already present, {} mounted",
        r.push.images,
        r.push.blobs_uploaded,
        r.push.bytes_uploaded,
        r.push.blobs_skipped,
        r.push.blobs_mounted
    );
    for (db, ids) in &r.migrations {
        println!(
            "database {db}: migrations {}",
            if ids.is_empty() {
                "none pending".to_owned()
            } else {
                ids.join(", ")
            }
        );
    }
    for h in &r.helm {
        println!(
            "helm {}/{}: revision {} -> {}",
            h.namespace,
            h.release,
            h.before
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none".into()),
            h.after.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
        );
    }
    for f in &r.files {
        println!("file {f}");
    }
    if !r.pruned.is_empty() {
        println!("pruned releases {}", r.pruned.join(", "));
    }
}
