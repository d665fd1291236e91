//! `stoa-updater --config F status [--json]`: the installed release, the
//! retained ones, and any interrupted operation with the step it stopped at.

use serde_json::json;

use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn run(config: &std::path::Path, args: &Args) -> Result<()> {
    let site = super::site(config)?;
    let state = site.sd.load()?;
    let pending = state.pending.as_ref().map(|p| {
        let step = p.current_step();
        json!({
            "op": p.op,
            "from": p.from.as_ref().map(|v| v.to_string()),
            "to": p.to.as_ref().map(|v| v.to_string()),
            "started_at": p.started_at,
            "stopped_at_step": step.map(|s| s.name.clone()),
            "step_finished": step.map(|s| s.done),
            "steps_done": p.steps.iter().filter(|s| s.done).map(|s| s.name.clone()).collect::<Vec<_>>(),
            "failed": p.failed,
        })
    });
    let releases: Vec<_> = state
        .releases
        .iter()
        .map(|r| json!({"version": r.version.to_string(), "applied_at": r.applied_at, "helm": r.helm, "migrations": r.migrations, "snapshots": r.snapshots}))
        .collect();
    if args.json {
        println!(
            "{}",
            json!({"ok": true, "installed": state.installed.as_ref().map(|v| v.to_string()), "releases": releases, "pending": pending, "last_journal": site.sd.last_journal()})
        );
        return Ok(());
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
                step.map(|s| s.name.as_str()).unwrap_or("start"),
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
                crate::state::OpKind::Apply => println!("to resume: stoa-updater apply <the same bundle>; to revert: stoa-updater rollback"),
                crate::state::OpKind::Rollback => println!("to finish it: stoa-updater rollback"),
            }
        }
    }
    Ok(())
}
