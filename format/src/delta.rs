//! Delta bundles and release differences: reading the manifest of a base
//! release (a bundle, its parts, or its `manifest.json`), choosing which
//! entries a delta leaves out (those the base release has, by digest), and
//! the typed difference between two releases that `stoa-bundler diff`
//! prints. The site-side check (every omitted blob in the store) lives in
//! the updater; the manifest's `delta` section and its rules in
//! [`crate::manifest`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::digest::Sha256Digest;
use crate::document::limits::Limits;
use crate::document::ANCHORS_DIR;
use crate::error::FormatError;
use crate::manifest::{BaseRelease, BundleManifest, Entry, OCI_BLOBS_PREFIX};
use crate::source::{inspect_source, BundleSource};

/// A release's signed manifest, from wherever it was read.
#[derive(Debug, Clone)]
pub struct ReleaseHead {
    pub manifest: BundleManifest,
    /// SHA-256 of the exact manifest bytes (what signatures cover).
    pub manifest_sha256: Sha256Digest,
    /// The bundle's size, when a bundle or part set was given.
    pub bundle_bytes: Option<u64>,
    /// What was read, for messages.
    pub from: String,
}

impl ReleaseHead {
    /// The base record a delta built on this release carries.
    pub fn as_base(&self) -> BaseRelease {
        BaseRelease {
            name: self.manifest.release.name.clone(),
            version: self.manifest.release.version.clone(),
            manifest_sha256: self.manifest_sha256,
        }
    }

    /// The chain a delta built on this release records: this release, then
    /// the chain of this release when it is a delta itself.
    pub fn chain(&self) -> Vec<BaseRelease> {
        let mut v = vec![self.as_base()];
        if let Some(d) = &self.manifest.delta {
            v.extend(d.bases.iter().cloned());
        }
        v
    }

    /// Every digest a site that applied this release holds in its store:
    /// the entries carried and, for a delta, those it relied on.
    pub fn digests(&self) -> HashSet<Sha256Digest> {
        self.manifest.release_entries().map(|e| e.sha256).collect()
    }
}

/// Reads the signed manifest of a release from what the operator typed: a
/// bundle file, its parts (index, folder or part files), or a bare
/// `manifest.json` (as `extract` writes it). Signatures are not checked
/// here: the base only decides what a new bundle leaves out, and the site
/// checks every omitted blob against its own store.
pub fn read_release_head(paths: &[PathBuf], limits: &Limits) -> Result<ReleaseHead, FormatError> {
    if let [one] = paths {
        if is_manifest_file(one) {
            let bytes = read_capped(one, limits.max_manifest_size)?;
            let manifest = BundleManifest::from_bytes(&bytes, limits)?;
            return Ok(ReleaseHead {
                manifest,
                manifest_sha256: Sha256Digest::of(&bytes),
                bundle_bytes: None,
                from: one.display().to_string(),
            });
        }
    }
    let src = BundleSource::resolve(paths)?;
    let i = inspect_source(&src, limits)?;
    Ok(ReleaseHead {
        manifest: i.manifest,
        manifest_sha256: i.manifest_sha256,
        bundle_bytes: Some(src.size()),
        from: src.display(),
    })
}

