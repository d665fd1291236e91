//! The release manifest (TOML) a release engineer writes. See
//! docs/RELEASE-MANIFEST.md. Unknown fields are errors; every error names the
//! field and its line.
//!
//! Parse, don't validate: the TOML is read into the `*Spec` shapes (with
//! spans, kept only to report errors by line), then every section is parsed
//! into typed values ([`Release`], [`Image`], [`Chart`], [`Migration`],
//! [`File`]) that cannot hold a bad value; `plan.rs` consumes those and never
//! re-checks. A new field goes into its `*Spec` and its typed value.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use oci_client::Reference;
use stoa_format::fields::{FileMode, Timestamp};
use stoa_format::names::{ImageRef, ReleaseName};

use crate::error::{BundlerError, Result};
use crate::sources::oci_layout::ImageSource;
use crate::sources::registry;

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
    /// Tool binaries the bundle carries (crate::tools).
    #[serde(default)]
    pub tools: Vec<crate::tools::ToolSpec>,
    /// Images the charts use that the release deliberately does not carry.
    #[serde(default)]
    pub image_exceptions: Vec<ImageExceptionSpec>,
    /// Non-image OCI artifacts, carried by reference like images.
    #[serde(default)]
    pub artifacts: Vec<ArtifactSpec>,
    /// Trusted upstream image signers (cosign keys).
    #[serde(default)]
    pub signers: Vec<SignerSpec>,
}

/// `[[signers]]`: an upstream image signer (docs/RELEASE-MANIFEST.md,
/// *Upstream signatures*): a cosign public key, the images it signs (globs
/// over image names) and whether an image it covers must carry a valid
/// signature by it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerSpec {
    pub name: Spanned<String>,
    pub key: Spanned<String>,
    pub images: Spanned<Vec<String>>,
    #[serde(default)]
    pub required: bool,
}

/// `[[artifacts]]`: a non-image OCI artifact (a scanner's vulnerability
/// database, a policy bundle), pulled and carried as an image is, with no
/// platforms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    pub name: Spanned<String>,
    pub source: Option<Spanned<String>>,
}

/// `[[image_exceptions]]`: an image a chart uses that the bundle does not
/// carry, on purpose; `reason` is required (a missing one is a parse error
/// naming its line).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageExceptionSpec {
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
    /// Folders (relative to the release manifest) outside the chart's own
    /// folder that its `file://` dependencies may come from
    /// (docs/RELEASE-MANIFEST.md, "Chart dependencies").
    #[serde(default)]
    pub allow_paths: Vec<Spanned<String>>,
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
    /// As written, an RFC 3339 UTC time.
    pub expires: Option<Timestamp>,
}

/// A `[[signers]]` entry: its key read and parsed.
#[derive(Debug, Clone)]
pub struct Signer {
    pub name: String,
    pub key: stoa_format::keys::UpstreamKey,
    pub key_id: stoa_format::KeyId,
    /// The key file's bytes, carried as `signers/<name>.pub`.
    pub pem: Vec<u8>,
    /// Globs over image names: `*` any run of characters, `?` one.
    pub images: Vec<String>,
    pub required: bool,
}

impl Signer {
    /// Whether this signer covers `name`: a glob matches the full name or
    /// its repository (`docker.io/bitnami/*` covers
    /// `docker.io/bitnami/redis:7.2`).
    pub fn covers(&self, name: &ImageRef) -> bool {
        let repo = match name.domain() {
            Some(d) => format!("{d}/{}", name.path()),
            None => name.path().to_owned(),
        };
        self.images.iter().any(|g| {
            glob(g.as_bytes(), name.as_str().as_bytes()) || glob(g.as_bytes(), repo.as_bytes())
        })
    }
}

/// `*` matches any run of bytes (`/` too), `?` one byte, anything else
/// itself.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// An `[[images]]` entry.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: ImageRef,
    pub source: ImageFrom,
    /// `os/arch[/variant]` to keep; None keeps every platform.
    pub platforms: Option<Vec<String>>,
    /// From `[[artifacts]]`: not a container image (recorded with its
    /// artifact type; build refuses one that is an image).
    pub artifact: bool,
}

/// Where an image comes from.
#[derive(Debug, Clone)]
pub enum ImageFrom {
    /// A registry: `source = "docker://…"`, or no source (the name itself,
    /// then `text` is `docker://<name>`).
    Registry { text: String, reference: Reference },
    /// An OCI layout folder or archive (`oci:…`, `oci-archive:…`).
    Local(ImageSource),
}

