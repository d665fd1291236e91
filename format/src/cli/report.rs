//! What `inspect` and `verify` print, shared by both programs: typed
//! documents ([`InspectReport`], [`VerifyReport`]) printed as one JSON object
//! with `--json` (field names as always, docs/FORMAT.md) and, for inspect, as
//! text through `Display`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::keys::KeyId;
use crate::manifest::{BaseRelease, BundleManifest};
use crate::reader::{Inspection, VerifiedBundle};
use crate::root::SignedRoot;

/// The inspect document.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub name: String,
    pub version: String,
    pub upgrade_from: Option<String>,
    pub created: String,
    pub expires: Option<String>,
    pub format_version: u32,
    pub manifest_sha256: String,
    /// False when no trust was given (the signatures were not checked).
    pub signatures_checked: bool,
    pub signers: Vec<SignerStatus>,
    pub images: Vec<ImageSummary>,
    pub charts: Vec<ChartSummary>,
    pub migrations: Vec<MigrationSummary>,
    pub files: Vec<FileSummary>,
    /// The tool binaries it carries (`[[tools]]`).
    pub tools: Vec<ToolSummary>,
    /// Content bytes by kind (`image`, `chart`, …).
    pub sizes: BTreeMap<&'static str, u64>,
    /// How many entries the bundle carries.
    pub entries: usize,
    pub content_bytes: u64,
    pub bundle_bytes: Option<u64>,
    /// A delta's base chain and omitted entries (null for a full bundle).
    pub delta: Option<DeltaSummary>,
    /// A split bundle's parts (`source::parts_summary`); absent for a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<serde_json::Value>,
    /// The trust roots the bundle carries (`anchors/root-<v>.json`), oldest
    /// first; empty when it carries none.
    pub roots: Vec<RootSummary>,
    /// With `--trust`: the version of the root whose release keys the
    /// signatures were checked against (0 for a key folder; a signed root
    /// walks the carried roots first). None without `--trust`.
    pub trusted_through_root: Option<u64>,
}

/// A trust root the bundle carries, as its signed body says.
#[derive(Debug, Clone, Serialize)]
pub struct RootSummary {
    /// The bundle entry.
    pub entry: String,
    pub version: u64,
    pub created: String,
    pub expires: String,
    pub release_threshold: usize,
    pub release_keys: Vec<String>,
    pub root_threshold: usize,
    pub root_keys: Vec<String>,
    /// The key ids of its signatures (not checked here; `verify` and a
    /// signed root given to `--trust` check them).
    pub signed_by: Vec<String>,
}

impl RootSummary {
    /// The summary of `root`, carried as `entry`.
    pub fn of(entry: &str, root: &SignedRoot) -> Self {
        let ids = |it: &mut dyn Iterator<Item = &KeyId>| it.map(ToString::to_string).collect();
        Self {
            entry: entry.to_owned(),
            version: root.version(),
            created: root.body.created.clone(),
            expires: root.body.expires.clone(),
            release_threshold: root.body.release_threshold,
            release_keys: ids(&mut root.release_key_ids()),
            root_threshold: root.body.root_threshold,
            root_keys: ids(&mut root.root_key_ids()),
            signed_by: ids(&mut root.signer_ids()),
        }
    }
}

