//! `stoa-updater --config F plan <bundle>`: what apply would do, changing
//! nothing. Verifies the bundle fully with the site's trust, checks the
//! site config has every section the bundle needs, applies the version
//! policy, and reads the databases and Helm for what is pending. Then it
//! runs the preflight checks (crate::preflight) and shows every one; when
//! one failed it exits 9 after the whole report. Every chart is rendered
//! through the post-renderer (crate::postrender): its images as they will
//! run, the final manifests with `--render`, and on Helm 3 the hook images
//! that would leave the site registry (exit 5 unless accepted).
//! `--report PATH` also writes the change report (crate::report), signed
//! with `--sign-key KEY`, before any failure is returned.

use std::path::PathBuf;
use stoa_format::cli::Output;

use std::os::unix::fs::DirBuilderExt;

use stoa_format::source::{verify_source_with, BundleSource};

use crate::engine::plan::{Plan, Probe};
use crate::engine::Site;
use crate::error::{Result, UpdaterError};
use crate::helm::Helm;
use crate::postrender::{
    hook_refusal, prepare, registry_value, render_chart, site_images, ChartSink, RenderedChart,
};
use crate::progress::bytes_bar;
use crate::state::{LockProbe, SiteLock};

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
    /// Each chart rendered through the post-renderer (images as they will
    /// run; the manifests with `--render`).
    render: &'a [RenderedChart],
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
    /// Also show the final manifests of each chart: `helm template` with the
    /// bundle's chart, the site's values and namespace, and the
    /// post-renderer that serves every image from the site registry.
    #[arg(long)]
    pub render: bool,
    /// Do not refuse (exit 5) when Helm 3 would run hook images from outside
    /// the site registry (as `apply --accept-hook-images`).
    #[arg(long)]
    pub accept_hook_images: bool,
    /// Also write the change report: one self-contained HTML page for a
    /// change board (docs/OPERATIONS.md, Change report).
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Sign the report with this Ed25519 key (PKCS#8 PEM file): writes
    /// `<report>.sig`, checkable with `openssl pkeyutl -verify -rawin`.
    #[arg(long, value_name = "KEY", requires = "report")]
    pub sign_key: Option<PathBuf>,
}