/// A regular file that is JSON but not a parts index: a bare manifest.
fn is_manifest_file(p: &Path) -> bool {
    if p.is_dir()
        || p.file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".parts.json"))
    {
        return false;
    }
    let mut first = [0u8; 64];
    let n = fs::File::open(p)
        .and_then(|mut f| f.read(&mut first))
        .unwrap_or(0);
    first[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

fn read_capped(p: &Path, cap: u64) -> Result<Vec<u8>, FormatError> {
    let open = |e| FormatError::OpenBundle {
        path: p.to_owned(),
        source: e,
    };
    let f = fs::File::open(p).map_err(open)?;
    let mut bytes = Vec::new();
    f.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(open)?;
    if bytes.len() as u64 > cap {
        return Err(FormatError::ManifestTooLarge {
            size: bytes.len() as u64,
            limit: cap,
        });
    }
    Ok(bytes)
}

/// Whether a delta may leave this entry out when the base has its digest:
/// every content entry except the trust roots the bundle carries (a reader
/// needs them before the signature check) and the tools (an updater too old
/// for the release installs its successor from them, docs/FORMAT.md
/// *Versioning*).
pub fn omittable(e: &Entry) -> bool {
    !e.path.starts_with(ANCHORS_DIR)
        && e.path != crate::sbom::SBOM_PATH
        && !e.path.starts_with(crate::tools::TOOLS_DIR)
}

/// The release a bundle stands for, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseId {
    pub name: String,
    pub version: String,
    pub manifest_sha256: String,
    /// For a delta: the release it was built against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

impl ReleaseId {
    fn of(h: &ReleaseHead) -> Self {
        Self {
            name: h.manifest.release.name.clone(),
            version: h.manifest.release.version.to_string(),
            manifest_sha256: h.manifest_sha256.hex(),
            base: h
                .manifest
                .base()
                .map(|b| format!("{} {}", b.name, b.version)),
        }
    }
}

/// One image on one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSide {
    pub name: String,
    pub digest: String,
    pub size: u64,
}

/// An image repository present in both releases under another digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageChange {
    pub repository: String,
    pub old: ImageSide,
    pub new: ImageSide,
    /// Bytes of the new image's blobs (manifests, config, layers) the old
    /// release does not have: what a delta carries for it. `None` (JSON
    /// `null`) when the image's blobs are unknown (no `--trust`, or a bare
    /// manifest): unknown, never a guessed 0.
    pub bytes_new: Option<u64>,
    /// Bytes of the new image's blobs the old release has too; `None` when
    /// unknown, as `bytes_new`.
    pub bytes_shared: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImagesDiff {
    pub added: Vec<ImageSide>,
    pub removed: Vec<ImageSide>,
    pub changed: Vec<ImageChange>,
    pub unchanged: Vec<String>,
}

/// A Helm release whose chart was added, removed or changed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartChange {
    /// `namespace/release`.
    pub release: String,
    pub chart: String,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    /// What changed: `added`, `removed`, `version` (another chart
    /// version) or `content` (same version, other archive bytes).
    pub change: ChartChangeKind,
    /// The chart's version differs between the releases (also true for an
    /// added or removed release).
    pub version_changed: bool,
    /// Same chart name and version, different archive bytes.
    pub content_changed: bool,
}

/// How a Helm release's chart changed between two releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChartChangeKind {
    Added,
    Removed,
    Version,
    Content,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationAdded {
    pub database: String,
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilesDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// What a delta of the new release on the old one would hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeltaEstimate {
    /// Entries and bytes the delta carries.
    pub entries_carried: usize,
    pub bytes_carried: u64,
    /// Entries and bytes it leaves out (the old release has them).
    pub entries_omitted: usize,
    pub bytes_omitted: u64,
    /// Content bytes of the whole new release.
    pub release_bytes: u64,
}

/// `stoa-bundler diff --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseDiff {
    pub old: ReleaseId,
    pub new: ReleaseId,
    pub images: ImagesDiff,
    pub charts: Vec<ChartChange>,
    pub migrations_added: Vec<MigrationAdded>,
    pub files: FilesDiff,
    pub delta: DeltaEstimate,
}

