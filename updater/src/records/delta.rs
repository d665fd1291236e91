//! A delta bundle's vocabulary: why one cannot be applied here
//! ([`Incomplete`], carried by `delta-incomplete`), and the `delta` field of
//! an apply's history line and of plan's JSON. The store check itself is
//! `crate::delta`.

use serde::{Deserialize, Serialize};

/// Why a delta cannot be applied here: its blobs the store lacks (or holds
/// damaged), the base it was built on, and what would provide them.
#[derive(Debug)]
pub struct Incomplete {
    pub release: String,
    /// One line per blob: path, digest, size and what is wrong.
    pub missing: Vec<String>,
    pub base: String,
    pub remedy: String,
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused: delta {} relies on {} blob(s) this site does not hold: {}; it was built on {}; {}",
            self.release,
            self.missing.len(),
            self.missing.join("; "),
            self.base,
            self.remedy
        )
    }
}

/// A release a delta was built on, as history records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseHistory {
    pub name: String,
    pub version: String,
    pub manifest_sha256: String,
}

/// The `delta` field of an apply's history line (and of plan's JSON): the
/// base, the whole chain, and what the bundle left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaHistory {
    pub base: BaseHistory,
    pub chain: Vec<BaseHistory>,
    pub omitted_entries: usize,
    pub omitted_bytes: u64,
}
