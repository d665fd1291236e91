//! The release manifest (TOML) a release engineer writes. See
//! docs/RELEASE-MANIFEST.md. Unknown fields are errors; every error names the
//! field and its line.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use stoa_format::names::ReleaseName;

use crate::error::{BundlerError, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    pub release: ReleaseSection,
    #[serde(default)]
    pub images: Vec<ImageSpec>,
    #[serde(default)]
    pub charts: Vec<ChartSpec>,
    #[serde(default)]
    pub migrations: Vec<MigrationSpec>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Images the charts use that the release deliberately does not carry.
    #[serde(default)]
    pub image_exceptions: Vec<ImageException>,
}

/// `[[image_exceptions]]`: an image a chart uses that the bundle does not
/// carry, on purpose; `reason` is required (a missing one is a parse error
/// naming its line).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageException {
    pub image: Spanned<String>,
    pub reason: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSection {
    pub name: Spanned<String>,
    pub version: Spanned<String>,
    pub upgrade_from: Option<Spanned<String>>,
    /// RFC 3339 UTC time after which sites refuse the bundle.
    pub expires: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub name: Spanned<String>,
    pub source: Option<Spanned<String>>,
    pub platforms: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    /// A local chart folder or `.tgz`.
    pub path: Option<Spanned<String>>,
    /// A chart in an OCI registry: `oci://host/repo/name` (with `version`).
    pub chart: Option<Spanned<String>>,
    /// A classic Helm repository URL (with `name` and `version`).
    pub repo: Option<Spanned<String>>,
    /// The chart's name in `repo`.
    pub name: Option<Spanned<String>>,
    /// The chart version to pull (`chart` and `repo`).
    pub version: Option<Spanned<String>>,
    pub release: Spanned<String>,
    pub namespace: Spanned<String>,
    /// Vendor values files (relative to the release manifest), bundled and
    /// given to Helm in this order, beneath the site's own file.
    #[serde(default)]
    pub values: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSpec {
    pub database: Spanned<String>,
    pub dir: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub source: Spanned<String>,
    pub dest: Spanned<String>,
    pub mode: Option<Spanned<String>>,
}

/// The `[release]` section parsed into validated values (parse, don't
/// validate): a value here is known good, so nothing later re-checks or
/// falls back. Spans stay in [`ReleaseSection`], only for errors.
#[derive(Debug, Clone)]
pub struct Release {
    pub name: ReleaseName,
    pub version: semver::Version,
    /// As written (it is signed as written), known to parse as a semver
    /// requirement.
    pub upgrade_from: Option<String>,
    /// As written, known to be an RFC 3339 UTC time.
    pub expires: Option<String>,
}

/// A parsed release manifest, with what is needed to report errors by line
/// and to resolve relative paths.
#[derive(Debug)]
pub struct LoadedRelease {
    pub path: PathBuf,
    pub base_dir: PathBuf,
    text: String,
    pub manifest: ReleaseManifest,
    /// The typed `[release]` section.
    pub release: Release,
}

impl LoadedRelease {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| BundlerError::ReadReleaseManifest {
                path: path.to_owned(),
                source: e,
            })?;
        let manifest: ReleaseManifest = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| line_of(&text, s.start));
            let msg = e.message().trim().to_owned();
            BundlerError::ParseReleaseManifest {
                path: path.to_owned(),
                message: match line {
                    Some(l) => format!("line {l}: {msg}"),
                    None => msg,
                },
            }
        })?;
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let release = parse_release(&manifest.release, &|field, span, message| {
            field_error_at(path, &text, field, span, message)
        })?;
        let me = Self {
            path: path.to_owned(),
            base_dir,
            text,
            manifest,
            release,
        };
        me.check()?;
        Ok(me)
    }

    /// An error about `field`, located at `span`.
    pub fn field_error(
        &self,
        field: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> BundlerError {
        field_error_at(&self.path, &self.text, field, span, message.into())
    }

    /// A path from the manifest, resolved against the manifest's folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// How a local source path is recorded in the signed manifest: as
    /// written when relative (it is relative to the release manifest's
    /// folder already); an absolute one made relative to that folder, so the
    /// build host's layout does not leak and two checkouts give the same
    /// bytes.
    pub fn record_path(&self, p: &str) -> String {
        let path = Path::new(p);
        if !path.is_absolute() {
            return p.to_owned();
        }
        let (Ok(abs), Ok(base)) = (path.canonicalize(), self.base_dir.canonicalize()) else {
            return p.to_owned();
        };
        let a: Vec<_> = abs.components().collect();
        let b: Vec<_> = base.components().collect();
        let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut rel = PathBuf::new();
        for _ in common..b.len() {
            rel.push("..");
        }
        for c in &a[common..] {
            rel.push(c);
        }
        if rel.as_os_str().is_empty() {
            ".".to_owned()
        } else {
            rel.to_string_lossy().into_owned()
        }
    }

    fn check(&self) -> Result<()> {
        for (i, img) in self.manifest.images.iter().enumerate() {
            if let Err(e) = stoa_format::names::ImageRef::parse(img.name.get_ref()) {
                return Err(self.field_error(
                    &format!("images[{i}].name"),
                    img.name.span(),
                    format!(
                        "{:?} is not a valid image reference: {e}",
                        img.name.get_ref()
                    ),
                ));
            }
            if let Some(p) = &img.platforms {
                for plat in p.get_ref() {
                    let parts = plat.split('/').count();
                    if !(2..=3).contains(&parts) || plat.split('/').any(str::is_empty) {
                        return Err(self.field_error(
                            &format!("images[{i}].platforms"),
                            p.span(),
                            format!("{plat:?} is not os/arch[/variant]"),
                        ));
                    }
                }
            }
        }
        for (i, c) in self.manifest.charts.iter().enumerate() {
            self.check_chart(i, c)?;
        }
        for (i, x) in self.manifest.image_exceptions.iter().enumerate() {
            if let Err(e) = stoa_format::names::ImageRef::parse(x.image.get_ref()) {
                return Err(self.field_error(
                    &format!("image_exceptions[{i}].image"),
                    x.image.span(),
                    format!(
                        "{:?} is not a valid image reference: {e}",
                        x.image.get_ref()
                    ),
                ));
            }
            if x.reason.get_ref().trim().is_empty() {
                return Err(self.field_error(
                    &format!("image_exceptions[{i}].reason"),
                    x.reason.span(),
                    "an exception needs a reason",
                ));
            }
        }
        for (i, f) in self.manifest.files.iter().enumerate() {
            if let Some(m) = &f.mode {
                if stoa_format::manifest::parse_mode(m.get_ref()).is_none() {
                    return Err(self.field_error(
                        &format!("files[{i}].mode"),
                        m.span(),
                        format!("{:?} is not an octal mode 0000-0777", m.get_ref()),
                    ));
                }
            }
            if let Err(e) = stoa_format::paths::check_entry_path(f.dest.get_ref(), 200) {
                return Err(self.field_error(
                    &format!("files[{i}].dest"),
                    f.dest.span(),
                    e.to_string(),
                ));
            }
        }
        Ok(())
    }
}

