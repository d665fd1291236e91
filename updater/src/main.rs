//! stoa-updater: verifies STOA bundles at an air-gapped site and applies them.

use stoa_updater::error::Result;
use stoa_updater::{audit, cmd, config, postrender};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "stoa-updater", version = stoa_format::cli::docs::version_text(env!("CARGO_PKG_VERSION")), about = "Verify and apply STOA offline bundles", long_about = None)]
struct Cli {
    /// The site configuration, for plan, apply, rollback, prune, status,
    /// history, trust, serve, self-update, and verify without --trust [default:
    /// $STOA_UPDATER_CONFIG, else /etc/stoa/updater.toml]. Before or after
    /// the subcommand of a site command; inspect, extract and repair refuse
    /// it, and verify with --trust.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Show every child command (psql, pg_dump, pg_restore, helm, kubectl)
    /// on stderr with its time; never a password.
    #[arg(short = 'v', long, global = true)]
    verbose: bool,
    #[command(flatten)]
    out: stoa_format::cli::Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify a bundle: trusted signature, then every entry's size and digest.
    Verify(cmd::verify::Args),
    /// Show what a bundle holds.
    Inspect(cmd::inspect::Args),
    /// Verify a bundle, then print its signed CycloneDX SBOM (sbom.cdx.json).
    Sbom(cmd::sbom::Args),
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
    /// Take the site back to nothing installed, as rollback does (needs --yes;
    /// --dry-run shows what it would undo).
    Remove(cmd::remove::Args),
    /// The state folder: `state rebuild` makes it again from the site and
    /// the bundles installed on it.
    State(cmd::state::Args),
    /// Remove what no retained release needs: store blobs, staged folders,
    /// snapshots, post-render folders; --registry: the site registry's tags
    /// (--dry-run: list them).
    Prune(cmd::prune::Args),
    /// The installed release and any interrupted operation.
    Status(cmd::status::Args),
    /// Every apply and rollback made on this site (--audit: every audited command).
    History(cmd::history::Args),
    /// What the vendor needs to help this site, redacted and encrypted to
    /// the vendor (reads only: no lock, nothing written into state_dir).
    SupportBundle(cmd::support_bundle::Args),
    /// The site's signed trust root: init, update, show.
    Trust(cmd::trust::Args),
    /// Replace this updater with the stoa-updater a verified bundle carries
    /// (--revert: put the previous one back).
    #[command(name = "self-update")]
    SelfUpdate(cmd::self_update::Args),
    /// Serve the site store as a read-only OCI registry (every retained release's images).
    Serve(cmd::serve::Args),
    /// Write the nodes' mirror configuration (containerd, CRI-O, k3s,
    /// OpenShift) sending the releases' source registries to the site.
    #[command(name = "mirror-config")]
    MirrorConfig(cmd::mirror_config::Args),
    /// Print a shell completion script: bash, zsh or fish.
    Completions(stoa_format::cli::docs::CompletionsArgs),
    /// Print the man page, or write every command's page into --out DIR.
    Man(stoa_format::cli::docs::ManArgs),
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
            Self::Remove(_) => Some("remove"),
            Self::State(a) => a.audit_name(),
            Self::Prune(_) => Some("prune"),
            Self::Trust(a) => a.audit_name(),
            Self::SelfUpdate(_) => Some("self-update"),
            Self::Inspect(_)
            | Self::Sbom(_)
            | Self::Status(_)
            | Self::History(_)
            | Self::Serve(_)
            | Self::MirrorConfig(_)
            | Self::SupportBundle(_)
            | Self::PostRender(_)
            | Self::Completions(_)
            | Self::Man(_) => None,
        }
    }
}

/// Whether the command line asks for `--json` (also when it does not parse).
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    args.iter().skip(1).any(|a| a == "--json")
}

