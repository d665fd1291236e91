//! Reading a bundle (docs/FORMAT.md, "Verification order"): the one verifier
//! ([`reader`]), where the bytes come from ([`source`]: one file or a part
//! set, resolved from what the operator typed), and the extraction of a
//! verified bundle ([`extract`]).

pub mod extract;
pub mod reader;
pub mod source;
