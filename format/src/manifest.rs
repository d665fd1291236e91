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
use crate::error::FormatError;
use crate::fields::{FileMode, MigrationId, OciDigest, Timestamp};
use crate::limits::Limits;
use crate::names::{
    check_chart_version, check_helm_release, check_migration_name, check_namespace, ImageRef,
};
use crate::paths::check_entry_path;
use crate::{FORMAT_NAME, FORMAT_VERSION, MANIFEST_PATH, SIGNATURES_DIR};

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
    /// Every content entry, in stream order (sorted by path).
    pub entries: Vec<Entry>,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartRecord {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// The Helm release name on site.
    pub release: String,
    pub namespace: String,
    /// The `.tgz` entry.
    pub path: String,
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
        if v > FORMAT_VERSION {
            return Err(FormatError::UnsupportedFormatVersion {
                found: v,
                supported: FORMAT_VERSION,
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

    /// The entry at `path`, if listed.
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
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

    /// Sum of all content entry sizes.
    pub fn content_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Parsed expiry time, if any.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.release.expires.as_ref().map(Timestamp::time)
    }

    /// Every structural rule a reader relies on. See docs/FORMAT.md.
    pub fn validate(&self, limits: &Limits) -> Result<(), FormatError> {
        let bad = |m: String| Err(FormatError::InvalidManifest(m));
        if self.format != FORMAT_NAME {
            return Err(FormatError::WrongFormat {
                found: self.format.clone(),
            });
        }
        if self.format_version == 0 || self.format_version > FORMAT_VERSION {
            return Err(FormatError::UnsupportedFormatVersion {
                found: self.format_version,
                supported: FORMAT_VERSION,
            });
        }
        crate::names::ReleaseName::parse(&self.release.name)
            .map_err(|e| FormatError::InvalidManifest(format!("release.name {e}")))?;
        if let Some(req) = &self.release.upgrade_from {
            if let Err(e) = semver::VersionReq::parse(req) {
                return bad(format!("release.upgrade_from {req:?}: {e}"));
            }
        }

        // entries: safe, sorted, unique, bounded
        if self.entries.len() > limits.max_entries {
            return bad(format!(
                "{} entries is over the limit of {}",
                self.entries.len(),
                limits.max_entries
            ));
        }
        let mut total: u64 = 0;
        for (i, e) in self.entries.iter().enumerate() {
            check_entry_path(&e.path, limits.max_path_len)?;
            if e.path == MANIFEST_PATH || e.path.starts_with(SIGNATURES_DIR) {
                return bad(format!("entry {:?} uses a reserved name", e.path));
            }
            if i > 0 {
                let prev = &self.entries[i - 1].path;
                if prev == &e.path {
                    return Err(FormatError::DuplicateEntry {
                        path: e.path.clone(),
                    });
                }
                if prev.as_str() > e.path.as_str() {
                    return bad(format!(
                        "entries are not sorted by path ({:?} before {:?})",
                        prev, e.path
                    ));
                }
            }
            if e.size > limits.max_entry_size {
                return Err(FormatError::EntryTooLarge {
                    path: e.path.clone(),
                    size: e.size,
                    limit: limits.max_entry_size,
                });
            }
            total = total.saturating_add(e.size);
        }
        if total > limits.max_total_size {
            return bad(format!(
                "content totals {total} bytes, over the limit of {}",
                limits.max_total_size
            ));
        }
        let need = |what: &str, path: &str| -> Result<(), FormatError> {
            if self.entry(path).is_none() {
                return bad(format!("{what} refers to {path:?}, which is not an entry"));
            }
            Ok(())
        };

        // every OCI blob entry must be named by its digest
        for e in &self.entries {
            if let Some(hex) = e.path.strip_prefix(OCI_BLOBS_PREFIX) {
                if hex != e.sha256.hex() {
                    return bad(format!("blob entry {:?} has sha256 {}", e.path, e.sha256));
                }
            }
        }

        let mut names = BTreeSet::new();
        for img in &self.images {
            if !names.insert(img.name.as_str()) {
                return bad(format!("image {:?} is listed twice", img.name));
            }
            need(
                &format!("image {:?}", img.name),
                &blob_path(&img.digest.digest()),
            )?;
            need(&format!("image {:?}", img.name), OCI_INDEX_PATH)?;
            need(&format!("image {:?}", img.name), OCI_LAYOUT_PATH)?;
        }

        let mut releases = BTreeSet::new();
        for c in &self.charts {
            check_name("chart name", &c.name)?;
            check_chart_version(&c.version).or_else(|m| bad(format!("chart {:?}: {m}", c.name)))?;
            check_helm_release(&c.release).or_else(|m| bad(format!("chart release {m}")))?;
            check_namespace(&c.namespace).or_else(|m| bad(format!("chart namespace {m}")))?;
            if !releases.insert((c.namespace.as_str(), c.release.as_str())) {
                return bad(format!(
                    "Helm release {}/{} is listed twice",
                    c.namespace, c.release
                ));
            }
            need(&format!("chart {:?}", c.name), &c.path)?;
        }

        let mut dbs = BTreeSet::new();
        for set in &self.migrations {
            check_name("migrations database", &set.database)?;
            if !dbs.insert(set.database.as_str()) {
                return bad(format!(
                    "migrations for database {:?} are listed twice",
                    set.database
                ));
            }
            let mut last: Option<u64> = None;
            for s in &set.steps {
                check_migration_name(&s.name)
                    .or_else(|m| bad(format!("{m} (migration {})", s.id)))?;
                let n = s.id.number();
                if last.is_some_and(|l| l >= n) {
                    return bad(format!(
                        "migration ids in {:?} are not strictly increasing at {}",
                        set.database, s.id
                    ));
                }
                last = Some(n);
                need(&format!("migration {}", s.id), &s.up)?;
                if let Some(d) = &s.down {
                    need(&format!("migration {} (down)", s.id), d)?;
                }
            }
        }

        let mut dests = BTreeSet::new();
        for f in &self.files {
            check_entry_path(&f.dest, limits.max_path_len)?;
            if !dests.insert(f.dest.as_str()) {
                return bad(format!("file destination {:?} is listed twice", f.dest));
            }
            need(&format!("file {:?}", f.dest), &f.path)?;
        }
        Ok(())
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
                _ => "other",
            };
            *m.entry(kind).or_insert(0) += e.size;
        }
        m
    }
}

