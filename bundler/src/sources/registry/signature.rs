//! An image's upstream signatures from its registry: the cosign
//! `sha256-<hex>.sig` tag in the image's repository (the convention cosign
//! and containers/image use), fetched through the same client, mirrors,
//! credentials and retry policy as the image, its blobs (config and
//! payloads, each within the verifier's caps) into the content cache. The
//! checks are the format's one verifier ([`stoa_format::signature`]);
//! this file only fetches.

use std::collections::BTreeMap;

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::Reference;
use stoa_format::oci::{self, Descriptor};
use stoa_format::signature::{parse_sig_manifest, sig_tag, SigManifest};
use stoa_format::{Sha256Digest, SignatureProblem};

use super::transport::{classify, with_retries, Failure};
use super::Puller;
use crate::error::{BundlerError, Result};

/// Media types asked for at the `.sig` tag: any manifest, so that a tag
/// pointing at an index is seen (and refused by the verifier by name).
const SIG_ACCEPT: &[&str] = &[
    oci::MT_OCI_MANIFEST,
    oci::MT_DOCKER_MANIFEST,
    oci::MT_OCI_INDEX,
    oci::MT_DOCKER_LIST,
];

/// The `.sig` manifest of an image, as the registry has it.
#[derive(Debug)]
pub struct FetchedSignature {
    /// The manifest's bytes and digest.
    pub bytes: Vec<u8>,
    pub digest: Sha256Digest,
    /// The parsed manifest, or why it is not a signature manifest.
    pub parsed: std::result::Result<SigManifest, SignatureProblem>,
    /// The blobs it names (config and payloads), from the cache, when it
    /// parsed.
    pub blobs: BTreeMap<Sha256Digest, Vec<u8>>,
}

/// True when a registry says the manifest does not exist.
fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            matches!(
                x.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

impl Puller {
    /// The `.sig` manifest of the image `name` (pulled as `reference`)
    /// whose manifest or index is `digest`, with its blobs; None when the
    /// registry has no such tag.
    pub fn pull_signature(
        &mut self,
        name: &str,
        reference: &Reference,
        digest: &Sha256Digest,
    ) -> Result<Option<FetchedSignature>> {
        let sig_ref = Reference::with_tag(
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            sig_tag(digest),
        );
        let eps = self.endpoints(name, &sig_ref)?;
        self.first_success(eps, |p, r| p.pull_signature_at(name, r))
    }

    fn pull_signature_at(
        &mut self,
        name: &str,
        sig_ref: &Reference,
    ) -> Result<Option<FetchedSignature>> {
        let auth = self.auth_for(sig_ref)?;
        let got = self.rt.block_on(async {
            self.login_for_pull(sig_ref, &auth).await?;
            with_retries(&self.counters, || async {
                match self
                    .client
                    .pull_manifest_raw(sig_ref, &auth, SIG_ACCEPT)
                    .await
                {
                    Ok((b, _)) => Ok(Some(b.to_vec())),
                    Err(e) if not_found(&e) => Ok(None),
                    Err(e) => Err(classify(e)),
                }
            })
            .await
        });
        let bytes: Option<Vec<u8>> = got.map_err(|f: Failure| self.pull_error(name, sig_ref, f))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        self.counters_add_manifest();
        let digest = Sha256Digest::of(&bytes);
        let parsed = parse_sig_manifest(&bytes);
        let mut blobs = BTreeMap::new();
        if let Ok(m) = &parsed {
            let descs: Vec<Descriptor> = m
                .blobs()
                .into_iter()
                .map(|(d, size)| Descriptor {
                    media_type: "application/octet-stream".into(),
                    digest: d.oci(),
                    size,
                    platform: None,
                    annotations: None,
                    artifact_type: None,
                })
                .collect();
            self.download_all(name, sig_ref, descs)?;
            for (d, _) in m.blobs() {
                let b = self
                    .cache()
                    .read(&d)
                    .map_err(|e| BundlerError::RegistryBlob {
                        image: name.to_owned(),
                        blob: d.oci(),
                        message: format!("read from the cache: {e}"),
                    })?;
                if Sha256Digest::of(&b) != d {
                    return Err(BundlerError::RegistryBlob {
                        image: name.to_owned(),
                        blob: d.oci(),
                        message: "the cached blob no longer matches its digest".into(),
                    });
                }
                blobs.insert(d, b);
            }
        }
        Ok(Some(FetchedSignature {
            bytes,
            digest,
            parsed,
            blobs,
        }))
    }
}
