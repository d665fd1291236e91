//! Chart dependencies completed at build, so the site never needs a network:
//! each Chart.yaml `dependencies` item not vendored in the chart's `charts/`
//! is fetched (`file://` beside a chart folder, `oci://`, or a classic
//! `http(s)://` repository; the same credentials, cache and retries as every
//! other pull), its version chosen like Helm does (Chart.lock when it names
//! the dependency, else the highest version matching the constraint: SemVer
//! ranges with `x`/`*` wildcards, `~`, `^`, comparisons, `,` or space for
//! AND, `||` for OR, `a - b` ranges) and vendored as
//! `<chart>/charts/<dep>-<version>.tgz` in the bundled archive, which is then
//! repacked deterministically (sorted paths, owner 0, the fixed
//! [`chart::CHART_MTIME`]).
//!
//! Confinement: a `file://` dependency (and each `file://` dependency of
//! it) must resolve, after `..` and symbolic links, inside the top chart's
//! own folder or a folder the release manifest lists under the chart's
//! `allow_paths` ([`DepScope`]); anything else (an absolute path, `..` out
//! of the tree, a symlink pointing out) stops the build, so a chart cannot
//! pull any folder of the build host into the signed bundle.
//!
//! Mirrors: a dependency is fetched like any other chart, so the build
//! host's registries.conf (`oci://` dependencies, tag list and pull) and
//! `--chart-repo-mirror` (classic repositories, index and pull) apply to it;
//! Chart.yaml's repository is what the error messages name.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::Compression;
use semver::{Version, VersionReq};
pub use stoa_format::constraint::helm_constraint;

use crate::error::{BundlerError, Result};
use crate::settings::BuildSettings;
use crate::sources::chart::{self, ArchiveFile as File, Dependency, PackagedChart, MAX_CHART_SIZE};
use crate::sources::registry::chart_repo;
use crate::sources::registry::slot::{puller, PullSlot};

/// Where `file://` dependencies may come from: the top chart's folder and
/// the release manifest's `allow_paths` for it, each canonical (symbolic
/// links and `..` resolved).
#[derive(Debug, Clone, Default)]
pub struct DepScope {
    roots: Vec<PathBuf>,
}

impl DepScope {
    /// The scope of a chart loaded from `chart_dir` (None: an archive, whose
    /// `file://` dependencies are refused anyway) with `allowed` folders.
    pub fn new(
        chart_dir: Option<&Path>,
        allowed: impl IntoIterator<Item = PathBuf>,
    ) -> Result<Self> {
        let mut roots = Vec::new();
        for p in chart_dir.map(Path::to_owned).into_iter().chain(allowed) {
            let c = std::fs::canonicalize(&p).map_err(|e| BundlerError::Chart {
                path: p.clone(),
                message: format!("resolve folder: {e}"),
            })?;
            roots.push(c);
        }
        Ok(Self { roots })
    }

    /// `dir`, canonical, when it lies inside one of the roots.
    fn admit(&self, dir: &Path) -> std::result::Result<PathBuf, String> {
        let c = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if self.roots.iter().any(|r| c.starts_with(r)) {
            return Ok(c);
        }
        Err(format!(
            "it resolves to {}, outside the chart's folder{}; list the folder under this chart's allow_paths in the release manifest to allow it",
            c.display(),
            if self.roots.len() > 1 {
                " and its allow_paths"
            } else {
                ""
            }
        ))
    }
}

/// The most bytes a chart archive unpacks to while it is completed.
const MAX_UNPACKED: u64 = 4 * MAX_CHART_SIZE;

/// The highest version matching the constraint.
pub fn best<'a>(
    versions: impl IntoIterator<Item = &'a str>,
    reqs: &[VersionReq],
) -> Option<Version> {
    versions
        .into_iter()
        .filter_map(|v| Version::parse(v.trim_start_matches('v')).ok())
        .filter(|v| reqs.iter().any(|r| r.matches(v)))
        .max()
}