/// The difference between two releases, from their manifests. Images are
/// paired by repository (the name without tag or digest); an image's blobs
/// are attributed through `image_blobs` (image digest → the digests and
/// sizes of every blob it needs), which the caller reads from the bundles;
/// without it (manifests only), the split is unknown and both byte counts
/// are `None`.
pub fn diff(
    old: &ReleaseHead,
    new: &ReleaseHead,
    image_blobs: &BTreeMap<String, Vec<(Sha256Digest, u64)>>,
) -> ReleaseDiff {
    let (om, nm) = (&old.manifest, &new.manifest);
    let have = old.digests();
    let side = |i: &crate::manifest::ImageRecord| ImageSide {
        name: i.name.to_string(),
        digest: i.digest.to_string(),
        size: i.size,
    };
    let repo = |i: &crate::manifest::ImageRecord| match i.name.domain() {
        Some(d) => format!("{d}/{}", i.name.path()),
        None => i.name.path().to_owned(),
    };
    let olds: BTreeMap<String, &crate::manifest::ImageRecord> =
        om.images.iter().map(|i| (repo(i), i)).collect();
    let news: BTreeMap<String, &crate::manifest::ImageRecord> =
        nm.images.iter().map(|i| (repo(i), i)).collect();
    let mut images = ImagesDiff::default();
    for (r, n) in &news {
        match olds.get(r) {
            None => images.added.push(side(n)),
            Some(o) if o.digest == n.digest => images.unchanged.push(n.name.to_string()),
            Some(o) => {
                let (bytes_new, bytes_shared) = match image_blobs.get(n.digest.as_str()) {
                    Some(blobs) => {
                        let (mut new_b, mut shared) = (0, 0);
                        for (d, size) in blobs {
                            if have.contains(d) {
                                shared += size;
                            } else {
                                new_b += size;
                            }
                        }
                        (Some(new_b), Some(shared))
                    }
                    None => (None, None),
                };
                images.changed.push(ImageChange {
                    repository: r.clone(),
                    old: side(o),
                    new: side(n),
                    bytes_new,
                    bytes_shared,
                });
            }
        }
    }
    for (r, o) in &olds {
        if !news.contains_key(r) {
            images.removed.push(side(o));
        }
    }

    let key = |c: &crate::manifest::ChartRecord| format!("{}/{}", c.namespace, c.release);
    let oc: BTreeMap<String, &crate::manifest::ChartRecord> =
        om.charts.iter().map(|c| (key(c), c)).collect();
    let nc: BTreeMap<String, &crate::manifest::ChartRecord> =
        nm.charts.iter().map(|c| (key(c), c)).collect();
    let mut charts = Vec::new();
    for k in oc.keys().chain(nc.keys()).collect::<BTreeSet<_>>() {
        let (o, n) = (oc.get(k), nc.get(k));
        let sha = |m: &BundleManifest, c: &crate::manifest::ChartRecord| {
            m.listed(&c.path).map(|e| e.sha256)
        };
        let content_changed = match (o, n) {
            (Some(o), Some(n)) => sha(om, o) != sha(nm, n),
            _ => true,
        };
        if !content_changed {
            continue;
        }
        charts.push(ChartChange {
            release: k.clone(),
            chart: n.or(o).map(|c| c.name.clone()).unwrap_or_default(),
            old_version: o.map(|c| c.version.clone()),
            new_version: n.map(|c| c.version.clone()),
            change: match (o, n) {
                (None, _) => ChartChangeKind::Added,
                (_, None) => ChartChangeKind::Removed,
                (Some(o), Some(n)) if o.version != n.version => ChartChangeKind::Version,
                _ => ChartChangeKind::Content,
            },
            version_changed: !matches!((o, n), (Some(o), Some(n)) if o.version == n.version),
            content_changed: matches!((o, n), (Some(o), Some(n)) if o.version == n.version),
        });
    }

    let mut migrations_added = Vec::new();
    for set in &nm.migrations {
        let before: BTreeSet<&str> = om
            .migrations
            .iter()
            .filter(|s| s.database == set.database)
            .flat_map(|s| s.steps.iter().map(|st| st.id.as_str()))
            .collect();
        for st in &set.steps {
            if !before.contains(st.id.as_str()) {
                migrations_added.push(MigrationAdded {
                    database: set.database.clone(),
                    id: st.id.to_string(),
                    name: st.name.clone(),
                });
            }
        }
    }

    let of: BTreeMap<&str, Option<Sha256Digest>> = om
        .files
        .iter()
        .map(|f| (f.dest.as_str(), om.listed(&f.path).map(|e| e.sha256)))
        .collect();
    let mut files = FilesDiff::default();
    for f in &nm.files {
        match of.get(f.dest.as_str()) {
            None => files.added.push(f.dest.clone()),
            Some(d) if *d != nm.listed(&f.path).map(|e| e.sha256) => {
                files.changed.push(f.dest.clone())
            }
            Some(_) => {}
        }
    }
    let new_dests: BTreeSet<&str> = nm.files.iter().map(|f| f.dest.as_str()).collect();
    files.removed = of
        .keys()
        .filter(|d| !new_dests.contains(*d))
        .map(|d| (*d).to_owned())
        .collect();

    let mut delta = DeltaEstimate::default();
    for e in nm.release_entries() {
        delta.release_bytes += e.size;
        if omittable(e) && have.contains(&e.sha256) {
            delta.entries_omitted += 1;
            delta.bytes_omitted += e.size;
        } else {
            delta.entries_carried += 1;
            delta.bytes_carried += e.size;
        }
    }
    ReleaseDiff {
        old: ReleaseId::of(old),
        new: ReleaseId::of(new),
        images,
        charts,
        migrations_added,
        files,
        delta,
    }
}

