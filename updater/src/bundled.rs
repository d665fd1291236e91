//! `[helm] bin = "bundled"` and `[helm] kubectl = "bundled"`
//! (docs/OPERATIONS.md, *Helm and kubectl from the release*): the site runs
//! the Helm and kubectl a release carries (`[[tools]]`, the signed entries
//! `tools/<platform>/<name>`), byte for byte the ones the vendor tested.
//!
//! Which release's: `apply` and `plan` use the one they are given (`plan`
//! keeps the verified tool entries in its temp folder; `apply` uses the
//! store's copy when it already holds it, else binds once the bundle is
//! verified and staged and runs its preflight then); every other command
//! (rollback, status, support-bundle, the resume of an interrupted apply)
//! the one the state names: the pending operation's target, else the
//! installed release ([`bind_from_state`]).
//!
//! Binding only names the
//! release's entry; the first use of the tool ([`Binding::ready`], called
//! by `Helm::new` and `HelmConfig::{helm,kubectl}_program`) copies its store
//! blob, re-hashed on the way, to `state_dir/tools/<sha256>/<name>` (mode
//! 0555, through the one durable writer): store blobs are 0444 and never
//! run. A copy already there is re-hashed before each use; a wrong one is
//! replaced. A release that carries no such tool for this host's platform,
//! or a blob that is missing or altered, makes every use of the tool fail
//! naming why; nothing else is run in its place.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use stoa_format::digest::HashingWriter;
use stoa_format::durable::AtomicFile;
use stoa_format::manifest::Entry;
use stoa_format::BundleManifest;

use crate::config::HelmConfig;
use crate::error::{Result, UpdaterError};
use crate::state::StateDir;

/// The config value that selects a carried tool.
pub const BUNDLED: &str = "bundled";

/// Which of `[helm] bin` and `kubectl` are `"bundled"`, and what they are
/// bound to.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    pub helm: bool,
    pub kubectl: bool,
    /// The release the bundled tools are bound to, or why they are not.
    pub state: BindState,
}

#[derive(Debug, Clone, Default)]
pub enum BindState {
    /// Not bound yet: no command has named a release.
    #[default]
    Unbound,
    /// Bound: `bin`/`kubectl` are copies of these entries.
    Bound {
        release: String,
        tools: Vec<BoundTool>,
    },
    /// The release named could not give them.
    Failed(String),
}

/// One carried tool in use.
#[derive(Debug, Clone)]
pub struct BoundTool {
    pub name: &'static str,
    /// The entry, e.g. `tools/linux/amd64/helm`.
    pub entry: Entry,
    /// The version the signed record states (checked at build).
    pub version: semver::Version,
    /// Where its verified bytes are (the store blob, or plan's kept copy).
    pub from: PathBuf,
    /// The runnable copy: `<into>/<sha256>/<name>`.
    pub path: PathBuf,
}

impl Binding {
    pub fn any(&self) -> bool {
        self.helm || self.kubectl
    }

    /// Makes `tool`'s runnable copy (re-hashed; see the module comment)
    /// when it is a bound bundled tool; else nothing. The error says why
    /// it cannot run.
    pub fn ready(&self, tool: &str) -> std::result::Result<(), String> {
        if let Some(why) = self.unbound(tool) {
            return Err(why);
        }
        let BindState::Bound { release, tools } = &self.state else {
            return Ok(());
        };
        match tools.iter().find(|t| t.name == tool) {
            Some(t) => {
                materialize(t).map_err(|e| format!("release {release}: {}: {e}", t.entry.path))
            }
            None => Ok(()),
        }
    }

    /// Whether a bound tool's verified bytes are not there yet (the store
    /// does not hold this release's Helm before it is staged).
    pub fn waiting(&self) -> bool {
        matches!(&self.state, BindState::Bound { tools, .. } if tools.iter().any(|t| !t.from.is_file()))
    }

