//! Apply and rollback: the journaled, resumable steps.
//!
//! Every step is recorded in `state.json` (begun, then done) and in the
//! journal before its side effect, and every step is idempotent, so an
//! interrupted operation can be resumed (apply the same bundle again) or
//! reverted (rollback). Undo of an apply works from what was recorded, not
//! from the bundle.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;
use stoa_format::reader::VerifyOptions;
use stoa_format::source::BundleSource;
use stoa_format::BundleManifest;

use crate::config::{hint, SiteConfig};
use crate::db;
use crate::error::{Result, UpdaterError};
use crate::records::JournalLine;
use crate::records::PushStats;
use crate::state::{HelmRecord, OpKind, Pending, State, StateDir, StepRecord};

mod admission;
mod apply;
pub mod drivers;
#[cfg(test)]
pub mod fakes;
mod files;
#[cfg(test)]
mod kill_matrix;
pub mod plan;
mod prune;
mod rebuild;
pub use prune::PruneReport;
mod registry_prune;
pub use registry_prune::{RegistryPruneReport, RegistryTag};
mod rollback;
mod undo;

pub use crate::records::step::{self, Step, Undo};
/// What rollback did to one Helm release (the history's vocabulary).
pub use crate::records::HelmBack;
pub use admission::Admitted;
pub use drivers::Drivers;
pub use rebuild::RebuildReport;
pub use rollback::RollbackPreview;

/// Test hook (debug builds only): `STOA_UPDATER_TEST_CRASH_AFTER=<step>`
/// makes the process abort right after that step is recorded as done, as a
/// kill -9 would. Release builds ignore it.
fn crash_hook(step: &dyn std::fmt::Display) {
    #[cfg(debug_assertions)]
    if std::env::var("STOA_UPDATER_TEST_CRASH_AFTER").is_ok_and(|s| s == step.to_string()) {
        eprintln!("stoa-updater: test hook: aborting after step {step}");
        std::process::abort();
    }
    let _ = step;
}

#[derive(Debug)]
pub struct Site {
    pub cfg: SiteConfig,
    pub sd: StateDir,
    /// the database, helm, the registry: real, or the unit tests' fakes.
    pub drivers: Drivers,
    /// Unit-test kill point: right after this step (its text form) is
    /// recorded as done, the engine panics with [`Killed`] instead of
    /// going on, as a kill -9 there would stop it.
    pub kill_after: Option<String>,
}

/// The panic payload of a unit-test kill point ([`Site::kill_after`]).
#[derive(Debug)]
pub struct Killed(pub String);

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub allow_downgrade: bool,
    pub no_auto_rollback: bool,
    pub allow_expired: bool,
    /// Use the machine clock even when it is before the clock floor (audited).
    pub ignore_clock_floor: bool,
    /// Apply although Helm 3 would run hook images from outside the site
    /// registry (its post-renderer does not see hooks).
    pub accept_hook_images: bool,
    /// The bundle's paths as given, kept in the pending apply for hints.
    pub bundle: Vec<std::path::PathBuf>,
}

#[derive(Debug, Default, Serialize)]
pub struct ApplyReport {
    pub version: String,
    pub from: Option<String>,
    pub resumed: bool,
    pub staged_bytes_written: u64,
    pub staged_bytes_reused: u64,
    /// Everything pushed, while staging and by the push step, each blob
    /// counted once.
    pub push: PushStats,
    /// What of `push` was pushed while the bundle was still being staged
    /// (blobs only; `registry::EarlyPush`).
    pub pushed_while_staging: PushStats,
    /// Wall time of the verify+stage pass, and of the image push after it
    /// (waiting for the pushes begun while staging, then the push step).
    pub stage_seconds: f64,
    pub push_seconds: f64,
    pub migrations: BTreeMap<String, Vec<String>>,
    pub snapshots: BTreeMap<String, PathBuf>,
    pub helm: Vec<HelmRecord>,
    pub files: Vec<String>,
    pub pruned: Vec<String>,
    /// The preflight checks, run before any change.
    pub preflight: crate::preflight::Preflight,
}

