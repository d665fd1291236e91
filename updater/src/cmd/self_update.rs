//! `stoa-updater --config F self-update <bundle> [--allow-downgrade]` and
//! `self-update --revert`: the updater replaces itself with the
//! `stoa-updater` the bundle carries for this platform
//! (docs/OPERATIONS.md *Updating the updater*), under the site lock,
//! audited.
//!
//! The bundle is verified against the site's trust in force exactly as
//! `verify` does (signatures, threshold, carried roots in memory only,
//! expiry against the clock floor, every entry's size and digest). It is
//! read the bootstrap way (docs/FORMAT.md *Versioning*): a bundle of a
//! format version newer than this updater reads is still verified, as its
//! frozen subset, so that this updater can install the one that reads it.
//! The carried version must be newer than the running one (exit 5, unless
//! `--allow-downgrade`), checked on the head first (so a wrong bundle is
//! refused before a long read) and again on the verified manifest. The
//! new binary is checked and swapped by crate::selfupdate. Nothing in
//! `state_dir` changes but the audit log: no trust or clock floor is
//! persisted.

use std::path::PathBuf;

use serde::Serialize;
use stoa_format::cli::Output;
use stoa_format::source::{inspect_source_bootstrap, verify_source_bootstrap, BundleSource};
use stoa_format::VerifyOptions;

use crate::engine::Site;
use crate::error::{Result, UpdaterError};
use crate::progress::bytes_bar;
use crate::selfupdate::{self, Install, ToolSink};
use crate::state::SiteLock;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file; or its parts: the `.parts.json` index, a folder
    /// holding it, or the part files.
    #[arg(required_unless_present = "revert", num_args = 1..)]
    pub bundle: Vec<PathBuf>,
    /// Install the carried updater even when it is not newer than the
    /// running one.
    #[arg(long, conflicts_with = "revert")]
    pub allow_downgrade: bool,
    /// Accept a bundle past its expiry time.
    #[arg(long, conflicts_with = "revert")]
    pub allow_expired: bool,
    /// Check expiry against the machine clock even when it is before the
    /// clock floor (logged in the audit log).
    #[arg(long, conflicts_with = "revert")]
    pub ignore_clock_floor: bool,
    /// Put back the updater the last self-update replaced
    /// (`<binary>.previous`); the one running now becomes the previous.
    #[arg(long, conflicts_with = "bundle")]
    pub revert: bool,
}

/// The `--json` report.
#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    /// `installed`, `reverted`.
    action: &'static str,
    /// The binary's path.
    path: PathBuf,
    /// What runs at `path` now.
    version: String,
    /// What ran there before.
    replaced_version: String,
    /// Where the replaced binary is kept.
    previous: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format_version: Option<u32>,
    /// The bundle's format is newer than this updater reads: it was read as
    /// its frozen subset.
    newer_format: bool,
    /// Temp files of an interrupted self-update that were removed.
    removed_leftovers: Vec<PathBuf>,
}

pub fn run(site: &Site, args: &Args, out: Output) -> Result<()> {
    let install = Install::current()?;
    let platform = selfupdate::host()?;
    site.sd.ensure()?;
    let _lock = SiteLock::take(&site.sd, "self-update")?;
    let state = site.sd.load()?;
    if let Some(p) = &state.pending {
        return Err(site.pending_refusal(p));
    }
    let removed_leftovers = selfupdate::clean_leftovers(&install);
    let report = if args.revert {
        let running = selfupdate::running_version();
        let r = selfupdate::revert(&install, platform)?;
        crate::audit::note(format!(
            "self-update --revert: {} is stoa-updater {} again (was {running})",
            r.path.display(),
            r.version
        ));
        Report {
            ok: true,
            action: "reverted",
            path: r.path,
            version: r.version.to_string(),
            replaced_version: running.to_string(),
            previous: r.previous,
            sha256: None,
            release: None,
            manifest_sha256: None,
            format_version: None,
            newer_format: false,
            removed_leftovers,
        }
    } else {
        install_from(site, args, &install, platform, out, removed_leftovers)?
    };
    print(&report, out);
    Ok(())
}

