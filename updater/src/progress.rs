//! Progress bars on a terminal, nothing when piped: the shared ones.

pub use stoa_format::cli::bytes_bar;
