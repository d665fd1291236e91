//! stoa-updater: verifies STOA bundles at an air-gapped site and applies them.

mod cmd;
mod error;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "stoa-updater", version, about = "Verify and apply STOA offline bundles", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify a bundle: trusted signature, then every entry's size and digest.
    Verify(cmd::verify::Args),
    /// Show what a bundle holds.
    Inspect(cmd::inspect::Args),
    /// Verify and extract a bundle's content into a new folder.
    Extract(cmd::extract::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (result, json) = match &cli.command {
        Command::Verify(a) => (cmd::verify::run(a), a.json),
        Command::Inspect(a) => (cmd::inspect::run(a), a.json),
        Command::Extract(a) => (cmd::extract::run(a), a.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoa-updater: error: {e}");
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": {"kind": e.kind(), "message": e.to_string()}})
                );
            }
            ExitCode::from(e.exit_code())
        }
    }
}