/// Verifies the bundle, checks and swaps in its updater.
fn install_from(
    site: &Site,
    args: &Args,
    install: &Install,
    platform: stoa_format::tools::Platform,
    out: Output,
    removed_leftovers: Vec<PathBuf>,
) -> Result<Report> {
    let running = selfupdate::running_version();
    let now = crate::trust::checked_now(&site.sd, args.ignore_clock_floor)?;
    let base = crate::trust::load(&site.cfg, &site.sd, now)?.base;
    let src = BundleSource::resolve(&args.bundle)?;
    let opts = VerifyOptions {
        allow_expired: args.allow_expired,
        now,
        ..VerifyOptions::default()
    };
    // the head first (not yet trusted): a bundle without a newer updater
    // is refused before its content is read
    let head = inspect_source_bootstrap(&src, &opts.limits)?;
    check_newer(
        selfupdate::pick(&head.manifest.tools, platform)?,
        &running,
        args,
    )?;

    let want = stoa_format::tools::tool_entry_path(platform.name, stoa_format::tools::UPDATER);
    let mut sink = ToolSink::new(want, install.path.clone());
    let mut chain: Vec<stoa_format::root::SignedRoot> = Vec::new();
    let pb = bytes_bar(src.size(), "verify", !out.bars());
    let v = verify_source_bootstrap(
        &src,
        &base.store(),
        &mut |insp: &stoa_format::Inspection| {
            let (store, c) = base.resolve(&insp.anchors, now)?;
            chain = c;
            Ok(store)
        },
        &opts,
        &mut sink,
        &mut |n| pb.inc(n),
    )
    .map_err(|e| crate::trust::explain_revoked(&site.sd, &chain, e))?;
    pb.finish_and_clear();
    crate::audit::note_bundle(&v.verified);
    crate::audit::note_root(chain.last().map_or(base.version(), |r| r.version()));
    let m = &v.verified.manifest;
    let record = selfupdate::pick(&m.tools, platform)?;
    check_newer(record, &running, args)?;
    let new = sink.take().ok_or_else(|| {
        UpdaterError::Refused(format!("the bundle did not carry {}", record.path))
    })?;
    selfupdate::check_new(new.temp_path(), platform, Some(&record.version))?;
    // the new binary is written, closed and checked; the running one is
    // untouched until the rename below (the kill test's point)
    site.crash_hook(&"self-update:written");
    let s = selfupdate::swap(install, new)?;
    crate::audit::note(format!(
        "self-update: {} is stoa-updater {} (was {running}; the previous kept as {})",
        s.path.display(),
        record.version,
        s.previous.display()
    ));
    Ok(Report {
        ok: true,
        action: "installed",
        path: s.path,
        version: record.version.to_string(),
        replaced_version: running.to_string(),
        previous: s.previous,
        sha256: m.entry(&record.path).map(|e| e.sha256.oci()),
        release: Some(format!("{} {}", m.release.name, m.release.version)),
        manifest_sha256: Some(v.verified.manifest_sha256.hex()),
        format_version: Some(m.format_version),
        newer_format: v.newer_format,
        removed_leftovers,
    })
}

/// Exit 5 unless the carried version is newer than the running one (or
/// `--allow-downgrade`).
fn check_newer(
    record: &stoa_format::manifest::ToolRecord,
    running: &semver::Version,
    args: &Args,
) -> Result<()> {
    if record.version <= *running && !args.allow_downgrade {
        return Err(UpdaterError::Refused(format!(
            "the bundle's stoa-updater {} is not newer than the running {running}; pass --allow-downgrade to install it anyway",
            record.version
        )));
    }
    Ok(())
}

fn print(r: &Report, out: Output) {
    if out.json {
        println!("{}", serde_json::json!(r));
        return;
    }
    for p in &r.removed_leftovers {
        println!(
            "removed {} (left by an interrupted self-update)",
            p.display()
        );
    }
    if let Some(rel) = &r.release {
        let newer = if r.newer_format {
            " (a newer format than this updater reads: verified as its frozen subset)"
        } else {
            ""
        };
        println!(
            "verified  {rel}, format_version {}{newer}",
            r.format_version.unwrap_or_default()
        );
    }
    println!(
        "{} stoa-updater {} at {} (was {})",
        r.action,
        r.version,
        r.path.display(),
        r.replaced_version
    );
    println!(
        "kept      the replaced one as {} (`stoa-updater self-update --revert` swaps them back)",
        r.previous.display()
    );
}
