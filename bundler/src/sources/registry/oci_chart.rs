//! Helm charts stored in OCI registries (`oci://host/repo/name`): the
//! versions (tags, Helm's `_` for `+` turned back) and one version's chart
//! layer into the cache, through the same mirrors, credentials and retries
//! as images.

use std::path::PathBuf;

use oci_client::Reference;
use stoa_format::oci::{self, Descriptor, ImageManifest};
use stoa_format::Sha256Digest;

use super::reference::reference;
use super::transport::{classify, with_retries};
use super::Puller;
use crate::error::{BundlerError, Result};

/// A chart pull's error, naming the `oci://` reference.
fn chart_pull(url: &str, message: String) -> BundlerError {
    BundlerError::ChartPull {
        chart: url.to_owned(),
        url: url.to_owned(),
        message,
    }
}

/// The registry reference of an `oci://host/repo/name` chart at `tag`.
fn chart_reference(url: &str, tag: &str) -> Result<Reference> {
    let base = url
        .strip_prefix("oci://")
        .ok_or_else(|| chart_pull(url, "not an oci:// reference".into()))?;
    reference(&format!("{base}:{tag}"))
        .map_err(|e| chart_pull(url, format!("not a chart reference: {e}")))
}

/// The layer media type of a Helm chart in an OCI registry.
pub const HELM_CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

impl Puller {
    /// Pulls a Helm chart stored in an OCI registry (`oci://host/repo/name`
    /// with `version`): its manifest by tag, then its chart layer
    /// (`application/vnd.cncf.helm.chart.content.v1.tar+gzip`) into the
    /// cache. Returns the cached `.tgz` path and the manifest digest.
    pub fn pull_oci_chart(&mut self, url: &str, version: &str) -> Result<(PathBuf, String)> {
        // Helm stores versions with '+' as '_' in tags
        let reference = chart_reference(url, &version.replace('+', "_"))?;
        let eps = self.endpoints(url, &reference)?;
        self.first_success(eps, |p, r| p.pull_oci_chart_at(url, r))
    }

    /// Pulls an OCI chart from one place.
    fn pull_oci_chart_at(&mut self, url: &str, reference: &Reference) -> Result<(PathBuf, String)> {
        let cerr = |m: String| chart_pull(url, m);
        let reference = reference.clone();
        let auth = self.auth_for(&reference)?;
        let got = self.rt.block_on(async {
            self.login_for_pull(&reference, &auth).await?;
            Self::fetch_manifest(
                &self.client,
                &self.cache,
                &self.counters,
                &reference,
                &auth,
                &[oci::MT_OCI_MANIFEST],
                None,
            )
            .await
        });
        let (bytes, digest) = got.map_err(|f| {
            let e = self.pull_error(url, &reference, f);
            cerr(match e {
                BundlerError::RegistryPull { message, .. } => message,
                other => other.to_string(),
            })
        })?;
        let m: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| cerr(format!("manifest {}: {e}", digest.oci())))?;
        let layers: Vec<&Descriptor> = m
            .layers
            .iter()
            .filter(|l| l.media_type == HELM_CHART_LAYER)
            .collect();
        let [layer] = layers.as_slice() else {
            return Err(cerr(format!(
                "manifest {} has {} layers of type {HELM_CHART_LAYER}, expected 1 (is it a Helm chart?)",
                digest.oci(),
                layers.len()
            )));
        };
        let layer = (*layer).clone();
        let ld = Sha256Digest::from_oci(&layer.digest)
            .ok_or_else(|| cerr(format!("layer digest {} is not sha256", layer.digest)))?;
        self.download_all(url, &reference, vec![layer.clone()])
            .map_err(|e| cerr(e.to_string()))?;
        Ok((self.cache.blob_path(&ld), digest.oci()))
    }

    /// The versions of an OCI chart (`oci://host/repo/name`): its tags, with
    /// Helm's `_` for `+` turned back; through the build host's mirrors
    /// (the first that answers gives the list), with the same credentials
    /// and retries as pulls.
    pub fn list_oci_chart_versions(&mut self, url: &str) -> Result<Vec<String>> {
        // a tag reference: the listing is a tag lookup for the mirrors'
        // `pull-from-mirror` rules
        let reference = chart_reference(url, "latest")?;
        let eps = self.endpoints(url, &reference)?;
        self.first_success(eps, |p, r| p.list_oci_chart_versions_at(url, r))
    }

    /// Lists an OCI chart's tags at one place.
    fn list_oci_chart_versions_at(
        &mut self,
        url: &str,
        reference: &Reference,
    ) -> Result<Vec<String>> {
        let cerr = |m: String| chart_pull(url, m);
        let reference = reference.clone();
        let auth = self.auth_for(&reference)?;
        let got = self.rt.block_on(with_retries(&self.counters, || async {
            self.client
                .list_tags(&reference, &auth, None, None)
                .await
                .map_err(classify)
        }));
        let tags = got.map_err(|f| {
            let e = self.pull_error(url, &reference, f);
            cerr(format!(
                "list versions: {}",
                match e {
                    BundlerError::RegistryPull { message, .. } => message,
                    other => other.to_string(),
                }
            ))
        })?;
        self.counters_add_manifest();
        Ok(tags.tags.into_iter().map(|t| t.replace('_', "+")).collect())
    }
}
