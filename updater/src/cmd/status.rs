//! `stoa-updater --config F status [--json]`: the installed release, the
//! retained ones, the snapshots kept, and whether an operation is running
//! (the site lock is held: by which process, since when, at which step) or
//! was interrupted (pending in the state, lock free).
//!
//! Exit code (docs/OPERATIONS.md, "status for monitoring"): 0 when idle,
//! 4 while an apply or rollback runs, 8 when an interrupted operation waits
//! for the operator.

use serde_json::json;

use crate::config::hint;
use crate::error::Result;
use crate::state::{LockProbe, OpKind, SiteLock};

/// `status` exit code while an apply or rollback holds the lock (as busy).
pub const EXIT_RUNNING: u8 = 4;
/// `status` exit code when an interrupted operation is pending.
pub const EXIT_INTERRUPTED: u8 = 8;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config: &std::path::Path, args: &Args) -> Result<u8> {
    let site = super::site(config)?;
    let cfg_path = site.cfg.path.clone();
    let state = site.sd.load()?;
    let lock = SiteLock::probe(&site.sd)?;
    let running = matches!(lock, LockProbe::Held(_));
    // the step the running operation is at, or the interrupted one stopped at
    let step_now = |default: &str| -> String {
        state
            .pending
            .as_ref()
            .and_then(|p| p.current_step())
            .map(|s| s.name.to_string())
            .unwrap_or_else(|| default.to_owned())
    };
    let (operation, code) = match (running, &state.pending) {
        (true, _) => ("running", EXIT_RUNNING),
        (false, Some(_)) => ("interrupted", EXIT_INTERRUPTED),
        (false, None) => ("idle", 0),
    };
    let owner = match &lock {
        LockProbe::Held(Some(o)) => Some(o.clone()),
        _ => None,
    };
    let running_doc = running.then(|| {
        json!({
            "pid": owner.as_ref().map(|o| o.pid),
            "op": owner.as_ref().map(|o| o.op.clone()),
            "since": owner.as_ref().map(|o| o.started_at.clone()),
            "step": step_now("verify+stage"),
        })
    });
    let pending = state.pending.as_ref().map(|p| {
        let step = p.current_step();
        json!({
            "op": p.op,
            "from": p.from.as_ref().map(|v| v.to_string()),
            "to": p.to.as_ref().map(|v| v.to_string()),
            "started_at": p.started_at,
            "stopped_at_step": step.map(|s| s.name.to_string()),
            "step_finished": step.map(|s| s.done),
            "steps_done": p.steps.iter().filter(|s| s.done).map(|s| s.name.to_string()).collect::<Vec<_>>(),
            "failed": p.failed,
        })
    });
    let snaps = site.snapshot_usage(&state);
    let releases: Vec<_> = state
        .releases
        .iter()
        .map(|r| json!({"version": r.version.to_string(), "applied_at": r.applied_at, "helm": r.helm, "migrations": r.migrations, "snapshots": r.snapshots}))
        .collect();
    if args.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "operation": operation,
                "installed": state.installed.as_ref().map(|v| v.to_string()),
                "releases": releases,
                "running": running_doc,
                "pending": pending,
                "snapshots": snaps,
                "last_journal": site.sd.last_journal(),
            })
        );
        return Ok(code);
    }
    println!(
        "installed: {}",
        state
            .installed
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "nothing".into())
    );
    println!(
        "retained releases: {}",
        if state.releases.is_empty() {
            "none".into()
        } else {
            state
                .releases
                .iter()
                .map(|r| r.version.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!(
        "snapshots: {} file(s), {} in {}{}",
        snaps.count,
        stoa_format::report::human_bytes(snaps.bytes),
        site.sd.snapshots_dir().display(),
        if snaps.removable.is_empty() {
            String::new()
        } else {
            format!(
                " ({} no longer needed, removed by the next prune)",
                snaps.removable.len()
            )
        }
    );
    if running {
        let target = state
            .pending
            .as_ref()
            .and_then(|p| p.to.as_ref())
            .map(|v| format!(" to {v}"))
            .unwrap_or_default();
        match &owner {
            Some(o) => println!(
                "RUNNING: {}{target} by pid {} since {}, at step {}",
                o.op,
                o.pid,
                o.started_at,
                step_now("verify+stage")
            ),
            None => println!(
                "RUNNING: the site lock {} is held by a process that did not say who it is",
                site.sd.root.join("lock").display()
            ),
        }
        println!("wait for it to finish; do not resume or roll back while it runs");
        return Ok(code);
    }
    match &state.pending {
        None => println!("no operation in progress"),
        Some(p) => {
            let step = p.current_step();
            println!(
                "INTERRUPTED: {:?} from {} to {} (started {}) stopped at step {} ({})",
                p.op,
                p.from
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "nothing".into()),
                p.to.as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into()),
                p.started_at,
                step.map(|s| s.name.to_string())
                    .unwrap_or_else(|| "start".into()),
                if step.is_some_and(|s| s.done) {
                    "finished; the next step had not begun"
                } else {
                    "begun, not finished"
                }
            );
            if let Some(f) = &p.failed {
                println!("failure: {f}");
            }
            match p.op {
                OpKind::Apply => println!(
                    "to resume: {}; to revert: {}",
                    hint(&cfg_path, "apply <the same bundle>"),
                    hint(&cfg_path, "rollback")
                ),
                OpKind::Rollback => println!("to finish it: {}", hint(&cfg_path, "rollback")),
            }
        }
    }
    Ok(code)
}
