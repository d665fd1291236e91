//! Build-time settings that are not in the release manifest: the `created`
//! time and tar mtime, the size limits, how to pull, and how charts are
//! compressed. Made by `build` and `images`, read by the plan and by the
//! chart dependencies it completes.

use std::time::SystemTime;

use stoa_format::Limits;

use crate::sources::registry::PullOptions;

/// Build-time settings that are not in the release manifest.
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// The `created` time, from SOURCE_DATE_EPOCH when set.
    pub created: SystemTime,
    /// The tar mtime of every entry (same source).
    pub mtime: u64,
    pub limits: Limits,
    /// How to reach registries and Helm repositories (used only when the
    /// release pulls something).
    pub pull: PullOptions,
    /// The gzip level of charts packaged from folders or completed with
    /// their dependencies: [`crate::sources::chart::BUNDLE_GZIP`] for `build`.
    pub chart_gzip: flate2::Compression,
}
