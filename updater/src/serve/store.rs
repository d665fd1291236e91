//! What `serve` serves, read from the state folder: every image of every
//! retained release (`state.json`'s `releases`, each release manifest
//! checked against its recorded digest), under the names apply pushes them
//! to (`[registry] prefix` and `layout`, [`map_name`]: `<prefix>/<path>`,
//! or `<prefix>/<source host>/<path>` in the mirror layout; its tag). For each
//! repository: its tags, the manifests reachable from them (the index and
//! each platform manifest the bundle carried) and the blobs those name,
//! each with the size and digest the signed release manifest gives it; and
//! each image's carried upstream signatures under the tag
//! `sha256-<hex>.sig` (what apply pushes).
//!
//! The catalog holds no content: manifests and blobs are read from
//! `store/sha256/<hex>` when asked for, and re-hashed as they are served
//! (`stream.rs`). It is rebuilt when `state.json` changes (an apply or a
//! rollback committed), without a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::SystemTime;

use stoa_format::oci::{is_index, ImageIndex, ImageManifest};
use stoa_format::{BundleManifest, Sha256Digest};

use crate::error::Result;
use crate::registry::{map_name, Layout};
use crate::state::StateDir;

/// The largest manifest or index served (read whole into memory to hash).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// A manifest or index a repository serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    pub media_type: String,
    pub size: u64,
    /// The manifest's `subject` (referrers API).
    pub subject: Option<Sha256Digest>,
    /// `artifactType`, else the config's media type (referrers API).
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Value>,
}

/// One repository.
#[derive(Debug, Clone, Default)]
pub struct Repo {
    pub tags: BTreeMap<String, Sha256Digest>,
    pub manifests: HashMap<Sha256Digest, ManifestInfo>,
    pub blobs: BTreeSet<Sha256Digest>,
}

/// Everything served, and the signed size of every blob.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub repos: BTreeMap<String, Repo>,
    /// digest → the size the release manifest signed for it
    pub sizes: HashMap<Sha256Digest, u64>,
    /// The retained releases served, oldest first.
    pub releases: Vec<semver::Version>,
    /// Images skipped because their manifest in the store was damaged.
    pub skipped: Vec<String>,
}

/// The state folder and the prefix the names get.
#[derive(Debug, Clone)]
pub struct Store {
    pub sd: StateDir,
    pub prefix: String,
    pub layout: Layout,
}

/// What `state.json` looked like when the catalog was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Option<(u64, SystemTime, u64)>);

impl Store {
    pub fn new(state_dir: PathBuf, prefix: &str, layout: Layout) -> Self {
        Self {
            sd: StateDir::new(&state_dir),
            prefix: prefix.trim_matches('/').to_owned(),
            layout,
        }
    }

    /// The stored file of a blob.
    pub fn blob_path(&self, d: &Sha256Digest) -> PathBuf {
        self.sd.blob(&d.hex())
    }