/// One signature entry; `trusted` is None when not checked.
#[derive(Debug, Clone, Serialize)]
pub struct SignerStatus {
    pub key_id: String,
    pub trusted: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub name: String,
    pub digest: String,
    pub media_type: String,
    pub platforms: Vec<String>,
    pub size: u64,
    pub source_digest: Option<String>,
    /// An `[[artifacts]]` item's artifact type (not a container image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The upstream signers whose signatures it carries (`name (key id)`);
    /// absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signed_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChartSummary {
    pub name: String,
    pub version: String,
    pub app_version: Option<String>,
    pub release: String,
    pub namespace: String,
    pub size: u64,
    /// The vendor values files carried for it, in Helm's order.
    pub values: Vec<ValuesSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValuesSummary {
    /// As written in the release manifest.
    pub source: String,
    /// The entry.
    pub path: String,
    /// `sha256:<hex>`.
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationSummary {
    pub database: String,
    pub steps: Vec<MigrationStepSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationStepSummary {
    pub id: String,
    pub name: String,
    /// Whether it has a down step.
    pub down: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub dest: String,
    pub mode: String,
    pub size: u64,
}

/// A carried tool binary.
#[derive(Debug, Clone, Serialize)]
pub struct ToolSummary {
    pub name: String,
    pub platform: String,
    pub version: String,
    /// The entry.
    pub path: String,
    pub mode: String,
    pub size: u64,
    /// `sha256:<hex>` of the binary.
    pub sha256: String,
}

/// The `delta` object of inspect and verify.
#[derive(Debug, Clone, Serialize)]
pub struct DeltaSummary {
    /// The release it was built against.
    pub base: Option<BaseSummary>,
    /// That release first, then its own base, and so on.
    pub chain: Vec<BaseSummary>,
    pub omitted_entries: usize,
    pub omitted_bytes: u64,
    pub omitted: Vec<OmittedSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaseSummary {
    pub name: String,
    pub version: String,
    pub manifest_sha256: String,
}

/// An entry a delta relies on without carrying.
#[derive(Debug, Clone, Serialize)]
pub struct OmittedSummary {
    pub path: String,
    pub kind: &'static str,
    pub size: u64,
    pub sha256: String,
}

/// The verify document (extract adds where it wrote).
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub name: String,
    pub version: String,
    pub manifest_sha256: String,
    /// The bundle file's SHA-256, every byte (for a part set, the signed
    /// index's): what build and split print as `bundle sha256:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_sha256: Option<String>,
    pub trusted_signers: Vec<String>,
    pub signers: Vec<String>,
    pub entries: usize,
    pub content_bytes: u64,
    pub delta: Option<DeltaSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extracted_to: Option<PathBuf>,
    /// The upstream image signatures the bundle carries, each re-verified
    /// (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_signatures: Vec<ImageSignature>,
}

/// One carried upstream signature of an image, verified.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSignature {
    pub image: String,
    pub digest: String,
    pub signer: String,
    pub key_id: String,
    /// The `.sig` manifest's digest (its site tag is `sha256-<hex>.sig`).
    pub manifest: String,
}

/// Every carried upstream signature of `m`, image by image.
pub fn image_signatures(m: &BundleManifest) -> Vec<ImageSignature> {
    m.images
        .iter()
        .flat_map(|i| {
            i.signatures.iter().map(move |s| ImageSignature {
                image: i.name.to_string(),
                digest: i.digest.to_string(),
                signer: s.signer.clone(),
                key_id: s.key_id.to_string(),
                manifest: s.manifest.to_string(),
            })
        })
        .collect()
}

/// The text line of a carried signature: `image <name> signed by
/// <signer> (<key id>)`.
pub fn signature_line(s: &ImageSignature) -> String {
    format!("image {} signed by {} ({})", s.image, s.signer, s.key_id)
}

/// A document as one line of JSON, keys sorted (as `serde_json::Value`
/// prints them).
pub fn to_json(doc: &impl Serialize) -> String {
    serde_json::to_value(doc)
        .unwrap_or(serde_json::Value::Null)
        .to_string()
}

/// The inspect document. `trusted` is `None` when no trust was given (the
/// signatures were not checked), else the trusted keys that verified.
pub fn inspection(
    i: &Inspection,
    trusted: Option<&[KeyId]>,
    bundle_size: Option<u64>,
) -> InspectReport {
    let m = &i.manifest;
    InspectReport {
        name: m.release.name.clone(),
        version: m.release.version.to_string(),
        upgrade_from: m.release.upgrade_from.clone(),
        created: m.release.created.to_string(),
        expires: m.release.expires.as_ref().map(ToString::to_string),
        format_version: m.format_version,
        manifest_sha256: i.manifest_sha256.hex(),
        signatures_checked: trusted.is_some(),
        signers: i
            .signers
            .iter()
            .map(|k| SignerStatus {
                key_id: k.to_string(),
                trusted: trusted.map(|t| t.contains(k)),
            })
            .collect(),
        images: m
            .images
            .iter()
            .map(|x| ImageSummary {
                name: x.name.to_string(),
                digest: x.digest.to_string(),
                media_type: x.media_type.clone(),
                platforms: x.platforms.clone(),
                size: x.size,
                source_digest: x.source_digest.as_ref().map(ToString::to_string),
                artifact_type: x.artifact_type.clone(),
                signed_by: x
                    .signatures
                    .iter()
                    .map(|s| format!("{} ({})", s.signer, s.key_id))
                    .collect(),
            })
            .collect(),
        charts: m
            .charts
            .iter()
            .map(|c| ChartSummary {
                name: c.name.clone(),
                version: c.version.clone(),
                app_version: c.app_version.clone(),
                release: c.release.clone(),
                namespace: c.namespace.clone(),
                size: entry_size(m, &c.path),
                values: c
                    .values
                    .iter()
                    .map(|v| ValuesSummary {
                        source: v.source.clone(),
                        path: v.path.clone(),
                        sha256: v.sha256.oci(),
                        size: entry_size(m, &v.path),
                    })
                    .collect(),
            })
            .collect(),
        migrations: m.migrations.iter().map(migration_summary).collect(),
        files: m
            .files
            .iter()
            .map(|f| FileSummary {
                dest: f.dest.clone(),
                mode: f.mode.to_string(),
                size: entry_size(m, &f.path),
            })
            .collect(),
        tools: m
            .tools
            .iter()
            .map(|t| ToolSummary {
                name: t.name.clone(),
                platform: t.platform.clone(),
                version: t.version.to_string(),
                path: t.path.clone(),
                mode: t.mode.to_string(),
                size: entry_size(m, &t.path),
                sha256: m
                    .listed(&t.path)
                    .map(|e| e.sha256.oci())
                    .unwrap_or_default(),
            })
            .collect(),
        sizes: m.sizes_by_kind(),
        entries: m.entries.len(),
        content_bytes: m.content_size(),
        bundle_bytes: bundle_size,
        delta: delta(m),
        parts: None,
        roots: Vec::new(),
        trusted_through_root: None,
    }
}

fn migration_summary(s: &crate::manifest::MigrationSet) -> MigrationSummary {
    MigrationSummary {
        database: s.database.clone(),
        steps: s
            .steps
            .iter()
            .map(|st| MigrationStepSummary {
                id: st.id.to_string(),
                name: st.name.clone(),
                down: st.down.is_some(),
            })
            .collect(),
    }
}

/// The `delta` object of inspect and verify: the base chain and every entry
/// the bundle relies on without carrying (None for a full bundle).
pub fn delta(m: &BundleManifest) -> Option<DeltaSummary> {
    let d = m.delta.as_ref()?;
    Some(DeltaSummary {
        base: d.bases.first().map(base),
        chain: d.bases.iter().map(base).collect(),
        omitted_entries: d.omitted.len(),
        omitted_bytes: d.omitted.iter().map(|e| e.size).sum(),
        omitted: d
            .omitted
            .iter()
            .map(|e| OmittedSummary {
                path: e.path.clone(),
                kind: kind_of(&e.path),
                size: e.size,
                sha256: e.sha256.hex(),
            })
            .collect(),
    })
}

fn base(b: &BaseRelease) -> BaseSummary {
    BaseSummary {
        name: b.name.clone(),
        version: b.version.to_string(),
        manifest_sha256: b.manifest_sha256.hex(),
    }
}

/// What kind of content an entry path holds.
pub fn kind_of(path: &str) -> &'static str {
    match path.split('/').next() {
        Some("oci") => "image",
        Some("charts") => "chart",
        Some("migrations") => "migration",
        Some("files") => "file",
        Some("anchors") => "root",
        Some(crate::sbom::SBOM_PATH) => "sbom",
        Some("tools") => "tool",
        _ => "other",
    }
}

/// The verify document.
pub fn verified(v: &VerifiedBundle) -> VerifyReport {
    VerifyReport {
        ok: true,
        name: v.manifest.release.name.clone(),
        version: v.manifest.release.version.to_string(),
        manifest_sha256: v.manifest_sha256.hex(),
        bundle_sha256: v.file_sha256.map(|d| d.hex()),
        trusted_signers: v.trusted_signers.iter().map(ToString::to_string).collect(),
        signers: v.signers.iter().map(ToString::to_string).collect(),
        entries: v.manifest.entries.len(),
        content_bytes: v.content_bytes,
        delta: delta(&v.manifest),
        parts: None,
        extracted_to: None,
        image_signatures: image_signatures(&v.manifest),
    }
}

fn entry_size(m: &BundleManifest, path: &str) -> u64 {
    m.listed(path).map(|e| e.size).unwrap_or(0)
}

/// Bytes as a short human figure (IEC units).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The plain text of `inspect`.
impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "release      {} {}", self.name, self.version)?;
        let upgrade_from = self.upgrade_from.as_deref().unwrap_or("(any)");
        writeln!(f, "upgrade_from {upgrade_from}")?;
        writeln!(f, "created      {}", self.created)?;
        let expires = self.expires.as_deref().unwrap_or("(never)");
        writeln!(f, "expires      {expires}")?;
        writeln!(f, "format       stoa-bundle v{}", self.format_version)?;
        writeln!(f, "manifest     sha256:{}", self.manifest_sha256)?;
        for sig in &self.signers {
            let state = match sig.trusted {
                None => "not checked (no --trust given)",
                Some(true) => "trusted, verified",
                Some(false) => "unknown key",
            };
            writeln!(f, "signed by    {} ({state})", sig.key_id)?;
        }
        writeln!(
            f,
            "content      {} in {} entries",
            human_bytes(self.content_bytes),
            self.entries
        )?;
        if let Some(b) = self.bundle_bytes {
            writeln!(f, "bundle file  {}", human_bytes(b))?;
        }
        if let Some(d) = &self.delta {
            d.fmt_text(f)?;
        }
        self.fmt_roots(f)?;
        self.fmt_content(f)
    }
}

