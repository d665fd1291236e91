//! What both programs do when the reader of their stdout goes away
//! (`stoa-bundler images --json | head`): they exit at once, quietly, with
//! exit code 141, the code a shell shows for a process killed by SIGPIPE.
//! No panic message, no backtrace, no error line. An apply stopped this way
//! is an interrupted operation like any other (resume or rollback).
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with `EPIPE`:
//! `println!` panics with "failed printing to stdout", a checked write
//! returns the error. [`exit_quietly_on_broken_pipe`] (installed first thing
//! by both `main`s) turns the first into the exit; [`stdout_written`] does
//! the same for the second. SIGPIPE itself stays ignored, so a child
//! process (psql, helm, skopeo) closing its stdin early is still an error
//! the updater reports, not a silent death.

use std::io;

/// The exit code of a program whose stdout reader went away: 128 + SIGPIPE.
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Installs the panic hook that ends the process with
/// [`BROKEN_PIPE_EXIT`] when a panic is `println!`'s failed write to a
/// closed stdout; every other panic goes to the previous hook.
pub fn exit_quietly_on_broken_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_stdout_broken_pipe(msg) {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
        previous(info);
    }));
}

/// Whether a panic message is std's failed print to a closed stdout.
fn is_stdout_broken_pipe(msg: &str) -> bool {
    msg.starts_with("failed printing to stdout")
        && (msg.contains("Broken pipe") || msg.contains("os error 32"))
}

/// The result of a checked write to stdout: a broken pipe ends the process
/// with [`BROKEN_PIPE_EXIT`]; any other error is ignored as `println!`'s
/// callers would not see it either.
pub fn stdout_written(r: io::Result<()>) {
    if let Err(e) = r {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(BROKEN_PIPE_EXIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_a_broken_stdout() {
        assert!(is_stdout_broken_pipe(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_stdout_broken_pipe(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_stdout_broken_pipe("index out of bounds"));
    }
}
