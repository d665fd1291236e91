//! One module per subcommand.

pub mod build;
pub mod diff;
pub mod images;
pub mod inspect;
pub mod keygen;
pub mod root;
pub mod split;
pub mod verify;
