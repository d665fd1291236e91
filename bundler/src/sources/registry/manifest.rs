//! Images pulled by manifest: the top manifest or index by tag or digest
//! (byte-exact, checked against the digest asked for, kept in the cache),
//! the platforms asked for, their manifests, then their blobs
//! ([`super::blob`]); the image is then resolved out of the cache like an
//! OCI layout ([`oci_layout::resolve_top`]).

use std::sync::atomic::Ordering;

use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use stoa_format::oci::{self, Descriptor, ImageIndex, ImageManifest, MediaTypeProbe};
use stoa_format::Sha256Digest;

use super::cache::Cache;
use super::transport::{classify, fatal, with_retries, Failure};
use super::{Counters, Puller};
use crate::error::{BundlerError, Result};
use crate::sources::oci_layout::{self, LayoutStore, ResolvedImage, MAX_JSON_BLOB};

/// Media types accepted for an image's top manifest.
const IMAGE_ACCEPT: &[&str] = &[
    oci::MT_OCI_INDEX,
    oci::MT_OCI_MANIFEST,
    oci::MT_DOCKER_LIST,
    oci::MT_DOCKER_MANIFEST,
];

impl Puller {
    /// Fetches a manifest (by tag or digest) and stores it in the cache;
    /// returns its bytes and digest. By digest, the cache is used first.
    pub(super) async fn fetch_manifest(
        client: &Client,
        cache: &Cache,
        counters: &Counters,
        reference: &Reference,
        auth: &RegistryAuth,
        accept: &[&str],
        want_size: Option<u64>,
    ) -> std::result::Result<(Vec<u8>, Sha256Digest), Failure> {
        if let Some(d) = reference.digest().and_then(Sha256Digest::from_oci) {
            // pinned by digest: the cache has it when a blob of that digest
            // (and size, when known) is there; checked again, it is small
            if let Ok(b) = cache.read(&d) {
                if Sha256Digest::of(&b) == d && want_size.is_none_or(|s| s == b.len() as u64) {
                    return Ok((b, d));
                }
            }
        }
        let (bytes, _) = with_retries(counters, || async {
            client
                .pull_manifest_raw(reference, auth, accept)
                .await
                .map_err(classify)
        })
        .await?;
        counters.manifests_fetched.fetch_add(1, Ordering::Relaxed);
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(fatal(format!(
                "manifest is {} bytes, over the {MAX_JSON_BLOB}-byte limit",
                bytes.len()
            )));
        }
        let got = Sha256Digest::of(&bytes);
        if let Some(want) = reference.digest() {
            if got.oci() != want {
                return Err(fatal(format!(
                    "the registry sent a manifest with digest {}, not {want}",
                    got.oci()
                )));
            }
        }
        if let Some(size) = want_size {
            if bytes.len() as u64 != size {
                return Err(fatal(format!(
                    "manifest {} is {} bytes, its descriptor says {size}",
                    got.oci(),
                    bytes.len()
                )));
            }
        }
        cache
            .put_bytes(&got, &bytes)
            .map_err(|e| fatal(format!("cache: {e}")))?;
        Ok((bytes.to_vec(), got))
    }

    /// Pulls an image by tag or digest into the cache and resolves it,
    /// through the build host's mirrors (module [`mirrors`]). The bundle
    /// records `source_text`, never a mirror's name.
    pub fn pull_image(
        &mut self,
        name: &str,
        source_text: &str,
        reference: &Reference,
        platforms: Option<&[String]>,
    ) -> Result<ResolvedImage> {
        let eps = self.endpoints(name, reference)?;
        self.first_success(eps, |p, r| p.pull_image_at(name, source_text, r, platforms))
    }

    /// Pulls an image from one place.
    fn pull_image_at(
        &mut self,
        name: &str,
        source_text: &str,
        reference: &Reference,
        platforms: Option<&[String]>,
    ) -> Result<ResolvedImage> {
        let auth = self.auth_for(reference)?;
        let top = self.rt.block_on(async {
            self.login_for_pull(reference, &auth).await?;
            Self::fetch_manifest(
                &self.client,
                &self.cache,
                &self.counters,
                reference,
                &auth,
                IMAGE_ACCEPT,
                None,
            )
            .await
        });
        let (top_bytes, top_digest) = top.map_err(|f| self.pull_error(name, reference, f))?;
        let probe: MediaTypeProbe =
            serde_json::from_slice(&top_bytes).map_err(|e| BundlerError::RegistryPull {
                image: name.to_owned(),
                reference: reference.whole(),
                message: format!("manifest {}: not JSON: {e}", top_digest.oci()),
            })?;
        let media_type = probe.kind().unwrap_or_default().to_owned();
        let bad = |m: String| BundlerError::RegistryPull {
            image: name.to_owned(),
            reference: reference.whole(),
            message: m,
        };
        let mut manifests: Vec<Vec<u8>> = Vec::new();
        if oci::is_index(&media_type) {
            let idx: ImageIndex = serde_json::from_slice(&top_bytes)
                .map_err(|e| bad(format!("index {}: {e}", top_digest.oci())))?;
            let keep = oci_layout::select_platforms(name, &idx, platforms)?;
            for i in keep {
                let child = &idx.manifests[i];
                if oci::is_index(&child.media_type) {
                    return Err(bad(format!(
                        "nested index {} is not supported",
                        child.digest
                    )));
                }
                let r = reference.clone_with_digest(child.digest.clone());
                let got = self.rt.block_on(Self::fetch_manifest(
                    &self.client,
                    &self.cache,
                    &self.counters,
                    &r,
                    &auth,
                    IMAGE_ACCEPT,
                    Some(child.size),
                ));
                let (bytes, _) = got.map_err(|f| self.pull_error(name, &r, f))?;
                manifests.push(bytes);
            }
        } else if oci::is_manifest(&media_type) || probe.config.is_some() {
            manifests.push(top_bytes.clone());
        } else {
            return Err(bad(format!(
                "{}: media type {media_type:?} is neither an image manifest nor an index",
                top_digest.oci()
            )));
        }
        let mut blobs = Vec::new();
        for m in &manifests {
            let m: ImageManifest = serde_json::from_slice(m)
                .map_err(|e| bad(format!("not an image manifest: {e}")))?;
            blobs.push(m.config);
            blobs.extend(m.layers);
        }
        self.download_all(name, reference, blobs)?;
        let top = Descriptor {
            media_type,
            digest: top_digest.oci(),
            size: top_bytes.len() as u64,
            platform: None,
            annotations: None,
            artifact_type: None,
        };
        let store = LayoutStore::Dir(self.cache.root().to_owned());
        oci_layout::resolve_top(name, source_text, &store, &top, platforms)
    }
}