/// The digest of an OCI blob entry, from its path.
pub fn blob_digest(path: &str) -> Option<Sha256Digest> {
    path.strip_prefix(OCI_BLOBS_PREFIX)
        .and_then(Sha256Digest::from_hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{BaseRelease, Delta};

    fn head(m: BundleManifest) -> ReleaseHead {
        let bytes = m.to_bytes();
        ReleaseHead {
            manifest_sha256: Sha256Digest::of(&bytes),
            manifest: m,
            bundle_bytes: None,
            from: "test".into(),
        }
    }

    fn entry(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            size: data.len() as u64,
            sha256: Sha256Digest::of(data),
        }
    }

    fn manifest(version: &str, entries: Vec<Entry>) -> BundleManifest {
        let mut m = crate::manifest::tests::sample();
        m.images.clear();
        m.release.version = semver::Version::parse(version).unwrap();
        m.entries = entries;
        m.entries.sort_by(|a, b| a.path.cmp(&b.path));
        m
    }

    #[test]
    fn diff_counts_what_a_delta_would_carry() {
        let old = head(manifest(
            "2.1.0",
            vec![entry("files/a", b"same"), entry("files/b", b"old b")],
        ));
        let new = head(manifest(
            "2.3.0",
            vec![
                entry("files/a", b"same"),
                entry("files/b", b"new b!"),
                entry("anchors/root-2.json", b"same"),
            ],
        ));
        let d = diff(&old, &new, &BTreeMap::new());
        assert_eq!(d.delta.entries_omitted, 1, "{d:?}");
        assert_eq!(d.delta.bytes_omitted, 4);
        // a trust root is always carried, even with a digest the base has
        assert_eq!(d.delta.entries_carried, 2);
        assert_eq!(d.delta.bytes_carried, 10);
        assert_eq!(d.old.version, "2.1.0");
    }

    #[test]
    fn a_delta_base_passes_its_chain_and_its_omitted_digests_on() {
        let mut m = manifest("2.3.0", vec![entry("files/a", b"x")]);
        m.format_version = crate::DELTA_FORMAT_VERSION;
        let base = BaseRelease {
            name: "stoa-platform".into(),
            version: semver::Version::new(2, 1, 0),
            manifest_sha256: Sha256Digest::of(b"m"),
        };
        m.delta = Some(Delta {
            bases: vec![base.clone()],
            omitted: vec![entry("files/b", b"y")],
        });
        m.validate(&Limits::default()).unwrap();
        let h = head(m);
        assert_eq!(h.chain().len(), 2);
        assert_eq!(h.chain()[1], base);
        assert!(h.digests().contains(&Sha256Digest::of(b"y")));
        assert!(h.digests().contains(&Sha256Digest::of(b"x")));
    }
}
