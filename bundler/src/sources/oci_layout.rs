//! Images from an OCI image layout: a folder (`oci:<dir>[:<ref>]`) or an
//! uncompressed tar of one (`oci-archive:<file>[:<ref>]`), the way skopeo
//! names them. Manifests and blobs are kept byte-exact; every blob's size is
//! checked here and its digest while the bundle is written.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use stoa_format::fields::OciDigest;
use stoa_format::manifest::{blob_path, ImageRecord};
use stoa_format::oci::{self, Descriptor, ImageIndex, ImageManifest, MediaTypeProbe};
use stoa_format::{ContentSource, PlannedEntry, Sha256Digest};

use crate::error::{BundlerError, Result};

/// The most bytes read into memory for one manifest, index or config.
pub const MAX_JSON_BLOB: u64 = 4 << 20;

/// A parsed `source` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// `oci:<dir>[:<ref>]`
    Layout {
        path: String,
        reference: Option<String>,
    },
    /// `oci-archive:<file>[:<ref>]`
    Archive {
        path: String,
        reference: Option<String>,
    },
}

impl ImageSource {
    pub fn parse(s: &str) -> Option<Self> {
        let split = |rest: &str| match rest.split_once(':') {
            Some((p, r)) => (p.to_owned(), Some(r.to_owned()).filter(|r| !r.is_empty())),
            None => (rest.to_owned(), None),
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, reference) = split(rest);
            return (!path.is_empty()).then_some(Self::Layout { path, reference });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, reference) = split(rest);
            return (!path.is_empty()).then_some(Self::Archive { path, reference });
        }
        None
    }
}

/// Read access to the files of a layout, wherever it is stored.
#[derive(Debug)]
pub enum LayoutStore {
    Dir(PathBuf),
    /// An uncompressed tar: member name → (offset, size).
    Archive {
        path: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

impl LayoutStore {
    pub fn open_dir(path: &Path) -> io::Result<Self> {
        if !path.join("oci-layout").is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no oci-layout file: not an OCI image layout",
            ));
        }
        Ok(Self::Dir(path.to_owned()))
    }

    pub fn open_archive(path: &Path) -> io::Result<Self> {
        let mut ar = tar::Archive::new(File::open(path)?);
        let mut members = HashMap::new();
        for e in ar.entries_with_seek()? {
            let e = e?;
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = e
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            members.insert(name, (e.raw_file_position(), e.size()));
        }
        if !members.contains_key("oci-layout") {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no oci-layout member: not an OCI archive",
            ));
        }
        Ok(Self::Archive {
            path: path.to_owned(),
            members,
        })
    }

    pub fn describe(&self) -> PathBuf {
        match self {
            Self::Dir(p) | Self::Archive { path: p, .. } => p.clone(),
        }
    }

    fn size(&self, rel: &str) -> io::Result<u64> {
        match self {
            Self::Dir(p) => Ok(std::fs::metadata(p.join(rel))?.len()),
            Self::Archive { members, .. } => members.get(rel).map(|(_, s)| *s).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{rel}: no such member"))
            }),
        }
    }

    fn source(&self, rel: &str) -> io::Result<ContentSource> {
        match self {
            Self::Dir(p) => Ok(ContentSource::File(p.join(rel))),
            Self::Archive { path, members } => {
                let (offset, len) = members.get(rel).copied().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{rel}: no such member"))
                })?;
                Ok(ContentSource::FileRange {
                    path: path.clone(),
                    offset,
                    len,
                })
            }
        }
    }

    fn read(&self, rel: &str, limit: u64) -> io::Result<Vec<u8>> {
        let size = self.size(rel)?;
        if size > limit {
            return Err(io::Error::other(format!(
                "{rel} is {size} bytes, over the {limit}-byte limit"
            )));
        }
        let mut v = Vec::with_capacity(size as usize);
        match self {
            Self::Dir(p) => {
                File::open(p.join(rel))?.take(limit).read_to_end(&mut v)?;
            }
            Self::Archive { path, members } => {
                let (off, len) = members[rel];
                let mut f = File::open(path)?;
                f.seek(SeekFrom::Start(off))?;
                f.take(len).read_to_end(&mut v)?;
            }
        }
        Ok(v)
    }
}

/// An image ready to be written: its record and its blobs.
#[derive(Debug)]
pub struct ResolvedImage {
    pub record: ImageRecord,
    pub top: Descriptor,
    pub blobs: Vec<PlannedEntry>,
    /// The top manifest's artifact type ([`oci::artifact_type_of`]): None
    /// for a container image or an index.
    pub artifact_type: Option<String>,
}

/// A filtered index: the source index's digest and the new index's
/// descriptor.
type Filtered = (OciDigest, Descriptor);

