//! Each chart's change for the report: the installed release's chart (from
//! the site's store, the staged release's manifest checked against the
//! state, every archive and values file re-hashed) and the bundle's chart,
//! both rendered offline with `helm template`, the site's values and the
//! post-renderer (crate::postrender, as `plan --render` renders), and the
//! unified diff of the two. A first install diffs against nothing.

use std::path::{Path, PathBuf};

use stoa_format::manifest::{ChartRecord, Entry};
use stoa_format::BundleManifest;

use crate::engine::Site;
use crate::error::{Result, UpdaterError};
use crate::helm::Helm;
use crate::postrender::{prepare, registry_value, render_chart, site_images};

use super::diff::{unified, Limits, Unified};

/// One chart of the bundle as the report shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ChartChange {
    pub release: String,
    pub namespace: String,
    /// `{name}-{version}` installed (None: not in the installed release).
    pub from: Option<String>,
    /// `{name}-{version}` of the bundle.
    pub to: String,
    /// The Helm revision probed on the cluster.
    pub revision: String,
    /// The values files, in Helm's order.
    pub values: Vec<String>,
    pub diff: Unified,
    /// Why a side could not be rendered (the diff is then partial).
    pub errors: Vec<String>,
}

/// A store blob copied to `dir/<hex>.<ext>` and checked there (size and
/// SHA-256 of the copy, so what Helm reads is what was checked).
fn verified_copy(site: &Site, e: &Entry, dir: &Path, ext: &str) -> Result<PathBuf> {
    let hex = e.sha256.hex();
    let blob = site.sd.blob(&hex);
    let p = dir.join(format!("{hex}.{ext}"));
    std::fs::copy(&blob, &p).map_err(|err| UpdaterError::io("copy from the store", &blob, err))?;
    let f = std::fs::File::open(&p).map_err(|err| UpdaterError::io("read", &p, err))?;
    let (d, n) =
        stoa_format::Sha256Digest::of_reader(f).map_err(|err| UpdaterError::io("read", &p, err))?;
    if d != e.sha256 || n != e.size {
        return Err(UpdaterError::StoreMismatch {
            path: blob,
            entry: e.path.clone(),
        });
    }
    Ok(p)
}

/// The installed release's chart `c` rendered from the store.
fn render_installed(
    site: &Site,
    helm: &Helm,
    old: &BundleManifest,
    c: &ChartRecord,
    dir: &Path,
) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|e| UpdaterError::io("create folder", dir, e))?;
    let listed = |path: &str| {
        old.listed(path).ok_or_else(|| {
            UpdaterError::io(
                "find installed chart",
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not in the manifest"),
            )
        })
    };
    let chart = verified_copy(site, listed(&c.path)?, dir, "tgz")?;
    let values = c
        .values
        .iter()
        .map(|v| verified_copy(site, listed(&v.path)?, dir, "yaml"))
        .collect::<Result<Vec<_>>>()?;
    let imgs = site_images(&site.cfg, old)?;
    let pr = prepare(&dir.join("post-render"), &imgs, helm.major)?;
    let reg = registry_value(&site.cfg);
    Ok(render_chart(helm, c, &chart, &values, &pr, &imgs, reg.as_deref())?.1)
}

/// Every chart of `m`: its version change and the diff of its rendering
/// against the installed release's (`old`); the bundle's charts as plan
/// rendered them (with their manifests) are in `inp`.
pub fn changes(inp: &super::Inputs<'_>, old: Option<&BundleManifest>) -> Vec<ChartChange> {
    let (site, helm, plan, m) = (inp.site, inp.helm, inp.plan, &inp.verified.manifest);
    let (rendered, render_error, tmp) = (inp.rendered, inp.render_error, inp.tmp);
    let mut out = Vec::new();
    for (k, c) in m.charts.iter().enumerate() {
        let mut errors = Vec::new();
        let oc = old.and_then(|o| {
            o.charts
                .iter()
                .find(|x| x.release == c.release && x.namespace == c.namespace)
        });
        let new_text = rendered
            .iter()
            .find(|r| r.release == c.release && r.namespace == c.namespace)
            .and_then(|r| r.manifests.clone());
        if new_text.is_none() {
            errors.push(match (helm, render_error) {
                (None, _) => "the bundle's chart was not rendered: Helm is not available".into(),
                (_, Some(e)) => format!("the bundle's chart was not rendered: {e}"),
                _ => "the bundle's chart was not rendered".into(),
            });
        }
        let old_text = match (oc, old, helm) {
            (Some(oc), Some(o), Some(h)) => {
                match render_installed(site, h, o, oc, &tmp.join(format!("installed-{k}"))) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(format!("the installed chart was not rendered: {e}"));
                        String::new()
                    }
                }
            }
            (Some(_), _, None) => {
                errors.push("the installed chart was not rendered: Helm is not available".into());
                String::new()
            }
            _ => String::new(),
        };
        let pc = plan
            .charts
            .iter()
            .find(|p| p.release == c.release && p.namespace == c.namespace);
        out.push(ChartChange {
            release: c.release.clone(),
            namespace: c.namespace.clone(),
            from: oc.map(|o| format!("{}-{}", o.name, o.version)),
            to: format!("{}-{}", c.name, c.version),
            revision: pc
                .map(|p| p.current_revision.to_string())
                .unwrap_or_default(),
            values: pc
                .map(|p| {
                    p.values_files
                        .iter()
                        .map(|v| v.display().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            diff: unified(
                &old_text,
                new_text.as_deref().unwrap_or(""),
                Limits::default(),
            ),
            errors,
        });
    }
    out
}