/// The snapshot files in `state_dir/snapshots` (status shows it).
#[derive(Debug, Default, Serialize)]
pub struct SnapshotUsage {
    pub count: usize,
    pub bytes: u64,
    /// Files no retained release or pending operation needs.
    pub removable: Vec<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
pub struct RollbackReport {
    pub from: Option<String>,
    pub to: Option<String>,
    pub reverted_interrupted_apply: bool,
    pub helm: Vec<HelmBack>,
    pub migrations_undone: BTreeMap<String, Vec<String>>,
    pub snapshots_restored: BTreeMap<String, PathBuf>,
    /// History rows that disagreed with the verified release content
    /// (reported; their SQL was not run).
    pub edited_history_rows: Vec<db::RowMismatch>,
    /// The trust root version accepted by what was undone: it stays in
    /// force (a root never goes back).
    pub trust_kept: Option<u64>,
}

/// A migration step as the release's verified content has it.
#[derive(Debug)]
pub(crate) struct VerifiedStep {
    up_sha256: String,
    /// The down step's text and sha256, re-hashed from the store.
    down: Option<(String, String)>,
}

impl Site {
    pub fn new(mut cfg: SiteConfig) -> Self {
        let sd = StateDir::new(&cfg.state_dir);
        // `"bundled"` tools: those of the release the state names
        if let Some(h) = &mut cfg.helm {
            crate::bundled::bind_from_state(h, &sd);
        }
        let drivers = Drivers::real(cfg.helm.clone(), cfg.registry.clone(), cfg.files_dir());
        Self {
            cfg,
            sd,
            drivers,
            kill_after: None,
        }
    }

    /// This site with its `"bundled"` Helm and kubectl bound to release
    /// `m`'s carried ones (crate::bundled), or None when it uses none.
    pub fn with_tools_of(
        &self,
        m: &BundleManifest,
        at: crate::bundled::Place<'_>,
    ) -> Result<Option<Site>> {
        let mut cfg = self.cfg.clone();
        let Some(h) = cfg.helm.as_mut().filter(|h| h.bundled.any()) else {
            return Ok(None);
        };
        crate::bundled::bind(h, m, at)?;
        let drivers = Drivers::real(cfg.helm.clone(), cfg.registry.clone(), cfg.files_dir());
        Ok(Some(Site {
            cfg,
            sd: self.sd.clone(),
            drivers,
            kill_after: self.kill_after.clone(),
        }))
    }

    /// A site acting through `drivers` (the unit tests' fakes).
    pub fn with_drivers(cfg: SiteConfig, drivers: Drivers) -> Self {
        Self {
            drivers,
            ..Self::new(cfg)
        }
    }

    /// The kill points: the unit tests' [`Site::kill_after`], and the
    /// debug-build `STOA_UPDATER_TEST_CRASH_AFTER` of the e2e tests.
    pub(crate) fn crash_hook(&self, step: &dyn std::fmt::Display) {
        if let Some(k) = &self.kill_after {
            if *k == step.to_string() {
                std::panic::panic_any(Killed(k.clone()));
            }
        }
        crash_hook(step);
    }

    pub fn verify_options(allow_expired: bool) -> VerifyOptions {
        VerifyOptions {
            allow_expired,
            ..VerifyOptions::default()
        }
    }

    pub(crate) fn save(&self, s: &State) -> Result<()> {
        self.sd.save(s)
    }

    pub(crate) fn journal(
        &self,
        p: &Pending,
        step: &Step,
        event: &str,
        extra: serde_json::Value,
    ) -> Result<()> {
        self.sd.journal(&JournalLine {
            op: p.op,
            op_id: p.op_id.clone(),
            to: p.to.as_ref().map(|v| v.to_string()),
            step: step.to_string(),
            event: event.to_owned(),
            detail: match extra {
                serde_json::Value::Object(o) => o.into_iter().collect(),
                _ => BTreeMap::new(),
            },
            time: String::new(),
        })
    }

    /// Runs one recorded step: skipped when already done; otherwise
    /// recorded as begun (state + journal, fsynced) before `f` runs, and as
    /// done after.
    pub(crate) fn step<T: Default>(
        &self,
        state: &mut State,
        name: &Step,
        f: impl FnOnce(&Self, &mut State) -> Result<T>,
    ) -> Result<T> {
        {
            let p = pending(state)?;
            if p.step_done(name) {
                return Ok(T::default());
            }
            if !p.step_begun(name) {
                p.steps.push(StepRecord {
                    name: name.clone(),
                    done: false,
                });
            }
        }
        self.save(state)?;
        self.journal(pending(state)?, name, "begin", json!({}))?;
        let out = f(self, state)?;
        {
            let p = pending(state)?;
            if let Some(s) = p.steps.iter_mut().find(|s| &s.name == name) {
                s.done = true;
            }
        }
        self.save(state)?;
        self.journal(pending(state)?, name, "done", json!({}))?;
        self.crash_hook(name);
        Ok(out)
    }

