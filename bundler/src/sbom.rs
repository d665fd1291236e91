//! What `build` knows beside the signed manifest for the SBOM
//! (`stoa_format::sbom`, docs/FORMAT.md "The SBOM"): each chart's vendored
//! dependencies, read from the archive the bundle carries, and the
//! upstream attestations an image carries (BuildKit attestation manifests
//! in its index), read from the planned blobs. Everything else in the SBOM
//! comes from the final manifest's records and entries.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use stoa_format::manifest::{ChartRecord, ImageRecord};
use stoa_format::oci::{self, ImageIndex, ImageManifest};
use stoa_format::sbom::{Attestation, SbomExtras, SubChart};
use stoa_format::{ContentSource, PlannedEntry, Sha256Digest};

use crate::error::Result;
use crate::sources::chart::PackagedChart;

/// The annotation BuildKit puts on an attestation manifest in an index.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// … and the image manifest it is about.
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// An in-toto layer's predicate type.
const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// OCI manifests and indexes are small; anything larger is not one.
const MAX_DOC: u64 = 4 << 20;

/// The extras for `stoa_format::sbom::generate`: the tool, each chart
/// record's vendored dependencies (`records` and `archives` in manifest
/// order, as `plan` returns them) and the images' attestations.
pub fn extras(
    records: &[ChartRecord],
    archives: &[PackagedChart],
    attestations: BTreeMap<String, Vec<Attestation>>,
) -> Result<SbomExtras> {
    let mut subcharts = BTreeMap::new();
    for (r, c) in records.iter().zip(archives) {
        let subs = vendored(c)?;
        if !subs.is_empty() {
            subcharts.insert(format!("{}/{}", r.namespace, r.release), subs);
        }
    }
    Ok(SbomExtras {
        tool: Some(("stoa-bundler".into(), env!("CARGO_PKG_VERSION").into())),
        subcharts,
        attestations,
    })
}

#[derive(serde::Deserialize)]
struct ChartYaml {
    name: String,
    #[serde(default)]
    version: String,
}

/// The dependencies vendored in a chart archive's `<chart>/charts/`: each
/// `.tgz` (with its SHA-256) or folder, named and versioned by its own
/// Chart.yaml; the repository from the top chart's `dependencies`.
pub fn vendored(c: &PackagedChart) -> Result<Vec<SubChart>> {
    let files = crate::deps::unpack(&c.name, &c.bytes)?;
    let prefix = format!("{}/charts/", c.name);
    let mut out = Vec::new();
    for f in &files {
        let Some(rest) = f.path.strip_prefix(&prefix) else {
            continue;
        };
        let (meta, sha256, vendored_as) = if !rest.contains('/') && rest.ends_with(".tgz") {
            let inner = crate::deps::unpack(&f.path, &f.data)?;
            let yaml = inner
                .iter()
                .find(|i| i.path.matches('/').count() == 1 && i.path.ends_with("/Chart.yaml"));
            (
                yaml.and_then(|y| serde_yaml::from_slice::<ChartYaml>(&y.data).ok()),
                Some(Sha256Digest::of(&f.data)),
                f.path.clone(),
            )
        } else if rest.matches('/').count() == 1 && rest.ends_with("/Chart.yaml") {
            (
                serde_yaml::from_slice::<ChartYaml>(&f.data).ok(),
                None,
                f.path.trim_end_matches("/Chart.yaml").to_owned(),
            )
        } else {
            continue;
        };
        let Some(meta) = meta else {
            continue;
        };
        let repository = c
            .dependencies
            .iter()
            .find(|d| d.name == meta.name && !d.repository.is_empty())
            .map(|d| d.repository.clone());
        out.push(SubChart {
            name: meta.name,
            version: meta.version,
            vendored_as,
            sha256,
            repository,
        });
    }
    out.sort_by(|a, b| a.vendored_as.cmp(&b.vendored_as));
    Ok(out)
}

/// Reads a small planned blob (an OCI document), None when it is not one.
fn read_doc(blobs: &[PlannedEntry], digest: &Sha256Digest) -> Option<Vec<u8>> {
    let path = stoa_format::manifest::blob_path(digest);
    let e = blobs.iter().find(|e| e.path == path && e.size <= MAX_DOC)?;
    let mut out = Vec::new();
    match &e.source {
        ContentSource::Bytes(b) => out.extend_from_slice(b),
        ContentSource::File(p) => {
            File::open(p)
                .ok()?
                .take(MAX_DOC)
                .read_to_end(&mut out)
                .ok()?;
        }
        ContentSource::FileRange { path, offset, len } => {
            let mut f = File::open(path).ok()?;
            f.seek(SeekFrom::Start(*offset)).ok()?;
            f.take((*len).min(MAX_DOC)).read_to_end(&mut out).ok()?;
        }
    }
    Some(out)
}

