//! One module per subcommand.

pub mod build;
pub mod inspect;
pub mod keygen;
pub mod root;
pub mod verify;
