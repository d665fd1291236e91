//! The STOA offline bundle format.
//!
//! A bundle is a tar stream compressed with zstd. Its first entry is a small
//! JSON manifest (`manifest.json`) that lists every other entry with its size
//! and SHA-256; next come one raw Ed25519 signature per signing key
//! (`signatures/<key id>.sig`) over the exact manifest bytes; then the content,
//! in the order the manifest lists it. See `docs/FORMAT.md`.
//!
//! This crate is shared by the bundler (writer) and the updater (reader): both
//! use the same verification code. It has no network code.
//!
//! The folders follow docs/FORMAT.md, bottom up: `error.rs` and `io/` (how
//! bytes move), `codec/` (digests, the tar subset, zstd frames), `document/`
//! (what a bundle says: the manifest, its fields and names, every size cap)
//! and `trust/` (keys and trust roots), `media/` (split parts and parity),
//! `read/` (the one verifier and where a bundle is read from), then
//! `writer.rs`, `delta.rs` and `cli/`. This file is the roof: the folders
//! are private, and each module outside code uses has one public path here
//! (`stoa_format::manifest`, `stoa_format::source`, …).

// The folders, bottom up: io and error, then codec, document and trust,
// media, read, and on top writer, delta and cli (docs/FORMAT.md's order).
mod codec;
mod document;
mod error;
mod io;
mod media;
mod read;
mod trust;

#[cfg(feature = "cli")]
pub mod cli;
pub mod delta;
pub mod text;
pub mod writer;

// The public module paths (`stoa_format::manifest::…`, `stoa_format::source::…`),
// one alias per module the bundler, the updater, the tests and the fuzzers reach.
#[cfg(feature = "cli")]
pub use cli::report;
pub use codec::{archive, digest};
pub use document::{constraint, fields, limits, manifest, names, oci, paths, sbom, sql, tools};
pub use io::{durable, pipe, retry};
pub use media::{parity, parts};
pub use read::{extract, reader, source};
pub use trust::{keys, root, signature};

pub use digest::Sha256Digest;
pub use document::limits::Limits;
pub use error::{BadPart, FormatError, PartProblem, SignatureProblem};
pub use keys::{KeyId, SigningKeyPair, TrustStore};
pub use manifest::BundleManifest;
pub use reader::{
    BootstrapVerified, ContentSink, Inspection, NullSink, VerifiedBundle, VerifyOptions,
};
pub use writer::{BundleWriter, ContentSource, PlannedEntry, WriteSummary};

pub use document::{
    DELTA_FORMAT_VERSION, FORMAT_NAME, FORMAT_VERSION, MANIFEST_PATH, SIGNATURES_DIR,
};

/// Result type of this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;