/// A `[[charts]]` entry.
#[derive(Debug, Clone)]
pub struct Chart {
    pub source: ChartSource,
    /// The Helm release name on site.
    pub release: String,
    pub namespace: String,
    /// Vendor values files as written (relative to the release manifest),
    /// in Helm's order; each one's entry path is known to be safe.
    pub values: Vec<String>,
    /// `allow_paths` as written (relative to the release manifest), each an
    /// existing folder: where `file://` dependencies may come from besides
    /// the chart's own folder.
    pub allow_paths: Vec<String>,
}

/// An `[[image_exceptions]]` entry: an image the charts use that the
/// release does not carry, and why.
#[derive(Debug, Clone)]
pub struct ImageException {
    pub image: ImageRef,
    /// Not empty.
    pub reason: String,
}

/// Where a chart comes from: exactly one of `path`, `chart` or `repo`.
#[derive(Debug, Clone)]
pub enum ChartSource {
    /// A local chart folder or `.tgz` (its Chart.yaml names it).
    Path(String),
    /// `oci://host/repo/name` at `version`.
    Oci { url: String, version: String },
    /// A classic Helm repository: chart `name` at `version`.
    Repo {
        url: String,
        name: String,
        version: String,
    },
}

impl ChartSource {
    /// The chart name and version a pulled chart must have (None: local).
    pub fn wanted(&self) -> Option<(&str, &str, &str)> {
        match self {
            Self::Path(_) => None,
            Self::Oci { url, version } => Some((
                url.as_str(),
                url.rsplit('/').next().unwrap_or_default(),
                version.as_str(),
            )),
            Self::Repo { url, name, version } => {
                Some((url.as_str(), name.as_str(), version.as_str()))
            }
        }
    }
}

/// A `[[migrations]]` entry.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The database's name (as the site config names it).
    pub database: String,
    /// The folder of `NNNN_name.sql` files, as written.
    pub dir: String,
}

/// A `[[files]]` entry.
#[derive(Debug, Clone)]
pub struct File {
    /// The file on the build host, as written.
    pub source: String,
    /// A safe relative path under the site's files dir.
    pub dest: String,
    /// `0644` unless given.
    pub mode: FileMode,
}

