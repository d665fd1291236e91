//! The bundle's software bill of materials (docs/FORMAT.md, "The SBOM"): a
//! CycloneDX 1.6 JSON document carried as the signed entry
//! `sbom.cdx.json` and named by the manifest's `sbom` field.
//!
//! [`generate`] derives it from the final manifest (every digest is known
//! before a byte of content is written) and from what the build knows
//! beside it ([`SbomExtras`]: the tool, each chart's vendored
//! dependencies, the upstream attestations an image carries). Its bytes
//! depend on nothing else: components are sorted by `bom-ref`, the serial
//! number is derived from the release ([`serial_number`]) and the timestamp
//! is the release's `created`, so a rebuild under the same
//! `SOURCE_DATE_EPOCH` writes the same bytes.
//!
//! [`check`] is the reader's rule: the entry parses as CycloneDX 1.6 JSON,
//! names this release (serial number, metadata component, timestamp), and
//! every component that names a bundle entry holds that entry's SHA-256,
//! with one for every image, chart, values file, migration and file the
//! manifest lists. A bundle whose SBOM disagrees with its own manifest is
//! refused.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::error::FormatError;
use crate::manifest::{blob_path, BundleManifest, Entry};

/// The entry that holds the SBOM, the only path the manifest's `sbom` field
/// may name.
pub const SBOM_PATH: &str = "sbom.cdx.json";
/// The largest SBOM entry a reader accepts (it is parsed whole).
pub const MAX_SBOM_SIZE: u64 = 64 << 20;
/// The CycloneDX version written and read.
pub const SPEC_VERSION: &str = "1.6";
const SCHEMA: &str = "http://cyclonedx.org/schema/bom-1.6.schema.json";
const BOM_FORMAT: &str = "CycloneDX";
/// The property naming the bundle entry a component's hash is of.
pub const ENTRY_PROPERTY: &str = "stoa:bundle:entry";

/// A CycloneDX BOM, the part of the schema this format writes. Reading is
/// lenient about fields it does not model (a later writer may add some);
/// [`check`] decides what must agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub bom_format: String,
    pub spec_version: String,
    pub serial_number: String,
    pub version: u32,
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Tools>,
    pub component: Component,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tools {
    #[serde(default)]
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// `application`, `container` or `file` here.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "bom-ref", default, skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_references: Vec<ExternalReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
    /// Nested components: a chart's vendored dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
}

