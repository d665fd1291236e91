//! The command line's own documentation, the same for both programs:
//! `completions bash|zsh|fish` prints a shell completion script
//! (clap_complete), `man` prints the program's man page or, with
//! `--out DIR`, writes one page per command (clap_mangen), and the
//! `--version` text names the bundle format versions the program reads.
//! Everything is generated from the clap definition each program parses
//! with, so it cannot drift from the real flags.

use std::io::Write;
use std::path::PathBuf;

use crate::error::FormatError;

/// `completions <shell>`
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to print a completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `man [--out DIR]`
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `<program>.1` and one `<program>-<command>.1` per command into
    /// this existing folder instead of printing the program's page.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Prints the completion script for `cmd` (the program's whole clap
/// command) to stdout.
pub fn print_completions(mut cmd: clap::Command, args: &CompletionsArgs) {
    let name = cmd.get_name().to_owned();
    let mut buf = Vec::new();
    match args.shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, name, &mut buf)
        }
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, name, &mut buf),
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, name, &mut buf)
        }
    }
    crate::cli::pipe::stdout_written(std::io::stdout().lock().write_all(&buf));
}

/// Prints the man page of `cmd`, or writes every page into `--out`.
pub fn man(cmd: clap::Command, args: &ManArgs) -> Result<(), FormatError> {
    match &args.out {
        Some(dir) => {
            clap_mangen::generate_to(cmd, dir).map_err(|source| FormatError::WriteManPage {
                path: dir.clone(),
                source,
            })
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|source| FormatError::WriteManPage {
                    path: "-".into(),
                    source,
                })?;
            crate::cli::pipe::stdout_written(std::io::stdout().lock().write_all(&buf));
            Ok(())
        }
    }
}

/// The `--version` text: the program's version and the bundle format
/// versions it reads (`format_version` 1, full bundles; 2, deltas).
pub fn version_text(program_version: &str) -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "{program_version} (reads {} bundles of format_version {} (full) and {} (delta))",
            crate::FORMAT_NAME,
            crate::FORMAT_VERSION,
            crate::DELTA_FORMAT_VERSION
        )
    })
}