/// One line, whatever a tool, a registry or a bundle wrote: its lines
/// joined, control characters escaped by the one shared function.
fn one_line(text: &str) -> String {
    text.lines()
        .map(|l| stoa_format::text::escape(l.trim()).into_owned())
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
    stoa_updater::tool::set_verbose(cli.verbose);
    let given = cli.config.clone();
    // $STOA_UPDATER_CONFIG is a default, never a refusal for verify/inspect
    let c = given
        .clone()
        .or_else(|| std::env::var_os(config::CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let c = &c;
    let no_config = |name: &str| {
        given.as_ref().map(|_| {
            format!("--config is not used by {name} (it reads no site config); use --trust")
        })
    };
    let out = cli.out;
    let name = cli.command.audit_name();
    // a site command: the site config loaded once, here, and handed to it
    let on_site = |run: &dyn Fn(&stoa_updater::engine::Site) -> Result<u8>| -> Result<u8> {
        let site = cmd::site(c)?;
        audited(name, Some(&site.cfg.state_dir), &|| run(&site))
    };
    // verify, extract, repair: audited where a site config is found
    let off_site = |run: &dyn Fn() -> Result<u8>| -> Result<u8> {
        let cfg = name.and_then(|_| config::SiteConfig::load(c).ok());
        audited(name, cfg.as_ref().map(|c| c.state_dir.as_path()), run)
    };
    let result = match &cli.command {
        // --trust: the desk check; else the site's trust in force
        Command::Verify(a) => match (&a.trust, &given) {
            (Some(_), Some(_)) => {
                return usage_error(
                    "verify takes --trust (a key, a key folder or a root) or --config (the site's trust in force), not both",
                    out.json,
                )
            }
            (Some(_), None) => off_site(&|| cmd::verify::run(a, None, out).map(|()| 0)),
            // nothing says where the site is, and its default is not there
            (None, None) if std::env::var_os(config::CONFIG_ENV).is_none() && !c.exists() => {
                return usage_error(
                    &format!(
                        "verify needs --trust <PATH> (a key, a key folder or a root), or a site config: --config FILE, ${}, or {} (not found)",
                        config::CONFIG_ENV,
                        config::DEFAULT_CONFIG
                    ),
                    out.json,
                )
            }
            (None, _) => on_site(&|s| cmd::verify::run(a, Some(s), out).map(|()| 0)),
        },
        // as verify: --trust, else the site's trust in force
        Command::Sbom(a) => match (&a.trust, &given) {
            (Some(_), Some(_)) => {
                return usage_error(
                    "sbom takes --trust (a key, a key folder or a root) or --config (the site's trust in force), not both",
                    out.json,
                )
            }
            (Some(_), None) => cmd::sbom::run(a, None, out).map(|()| 0),
            (None, None) if std::env::var_os(config::CONFIG_ENV).is_none() && !c.exists() => {
                return usage_error(
                    &format!(
                        "sbom needs --trust <PATH> (a key, a key folder or a root), or a site config: --config FILE, ${}, or {} (not found)",
                        config::CONFIG_ENV,
                        config::DEFAULT_CONFIG
                    ),
                    out.json,
                )
            }
            (None, _) => on_site(&|s| cmd::sbom::run(a, Some(s), out).map(|()| 0)),
        },
        Command::Inspect(a) => match no_config("inspect") {
            Some(m) => return usage_error(&m, out.json),
            None => cmd::inspect::run(a, out).map(|()| 0),
        },
        Command::Extract(a) => match no_config("extract") {
            Some(m) => return usage_error(&m, out.json),
            None => off_site(&|| cmd::extract::run(a, out).map(|()| 0)),
        },
        Command::Repair(a) => match no_config("repair") {
            Some(m) => return usage_error(&m, out.json),
            None => off_site(&|| cmd::repair::run(a, out).map(|()| 0)),
        },
        Command::PostRender(a) => match no_config("post-render") {
            Some(m) => return usage_error(&m, false),
            None => postrender::run(a).map(|()| 0),
        },
        Command::Plan(a) => on_site(&|s| cmd::plan::run(s, a, out).map(|()| 0)),
        Command::Apply(a) => on_site(&|s| cmd::apply::run(s, a, out).map(|()| 0)),
        Command::Rollback(a) => on_site(&|s| cmd::rollback::run(s, a, out).map(|()| 0)),
        Command::Remove(a) => on_site(&|s| cmd::remove::run(s, a, out).map(|()| 0)),
        Command::State(a) => on_site(&|s| cmd::state::run(s, a, out).map(|()| 0)),
        Command::Prune(a) => on_site(&|s| cmd::prune::run(s, a, out).map(|()| 0)),
        Command::Status(a) => on_site(&|s| cmd::status::run(s, a, out)),
        Command::History(a) => on_site(&|s| cmd::history::run(s, a, out).map(|()| 0)),
        Command::Trust(a) => on_site(&|s| cmd::trust::run(s, a, out).map(|()| 0)),
        Command::SelfUpdate(a) => on_site(&|s| cmd::self_update::run(s, a, out).map(|()| 0)),
        // reads the config itself: it must work when it does not load
        Command::SupportBundle(a) => cmd::support_bundle::run(c, a, out),
        Command::Serve(a) => on_site(&|s| cmd::serve::run(s, a, out, cli.verbose).map(|()| 0)),
        Command::MirrorConfig(a) => on_site(&|s| cmd::mirror_config::run(s, a, out).map(|()| 0)),
        Command::Completions(a) => {
            stoa_format::cli::docs::print_completions(<Cli as clap::CommandFactory>::command(), a);
            Ok(0)
        }
        Command::Man(a) => stoa_format::cli::docs::man(<Cli as clap::CommandFactory>::command(), a)
            .map(|()| 0)
            .map_err(Into::into),
    };
    finish(result, out.json)
}

/// An audited command between its `started` line and its result line, only
/// where a site config names a state_dir (docs/OPERATIONS.md); a failure to
/// write the audit log is a warning, never the command's result.
fn audited(
    name: Option<&'static str>,
    state_dir: Option<&std::path::Path>,
    run: &dyn Fn() -> Result<u8>,
) -> Result<u8> {
    let (Some(name), Some(sd)) = (name, state_dir) else {
        return run();
    };
    if let Err(e) = audit::start(sd, name) {
        eprintln!("stoa-updater: warning: audit log: {e}");
    }
    let result = run();
    if let Err(e) = audit::record(sd, name, result.as_ref().map(|_| ())) {
        eprintln!("stoa-updater: warning: audit log: {e}");
    }
    result
}

/// The commands that read the site config.
const SITE_COMMANDS: [&str; 14] = [
    "verify",
    "plan",
    "apply",
    "rollback",
    "remove",
    "prune",
    "status",
    "history",
    "trust",
    "serve",
    "state",
    "mirror-config",
    "support-bundle",
    "self-update",
];

/// `--config FILE` (or `--config=FILE`) given after a site command's name
/// moves before it, where clap reads it: `status --config x` is
/// `--config x status`. After `--` nothing moves; inspect, extract and
/// repair keep theirs, so clap refuses it there.
fn config_first(mut argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut i = 1;
    // skip the options before the subcommand (only --config takes a value)
    while i < argv.len() {
        if argv[i] == "--config" {
            i += 2;
        } else if argv[i].to_string_lossy().starts_with('-') {
            i += 1;
        } else {
            break;
        }
    }
    let Some(sub) = argv.get(i) else {
        return argv;
    };
    if !SITE_COMMANDS.iter().any(|c| sub == *c) {
        return argv;
    }
    let sub_at = i;
    let mut moved = Vec::new();
    let mut j = sub_at + 1;
    while j < argv.len() {
        if argv[j] == "--" {
            break;
        }
        if argv[j] == "--config" && j + 1 < argv.len() {
            moved.extend(argv.drain(j..j + 2));
        } else if argv[j].to_string_lossy().starts_with("--config=") {
            moved.push(argv.remove(j));
        } else {
            j += 1;
        }
    }
    argv.splice(sub_at..sub_at, moved);
    argv
}

/// The command line, or how the process ends at once (help, version, a
/// usage error).
fn parse_cli(argv: &[std::ffi::OsString], json: bool) -> std::result::Result<Cli, ExitCode> {
    match Cli::try_parse_from(config_first(argv.to_vec())) {
        Ok(c) => Ok(c),
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) if json => Err(usage_error(&stoa_format::cli::usage_message(&e), true)),
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
        for sc in ["inspect", "extract"] {
            let c = cli.find_subcommand(sc).unwrap();
            assert!(
                c.get_arguments().all(|a| a.get_id() != "config"),
                "{sc} offers --config"
            );
        }
        let argv = |v: &[&str]| config_first(v.iter().map(std::ffi::OsString::from).collect());
        assert!(Cli::try_parse_from(argv(&[
            "u", "inspect", "b", "--trust", "t", "--config", "c"
        ]))
        .is_err());
    }

    /// `status --config c` is `--config c status`, `--config=c` too.
    #[test]
    fn config_after_a_site_command_moves_before_it() {
        let argv = |v: &[&str]| config_first(v.iter().map(std::ffi::OsString::from).collect());
        for v in [
            argv(&["u", "status", "--config", "c", "--json"]),
            argv(&["u", "status", "--json", "--config=c"]),
            argv(&["u", "--config", "c", "status", "--json"]),
        ] {
            let cli = Cli::try_parse_from(&v).unwrap();
            assert_eq!(
                cli.config.as_deref(),
                Some(std::path::Path::new("c")),
                "{v:?}"
            );
        }
        // after `--` it is an argument, not the flag
        let v = argv(&["u", "apply", "--", "--config"]);
        assert_eq!(v.last().unwrap(), "--config");
    }
}