pub fn run(site: &crate::engine::Site, args: &Args, out: Output) -> Result<()> {
    refuse_while_running(site)?;
    crate::tool::check_setpriv()?;
    // a bad signing key fails before the bundle is read
    let signer = args
        .sign_key
        .as_deref()
        .map(crate::report::Signer::load)
        .transpose()?;
    let now = crate::trust::checked_now(&site.sd, args.ignore_clock_floor)?;
    let base = crate::trust::load(&site.cfg, &site.sd, now)?.base;
    let src = BundleSource::resolve(&args.bundle)?;
    let pb = bytes_bar(src.size(), "verify", !out.bars());
    let index_trust = base.store();
    // the roots the bundle carries that apply would accept (in memory only)
    let mut chain: Vec<stoa_format::root::SignedRoot> = Vec::new();
    // the chart archives are kept (in a private temp folder: plan changes
    // nothing) to render them
    let tmp = TempDir::new()?;
    let mut chart_sink = ChartSink::new(tmp.0.clone());
    // the report shows each migration's SQL: kept while it verifies
    let mut sink = crate::report::SqlCapture::new(&mut chart_sink);
    let keep_sql = args.report.is_some();
    // carried roots extend the site's root in memory only: plan changes nothing
    let v = verify_source_with(
        &src,
        &index_trust,
        &mut |insp: &stoa_format::Inspection| {
            let (store, c) = base.resolve(&insp.anchors, now)?;
            chain = c;
            Ok(store)
        },
        &Site::verify_options(args.allow_expired),
        if keep_sql { &mut sink } else { sink.inner() },
        &mut |n| pb.inc(n),
    )
    .map_err(|e| crate::trust::explain_revoked(&site.sd, &chain, e))?;
    let sql = sink.into_kept();
    let sink = chart_sink;
    pb.finish_and_clear();
    crate::audit::note_bundle(&v);
    let root_version = chain.last().map_or(base.version(), |r| r.version());
    crate::audit::note_root(root_version);
    // what apply would change in the site's trust (issue 21 item 5)
    let trust_change = chain.last().map(|last| {
        let cur = match &base {
            stoa_format::root::TrustBase::Root(r) => Some(&**r),
            stoa_format::root::TrustBase::Keys(_) => None,
        };
        crate::trust::describe_change(cur, last)
    });
    let m = &v.manifest;
    site.cfg.check_needs(m)?;
    // `"bundled"` Helm and kubectl: the bundle's own, run from the temp folder
    let tools = tmp.0.join("tools");
    let at = crate::bundled::Place {
        sd: &site.sd,
        kept: Some(&tmp.0),
        into: &tools,
    };
    let bound = site.with_tools_of(m, at)?;
    let site = bound.as_ref().unwrap_or(site);
    // a plan of a long verify: the operation may have started meanwhile
    refuse_while_running(site)?;
    let state = site.sd.load()?;
    // the same admission as apply's (pending, policy, a delta's store)
    let sha = v.manifest_sha256.hex();
    site.admit(&state, m, &sha, args.allow_downgrade, &mut |_| Ok(()))?;
    let mut plan = Plan::compute(site, m, &state, Probe::Full);
    if trust_change.is_some() {
        plan.accept_trust();
    }
    // the same refusal, and exit code, as apply's
    plan.refuse_edited()?;
    let preflight = crate::preflight::run(&site.cfg, &site.sd, m);
    // every chart through `helm template` and the post-renderer
    let helm = site.cfg.helm.as_ref().and_then(|h| Helm::new(h).ok());
    let (mut rendered, render_error) = render_charts(
        site,
        m,
        helm.as_ref(),
        &tmp,
        &sink,
        args.render || args.report.is_some(),
    );
    let written = match &args.report {
        Some(path) => {
            let inputs = crate::report::Inputs {
                site,
                verified: &v,
                root_version,
                trust_change: trust_change.as_ref(),
                state: &state,
                plan: &plan,
                preflight: &preflight,
                rendered: &rendered,
                render_error: render_error.as_ref(),
                helm: helm.as_ref(),
                tmp: &tmp.0,
                sql: &sql,
            };
            Some(crate::report::write(&inputs, path, signer.as_ref())?)
        }
        None => None,
    };
    if !args.render {
        for r in &mut rendered {
            r.manifests = None;
        }
    }
    let refusal = match &helm {
        Some(h) if h.major < 4 && !args.accept_hook_images => hook_refusal(&rendered),
        _ => None,
    };
    if out.json {
        let error = preflight.clone().error(true).err().map(|e| {
            serde_json::json!({"kind": e.kind(), "exit_code": e.exit_code(), "message": e.to_string()})
        });
        let out = PlanOutput {
            ok: error.is_none() && render_error.is_none() && refusal.is_none(),
            plan: &plan,
            preflight: &preflight.checks,
            render: &rendered,
            error,
        };
        let mut doc = serde_json::to_value(&out).unwrap_or_default();
        doc["delta"] = serde_json::to_value(crate::delta::history_field(m)).unwrap_or_default();
        doc["trust_change"] = serde_json::to_value(&trust_change).unwrap_or_default();
        if let Some(w) = &written {
            doc["report"] = serde_json::to_value(w).unwrap_or_default();
        }
        doc["image_signatures"] =
            serde_json::to_value(stoa_format::report::image_signatures(m)).unwrap_or_default();
        println!("{doc}");
        preflight.error(true)?;
        return finish(render_error, refusal);
    }
    print_text(m, &plan, &preflight, &rendered, trust_change.as_ref());
    if let Some(w) = &written {
        match (&w.signature, &w.key_id) {
            (Some(sp), Some(k)) => println!(
                "report: {} ({} bytes), signed by key {k}: {}",
                w.path.display(),
                w.bytes,
                sp.display()
            ),
            _ => println!("report: {} ({} bytes)", w.path.display(), w.bytes),
        }
    }
    // a failed check first (exit 9), then a chart that did not render, then
    // a hook refusal: all after everything was shown
    preflight.error(false)?;
    finish(render_error, refusal)
}

