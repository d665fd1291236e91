//! The one error type of the format crate. Every variant is named after the
//! operation or check that failed and carries the entry, path or digest;
//! a part-set failure carries its bad parts ([`BadPart`], [`PartProblem`]).
//! The bottom floor: this file uses nothing else of the crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while writing, reading or verifying a bundle.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("read bundle: {0}")]
    ReadBundle(#[source] io::Error),
    #[error("read bundle {path}: {source}")]
    OpenBundle {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read bundle: the file is empty or holds no tar entry (not a STOA bundle)")]
    EmptyBundle,
    #[error("read bundle: stream ends early {during} (truncated bundle)")]
    Truncated { during: String },
    #[error("read bundle: corrupt tar header at byte {offset} of the tar stream: {reason}")]
    CorruptHeader { offset: u64, reason: String },
    #[error("check entry {path:?}: tar header field {field} is {found:?}, not what the writer writes (bundle was altered)")]
    HeaderField {
        path: String,
        field: String,
        found: String,
    },
    #[error("read bundle: data after the end-of-archive marker (bundle was altered)")]
    TrailingData,
    #[error("read manifest: first entry is {found:?}, expected manifest.json (not a STOA bundle)")]
    ManifestNotFirst { found: String },
    #[error("read manifest: manifest.json is {size} bytes, over the limit of {limit}")]
    ManifestTooLarge { size: u64, limit: u64 },
    #[error("parse manifest: {0}")]
    ParseManifest(#[source] serde_json::Error),
    #[error("parse manifest: format {found:?} is not a STOA bundle format")]
    WrongFormat { found: String },
    #[error(
        "parse manifest: format version {found} is newer than this tool reads (up to {supported}); \
         use a newer stoa-updater"
    )]
    UnsupportedFormatVersion { found: u32, supported: u32 },
    #[error("validate manifest: {0}")]
    InvalidManifest(String),
    #[error("check entry {path:?}: unsafe name: {reason}")]
    UnsafePath { path: String, reason: String },
    #[error("check entry {path:?}: {kind} entries are not allowed, only regular files")]
    NonRegularEntry { path: String, kind: String },
    #[error("check entry {path:?}: not listed in the signed manifest")]
    UnlistedEntry { path: String },
    #[error("check entry {path:?}: appears twice in the bundle")]
    DuplicateEntry { path: String },
    #[error("check entry {path:?}: listed in the manifest but missing from the bundle")]
    MissingEntry { path: String },
    #[error("check entry {path:?}: out of order, expected {expected:?} next")]
    OutOfOrderEntry { path: String, expected: String },
    #[error("check entry {path:?}: size is {found} bytes, the manifest says {declared}")]
    SizeMismatch {
        path: String,
        declared: u64,
        found: u64,
    },
    #[error("check entry {path:?}: sha256 is {found}, the manifest says {expected}")]
    DigestMismatch {
        path: String,
        expected: String,
        found: String,
    },
    #[error("check entry {path:?}: {size} bytes is over the limit of {limit}")]
    EntryTooLarge { path: String, size: u64, limit: u64 },
    #[error("check upstream signature of image {image} by signer {signer:?}: {problem}")]
    UpstreamSignature {
        image: String,
        signer: String,
        problem: Box<SignatureProblem>,
    },
    #[error("check signature {path:?}: {reason}")]
    InvalidSignatureEntry { path: String, reason: String },
    #[error("check signatures: signature by trusted key {key_id} does not verify over manifest.json (manifest or signature altered)")]
    BadSignature { key_id: String },
    #[error("check signatures: no signature by a trusted key (signed by: {signers}; trusted: {trusted})")]
    NoTrustedSignature { signers: String, trusted: String },
    #[error("check signatures: no signature by a trusted key: {key_id} was revoked in root version {version} (trusted: {trusted})")]
    RevokedKey {
        key_id: String,
        version: u64,
        trusted: String,
    },
    #[error("check signatures: {valid} valid signature(s) by distinct trusted keys, the policy needs {required}")]
    ThresholdNotMet { valid: usize, required: usize },
    #[error(
        "check expiry: bundle expired at {expires} (now {now}); pass --allow-expired to accept it"
    )]
    Expired { expires: String, now: String },
    #[error("check times: bundle created {created}, after its own expires {expires}")]
    CreatedAfterExpires { created: String, expires: String },
    #[error("check times: bundle created {created}, more than {skew} after the clock ({now}); fix the clock or the build host's")]
    CreatedInFuture {
        created: String,
        now: String,
        skew: String,
    },
    #[error("load key {path}: {reason}")]
    LoadKey { path: PathBuf, reason: String },
    #[error("load trust {path}: {reason}")]
    LoadTrust { path: PathBuf, reason: String },
    #[error("write key {path}: {source}")]
    WriteKey {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write man page {path}: {source}")]
    WriteManPage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write key {path}: already exists, refusing to overwrite")]
    KeyExists { path: PathBuf },
    #[error("write bundle: {0}")]
    WriteBundle(#[source] io::Error),
    #[error("read source {source_name} for entry {path:?}: {error}")]
    ReadSource {
        path: String,
        source_name: String,
        #[source]
        error: io::Error,
    },
    #[error(
        "read source {source_name} for entry {path:?}: sha256 is {found}, expected {expected}"
    )]
    SourceDigestMismatch {
        path: String,
        source_name: String,
        expected: String,
        found: String,
    },
    #[error("read source {source_name} for entry {path:?}: {found} bytes, expected {expected}")]
    SourceSizeMismatch {
        path: String,
        source_name: String,
        expected: u64,
        found: u64,
    },
    #[error("extract to {path}: {reason}")]
    ExtractTarget { path: PathBuf, reason: String },
    #[error("read bundle: {reason} at byte {offset} of the zstd stream (bundle was altered)")]
    ZstdFrame { offset: u64, reason: String },
    #[error("read bundle: cannot decompress: {0} (corrupt, or not a STOA bundle)")]
    Decompress(String),
    #[error("check migration {path:?}: line {line}: {reason}")]
    UnsafeMigration {
        path: String,
        line: u64,
        reason: String,
    },
    #[error("check SBOM {path:?}: {message}")]
    Sbom { path: String, message: String },
    #[error("check root version {version}: {rule}: {detail}")]
    Root {
        version: String,
        rule: &'static str,
        detail: String,
    },
    #[error("check clock: the clock says {now}, before the clock floor {floor} (the newest created time this site accepted); fix the clock, or pass --ignore-clock-floor (logged)")]
    ClockBeforeFloor { now: String, floor: String },
    #[error("read parts index {path}: {reason}")]
    PartsIndex { path: PathBuf, reason: String },
    #[error("check parts index {path}: {reason}")]
    PartsIndexSignature { path: PathBuf, reason: String },
    #[error("read parts: {reason}")]
    PartsResolve { reason: String },
    #[error("read parts: {path} is an extra file, not listed in the signed parts index {index}")]
    PartUnlisted { path: PathBuf, index: PathBuf },
    #[error("read parts: {path} belongs to {release}, not to {expected}")]
    PartForeign {
        path: PathBuf,
        release: String,
        expected: String,
    },
    #[error("read parts: {what} given twice ({first} and {second})")]
    PartGivenTwice {
        what: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{message}")]
    PartsBad { message: String, bad: Vec<BadPart> },
    #[error("repair parts: {0}")]
    Repair(String),
    #[error("store entry {path:?}: {source}")]
    Sink {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// What is wrong with one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartProblem {
    Missing,
    Size { found: u64, expected: u64 },
    Sha256Mismatch { holds: Option<String> },
    Unreadable(String),
}

/// Why an upstream (cosign simple-signing) image signature was refused
/// (`crate::signature`): one variant per check, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureProblem {
    /// No `sha256-<hex>.sig` manifest (or no layer in it) for a required
    /// signer.
    Missing,
    /// The `.sig` manifest is over its size cap.
    ManifestTooLarge { size: u64, limit: u64 },
    /// The `.sig` manifest is not an image manifest of simple-signing layers.
    NotASignatureManifest(String),
    /// A payload blob is over its size cap.
    PayloadTooLarge { size: u64, limit: u64 },
    /// The payload is not a cosign simple-signing document.
    BadPayload(String),
    /// The payload names another manifest digest.
    DigestMismatch { signed: String, image: String },
    /// The payload names another image.
    IdentityMismatch { signed: String, image: String },
    /// The signature annotation is not base64 of a signature.
    MalformedSignature(String),
    /// The signature does not verify with the signer's key.
    BadSignature { key_id: String },
    /// The signer's public key could not be read.
    BadKey(String),
}

