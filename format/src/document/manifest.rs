//! The signed bundle manifest (`manifest.json`): release metadata, what the
//! bundle carries, and every content entry with its size and SHA-256.
//!
//! The manifest is the root of trust: signatures cover its exact bytes, and
//! the reader accepts no content entry it does not list. Unknown fields are
//! errors; a newer `format_version` is refused before anything else is read.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::document::limits::Limits;
use crate::error::FormatError;
use crate::fields::{FileMode, MigrationId, OciDigest, Timestamp};
use crate::names::ImageRef;

use super::{DELTA_FORMAT_VERSION, FORMAT_NAME};

pub use super::tools::ToolRecord;

pub use super::limits::MAX_DELTA_CHAIN;

/// Paths of the OCI image layout inside a bundle.
pub const OCI_DIR: &str = "oci";
pub const OCI_LAYOUT_PATH: &str = "oci/oci-layout";
pub const OCI_INDEX_PATH: &str = "oci/index.json";
pub const OCI_BLOBS_PREFIX: &str = "oci/blobs/sha256/";

/// The bundle path of an OCI blob.
pub fn blob_path(digest: &Sha256Digest) -> String {
    format!("{OCI_BLOBS_PREFIX}{}", digest.hex())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    /// Always `stoa-bundle`.
    pub format: String,
    /// The format version; see docs/FORMAT.md.
    pub format_version: u32,
    pub release: Release,
    #[serde(default)]
    pub images: Vec<ImageRecord>,
    #[serde(default)]
    pub charts: Vec<ChartRecord>,
    #[serde(default)]
    pub migrations: Vec<MigrationSet>,
    #[serde(default)]
    pub files: Vec<FileRecord>,
    /// The entry holding the release's CycloneDX SBOM: always
    /// [`crate::sbom::SBOM_PATH`] (docs/FORMAT.md, "The SBOM"). Absent in
    /// bundles built without one, whose bytes are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<String>,
    /// Tool binaries carried as signed entries (`tools/<os>/<arch>/<name>`,
    /// docs/FORMAT.md "tools"); absent when none, so such manifests are
    /// unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolRecord>,
    /// The upstream image signers whose signatures the bundle carries
    /// (docs/FORMAT.md, *Upstream signatures*); absent when none, so
    /// unsigned bundles are unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signers: Vec<SignerRecord>,
    /// Only in a delta bundle (format version 2): the release it was built
    /// against and the entries it relies on without carrying them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    /// Every content entry the bundle carries, in stream order (sorted by
    /// path).
    pub entries: Vec<Entry>,
}

/// The delta section of a manifest (docs/FORMAT.md, "Delta bundles").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// The release this delta was built against first, then that release's
    /// own base when it was a delta too, and so on: the chain a site must
    /// have held for every omitted entry.
    pub bases: Vec<BaseRelease>,
    /// Entries the release has but this bundle does not carry (their bytes
    /// are on site from a base), sorted by path; each with its size and
    /// SHA-256, which the site re-checks in its store.
    pub omitted: Vec<Entry>,
}

/// A release a delta was built against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseRelease {
    pub name: String,
    pub version: semver::Version,
    /// SHA-256 of that release's signed `manifest.json` bytes.
    pub manifest_sha256: Sha256Digest,
}

