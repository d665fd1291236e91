//! The manifest's structural rules ([`BundleManifest::validate`], docs/FORMAT.md
//! "manifest.json"): entries safe, sorted, unique and bounded; every record
//! names an entry the release has; blob entries named by their digest; no two
//! images on one site tag; names, versions and migration ids well formed; a
//! delta's bases and omitted entries as strict as carried ones; tool
//! records as `tools::check_tools` says. The writer and the reader both run
//! it, so no bundle that breaks a rule is written or read.

use std::collections::{BTreeMap, BTreeSet};

use super::limits::{
    Limits, MAX_DELTA_CHAIN, MAX_IMAGE_SIGNATURES, MAX_SIGNATURE_MANIFEST, MAX_SIGNATURE_PAYLOAD,
    MAX_SIGNER_KEY,
};
use super::manifest::{
    blob_path, signer_key_path, BundleManifest, Delta, ImageRecord, OCI_BLOBS_PREFIX,
    OCI_INDEX_PATH, OCI_LAYOUT_PATH, SIGNERS_DIR,
};
use super::names::{
    check_chart_version, check_helm_release, check_migration_name, check_namespace,
};
use super::paths::check_entry_path;
use super::sbom::{MAX_SBOM_SIZE, SBOM_PATH};
use super::{
    ANCHORS_DIR, DELTA_FORMAT_VERSION, FORMAT_NAME, FORMAT_VERSION, MANIFEST_PATH, SIGNATURES_DIR,
};
use crate::error::FormatError;

