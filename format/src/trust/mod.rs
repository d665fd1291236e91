//! Who may sign a bundle (docs/FORMAT.md, "The signed bytes" and "Trust
//! roots"): Ed25519 keys and trust stores ([`keys`]), the signed trust
//! root that rotates itself, with its chain rules ([`root`]), and the trust
//! a reader starts from (`base.rs`, [`root::TrustBase`]). Trust knows the
//! carried roots as entries and bytes; it never reads a bundle.

mod base;
pub mod keys;
pub mod root;
pub mod signature;
