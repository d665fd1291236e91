//! `stoa-updater --config F status [--json]`: the installed release, the
//! retained ones, the snapshots kept, and whether an operation is running
//! (the site lock is held: by which process, since when, at which step) or
//! was interrupted (pending in the state, lock free).
//!
//! One typed [`StatusReport`]: `--json` prints it (field names as always,
//! docs/OPERATIONS.md), the text is its `Display`.
//!
//! Exit code (docs/OPERATIONS.md, "status for monitoring"): 0 when idle,
//! 4 while an apply or rollback runs, 8 when an interrupted operation waits
//! for the operator.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use stoa_format::cli::Output;

use serde::Serialize;

use crate::config::hint;
use crate::engine::SnapshotUsage;
use crate::error::Result;
use crate::state::{HelmRecord, LockProbe, OpKind, Pending, SiteLock, State};

/// `status` exit code while an apply or rollback holds the lock (as busy).
pub const EXIT_RUNNING: u8 = 4;
/// `status` exit code when an interrupted operation is pending.
pub const EXIT_INTERRUPTED: u8 = 8;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(site: &crate::engine::Site, _args: &Args, out: Output) -> Result<u8> {
    let state = site.sd.load()?;
    let lock = SiteLock::probe(&site.sd)?;
    let report = StatusReport {
        ok: true,
        operation: Operation::of(&lock, &state),
        installed: state.installed.as_ref().map(|v| v.to_string()),
        releases: state.releases.iter().map(RetainedRelease::from).collect(),
        running: Running::of(&lock, &state),
        pending: state.pending.as_ref().map(PendingStatus::from),
        snapshots: site.snapshot_usage(&state),
        last_journal: site.sd.last_journal(),
        paths: Paths {
            config: site.cfg.path.clone(),
            snapshots_dir: site.sd.snapshots_dir(),
            lock: site.sd.root.join("lock"),
        },
    };
    if out.json {
        println!("{}", serde_json::to_value(&report).unwrap_or_default());
    } else {
        print!("{report}");
    }
    Ok(report.operation.exit_code())
}

/// What `status` prints.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub ok: bool,
    pub operation: Operation,
    /// The installed version, None when nothing is.
    pub installed: Option<String>,
    /// The retained releases, oldest first.
    pub releases: Vec<RetainedRelease>,
    /// The operation holding the site lock.
    pub running: Option<Running>,
    /// The operation recorded in the state (running or interrupted).
    pub pending: Option<PendingStatus>,
    pub snapshots: SnapshotUsage,
    /// The journal's last line, as written.
    pub last_journal: Option<serde_json::Value>,
    /// Where things are, for the text.
    #[serde(skip)]
    pub paths: Paths,
}

/// The paths the text names.
#[derive(Debug, Default)]
pub struct Paths {
    pub config: PathBuf,
    pub snapshots_dir: PathBuf,
    pub lock: PathBuf,
}

/// Whether an operation runs, waits, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Running,
    Interrupted,
    Idle,
}

impl Operation {
    fn of(lock: &LockProbe, state: &State) -> Self {
        match (matches!(lock, LockProbe::Held(_)), &state.pending) {
            (true, _) => Self::Running,
            (false, Some(_)) => Self::Interrupted,
            (false, None) => Self::Idle,
        }
    }

    /// `status`'s exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Running => EXIT_RUNNING,
            Self::Interrupted => EXIT_INTERRUPTED,
            Self::Idle => 0,
        }
    }
}

/// A retained release.
#[derive(Debug, Serialize)]
pub struct RetainedRelease {
    pub version: String,
    pub applied_at: String,
    pub helm: Vec<HelmRecord>,
    pub migrations: BTreeMap<String, Vec<String>>,
    pub snapshots: BTreeMap<String, PathBuf>,
}

impl From<&crate::state::ReleaseRecord> for RetainedRelease {
    fn from(r: &crate::state::ReleaseRecord) -> Self {
        Self {
            version: r.version.to_string(),
            applied_at: r.applied_at.clone(),
            helm: r.helm.clone(),
            migrations: r.migrations.clone(),
            snapshots: r.snapshots.clone(),
        }
    }
}

/// The process holding the site lock (None fields: it did not say).
#[derive(Debug, Serialize)]
pub struct Running {
    pub pid: Option<u32>,
    pub op: Option<String>,
    pub since: Option<String>,
    /// The step it is at (`verify+stage` before the first recorded step).
    pub step: String,
    /// Where it goes, for the text.
    #[serde(skip)]
    pub to: Option<String>,
}

impl Running {
    fn of(lock: &LockProbe, state: &State) -> Option<Self> {
        let LockProbe::Held(owner) = lock else {
            return None;
        };
        let p = state.pending.as_ref();
        Some(Self {
            pid: owner.as_ref().map(|o| o.pid),
            op: owner.as_ref().map(|o| o.op.clone()),
            since: owner.as_ref().map(|o| o.started_at.clone()),
            step: p
                .and_then(|p| p.current_step())
                .map_or_else(|| "verify+stage".into(), |s| s.name.to_string()),
            to: p.and_then(|p| p.to.as_ref()).map(|v| v.to_string()),
        })
    }
}