struct Resolver<'a> {
    image: &'a str,
    store: &'a LayoutStore,
    blobs: BTreeMap<Sha256Digest, PlannedEntry>,
}

impl Resolver<'_> {
    fn err(&self, message: impl Into<String>) -> BundlerError {
        BundlerError::OciLayout {
            image: self.image.to_owned(),
            layout: self.store.describe(),
            message: message.into(),
        }
    }

    fn digest_of(&self, d: &Descriptor) -> Result<Sha256Digest> {
        Sha256Digest::from_oci(&d.digest)
            .ok_or_else(|| self.err(format!("digest {:?} is not sha256", d.digest)))
    }

    /// Plans a blob after checking it exists with the descriptor's size.
    fn add_blob(&mut self, d: &Descriptor) -> Result<Sha256Digest> {
        let digest = self.digest_of(d)?;
        let rel = format!("blobs/sha256/{}", digest.hex());
        let size = self
            .store
            .size(&rel)
            .map_err(|e| self.err(format!("blob {}: {e}", d.digest)))?;
        if size != d.size {
            return Err(self.err(format!(
                "blob {}: {size} bytes in the layout, its descriptor says {}",
                d.digest, d.size
            )));
        }
        let source = self
            .store
            .source(&rel)
            .map_err(|e| self.err(format!("blob {}: {e}", d.digest)))?;
        self.blobs.insert(
            digest,
            PlannedEntry {
                path: blob_path(&digest),
                size,
                sha256: digest,
                source,
            },
        );
        Ok(digest)
    }

    /// Reads a small JSON blob and checks its digest now, since we parse it.
    fn read_json_blob(&self, d: &Descriptor) -> Result<Vec<u8>> {
        let digest = self.digest_of(d)?;
        let rel = format!("blobs/sha256/{}", digest.hex());
        let bytes = self
            .store
            .read(&rel, MAX_JSON_BLOB)
            .map_err(|e| self.err(format!("blob {}: {e}", d.digest)))?;
        let got = Sha256Digest::of(&bytes);
        if got != digest || bytes.len() as u64 != d.size {
            return Err(self.err(format!(
                "blob {}: content has sha256:{got} ({} bytes), expected {} ({} bytes)",
                d.digest,
                bytes.len(),
                d.digest,
                d.size
            )));
        }
        Ok(bytes)
    }

    /// A single-platform manifest: itself, its config and layers. Returns its
    /// platform from the config.
    fn add_manifest(&mut self, d: &Descriptor) -> Result<Option<String>> {
        let bytes = self.read_json_blob(d)?;
        self.add_blob(d)?;
        let m: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(format!("manifest {}: not an image manifest: {e}", d.digest)))?;
        self.add_blob(&m.config)?;
        for l in &m.layers {
            self.add_blob(l)?;
        }
        // the platform lives in the config of ordinary images
        let platform = match self.read_json_blob(&m.config) {
            Ok(cfg) => serde_json::from_slice::<serde_json::Value>(&cfg)
                .ok()
                .and_then(|v| {
                    let os = v.get("os")?.as_str()?.to_owned();
                    let arch = v.get("architecture")?.as_str()?.to_owned();
                    Some(match v.get("variant").and_then(|x| x.as_str()) {
                        Some(var) => format!("{os}/{arch}/{var}"),
                        None => format!("{os}/{arch}"),
                    })
                }),
            Err(_) => None,
        };
        Ok(platform)
    }

    /// An index's manifests for `platforms` (each with its blobs), and the
    /// index itself; returns the platforms kept and, when some were left
    /// out, the source index's digest and the filtered index that replaces
    /// it.
    fn add_index(
        &mut self,
        top: &Descriptor,
        top_bytes: &[u8],
        media_type: &str,
        platforms: Option<&[String]>,
    ) -> Result<(Vec<String>, Option<Filtered>)> {
        let idx: ImageIndex = serde_json::from_slice(top_bytes)
            .map_err(|e| self.err(format!("index {}: {e}", top.digest)))?;
        let keep = select_platforms(self.image, &idx, platforms)?;
        let mut record_platforms = Vec::new();
        for &i in &keep {
            let child = &idx.manifests[i];
            if oci::is_index(&child.media_type) {
                return Err(self.err(format!("nested index {} is not supported", child.digest)));
            }
            self.add_manifest(child)?;
            if let Some(p) = &child.platform {
                record_platforms.push(p.id());
            }
        }
        if keep.len() == idx.manifests.len() {
            self.add_blob(top)?;
            return Ok((record_platforms, None));
        }
        let filtered = self.add_filtered_index(top, top_bytes, media_type, &keep)?;
        Ok((record_platforms, Some(filtered)))
    }

    /// A filtered index: the original document minus the other platforms,
    /// planned as a new blob. Returns the source index's digest and the new
    /// index's descriptor.
    fn add_filtered_index(
        &mut self,
        top: &Descriptor,
        top_bytes: &[u8],
        media_type: &str,
        keep: &[usize],
    ) -> Result<Filtered> {
        let mut v: serde_json::Value =
            serde_json::from_slice(top_bytes).map_err(|e| self.err(e.to_string()))?;
        if let Some(arr) = v.get_mut("manifests").and_then(|m| m.as_array_mut()) {
            let all = std::mem::take(arr);
            *arr = all
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep.contains(i))
                .map(|(_, x)| x)
                .collect();
        }
        let bytes = serde_json::to_vec(&v).map_err(|e| self.err(e.to_string()))?;
        let digest = Sha256Digest::of(&bytes);
        let source_digest = top.digest.parse::<OciDigest>().map_err(|e| self.err(e))?;
        let desc = Descriptor {
            media_type: media_type.to_owned(),
            digest: digest.oci(),
            size: bytes.len() as u64,
            platform: None,
            annotations: None,
            artifact_type: None,
        };
        self.blobs.insert(
            digest,
            PlannedEntry {
                path: blob_path(&digest),
                size: bytes.len() as u64,
                sha256: digest,
                source: ContentSource::Bytes(bytes),
            },
        );
        Ok((source_digest, desc))
    }

    /// A single-platform top manifest, which must be one of `platforms`
    /// when they are given; returns its platform (if its config names one).
    fn add_single(
        &mut self,
        top: &Descriptor,
        platforms: Option<&[String]>,
    ) -> Result<Vec<String>> {
        let platform = self.add_manifest(top)?;
        if let (Some(want), Some(p)) = (platforms, &platform) {
            if !want
                .iter()
                .any(|w| w == p || p.starts_with(&format!("{w}/")))
            {
                return Err(BundlerError::Image {
                    image: self.image.to_owned(),
                    message: format!(
                        "the image is {p}, not one of the platforms asked for ({})",
                        want.join(", ")
                    ),
                });
            }
        }
        Ok(platform.into_iter().collect())
    }
}

