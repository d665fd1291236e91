//! Every image a release's charts will run, found with the build host's real
//! Helm: each chart is rendered with `helm template` (the release's vendor
//! values files for that chart, its namespace, a Kubernetes version), charts
//! in parallel, and the pod specs of every pod-bearing kind are read
//! (containers, initContainers, ephemeralContainers of Pod, Deployment,
//! StatefulSet, DaemonSet, ReplicaSet, Job, CronJob; hook templates are in
//! `helm template`'s output too), the images named outside pod specs
//! (operators' arguments, ConfigMap values, custom resources:
//! [`stoa_podimages::referenced`], the rule the site's post-renderer
//! rewrites with), plus the images a chart names in its Chart.yaml
//! annotations (`images`, `artifacthub.io/images`).
//!
//! [`check`] compares what was found with what the release carries: used by
//! `stoa-bundler images` (by name) and by `build` (by name and by the digest
//! each carried image really has).

pub mod render;

use std::path::{Path, PathBuf};

use serde::Serialize;
use stoa_format::manifest::ImageRecord;
use stoa_format::names::ImageRef;
use stoa_format::Sha256Digest;

use crate::error::{BundlerError, Result};
use crate::release::{Chart, LoadedRelease};
use crate::sources::chart::PackagedChart;

/// The Kubernetes version charts are rendered for when none is given.
pub const DEFAULT_KUBE_VERSION: &str = "1.28.0";

/// Where an image reference was found in a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Field {
    Containers,
    InitContainers,
    EphemeralContainers,
    /// A container's env var named `*_IMAGE`: an image a controller or an
    /// injector starts later (Vault's `injector.agentImage`).
    Env,
    /// A Chart.yaml annotation (`images` or `artifacthub.io/images`).
    Annotation,
    /// Named outside a pod's images (an operator's argument, a ConfigMap
    /// value, a custom resource's `imageName`): the rule of
    /// [`stoa_podimages::referenced`]; `path` gives the field.
    Referenced,
}

/// One image reference a chart uses, where it was found.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The chart's name.
    pub chart: String,
    /// The Helm release and namespace of the `[[charts]]` item.
    pub release: String,
    pub namespace: String,
    /// The `# Source:` path of the template (or `<chart>/Chart.yaml`).
    pub template: String,
    /// The object's kind (`Deployment`, …; `Chart` for an annotation).
    pub kind: String,
    pub field: Field,
    /// Where in the object: `containers/<name>` (an env value adds
    /// `/env/<VARIABLE>`), or a referenced image's field path
    /// (`spec.imageName`, `data.AGENT_IMAGE`).
    pub path: String,
    /// As the chart wrote it.
    pub image: String,
}

/// Whether the release carries a found image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Carried {
    /// The release carries it (same repository, tag and, when the chart pins
    /// one, digest).
    Yes { by: String },
    /// Not carried, but listed under `[[image_exceptions]]`.
    Exception { reason: String },
    /// Not carried.
    Missing,
    /// The chart pins a digest the release's image of that name and tag
    /// does not have.
    DigestMismatch { by: String, has: String },
    /// Not a valid OCI image reference.
    Invalid { message: String },
}

impl Carried {
    /// Whether `build` refuses the release for it.
    pub fn refused(&self) -> bool {
        matches!(
            self,
            Self::Missing | Self::DigestMismatch { .. } | Self::Invalid { .. }
        )
    }
}

/// A found image and whether it is carried.
#[derive(Debug, Clone, Serialize)]
pub struct ImageUse {
    #[serde(flatten)]
    pub found: Found,
    pub carried: Carried,
}

/// A reference reduced to what decides identity: registry, repository,
/// tag (Docker's defaults applied) and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canon {
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<Sha256Digest>,
}

impl Canon {
    /// `nginx` is `docker.io/library/nginx:latest`, as a container runtime
    /// pulls it.
    pub fn of(r: &ImageRef) -> Self {
        let tag = r
            .tag()
            .map(str::to_owned)
            .or_else(|| r.digest().is_none().then(|| "latest".to_owned()));
        Self {
            repo: r.source_repository(),
            tag,
            digest: r.digest().copied(),
        }
    }
}

/// An image the release carries: its name and, once pulled, the digests it
/// is known by (the manifest's, and the source index's when filtered by
/// platform).
#[derive(Debug, Clone)]
pub struct CarriedImage {
    pub name: String,
    pub canon: Canon,
    pub digests: Vec<Sha256Digest>,
}

