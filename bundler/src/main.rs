//! stoa-bundler: builds one signed, verifiable bundle of OCI images, Helm
//! charts, database migrations and files.

mod cmd;
mod deps;
mod error;
mod images;
mod plan;
mod progress;
mod release;
mod sbom;
mod settings;
mod signatures;
mod sources;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "stoa-bundler", version = stoa_format::cli::docs::version_text(env!("CARGO_PKG_VERSION")), about = "Build signed STOA offline bundles", long_about = None)]
struct Cli {
    #[command(flatten)]
    out: stoa_format::cli::Output,
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
    /// List every image the release's charts will run (rendered with real
    /// Helm) and whether the release carries it.
    Images(cmd::images::Args),
    /// Show what a bundle holds.
    Inspect(cmd::inspect::Args),
    /// Verify a bundle, then print its signed CycloneDX SBOM (sbom.cdx.json).
    Sbom(cmd::sbom::Args),
    /// Make, rotate and show signed trust roots.
    Root(cmd::root::Args),
    /// Cut an existing bundle into media-sized parts with a signed index.
    Split(cmd::split::Args),
    /// What changed between two releases, and the size of a delta.
    Diff(cmd::diff::Args),
    /// A site's support bundle: open (decrypt, summarise, --extract).
    Support(cmd::support::Args),
    /// Print a shell completion script: bash, zsh or fish.
    Completions(stoa_format::cli::docs::CompletionsArgs),
    /// Print the man page, or write every command's page into --out DIR.
    Man(stoa_format::cli::docs::ManArgs),
}

fn main() -> ExitCode {
    // stdout's reader gone (`| head`): exit 141 quietly (docs: README exit codes)
    stoa_format::cli::pipe::exit_quietly_on_broken_pipe();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // a usage error under --json is JSON too, exit 2
        Err(e) if argv.iter().skip(1).any(|a| a == "--json") => {
            let msg = stoa_format::cli::usage_message(&e);
            eprintln!("stoa-bundler: error: {msg}");
            println!(
                "{}",
                serde_json::json!({"ok": false, "error": {"kind": "usage", "exit_code": 2, "message": msg}})
            );
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let out = cli.out;
    let result = match &cli.command {
        Command::Keygen(a) => cmd::keygen::run(a, out),
        Command::Build(a) => cmd::build::run(a, out),
        Command::Verify(a) => cmd::verify::run(a, out),
        Command::Images(a) => cmd::images::run(a, out),
        Command::Inspect(a) => cmd::inspect::run(a, out),
        Command::Sbom(a) => cmd::sbom::run(a, out),
        Command::Root(a) => cmd::root::run(a, out),
        Command::Split(a) => cmd::split::run(a, out),
        Command::Diff(a) => cmd::diff::run(a, out),
        Command::Support(a) => cmd::support::run(a, out),
        Command::Completions(a) => {
            stoa_format::cli::docs::print_completions(<Cli as clap::CommandFactory>::command(), a);
            Ok(())
        }
        Command::Man(a) => stoa_format::cli::docs::man(<Cli as clap::CommandFactory>::command(), a)
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoa-bundler: error: {e}");
            if out.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": {"kind": e.kind(), "exit_code": e.exit_code(), "message": e.to_string()}})
                );
            }
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag of every subcommand says what it does in `--help`.
    #[test]
    fn every_flag_has_a_description() {
        let mut missing = Vec::new();
        for sc in Cli::command().get_subcommands() {
            for a in sc.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || a.is_positional() {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{} --{id}", sc.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }
}
