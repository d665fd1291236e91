//! stoa-updater: verifies STOA bundles at an air-gapped site and applies them.

use stoa_updater::{audit, cmd, config, postrender};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "stoa-updater", version, about = "Verify and apply STOA offline bundles", long_about = None)]
struct Cli {
    /// The site configuration, for plan, apply, rollback, status and history
    /// [default: /etc/stoa/updater.toml]. Given before the subcommand;
    /// verify, inspect and extract take none.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
    /// Every apply and rollback made on this site (--audit: every audited command).
    History(cmd::history::Args),
    /// The site's signed trust root: init, update, show.
    Trust(cmd::trust::Args),
    /// Helm's post-renderer: rewrites rendered manifests (stdin) so every pod
    /// image comes from the site registry (run by Helm, not by hand).
    #[command(name = "post-render", hide = true)]
    PostRender(postrender::Args),
}

impl Command {
    /// The name an audit line records, for the commands that are audited.
    fn audit_name(&self) -> Option<&'static str> {
        match self {
            Self::Verify(_) => Some("verify"),
            Self::Extract(_) => Some("extract"),
            Self::Repair(_) => Some("repair"),
            Self::Plan(_) => Some("plan"),
            Self::Apply(_) => Some("apply"),
            Self::Rollback(_) => Some("rollback"),
            Self::Trust(a) => a.audit_name(),
            Self::Inspect(_) | Self::Status(_) | Self::History(_) | Self::PostRender(_) => None,
        }
    }
}

/// Whether the command line asks for `--json` (also when it does not parse).
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    args.iter().skip(1).any(|a| a == "--json")
}

/// One line, whatever a tool or a registry wrote.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A usage error: exit 2, and JSON on stdout under `--json`.
fn usage_error(msg: &str, json: bool) -> ExitCode {
    eprintln!("stoa-updater: error: {msg}");
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": false, "error": {"kind": "usage", "exit_code": 2, "message": msg}})
        );
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    // stdout's reader gone (`| head`): exit 141 quietly (docs: README exit codes)
    stoa_format::cli::pipe::exit_quietly_on_broken_pipe();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json = wants_json(&argv);
    let cli = match parse_cli(&argv, json) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let given = cli.config.clone();
    let c = given
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let c = &c;
    let no_config = |name: &str| {
        given.as_ref().map(|_| {
            format!("--config is not used by {name} (it reads no site config); use --trust")
        })
    };
    let (result, json) = match &cli.command {
        Command::Verify(a) => match no_config("verify") {
            Some(m) => return usage_error(&m, a.json),
            None => (cmd::verify::run(a).map(|()| 0), a.json),
        },
        Command::Inspect(a) => match no_config("inspect") {
            Some(m) => return usage_error(&m, a.json),
            None => (cmd::inspect::run(a).map(|()| 0), a.json),
        },
        Command::Extract(a) => match no_config("extract") {
            Some(m) => return usage_error(&m, a.json),
            None => (cmd::extract::run(a).map(|()| 0), a.json),
        },
        Command::Repair(a) => match no_config("repair") {
            Some(m) => return usage_error(&m, a.json),
            None => (cmd::repair::run(a).map(|()| 0), a.json),
        },
        Command::PostRender(a) => match no_config("post-render") {
            Some(m) => return usage_error(&m, false),
            None => (postrender::run(a).map(|()| 0), false),
        },
        Command::Plan(a) => (cmd::plan::run(c, a).map(|()| 0), a.json),
        Command::Apply(a) => (cmd::apply::run(c, a).map(|()| 0), a.json),
        Command::Rollback(a) => (cmd::rollback::run(c, a).map(|()| 0), a.json),
        Command::Status(a) => (cmd::status::run(c, a), a.json),
        Command::History(a) => (cmd::history::run(c, a).map(|()| 0), a.json),
        Command::Trust(a) => (cmd::trust::run(c, a).map(|()| 0), a.json()),
    };
    if let Some(name) = cli.command.audit_name() {
        // only where a site config names a state_dir (docs/OPERATIONS.md)
        if let Ok(cfg) = config::SiteConfig::load(c) {
            if let Err(e) = audit::record(&cfg.state_dir, name, result.as_ref().map(|_| ())) {
                eprintln!("stoa-updater: warning: audit log: {e}");
            }
        }
    }
    finish(result, json)
}

/// The command line, or how the process ends at once (help, version, a
/// usage error).
fn parse_cli(argv: &[std::ffi::OsString], json: bool) -> Result<Cli, ExitCode> {
    match Cli::try_parse_from(argv) {
        Ok(c) => Ok(c),
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) if json => {
            let text = e.render().to_string();
            let msg = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("usage error")
                .trim_start_matches("error: ")
                .to_owned();
            Err(usage_error(&msg, true))
        }
        Err(e) => e.exit(),
    }
}

/// The exit: the command's code, or its error as one line on stderr (and as
/// JSON on stdout with `--json`) and the error's documented code.
fn finish(result: stoa_updater::error::Result<u8>, json: bool) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = one_line(&e.to_string());
            eprintln!("stoa-updater: error: {msg}");
            // a command that printed its own JSON report (plan, apply after
            // a failed preflight) already holds this error in it
            let reported = matches!(
                e,
                stoa_updater::error::UpdaterError::PreflightFailed { reported: true, .. }
            );
            if json && !reported {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": {"kind": e.kind(), "exit_code": e.exit_code(), "message": msg}})
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
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                // flags; positionals are named in the usage line
                if id == "help" || id == "version" || a.is_positional() {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sc in cmd.get_subcommands() {
                if sc.get_about().is_none() {
                    missing.push(format!("{path} {} (about)", sc.get_name()));
                }
                walk(sc, &format!("{path} {}", sc.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "stoa-updater", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn config_is_not_offered_where_it_is_ignored() {
        let cli = Cli::command();
        for sc in ["verify", "inspect", "extract"] {
            let c = cli.find_subcommand(sc).unwrap();
            assert!(
                c.get_arguments().all(|a| a.get_id() != "config"),
                "{sc} offers --config"
            );
        }
        assert!(
            Cli::try_parse_from(["u", "verify", "b", "--trust", "t", "--config", "c"]).is_err()
        );
    }
}