    /// Why `tool` (`helm` or `kubectl`) cannot run, when it is bundled and
    /// not bound.
    fn unbound(&self, tool: &str) -> Option<String> {
        let bundled = match tool {
            "helm" => self.helm,
            _ => self.kubectl,
        };
        if !bundled {
            return None;
        }
        match &self.state {
            BindState::Bound { .. } => None,
            BindState::Failed(why) => Some(why.clone()),
            BindState::Unbound => Some("no release is installed or being applied yet, so no carried binary to run (apply the release's bundle: its own is used)".into()),
        }
    }

    /// How `tool` is named in reports: `the helm of release 2.3.0
    /// (tools/linux/amd64/helm, sha256:…, v3.16.2)`, or None when it is not
    /// a bound bundled tool.
    pub fn describe(&self, tool: &str) -> Option<String> {
        let BindState::Bound { release, tools } = &self.state else {
            return None;
        };
        let t = tools.iter().find(|t| t.name == tool)?;
        Some(format!(
            "the {tool} of release {release} ({}, sha256:{}, v{})",
            t.entry.path,
            &t.entry.sha256.hex()[..12],
            t.version
        ))
    }
}

fn bundled_err(tool: &str, reason: String) -> UpdaterError {
    UpdaterError::BundledTool {
        tool: if tool == "helm" { "bin" } else { "kubectl" },
        reason,
    }
}

/// Where a bound tool's bytes come from and go.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub sd: &'a StateDir,
    /// A folder where `plan` kept verified tool entries as `<sha256>.tool`,
    /// looked in before the store.
    pub kept: Option<&'a Path>,
    /// The folder the runnable copies go to (`state_dir/tools`; `plan`'s
    /// temp folder, so that plan writes nothing on site).
    pub into: &'a Path,
}

impl<'a> Place<'a> {
    /// The site's own: from the store into `state_dir/tools`.
    pub fn site(sd: &'a StateDir, into: &'a Path) -> Self {
        Self {
            sd,
            kept: None,
            into,
        }
    }
}

/// `state_dir/tools`.
pub fn tools_dir(sd: &StateDir) -> PathBuf {
    sd.root.join("tools")
}

/// Binds the bundled tools of `h` to release `m`'s carried ones. On
/// failure `h` records why and the error is returned.
pub fn bind(h: &mut HelmConfig, m: &BundleManifest, at: Place<'_>) -> Result<()> {
    if !h.bundled.any() {
        return Ok(());
    }
    match bind_tools(h, m, at) {
        Ok((bin, kubectl, tools)) => {
            if let Some(p) = bin {
                h.bin = p;
            }
            if let Some(p) = kubectl {
                h.kubectl = p;
            }
            h.bundled.state = BindState::Bound {
                release: m.release.version.to_string(),
                tools,
            };
            Ok(())
        }
        Err((tool, reason)) => {
            h.bundled.state = BindState::Failed(reason.clone());
            Err(bundled_err(tool, reason))
        }
    }
}

type Bound = (Option<PathBuf>, Option<PathBuf>, Vec<BoundTool>);