/// Resolves `reference` (or the only image) in a layout into blobs and a
/// record named `name`. With `platforms`, an index is filtered to them; the
/// filtered index is a new document with a new digest (recorded, with the
/// source index digest in `source_digest`).
pub fn resolve(
    name: &str,
    source_text: &str,
    store: &LayoutStore,
    reference: Option<&str>,
    platforms: Option<&[String]>,
) -> Result<ResolvedImage> {
    let r = Resolver {
        image: name,
        store,
        blobs: BTreeMap::new(),
    };
    let index_bytes = store
        .read("index.json", MAX_JSON_BLOB)
        .map_err(|e| r.err(format!("index.json: {e}")))?;
    let index: ImageIndex =
        serde_json::from_slice(&index_bytes).map_err(|e| r.err(format!("index.json: {e}")))?;
    let ref_of = |d: &Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(oci::ANNOTATION_REF_NAME))
            .cloned()
    };
    let candidates: Vec<&Descriptor> = match reference {
        Some(want) => index
            .manifests
            .iter()
            .filter(|d| ref_of(d).as_deref() == Some(want))
            .collect(),
        None => index.manifests.iter().collect(),
    };
    let top = match candidates.as_slice() {
        [one] => (*one).clone(),
        [] => {
            let names: Vec<String> = index.manifests.iter().filter_map(ref_of).collect();
            return Err(r.err(format!(
                "no image {:?} in the layout (it has: {})",
                reference.unwrap_or(""),
                if names.is_empty() {
                    "no named images".into()
                } else {
                    names.join(", ")
                }
            )));
        }
        _ => {
            return Err(r.err(match reference {
                Some(want) => format!("{} index entries are named {want:?}", candidates.len()),
                None => format!(
                    "the layout holds {} images; name one with oci:<dir>:<ref>",
                    candidates.len()
                ),
            }))
        }
    };
    resolve_top(name, source_text, store, &top, platforms)
}

/// The platforms of `idx` to keep: all of them without `platforms`, else
/// those matching one of `platforms`; every platform asked for must be
/// there. Shared by layouts and registries.
pub fn select_platforms(
    name: &str,
    idx: &ImageIndex,
    platforms: Option<&[String]>,
) -> Result<Vec<usize>> {
    let Some(want) = platforms else {
        return Ok((0..idx.manifests.len()).collect());
    };
    let keep: Vec<usize> = (0..idx.manifests.len())
        .filter(|i| {
            idx.manifests[*i]
                .platform
                .as_ref()
                .is_some_and(|p| want.iter().any(|w| p.matches(w)))
        })
        .collect();
    for w in want {
        if !keep.iter().any(|i| {
            idx.manifests[*i]
                .platform
                .as_ref()
                .is_some_and(|p| p.matches(w))
        }) {
            let has: Vec<String> = idx
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(|p| p.id()))
                .collect();
            return Err(BundlerError::Image {
                image: name.to_owned(),
                message: format!(
                    "platform {w} is not in the index (it has: {})",
                    has.join(", ")
                ),
            });
        }
    }
    Ok(keep)
}

