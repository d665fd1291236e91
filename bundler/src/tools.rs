//! `[[tools]]` of the release manifest (docs/RELEASE-MANIFEST.md): the
//! `stoa-updater`, `helm` and `kubectl` binaries a bundle carries as signed
//! entries `tools/<os>/<arch>/<name>` (docs/FORMAT.md, "tools").
//!
//! Checked at build, before anything is written: the name and platform are
//! ones the format knows, the file is a regular file (never a symlink) and an
//! ELF executable for the platform (class, byte order, machine), and, when
//! the platform is the build host's, the binary is run (`--version`; `helm
//! version --short`; `kubectl version --client`; at most 30 s) and must
//! report the `version` written. A binary for another platform cannot be
//! run here: its version is taken as written (a warning says so), and its
//! ELF header is the check.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use toml::Spanned;

use stoa_format::manifest::ToolRecord;
use stoa_format::tools::{self, Platform};
use stoa_format::PlannedEntry;

use crate::error::{BundlerError, Result};
use crate::release::LoadedRelease;

/// How long a carried binary may take to print its version at build.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A `[[tools]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    pub name: Spanned<String>,
    /// A file, relative to the release manifest.
    pub source: Spanned<String>,
    pub platform: Spanned<String>,
    /// What the binary reports.
    pub version: Spanned<String>,
}

/// A `[[tools]]` entry, parsed.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: String,
    /// The file on the build host, as written.
    pub source: String,
    pub platform: Platform,
    pub version: semver::Version,
}

impl LoadedRelease {
    /// One `[[tools]]` table into its typed value; an error names the field
    /// and its line.
    pub(crate) fn parse_tool(&self, i: usize, t: &ToolSpec) -> Result<Tool> {
        let field = |f: &str| format!("tools[{i}].{f}");
        let name = t.name.get_ref();
        if !tools::TOOL_NAMES.contains(&name.as_str()) {
            return Err(self.field_error(
                &field("name"),
                t.name.span(),
                format!("{name:?} is not one of {}", tools::TOOL_NAMES.join(", ")),
            ));
        }
        let platform = tools::platform(t.platform.get_ref()).ok_or_else(|| {
            let known: Vec<&str> = tools::PLATFORMS.iter().map(|p| p.name).collect();
            self.field_error(
                &field("platform"),
                t.platform.span(),
                format!(
                    "{:?} is not one of {}",
                    t.platform.get_ref(),
                    known.join(", ")
                ),
            )
        })?;
        let version = semver::Version::parse(t.version.get_ref()).map_err(|e| {
            self.field_error(
                &field("version"),
                t.version.span(),
                format!("{:?} is not semver: {e}", t.version.get_ref()),
            )
        })?;
        Ok(Tool {
            name: name.clone(),
            source: t.source.get_ref().clone(),
            platform,
            version,
        })
    }
}

/// `[[tools]]`: each binary checked (see the module comment) and carried
/// as `tools/<platform>/<name>`, mode 0755; two tools of one name and
/// platform are refused.
pub fn plan_tools(rel: &LoadedRelease, planned: &mut Vec<PlannedEntry>) -> Result<Vec<ToolRecord>> {
    let mut records: Vec<ToolRecord> = Vec::new();
    for t in &rel.tools {
        let src = rel.resolve(&t.source);
        let path = tools::tool_entry_path(t.platform.name, &t.name);
        let refuse = |message: String| BundlerError::Tool {
            name: format!("{} {}", t.name, t.platform.name),
            path: src.clone(),
            message,
        };
        if records.iter().any(|r| r.path == path) {
            return Err(refuse(format!(
                "a second {} for {} (one per name and platform)",
                t.name, t.platform.name
            )));
        }
        let entry = crate::plan::planned_file(path.clone(), &src, |m| BundlerError::File {
            path: src.clone(),
            message: m,
        })?;
        check_binary(t, &src).map_err(refuse)?;
        planned.push(entry);
        records.push(ToolRecord {
            name: t.name.clone(),
            platform: t.platform.name.to_owned(),
            version: t.version.clone(),
            path,
            mode: "0755".parse().map_err(refuse)?,
        });
    }
    Ok(records)
}

/// The ELF header for the platform; the reported version when the binary
/// can run here.
fn check_binary(t: &Tool, src: &Path) -> std::result::Result<(), String> {
    let mut head = Vec::with_capacity(tools::ELF_HEADER_LEN);
    std::fs::File::open(src)
        .and_then(|f| {
            f.take(tools::ELF_HEADER_LEN as u64)
                .read_to_end(&mut head)
                .map(|_| ())
        })
        .map_err(|e| e.to_string())?;
    tools::check_elf(&head, t.platform)?;
    if tools::host_platform() != Some(t.platform) {
        eprintln!(
            "stoa-bundler: warning: tool {} {}: not run (this host is {}); its version {} is taken as written, its ELF header was checked",
            t.name,
            t.platform.name,
            tools::host_platform().map_or("another platform", |p| p.name),
            t.version
        );
        return Ok(());
    }
    let args = tools::version_args(&t.name);
    let out = run_within(src, args, VERSION_TIMEOUT)?;
    let shown = format!("`{} {}`", t.name, args.join(" "));
    match tools::reported_version(&out) {
        Some(v) if tools::version_matches(&t.version, &v) => Ok(()),
        Some(v) => Err(format!(
            "{shown} reports {v}, the release manifest says {}",
            t.version
        )),
        None => Err(format!(
            "{shown} printed no version: {}",
            stoa_format::text::escape(out.lines().next().unwrap_or("(nothing)"))
        )),
    }
}

/// Runs `program args`, no stdin, and returns its stdout when it exits 0
/// within `limit` (killed and reaped otherwise).
fn run_within(
    program: &Path,
    args: &[&str],
    limit: Duration,
) -> std::result::Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let began = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if began.elapsed() >= limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not print its version within {}s",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let mut text = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.by_ref().take(64 * 1024).read_to_string(&mut text);
    }
    if !status.success() {
        return Err(format!("`{}` {status}", args.join(" ")));
    }
    Ok(text)
}