impl std::fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => {
                f.write_str("no signature by this signer (none at the sha256-<hex>.sig tag)")
            }
            Self::ManifestTooLarge { size, limit } => {
                write!(
                    f,
                    "the .sig manifest is {size} bytes, over the limit of {limit}"
                )
            }
            Self::NotASignatureManifest(m) => {
                write!(f, "the .sig manifest is not a signature manifest: {m}")
            }
            Self::PayloadTooLarge { size, limit } => {
                write!(
                    f,
                    "a signature payload is {size} bytes, over the limit of {limit}"
                )
            }
            Self::BadPayload(m) => {
                write!(f, "the payload is not a cosign simple-signing payload: {m}")
            }
            Self::DigestMismatch { signed, image } => {
                write!(
                    f,
                    "the payload signs manifest {signed}, the image is {image}"
                )
            }
            Self::IdentityMismatch { signed, image } => {
                write!(f, "the payload names image {signed}, not {image}")
            }
            Self::MalformedSignature(m) => write!(f, "malformed signature: {m}"),
            Self::BadSignature { key_id } => {
                write!(
                    f,
                    "the signature does not verify with the signer's key {key_id}"
                )
            }
            Self::BadKey(m) => write!(f, "signer key: {m}"),
        }
    }
}

impl std::fmt::Display for PartProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("missing"),
            Self::Size { found, expected } if *found < *expected => write!(
                f,
                "{found} bytes, the signed index says {expected} (truncated)"
            ),
            Self::Size { found, expected } => {
                write!(f, "{found} bytes, the signed index says {expected}")
            }
            Self::Sha256Mismatch { holds: Some(h) } => write!(f, "sha256 mismatch ({h})"),
            Self::Sha256Mismatch { holds: None } => f.write_str("sha256 mismatch"),
            Self::Unreadable(e) => write!(f, "unreadable: {e}"),
        }
    }
}