impl LoadedRelease {
    fn check_chart(&self, i: usize, c: &ChartSpec) -> Result<()> {
        let field = |f: &str| format!("charts[{i}].{f}");
        if let Err(e) = stoa_format::names::check_helm_release(c.release.get_ref()) {
            return Err(self.field_error(&field("release"), c.release.span(), e));
        }
        if let Err(e) = stoa_format::names::check_namespace(c.namespace.get_ref()) {
            return Err(self.field_error(&field("namespace"), c.namespace.span(), e));
        }
        for (j, v) in c.values.iter().enumerate() {
            let name = Path::new(v.get_ref())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let entry = stoa_format::manifest::values_entry_path(
                c.namespace.get_ref(),
                c.release.get_ref(),
                j,
                &name,
            );
            if let Err(e) = stoa_format::paths::check_entry_path(&entry, 200) {
                return Err(self.field_error(
                    &field(&format!("values[{j}]")),
                    v.span(),
                    format!("{:?}: {e}", v.get_ref()),
                ));
            }
        }
        let kinds = [c.path.is_some(), c.chart.is_some(), c.repo.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(self.field_error(
                &format!("charts[{i}]"),
                c.release.span(),
                "give exactly one of path (local), chart (oci://…) or repo (a Helm repository URL)",
            ));
        }
        if c.path.is_some() {
            for (f, v) in [("name", &c.name), ("version", &c.version)] {
                if let Some(v) = v {
                    return Err(self.field_error(
                        &field(f),
                        v.span(),
                        "only for charts pulled with chart or repo; a local chart's Chart.yaml says it",
                    ));
                }
            }
            return Ok(());
        }
        let Some(version) = &c.version else {
            return Err(self.field_error(
                &field("version"),
                c.release.span(),
                "a pulled chart needs a version",
            ));
        };
        if let Err(e) = stoa_format::names::check_chart_version(version.get_ref()) {
            return Err(self.field_error(&field("version"), version.span(), e));
        }
        if let Some(chart) = &c.chart {
            let rest = chart.get_ref().strip_prefix("oci://").unwrap_or("");
            if rest.split('/').filter(|s| !s.is_empty()).count() < 2 {
                return Err(self.field_error(
                    &field("chart"),
                    chart.span(),
                    format!(
                        "{:?} is not oci://<host>/<repository>/<chart>",
                        chart.get_ref()
                    ),
                ));
            }
            if let Some(n) = &c.name {
                return Err(self.field_error(
                    &field("name"),
                    n.span(),
                    "only with repo; with chart the name is the reference's last part",
                ));
            }
        }
        if let Some(repo) = &c.repo {
            let r = repo.get_ref();
            if !(r.starts_with("https://") || r.starts_with("http://")) {
                return Err(self.field_error(
                    &field("repo"),
                    repo.span(),
                    format!("{r:?} is not an http(s):// Helm repository URL"),
                ));
            }
            if c.name.as_ref().is_none_or(|n| n.get_ref().is_empty()) {
                return Err(self.field_error(
                    &field("name"),
                    c.release.span(),
                    "a chart from a repository needs its name",
                ));
            }
        }
        Ok(())
    }
}