    /// The policy checks of apply: newer than installed, within upgrade_from.
    pub fn check_policy(
        &self,
        state: &State,
        m: &BundleManifest,
        allow_downgrade: bool,
    ) -> Result<()> {
        let new = &m.release.version;
        // one release per site: another product's bundle is not an upgrade
        // (the state folder, history and rollback are one release's)
        let installed = state.releases.last().and_then(|r| r.name.as_deref());
        if let (Some(name), Some(cur)) = (installed, &state.installed) {
            if name != m.release.name {
                return Err(UpdaterError::Refused(format!(
                    "this bundle is release {} {new}, and this site runs release {name} {cur}: one release per site (another release needs its own site config and state_dir)",
                    m.release.name
                )));
            }
        }
        // a first install is not an upgrade: upgrade_from applies only when
        // a release is installed (docs/RELEASE-MANIFEST.md)
        if let Some(cur) = &state.installed {
            if !is_newer(new, cur) && !allow_downgrade {
                return Err(UpdaterError::Refused(format!(
                    "{} {new} is not newer than the installed {cur} (--allow-downgrade overrides, and is logged)",
                    m.release.name
                )));
            }
            if let Some(req) = &m.release.upgrade_from {
                let r = semver::VersionReq::parse(req)
                    .map_err(|e| UpdaterError::Refused(format!("upgrade_from {req:?}: {e}")))?;
                if !r.matches(cur) && !allow_downgrade {
                    return Err(UpdaterError::Refused(format!(
                        "{} {new} upgrades only from {req}, and {cur} is installed",
                        m.release.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The refusal when another operation is pending: what works for it.
    pub fn pending_refusal(&self, p: &Pending) -> UpdaterError {
        let at = p
            .current_step()
            .map(|s| s.name.to_string())
            .unwrap_or_else(|| "start".into());
        let to =
            p.to.as_ref()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into());
        UpdaterError::Refused(match p.op {
            OpKind::Apply => format!(
                "an interrupted apply to {to} is pending (stopped at {at}): to resume it, apply that same bundle (`{}`); to revert it, `{}`",
                p.resume_hint(&self.cfg.path),
                hint(&self.cfg.path, "rollback")
            ),
            OpKind::Rollback => format!(
                "an interrupted rollback to {to} is pending (stopped at {at}): finish it first with `{}`",
                p.resume_hint(&self.cfg.path)
            ),
            OpKind::Remove => format!(
                "an interrupted remove is pending (stopped at {at}): finish it first with `{}`",
                p.resume_hint(&self.cfg.path)
            ),
        })
    }
}

/// SemVer precedence, the one comparison of the version policy: build
/// metadata has none (`1.1.0+b2` is not newer than `1.1.0`).
pub fn is_newer(new: &semver::Version, cur: &semver::Version) -> bool {
    new.cmp_precedence(cur) == std::cmp::Ordering::Greater
}

fn pending(state: &mut State) -> Result<&mut Pending> {
    state
        .pending
        .as_mut()
        .ok_or_else(|| UpdaterError::StateCorrupt {
            path: PathBuf::from("state.json"),
            reason: "no pending operation where one was expected".into(),
        })
}

/// Opens a bundle that must be a regular file: apply reads it twice
/// (signature, then content while staging), which a FIFO, `/dev/stdin` or
/// `<(…)` cannot give; refused at once instead of hanging.
/// The files a bundle source reads: the bundle, or the parts present.
fn bundle_files(src: &BundleSource) -> Vec<&Path> {
    match src {
        BundleSource::File(p) => vec![p.as_path()],
        BundleSource::Parts(s) => s
            .files
            .iter()
            .chain(s.parity_files.iter())
            .flatten()
            .map(|p| p.as_path())
            .collect(),
    }
}

/// Refuses a bundle file that is not a regular file (a FIFO, `/dev/stdin`
/// from a pipe, a device), without opening it: opening a FIFO without a
/// writer would block.
pub fn check_regular(bundle: &Path) -> Result<()> {
    let bad = |e| UpdaterError::OpenBundle {
        path: bundle.to_owned(),
        source: e,
    };
    let ft = fs::metadata(bundle).map_err(bad)?.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_fifo() {
            "a pipe"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_dir() {
            "a folder"
        } else {
            "not a file"
        };
        return Err(UpdaterError::BundleNotRegular {
            path: bundle.to_owned(),
            kind: kind.into(),
        });
    }
    Ok(())
}

fn read_text(p: &Path) -> Result<String> {
    fs::read_to_string(p).map_err(|e| UpdaterError::io("read staged migration", p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn build_metadata_is_not_newer() {
        let v = |s: &str| semver::Version::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(!is_newer(&v("1.1.0+b2"), &v("1.1.0")));
        assert!(!is_newer(&v("1.1.0"), &v("1.1.0+b2")));
        assert!(!is_newer(&v("1.1.0+b1"), &v("1.1.0+b2")));
        assert!(!is_newer(&v("1.1.0-rc.1"), &v("1.1.0")));
        assert!(is_newer(&v("1.1.0"), &v("1.1.0-rc.1")));
        assert!(is_newer(&v("1.1.1+b0"), &v("1.1.0+b9")));
    }
}