/// A parsed release manifest, with what is needed to report errors by line
/// and to resolve relative paths.
#[derive(Debug)]
pub struct LoadedRelease {
    pub path: PathBuf,
    pub base_dir: PathBuf,
    text: String,
    /// The typed `[release]` section.
    pub release: Release,
    pub images: Vec<Image>,
    pub charts: Vec<Chart>,
    pub migrations: Vec<Migration>,
    pub files: Vec<File>,
    pub tools: Vec<crate::tools::Tool>,
    pub image_exceptions: Vec<ImageException>,
    pub signers: Vec<Signer>,
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
        let mut me = Self {
            path: path.to_owned(),
            base_dir,
            text,
            release,
            images: Vec::new(),
            charts: Vec::new(),
            migrations: Vec::new(),
            files: Vec::new(),
            tools: Vec::new(),
            image_exceptions: Vec::new(),
            signers: Vec::new(),
        };
        me.parse_sections(&manifest)?;
        Ok(me)
    }

    /// Every section but `[release]` into typed values, in manifest order.
    fn parse_sections(&mut self, m: &ReleaseManifest) -> Result<()> {
        self.images = (m.images.iter().enumerate())
            .map(|(i, x)| self.parse_image("images", i, x))
            .collect::<Result<_>>()?;
        for (i, a) in m.artifacts.iter().enumerate() {
            let spec = ImageSpec {
                name: a.name.clone(),
                source: a.source.clone(),
                platforms: None,
            };
            let mut img = self.parse_image("artifacts", i, &spec)?;
            img.artifact = true;
            self.images.push(img);
        }
        self.charts = (m.charts.iter().enumerate())
            .map(|(i, c)| self.parse_chart(i, c))
            .collect::<Result<_>>()?;
        self.image_exceptions = (m.image_exceptions.iter().enumerate())
            .map(|(i, x)| self.parse_image_exception(i, x))
            .collect::<Result<_>>()?;
        self.files = (m.files.iter().enumerate())
            .map(|(i, f)| self.parse_file(i, f))
            .collect::<Result<_>>()?;
        self.tools = (m.tools.iter().enumerate())
            .map(|(i, t)| self.parse_tool(i, t))
            .collect::<Result<_>>()?;
        self.signers = (m.signers.iter().enumerate())
            .map(|(i, x)| self.parse_signer(i, x))
            .collect::<Result<_>>()?;
        for (i, x) in self.signers.iter().enumerate() {
            if self.signers[..i].iter().any(|o| o.name == x.name) {
                return Err(self.field_error(
                    &format!("signers[{i}].name"),
                    m.signers[i].name.span(),
                    format!("signer {:?} is listed twice", x.name),
                ));
            }
        }
        self.migrations = (m.migrations.iter())
            .map(|x| Migration {
                database: x.database.get_ref().clone(),
                dir: x.dir.get_ref().clone(),
            })
            .collect();
        Ok(())
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

    /// An `[[images]]` item, or an `[[artifacts]]` one (`section`).
    fn parse_image(&self, section: &str, i: usize, img: &ImageSpec) -> Result<Image> {
        let field = |f: &str| format!("{section}[{i}].{f}");
        let name = ImageRef::parse(img.name.get_ref()).map_err(|e| {
            self.field_error(
                &field("name"),
                img.name.span(),
                format!(
                    "{:?} is not a valid image reference: {e}",
                    img.name.get_ref()
                ),
            )
        })?;
        if let Some(p) = &img.platforms {
            for plat in p.get_ref() {
                let parts = plat.split('/').count();
                if !(2..=3).contains(&parts) || plat.split('/').any(str::is_empty) {
                    return Err(self.field_error(
                        &field("platforms"),
                        p.span(),
                        format!("{plat:?} is not os/arch[/variant]"),
                    ));
                }
            }
        }
        let pulled = |text: String, f: &str, span: Range<usize>| {
            registry::parse_reference(&text)
                .map(|reference| ImageFrom::Registry { text, reference })
                .map_err(|e| self.field_error(&field(f), span, e))
        };
        let source = match &img.source {
            None => pulled(format!("docker://{name}"), "name", img.name.span())?,
            Some(s) if registry::is_registry_source(s.get_ref()) => {
                pulled(s.get_ref().clone(), "source", s.span())?
            }
            Some(s) => ImageFrom::Local(ImageSource::parse(s.get_ref()).ok_or_else(|| {
                self.field_error(
                    &field("source"),
                    s.span(),
                    format!(
                        "{:?} is not docker://<ref>, oci:<dir>[:<ref>] or oci-archive:<file>[:<ref>]",
                        s.get_ref()
                    ),
                )
            })?),
        };
        Ok(Image {
            name,
            source,
            platforms: img.platforms.as_ref().map(|p| p.get_ref().clone()),
            artifact: false,
        })
    }

    /// A `[[signers]]` item: a name as a bundle names signers, a readable
    /// P-256 or Ed25519 SPKI PEM key, at least one image glob.
    fn parse_signer(&self, i: usize, x: &SignerSpec) -> Result<Signer> {
        let field = |f: &str| format!("signers[{i}].{f}");
        let name = x.name.get_ref();
        let ok = !name.is_empty()
            && name.len() <= 63
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !ok {
            return Err(self.field_error(
                &field("name"),
                x.name.span(),
                format!("{name:?} must be 1-63 of a-z 0-9 - _ . starting with a letter or digit"),
            ));
        }
        let path = self.resolve(x.key.get_ref());
        let pem = std::fs::read(&path).map_err(|e| {
            self.field_error(
                &field("key"),
                x.key.span(),
                format!("read {}: {e}", path.display()),
            )
        })?;
        if pem.len() as u64 > stoa_format::limits::MAX_SIGNER_KEY {
            return Err(self.field_error(
                &field("key"),
                x.key.span(),
                format!(
                    "{} is over {} bytes",
                    path.display(),
                    stoa_format::limits::MAX_SIGNER_KEY
                ),
            ));
        }
        let key = stoa_format::keys::UpstreamKey::from_pem(&pem).map_err(|e| {
            self.field_error(
                &field("key"),
                x.key.span(),
                format!("{}: {e}", path.display()),
            )
        })?;
        if x.images.get_ref().is_empty() || x.images.get_ref().iter().any(String::is_empty) {
            return Err(self.field_error(
                &field("images"),
                x.images.span(),
                "give at least one non-empty glob over image names",
            ));
        }
        Ok(Signer {
            name: name.clone(),
            key_id: key.id(),
            key,
            pem,
            images: x.images.get_ref().clone(),
            required: x.required,
        })
    }

    fn parse_image_exception(&self, i: usize, x: &ImageExceptionSpec) -> Result<ImageException> {
        let image = ImageRef::parse(x.image.get_ref()).map_err(|e| {
            self.field_error(
                &format!("image_exceptions[{i}].image"),
                x.image.span(),
                format!(
                    "{:?} is not a valid image reference: {e}",
                    x.image.get_ref()
                ),
            )
        })?;
        if x.reason.get_ref().trim().is_empty() {
            return Err(self.field_error(
                &format!("image_exceptions[{i}].reason"),
                x.reason.span(),
                "an exception needs a reason",
            ));
        }
        Ok(ImageException {
            image,
            reason: x.reason.get_ref().clone(),
        })
    }

    fn parse_file(&self, i: usize, f: &FileSpec) -> Result<File> {
        let mode = match &f.mode {
            None => FileMode::default_file(),
            Some(m) => m.get_ref().parse().map_err(|_| {
                self.field_error(
                    &format!("files[{i}].mode"),
                    m.span(),
                    format!("{:?} is not an octal mode 0000-0777", m.get_ref()),
                )
            })?,
        };
        if let Err(e) = stoa_format::paths::check_entry_path(f.dest.get_ref(), 200) {
            return Err(self.field_error(
                &format!("files[{i}].dest"),
                f.dest.span(),
                e.to_string(),
            ));
        }
        Ok(File {
            source: f.source.get_ref().clone(),
            dest: f.dest.get_ref().clone(),
            mode,
        })
    }
}

