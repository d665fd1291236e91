//! The byte encodings of a bundle (docs/FORMAT.md, "The tar subset" and
//! "Compression: zstd frames"): SHA-256 digests, the one strict tar subset
//! the writer writes and the reader accepts, and zstd frames. Nothing here
//! knows what an entry means.

pub mod archive;
pub mod digest;
pub mod zframe;