impl BundleManifest {
    /// Every structural rule a reader relies on. See docs/FORMAT.md.
    pub fn validate(&self, limits: &Limits) -> Result<(), FormatError> {
        let bad = |m: String| Err(FormatError::InvalidManifest(m));
        if self.format != FORMAT_NAME {
            return Err(FormatError::WrongFormat {
                found: self.format.clone(),
            });
        }
        if self.format_version == 0 || self.format_version > DELTA_FORMAT_VERSION {
            return Err(FormatError::UnsupportedFormatVersion {
                found: self.format_version,
                supported: DELTA_FORMAT_VERSION,
            });
        }
        match (&self.delta, self.format_version) {
            (Some(_), DELTA_FORMAT_VERSION) | (None, FORMAT_VERSION) => {}
            (Some(_), v) => {
                return bad(format!(
                    "a delta (with a \"delta\" section) has format_version {DELTA_FORMAT_VERSION}, not {v}"
                ))
            }
            (None, v) => {
                return bad(format!(
                    "format_version {v} is for a delta, and the manifest has no \"delta\" section"
                ))
            }
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
            entry_within_limit(&e.path, e.size, limits)?;
            total = total.saturating_add(e.size);
        }
        if total > limits.max_total_size {
            return bad(format!(
                "content totals {total} bytes, over the limit of {}",
                limits.max_total_size
            ));
        }
        let need = |what: &str, path: &str| -> Result<(), FormatError> {
            if self.listed(path).is_none() {
                return bad(format!("{what} refers to {path:?}, which is not an entry"));
            }
            Ok(())
        };

        if let Some(d) = &self.delta {
            self.validate_delta(d, limits)?;
        }

        // every OCI blob entry must be named by its digest
        for e in self.release_entries() {
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
            if let Some(t) = &img.artifact_type {
                if !crate::oci::valid_media_type(t) {
                    return bad(format!(
                        "artifact {:?}: artifact_type {:?} is not a media type (type/subtype)",
                        img.name,
                        crate::text::escape(t)
                    ));
                }
                if !img.platforms.is_empty() {
                    return bad(format!(
                        "artifact {:?} lists platforms; an artifact has none",
                        img.name
                    ));
                }
            }
        }

        // The site registry keeps an image under `<prefix>/<path>` with no
        // source host (docs/OPERATIONS.md), so two images from different
        // registries with the same path and tag would land on one site tag
        // and one chart would run the other's image: refused unless they
        // are the same image.
        let mut site_names: BTreeMap<(&str, Option<&str>), &ImageRecord> = BTreeMap::new();
        for img in &self.images {
            let key = (img.name.path(), img.name.tag());
            if let Some(other) = site_names.insert(key, img) {
                if other.digest != img.digest {
                    return bad(format!(
                        "images {:?} and {:?} would both be {}{} in the site registry \
                         (the site keeps the path and tag, not the source registry), \
                         with different digests",
                        other.name.as_str(),
                        img.name.as_str(),
                        img.name.path(),
                        img.name.tag().map(|t| format!(":{t}")).unwrap_or_default()
                    ));
                }
            }
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
            let prefix = format!("values/{}/{}/", c.namespace, c.release);
            for v in &c.values {
                if !v.path.starts_with(&prefix) {
                    return bad(format!(
                        "chart {:?}: values entry {:?} is not under {prefix:?}",
                        c.name, v.path
                    ));
                }
                match self.entry(&v.path) {
                    Some(e) if e.sha256 == v.sha256 => {}
                    Some(e) => {
                        return bad(format!(
                            "chart {:?}: values {:?} lists sha256 {} but the entry has {}",
                            c.name, v.path, v.sha256, e.sha256
                        ))
                    }
                    None => need(&format!("chart {:?} values", c.name), &v.path)?,
                }
            }
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
        super::tools::check_tools(self)?;
        self.validate_signatures()?;
        self.validate_sbom()
    }

    /// The upstream signatures' records (docs/FORMAT.md, *Upstream
    /// signatures*): signers named once, each with its key at
    /// `signers/<name>.pub`, carried and small; each image's signatures by
    /// a listed signer with its key id, their `.sig` manifest and payload
    /// carried blob entries within their caps, at most
    /// [`MAX_IMAGE_SIGNATURES`] per image. The signatures themselves are
    /// checked as the entries stream ([`crate::signature::check_carried`]).
    fn validate_signatures(&self) -> Result<(), FormatError> {
        let bad = |m: String| Err(FormatError::InvalidManifest(m));
        let mut signers = BTreeMap::new();
        for s in &self.signers {
            check_name("signer name", &s.name)?;
            if signers.insert(s.name.as_str(), s).is_some() {
                return bad(format!("signer {:?} is listed twice", s.name));
            }
            if s.path != signer_key_path(&s.name) {
                return bad(format!(
                    "signer {:?}: key entry is {:?}, not {:?}",
                    s.name,
                    s.path,
                    signer_key_path(&s.name)
                ));
            }
            match self.entry(&s.path) {
                None => {
                    return bad(format!(
                        "signer {:?} refers to {:?}, which is not an entry the bundle carries",
                        s.name, s.path
                    ))
                }
                Some(e) if e.size > MAX_SIGNER_KEY => {
                    return bad(format!(
                        "signer key {:?} is {} bytes, over the limit of {MAX_SIGNER_KEY}",
                        s.path, e.size
                    ))
                }
                Some(_) => {}
            }
        }
        for e in self.release_entries() {
            if e.path.starts_with(SIGNERS_DIR) && !self.signers.iter().any(|s| s.path == e.path) {
                return bad(format!("entry {:?} is the key of no signer", e.path));
            }
        }
        for img in &self.images {
            if img.signatures.len() > MAX_IMAGE_SIGNATURES {
                return bad(format!(
                    "image {:?} lists {} signatures, over the limit of {MAX_IMAGE_SIGNATURES}",
                    img.name,
                    img.signatures.len()
                ));
            }
            let mut seen = BTreeSet::new();
            for sig in &img.signatures {
                let Some(signer) = signers.get(sig.signer.as_str()) else {
                    return bad(format!(
                        "image {:?}: signature by {:?}, which is not a signer of the bundle",
                        img.name, sig.signer
                    ));
                };
                if signer.key_id != sig.key_id {
                    return bad(format!(
                        "image {:?}: signature by {:?} with key {}, the signer's key is {}",
                        img.name, sig.signer, sig.key_id, signer.key_id
                    ));
                }
                if !crate::oci::is_manifest(&sig.media_type) {
                    return bad(format!(
                        "image {:?}: signature manifest media type {:?} is not an image manifest",
                        img.name,
                        crate::text::escape(&sig.media_type)
                    ));
                }
                if !seen.insert((sig.signer.as_str(), sig.payload.digest())) {
                    return bad(format!(
                        "image {:?}: signature {} by {:?} is listed twice",
                        img.name, sig.payload, sig.signer
                    ));
                }
                for (what, d, cap) in [
                    ("manifest", &sig.manifest, MAX_SIGNATURE_MANIFEST),
                    ("payload", &sig.payload, MAX_SIGNATURE_PAYLOAD),
                ] {
                    let path = blob_path(&d.digest());
                    match self.entry(&path) {
                        None => {
                            return bad(format!(
                            "image {:?}: signature {what} {d} is not an entry the bundle carries",
                            img.name
                        ))
                        }
                        Some(e) if e.size > cap => {
                            return bad(format!(
                            "image {:?}: signature {what} {d} is {} bytes, over the limit of {cap}",
                            img.name, e.size
                        ))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// The `sbom` field names exactly [`SBOM_PATH`], an entry the bundle
    /// carries (never omitted by a delta: a reader checks its bytes) of at
    /// most [`MAX_SBOM_SIZE`] bytes. Its content is checked as it streams
    /// ([`crate::sbom::check`]).
    fn validate_sbom(&self) -> Result<(), FormatError> {
        let Some(path) = &self.sbom else {
            return Ok(());
        };
        let bad = |m: String| Err(FormatError::InvalidManifest(m));
        if path != SBOM_PATH {
            return bad(format!("sbom is {path:?}; the SBOM entry is {SBOM_PATH:?}"));
        }
        match self.entry(path) {
            None => bad(format!(
                "sbom refers to {path:?}, which is not an entry the bundle carries"
            )),
            Some(e) if e.size > MAX_SBOM_SIZE => bad(format!(
                "sbom entry {path:?} is {} bytes, over the limit of {MAX_SBOM_SIZE}",
                e.size
            )),
            Some(_) => Ok(()),
        }
    }

    /// The delta section's rules: a bounded chain of well-formed bases, and
    /// omitted entries as well formed as carried ones (safe, sorted,
    /// unique, bounded), none also carried, no trust root among them.
    fn validate_delta(&self, d: &Delta, limits: &Limits) -> Result<(), FormatError> {
        let bad = |m: String| Err(FormatError::InvalidManifest(m));
        if d.bases.is_empty() || d.bases.len() > MAX_DELTA_CHAIN {
            return bad(format!(
                "delta.bases has {} releases; a delta names 1 to {MAX_DELTA_CHAIN}",
                d.bases.len()
            ));
        }
        let mut shas = BTreeSet::new();
        for b in &d.bases {
            check_name("delta base name", &b.name)?;
            if !shas.insert(b.manifest_sha256) {
                return bad(format!("delta base {b} is listed twice"));
            }
        }
        if self.entries.len() + d.omitted.len() > limits.max_entries {
            return bad(format!(
                "{} entries and {} omitted is over the limit of {}",
                self.entries.len(),
                d.omitted.len(),
                limits.max_entries
            ));
        }
        let mut total: u64 = self.content_size();
        for (i, e) in d.omitted.iter().enumerate() {
            check_entry_path(&e.path, limits.max_path_len)?;
            if e.path == MANIFEST_PATH
                || e.path.starts_with(SIGNATURES_DIR)
                || e.path.starts_with(ANCHORS_DIR)
            {
                return bad(format!(
                    "omitted entry {:?} uses a reserved name (a delta carries its trust roots)",
                    e.path
                ));
            }
            if i > 0 && d.omitted[i - 1].path.as_str() >= e.path.as_str() {
                return bad(format!(
                    "delta.omitted is not sorted and unique by path at {:?}",
                    e.path
                ));
            }
            if self.entry(&e.path).is_some() {
                return Err(FormatError::DuplicateEntry {
                    path: e.path.clone(),
                });
            }
            entry_within_limit(&e.path, e.size, limits)?;
            total = total.saturating_add(e.size);
        }
        if total > limits.max_total_size {
            return bad(format!(
                "the release totals {total} bytes with its omitted entries, over the limit of {}",
                limits.max_total_size
            ));
        }
        Ok(())
    }
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

/// One entry's size against the limits: carried and omitted entries alike.
fn entry_within_limit(path: &str, size: u64, limits: &Limits) -> Result<(), FormatError> {
    if size > limits.max_entry_size {
        return Err(FormatError::EntryTooLarge {
            path: path.to_owned(),
            size,
            limit: limits.max_entry_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::manifest::tests::{sample, sample_delta};
    use super::super::manifest::*;
    use crate::digest::Sha256Digest;
    use crate::document::limits::Limits;
    use crate::error::FormatError;
    use crate::names::ImageRef;

    /// A sample with one chart and one vendor values file (entries sorted).
    fn with_values(values_path: &str, listed: Sha256Digest) -> BundleManifest {
        let mut m = sample();
        let chart = b"chart";
        let vals = b"replicas: 2\n";
        m.entries.push(Entry {
            path: "charts/stoa-api-2.3.0.tgz".into(),
            size: chart.len() as u64,
            sha256: Sha256Digest::of(chart),
        });
        m.entries.push(Entry {
            path: "values/stoa-system/stoa-api/00-prod.yaml".into(),
            size: vals.len() as u64,
            sha256: Sha256Digest::of(vals),
        });
        m.entries.sort_by(|a, b| a.path.cmp(&b.path));
        m.charts.push(ChartRecord {
            name: "stoa-api".into(),
            version: "2.3.0".into(),
            app_version: None,
            kube_version: None,
            release: "stoa-api".into(),
            namespace: "stoa-system".into(),
            path: "charts/stoa-api-2.3.0.tgz".into(),
            values: vec![ValuesRecord {
                source: "values/prod.yaml".into(),
                path: values_path.into(),
                sha256: listed,
            }],
        });
        m
    }

    /// The vendor values of a chart record are signed: the record's digest
    /// must be its entry's, the entry must exist, under the release's own
    /// `values/<namespace>/<release>/` folder.
    #[test]
    fn values_records_must_match_their_entries() {
        let good = Sha256Digest::of(b"replicas: 2\n");
        let path = "values/stoa-system/stoa-api/00-prod.yaml";
        let m = with_values(path, good);
        m.validate(&Limits::default()).unwrap();
        let back = BundleManifest::from_bytes(&m.to_bytes(), &Limits::default()).unwrap();
        assert_eq!(back, m);

        let e = with_values(path, Sha256Digest::of(b"other"))
            .validate(&Limits::default())
            .unwrap_err();
        assert!(e.to_string().contains("lists sha256"), "{e}");
        let e = with_values("values/stoa-system/stoa-api/01-missing.yaml", good)
            .validate(&Limits::default())
            .unwrap_err();
        assert!(e.to_string().contains("not an entry"), "{e}");
        let e = with_values("values/other-ns/stoa-api/00-prod.yaml", good)
            .validate(&Limits::default())
            .unwrap_err();
        assert!(e.to_string().contains("is not under"), "{e}");
    }

    #[test]
    fn delta_omitted_entry_with_bad_digest_is_refused() {
        let mut m = sample_delta();
        if let Some(d) = m.delta.as_mut() {
            d.omitted[0].sha256 = Sha256Digest::of(b"not the layer");
        }
        let e = m.validate(&Limits::default()).unwrap_err();
        assert!(e.to_string().contains("oci/blobs/sha256/"), "{e}");
        // not a digest at all: refused by the parser, naming the field
        let text = String::from_utf8(sample_delta().to_bytes()).unwrap();
        let hex = sample_delta().omitted()[0].sha256.hex();
        let broken = text.replacen(&format!("\"sha256\": \"{hex}\""), "\"sha256\": \"xyz\"", 1);
        assert_ne!(broken, text);
        assert!(BundleManifest::from_bytes(broken.as_bytes(), &Limits::default()).is_err());
    }

    #[test]
    fn delta_structure_rules() {
        // omitted and carried at once
        let mut m = sample_delta();
        let carried = m.entries[0].clone();
        m.delta.as_mut().unwrap().omitted.push(carried);
        m.delta
            .as_mut()
            .unwrap()
            .omitted
            .sort_by(|a, b| a.path.cmp(&b.path));
        assert!(matches!(
            m.validate(&Limits::default()),
            Err(FormatError::DuplicateEntry { .. })
        ));
        // no base
        let mut m = sample_delta();
        m.delta.as_mut().unwrap().bases.clear();
        assert!(m.validate(&Limits::default()).is_err());
        // a trust root is never omitted
        let mut m = sample_delta();
        m.delta.as_mut().unwrap().omitted.insert(
            0,
            Entry {
                path: "anchors/root-1.json".into(),
                size: 1,
                sha256: Sha256Digest::of(b"r"),
            },
        );
        assert!(m.validate(&Limits::default()).is_err());
        // unsafe path
        let mut m = sample_delta();
        m.delta.as_mut().unwrap().omitted[0].path = "../etc/passwd".into();
        assert!(m.validate(&Limits::default()).is_err());
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

    /// Security rule: two images from different registries that the site
    /// registry would keep under one `<path>:<tag>` (it drops the source
    /// host) are refused unless they are the same image. Fixture: the
    /// sample with `quay.io/stoa/api:2.3.0` beside
    /// `registry.gostoa.dev/stoa/api:2.3.0`.
    #[test]
    fn images_that_collide_on_the_site_registry_are_refused() {
        let mut m = sample();
        let mut twin = m.images[0].clone();
        twin.name = ImageRef::parse("quay.io/stoa/api:2.3.0").unwrap();
        m.images.push(twin.clone());
        // the same image under two names: one site tag, same bytes
        m.validate(&Limits::default()).unwrap();
        let other = Sha256Digest::of(b"other");
        m.entries.push(Entry {
            path: blob_path(&other),
            size: 5,
            sha256: other,
        });
        m.entries.sort_by(|a, b| a.path.cmp(&b.path));
        m.images[1].digest = other.into();
        let err = m.validate(&Limits::default()).unwrap_err().to_string();
        assert!(
            err.contains("\"registry.gostoa.dev/stoa/api:2.3.0\" and \"quay.io/stoa/api:2.3.0\" would both be stoa/api:2.3.0"),
            "{err}"
        );
        // another tag of the same path is another site tag
        m.images[1].name = ImageRef::parse("quay.io/stoa/api:2.3.1").unwrap();
        m.validate(&Limits::default()).unwrap();
    }

    #[test]
    fn an_artifact_record_has_a_media_type_and_no_platforms() {
        let mut m = sample();
        m.images[0].platforms.clear();
        m.images[0].artifact_type = Some("application/vnd.example.vulndb.v1".into());
        m.validate(&Limits::default()).unwrap();
        for bad in ["", "vulndb", "application/", "a/b\nforged: line", "/x"] {
            m.images[0].artifact_type = Some(bad.into());
            let err = m.validate(&Limits::default()).unwrap_err().to_string();
            assert!(err.contains("is not a media type"), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        m.images[0].artifact_type = Some("application/vnd.example.vulndb.v1".into());
        m.images[0].platforms = vec!["linux/amd64".into()];
        let err = m.validate(&Limits::default()).unwrap_err().to_string();
        assert!(
            err.contains("lists platforms; an artifact has none"),
            "{err}"
        );
    }

    /// A sample whose image carries one upstream signature by `bitnami`.
    fn with_signature() -> BundleManifest {
        let mut m = sample();
        let key_id: crate::keys::KeyId = "ab".repeat(32).parse().unwrap();
        let (sig, payload, key) = (b"sig manifest", b"payload", b"key pem");
        for (path, data) in [
            (blob_path(&Sha256Digest::of(sig)), &sig[..]),
            (blob_path(&Sha256Digest::of(payload)), &payload[..]),
            ("signers/bitnami.pub".to_owned(), &key[..]),
        ] {
            m.entries.push(Entry {
                path,
                size: data.len() as u64,
                sha256: Sha256Digest::of(data),
            });
        }
        m.entries.sort_by(|a, b| a.path.cmp(&b.path));
        m.signers.push(SignerRecord {
            name: "bitnami".into(),
            key_id,
            path: "signers/bitnami.pub".into(),
        });
        m.images[0].signatures.push(SignatureRecord {
            signer: "bitnami".into(),
            key_id,
            manifest: Sha256Digest::of(sig).into(),
            media_type: crate::oci::MT_OCI_MANIFEST.into(),
            payload: Sha256Digest::of(payload).into(),
        });
        m
    }

    /// Upstream signature records name a listed signer with its key id,
    /// carried small blob entries, and the signer's key at its own path;
    /// without signatures the fields are absent from the bytes.
    #[test]
    fn signature_records_must_name_signers_and_carried_entries() {
        let m = with_signature();
        m.validate(&Limits::default()).unwrap();
        let back = BundleManifest::from_bytes(&m.to_bytes(), &Limits::default()).unwrap();
        assert_eq!(back, m);
        let plain = String::from_utf8(sample().to_bytes()).unwrap();
        assert!(!plain.contains("signers") && !plain.contains("signatures"));
        assert_eq!(m.signature_material().len(), 3);

        let mut bad = with_signature();
        bad.images[0].signatures[0].signer = "other".into();
        let e = bad.validate(&Limits::default()).unwrap_err().to_string();
        assert!(e.contains("not a signer of the bundle"), "{e}");
        let mut bad = with_signature();
        bad.images[0].signatures[0].key_id = "cd".repeat(32).parse().unwrap();
        let e = bad.validate(&Limits::default()).unwrap_err().to_string();
        assert!(e.contains("the signer's key is"), "{e}");
        let mut bad = with_signature();
        bad.images[0].signatures[0].payload = Sha256Digest::of(b"absent").into();
        let e = bad.validate(&Limits::default()).unwrap_err().to_string();
        assert!(e.contains("is not an entry the bundle carries"), "{e}");
        let mut bad = with_signature();
        bad.signers[0].path = "signers/other.pub".into();
        let e = bad.validate(&Limits::default()).unwrap_err().to_string();
        assert!(e.contains("key entry is"), "{e}");
        let mut bad = with_signature();
        bad.signers.push(bad.signers[0].clone());
        let e = bad.validate(&Limits::default()).unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");
        let mut bad = with_signature();
        bad.images[0].signatures[0].media_type = crate::oci::MT_OCI_INDEX.into();
        let e = bad.validate(&Limits::default()).unwrap_err().to_string();
        assert!(e.contains("is not an image manifest"), "{e}");
    }
}
