//! From a release manifest to a [`BundleWriter`]: resolve every source,
//! hash what is not content-addressed already, and assemble the signed
//! manifest's records. [`plan`] composes one function per section of the
//! release manifest ([`plan_images`], [`plan_charts`], [`plan_migrations`],
//! [`plan_files`], `tools::plan_tools`), each adding its entries in manifest
//! order and returning the records of its section.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use stoa_format::manifest::{
    self, ChartRecord, FileRecord, ImageRecord, MigrationSet, MigrationStep, Release, SignerRecord,
    ValuesRecord, OCI_INDEX_PATH, OCI_LAYOUT_PATH,
};
use stoa_format::{oci, BundleManifest, BundleWriter, ContentSource, PlannedEntry, Sha256Digest};

use crate::deps::{self, DepScope};
use crate::error::{BundlerError, Result};
use crate::release::{Chart, ChartSource, Image, ImageFrom, LoadedRelease};
use crate::settings::BuildSettings;
use crate::sources::oci_layout::{self, ImageSource, LayoutStore, ResolvedImage};
use crate::sources::registry::slot::{puller, PullSlot};
use crate::sources::registry::{chart_repo, PullStats};
use crate::sources::{chart, migrations};

/// Opens a file without following a symlink in its last component.
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

pub(crate) fn planned_file(
    entry_path: String,
    file: &Path,
    err: impl Fn(String) -> BundlerError,
) -> Result<PlannedEntry> {
    // never follow a symlink: the docs promise a regular file, and the
    // writer checks the bytes it reads later against this digest
    let f = open_no_follow(file).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            err("is a symbolic link; give the regular file itself".into())
        } else {
            err(e.to_string())
        }
    })?;
    let meta = f.metadata().map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let (sha256, size) = Sha256Digest::of_reader(f).map_err(|e| err(e.to_string()))?;
    Ok(PlannedEntry {
        path: entry_path,
        size,
        sha256,
        source: ContentSource::File(file.to_owned()),
    })
}

/// Resolves one `[[charts]]` item to the archive the bundle carries: a local
/// folder packaged, a `.tgz` kept, or a pulled chart checked against what
/// was asked for.
pub fn resolve_chart(
    rel: &LoadedRelease,
    spec: &Chart,
    settings: &BuildSettings,
    pull: &mut PullSlot,
) -> Result<chart::PackagedChart> {
    let path = match &spec.source {
        ChartSource::Path(p) => rel.resolve(p),
        ChartSource::Oci { url, version } => {
            let p = puller(pull, &settings.pull)?;
            p.pull_oci_chart(url, version)?.0
        }
        ChartSource::Repo { url, name, version } => {
            let p = puller(pull, &settings.pull)?;
            chart_repo::pull(p, url, name, version)?.0
        }
    };
    let c = chart::load(&path, settings.chart_gzip)?;
    let source_dir = path.is_dir().then_some(path.as_path());
    if let Some((from, name, v)) = spec.source.wanted() {
        if c.name != name || c.version != v {
            return Err(BundlerError::ChartPull {
                chart: format!("{name} {v}"),
                url: from.to_owned(),
                message: format!("the archive's Chart.yaml says {} {}", c.name, c.version),
            });
        }
    }
    // file:// dependencies stay inside the chart's folder, or the folders
    // the release manifest allows for it
    let scope = DepScope::new(source_dir, spec.allow_paths.iter().map(|a| rel.resolve(a)))?;
    deps::complete(c, source_dir, &scope, settings, pull)
}

/// What [`plan`] resolved: the writer, what was downloaded when something
/// was pulled, and each `[[charts]]` item's archive (in manifest order, for
/// the image check).
pub struct Planned {
    pub writer: BundleWriter,
    pub pulled: Option<PullStats>,
    pub charts: Vec<chart::PackagedChart>,
    /// Per image name: the upstream attestations it carries (for the SBOM).
    pub attestations: ImageAttestations,
}

/// Resolves everything the release manifest names.
pub fn plan(rel: &LoadedRelease, settings: &BuildSettings) -> Result<Planned> {
    let mut planned: Vec<PlannedEntry> = Vec::new();
    let mut pull = PullSlot::default();
    let (images, attestations, signers) = plan_images(rel, settings, &mut pull, &mut planned)?;
    let (charts, chart_archives) = plan_charts(rel, settings, &mut pull, &mut planned)?;
    let migrations = plan_migrations(rel, &mut planned)?;
    let files = plan_files(rel, &mut planned)?;
    let tools = crate::tools::plan_tools(rel, &mut planned)?;
    let r = &rel.release;
    let bundle_manifest = BundleManifest {
        format: stoa_format::FORMAT_NAME.into(),
        format_version: stoa_format::FORMAT_VERSION,
        release: Release {
            name: r.name.to_string(),
            version: r.version.clone(),
            upgrade_from: r.upgrade_from.clone(),
            created: stoa_format::fields::Timestamp::from_time(settings.created),
            expires: r.expires.clone(),
        },
        images,
        charts,
        migrations,
        files,
        sbom: None,
        tools,
        signers,
        delta: None,
        entries: Vec::new(),
    };
    let writer = BundleWriter::new(bundle_manifest, planned, settings.mtime, &settings.limits)?;
    Ok(Planned {
        writer,
        pulled: pull.stats(),
        charts: chart_archives,
        attestations,
    })
}

