//! The one error type of stoa-bundler.

use std::io;
use std::path::PathBuf;

use stoa_format::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum BundlerError {
    #[error("{0}")]
    Format(#[from] FormatError),
    #[error("read release manifest {path}: {source}")]
    ReadReleaseManifest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse release manifest {path}: {message}")]
    ParseReleaseManifest { path: PathBuf, message: String },
    #[error("{path}:{line}: {field}: {message}")]
    InvalidField {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
    #[error("image {image}: read OCI layout {layout}: {message}")]
    OciLayout {
        image: String,
        layout: PathBuf,
        message: String,
    },
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    #[error("chart {path}: {message}")]
    Chart { path: PathBuf, message: String },
    #[error("migrations {dir}: {message}")]
    Migrations { dir: PathBuf, message: String },
    #[error("migration {path}:{line}: {reason}")]
    UnsafeMigration {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("chart release {release}: values file {path}: {message}")]
    ValuesFile {
        release: String,
        path: PathBuf,
        message: String,
    },
    #[error("chart {chart}: dependency {dependency} {constraint:?} from {repository}: {message}")]
    ChartDependency {
        chart: String,
        dependency: String,
        constraint: String,
        repository: String,
        message: String,
    },
    #[error("helm: {message}")]
    HelmNotFound { message: String },
    #[error("render chart {chart}: {message}")]
    Render { chart: String, message: String },
    #[error("chart {chart}: {template}: image {image} is not carried by the release (add it to [[images]], or to [[image_exceptions]] with a reason){more}")]
    ChartImageMissing {
        chart: String,
        template: String,
        image: String,
        more: String,
    },
    #[error("chart {chart}: {template}: image {image} pins a digest the bundle does not have: {message}")]
    ChartImageDigest {
        chart: String,
        template: String,
        image: String,
        message: String,
    },
    #[error("chart {chart}: {template}: image {image:?} is not a valid OCI reference: {message}")]
    ChartImageInvalid {
        chart: String,
        template: String,
        image: String,
        message: String,
    },
    #[error("file {path}: {message}")]
    File { path: PathBuf, message: String },
    /// A `[[tools]]` binary that is not what its table says (exit 2).
    #[error("tool {name} {path}: {message}")]
    Tool {
        name: String,
        path: PathBuf,
        message: String,
    },
    #[error("build --out {path}: the file exists; pass --force to replace it")]
    OutputExists { path: PathBuf },
    #[error("write bundle {path}: {source}")]
    WriteOutput {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image {image}: pull {reference}: {message}")]
    RegistryPull {
        image: String,
        reference: String,
        message: String,
    },
    #[error("image {image}: blob {blob}: {message}")]
    RegistryBlob {
        image: String,
        blob: String,
        message: String,
    },
    #[error("chart {chart}: pull {url}: {message}")]
    ChartPull {
        chart: String,
        url: String,
        message: String,
    },
    #[error("--ca-cert {path}: {message}")]
    CaCert { path: PathBuf, message: String },
    #[error("registry credentials {path}: {message}")]
    AuthFile { path: PathBuf, message: String },
    #[error("registries.conf {path}: {message}")]
    RegistriesConf { path: PathBuf, message: String },
    #[error("image {image}: {message}")]
    RegistryBlocked { image: String, message: String },
    #[error("cache {path}: {message}")]
    Cache { path: PathBuf, message: String },
    #[error("build: at least one --key is needed to sign the bundle")]
    NoSigningKey,
    #[error("build: SOURCE_DATE_EPOCH {0:?} is not a whole number of seconds")]
    SourceDateEpoch(String),
    #[error("root {path}: {message}")]
    RootFile { path: PathBuf, message: String },
    /// `build --root`: the bundle's signing keys would not be trusted by the
    /// newest root it carries (every site that accepts it would refuse it).
    #[error("build --root {path}: {message}")]
    RootSigners {
        path: PathBuf,
        version: u64,
        message: String,
    },
    /// `support open`: the file is not a readable support bundle (not one,
    /// not for this identity, truncated or tampered) (exit 3).
    #[error("support bundle {path}: {reason}")]
    SupportOpen { path: PathBuf, reason: String },
    /// `support open --identity`: not an age identity file (exit 2).
    #[error("support identity {path}: {reason}")]
    SupportIdentity { path: PathBuf, reason: String },
    /// `build --base`: the base release cannot serve as one.
    #[error("build --base {base}: {message}")]
    DeltaBase { base: String, message: String },
}

impl BundlerError {
    /// The process exit code (docs/OPERATIONS.md, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Format(e) if e.is_verification_failure() => 1,
            Self::ParseReleaseManifest { .. }
            | Self::InvalidField { .. }
            | Self::UnsafeMigration { .. }
            | Self::NoSigningKey
            | Self::SourceDateEpoch(_)
            | Self::CaCert { .. }
            | Self::AuthFile { .. }
            | Self::RegistriesConf { .. }
            | Self::RegistryBlocked { .. }
            | Self::OutputExists { .. }
            // the release manifest's own input: a bad migrations folder or
            // Chart.yaml is the author's to fix, like a bad field
            | Self::Migrations { .. }
            | Self::Chart { .. }
            | Self::ValuesFile { .. }
            | Self::Render { .. }
            | Self::ChartDependency { .. }
            | Self::ChartImageMissing { .. }
            | Self::ChartImageDigest { .. }
            | Self::ChartImageInvalid { .. }
            | Self::RootFile { .. }
            | Self::Tool { .. }
            | Self::RootSigners { .. }
            | Self::DeltaBase { .. }
            | Self::SupportIdentity { .. } => 2,
            Self::Format(FormatError::LoadKey { .. } | FormatError::LoadTrust { .. }) => 2,
            _ => 3,
        }
    }

    /// A short stable name for `--json` error output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Format(e) => e.kind(),
            Self::ReadReleaseManifest { .. }
            | Self::ParseReleaseManifest { .. }
            | Self::InvalidField { .. } => "release-manifest",
            Self::OciLayout { .. } | Self::Image { .. } => "image",
            Self::RegistryPull { .. } | Self::RegistryBlob { .. } => "registry",
            Self::ChartPull { .. } => "chart",
            Self::CaCert { .. } => "ca-cert",
            Self::AuthFile { .. } => "credentials",
            Self::RegistriesConf { .. } => "registries-conf",
            Self::RegistryBlocked { .. } => "registry-blocked",
            Self::Cache { .. } => "cache",
            Self::Chart { .. } => "chart",
            Self::Migrations { .. } => "migrations",
            Self::UnsafeMigration { .. } => "migration-sql",
            Self::File { .. } => "file",
            Self::Tool { .. } => "tool",
            Self::ValuesFile { .. } => "values-file",
            Self::HelmNotFound { .. } => "helm",
            Self::Render { .. } => "render",
            Self::ChartDependency { .. } => "chart-dependency",
            Self::ChartImageMissing { .. }
            | Self::ChartImageDigest { .. }
            | Self::ChartImageInvalid { .. } => "chart-image",
            Self::WriteOutput { .. } => "write",
            Self::OutputExists { .. } => "output-exists",
            Self::NoSigningKey => "no-key",
            Self::SourceDateEpoch(_) => "source-date-epoch",
            Self::RootFile { .. } => "root-file",
            Self::RootSigners { .. } => "root-signers",
            Self::DeltaBase { .. } => "delta-base",
            Self::SupportOpen { .. } => "support-open",
            Self::SupportIdentity { .. } => "support-identity",
        }
    }
}

pub type Result<T, E = BundlerError> = std::result::Result<T, E>;