/// The files of a chart archive, to complete it and pack it again.
pub(crate) fn unpack(name: &str, bytes: &[u8]) -> Result<Vec<File>> {
    let cerr = |m: String| BundlerError::Chart {
        path: name.into(),
        message: m,
    };
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut ar = tar::Archive::new(GzDecoder::new(bytes));
    for e in ar
        .entries()
        .map_err(|e| cerr(format!("not a gzip tar: {e}")))?
    {
        let mut e = e.map_err(|e| cerr(format!("not a gzip tar: {e}")))?;
        let kind = e.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        if !kind.is_file() {
            return Err(cerr(format!("{kind:?} entries are not allowed in a chart")));
        }
        let path = e
            .path()
            .map_err(|e| cerr(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mode = if e.header().mode().unwrap_or(0o644) & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        let mut data = Vec::new();
        (&mut e)
            .take(MAX_UNPACKED - total + 1)
            .read_to_end(&mut data)
            .map_err(|e| cerr(e.to_string()))?;
        total += data.len() as u64;
        if total > MAX_UNPACKED {
            return Err(cerr(format!("unpacks to more than {MAX_UNPACKED} bytes")));
        }
        out.push(File { path, mode, data });
    }
    Ok(out)
}

fn pack(name: &str, files: Vec<File>, level: Compression) -> Result<Vec<u8>> {
    chart::pack_archive(files, level).map_err(|e| BundlerError::Chart {
        path: name.into(),
        message: e.to_string(),
    })
}

#[derive(serde::Deserialize)]
struct Lock {
    #[serde(default)]
    dependencies: Vec<Dependency>,
}

/// Whether `files` already vendor `dep` under `<top>/charts/`.
fn vendored(top: &str, files: &[File], dep: &Dependency) -> bool {
    let dir = format!("{top}/charts/{}/Chart.yaml", dep.name);
    let tgz = format!("{top}/charts/{}-", dep.name);
    files.iter().any(|f| {
        f.path == dir
            || (f.path.starts_with(&tgz)
                && f.path.ends_with(".tgz")
                && f.path[tgz.len()..].starts_with(|c: char| c.is_ascii_digit())
                && !f.path[tgz.len()..].contains('/'))
    })
}

/// Completes `c` (from `source_dir` when it was a folder): every missing
/// dependency fetched and vendored. A chart without missing dependencies
/// is returned unchanged (byte for byte).
pub fn complete(
    c: PackagedChart,
    source_dir: Option<&Path>,
    scope: &DepScope,
    settings: &BuildSettings,
    pull: &mut PullSlot,
) -> Result<PackagedChart> {
    if c.dependencies.is_empty() {
        return Ok(c);
    }
    let mut files = unpack(&c.name, &c.bytes)?;
    let missing: Vec<Dependency> = c
        .dependencies
        .iter()
        .filter(|d| !vendored(&c.name, &files, d))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(c);
    }
    let lock: BTreeMap<String, String> = files
        .iter()
        .find(|f| f.path == format!("{}/Chart.lock", c.name))
        .and_then(|f| serde_yaml::from_slice::<Lock>(&f.data).ok())
        .map(|l| {
            l.dependencies
                .into_iter()
                .map(|d| (d.name, d.version))
                .collect()
        })
        .unwrap_or_default();
    for dep in missing {
        let got = fetch(
            &c.name,
            &dep,
            lock.get(&dep.name),
            source_dir,
            scope,
            settings,
            pull,
        )?;
        files.push(File {
            path: format!("{}/charts/{}-{}.tgz", c.name, got.name, got.version),
            mode: 0o644,
            data: got.bytes,
        });
    }
    let bytes = pack(&c.name, files, settings.chart_gzip)?;
    Ok(PackagedChart { bytes, ..c })
}

fn dep_err(chart: &str, dep: &Dependency, message: impl Into<String>) -> BundlerError {
    BundlerError::ChartDependency {
        chart: chart.to_owned(),
        dependency: dep.name.clone(),
        constraint: dep.version.clone(),
        repository: dep.repository.clone(),
        message: message.into(),
    }
}

/// A failed pull of a dependency (its repository unreachable, refusing, or
/// serving something else) as the dependency's error: the parent chart, the
/// dependency, its constraint and repository, then `pull <url>: <why>`.
/// Other errors (a blocked registry, credentials, the cache) keep their own
/// kind.
fn pull_err(chart: &str, dep: &Dependency, e: BundlerError) -> BundlerError {
    match e {
        BundlerError::ChartPull { url, message, .. } => {
            dep_err(chart, dep, format!("pull {url}: {message}"))
        }
        other => other,
    }
}

/// Fetches one dependency at the version Chart.lock or the constraint
/// chooses.
fn fetch(
    chart: &str,
    dep: &Dependency,
    locked: Option<&String>,
    source_dir: Option<&Path>,
    scope: &DepScope,
    settings: &BuildSettings,
    pull: &mut PullSlot,
) -> Result<PackagedChart> {
    let reqs = helm_constraint(&dep.version)
        .map_err(|m| dep_err(chart, dep, format!("not a version constraint: {m}")))?;
    let repo = dep.repository.trim_end_matches('/');
    let pick = |versions: &[String]| -> Result<String> {
        if let Some(v) = locked {
            if versions.iter().any(|x| x == v) {
                return Ok(v.clone());
            }
            return Err(dep_err(
                chart,
                dep,
                format!("Chart.lock pins {v}, which {repo} does not have"),
            ));
        }
        best(versions.iter().map(String::as_str), &reqs)
            .map(|v| v.to_string())
            .ok_or_else(|| {
                let mut have: Vec<&str> = versions.iter().map(String::as_str).collect();
                have.sort();
                dep_err(
                    chart,
                    dep,
                    format!(
                        "no version matches (the repository has: {})",
                        if have.is_empty() {
                            "none".to_owned()
                        } else {
                            have.join(", ")
                        }
                    ),
                )
            })
    };
    let got = if let Some(rel) = repo.strip_prefix("file://") {
        let dir = source_dir.map(|d| d.join(rel)).ok_or_else(|| {
            dep_err(
                chart,
                dep,
                "a file:// dependency needs the chart as a folder",
            )
        })?;
        let dir = scope
            .admit(&dir)
            .map_err(|m| dep_err(chart, dep, format!("file://{rel} is not allowed: {m}")))?;
        let d = chart::load(&dir, settings.chart_gzip)?;
        let d = complete(d, Some(&dir), scope, settings, pull)?;
        pick(std::slice::from_ref(&d.version))?;
        d
    } else if repo.starts_with("oci://") {
        let url = format!("{repo}/{}", dep.name);
        let p = puller(pull, &settings.pull)?;
        let versions = p
            .list_oci_chart_versions(&url)
            .map_err(|e| pull_err(chart, dep, e))?;
        let v = pick(&versions)?;
        let (path, _) = p
            .pull_oci_chart(&url, &v)
            .map_err(|e| pull_err(chart, dep, e))?;
        let d = chart::load(&path, settings.chart_gzip)?;
        complete(d, None, scope, settings, pull)?
    } else if repo.starts_with("https://") || repo.starts_with("http://") {
        let p = puller(pull, &settings.pull)?;
        let versions =
            chart_repo::versions(p, repo, &dep.name).map_err(|e| pull_err(chart, dep, e))?;
        let v = pick(&versions)?;
        let (path, _) =
            chart_repo::pull(p, repo, &dep.name, &v).map_err(|e| pull_err(chart, dep, e))?;
        let d = chart::load(&path, settings.chart_gzip)?;
        complete(d, None, scope, settings, pull)?
    } else {
        return Err(dep_err(
            chart,
            dep,
            "the repository must be file://, oci:// or an http(s):// URL (Helm repository names like @name need a URL here)",
        ));
    };
    if got.name != dep.name {
        return Err(dep_err(
            chart,
            dep,
            format!("the fetched chart is named {:?}", got.name),
        ));
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(c: &str, vs: &[&str]) -> Option<String> {
        best(vs.iter().copied(), &helm_constraint(c).unwrap()).map(|v| v.to_string())
    }

    /// Helm's (Masterminds) constraint forms choose the highest match.
    #[test]
    fn constraints_resolve_like_helm() {
        let vs = [
            "1.9.0",
            "2.0.0",
            "2.31.4",
            "2.31.10",
            "3.0.0",
            "2.32.0-rc.1",
        ];
        assert_eq!(pick("2.x.x", &vs).as_deref(), Some("2.31.10"));
        assert_eq!(pick("2.31.x", &vs).as_deref(), Some("2.31.10"));
        assert_eq!(pick("~2.31.4", &vs).as_deref(), Some("2.31.10"));
        assert_eq!(pick("^2.0.0", &vs).as_deref(), Some("2.31.10"));
        assert_eq!(pick("2.31.4", &vs).as_deref(), Some("2.31.4"));
        assert_eq!(pick(">= 2.0.0, < 2.31.5", &vs).as_deref(), Some("2.31.4"));
        assert_eq!(pick(">=1.0 <2.0", &vs).as_deref(), Some("1.9.0"));
        assert_eq!(pick("1.x || 3.x", &vs).as_deref(), Some("3.0.0"));
        assert_eq!(pick("2.0.0 - 2.31.4", &vs).as_deref(), Some("2.31.4"));
        assert_eq!(pick("*", &vs).as_deref(), Some("3.0.0"));
        assert_eq!(pick("", &vs).as_deref(), Some("3.0.0"));
        assert_eq!(pick("9.x.x", &vs), None);
        assert!(helm_constraint("!=1.0.0").is_err());
    }
}
