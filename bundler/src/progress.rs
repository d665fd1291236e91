//! Progress bars on a terminal, nothing when piped: the shared byte bar,
//! and per-image pull bars.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use stoa_format::cli::bytes_bar;

/// A download bar for one image: bytes, and blobs done out of total in the
/// message.
pub fn pull_bar(total: u64, image: &str, blobs: usize, quiet: bool) -> ProgressBar {
    if quiet || blobs == 0 || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pull_bar_blobs(&pb, image, 0, blobs);
    pb
}

/// Updates the blob count of a [`pull_bar`].
pub fn pull_bar_blobs(pb: &ProgressBar, image: &str, done: usize, blobs: usize) {
    pb.set_message(format!("pull {image} {done}/{blobs} blobs"));
}