/// One bad part, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPart {
    /// `false` for a data part, `true` for a parity part.
    pub parity: bool,
    pub number: usize,
    pub name: String,
    pub problem: PartProblem,
}

impl BadPart {
    pub fn describe(&self, data_parts: usize, parity_parts: usize) -> String {
        if self.parity {
            format!(
                "parity part {} of {} ({}): {}",
                self.number, parity_parts, self.name, self.problem
            )
        } else {
            format!(
                "part {} of {} ({}): {}",
                self.number, data_parts, self.name, self.problem
            )
        }
    }
}

impl FormatError {
    /// Names the entry being read in a decompression or truncation error
    /// (which the zstd layer reports without one); others unchanged.
    pub fn while_reading(self, what: &str) -> Self {
        match self {
            Self::Decompress(m) => Self::Decompress(format!("{m}, while reading {what}")),
            Self::Truncated { during } => Self::Truncated {
                during: format!("{during}, while reading {what}"),
            },
            other => other,
        }
    }

    /// A stable, short name of the check that failed, for `--json` output and
    /// for tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ReadBundle(_) | Self::OpenBundle { .. } => "read",
            Self::EmptyBundle => "empty",
            Self::Truncated { .. } => "truncated",
            Self::CorruptHeader { .. } => "corrupt-header",
            Self::TrailingData => "trailing-data",
            Self::HeaderField { .. } => "header-field",
            Self::ManifestNotFirst { .. } => "manifest-not-first",
            Self::ManifestTooLarge { .. } => "manifest-too-large",
            Self::ParseManifest(_) => "manifest-parse",
            Self::WrongFormat { .. } => "wrong-format",
            Self::UnsupportedFormatVersion { .. } => "format-version",
            Self::InvalidManifest(_) => "manifest-invalid",
            Self::UnsafePath { .. } => "unsafe-path",
            Self::NonRegularEntry { .. } => "non-regular",
            Self::UnlistedEntry { .. } => "unlisted",
            Self::DuplicateEntry { .. } => "duplicate",
            Self::MissingEntry { .. } => "missing",
            Self::OutOfOrderEntry { .. } => "out-of-order",
            Self::SizeMismatch { .. } => "size",
            Self::DigestMismatch { .. } => "digest",
            Self::EntryTooLarge { .. } => "too-large",
            Self::UpstreamSignature { .. } => "upstream-signature",
            Self::InvalidSignatureEntry { .. } => "signature-entry",
            Self::BadSignature { .. } => "bad-signature",
            Self::NoTrustedSignature { .. } | Self::RevokedKey { .. } => "untrusted",
            Self::ThresholdNotMet { .. } => "threshold",
            Self::Expired { .. } => "expired",
            Self::CreatedAfterExpires { .. } => "created-after-expires",
            Self::CreatedInFuture { .. } => "created-in-future",
            Self::LoadKey { .. } => "key",
            Self::LoadTrust { .. } => "trust",
            Self::WriteKey { .. } | Self::KeyExists { .. } => "key-write",
            Self::WriteBundle(_) => "write",
            Self::WriteManPage { .. } => "man-write",
            Self::ReadSource { .. } => "source",
            Self::SourceDigestMismatch { .. } | Self::SourceSizeMismatch { .. } => "source-digest",
            Self::Sink { .. } => "sink",
            Self::UnsafeMigration { .. } => "migration-sql",
            Self::Sbom { .. } => "sbom",
            Self::Root { .. } => "root",
            Self::ClockBeforeFloor { .. } => "clock-floor",
            Self::ExtractTarget { .. } => "extract-target",
            Self::PartsIndex { .. } => "parts-index",
            Self::PartsIndexSignature { .. } => "parts-index-signature",
            Self::PartsResolve { .. } => "parts",
            Self::PartUnlisted { .. } => "part-unlisted",
            Self::PartForeign { .. } => "part-foreign",
            Self::PartGivenTwice { .. } => "part-twice",
            Self::PartsBad { .. } => "part",
            Self::Repair(_) => "repair",
            Self::Decompress(_) => "decompress",
            Self::ZstdFrame { .. } => "zstd-frame",
        }
    }

    /// True when the bundle's bytes are at fault (as opposed to local I/O or
    /// configuration). The CLIs map this to their "verification failed" exit
    /// code.
    pub fn is_verification_failure(&self) -> bool {
        !matches!(
            self,
            Self::LoadKey { .. }
                | Self::LoadTrust { .. }
                | Self::WriteKey { .. }
                | Self::KeyExists { .. }
                | Self::WriteBundle(_)
                | Self::ReadSource { .. }
                | Self::SourceDigestMismatch { .. }
                | Self::SourceSizeMismatch { .. }
                | Self::Sink { .. }
                | Self::ExtractTarget { .. }
                | Self::OpenBundle { .. }
                | Self::PartsResolve { .. }
                | Self::Repair(_)
        )
    }
}