/// The attestations each image carries, by image name.
type ImageAttestations = std::collections::BTreeMap<String, Vec<stoa_format::sbom::Attestation>>;

/// `[[images]]`: each image pulled or read from its layout; the bundle's
/// `oci/index.json` and `oci/oci-layout`, then every image's blobs.
fn plan_images(
    rel: &LoadedRelease,
    settings: &BuildSettings,
    pull: &mut PullSlot,
    planned: &mut Vec<PlannedEntry>,
) -> Result<(Vec<ImageRecord>, ImageAttestations, Vec<SignerRecord>)> {
    let mut stores: HashMap<(bool, PathBuf), LayoutStore> = HashMap::new();
    let mut images = Vec::new();
    let mut sig_index = Vec::new();
    let mut signed_by = std::collections::BTreeSet::new();
    for img in &rel.images {
        let resolved = match &img.source {
            ImageFrom::Registry { text, reference } => {
                let p = puller(pull, &settings.pull)?;
                p.pull_image(img.name.as_str(), text, reference, img.platforms.as_deref())?
            }
            ImageFrom::Local(parsed) => local_image(rel, img, parsed, &mut stores)?,
        };
        let mut resolved = mark_artifact(img, resolved)?;
        let carried = crate::signatures::carry(rel, settings, pull, img, &mut resolved)?;
        planned.extend(carried.entries);
        sig_index.extend(carried.index);
        signed_by.extend(carried.signers);
        images.push(resolved);
    }
    let (signers, key_entries) = crate::signatures::signer_entries(rel, &signed_by);
    planned.extend(key_entries);
    if !images.is_empty() {
        let index = oci_layout::bundle_index(&images, sig_index);
        planned.push(PlannedEntry {
            path: OCI_INDEX_PATH.into(),
            size: index.len() as u64,
            sha256: Sha256Digest::of(&index),
            source: ContentSource::Bytes(index),
        });
        planned.push(PlannedEntry {
            path: OCI_LAYOUT_PATH.into(),
            size: oci::OCI_LAYOUT_CONTENT.len() as u64,
            sha256: Sha256Digest::of(oci::OCI_LAYOUT_CONTENT),
            source: ContentSource::Bytes(oci::OCI_LAYOUT_CONTENT.to_vec()),
        });
    }
    let mut image_records = Vec::new();
    let mut attestations = ImageAttestations::new();
    for img in images {
        let found = crate::sbom::attestations(&img.record, &img.blobs);
        if !found.is_empty() {
            attestations.insert(img.record.name.to_string(), found);
        }
        planned.extend(img.blobs);
        image_records.push(img.record);
    }
    Ok((image_records, attestations, signers))
}

/// An `[[artifacts]]` item is recorded with its artifact type (and listed
/// with it in `oci/index.json`); a container image listed there is refused.
fn mark_artifact(img: &Image, mut resolved: ResolvedImage) -> Result<ResolvedImage> {
    if !img.artifact {
        return Ok(resolved);
    }
    let Some(t) = resolved.artifact_type.clone() else {
        return Err(BundlerError::Image {
            image: img.name.to_string(),
            message: "[[artifacts]]: this is a container image or an index, not an artifact \
                      (no artifactType, an image config); list it under [[images]]"
                .into(),
        });
    };
    if !oci::valid_media_type(&t) {
        return Err(BundlerError::Image {
            image: img.name.to_string(),
            message: format!(
                "[[artifacts]]: artifact type {:?} is not a media type",
                stoa_format::text::escape(&t)
            ),
        });
    }
    resolved.top.artifact_type = Some(t.clone());
    resolved.record.artifact_type = Some(t);
    Ok(resolved)
}

/// One image from an OCI layout folder or archive (each opened once per
/// build, in `stores`).
fn local_image(
    rel: &LoadedRelease,
    img: &Image,
    parsed: &ImageSource,
    stores: &mut HashMap<(bool, PathBuf), LayoutStore>,
) -> Result<ResolvedImage> {
    let name = img.name.as_str();
    let (is_archive, path, reference) = match parsed {
        ImageSource::Layout { path, reference } => (false, rel.resolve(path), reference.clone()),
        ImageSource::Archive { path, reference } => (true, rel.resolve(path), reference.clone()),
    };
    // recorded relative to the release manifest's folder (never the
    // build host's absolute layout)
    let recorded = {
        let (scheme, written, reference) = match parsed {
            ImageSource::Layout { path, reference } => ("oci", path, reference),
            ImageSource::Archive { path, reference } => ("oci-archive", path, reference),
        };
        let mut t = format!("{scheme}:{}", rel.record_path(written));
        if let Some(r) = reference {
            t.push(':');
            t.push_str(r);
        }
        t
    };
    let key = (is_archive, path.clone());
    if !stores.contains_key(&key) {
        let store = if is_archive {
            LayoutStore::open_archive(&path)
        } else {
            LayoutStore::open_dir(&path)
        }
        .map_err(|e| BundlerError::OciLayout {
            image: name.to_owned(),
            layout: path.clone(),
            message: e.to_string(),
        })?;
        stores.insert(key.clone(), store);
    }
    oci_layout::resolve(
        name,
        &recorded,
        &stores[&key],
        reference.as_deref(),
        img.platforms.as_deref(),
    )
}