/// Every chart rendered through `helm template` and the post-renderer (the
/// final manifests kept with `--render`), and the first chart that did not
/// render.
fn render_charts(
    site: &Site,
    m: &stoa_format::BundleManifest,
    helm: Option<&Helm>,
    tmp: &TempDir,
    sink: &ChartSink,
    keep_manifests: bool,
) -> (Vec<RenderedChart>, Option<UpdaterError>) {
    let mut render_error: Option<UpdaterError> = None;
    let mut rendered: Vec<RenderedChart> = Vec::new();
    if let (Some(h), false) = (helm, m.charts.is_empty()) {
        let setup = site_images(&site.cfg, m)
            .and_then(|imgs| Ok((prepare(&tmp.0.join("post-render"), &imgs, h.major)?, imgs)));
        match setup {
            Ok((pr, imgs)) => {
                let reg = registry_value(&site.cfg);
                for c in &m.charts {
                    let files = sink
                        .chart(m, c, &site.sd)
                        .and_then(|p| Ok((p, sink.values(m, c, &site.sd)?)));
                    match files
                        .and_then(|(p, v)| render_chart(h, c, &p, &v, &pr, &imgs, reg.as_deref()))
                    {
                        Ok((mut r, text)) => {
                            if keep_manifests {
                                r.manifests = Some(text);
                            }
                            rendered.push(r);
                        }
                        Err(e) => {
                            render_error.get_or_insert(e);
                        }
                    }
                }
            }
            Err(e) => render_error = Some(e),
        }
    }
    (rendered, render_error)
}

/// The text report: the delta's store check, the trust change, the plan,
/// every preflight check and every chart's rendered images.
fn print_text(
    m: &stoa_format::BundleManifest,
    plan: &Plan,
    preflight: &crate::preflight::Preflight,
    rendered: &[RenderedChart],
    trust_change: Option<&crate::trust::TrustChange>,
) {
    if let Some(d) = &m.delta {
        println!(
            "delta on {}: the store holds all {} omitted entries ({}), checked",
            d.bases[0],
            d.omitted.len(),
            stoa_format::report::human_bytes(d.omitted.iter().map(|e| e.size).sum())
        );
    }
    if let Some(t) = trust_change {
        println!("trust: apply will accept {t}");
    }
    // the carried upstream signatures, re-verified by the read above
    for s in stoa_format::report::image_signatures(m) {
        println!("{}", stoa_format::report::signature_line(&s));
    }
    print!("{plan}");
    preflight.print_text();
    for c in rendered {
        println!("render {}/{} ({}):", c.namespace, c.release, c.chart);
        for i in &c.images {
            println!(
                "  image {}/{} {}{}: {}",
                i.kind,
                i.name,
                i.container,
                i.hook
                    .as_deref()
                    .map(|h| format!(" (hook {h})"))
                    .unwrap_or_default(),
                i.image
            );
        }
        for i in &c.hook_images_outside {
            println!(
                "  hook image NOT from the site registry (Helm 3 does not post-render hooks): {}/{} {}: {}",
                i.kind, i.name, i.container, i.image
            );
        }
        if let Some(t) = &c.manifests {
            println!(
                "--- manifests of {}/{} after rewriting ---",
                c.namespace, c.release
            );
            print!("{t}");
            if !t.ends_with('\n') {
                println!();
            }
            println!("--- end of {} ---", c.release);
        }
    }
}

/// After everything was shown: a chart that did not render, then a hook
/// refusal, make plan fail.
fn finish(render_error: Option<UpdaterError>, refusal: Option<UpdaterError>) -> Result<()> {
    match (render_error, refusal) {
        (Some(e), _) | (None, Some(e)) => Err(e),
        (None, None) => Ok(()),
    }
}

/// A private temp folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let base = std::env::temp_dir();
        for n in 0..100u32 {
            let p = base.join(format!("stoa-plan-{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(Self(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(UpdaterError::io("create temp folder", &p, e)),
            }
        }
        Err(UpdaterError::io(
            "create temp folder",
            &base,
            std::io::Error::other("no free name"),
        ))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