impl CarriedImage {
    /// From the release manifest only (for `images`, nothing pulled): the
    /// digest is known only when the name pins one.
    pub fn from_release(rel: &LoadedRelease) -> Vec<Self> {
        rel.images
            .iter()
            .map(|i| &i.name)
            .map(|r| Self {
                name: r.as_str().to_owned(),
                canon: Canon::of(r),
                digests: r.digest().copied().into_iter().collect(),
            })
            .collect()
    }

    /// From the bundle manifest's records (for `build`): the digests are
    /// the ones the bundle really holds.
    pub fn from_records(records: &[ImageRecord]) -> Vec<Self> {
        records
            .iter()
            .map(|i| {
                let mut digests: Vec<Sha256Digest> = Vec::new();
                for d in std::iter::once(&i.digest).chain(i.source_digest.as_ref()) {
                    if let Some(d) = Sha256Digest::from_oci(d) {
                        digests.push(d);
                    }
                }
                Self {
                    name: i.name.as_str().to_owned(),
                    canon: Canon::of(&i.name),
                    digests,
                }
            })
            .collect()
    }
}

/// Decides whether `image` (as a chart wrote it) is carried.
pub fn carried(image: &str, carried: &[CarriedImage], rel: &LoadedRelease) -> Carried {
    let r = match ImageRef::parse(image) {
        Ok(r) => r,
        Err(e) => return Carried::Invalid { message: e },
    };
    let want = Canon::of(&r);
    let same_repo: Vec<&CarriedImage> = carried
        .iter()
        .filter(|c| c.canon.repo == want.repo)
        .collect();
    let same_tag: Vec<&CarriedImage> = same_repo
        .iter()
        .copied()
        .filter(|c| r.tag().is_none() || c.canon.tag == want.tag)
        .collect();
    let verdict = match &want.digest {
        Some(d) => {
            if let Some(c) = same_repo.iter().find(|c| c.digests.contains(d)) {
                Carried::Yes { by: c.name.clone() }
            } else if let Some(c) = same_tag.iter().find(|c| !c.digests.is_empty()) {
                Carried::DigestMismatch {
                    by: c.name.clone(),
                    has: c
                        .digests
                        .iter()
                        .map(Sha256Digest::oci)
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            } else if let Some(c) = same_tag.first().filter(|_| r.tag().is_some()) {
                // `images` without pulling: the name and tag match; build
                // checks the digest the pulled image really has
                Carried::Yes { by: c.name.clone() }
            } else {
                Carried::Missing
            }
        }
        None => match same_tag.first() {
            Some(c) => Carried::Yes { by: c.name.clone() },
            None => Carried::Missing,
        },
    };
    if verdict == Carried::Missing {
        if let Some(x) = exception_for(&r, rel) {
            return Carried::Exception { reason: x };
        }
    }
    verdict
}

/// The reason of an `[[image_exceptions]]` item that covers `r`: same
/// repository, and the exception's tag and digest when it gives them.
fn exception_for(r: &ImageRef, rel: &LoadedRelease) -> Option<String> {
    let want = Canon::of(r);
    rel.image_exceptions.iter().find_map(|x| {
        let e = &x.image;
        let c = Canon::of(e);
        let ok = c.repo == want.repo
            && (e.tag().is_none() || e.tag() == r.tag())
            && (e.digest().is_none() || e.digest() == r.digest());
        ok.then(|| x.reason.clone())
    })
}

/// One chart to render: the archive and the `[[charts]]` item's settings.
#[derive(Debug)]
pub struct ChartJob {
    pub chart: PackagedChart,
    pub release: String,
    pub namespace: String,
    pub values: Vec<PathBuf>,
}

impl ChartJob {
    /// The job of one `[[charts]]` item and its archive.
    pub fn new(rel: &LoadedRelease, spec: &Chart, chart: PackagedChart) -> Self {
        Self {
            chart,
            release: spec.release.clone(),
            namespace: spec.namespace.clone(),
            values: spec.values.iter().map(|v| rel.resolve(v)).collect(),
        }
    }
}

/// Renders every chart and lists every image each uses. Each chart's
/// render starts as soon as `jobs` yields it (while the next one is still
/// being resolved), all in parallel; the first error in manifest order
/// wins.
pub fn find_all(
    helm: &Path,
    kube_version: &str,
    jobs: impl IntoIterator<Item = Result<ChartJob>>,
) -> Result<Vec<Found>> {
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        let mut resolve_err = None;
        for j in jobs {
            match j {
                Ok(job) => handles.push(s.spawn(move || render::find(helm, kube_version, &job))),
                Err(e) => {
                    resolve_err = Some(e);
                    break;
                }
            }
        }
        let mut out = Vec::new();
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(BundlerError::Render {
                    chart: "?".into(),
                    message: "the render thread panicked".into(),
                })
            });
            out.extend(r?);
        }
        match resolve_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    })
}

