//! Upstream image signatures at build (docs/RELEASE-MANIFEST.md,
//! *Upstream signatures*): for each image a `[[signers]]` item covers, its
//! cosign `.sig` manifest is fetched from the image's registry
//! ([`crate::sources::registry::signature`]) and every signature layer
//! checked by the format's one verifier ([`stoa_format::signature`])
//! against each covering signer's key. A required signer without a valid
//! signature refuses the build, naming image, signer and reason. Verified
//! signatures are carried: the `.sig` manifest and its blobs as bundle
//! content (listed in `oci/index.json` under the tag
//! `<repository>:sha256-<hex>.sig`), a [`SignatureRecord`] per verified
//! layer in the image's record, and each signer's key as
//! `signers/<name>.pub` ([`SignerRecord`]).

use std::collections::{BTreeMap, BTreeSet};

use stoa_format::manifest::{blob_path, signer_key_path, SignatureRecord, SignerRecord};
use stoa_format::names::ImageRef;
use stoa_format::oci::{self, Descriptor};
use stoa_format::signature::{sig_tag, verified_layers};
use stoa_format::{ContentSource, FormatError, PlannedEntry, Sha256Digest, SignatureProblem};

use crate::error::{BundlerError, Result};
use crate::release::{Image, ImageFrom, LoadedRelease, Signer};
use crate::settings::BuildSettings;
use crate::sources::oci_layout::ResolvedImage;
use crate::sources::registry::slot::{puller, PullSlot};

/// What one image's signatures add to the bundle.
#[derive(Debug, Default)]
pub struct Carried {
    /// The `.sig` manifest and its blobs.
    pub entries: Vec<PlannedEntry>,
    /// Its `oci/index.json` descriptor (named by its tag).
    pub index: Option<Descriptor>,
    /// The signers that signed.
    pub signers: BTreeSet<String>,
}

/// The `oci/index.json` name of an image's signatures:
/// `<repository as written>:sha256-<hex>.sig`.
pub fn sig_ref_name(name: &ImageRef, digest: &Sha256Digest) -> String {
    let repo = match name.domain() {
        Some(d) => format!("{d}/{}", name.path()),
        None => name.path().to_owned(),
    };
    format!("{repo}:{}", sig_tag(digest))
}

fn refuse(image: &Image, signer: &Signer, problem: SignatureProblem) -> BundlerError {
    BundlerError::Format(FormatError::UpstreamSignature {
        image: image.name.to_string(),
        signer: signer.name.clone(),
        problem: Box::new(problem),
    })
}

/// Fetches and verifies the signatures of one resolved image for the
/// signers that cover it; records the verified ones in its record.
pub fn carry(
    rel: &LoadedRelease,
    settings: &BuildSettings,
    pull: &mut PullSlot,
    img: &Image,
    resolved: &mut ResolvedImage,
) -> Result<Carried> {
    let covering: Vec<&Signer> = rel.signers.iter().filter(|s| s.covers(&img.name)).collect();
    let Some(first_required) = covering.iter().find(|s| s.required).copied() else {
        if covering.is_empty() {
            return Ok(Carried::default());
        }
        // optional signers only: verified when present, below
        return carry_checked(settings, pull, img, resolved, &covering, None);
    };
    carry_checked(
        settings,
        pull,
        img,
        resolved,
        &covering,
        Some(first_required),
    )
}

