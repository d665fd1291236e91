//! Upstream image signatures in cosign's format (docs/FORMAT.md, *Upstream
//! signatures*): the one verifier the bundler runs at build and every
//! reader runs on the signatures a bundle carries. No network code: the
//! caller hands it bytes.
//!
//! cosign (and containers/image's `sigstoreSigned`) keeps an image's
//! signatures in an image manifest tagged `sha256-<hex>.sig` beside it
//! ([`sig_tag`]): each layer, of media type [`MT_SIMPLESIGNING`], is a
//! simple-signing payload (JSON naming the signed manifest digest and the
//! image's name), and its annotation [`ANNOTATION_SIGNATURE`] the base64
//! signature over the payload's bytes (ECDSA P-256 over SHA-256, ASN.1
//! DER; or Ed25519). The checks, each failure a [`SignatureProblem`]
//! variant, in order: the `.sig` manifest's size and shape
//! ([`parse_sig_manifest`]), the payload's size and shape
//! ([`parse_payload`]), the digest it names, the identity it names, the
//! signature ([`verify_layer`]). [`check_carried`] re-runs them on a
//! bundle's carried signatures.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

use crate::digest::Sha256Digest;
use crate::document::limits::{
    MAX_SIGNATURE_LAYERS, MAX_SIGNATURE_MANIFEST, MAX_SIGNATURE_PAYLOAD, MAX_SIGNER_KEY,
};
use crate::error::{FormatError, SignatureProblem};
use crate::keys::{KeyId, UpstreamKey};
use crate::manifest::{blob_path, BundleManifest, ImageRecord};
use crate::names::ImageRef;
use crate::oci;

/// The media type of a cosign signature layer (a simple-signing payload).
pub const MT_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The payload's `critical.type`.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// The tag of an image's signatures: `sha256-<hex>.sig`.
pub fn sig_tag(image_digest: &Sha256Digest) -> String {
    format!("sha256-{}.sig", image_digest.hex())
}

/// One signature layer of a `.sig` manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigLayer {
    /// The payload blob.
    pub payload: Sha256Digest,
    pub size: u64,
    /// The raw signature (decoded from the annotation's base64).
    pub signature: Vec<u8>,
}

/// A parsed `.sig` manifest: its media type, its config blob and its
/// signature layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigManifest {
    pub media_type: String,
    pub config: (Sha256Digest, u64),
    pub layers: Vec<SigLayer>,
}

impl SigManifest {
    /// Every blob the manifest names (config first), with its size.
    pub fn blobs(&self) -> Vec<(Sha256Digest, u64)> {
        std::iter::once(self.config)
            .chain(self.layers.iter().map(|l| (l.payload, l.size)))
            .collect()
    }
}

/// Parses a `.sig` manifest: at most [`MAX_SIGNATURE_MANIFEST`] bytes, an
/// OCI or Docker image manifest, 1 to [`MAX_SIGNATURE_LAYERS`] layers each
/// of type [`MT_SIMPLESIGNING`], at most [`MAX_SIGNATURE_PAYLOAD`] bytes,
/// with a base64 signature annotation; a config of at most
/// [`MAX_SIGNATURE_PAYLOAD`] bytes.
pub fn parse_sig_manifest(bytes: &[u8]) -> Result<SigManifest, SignatureProblem> {
    if bytes.len() as u64 > MAX_SIGNATURE_MANIFEST {
        return Err(SignatureProblem::ManifestTooLarge {
            size: bytes.len() as u64,
            limit: MAX_SIGNATURE_MANIFEST,
        });
    }
    let not = |m: String| SignatureProblem::NotASignatureManifest(m);
    let probe: oci::MediaTypeProbe =
        serde_json::from_slice(bytes).map_err(|e| not(format!("not JSON: {e}")))?;
    let media_type = probe.kind().unwrap_or_default().to_owned();
    if !oci::is_manifest(&media_type) {
        return Err(not(format!(
            "media type {:?} is not an image manifest",
            crate::text::escape(&media_type)
        )));
    }
    let m: oci::ImageManifest =
        serde_json::from_slice(bytes).map_err(|e| not(format!("not an image manifest: {e}")))?;
    let digest = |d: &oci::Descriptor| {
        Sha256Digest::from_oci(&d.digest).ok_or_else(|| {
            not(format!(
                "digest {:?} is not sha256",
                crate::text::escape(&d.digest)
            ))
        })
    };
    if m.config.size > MAX_SIGNATURE_PAYLOAD {
        return Err(not(format!(
            "its config is {} bytes, over the limit of {MAX_SIGNATURE_PAYLOAD}",
            m.config.size
        )));
    }
    if m.layers.is_empty() || m.layers.len() > MAX_SIGNATURE_LAYERS {
        return Err(not(format!(
            "{} layers; a signature manifest has 1 to {MAX_SIGNATURE_LAYERS}",
            m.layers.len()
        )));
    }
    let mut layers = Vec::with_capacity(m.layers.len());
    for l in &m.layers {
        if l.media_type != MT_SIMPLESIGNING {
            return Err(not(format!(
                "a layer has media type {:?}, not {MT_SIMPLESIGNING}",
                crate::text::escape(&l.media_type)
            )));
        }
        if l.size > MAX_SIGNATURE_PAYLOAD {
            return Err(SignatureProblem::PayloadTooLarge {
                size: l.size,
                limit: MAX_SIGNATURE_PAYLOAD,
            });
        }
        let b64 = l
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_SIGNATURE))
            .ok_or_else(|| {
                not(format!(
                    "layer {} has no {ANNOTATION_SIGNATURE} annotation",
                    l.digest
                ))
            })?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| SignatureProblem::MalformedSignature(format!("not base64: {e}")))?;
        layers.push(SigLayer {
            payload: digest(l)?,
            size: l.size,
            signature,
        });
    }
    Ok(SigManifest {
        media_type,
        config: (digest(&m.config)?, m.config.size),
        layers,
    })
}

