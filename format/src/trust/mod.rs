//! Who may sign a bundle (docs/FORMAT.md, "The signed bytes" and "Trust
//! roots"): Ed25519 keys and trust stores ([`keys`]), and the signed trust
//! root that rotates itself, with its chain rules ([`root`]). Trust knows
//! the carried roots as bytes; it never reads a bundle.

pub mod keys;
pub mod root;
