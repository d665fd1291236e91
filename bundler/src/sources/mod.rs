//! Where bundle content comes from: OCI layouts (folders and archives), Helm
//! chart folders and archives, migration folders and plain files, and
//! registries and Helm repositories (`registry`).

pub mod chart;
pub mod migrations;
pub mod oci_layout;
pub mod registry;