/// Parses an RFC 3339 time (as used by `created` and `expires`).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

/// Formats a time as RFC 3339 UTC, seconds precision.
pub fn format_rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses an octal permission string (`0644`, `755`); no setuid, setgid or
/// sticky bits.
pub fn parse_mode(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let m = u32::from_str_radix(s, 8).ok()?;
    (m <= 0o777).then_some(m)
}

/// Names used as Helm releases, namespaces, database and release names: DNS-label-like.
fn check_name(what: &str, s: &str) -> Result<(), FormatError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(FormatError::InvalidManifest(format!(
            "{what} {s:?} must be 1-63 of a-z 0-9 - _ . starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            }],
            charts: vec![],
            migrations: vec![],
            files: vec![],
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
        v["format_version"] = 2.into();
        v["something_new"] = true.into();
        let e = BundleManifest::from_bytes(&serde_json::to_vec(&v).unwrap(), &Limits::default())
            .unwrap_err();
        assert!(
            matches!(e, FormatError::UnsupportedFormatVersion { found: 2, .. }),
            "{e}"
        );
    }

    #[test]
    fn unsorted_and_duplicate_entries_are_refused() {
        let mut m = sample();
        m.entries.swap(0, 1);
        assert!(m.validate(&Limits::default()).is_err());
        let mut m = sample();
        m.entries.insert(1, m.entries[0].clone());
        assert!(matches!(
            m.validate(&Limits::default()),
            Err(FormatError::DuplicateEntry { .. })
        ));
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

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0755"), Some(0o755));
        assert_eq!(parse_mode("644"), Some(0o644));
        for bad in ["", "4755", "0788", "12345", "rwx"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
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
