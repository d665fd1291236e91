//! Split media parts (docs/FORMAT.md, "Split media parts"): the signed parts
//! index and part names ([`parts`]), cutting a stream into parts and
//! sealing the set ([`split`]), the part-set model and its checked reader
//! ([`partset`]), and Reed–Solomon parity and repair ([`parity`]).
//! One job in one folder: the only place of the crate where modules may use
//! each other both ways.

pub mod parity;
pub mod parts;
pub mod partset;
pub mod split;