impl InspectReport {
    /// The carried roots and, with `--trust`, the root the keys came from.
    fn fmt_roots(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "trust roots  ({} carried)", self.roots.len())?;
        for r in &self.roots {
            writeln!(
                f,
                "  root version {} ({}): created {}, expires {}",
                r.version, r.entry, r.created, r.expires
            )?;
            let list = |v: &[String]| {
                if v.is_empty() {
                    "(none)".to_owned()
                } else {
                    v.join(", ")
                }
            };
            writeln!(
                f,
                "    release keys (threshold {}): {}",
                r.release_threshold,
                list(&r.release_keys)
            )?;
            writeln!(
                f,
                "    root keys (threshold {}): {}",
                r.root_threshold,
                list(&r.root_keys)
            )?;
            writeln!(f, "    signed by {}", list(&r.signed_by))?;
        }
        match self.trusted_through_root {
            Some(0) => writeln!(f, "trusted via  the --trust key folder (root version 0)"),
            Some(v) => writeln!(f, "trusted via  root version {v}"),
            None => Ok(()),
        }
    }

    /// The images, charts, migrations and files.
    fn fmt_content(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "images ({})", self.images.len())?;
        for i in &self.images {
            match &i.artifact_type {
                Some(t) => writeln!(
                    f,
                    "  {}  {}  artifact {}  {}",
                    i.name,
                    i.digest,
                    crate::text::escape(t),
                    human_bytes(i.size)
                )?,
                None => writeln!(
                    f,
                    "  {}  {}  [{}]  {}",
                    i.name,
                    i.digest,
                    i.platforms.join(", "),
                    human_bytes(i.size)
                )?,
            }
            for s in &i.signed_by {
                writeln!(f, "    signed by {s}")?;
            }
        }
        writeln!(f, "charts ({})", self.charts.len())?;
        for c in &self.charts {
            writeln!(
                f,
                "  {} {}  release {}/{}  {}",
                c.name,
                c.version,
                c.namespace,
                c.release,
                human_bytes(c.size)
            )?;
            for v in &c.values {
                writeln!(f, "    values {} ({})  {}", v.source, v.path, v.sha256)?;
            }
        }
        writeln!(f, "migrations ({})", self.migrations.len())?;
        for m in &self.migrations {
            let steps: Vec<String> = m
                .steps
                .iter()
                .map(|s| {
                    let down = if s.down { " (+down)" } else { "" };
                    format!("{}_{}{down}", s.id, s.name)
                })
                .collect();
            writeln!(f, "  {}: {}", m.database, steps.join(", "))?;
        }
        writeln!(f, "files ({})", self.files.len())?;
        for x in &self.files {
            writeln!(f, "  {}  mode {}  {}", x.dest, x.mode, human_bytes(x.size))?;
        }
        writeln!(f, "tools ({})", self.tools.len())?;
        for t in &self.tools {
            writeln!(
                f,
                "  {} {}  {}  mode {}  {}  {}",
                t.name,
                t.version,
                t.platform,
                t.mode,
                human_bytes(t.size),
                t.sha256
            )?;
        }
        Ok(())
    }
}

impl DeltaSummary {
    fn fmt_text(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, version, sha) = self.base.as_ref().map_or(("", "", ""), |b| {
            (
                b.name.as_str(),
                b.version.as_str(),
                b.manifest_sha256.as_str(),
            )
        });
        writeln!(f, "delta on     {name} {version} (manifest sha256:{sha})")?;
        for c in self.chain.iter().skip(1) {
            writeln!(
                f,
                "  which is a delta on {} {} (manifest sha256:{})",
                c.name, c.version, c.manifest_sha256
            )?;
        }
        writeln!(
            f,
            "relies on    {} in {} entries the site must hold:",
            human_bytes(self.omitted_bytes),
            self.omitted_entries
        )?;
        for e in &self.omitted {
            writeln!(f, "  {}  {}  {}", e.kind, e.path, human_bytes(e.size))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
