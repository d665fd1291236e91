//! The one error type of stoa-updater.

use std::io;
use std::path::PathBuf;

use stoa_format::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum UpdaterError {
    #[error("{0}")]
    Format(#[from] FormatError),
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
    #[error("busy: another apply or rollback holds the site lock {path}")]
    Busy { path: PathBuf },
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    NeedsConfirmation(String),
    #[error("push {image}: {reason}")]
    Push { image: String, reason: String },
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
    #[error("nothing to roll back to: {0}")]
    NothingToRollBack(String),
}

impl UpdaterError {
    /// The process exit code (docs/OPERATIONS.md, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Format(e) if e.is_verification_failure() => 1,
            Self::Format(FormatError::LoadKey { .. } | FormatError::LoadTrust { .. }) => 2,
            Self::Config { .. } | Self::MissingSection { .. } => 2,
            Self::Busy { .. } => 4,
            Self::Refused(_) | Self::NothingToRollBack(_) => 5,
            Self::ApplyFailed { .. } | Self::RollbackFailed { .. } => 6,
            Self::NeedsConfirmation(_) => 7,
            _ => 3,
        }
    }

    /// A short stable name for `--json` error output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Format(e) => e.kind(),
            Self::Config { .. } => "config",
            Self::MissingSection { .. } => "config_missing_section",
            Self::StateCorrupt { .. } => "state_corrupt",
            Self::Io { .. } => "io",
            Self::Busy { .. } => "busy",
            Self::Refused(_) => "refused",
            Self::NeedsConfirmation(_) => "needs_confirmation",
            Self::Push { .. } => "push",
            Self::Database { .. } => "database",
            Self::Helm { .. } => "helm",
            Self::InstallFile { .. } => "install_file",
            Self::ApplyFailed { .. } => "apply_failed",
            Self::RollbackFailed { .. } => "rollback_failed",
            Self::NothingToRollBack(_) => "nothing_to_roll_back",
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