/// The attestation manifests an image's index lists (and the bundle
/// carries): each with the manifest it is about and its predicate types.
pub fn attestations(record: &ImageRecord, blobs: &[PlannedEntry]) -> Vec<Attestation> {
    if !oci::is_index(&record.media_type) {
        return Vec::new();
    }
    let Some(index) = read_doc(blobs, &record.digest.digest())
        .and_then(|b| serde_json::from_slice::<ImageIndex>(&b).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in &index.manifests {
        let notes = d.annotations.clone().unwrap_or_default();
        if notes.get(REFERENCE_TYPE).map(String::as_str) != Some("attestation-manifest") {
            continue;
        }
        let Some(digest) = Sha256Digest::from_oci(&d.digest) else {
            continue;
        };
        let Some(doc) = read_doc(blobs, &digest) else {
            continue;
        };
        let mut predicate_types: Vec<String> = serde_json::from_slice::<ImageManifest>(&doc)
            .map(|m| {
                m.layers
                    .iter()
                    .filter_map(|l| l.annotations.as_ref()?.get(PREDICATE_TYPE).cloned())
                    .collect()
            })
            .unwrap_or_default();
        predicate_types.sort();
        predicate_types.dedup();
        out.push(Attestation {
            digest,
            subject: notes
                .get(REFERENCE_DIGEST)
                .and_then(|s| Sha256Digest::from_oci(s)),
            predicate_types,
        });
    }
    out.sort_by_key(|a| a.digest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(data: &[u8]) -> PlannedEntry {
        let d = Sha256Digest::of(data);
        PlannedEntry {
            path: stoa_format::manifest::blob_path(&d),
            size: data.len() as u64,
            sha256: d,
            source: ContentSource::Bytes(data.to_vec()),
        }
    }

    /// An index with one image and its BuildKit attestation manifest,
    /// whose layer is an SPDX in-toto statement: the attestation is found,
    /// with its subject and predicate type.
    #[test]
    fn buildkit_attestation_manifests_are_found_in_an_index() {
        let layer = b"{\"_type\":\"https://in-toto.io/Statement/v0.1\"}";
        let att = serde_json::json!({
            "schemaVersion": 2, "mediaType": oci::MT_OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Sha256Digest::of(b"{}").oci(), "size": 2},
            "layers": [{"mediaType": "application/vnd.in-toto+json",
                        "digest": Sha256Digest::of(layer).oci(), "size": layer.len(),
                        "annotations": {PREDICATE_TYPE: "https://spdx.dev/Document"}}]
        })
        .to_string();
        let img = Sha256Digest::of(b"image manifest");
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": oci::MT_OCI_INDEX,
            "manifests": [
                {"mediaType": oci::MT_OCI_MANIFEST, "digest": img.oci(), "size": 14,
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": oci::MT_OCI_MANIFEST, "digest": Sha256Digest::of(att.as_bytes()).oci(),
                 "size": att.len(), "platform": {"architecture": "unknown", "os": "unknown"},
                 "annotations": {REFERENCE_TYPE: "attestation-manifest", REFERENCE_DIGEST: img.oci()}}
            ]
        })
        .to_string();
        let record = ImageRecord {
            name: stoa_format::names::ImageRef::parse("registry.gostoa.dev/stoa/api:2.3.0")
                .unwrap(),
            digest: Sha256Digest::of(index.as_bytes()).into(),
            media_type: oci::MT_OCI_INDEX.into(),
            platforms: vec!["linux/amd64".into()],
            size: 0,
            source: None,
            source_digest: None,
            artifact_type: None,
            signatures: vec![],
        };
        let blobs = vec![blob(index.as_bytes()), blob(att.as_bytes())];
        let found = attestations(&record, &blobs);
        assert_eq!(
            found,
            vec![Attestation {
                digest: Sha256Digest::of(att.as_bytes()),
                subject: Some(img),
                predicate_types: vec!["https://spdx.dev/Document".into()],
            }]
        );
        // not carried: not referenced
        assert!(attestations(&record, &blobs[..1]).is_empty());
    }
}