impl LoadedRelease {
    fn parse_chart(&self, i: usize, c: &ChartSpec) -> Result<Chart> {
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
        for (j, a) in c.allow_paths.iter().enumerate() {
            if !self.resolve(a.get_ref()).is_dir() {
                return Err(self.field_error(
                    &field(&format!("allow_paths[{j}]")),
                    a.span(),
                    format!("{:?} is not a folder", a.get_ref()),
                ));
            }
        }
        let source = self.parse_chart_source(i, c)?;
        Ok(Chart {
            source,
            release: c.release.get_ref().clone(),
            namespace: c.namespace.get_ref().clone(),
            values: c.values.iter().map(|v| v.get_ref().clone()).collect(),
            allow_paths: c.allow_paths.iter().map(|a| a.get_ref().clone()).collect(),
        })
    }

    fn parse_chart_source(&self, i: usize, c: &ChartSpec) -> Result<ChartSource> {
        let field = |f: &str| format!("charts[{i}].{f}");
        match (&c.path, &c.chart, &c.repo) {
            (Some(p), None, None) => {
                for (f, v) in [("name", &c.name), ("version", &c.version)] {
                    if let Some(v) = v {
                        return Err(self.field_error(
                            &field(f),
                            v.span(),
                            "only for charts pulled with chart or repo; a local chart's Chart.yaml says it",
                        ));
                    }
                }
                Ok(ChartSource::Path(p.get_ref().clone()))
            }
            (None, Some(chart), None) => {
                let version = self.pulled_version(i, c)?;
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
                Ok(ChartSource::Oci {
                    url: chart.get_ref().clone(),
                    version,
                })
            }
            (None, None, Some(repo)) => {
                let version = self.pulled_version(i, c)?;
                let r = repo.get_ref();
                if !(r.starts_with("https://") || r.starts_with("http://")) {
                    return Err(self.field_error(
                        &field("repo"),
                        repo.span(),
                        format!("{r:?} is not an http(s):// Helm repository URL"),
                    ));
                }
                let name = match &c.name {
                    Some(n) if !n.get_ref().is_empty() => n.get_ref().clone(),
                    _ => {
                        return Err(self.field_error(
                            &field("name"),
                            c.release.span(),
                            "a chart from a repository needs its name",
                        ))
                    }
                };
                Ok(ChartSource::Repo {
                    url: r.clone(),
                    name,
                    version,
                })
            }
            _ => Err(self.field_error(
                &format!("charts[{i}]"),
                c.release.span(),
                "give exactly one of path (local), chart (oci://…) or repo (a Helm repository URL)",
            )),
        }
    }