/// The operation recorded in the state.
#[derive(Debug, Serialize)]
pub struct PendingStatus {
    pub op: OpKind,
    pub from: Option<String>,
    pub to: Option<String>,
    pub started_at: String,
    /// The last step begun (None: none yet).
    pub stopped_at_step: Option<String>,
    /// Whether that step finished.
    pub step_finished: Option<bool>,
    pub steps_done: Vec<String>,
    pub failed: Option<String>,
    /// For apply: the bundle's manifest digest (resume needs the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// For apply: the bundle's paths as they were given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bundle: Vec<std::path::PathBuf>,
    /// For rollback: confirmed with `--restore-snapshot`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restore_snapshot: bool,
}

impl From<&Pending> for PendingStatus {
    fn from(p: &Pending) -> Self {
        let step = p.current_step();
        Self {
            op: p.op,
            from: p.from.as_ref().map(|v| v.to_string()),
            to: p.to.as_ref().map(|v| v.to_string()),
            started_at: p.started_at.clone(),
            stopped_at_step: step.map(|s| s.name.to_string()),
            step_finished: step.map(|s| s.done),
            steps_done: p
                .steps
                .iter()
                .filter(|s| s.done)
                .map(|s| s.name.to_string())
                .collect(),
            failed: p.failed.clone(),
            manifest_sha256: p.manifest_sha256.clone(),
            bundle: p.bundle.clone(),
            restore_snapshot: p.restore_snapshot,
        }
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<&str> = self.releases.iter().map(|r| r.version.as_str()).collect();
        writeln!(
            f,
            "installed: {}",
            self.installed.as_deref().unwrap_or("nothing")
        )?;
        writeln!(
            f,
            "retained releases: {}",
            if versions.is_empty() {
                "none".into()
            } else {
                versions.join(", ")
            }
        )?;
        let s = &self.snapshots;
        write!(
            f,
            "snapshots: {} file(s), {} in {}",
            s.count,
            stoa_format::report::human_bytes(s.bytes),
            self.paths.snapshots_dir.display(),
        )?;
        if !s.removable.is_empty() {
            write!(
                f,
                " ({} no longer needed, removed by the next prune)",
                s.removable.len()
            )?;
        }
        writeln!(f)?;
        match (&self.running, &self.pending) {
            (Some(r), _) => self.fmt_running(f, r),
            (None, Some(p)) => self.fmt_interrupted(f, p),
            (None, None) => writeln!(f, "no operation in progress"),
        }
    }
}

impl StatusReport {
    fn fmt_running(&self, f: &mut fmt::Formatter<'_>, r: &Running) -> fmt::Result {
        let target =
            r.to.as_ref()
                .map(|v| format!(" to {v}"))
                .unwrap_or_default();
        match (&r.op, r.pid, &r.since) {
            (Some(op), Some(pid), Some(since)) => writeln!(
                f,
                "RUNNING: {op}{target} by pid {pid} since {since}, at step {}",
                r.step
            )?,
            _ => writeln!(
                f,
                "RUNNING: the site lock {} is held by a process that did not say who it is",
                self.paths.lock.display()
            )?,
        }
        writeln!(
            f,
            "wait for it to finish; do not resume or roll back while it runs"
        )
    }

    fn fmt_interrupted(&self, f: &mut fmt::Formatter<'_>, p: &PendingStatus) -> fmt::Result {
        let op = match p.op {
            OpKind::Apply => "Apply",
            OpKind::Rollback => "Rollback",
            OpKind::Remove => "Remove",
        };
        writeln!(
            f,
            "INTERRUPTED: {op} from {} to {} (started {}) stopped at step {} ({})",
            p.from.as_deref().unwrap_or("nothing"),
            p.to.as_deref().unwrap_or(if p.op == OpKind::Remove {
                "nothing installed"
            } else {
                "?"
            }),
            p.started_at,
            p.stopped_at_step.as_deref().unwrap_or("start"),
            if p.step_finished == Some(true) {
                "finished; the next step had not begun"
            } else {
                "begun, not finished"
            }
        )?;
        if let Some(e) = &p.failed {
            writeln!(f, "failure: {e}")?;
        }
        let cfg = &self.paths.config;
        if let Some(sha) = &p.manifest_sha256 {
            writeln!(f, "bundle: manifest sha256:{sha}")?;
        }
        let resume = crate::state::resume_hint(cfg, p.op, &p.bundle, p.restore_snapshot);
        match p.op {
            OpKind::Apply => writeln!(
                f,
                "to resume: {resume}; to revert: {}",
                hint(cfg, "rollback")
            ),
            OpKind::Rollback | OpKind::Remove => writeln!(f, "to finish it: {resume}"),
        }
    }
}
