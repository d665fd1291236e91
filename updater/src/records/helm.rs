//! What the journal and history record of Helm: a release's revisions
//! around an apply ([`HelmRecord`], in state.json and history) and what a
//! rollback did to it ([`HelmBack`]).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HelmRecord {
    pub release: String,
    pub namespace: String,
    /// The revision before the upgrade (None: not installed).
    pub before: Option<u64>,
    /// The revision the upgrade made.
    pub after: Option<u64>,
    /// This first install's `--create-namespace` created the namespace
    /// (it did not exist before): the undo deletes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created_namespace: bool,
}

/// What rollback did to one Helm release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HelmBack {
    pub release: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uninstalled: bool,
}

impl std::fmt::Display for HelmBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rolled_back_to {
            Some(rev) => write!(
                f,
                "{}/{}: rolled back to revision {rev}",
                self.namespace, self.release
            ),
            None => write!(
                f,
                "{}/{}: uninstalled (it was not installed before)",
                self.namespace, self.release
            ),
        }
    }
}