    /// The version of a chart pulled with `chart` or `repo`: required.
    fn pulled_version(&self, i: usize, c: &ChartSpec) -> Result<String> {
        let field = format!("charts[{i}].version");
        let Some(version) = &c.version else {
            return Err(self.field_error(
                &field,
                c.release.span(),
                "a pulled chart needs a version",
            ));
        };
        stoa_format::names::check_chart_version(version.get_ref())
            .map_err(|e| self.field_error(&field, version.span(), e))?;
        Ok(version.get_ref().clone())
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
    let expires = match &r.expires {
        None => None,
        Some(x) => Some(x.get_ref().parse::<Timestamp>().map_err(|_| {
            field_error(
                "release.expires",
                x.span(),
                format!(
                    "{:?} is not an RFC 3339 UTC time like 2027-01-31T00:00:00Z",
                    x.get_ref()
                ),
            )
        })?),
    };
    // the format's own rule: a name the bundle would be refused for
    // fails here, with its line
    let name = ReleaseName::parse(r.name.get_ref())
        .map_err(|e| field_error("release.name", r.name.span(), e))?;
    Ok(Release {
        name,
        version,
        upgrade_from: r.upgrade_from.as_ref().map(|u| u.get_ref().clone()),
        expires,
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

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<LoadedRelease> {
        let dir = std::env::temp_dir().join(format!("stoa-release-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| BundlerError::ReadReleaseManifest {
            path: dir.clone(),
            source: e,
        })?;
        let p = dir.join(format!("r{}.toml", text.len()));
        std::fs::write(&p, text).map_err(|e| BundlerError::ReadReleaseManifest {
            path: p.clone(),
            source: e,
        })?;
        LoadedRelease::load(&p)
    }

    /// Every section parses into its typed value: image sources, the three
    /// chart sources, a file's default mode, migrations.
    #[test]
    fn sections_parse_into_typed_values() {
        let r = load(
            r#"[release]
name = "stoa"
version = "1.0.0"
expires = "2027-01-31T00:00:00Z"
[[images]]
name = "registry.example/stoa/api:1"
[[images]]
name = "registry.example/stoa/ui:1"
source = "oci:images:ui"
platforms = ["linux/amd64"]
[[charts]]
path = "charts/api"
release = "api"
namespace = "stoa"
[[charts]]
chart = "oci://registry.example/charts/pg"
version = "1.2.3"
release = "pg"
namespace = "data"
[[charts]]
repo = "https://charts.example"
name = "vault"
version = "0.1.0"
release = "vault"
namespace = "vault"
[[migrations]]
database = "stoa"
dir = "migrations"
[[files]]
source = "tools/x"
dest = "bin/x"
[[files]]
source = "tools/y"
dest = "bin/y"
mode = "0755"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.release.expires.as_ref().map(|t| t.as_str()),
            Some("2027-01-31T00:00:00Z")
        );
        assert!(matches!(&r.images[0].source,
            ImageFrom::Registry { text, .. } if text == "docker://registry.example/stoa/api:1"));
        assert!(
            matches!(&r.images[1].source, ImageFrom::Local(ImageSource::Layout { path, .. }) if path == "images")
        );
        assert_eq!(
            r.images[1].platforms.as_deref(),
            Some(&["linux/amd64".to_owned()][..])
        );
        assert!(matches!(&r.charts[0].source, ChartSource::Path(p) if p == "charts/api"));
        assert_eq!(
            r.charts[1].source.wanted(),
            Some(("oci://registry.example/charts/pg", "pg", "1.2.3"))
        );
        assert_eq!(
            r.charts[2].source.wanted(),
            Some(("https://charts.example", "vault", "0.1.0"))
        );
        assert_eq!(
            (r.charts[2].release.as_str(), r.charts[2].namespace.as_str()),
            ("vault", "vault")
        );
        assert_eq!(r.migrations[0].database, "stoa");
        assert_eq!(r.files[0].mode.as_str(), "0644");
        assert_eq!(r.files[1].mode.bits(), 0o755);
    }

    /// A chart needs exactly one source; the message is the one it always was.
    #[test]
    fn a_chart_with_two_sources_is_refused_naming_its_line() {
        let e = load(
            "[release]\nname = \"x\"\nversion = \"1.0.0\"\n[[charts]]\npath = \"c\"\nrepo = \"https://x\"\nrelease = \"a\"\nnamespace = \"b\"\n",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains(":7:") && e.contains("charts[0]"), "{e}");
        assert!(e.contains("give exactly one of path"), "{e}");
    }
}