impl Component {
    fn new(kind: &str, bom_ref: String, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            bom_ref: Some(bom_ref),
            name: name.into(),
            version: None,
            description: None,
            hashes: Vec::new(),
            purl: None,
            external_references: Vec::new(),
            properties: Vec::new(),
            components: Vec::new(),
        }
    }

    fn prop(mut self, name: &str, value: impl Into<String>) -> Self {
        self.properties.push(Property {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// The component for a bundle entry: its SHA-256 and the entry named.
    fn of_entry(self, path: &str, sha256: &Sha256Digest) -> Self {
        let mut c = self.prop(ENTRY_PROPERTY, path);
        c.hashes.push(Hash::sha256(sha256));
        c
    }

    /// The value of the first property `name`.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// The SHA-256 hash, when it has one.
    pub fn sha256(&self) -> Option<&str> {
        self.hashes
            .iter()
            .find(|h| h.alg == "SHA-256")
            .map(|h| h.content.as_str())
    }

    /// This component and every nested one, depth first.
    pub fn walk(&self) -> Vec<&Component> {
        let mut out = vec![self];
        for c in &self.components {
            out.extend(c.walk());
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hash {
    pub alg: String,
    pub content: String,
}

impl Hash {
    fn sha256(d: &Sha256Digest) -> Self {
        Self {
            alg: "SHA-256".into(),
            content: d.hex(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalReference {
    /// `attestation` or `bom` here.
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// A dependency vendored inside a chart archive (its `charts/` folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubChart {
    pub name: String,
    pub version: String,
    /// The path inside the chart archive (`stoa-api/charts/redis-1.2.3.tgz`).
    pub vendored_as: String,
    /// SHA-256 of the vendored `.tgz` (None for a vendored folder).
    pub sha256: Option<Sha256Digest>,
    /// The repository Chart.yaml names for it, when it names one.
    pub repository: Option<String>,
}

/// An upstream attestation an image carries (a BuildKit attestation
/// manifest in its index), referenced from the image's component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The attestation manifest's digest (a blob of the bundle).
    pub digest: Sha256Digest,
    /// The image manifest it is about.
    pub subject: Option<Sha256Digest>,
    /// Its in-toto predicate types (`https://spdx.dev/Document`, …).
    pub predicate_types: Vec<String>,
}

/// What the build knows beside the manifest.
#[derive(Debug, Clone, Default)]
pub struct SbomExtras {
    /// The tool that wrote the bundle: name and version.
    pub tool: Option<(String, String)>,
    /// Per chart record (`namespace/release`): its vendored dependencies.
    pub subcharts: BTreeMap<String, Vec<SubChart>>,
    /// Per image name: the attestations it carries.
    pub attestations: BTreeMap<String, Vec<Attestation>>,
}

/// The serial number: `urn:uuid:` and a name-based UUID (version-5 layout)
/// made of the SHA-256 of the release's name, version and `created` and of
/// every entry of the release but the SBOM (path and SHA-256, sorted by
/// path). A reader recomputes it from the manifest; a delta's omitted
/// entries count as the release's.
pub fn serial_number(m: &BundleManifest) -> String {
    let mut text = format!(
        "stoa-sbom-serial\n{}\n{}\n{}\n",
        m.release.name, m.release.version, m.release.created
    );
    let mut entries: Vec<&Entry> = m
        .release_entries()
        .filter(|e| e.path != SBOM_PATH)
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    for e in entries {
        text.push_str(&format!("{} {}\n", e.path, e.sha256.hex()));
    }
    let mut b = Sha256Digest::of(text.as_bytes()).0;
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(&b[..16]);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `pkg:oci/<name>@sha256%3A<hex>?repository_url=<repository>&tag=<tag>`
/// (purl-spec's `oci` type: the name is the last path component, the
/// version the manifest digest).
pub fn oci_purl(repository: &str, digest: &Sha256Digest, tag: Option<&str>) -> String {
    let name = repository.rsplit('/').next().unwrap_or(repository);
    let mut p = format!(
        "pkg:oci/{}@sha256%3A{}?repository_url={repository}",
        name.to_ascii_lowercase(),
        digest.hex()
    );
    if let Some(t) = tag {
        p.push_str("&tag=");
        p.push_str(t);
    }
    p
}

/// A `pkg:generic` purl (Helm charts have no purl type of their own).
fn generic_purl(name: &str, version: &str) -> String {
    format!("pkg:generic/{name}@{version}")
}

/// The bom-ref of the release component.
pub fn release_ref(m: &BundleManifest) -> String {
    format!("release:{}@{}", m.release.name, m.release.version)
}

/// The SBOM of `m` as its entry's exact bytes (pretty JSON, one trailing
/// newline). `m` is the manifest with every other entry in place.
pub fn generate(m: &BundleManifest, extras: &SbomExtras) -> Vec<u8> {
    let bom = document(m, extras);
    let mut v = serde_json::to_vec_pretty(&bom).unwrap_or_default();
    v.push(b'\n');
    v
}

/// The document [`generate`] writes.
pub fn document(m: &BundleManifest, extras: &SbomExtras) -> Bom {
    let sha_of = |path: &str| m.listed(path).map(|e| e.sha256);
    let mut components = Vec::new();
    let mut deps: Vec<Dependency> = Vec::new();
    for img in &m.images {
        let d = img.digest.digest();
        let repo = img.name.source_repository();
        // an `[[artifacts]]` item (a scanner's database, a policy bundle) is data
        let kind = if img.artifact_type.is_some() {
            "data"
        } else {
            "container"
        };
        let mut c = Component::new(kind, format!("image:{}", img.name), repo.clone())
            .of_entry(&blob_path(&d), &d)
            .prop("stoa:image:name", img.name.as_str())
            .prop("stoa:image:media-type", &img.media_type);
        if let Some(t) = &img.artifact_type {
            c = c.prop("stoa:artifact:type", t);
        }
        c.version = Some(img.name.tag().map_or_else(|| d.oci(), str::to_owned));
        c.purl = Some(oci_purl(&repo, &d, img.name.tag()));
        for p in &img.platforms {
            c = c.prop("stoa:image:platform", p);
        }
        if let Some(s) = &img.source {
            c = c.prop("stoa:image:source", s);
        }
        if let Some(s) = &img.source_digest {
            c = c.prop("stoa:image:source-digest", s.as_str());
        }
        for a in extras
            .attestations
            .get(img.name.as_str())
            .into_iter()
            .flatten()
        {
            let is_bom = a.predicate_types.iter().any(|t| {
                let t = t.to_ascii_lowercase();
                t.contains("spdx") || t.contains("cyclonedx")
            });
            let mut comment = format!(
                "upstream attestation manifest carried in the bundle ({})",
                blob_path(&a.digest)
            );
            if let Some(s) = &a.subject {
                comment.push_str(&format!(", about {}", s.oci()));
            }
            if !a.predicate_types.is_empty() {
                comment.push_str(&format!(", predicates {}", a.predicate_types.join(" ")));
            }
            c.external_references.push(ExternalReference {
                kind: if is_bom { "bom" } else { "attestation" }.into(),
                url: oci_purl(&repo, &a.digest, None),
                comment: Some(comment),
                hashes: vec![Hash::sha256(&a.digest)],
            });
        }
        components.push(c);
    }
    for ch in &m.charts {
        let key = format!("{}/{}", ch.namespace, ch.release);
        let bom_ref = format!("chart:{key}");
        let mut c = Component::new("application", bom_ref.clone(), &ch.name);
        if let Some(d) = sha_of(&ch.path) {
            c = c.of_entry(&ch.path, &d);
        }
        c.version = Some(ch.version.clone());
        c.purl = Some(generic_purl(&ch.name, &ch.version));
        c = c
            .prop("stoa:helm:release", &ch.release)
            .prop("stoa:helm:namespace", &ch.namespace);
        if let Some(v) = &ch.app_version {
            c = c.prop("stoa:chart:app-version", v);
        }
        if let Some(v) = &ch.kube_version {
            c = c.prop("stoa:chart:kube-version", v);
        }
        let mut on = Vec::new();
        let mut subs: Vec<&SubChart> = extras.subcharts.get(&key).into_iter().flatten().collect();
        subs.sort_by(|a, b| a.vendored_as.cmp(&b.vendored_as));
        for s in subs {
            let r = format!("{bom_ref}/{}", s.vendored_as);
            let mut sc = Component::new("application", r.clone(), &s.name)
                .prop("stoa:chart:vendored-as", &s.vendored_as);
            sc.version = Some(s.version.clone());
            sc.purl = Some(generic_purl(&s.name, &s.version));
            if let Some(d) = &s.sha256 {
                sc.hashes.push(Hash::sha256(d));
            }
            if let Some(repo) = &s.repository {
                sc = sc.prop("stoa:chart:repository", repo);
            }
            on.push(r);
            c.components.push(sc);
        }
        for v in &ch.values {
            let r = format!("values:{}", v.path);
            let mut vc = Component::new("file", r.clone(), &v.path)
                .of_entry(&v.path, &v.sha256)
                .prop("stoa:values:source", &v.source);
            vc.description = Some(format!("vendor values file of Helm release {key}"));
            on.push(r);
            components.push(vc);
        }
        if !on.is_empty() {
            on.sort();
            deps.push(Dependency {
                reference: bom_ref,
                depends_on: on,
            });
        }
        components.push(c);
    }
    for set in &m.migrations {
        for s in &set.steps {
            let steps = std::iter::once(("up", &s.up)).chain(s.down.as_ref().map(|d| ("down", d)));
            for (dir, path) in steps {
                let mut c = Component::new("file", format!("migration:{path}"), path.as_str());
                if let Some(d) = sha_of(path) {
                    c = c.of_entry(path, &d);
                }
                c.version = Some(s.id.to_string());
                components.push(
                    c.prop("stoa:migration:database", &set.database)
                        .prop("stoa:migration:id", s.id.as_str())
                        .prop("stoa:migration:name", &s.name)
                        .prop("stoa:migration:direction", dir),
                );
            }
        }
    }
    for f in &m.files {
        let mut c = Component::new("file", format!("file:{}", f.dest), f.dest.as_str());
        if let Some(d) = sha_of(&f.path) {
            c = c.of_entry(&f.path, &d);
        }
        components.push(c.prop("stoa:file:mode", f.mode.as_str()));
    }
    // the tools the bundle carries (`[[tools]]`: stoa-updater, helm, kubectl)
    for t in &m.tools {
        let mut c = Component::new(
            "application",
            format!("tool:{}:{}", t.platform, t.name),
            t.name.as_str(),
        );
        c.version = Some(t.version.to_string());
        if let Some(d) = sha_of(&t.path) {
            c = c.of_entry(&t.path, &d);
        }
        components.push(c.prop("stoa:tool:platform", &t.platform));
    }
    components.sort_by(|a, b| a.bom_ref.cmp(&b.bom_ref));
    let root = release_ref(m);
    let mut top: Vec<String> = components
        .iter()
        .filter_map(|c| c.bom_ref.clone())
        .collect();
    top.sort();
    deps.push(Dependency {
        reference: root.clone(),
        depends_on: top,
    });
    deps.sort_by(|a, b| a.reference.cmp(&b.reference));
    let mut release = Component::new("application", root, &m.release.name);
    release.version = Some(m.release.version.to_string());
    release.description = Some("a STOA release, as one signed offline bundle".into());
    if let Some(u) = &m.release.upgrade_from {
        release = release.prop("stoa:release:upgrade-from", u);
    }
    if let Some(e) = &m.release.expires {
        release = release.prop("stoa:release:expires", e.to_string());
    }
    Bom {
        schema: Some(SCHEMA.into()),
        bom_format: BOM_FORMAT.into(),
        spec_version: SPEC_VERSION.into(),
        serial_number: serial_number(m),
        version: 1,
        metadata: Metadata {
            timestamp: m.release.created.to_string(),
            tools: extras.tool.as_ref().map(|(name, version)| Tools {
                components: vec![{
                    let mut t = Component::new("application", format!("tool:{name}"), name);
                    t.bom_ref = None;
                    t.version = Some(version.clone());
                    t
                }],
            }),
            component: release,
        },
        components,
        dependencies: deps,
    }
}

/// Parses SBOM bytes (any CycloneDX 1.6 JSON document this format wrote).
pub fn parse(bytes: &[u8]) -> Result<Bom, String> {
    let bom: Bom =
        serde_json::from_slice(bytes).map_err(|e| format!("not a CycloneDX JSON document: {e}"))?;
    if bom.bom_format != BOM_FORMAT {
        return Err(format!(
            "bomFormat is {:?}, not {BOM_FORMAT:?}",
            bom.bom_format
        ));
    }
    if bom.spec_version != SPEC_VERSION {
        return Err(format!(
            "specVersion is {:?}, this reader reads {SPEC_VERSION:?}",
            bom.spec_version
        ));
    }
    Ok(bom)
}

/// The reader's rule on the SBOM entry's bytes (see the module comment).
pub fn check(bytes: &[u8], m: &BundleManifest) -> Result<Bom, FormatError> {
    let err = |message: String| FormatError::Sbom {
        path: SBOM_PATH.into(),
        message,
    };
    let bom = parse(bytes).map_err(err)?;
    let serial = serial_number(m);
    if bom.serial_number != serial {
        return Err(err(format!(
            "serialNumber is {:?}, the release's is {serial:?} (an SBOM of another release or content)",
            bom.serial_number
        )));
    }
    let c = &bom.metadata.component;
    let version = m.release.version.to_string();
    if c.name != m.release.name || c.version.as_deref() != Some(version.as_str()) {
        return Err(err(format!(
            "metadata.component is {} {}, the manifest's release is {} {version}",
            c.name,
            c.version.as_deref().unwrap_or("(no version)"),
            m.release.name
        )));
    }
    if bom.metadata.timestamp != m.release.created.to_string() {
        return Err(err(format!(
            "metadata.timestamp is {:?}, the release was created {}",
            bom.metadata.timestamp, m.release.created
        )));
    }
    let mut named = BTreeSet::new();
    for c in bom.components.iter().flat_map(Component::walk) {
        let Some(path) = c.property(ENTRY_PROPERTY) else {
            continue;
        };
        let Some(e) = m.listed(path) else {
            return Err(err(format!(
                "component {:?} names entry {path:?}, which the manifest does not list",
                c.name
            )));
        };
        if c.sha256() != Some(e.sha256.hex().as_str()) {
            return Err(err(format!(
                "component {:?} gives entry {path:?} SHA-256 {}, the manifest {}",
                c.name,
                c.sha256().unwrap_or("(none)"),
                e.sha256
            )));
        }
        named.insert(path.to_owned());
    }
    if let Some(missing) = record_entries(m).into_iter().find(|p| !named.contains(p)) {
        return Err(err(format!(
            "no component for entry {missing:?}, which the manifest lists"
        )));
    }
    Ok(bom)
}

/// Every entry a record of the manifest names (image manifests, charts,
/// values, migrations, files): what the SBOM must account for.
fn record_entries(m: &BundleManifest) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = m
        .images
        .iter()
        .map(|i| blob_path(&i.digest.digest()))
        .collect();
    for c in &m.charts {
        out.insert(c.path.clone());
        out.extend(c.values.iter().map(|v| v.path.clone()));
    }
    out.extend(m.migration_entries().into_iter().map(str::to_owned));
    out.extend(m.files.iter().map(|f| f.path.clone()));
    out
}

#[cfg(test)]
#[path = "sbom_tests.rs"]
mod tests;