/// `[[charts]]`: each chart's archive (completed with its dependencies)
/// after its values files; the records and the archives (for the image
/// check), in manifest order.
fn plan_charts(
    rel: &LoadedRelease,
    settings: &BuildSettings,
    pull: &mut PullSlot,
    planned: &mut Vec<PlannedEntry>,
) -> Result<(Vec<ChartRecord>, Vec<chart::PackagedChart>)> {
    let mut chart_records = Vec::new();
    let mut chart_archives = Vec::new();
    for spec in &rel.charts {
        let c = resolve_chart(rel, spec, settings, pull)?;
        let entry_path = format!("charts/{}-{}.tgz", c.name, c.version);
        let values = plan_values(rel, spec, planned)?;
        chart_records.push(ChartRecord {
            name: c.name.clone(),
            version: c.version.clone(),
            app_version: c.app_version.clone(),
            kube_version: c.kube_version.clone(),
            release: spec.release.clone(),
            namespace: spec.namespace.clone(),
            path: entry_path.clone(),
            values,
        });
        planned.push(PlannedEntry {
            path: entry_path,
            size: c.bytes.len() as u64,
            sha256: Sha256Digest::of(&c.bytes),
            source: ContentSource::Bytes(c.bytes.clone()),
        });
        chart_archives.push(c);
    }
    Ok((chart_records, chart_archives))
}

/// One chart's `values` files, in the order given.
fn plan_values(
    rel: &LoadedRelease,
    spec: &Chart,
    planned: &mut Vec<PlannedEntry>,
) -> Result<Vec<ValuesRecord>> {
    let mut values = Vec::new();
    for (j, v) in spec.values.iter().enumerate() {
        let file = rel.resolve(v);
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = manifest::values_entry_path(&spec.namespace, &spec.release, j, &name);
        let e = planned_file(path.clone(), &file, |m| BundlerError::ValuesFile {
            release: spec.release.clone(),
            path: file.clone(),
            message: m,
        })?;
        values.push(ValuesRecord {
            source: rel.record_path(v),
            path,
            sha256: e.sha256,
        });
        planned.push(e);
    }
    Ok(values)
}

/// `[[migrations]]`: each database's steps, up then down file, checked.
fn plan_migrations(
    rel: &LoadedRelease,
    planned: &mut Vec<PlannedEntry>,
) -> Result<Vec<MigrationSet>> {
    let mut migration_sets = Vec::new();
    for spec in &rel.migrations {
        let db = &spec.database;
        let dir = rel.resolve(&spec.dir);
        let mut steps = Vec::new();
        for f in migrations::scan(&dir)? {
            let entry_of = |p: &Path| {
                format!(
                    "migrations/{db}/{}",
                    p.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                )
            };
            let merr = |file: &Path| {
                let dir = dir.clone();
                let file = file.display().to_string();
                move |m: String| BundlerError::Migrations {
                    dir: dir.clone(),
                    message: format!("{file}: {m}"),
                }
            };
            let up = entry_of(&f.up);
            planned.push(planned_file(up.clone(), &f.up, merr(&f.up))?);
            migrations::check_sql(&f.up)?;
            let down = match &f.down {
                Some(d) => {
                    let p = entry_of(d);
                    planned.push(planned_file(p.clone(), d, merr(d))?);
                    migrations::check_sql(d)?;
                    Some(p)
                }
                None => None,
            };
            steps.push(MigrationStep {
                id: f.id.parse().map_err(merr(&f.up))?,
                name: f.name,
                up,
                down,
            });
        }
        migration_sets.push(MigrationSet {
            database: db.clone(),
            steps,
        });
    }
    Ok(migration_sets)
}

/// `[[files]]`: each plain file, as `files/<dest>`.
fn plan_files(rel: &LoadedRelease, planned: &mut Vec<PlannedEntry>) -> Result<Vec<FileRecord>> {
    let mut file_records = Vec::new();
    for spec in &rel.files {
        let src = rel.resolve(&spec.source);
        let dest = spec.dest.clone();
        let entry_path = format!("files/{dest}");
        planned.push(planned_file(entry_path.clone(), &src, |m| {
            BundlerError::File {
                path: src.clone(),
                message: m,
            }
        })?);
        file_records.push(FileRecord {
            dest,
            mode: spec.mode.clone(),
            path: entry_path,
        });
    }
    Ok(file_records)
}