impl std::fmt::Display for BaseRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (manifest sha256:{})",
            self.name, self.version, self.manifest_sha256
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub name: String,
    pub version: semver::Version,
    /// A semver requirement on the installed version, e.g. `>=2.1.0, <2.3.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_from: Option<String>,
    /// RFC 3339 UTC, from SOURCE_DATE_EPOCH when set.
    pub created: Timestamp,
    /// RFC 3339 UTC; after this instant readers refuse the bundle unless told
    /// to accept an expired one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    /// The image's full name, also its `org.opencontainers.image.ref.name`
    /// in `oci/index.json`: a valid OCI distribution reference.
    pub name: ImageRef,
    /// Digest of the manifest or index the name points at (`sha256:…`).
    pub digest: OciDigest,
    pub media_type: String,
    /// `os/arch[/variant]` of each platform manifest carried.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Bytes of every blob this image needs (manifests, configs, layers).
    pub size: u64,
    /// Where the release engineer took it from (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The source index digest when the index was filtered by platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<OciDigest>,
    /// Only for an `[[artifacts]]` item (a non-image OCI artifact: a
    /// scanner's database, a policy bundle): its artifact type, the
    /// manifest's `artifactType` or else its config's media type. No
    /// platforms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The upstream signatures verified at build and carried with the
    /// image (its `sha256-<hex>.sig` manifest); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureRecord>,
}

/// An upstream signer of a bundle: its name in the release manifest, its
/// key id and the entry holding its public key (`signers/<name>.pub`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerRecord {
    pub name: String,
    pub key_id: crate::keys::KeyId,
    /// The SPKI PEM public key entry.
    pub path: String,
}

/// The entry path of a signer's public key.
pub fn signer_key_path(name: &str) -> String {
    format!("{SIGNERS_DIR}{name}.pub")
}

/// The folder of signer key entries.
pub const SIGNERS_DIR: &str = "signers/";

/// One verified upstream signature of an image: a layer of its cosign
/// `.sig` manifest whose simple-signing payload names the image's digest
/// and name, signed by `signer`'s key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRecord {
    /// A [`SignerRecord`]'s name.
    pub signer: String,
    pub key_id: crate::keys::KeyId,
    /// The `.sig` manifest's digest (a blob entry), pushed on site under
    /// the tag `sha256-<image digest hex>.sig`.
    pub manifest: OciDigest,
    /// The `.sig` manifest's media type.
    pub media_type: String,
    /// The payload layer that verified (a blob entry).
    pub payload: OciDigest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartRecord {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// Chart.yaml's `kubeVersion` as written (a Helm constraint on the
    /// Kubernetes server, e.g. `>=1.29.0-0`); the site's preflight checks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<String>,
    /// The Helm release name on site.
    pub release: String,
    pub namespace: String,
    /// The `.tgz` entry.
    pub path: String,
    /// The vendor's values files for this release, in the order Helm gets
    /// them (`-f` each, then the site's own file last, so the site wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<ValuesRecord>,
}

/// A vendor values file carried for one chart record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValuesRecord {
    /// The file as written in the release manifest (informational).
    pub source: String,
    /// The entry holding it: `values/<namespace>/<release>/<n>-<file name>`.
    pub path: String,
    /// Its SHA-256; equal to the entry's (checked by `validate`).
    pub sha256: Sha256Digest,
}