/// A simple-signing payload's `critical` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Critical {
    pub identity: Identity,
    pub image: SignedImage,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// A simple-signing payload (`optional` is free-form and not read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Payload {
    pub critical: Critical,
    #[serde(default)]
    pub optional: Option<serde_json::Value>,
}

/// Parses a payload: at most [`MAX_SIGNATURE_PAYLOAD`] bytes of JSON with
/// a `critical` section of exactly `identity.docker-reference`,
/// `image.docker-manifest-digest` and `type` = [`PAYLOAD_TYPE`].
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, SignatureProblem> {
    if bytes.len() as u64 > MAX_SIGNATURE_PAYLOAD {
        return Err(SignatureProblem::PayloadTooLarge {
            size: bytes.len() as u64,
            limit: MAX_SIGNATURE_PAYLOAD,
        });
    }
    let p: Payload = serde_json::from_slice(bytes).map_err(|e| {
        SignatureProblem::BadPayload(crate::text::escape(&e.to_string()).into_owned())
    })?;
    if p.critical.kind != PAYLOAD_TYPE {
        return Err(SignatureProblem::BadPayload(format!(
            "critical.type is {:?}, not {PAYLOAD_TYPE:?}",
            crate::text::escape(&p.critical.kind)
        )));
    }
    Ok(p)
}

/// Whether a payload's `docker-reference` names `image`: the same
/// repository (Docker Hub's short forms normalised, [`ImageRef::source_repository`]),
/// and, when it gives a tag, the image's tag. (containers/image's
/// `matchRepoDigestOrExact`, the policy a site writes.)
pub fn identity_matches(signed: &str, image: &ImageRef) -> bool {
    let Ok(s) = ImageRef::parse(signed) else {
        return false;
    };
    s.digest().is_none()
        && s.source_repository() == image.source_repository()
        && s.tag().is_none_or(|t| Some(t) == image.tag())
}

/// Every check of one signature layer: `payload` is the layer's blob
/// (its digest checked here), naming `digest` and `image`, signed by `key`.
pub fn verify_layer(
    layer: &SigLayer,
    payload: &[u8],
    key: &UpstreamKey,
    image: &ImageRef,
    digest: &Sha256Digest,
) -> Result<(), SignatureProblem> {
    if payload.len() as u64 != layer.size || Sha256Digest::of(payload) != layer.payload {
        return Err(SignatureProblem::BadPayload(format!(
            "the payload blob is not {} ({} bytes)",
            layer.payload.oci(),
            layer.size
        )));
    }
    let p = parse_payload(payload)?;
    let signed = &p.critical.image.docker_manifest_digest;
    if signed != &digest.oci() {
        return Err(SignatureProblem::DigestMismatch {
            signed: crate::text::escape(signed).into_owned(),
            image: digest.oci(),
        });
    }
    let id = &p.critical.identity.docker_reference;
    if !identity_matches(id, image) {
        return Err(SignatureProblem::IdentityMismatch {
            signed: crate::text::escape(id).into_owned(),
            image: image.source_repository(),
        });
    }
    key.verify(payload, &layer.signature)
}

