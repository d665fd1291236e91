//! What a bundle says (docs/FORMAT.md, "manifest.json", "Entry names",
//! "Migration SQL", "Limits"): the reserved entry names and format versions
//! (below), the signed manifest and its typed fields, entry names and paths,
//! the OCI layout documents, the migration SQL rule, and every size cap of
//! the format ([`limits`]). The rules here are pure: no I/O, no keys.

pub mod constraint;
pub mod fields;
pub mod limits;
pub mod manifest;
pub mod names;
pub mod oci;
pub mod paths;
pub mod sbom;
pub mod sql;
pub mod tools;
mod validate;

/// The name of the first entry of every bundle: the signed manifest.
pub const MANIFEST_PATH: &str = "manifest.json";
/// The folder of signature entries: `signatures/<key id>.sig`.
pub const SIGNATURES_DIR: &str = "signatures/";
/// The value of the manifest's `format` field.
pub const FORMAT_NAME: &str = "stoa-bundle";
/// The format version of a full bundle: what the writer uses unless the
/// bundle is a delta. Readers of version 1 refuse anything newer.
pub const FORMAT_VERSION: u32 = 1;
/// The format version of a delta bundle (one with a `delta` section): the
/// newest this library reads. See docs/FORMAT.md, "Delta bundles".
pub const DELTA_FORMAT_VERSION: u32 = 2;
/// Bundle entries that carry roots: `anchors/root-<version>.json`. The name
/// sorts before every other content folder, so a reader meets them right
/// after the signatures, before it needs the keys they name.
pub const ANCHORS_DIR: &str = "anchors/";
