//! `stoa-bundler diff <old> <new> [--json] [--trust K]`: what changed
//! between two releases (bundles, parts or manifests): images added,
//! removed and changed, charts and versions, migrations added, files
//! changed, the SBOM's components added, removed and changed
//! ([`super::diff_sbom`]), and the size a delta of the new release on the
//! old one would have. With `--trust`, the new bundle is read in full (verified) to
//! attribute every changed image's blobs as new or shared.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use stoa_format::cli::Output;

use stoa_format::delta::{diff, read_release_head, ReleaseDiff};
use stoa_format::manifest::Entry;
use stoa_format::oci::{ImageIndex, ImageManifest, MediaTypeProbe};
use stoa_format::reader::ContentSink;
use stoa_format::report::human_bytes;
use stoa_format::source::{verify_source, BundleSource};
use stoa_format::{Limits, Sha256Digest, TrustStore, VerifyOptions};

use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The old release: a bundle, its parts index or folder, or its manifest.json.
    pub old: PathBuf,
    /// The new release: a bundle, its parts index or folder, or its manifest.json.
    pub new: PathBuf,
    /// Trusted keys (.pub file or folder): read the new bundle in full,
    /// verified, to split each changed image into new and shared bytes.
    #[arg(long, value_name = "PATH")]
    pub trust: Option<PathBuf>,
}

/// OCI manifests and indexes are small; larger blobs are layers.
const MAX_OCI_DOC: u64 = 4 << 20;

/// One OCI document: its own size, the child manifests (of an index), and
/// the config and layers (of a manifest) with their sizes.
type OciDoc = (u64, Vec<Sha256Digest>, Vec<(Sha256Digest, u64)>);

/// Keeps the OCI manifests and indexes of a bundle as they stream (one at a
/// time in memory), parsed into the blobs each refers to.
#[derive(Debug, Default)]
struct OciDocs {
    buf: Option<Vec<u8>>,
    /// digest → (own size, child manifests, config and layers)
    docs: BTreeMap<Sha256Digest, OciDoc>,
}

impl ContentSink for OciDocs {
    fn begin(&mut self, e: &Entry) -> io::Result<()> {
        self.buf = (stoa_format::delta::blob_digest(&e.path).is_some() && e.size <= MAX_OCI_DOC)
            .then(Vec::new);
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(b) = self.buf.as_mut() {
            if b.is_empty() && data.first().is_some_and(|c| *c != b'{') {
                self.buf = None;
            } else {
                b.extend_from_slice(data);
            }
        }
        Ok(())
    }
    fn end(&mut self, e: &Entry) -> io::Result<()> {
        let Some(b) = self.buf.take() else {
            return Ok(());
        };
        let digest = |s: &str| Sha256Digest::from_oci(s);
        let Ok(probe) = serde_json::from_slice::<MediaTypeProbe>(&b) else {
            return Ok(());
        };
        let doc = match probe.kind() {
            Some(k) if stoa_format::oci::is_index(k) => {
                serde_json::from_slice::<ImageIndex>(&b).ok().map(|i| {
                    let children = i.manifests.iter().filter_map(|d| digest(&d.digest));
                    (children.collect(), Vec::new())
                })
            }
            Some(k) if stoa_format::oci::is_manifest(k) => {
                serde_json::from_slice::<ImageManifest>(&b).ok().map(|m| {
                    let blobs = std::iter::once(&m.config)
                        .chain(&m.layers)
                        .filter_map(|d| digest(&d.digest).map(|x| (x, d.size)));
                    (Vec::new(), blobs.collect())
                })
            }
            _ => None,
        };
        if let Some((children, blobs)) = doc {
            self.docs.insert(e.sha256, (e.size, children, blobs));
        }
        Ok(())
    }
}

impl OciDocs {
    /// Every blob an image (by its manifest or index digest) needs.
    fn blobs_of(&self, d: &Sha256Digest, out: &mut Vec<(Sha256Digest, u64)>, depth: u8) {
        let Some((size, children, blobs)) = self.docs.get(d) else {
            return;
        };
        out.push((*d, *size));
        out.extend(blobs.iter().copied());
        if depth < 4 {
            for c in children {
                self.blobs_of(c, out, depth + 1);
            }
        }
    }
}