/// The layers of `m` that verify with `key` for `image` at `digest`
/// (with each payload from `payload_of`); when none does, the problem of
/// the last layer tried ([`SignatureProblem::Missing`] for none).
pub fn verified_layers<'a>(
    m: &'a SigManifest,
    payload_of: &mut dyn FnMut(&SigLayer) -> Option<Vec<u8>>,
    key: &UpstreamKey,
    image: &ImageRef,
    digest: &Sha256Digest,
) -> Result<Vec<&'a SigLayer>, SignatureProblem> {
    let mut ok = Vec::new();
    let mut last = SignatureProblem::Missing;
    for l in &m.layers {
        let Some(bytes) = payload_of(l) else {
            last = SignatureProblem::BadPayload(format!(
                "payload blob {} is missing",
                l.payload.oci()
            ));
            continue;
        };
        match verify_layer(l, &bytes, key, image, digest) {
            Ok(()) => ok.push(l),
            Err(p) => last = p,
        }
    }
    if ok.is_empty() {
        Err(last)
    } else {
        Ok(ok)
    }
}

/// Re-verifies every signature a bundle's manifest records, with the
/// bytes of its [`BundleManifest::signature_material`] entries (their
/// digests already checked): each signer's key entry parses and has the
/// recorded key id; each record's `.sig` manifest parses and its payload
/// layer verifies for the image with that signer's key.
pub fn check_carried(
    m: &BundleManifest,
    material: &BTreeMap<String, Vec<u8>>,
) -> Result<(), FormatError> {
    let mut keys: BTreeMap<&str, UpstreamKey> = BTreeMap::new();
    let fail = |img: &ImageRecord, signer: &str, problem| FormatError::UpstreamSignature {
        image: img.name.to_string(),
        signer: signer.to_owned(),
        problem: Box::new(problem),
    };
    for s in &m.signers {
        let problem = |p: String| FormatError::UpstreamSignature {
            image: "(any)".into(),
            signer: s.name.clone(),
            problem: Box::new(SignatureProblem::BadKey(p)),
        };
        let bytes = material
            .get(&s.path)
            .ok_or_else(|| problem(format!("entry {} was not read", s.path)))?;
        let key = UpstreamKey::from_pem(bytes).map_err(problem)?;
        if key.id() != s.key_id {
            return Err(problem(format!(
                "entry {} holds key {}, the manifest says {}",
                s.path,
                key.id(),
                s.key_id
            )));
        }
        keys.insert(s.name.as_str(), key);
    }
    for img in &m.images {
        let digest = img.digest.digest();
        for r in &img.signatures {
            let key = keys.get(r.signer.as_str()).ok_or_else(|| {
                fail(
                    img,
                    &r.signer,
                    SignatureProblem::BadKey("not a signer of the bundle".into()),
                )
            })?;
            let sig_bytes = material
                .get(&blob_path(&r.manifest.digest()))
                .ok_or_else(|| fail(img, &r.signer, SignatureProblem::Missing))?;
            let sm = parse_sig_manifest(sig_bytes).map_err(|p| fail(img, &r.signer, p))?;
            let want = r.payload.digest();
            let layer = sm
                .layers
                .iter()
                .find(|l| l.payload == want)
                .ok_or_else(|| {
                    fail(
                        img,
                        &r.signer,
                        SignatureProblem::NotASignatureManifest(format!(
                            "it has no layer {}",
                            want.oci()
                        )),
                    )
                })?;
            let payload = material
                .get(&blob_path(&want))
                .ok_or_else(|| fail(img, &r.signer, SignatureProblem::Missing))?;
            verify_layer(layer, payload, key, &img.name, &digest)
                .map_err(|p| fail(img, &r.signer, p))?;
        }
    }
    Ok(())
}

/// The cap of each signature-material entry (checked by the manifest's
/// rules before a byte is read).
pub fn material_cap(path: &str) -> u64 {
    if path.starts_with(crate::manifest::SIGNERS_DIR) {
        MAX_SIGNER_KEY
    } else {
        MAX_SIGNATURE_MANIFEST.max(MAX_SIGNATURE_PAYLOAD)
    }
}

/// The key id of a signer key file's bytes, for messages and records.
pub fn key_id_of(pem: &[u8]) -> Result<(UpstreamKey, KeyId), String> {
    let k = UpstreamKey::from_pem(pem)?;
    let id = k.id();
    Ok((k, id))
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
