//! The trust a reader starts from ([`TrustBase`]: a plain key folder or a
//! signed root) and how it reaches the keys a bundle is checked against:
//! walking the roots the bundle carries, one version at a time, by the
//! chain rules of [`super::root`]. It takes the carried roots as entries
//! and bytes, so trust never depends on the reader.

use std::path::Path;
use std::time::SystemTime;

use super::keys::TrustStore;
use super::root::{looks_like_root, SignedRoot};
use crate::error::FormatError;
use crate::manifest::Entry;

/// Parses the roots a bundle carries (`anchors/root-<v>.json`: the
/// reader's `Inspection::anchors`, each entry with its bytes).
pub fn carried_roots(anchors: &[(Entry, Vec<u8>)]) -> Result<Vec<SignedRoot>, FormatError> {
    anchors
        .iter()
        .map(|(e, b)| {
            SignedRoot::parse(b).map_err(|x| match x {
                FormatError::Root {
                    version,
                    rule,
                    detail,
                } => FormatError::Root {
                    version,
                    rule,
                    detail: format!("{detail} (bundle entry {})", e.path),
                },
                other => other,
            })
        })
        .collect()
}

/// The trust a reader starts from: a plain key folder (root version 0, its
/// threshold from the caller) or a signed root.
#[derive(Debug, Clone)]
pub enum TrustBase {
    Keys(TrustStore),
    Root(Box<SignedRoot>),
}

impl TrustBase {
    /// A root file (JSON) is parsed and must be signed by a threshold of its
    /// own root keys and not expired; anything else is a `.pub` file or a
    /// folder of them.
    pub fn load(path: &Path, threshold: usize, now: SystemTime) -> Result<Self, FormatError> {
        if path.is_file() {
            let bytes = std::fs::read(path).map_err(|e| FormatError::LoadTrust {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            if looks_like_root(&bytes) {
                let r = SignedRoot::parse(&bytes)?;
                r.check_self(now)?;
                return Ok(Self::Root(Box::new(r)));
            }
        }
        Ok(Self::Keys(
            TrustStore::load(path)?.with_threshold(threshold),
        ))
    }

    /// 0 for a key folder.
    pub fn version(&self) -> u64 {
        match self {
            Self::Keys(_) => 0,
            Self::Root(r) => r.version(),
        }
    }

    pub fn store(&self) -> TrustStore {
        match self {
            Self::Keys(k) => k.clone(),
            Self::Root(r) => r.trust_store(),
        }
    }

    /// The keys a bundle is checked against: those of the newest root
    /// reached by walking the roots it carries from this one, one version at
    /// a time (carried roots not newer are ignored). Returns the roots
    /// accepted on the way. A key folder has no root keys, so carried roots
    /// cannot extend it and are ignored.
    pub fn resolve(
        &self,
        anchors: &[(Entry, Vec<u8>)],
        now: SystemTime,
    ) -> Result<(TrustStore, Vec<SignedRoot>), FormatError> {
        match self {
            Self::Keys(k) => Ok((k.clone(), Vec::new())),
            Self::Root(r) => {
                let chain = r.walk_chain(carried_roots(anchors)?, now, true)?;
                let store = chain.last().unwrap_or(&**r).trust_store();
                Ok((store, chain))
            }
        }
    }
}
