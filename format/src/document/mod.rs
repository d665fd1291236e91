//! What a bundle says (docs/FORMAT.md, "manifest.json", "Entry names",
//! "Migration SQL", "Limits"): the signed manifest and its typed fields,
//! entry names and paths, the OCI layout documents, the migration SQL rule,
//! and every size cap of the format ([`limits`]). The rules here are pure:
//! no I/O, no keys.

pub mod fields;
pub mod limits;
pub mod manifest;
pub mod names;
pub mod oci;
pub mod paths;
pub mod sql;