    /// The state file's identity: a change means the catalog is rebuilt.
    pub fn stamp(&self) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp(
            std::fs::metadata(self.sd.state_path())
                .ok()
                .and_then(|m| Some((m.ino(), m.modified().ok()?, m.len()))),
        )
    }

    /// Builds the catalog of every retained release.
    pub fn load(&self) -> Result<Catalog> {
        let state = self.sd.load()?;
        let mut cat = Catalog::default();
        for rec in &state.releases {
            let m =
                crate::stage::load_release_checked(&self.sd, &rec.version, &rec.manifest_sha256)?;
            self.add_release(&mut cat, &m);
            cat.releases.push(rec.version.clone());
        }
        Ok(cat)
    }

    /// Adds one release's images (a later release's tag wins).
    pub fn add_release(&self, cat: &mut Catalog, m: &BundleManifest) {
        for e in m.entries.iter().chain(m.omitted()) {
            if let Some(hex) = e.path.strip_prefix("oci/blobs/sha256/") {
                if hex == e.sha256.hex() {
                    cat.sizes.insert(e.sha256, e.size);
                }
            }
        }
        for img in &m.images {
            let t = map_name(&img.name, &self.prefix, self.layout);
            let d = img.digest.digest();
            let mut repo = cat.repos.get(&t.repo).cloned().unwrap_or_default();
            match self.add_tree(&cat.sizes, &mut repo, &d, &img.media_type, 0) {
                Ok(()) => {
                    if let Some(tag) = t.tag {
                        repo.tags.insert(tag, d);
                    }
                    // its carried upstream signatures, under cosign's tag
                    for sig in &img.signatures {
                        let sd = sig.manifest.digest();
                        match self.add_tree(&cat.sizes, &mut repo, &sd, &sig.media_type, 0) {
                            Ok(()) => {
                                repo.tags.insert(stoa_format::signature::sig_tag(&d), sd);
                            }
                            Err(why) => eprintln!(
                                "stoa-updater: serve: signature {} of image {} not served: {why}",
                                sd.oci(),
                                img.name
                            ),
                        }
                    }
                    cat.repos.insert(t.repo, repo);
                }
                Err(why) => {
                    eprintln!(
                        "stoa-updater: serve: image {} ({}) not served: {why}",
                        img.name,
                        d.oci()
                    );
                    cat.skipped.push(img.name.to_string());
                }
            }
        }
    }

    /// Reads a manifest (or index) from the store, checked against its
    /// signed size and digest; `Err` says what is wrong.
    pub fn read_manifest(
        &self,
        sizes: &HashMap<Sha256Digest, u64>,
        d: &Sha256Digest,
    ) -> std::result::Result<Vec<u8>, String> {
        let size = *sizes
            .get(d)
            .ok_or_else(|| format!("{} is not in the release manifest", d.oci()))?;
        if size > MAX_MANIFEST {
            return Err(format!("manifest {} is larger than 4 MiB", d.oci()));
        }
        let p = self.blob_path(d);
        let bytes = std::fs::read(&p).map_err(|e| format!("read {}: {e}", p.display()))?;
        if bytes.len() as u64 != size || Sha256Digest::of(&bytes) != *d {
            return Err(format!(
                "stored manifest {} ({}) no longer matches its digest",
                d.oci(),
                p.display()
            ));
        }
        Ok(bytes)
    }

    fn add_tree(
        &self,
        sizes: &HashMap<Sha256Digest, u64>,
        repo: &mut Repo,
        d: &Sha256Digest,
        media_type: &str,
        depth: u32,
    ) -> std::result::Result<(), String> {
        if depth > 2 {
            return Err("indexes nested too deep".into());
        }
        let bytes = self.read_manifest(sizes, d)?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("manifest {}: {e}", d.oci()))?;
        let subject = v["subject"]["digest"]
            .as_str()
            .and_then(Sha256Digest::from_oci);
        let artifact_type = v["artifactType"]
            .as_str()
            .or_else(|| v["config"]["mediaType"].as_str())
            .map(str::to_owned);
        let annotations = v.get("annotations").filter(|a| a.is_object()).cloned();
        if is_index(media_type) {
            let idx: ImageIndex =
                serde_json::from_value(v).map_err(|e| format!("index {}: {e}", d.oci()))?;
            for child in &idx.manifests {
                let Some(cd) = Sha256Digest::from_oci(&child.digest) else {
                    return Err(format!("index {}: bad child digest", d.oci()));
                };
                if !sizes.contains_key(&cd) {
                    // a platform the bundle does not carry (apply skips it too)
                    continue;
                }
                self.add_tree(sizes, repo, &cd, &child.media_type, depth + 1)?;
            }
        } else {
            let man: ImageManifest =
                serde_json::from_value(v).map_err(|e| format!("manifest {}: {e}", d.oci()))?;
            for b in std::iter::once(&man.config).chain(&man.layers) {
                let bd = Sha256Digest::from_oci(&b.digest)
                    .ok_or_else(|| format!("manifest {}: bad blob digest {}", d.oci(), b.digest))?;
                match sizes.get(&bd) {
                    Some(&s) if s == b.size => {
                        repo.blobs.insert(bd);
                    }
                    Some(_) => return Err(format!("blob {}: size differs", b.digest)),
                    None => return Err(format!("blob {} is not in the release", b.digest)),
                }
            }
        }
        repo.manifests.insert(
            *d,
            ManifestInfo {
                media_type: media_type.to_owned(),
                size: bytes.len() as u64,
                subject,
                artifact_type,
                annotations,
            },
        );
        Ok(())
    }
}
