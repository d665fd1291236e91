//! stoa-updater: verifies STOA bundles at an air-gapped site and applies them.

mod cmd;
mod config;
mod db;
mod engine;
mod error;
mod helm;
mod progress;
mod registry;
mod stage;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "stoa-updater", version, about = "Verify and apply STOA offline bundles", long_about = None)]
struct Cli {
    /// The site configuration (plan, apply, rollback, status, history).
    #[arg(long, global = true, value_name = "FILE", default_value = config::DEFAULT_CONFIG)]
    config: PathBuf,
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
    /// Rebuild missing or damaged parts of a split bundle from its parity parts.
    Repair(cmd::repair::Args),
    /// Show what apply would do, changing nothing.
    Plan(cmd::plan::Args),
    /// Verify, stage and apply a bundle to the site.
    Apply(cmd::apply::Args),
    /// Go back to the previous retained release, or revert an interrupted apply.
    Rollback(cmd::rollback::Args),
    /// The installed release and any interrupted operation.
    Status(cmd::status::Args),
    /// Every apply and rollback made on this site.
    History(cmd::history::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let c = &cli.config;
    let (result, json) = match &cli.command {
        Command::Verify(a) => (cmd::verify::run(a), a.json),
        Command::Inspect(a) => (cmd::inspect::run(a), a.json),
        Command::Extract(a) => (cmd::extract::run(a), a.json),
        Command::Repair(a) => (cmd::repair::run(a), a.json),
        Command::Plan(a) => (cmd::plan::run(c, a), a.json),
        Command::Apply(a) => (cmd::apply::run(c, a), a.json),
        Command::Rollback(a) => (cmd::rollback::run(c, a), a.json),
        Command::Status(a) => (cmd::status::run(c, a), a.json),
        Command::History(a) => (cmd::history::run(c, a), a.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // one line, whatever a tool or a registry wrote
            let msg = e
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" | ");
            eprintln!("stoa-updater: error: {msg}");
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": {"kind": e.kind(), "exit_code": e.exit_code(), "message": msg}})
                );
            }
            ExitCode::from(e.exit_code())
        }
    }
}