/// Classifies every found image.
pub fn classify(found: Vec<Found>, have: &[CarriedImage], rel: &LoadedRelease) -> Vec<ImageUse> {
    found
        .into_iter()
        .map(|f| {
            let c = carried(&f.image, have, rel);
            ImageUse {
                found: f,
                carried: c,
            }
        })
        .collect()
}

/// The error `build` gives for the first refused use (and how many more).
pub fn refusal(uses: &[ImageUse]) -> Option<BundlerError> {
    let bad: Vec<&ImageUse> = uses.iter().filter(|u| u.carried.refused()).collect();
    let first = bad.first()?;
    let more = if bad.len() > 1 {
        format!(
            " (and {} more; `stoa-bundler images` lists them)",
            bad.len() - 1
        )
    } else {
        String::new()
    };
    let f = &first.found;
    // a referenced image: say which field names it
    let template = if f.field == Field::Referenced {
        format!(
            "{} ({} field {})",
            f.template,
            f.kind,
            stoa_format::text::escape(&f.path)
        )
    } else {
        f.template.clone()
    };
    Some(match &first.carried {
        Carried::Invalid { message } => BundlerError::ChartImageInvalid {
            chart: f.chart.clone(),
            template: template.clone(),
            image: f.image.clone(),
            message: format!("{message}{more}"),
        },
        Carried::DigestMismatch { by, has } => BundlerError::ChartImageDigest {
            chart: f.chart.clone(),
            template: template.clone(),
            image: f.image.clone(),
            message: format!("the bundle's {by} is {has}{more}"),
        },
        _ => BundlerError::ChartImageMissing {
            chart: f.chart.clone(),
            template: template.clone(),
            image: f.image.clone(),
            more,
        },
    })
}

/// The Helm to run: `--helm`, else `$STOA_HELM`, else `helm` on PATH.
pub fn find_helm(flag: Option<&Path>) -> Result<PathBuf> {
    let (p, from) = match (flag, std::env::var_os("STOA_HELM")) {
        (Some(p), _) => (p.to_owned(), "--helm"),
        (None, Some(p)) if !p.is_empty() => (PathBuf::from(p), "STOA_HELM"),
        _ => {
            let found = std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("helm"))
                    .find(|p| is_executable(p))
            });
            return found.ok_or_else(|| BundlerError::HelmNotFound {
                message: "no helm on PATH; install Helm 3 or 4, or give --helm <path> or STOA_HELM"
                    .into(),
            });
        }
    };
    if !is_executable(&p) {
        return Err(BundlerError::HelmNotFound {
            message: format!("{from} {}: not an executable file", p.display()),
        });
    }
    Ok(p)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A Kubernetes version for `--kube-version`: `1.28`, `v1.28.3`.
pub fn check_kube_version(s: &str) -> std::result::Result<String, String> {
    let t = s.trim_start_matches('v');
    let parts: Vec<&str> = t.split('.').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{s:?} is not a Kubernetes version like 1.28 or 1.30.2"
        ));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_follow_docker_defaults() {
        let c = |s: &str| Canon::of(&ImageRef::parse(s).unwrap());
        assert_eq!(c("busybox"), c("docker.io/library/busybox:latest"));
        assert_eq!(
            c("bitnami/pgpool:4.6"),
            c("registry-1.docker.io/bitnami/pgpool:4.6")
        );
        assert_ne!(c("bitnami/pgpool:4.6"), c("quay.io/bitnami/pgpool:4.6"));
        assert_eq!(c("a.io/x").tag.as_deref(), Some("latest"));
        let pinned = format!("a.io/x@sha256:{}", "0".repeat(64));
        assert_eq!(c(&pinned).tag, None);
    }

    #[test]
    fn kube_versions() {
        assert_eq!(check_kube_version("v1.28").unwrap(), "1.28");
        assert_eq!(check_kube_version("1.30.2").unwrap(), "1.30.2");
        assert!(check_kube_version("latest").is_err());
        assert!(check_kube_version("1").is_err());
    }
}
