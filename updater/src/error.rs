//! The one error type of stoa-updater.

use std::io;
use std::path::PathBuf;

use stoa_format::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum UpdaterError {
    #[error("{0}")]
    Format(#[from] FormatError),
    #[error("read bundle {path}: {source}")]
    OpenBundle {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl UpdaterError {
    /// The process exit code (docs/OPERATIONS.md, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Format(e) if e.is_verification_failure() => 1,
            Self::Format(FormatError::LoadKey { .. } | FormatError::LoadTrust { .. }) => 2,
            _ => 3,
        }
    }

    /// A short stable name for `--json` error output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Format(e) => e.kind(),
            Self::OpenBundle { .. } => "read",
        }
    }
}

pub type Result<T, E = UpdaterError> = std::result::Result<T, E>;