/// The `[release]` section into typed values; an error names the field
/// and its line.
fn parse_release(
    r: &ReleaseSection,
    field_error: &dyn Fn(&str, Range<usize>, String) -> BundlerError,
) -> Result<Release> {
    let version = semver::Version::parse(r.version.get_ref()).map_err(|e| {
        field_error(
            "release.version",
            r.version.span(),
            format!("{:?} is not semver: {e}", r.version.get_ref()),
        )
    })?;
    if let Some(u) = &r.upgrade_from {
        if let Err(e) = semver::VersionReq::parse(u.get_ref()) {
            return Err(field_error(
                "release.upgrade_from",
                u.span(),
                format!("{:?} is not a semver requirement: {e}", u.get_ref()),
            ));
        }
    }
    if let Some(x) = &r.expires {
        if humantime_ok(x.get_ref()).is_none() {
            return Err(field_error(
                "release.expires",
                x.span(),
                format!(
                    "{:?} is not an RFC 3339 UTC time like 2027-01-31T00:00:00Z",
                    x.get_ref()
                ),
            ));
        }
    }
    // the format's own rule: a name the bundle would be refused for
    // fails here, with its line
    let name = ReleaseName::parse(r.name.get_ref())
        .map_err(|e| field_error("release.name", r.name.span(), e))?;
    Ok(Release {
        name,
        version,
        upgrade_from: r.upgrade_from.as_ref().map(|u| u.get_ref().clone()),
        expires: r.expires.as_ref().map(|x| x.get_ref().clone()),
    })
}

fn field_error_at(
    path: &Path,
    text: &str,
    field: &str,
    span: Range<usize>,
    message: String,
) -> BundlerError {
    BundlerError::InvalidField {
        path: path.to_owned(),
        line: line_of(text, span.start),
        field: field.to_owned(),
        message,
    }
}

fn humantime_ok(s: &str) -> Option<()> {
    stoa_format::manifest::parse_rfc3339(s).map(|_| ())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}
