//! stoa-bundler: builds one signed, verifiable bundle of OCI images, Helm
//! charts, database migrations and files.

mod cmd;
mod error;
mod plan;
mod progress;
mod release;
mod sources;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "stoa-bundler", version, about = "Build signed STOA offline bundles", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new Ed25519 signing key pair.
    Keygen(cmd::keygen::Args),
    /// Build a signed bundle from a release manifest.
    Build(cmd::build::Args),
    /// Verify a bundle: trusted signature, then every entry's size and digest.
    Verify(cmd::verify::Args),
    /// Show what a bundle holds.
    Inspect(cmd::inspect::Args),
    /// Cut an existing bundle into media-sized parts with a signed index.
    Split(cmd::split::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (result, json) = match &cli.command {
        Command::Keygen(a) => (cmd::keygen::run(a), a.json),
        Command::Build(a) => (cmd::build::run(a), a.json),
        Command::Verify(a) => (cmd::verify::run(a), a.json),
        Command::Inspect(a) => (cmd::inspect::run(a), a.json),
        Command::Split(a) => (cmd::split::run(a), a.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoa-bundler: error: {e}");
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
