//! The one error type of stoa-updater.

use std::io;
use std::path::PathBuf;

use stoa_format::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum UpdaterError {
    #[error("{0}")]
    Format(#[from] FormatError),
    /// Rendered manifests the pod-image rule refuses, or images the site
    /// registry cannot serve (exit code 3).
    #[error("{0}")]
    PodImages(#[from] stoa_podimages::PodImagesError),
    #[error("read bundle {path}: {source}")]
    OpenBundle {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read bundle {path}: not a regular file ({kind}); copy it to a file first (a bundle is read twice: signature, then content)")]
    BundleNotRegular { path: PathBuf, kind: String },
    #[error("staged content {path} ({entry}) no longer matches its verified digest; refusing to use it (apply the release's bundle again to restage it)")]
    StoreMismatch { path: PathBuf, entry: String },
    #[error("{tool} not found: {reason}")]
    MissingTool { tool: String, reason: String },
    /// `[helm] bin` or `kubectl` = "bundled" and the release cannot give it.
    #[error("[helm] {tool} = \"bundled\": {reason}")]
    BundledTool { tool: &'static str, reason: String },
    #[error("site config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("the bundle needs [{section}] in the site config, which has none")]
    MissingSection { section: String },
    #[error("state {path}: {reason} (refusing to continue: the version floor is never reset; restore the file from backup or inspect it)")]
    StateCorrupt { path: PathBuf, reason: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("busy: {by} holds the site lock {path}")]
    Busy { path: PathBuf, by: String },
    #[error("busy: {0}")]
    Running(String),
    /// `checksums`: "already applied with checksum X, the bundle's is Y".
    #[error("refused: database {database}: migration {migration} was {checksums}: an applied migration was edited")]
    MigrationEdited {
        database: String,
        migration: String,
        checksums: String,
    },
    #[error("refused: {0}")]
    Refused(String),
    /// `self-update`: the carried updater failed a check (`elf`,
    /// `smoke-test`); the running one is unchanged (exit 5).
    #[error("self-update refused: the new updater failed the {check} check: {reason}; the running updater was not changed")]
    SelfUpdate { check: &'static str, reason: String },
    #[error("{0}")]
    NeedsConfirmation(String),
    #[error("push {image}: {reason}")]
    Push { image: String, reason: String },
    /// `prune --registry`: the site registry's catalog could not be read.
    #[error("site registry: list the repositories (GET /v2/_catalog): {reason}")]
    RegistryCatalog { reason: String },
    /// `prune --registry`: a repository's tags could not be read.
    #[error("site registry: list the tags of {repo}: {reason}")]
    RegistryTags { repo: String, reason: String },
    /// `prune --registry`: the digest of `repo:tag` could not be read.
    #[error("site registry: read the manifest of {repo}:{tag}: {reason}")]
    RegistryManifest {
        repo: String,
        tag: String,
        reason: String,
    },
    /// `prune --registry`: a delete the registry failed (other than 405,
    /// which is reported per tag, not an error); `reason` starts with the
    /// manifest digest.
    #[error("site registry: delete {repo}:{tag}: {reason}")]
    RegistryDelete {
        repo: String,
        tag: String,
        reason: String,
    },
    #[error("database {database}: {step}: {reason}")]
    Database {
        database: String,
        step: String,
        reason: String,
    },
    #[error("helm {release}: {step}: {reason}")]
    Helm {
        release: String,
        step: String,
        reason: String,
    },
    /// `mirror-config`: a file it reads or a folder it writes (exit 2).
    #[error("mirror-config {path}: {reason}")]
    MirrorConfig { path: PathBuf, reason: String },
    #[error("install file {dest}: {reason}")]
    InstallFile { dest: String, reason: String },
    #[error("apply {version} failed at step {step}: {cause}; {outcome}")]
    ApplyFailed {
        version: String,
        step: String,
        cause: Box<UpdaterError>,
        outcome: String,
    },
    #[error("rollback failed at step {step}: {cause}")]
    RollbackFailed {
        step: String,
        cause: Box<UpdaterError>,
    },
    /// The site holds more than the state folder knows (a lost or restored
    /// `state_dir`): migrations or Helm charts newer than the bundle.
    #[error("check the site against the state folder: {0}")]
    SiteAhead(String),
    #[error("nothing to roll back to: {0}")]
    NothingToRollBack(String),
    /// A delta whose omitted entries the site's store does not hold whole.
    #[error("{0}")]
    DeltaIncomplete(Box<crate::records::delta::Incomplete>),
    /// `support-bundle`: the vendor's recipient is not an age X25519 key,
    /// or none is given without `--no-encrypt` (exit 2).
    #[error("support-bundle recipient: {reason}")]
    SupportRecipient { reason: String },
    /// `support-bundle --out`: a place the bundle is never written (exit 2).
    #[error("support-bundle --out {path}: {reason}")]
    SupportOut { path: PathBuf, reason: String },
    /// `support-bundle`: the archive could not be written (exit 3).
    #[error("write support bundle {path}: {reason}")]
    SupportBundle { path: PathBuf, reason: String },
    /// A preflight check failed; nothing on site was changed. Carries every
    /// check; `reported`: already printed as JSON by the command.
    #[error("preflight failed, nothing was changed: {}", .report.summary())]
    PreflightFailed {
        report: Box<crate::records::preflight::Preflight>,
        reported: bool,
    },
}

impl UpdaterError {
    /// The process exit code (docs/OPERATIONS.md, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Format(e) if e.is_verification_failure() => 1,
            Self::DeltaIncomplete(_) => 1,
            Self::Format(FormatError::LoadKey { .. } | FormatError::LoadTrust { .. }) => 2,
            Self::Config { .. } | Self::MissingSection { .. } | Self::MirrorConfig { .. } => 2,
            Self::BundleNotRegular { .. } => 2,
            Self::SupportRecipient { .. } | Self::SupportOut { .. } => 2,
            Self::Busy { .. } | Self::Running(_) => 4,
            Self::Refused(_) | Self::NothingToRollBack(_) | Self::MigrationEdited { .. } => 5,
            Self::SiteAhead(_) | Self::SelfUpdate { .. } => 5,
            Self::ApplyFailed { .. } | Self::RollbackFailed { .. } => 6,
            Self::NeedsConfirmation(_) => 7,
            Self::PreflightFailed { .. } => 9,
            _ => 3,
        }
    }

    /// A short stable name for `--json` error output, in the one style of
    /// all three programs (lower case, words joined by `-`; docs/OPERATIONS.md).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Format(e) => e.kind(),
            Self::PodImages(e) => e.kind(),
            Self::OpenBundle { .. } => "read",
            Self::Config { .. } => "config",
            Self::BundleNotRegular { .. } => "bundle-not-regular",
            Self::MissingTool { .. } => "missing-tool",
            Self::BundledTool { .. } => "bundled-tool",
            Self::StoreMismatch { .. } => "store-mismatch",
            Self::MissingSection { .. } => "config-missing-section",
            Self::StateCorrupt { .. } => "state-corrupt",
            Self::Io { .. } => "io",
            Self::Busy { .. } | Self::Running(_) => "busy",
            Self::Refused(_) => "refused",
            Self::SelfUpdate { .. } => "self-update",
            Self::MigrationEdited { .. } => "migration-edited",
            Self::NeedsConfirmation(_) => "needs-confirmation",
            Self::Push { .. } => "push",
            Self::RegistryCatalog { .. } => "registry-catalog",
            Self::RegistryTags { .. } => "registry-tags",
            Self::RegistryManifest { .. } => "registry-manifest",
            Self::RegistryDelete { .. } => "registry-delete",
            Self::Database { .. } => "database",
            Self::Helm { .. } => "helm",
            Self::InstallFile { .. } => "install-file",
            Self::MirrorConfig { .. } => "mirror-config",
            Self::ApplyFailed { .. } => "apply-failed",
            Self::RollbackFailed { .. } => "rollback-failed",
            Self::NothingToRollBack(_) => "nothing-to-roll-back",
            Self::SiteAhead(_) => "site-ahead",
            Self::DeltaIncomplete(_) => "delta-incomplete",
            Self::PreflightFailed { .. } => "preflight-failed",
            Self::SupportRecipient { .. } => "support-recipient",
            Self::SupportOut { .. } => "support-out",
            Self::SupportBundle { .. } => "support-bundle",
        }
    }

    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = UpdaterError> = std::result::Result<T, E>;