/// The entry path of the `index`-th values file of a Helm release.
pub fn values_entry_path(namespace: &str, release: &str, index: usize, file_name: &str) -> String {
    format!("values/{namespace}/{release}/{index:02}-{file_name}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSet {
    /// Logical database name; the site maps it to a PostgreSQL URL.
    pub database: String,
    pub steps: Vec<MigrationStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationStep {
    /// The numeric prefix, as written (`0001`).
    pub id: MigrationId,
    pub name: String,
    /// The up step's entry.
    pub up: String,
    /// The down step's entry, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Relative destination on site.
    pub dest: String,
    /// Octal permission bits, e.g. `0755`.
    pub mode: FileMode,
    /// The content entry.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

#[derive(Deserialize)]
struct VersionProbe {
    format: Option<String>,
    format_version: Option<u32>,
}

impl BundleManifest {
    /// The exact bytes that are written and signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses and validates manifest bytes. The format and its version are
    /// checked first, so that a newer bundle gets a clear message rather than
    /// an unknown-field error.
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, FormatError> {
        Self::from_bytes_up_to(bytes, limits, DELTA_FORMAT_VERSION)
    }

    /// [`Self::from_bytes`] for a reader that knows format versions up to
    /// `supported` (a version-1 reader is what an old updater runs).
    fn from_bytes_up_to(
        bytes: &[u8],
        limits: &Limits,
        supported: u32,
    ) -> Result<Self, FormatError> {
        let probe: VersionProbe =
            serde_json::from_slice(bytes).map_err(FormatError::ParseManifest)?;
        match probe.format.as_deref() {
            Some(FORMAT_NAME) => {}
            other => {
                return Err(FormatError::WrongFormat {
                    found: other.unwrap_or("").to_owned(),
                })
            }
        }
        let v = probe.format_version.unwrap_or(0);
        if v > supported {
            return Err(FormatError::UnsupportedFormatVersion {
                found: v,
                supported,
            });
        }
        if v == 0 {
            return Err(FormatError::InvalidManifest(
                "format_version must be 1 or more".into(),
            ));
        }
        let m: Self = serde_json::from_slice(bytes).map_err(FormatError::ParseManifest)?;
        m.validate(limits)?;
        Ok(m)
    }

    /// The entry at `path`, if the bundle carries it.
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        find(&self.entries, path)
    }

    /// The entry at `path` of the release: carried, or (in a delta)
    /// omitted and expected in the site's store. What a site uses to find
    /// staged content by path.
    pub fn listed(&self, path: &str) -> Option<&Entry> {
        self.entry(path).or_else(|| find(self.omitted(), path))
    }

    /// The entries a delta relies on without carrying (empty for a full
    /// bundle).
    pub fn omitted(&self) -> &[Entry] {
        self.delta.as_ref().map_or(&[], |d| &d.omitted)
    }

    /// Every entry of the release, carried or omitted.
    pub fn release_entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().chain(self.omitted())
    }

    /// The release this delta was built against (None for a full bundle).
    pub fn base(&self) -> Option<&BaseRelease> {
        self.delta.as_ref().and_then(|d| d.bases.first())
    }

    /// Every entry a migration step (up or down) runs: these hold SQL that
    /// must pass [`crate::sql`]'s rule.
    pub fn migration_entries(&self) -> BTreeSet<&str> {
        self.migrations
            .iter()
            .flat_map(|s| &s.steps)
            .flat_map(|s| std::iter::once(s.up.as_str()).chain(s.down.as_deref()))
            .collect()
    }

    /// The entries a reader needs to re-verify the carried upstream
    /// signatures (each signature's `.sig` manifest and payload, each
    /// signer's key): small, kept whole while they stream, and never
    /// omitted by a delta.
    pub fn signature_material(&self) -> BTreeSet<String> {
        let mut v: BTreeSet<String> = self.signers.iter().map(|s| s.path.clone()).collect();
        for sig in self.images.iter().flat_map(|i| &i.signatures) {
            v.insert(blob_path(&sig.manifest.digest()));
            v.insert(blob_path(&sig.payload.digest()));
        }
        v
    }

    /// Sum of all content entry sizes (saturating: sizes come from a
    /// manifest that may not be checked yet; validation bounds them).
    pub fn content_size(&self) -> u64 {
        self.entries
            .iter()
            .fold(0u64, |a, e| a.saturating_add(e.size))
    }

    /// Parsed expiry time, if any.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.release.expires.as_ref().map(Timestamp::time)
    }

    /// Per-image blob sets are not in the manifest; this summarises sizes by
    /// kind of content, for `inspect`.
    pub fn sizes_by_kind(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for e in &self.entries {
            let kind = match e.path.split('/').next() {
                Some("oci") => "images",
                Some("charts") => "charts",
                Some("migrations") => "migrations",
                Some("files") => "files",
                Some("values") => "values",
                Some(super::sbom::SBOM_PATH) => "sbom",
                Some("tools") => "tools",
                Some("signers") => "signers",
                _ => "other",
            };
            let v = m.entry(kind).or_insert(0u64);
            *v = v.saturating_add(e.size);
        }
        m
    }
}