pub fn run(args: &Args, out: Output) -> Result<()> {
    let limits = Limits::default();
    let old = read_release_head(std::slice::from_ref(&args.old), &limits)?;
    let new = read_release_head(std::slice::from_ref(&args.new), &limits)?;
    let mut image_blobs = BTreeMap::new();
    if let Some(t) = &args.trust {
        let trust = TrustStore::load(t)?;
        let src = BundleSource::resolve(std::slice::from_ref(&args.new))?;
        let mut docs = OciDocs::default();
        verify_source(
            &src,
            &trust,
            &VerifyOptions::default(),
            &mut docs,
            &mut |_| {},
        )?;
        for img in &new.manifest.images {
            let d = img.digest.digest();
            let mut blobs = Vec::new();
            docs.blobs_of(&d, &mut blobs, 0);
            blobs.sort();
            blobs.dedup();
            image_blobs.insert(img.digest.to_string(), blobs);
        }
    }
    let d = diff(&old, &new, &image_blobs);
    let sbom = super::diff_sbom::sbom_diff(&old.manifest, &new.manifest);
    if out.json {
        let mut doc = serde_json::to_value(&d).unwrap_or_default();
        doc["sbom"] = serde_json::to_value(&sbom).unwrap_or_default();
        println!("{doc}");
    } else {
        print!("{}", text(&d, args.trust.is_some(), new.bundle_bytes));
        print!("{}", super::diff_sbom::text(&sbom));
    }
    Ok(())
}

/// The plain-text rendering of a diff.
fn text(d: &ReleaseDiff, split_known: bool, new_bundle: Option<u64>) -> String {
    let mut o = String::new();
    let mut line = |l: String| {
        o.push_str(&l);
        o.push('\n');
    };
    line(format!(
        "{} {} -> {} {}",
        d.old.name, d.old.version, d.new.name, d.new.version
    ));
    line(format!(
        "images: {} added, {} removed, {} changed, {} unchanged",
        d.images.added.len(),
        d.images.removed.len(),
        d.images.changed.len(),
        d.images.unchanged.len()
    ));
    for i in &d.images.added {
        line(format!("  + {}  {}", i.name, human_bytes(i.size)));
    }
    for i in &d.images.removed {
        line(format!("  - {}", i.name));
    }
    for c in &d.images.changed {
        let split = if let (true, Some(n), Some(sh)) = (split_known, c.bytes_new, c.bytes_shared) {
            format!("{} new, {} shared", human_bytes(n), human_bytes(sh))
        } else {
            format!(
                "{} (give --trust to split new/shared)",
                human_bytes(c.new.size)
            )
        };
        line(format!("  ~ {} -> {}  {split}", c.old.name, c.new.name));
    }
    line(format!("charts: {} changed", d.charts.len()));
    for c in &d.charts {
        line(format!(
            "  {} {}: {} -> {}{}",
            c.release,
            c.chart,
            c.old_version.as_deref().unwrap_or("(none)"),
            c.new_version.as_deref().unwrap_or("(removed)"),
            if c.content_changed {
                " (same version, other content)"
            } else {
                ""
            }
        ));
    }
    line(format!("migrations added: {}", d.migrations_added.len()));
    for m in &d.migrations_added {
        line(format!("  {}: {}_{}", m.database, m.id, m.name));
    }
    line(format!(
        "files: {} added, {} removed, {} changed",
        d.files.added.len(),
        d.files.removed.len(),
        d.files.changed.len()
    ));
    for f in &d.files.added {
        line(format!("  + {f}"));
    }
    for f in &d.files.removed {
        line(format!("  - {f}"));
    }
    for f in &d.files.changed {
        line(format!("  ~ {f}"));
    }
    line(format!(
        "a delta would carry {} in {} entries and leave out {} in {} (release content {}{})",
        human_bytes(d.delta.bytes_carried),
        d.delta.entries_carried,
        human_bytes(d.delta.bytes_omitted),
        d.delta.entries_omitted,
        human_bytes(d.delta.release_bytes),
        new_bundle
            .map(|b| format!(", the new bundle file is {}", human_bytes(b)))
            .unwrap_or_default()
    ));
    o
}
