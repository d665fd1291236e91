//! `stoa-updater --config F plan <bundle>`: what apply would do, changing
//! nothing. Verifies the bundle fully with the site's trust, checks the
//! site config has every section the bundle needs, applies the version
//! policy, and reads the databases and Helm for what is pending.

use std::path::PathBuf;

use std::os::unix::fs::DirBuilderExt;

use serde_json::json;
use stoa_format::source::{verify_source_with, BundleSource};

use crate::db;
use crate::engine::Site;
use crate::error::{Result, UpdaterError};
use crate::helm::Helm;
use crate::postrender::{
    hook_refusal, prepare, registry_value, render_chart, site_images, ChartSink, RenderedChart,
};
use crate::progress::bytes_bar;
use crate::registry::map_name;
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
            .map(|s| s.name.clone())
            .unwrap_or_else(|| "verify+stage".into());
        let who = LockProbe::Held(owner).describe();
        return Err(UpdaterError::Running(format!(
            "{who} is running, at step {step}; plan again when it has finished (`{}`)",
            crate::config::hint(&site.cfg.path, "status")
        )));
    }
    Ok(())
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
    // the chart archives are kept (in a temp folder: plan changes nothing)
    // to render them; the manifest is known only once verified, so every
    // `.tgz` under charts/ is kept
    let tmp = TempDir::new()?;
    let mut sink = ChartSink::new(tmp.0.clone());
    // carried roots extend the site's root in memory only: plan changes nothing
    let v = verify_source_with(
        &src,
        &index_trust,
        &mut base.resolver(now, &mut root_version),
        &Site::verify_options(args.allow_expired),
        &mut sink,
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
    let prefix = site
        .cfg
        .registry
        .as_ref()
        .map(|r| r.prefix.clone())
        .unwrap_or_default();
    let host = site
        .cfg
        .registry
        .as_ref()
        .map(crate::registry::site_registry_ref)
        .unwrap_or_default();
    let images: Vec<_> = m
        .images
        .iter()
        .map(|i| {
            let t = map_name(&i.name, &prefix);
            let host_only = host.split('/').next().unwrap_or("");
            json!({"name": i.name, "digest": i.digest, "to": format!("{host_only}/{}{}", t.repo, t.tag.map(|t| format!(":{t}")).unwrap_or_default()), "size": i.size})
        })
        .collect();
    let mut migrations = Vec::new();
    for set in &m.migrations {
        let url = &site.cfg.databases[&set.database].url;
        let (pending, note) = match db::applied(&set.database, url) {
            Ok(applied) => {
                let mut edited = Vec::new();
                let mut pend = Vec::new();
                for s in &set.steps {
                    let sum = m.entry(&s.up).map(|e| e.sha256.hex()).unwrap_or_default();
                    match applied.get(&s.id) {
                        Some(a) if a.checksum != sum => edited.push(s.id.clone()),
                        Some(_) => {}
                        None => pend.push(format!(
                            "{}_{}{}",
                            s.id,
                            s.name,
                            if s.down.is_some() {
                                ""
                            } else {
                                " (no down step)"
                            }
                        )),
                    }
                }
                if !edited.is_empty() {
                    // the same refusal, and exit code, as apply's
                    site.check_edited_migrations(m)?;
                }
                (pend, None)
            }
            Err(e) => (
                set.steps
                    .iter()
                    .map(|s| format!("{}_{}", s.id, s.name))
                    .collect(),
                Some(format!("could not read the database: {e}")),
            ),
        };
        migrations.push(json!({"database": set.database, "pending": pending, "snapshot": site.cfg.databases[&set.database].snapshot, "note": note}));
    }
    let helm = site.cfg.helm.as_ref().and_then(|h| Helm::new(h).ok());
    // every chart through `helm template` and the post-renderer
    let mut render_error: Option<UpdaterError> = None;
    let mut rendered: Vec<Option<(RenderedChart, String)>> = Vec::new();
    if let (Some(h), false) = (&helm, m.charts.is_empty()) {
        let pr = site_images(&site.cfg, m)
            .and_then(|imgs| Ok((prepare(&tmp.0.join("post-render"), &imgs, h.major)?, imgs)));
        match pr {
            Ok((pr, imgs)) => {
                let reg = registry_value(&site.cfg);
                for c in &m.charts {
                    let chart = sink.chart(m, c);
                    match render_chart(h, c, &chart, &pr, &imgs, reg.as_deref()) {
                        Ok(r) => rendered.push(Some(r)),
                        Err(e) => {
                            rendered.push(None);
                            render_error.get_or_insert(e);
                        }
                    }
                }
            }
            Err(e) => {
                render_error = Some(e);
            }
        }
    }
    let charts: Vec<_> = m
        .charts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let cur = helm.as_ref().map(|h| h.revision(&c.release, &c.namespace));
            let current = match cur {
                Some(Ok(Some(r))) => json!(r),
                Some(Ok(None)) => json!("not installed"),
                Some(Err(e)) => json!(format!("unknown: {e}")),
                None => json!("unknown (helm not available)"),
            };
            let values = site
                .cfg
                .helm
                .as_ref()
                .and_then(|h| h.values_file(&c.release));
            let r = rendered.get(i).and_then(Option::as_ref);
            let mut j = json!({"release": c.release, "namespace": c.namespace, "chart": format!("{}-{}", c.name, c.version), "current_revision": current, "values_files": values.into_iter().collect::<Vec<_>>()});
            if let Some((rc, text)) = r {
                j["images"] = json!(rc.images);
                j["hook_images_outside"] = json!(rc.hook_images_outside);
                if args.render {
                    j["manifests"] = json!(text);
                }
            } else if helm.is_some() {
                j["render"] = json!("failed");
            }
            j
        })
        .collect();
    let hook_check: Vec<RenderedChart> =
        rendered.iter().flatten().map(|(r, _)| r.clone()).collect();
    let refusal = match &helm {
        Some(h) if h.major < 4 && !args.accept_hook_images => hook_refusal(&hook_check),
        _ => None,
    };
    let files: Vec<_> = m
        .files
        .iter()
        .map(|f| json!({"dest": site.cfg.files_dir().join(&f.dest), "mode": f.mode}))
        .collect();
    let doc = json!({
        "ok": true,
        "release": m.release.name, "version": m.release.version.to_string(),
        "installed": state.installed.as_ref().map(|x| x.to_string()),
        "resume": state.pending.is_some(),
        "images": images, "migrations": migrations, "charts": charts, "files": files,
        "helm": helm.as_ref().map(|h| h.version.clone()),
    });
    if args.json {
        println!("{doc}");
        return finish(render_error, refusal);
    }
    println!(
        "plan: {} {} over {}{}",
        m.release.name,
        m.release.version,
        state
            .installed
            .as_ref()
            .map(|x| x.to_string())
            .unwrap_or_else(|| "nothing installed".into()),
        if state.pending.is_some() {
            " (resumes the interrupted apply)"
        } else {
            ""
        }
    );
    for i in &images {
        println!(
            "push image {} -> {}",
            i["name"].as_str().unwrap_or(""),
            i["to"].as_str().unwrap_or("")
        );
    }
    for mg in &migrations {
        println!(
            "database {}: snapshot {}, pending {}",
            mg["database"].as_str().unwrap_or(""),
            mg["snapshot"],
            mg["pending"]
        );
        if let Some(n) = mg["note"].as_str() {
            println!("  note: {n}");
        }
    }
    for c in &charts {
        let rev = match &c["current_revision"] {
            serde_json::Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        let values: Vec<&str> = c["values_files"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        println!(
            "helm upgrade --install {}/{} ({}), current revision {rev}, values: {}",
            c["namespace"].as_str().unwrap_or(""),
            c["release"].as_str().unwrap_or(""),
            c["chart"].as_str().unwrap_or(""),
            if values.is_empty() {
                "none (the chart's defaults)".to_owned()
            } else {
                values.join(", ")
            }
        );
        for i in c["images"].as_array().into_iter().flatten() {
            println!(
                "  image {}/{} {}{}: {}",
                i["kind"].as_str().unwrap_or(""),
                i["name"].as_str().unwrap_or(""),
                i["container"].as_str().unwrap_or(""),
                i["hook"]
                    .as_str()
                    .map(|h| format!(" (hook {h})"))
                    .unwrap_or_default(),
                i["image"].as_str().unwrap_or("")
            );
        }
        for i in c["hook_images_outside"].as_array().into_iter().flatten() {
            println!(
                "  hook image NOT from the site registry (Helm 3 does not post-render hooks): {}/{} {}: {}",
                i["kind"].as_str().unwrap_or(""),
                i["name"].as_str().unwrap_or(""),
                i["container"].as_str().unwrap_or(""),
                i["image"].as_str().unwrap_or("")
            );
        }
        if let Some(t) = c["manifests"].as_str() {
            println!(
                "--- manifests of {}/{} after rewriting ---",
                c["namespace"].as_str().unwrap_or(""),
                c["release"].as_str().unwrap_or("")
            );
            print!("{t}");
            if !t.ends_with('\n') {
                println!();
            }
            println!("--- end of {} ---", c["release"].as_str().unwrap_or(""));
        }
    }
    for f in &files {
        println!(
            "install file {} mode {}",
            f["dest"].as_str().unwrap_or(""),
            f["mode"].as_str().unwrap_or("")
        );
    }
    finish(render_error, refusal)
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