fn carry_checked(
    settings: &BuildSettings,
    pull: &mut PullSlot,
    img: &Image,
    resolved: &mut ResolvedImage,
    covering: &[&Signer],
    required: Option<&Signer>,
) -> Result<Carried> {
    let not_here = |why: &str| -> Result<Carried> {
        match required {
            Some(s) => Err(refuse(
                img,
                s,
                SignatureProblem::NotASignatureManifest(why.to_owned()),
            )),
            None => Ok(Carried::default()),
        }
    };
    let ImageFrom::Registry { reference, .. } = &img.source else {
        return not_here("upstream signatures are fetched from registries only; this image comes from an OCI layout");
    };
    if resolved.record.source_digest.is_some() {
        return not_here(
            "`platforms` filtered the index, so the bundle's digest is not the one upstream signed; \
             drop `platforms` for a signed image",
        );
    }
    let digest = resolved.record.digest.digest();
    let p = puller(pull, &settings.pull)?;
    let fetched = p.pull_signature(img.name.as_str(), reference, &digest)?;
    let quiet = p.quiet();
    let Some(f) = fetched else {
        return match required {
            Some(s) => Err(refuse(img, s, SignatureProblem::Missing)),
            None => Ok(Carried::default()),
        };
    };
    let m = match &f.parsed {
        Ok(m) => m,
        Err(problem) => {
            return match required {
                Some(s) => Err(refuse(img, s, problem.clone())),
                None => {
                    if !quiet {
                        eprintln!(
                            "note: image {}: signatures not carried: {problem}",
                            img.name
                        );
                    }
                    Ok(Carried::default())
                }
            }
        }
    };
    let mut out = Carried::default();
    let mut records = Vec::new();
    for s in covering {
        let mut payload_of =
            |l: &stoa_format::signature::SigLayer| f.blobs.get(&l.payload).cloned();
        match verified_layers(m, &mut payload_of, &s.key, &img.name, &digest) {
            Ok(layers) => {
                for l in layers {
                    records.push(SignatureRecord {
                        signer: s.name.clone(),
                        key_id: s.key_id,
                        manifest: f.digest.into(),
                        media_type: m.media_type.clone(),
                        payload: l.payload.into(),
                    });
                }
                out.signers.insert(s.name.clone());
            }
            Err(problem) if s.required => return Err(refuse(img, s, problem)),
            Err(problem) => {
                if !quiet {
                    eprintln!(
                        "note: image {}: no valid signature by optional signer {:?}: {problem}",
                        img.name, s.name
                    );
                }
            }
        }
    }
    if records.is_empty() {
        return Ok(Carried::default());
    }
    records.truncate(stoa_format::limits::MAX_IMAGE_SIGNATURES);
    resolved.record.signatures = records;
    out.entries.push(PlannedEntry {
        path: blob_path(&f.digest),
        size: f.bytes.len() as u64,
        sha256: f.digest,
        source: ContentSource::Bytes(f.bytes.clone()),
    });
    for (d, b) in &f.blobs {
        out.entries.push(PlannedEntry {
            path: blob_path(d),
            size: b.len() as u64,
            sha256: *d,
            source: ContentSource::Bytes(b.clone()),
        });
    }
    out.index = Some(Descriptor {
        media_type: m.media_type.clone(),
        digest: f.digest.oci(),
        size: f.bytes.len() as u64,
        platform: None,
        annotations: Some(BTreeMap::from([(
            oci::ANNOTATION_REF_NAME.to_owned(),
            sig_ref_name(&img.name, &digest),
        )])),
        artifact_type: None,
    });
    Ok(out)
}

/// The signer records and key entries of the signers that signed.
pub fn signer_entries(
    rel: &LoadedRelease,
    used: &BTreeSet<String>,
) -> (Vec<SignerRecord>, Vec<PlannedEntry>) {
    let mut records = Vec::new();
    let mut entries = Vec::new();
    for s in rel.signers.iter().filter(|s| used.contains(&s.name)) {
        let path = signer_key_path(&s.name);
        records.push(SignerRecord {
            name: s.name.clone(),
            key_id: s.key_id,
            path: path.clone(),
        });
        entries.push(PlannedEntry {
            path,
            size: s.pem.len() as u64,
            sha256: Sha256Digest::of(&s.pem),
            source: ContentSource::Bytes(s.pem.clone()),
        });
    }
    (records, entries)
}
