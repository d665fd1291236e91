//! `stoa-updater --config F plan <bundle>`: what apply would do, changing
//! nothing. Verifies the bundle fully with the site's trust, checks the
//! site config has every section the bundle needs, applies the version
//! policy, and reads the databases and Helm for what is pending. Then it
//! runs the preflight checks (crate::preflight) and shows every one; when
//! one failed it exits 9 after the whole report.

use std::path::PathBuf;

use stoa_format::reader::NullSink;
use stoa_format::source::{verify_source_with, BundleSource};

use crate::engine::plan::{Plan, Probe};
use crate::engine::Site;
use crate::error::{Result, UpdaterError};
use crate::progress::bytes_bar;
use crate::state::{LockProbe, OpKind, SiteLock};

/// While an apply or rollback runs, its half-made changes are no base for a
/// plan: refuse as busy (exit 4), naming it.
fn refuse_while_running(site: &Site) -> Result<()> {
    if let LockProbe::Held(owner) = SiteLock::probe(&site.sd)? {
        let state = site.sd.load()?;
        let step = state
            .pending
            .as_ref()
            .and_then(|p| p.current_step())
            .map(|s| s.name.to_string())
            .unwrap_or_else(|| "verify+stage".into());
        let who = LockProbe::Held(owner).describe();
        return Err(UpdaterError::Running(format!(
            "{who} is running, at step {step}; plan again when it has finished (`{}`)",
            crate::config::hint(&site.cfg.path, "status")
        )));
    }
    Ok(())
}

/// `plan --json`: `{"ok": …, …the plan's fields, "preflight": […]}`, and
/// the error when a preflight check failed.
#[derive(Debug, serde::Serialize)]
struct PlanOutput<'a> {
    ok: bool,
    #[serde(flatten)]
    plan: &'a Plan,
    preflight: &'a [crate::preflight::Check],
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<serde_json::Value>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file; or its parts: the `.parts.json` index, a folder
    /// holding it, or the part files.
    #[arg(required = true, num_args = 1..)]
    pub bundle: Vec<PathBuf>,
    /// Plan a version not newer than the installed one, or outside the
    /// bundle's upgrade_from, as `apply --allow-downgrade` would.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Accept a bundle past its expiry time.
    #[arg(long)]
    pub allow_expired: bool,
    /// Check expiry against the machine clock even when it is before the
    /// clock floor (logged in the audit log).
    #[arg(long)]
    pub ignore_clock_floor: bool,
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(config: &std::path::Path, args: &Args) -> Result<()> {
    let site = super::site(config)?;
    refuse_while_running(&site)?;
    crate::tool::check_setpriv()?;
    let now = crate::trust::checked_now(&site.sd, args.ignore_clock_floor)?;
    let base = crate::trust::load(&site.cfg, &site.sd, now)?.base;
    let mut root_version = 0;
    let src = BundleSource::resolve(&args.bundle)?;
    let pb = bytes_bar(src.size(), "verify", args.quiet || args.json);
    let index_trust = base.store();
    // carried roots extend the site's root in memory only: plan changes nothing
    let v = verify_source_with(
        &src,
        &index_trust,
        &mut base.resolver(now, &mut root_version),
        &Site::verify_options(args.allow_expired),
        &mut NullSink,
        &mut |n| pb.inc(n),
    )?;
    pb.finish_and_clear();
    crate::audit::note_bundle(&v);
    crate::audit::note_root(root_version);
    let m = &v.manifest;
    site.cfg.check_needs(m)?;
    // a plan of a long verify: the operation may have started meanwhile
    refuse_while_running(&site)?;
    let state = site.sd.load()?;
    if let Some(p) = &state.pending {
        let same = p.op == OpKind::Apply
            && p.manifest_sha256.as_deref() == Some(v.manifest_sha256.hex().as_str());
        if !same {
            return Err(site.pending_refusal(p));
        }
    } else {
        site.check_policy(&state, m, args.allow_downgrade)?;
    }
    // a delta: apply would refuse unless the store holds every omitted blob
    crate::delta::check_store(&site.sd, &state, m, &mut |_| {})?;
    let plan = Plan::compute(&site, m, &state, Probe::Full);
    // the same refusal, and exit code, as apply's
    plan.refuse_edited()?;
    let preflight = crate::preflight::run(&site.cfg, &site.sd, m);
    if args.json {
        let error = preflight.clone().error(true).err().map(|e| {
            serde_json::json!({"kind": e.kind(), "exit_code": e.exit_code(), "message": e.to_string()})
        });
        let out = PlanOutput {
            ok: error.is_none(),
            plan: &plan,
            preflight: &preflight.checks,
            error,
        };
        let mut doc = serde_json::to_value(&out).unwrap_or_default();
        doc["delta"] = serde_json::to_value(crate::delta::history_field(m)).unwrap_or_default();
        println!("{doc}");
        return preflight.error(true).map(|_| ());
    }
    if let Some(d) = &m.delta {
        println!(
            "delta on {}: the store holds all {} omitted entries ({}), checked",
            d.bases[0],
            d.omitted.len(),
            stoa_format::report::human_bytes(d.omitted.iter().map(|e| e.size).sum())
        );
    }
    print!("{plan}");
    preflight.print_text();
    preflight.error(false).map(|_| ())
}