/// Resolves the image whose top manifest or index is `top` (its blob must
/// be in `store`), filtering an index to `platforms`.
pub fn resolve_top(
    name: &str,
    source_text: &str,
    store: &LayoutStore,
    top: &Descriptor,
    platforms: Option<&[String]>,
) -> Result<ResolvedImage> {
    let mut r = Resolver {
        image: name,
        store,
        blobs: BTreeMap::new(),
    };
    let top = top.clone();
    let top_bytes = r.read_json_blob(&top)?;
    let probe: MediaTypeProbe =
        serde_json::from_slice(&top_bytes).map_err(|e| r.err(format!("{}: {e}", top.digest)))?;
    let media_type = probe.kind().unwrap_or(&top.media_type).to_owned();

    let mut top_desc = Descriptor {
        annotations: None,
        platform: None,
        ..top.clone()
    };
    let (record_platforms, source_digest) = if oci::is_index(&media_type) {
        let (kept, filtered) = r.add_index(&top, &top_bytes, &media_type, platforms)?;
        match filtered {
            Some((source, desc)) => {
                top_desc = desc;
                (kept, Some(source))
            }
            None => (kept, None),
        }
    } else if oci::is_manifest(&media_type) {
        (r.add_single(&top, platforms)?, None)
    } else {
        return Err(r.err(format!(
            "{}: media type {media_type:?} is neither an image manifest nor an index",
            top.digest
        )));
    };
    top_desc.media_type = media_type.clone();
    let size = r.blobs.values().map(|b| b.size).sum();
    Ok(ResolvedImage {
        record: ImageRecord {
            // checked with its line when the release manifest was loaded
            name: stoa_format::names::ImageRef::parse(name)
                .map_err(|e| r.err(format!("image name {name:?}: {e}")))?,
            digest: top_desc
                .digest
                .parse()
                .map_err(|e: String| r.err(format!("image {name:?}: {e}")))?,
            media_type,
            platforms: record_platforms,
            size,
            source: Some(source_text.to_owned()),
            source_digest,
            artifact_type: None,
            signatures: Vec::new(),
        },
        top: top_desc,
        blobs: r.blobs.into_values().collect(),
        artifact_type: oci::artifact_type_of(&top_bytes),
    })
}

/// The bundle's `oci/index.json`: one entry per image, named by its full
/// name, sorted by name, then the carried upstream signature manifests
/// (`signatures`, each named `<repository>:sha256-<hex>.sig`), sorted by
/// name. Compact JSON, so it is the same bytes every time; without
/// signatures the same bytes as before they existed.
pub fn bundle_index(images: &[ResolvedImage], mut signatures: Vec<Descriptor>) -> Vec<u8> {
    let mut sorted: Vec<&ResolvedImage> = images.iter().collect();
    sorted.sort_by(|a, b| a.record.name.cmp(&b.record.name));
    let manifests = sorted
        .iter()
        .map(|img| {
            let mut d = img.top.clone();
            d.annotations = Some(BTreeMap::from([(
                oci::ANNOTATION_REF_NAME.to_owned(),
                img.record.name.to_string(),
            )]));
            d
        })
        .collect::<Vec<_>>();
    let name = |d: &Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(oci::ANNOTATION_REF_NAME))
            .cloned()
    };
    signatures.sort_by_key(name);
    signatures.dedup_by_key(|d| name(d));
    let mut manifests = manifests;
    manifests.extend(signatures);
    let idx = ImageIndex {
        schema_version: 2,
        media_type: Some(oci::MT_OCI_INDEX.to_owned()),
        manifests,
        annotations: None,
    };
    serde_json::to_vec(&idx).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sources() {
        assert_eq!(
            ImageSource::parse("oci:vendor/images:api-2.3.0"),
            Some(ImageSource::Layout {
                path: "vendor/images".into(),
                reference: Some("api-2.3.0".into())
            })
        );
        assert_eq!(
            ImageSource::parse("oci-archive:a.tar"),
            Some(ImageSource::Archive {
                path: "a.tar".into(),
                reference: None
            })
        );
        assert_eq!(ImageSource::parse("docker://x"), None);
        assert_eq!(ImageSource::parse("oci:"), None);
    }
}