fn bind_tools(
    h: &HelmConfig,
    m: &BundleManifest,
    at: Place<'_>,
) -> std::result::Result<Bound, (&'static str, String)> {
    let platform = stoa_format::tools::host_platform().map(|p| p.name).ok_or((
        "helm",
        "this host's platform cannot carry tools".to_string(),
    ))?;
    let mut out: Bound = (None, None, Vec::new());
    for (name, wanted) in [("helm", h.bundled.helm), ("kubectl", h.bundled.kubectl)] {
        if !wanted {
            continue;
        }
        let v = &m.release.version;
        let rec = m
            .tools
            .iter()
            .find(|t| t.name == name && t.platform == platform)
            .ok_or_else(|| {
                (
                    name,
                    format!("release {v} carries no {name} for {platform} (its [[tools]])"),
                )
            })?;
        let entry = m
            .listed(&rec.path)
            .ok_or_else(|| (name, format!("release {v}: {} is not an entry", rec.path)))?;
        let hex = entry.sha256.hex();
        let from = at
            .kept
            .map(|d| d.join(format!("{hex}.tool")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| at.sd.blob(&hex));
        let path = at.into.join(&hex).join(name);
        if name == "helm" {
            out.0 = Some(path.clone());
        } else {
            out.1 = Some(path.clone());
        }
        out.2.push(BoundTool {
            name,
            entry: entry.clone(),
            version: rec.version.clone(),
            from,
            path,
        });
    }
    Ok(out)
}

/// Before anything is read: a bundle with charts carries every bundled
/// tool for this host's platform (`check_needs`).
pub fn check_carried(h: &HelmConfig, m: &BundleManifest) -> Result<()> {
    let platform = stoa_format::tools::host_platform().map_or("this platform", |p| p.name);
    for (name, wanted) in [("helm", h.bundled.helm), ("kubectl", h.bundled.kubectl)] {
        if wanted
            && !m
                .tools
                .iter()
                .any(|t| t.name == name && t.platform == platform)
        {
            return Err(bundled_err(
                name,
                format!(
                    "release {} carries no {name} for {platform} (its [[tools]]); set [helm] {} to a program",
                    m.release.version,
                    if name == "helm" { "bin" } else { "kubectl" }
                ),
            ));
        }
    }
    Ok(())
}

/// Binds to the release the state names: the pending operation's target,
/// else the installed release. Nothing to bind to leaves it unbound (the
/// tool's first use says so); a failure is recorded the same way.
pub fn bind_from_state(h: &mut HelmConfig, sd: &StateDir) {
    if !h.bundled.any() || !sd.state_path().exists() {
        return;
    }
    let Ok(state) = sd.load() else { return };
    let target = state
        .pending
        .as_ref()
        .and_then(|p| Some((p.to.clone()?, p.manifest_sha256.clone()?)))
        .or_else(|| {
            let v = state.installed.clone()?;
            let sha = state
                .releases
                .iter()
                .find(|r| r.version == v)
                .map(|r| r.manifest_sha256.clone())?;
            Some((v, sha))
        });
    let Some((v, sha)) = target else { return };
    match crate::stage::load_release_checked(sd, &v, &sha) {
        Ok(m) => {
            // a failure is recorded in `h`: the tool's first use names it
            let into = tools_dir(sd);
            let _ = bind(h, &m, Place::site(sd, &into));
        }
        Err(e) => h.bundled.state = BindState::Failed(format!("release {v}: {e}")),
    }
}

/// The runnable copy `t.path`: the entry's bytes from `t.from`, re-hashed
/// while copied, mode 0555. An intact copy is reused.
fn materialize(t: &BoundTool) -> io::Result<()> {
    let (entry, dest) = (&t.entry, &t.path);
    if crate::stage::stored_intact(dest, entry) {
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir)?;
    }
    if dest.exists() {
        fs::remove_file(dest)?;
    }
    let src = fs::File::open(&t.from).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{}: {e} (not in the store: apply the release's bundle)",
                t.from.display()
            ),
        )
    })?;
    let file = AtomicFile::options().mode(0o555).create(dest)?;
    let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    io::copy(
        &mut io::BufReader::with_capacity(1 << 20, src).take(entry.size + 1),
        &mut w,
    )?;
    w.flush()?;
    let (digest, n) = w.hasher.finish();
    if digest != entry.sha256 || n != entry.size {
        // the temp file is dropped: nothing is left at `dest`
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has sha256:{digest} ({n} bytes), not the signed sha256:{} ({} bytes); nothing was run",
                t.from.display(),
                entry.sha256,
                entry.size
            ),
        ));
    }
    let file = w.inner.into_inner().map_err(|e| e.into_error())?;
    file.commit()
}