fn find<'a>(entries: &'a [Entry], path: &str) -> Option<&'a Entry> {
    entries
        .binary_search_by(|e| e.path.as_str().cmp(path))
        .ok()
        .map(|i| &entries[i])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::document::FORMAT_VERSION;
    use proptest::prelude::*;

    pub(crate) fn sample() -> BundleManifest {
        let blob = b"layer";
        let d = Sha256Digest::of(blob);
        BundleManifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            release: Release {
                name: "stoa-platform".into(),
                version: semver::Version::new(2, 3, 0),
                upgrade_from: Some(">=2.1.0, <2.3.0".into()),
                created: "2026-01-01T00:00:00Z".parse().unwrap(),
                expires: None,
            },
            images: vec![ImageRecord {
                name: ImageRef::parse("registry.gostoa.dev/stoa/api:2.3.0").unwrap(),
                digest: d.into(),
                media_type: crate::oci::MT_OCI_MANIFEST.into(),
                platforms: vec!["linux/amd64".into()],
                size: 5,
                source: None,
                source_digest: None,
                artifact_type: None,
                signatures: vec![],
            }],
            charts: vec![],
            migrations: vec![],
            files: vec![],
            sbom: None,
            tools: vec![],
            signers: vec![],
            delta: None,
            entries: vec![
                Entry {
                    path: blob_path(&d),
                    size: 5,
                    sha256: d,
                },
                Entry {
                    path: OCI_INDEX_PATH.into(),
                    size: 1,
                    sha256: Sha256Digest::of(b"i"),
                },
                Entry {
                    path: OCI_LAYOUT_PATH.into(),
                    size: 1,
                    sha256: Sha256Digest::of(b"l"),
                },
            ],
        }
    }

    #[test]
    fn roundtrip_is_byte_stable() {
        let m = sample();
        let b = m.to_bytes();
        let back = BundleManifest::from_bytes(&b, &Limits::default()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes(), b);
    }

    #[test]
    fn unknown_field_is_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_bytes()).unwrap();
        v["release"]["surprise"] = 1.into();
        let e = BundleManifest::from_bytes(&serde_json::to_vec(&v).unwrap(), &Limits::default())
            .unwrap_err();
        assert!(e.to_string().contains("surprise"), "{e}");
    }

    #[test]
    fn newer_format_version_is_refused_clearly() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_bytes()).unwrap();
        v["format_version"] = 3.into();
        v["something_new"] = true.into();
        let e = BundleManifest::from_bytes(&serde_json::to_vec(&v).unwrap(), &Limits::default())
            .unwrap_err();
        assert!(
            matches!(e, FormatError::UnsupportedFormatVersion { found: 3, .. }),
            "{e}"
        );
    }

    /// The sample as a delta on 2.1.0: the image's blob is omitted.
    pub(crate) fn sample_delta() -> BundleManifest {
        let mut m = sample();
        let blob = m.entries.remove(0);
        m.format_version = DELTA_FORMAT_VERSION;
        m.delta = Some(Delta {
            bases: vec![BaseRelease {
                name: "stoa-platform".into(),
                version: semver::Version::new(2, 1, 0),
                manifest_sha256: Sha256Digest::of(b"base manifest"),
            }],
            omitted: vec![blob],
        });
        m
    }

    #[test]
    fn delta_roundtrips_and_finds_omitted_entries() {
        let m = sample_delta();
        let b = m.to_bytes();
        let back = BundleManifest::from_bytes(&b, &Limits::default()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes(), b);
        let blob = &m.omitted()[0];
        assert!(m.entry(&blob.path).is_none());
        assert_eq!(m.listed(&blob.path), Some(blob));
        assert_eq!(m.release_entries().count(), 3);
        assert_eq!(m.base().unwrap().version, semver::Version::new(2, 1, 0));
        // a full bundle's bytes do not change: no delta key, version 1
        let full = String::from_utf8(sample().to_bytes()).unwrap();
        assert!(!full.contains("delta") && full.contains("\"format_version\": 1,"));
    }

    /// What an updater of format version 1 (every release before deltas)
    /// does with a delta: it refuses on the version, before reading fields.
    #[test]
    fn old_format_reader_refuses_a_delta() {
        let b = sample_delta().to_bytes();
        let e =
            BundleManifest::from_bytes_up_to(&b, &Limits::default(), FORMAT_VERSION).unwrap_err();
        assert!(
            matches!(
                e,
                FormatError::UnsupportedFormatVersion {
                    found: 2,
                    supported: 1
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "parse manifest: format version 2 is newer than this tool reads (up to 1); use a newer stoa-updater"
        );
        // and a delta section under version 1 (a hand-edited manifest) is refused too
        let mut m = sample_delta();
        m.format_version = FORMAT_VERSION;
        let e = BundleManifest::from_bytes(&m.to_bytes(), &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("format_version 2"), "{e}");
        let mut m = sample();
        m.format_version = DELTA_FORMAT_VERSION;
        let e = BundleManifest::from_bytes(&m.to_bytes(), &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("no \"delta\" section"), "{e}");
    }

    #[test]
    fn a_bad_digest_mode_or_migration_id_fails_at_parse_naming_the_field() {
        let good: serde_json::Value = serde_json::from_slice(&sample().to_bytes()).unwrap();
        let mut v = good.clone();
        v["images"][0]["digest"] = "sha256:XYZ".into();
        let e = BundleManifest::from_bytes(&serde_json::to_vec(&v).unwrap(), &Limits::default())
            .unwrap_err();
        assert!(e.to_string().contains("digest"), "{e}");
        let mut v = good.clone();
        v["release"]["created"] = "yesterday".into();
        let e = BundleManifest::from_bytes(&serde_json::to_vec(&v).unwrap(), &Limits::default())
            .unwrap_err();
        assert!(e.to_string().contains("time"), "{e}");
        let e =
            serde_json::from_str::<FileRecord>(r#"{"dest":"a","mode":"4755","path":"files/a"}"#)
                .unwrap_err();
        assert!(e.to_string().contains("mode"), "{e}");
        let e = serde_json::from_str::<MigrationStep>(r#"{"id":"1a","name":"x","up":"u"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("migration id"), "{e}");
    }

    fn arb_path() -> impl Strategy<Value = String> {
        proptest::collection::vec("[a-z0-9_.+-]{1,12}", 1..4).prop_map(|v| v.join("/"))
    }

    proptest! {
        // Any manifest this library accepts serialises back to the same bytes,
        // and parsing never panics on arbitrary input.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = BundleManifest::from_bytes(&bytes, &Limits::default());
        }

        #[test]
        fn entries_roundtrip(paths in proptest::collection::btree_set(arb_path(), 0..20), size in 0u64..(1 << 36)) {
            let mut m = sample();
            m.images.clear();
            m.entries = paths.iter()
                .filter(|p| !p.split('/').any(|c| c == "." || c == ".."))
                .filter(|p| !p.starts_with("oci/blobs/sha256/"))
                .map(|p| Entry { path: p.clone(), size, sha256: Sha256Digest::of(p.as_bytes()) })
                .collect();
            let b = m.to_bytes();
            let back = BundleManifest::from_bytes(&b, &Limits::default()).unwrap();
            prop_assert_eq!(back.to_bytes(), b);
        }

        #[test]
        fn mutated_manifest_never_panics(idx in 0usize..4096, byte in any::<u8>()) {
            let mut b = sample().to_bytes();
            let i = idx % b.len();
            b[i] = byte;
            let _ = BundleManifest::from_bytes(&b, &Limits::default());
        }
    }
}
