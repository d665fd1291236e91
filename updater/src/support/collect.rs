//! The support bundle's collectors: each one gathers one part of what the
//! vendor needs (versions, the site config, the state folder, preflight, the
//! store listing, the databases' migration tables; the cluster's are in
//! [`super::cluster`]) and runs in its own thread under its own time limit
//! ([`run_all`]). A collector that fails or runs past its limit is recorded
//! (`SUMMARY.json`, `collectors`), never fatal: the bundle is still written.
//!
//! Collectors only read. None takes the site lock or writes into
//! `state_dir`; every child process goes through [`crate::tool`] with the
//! collector's remaining time as its limit.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::SiteConfig;
use crate::state::StateDir;

/// The most one collected file keeps (its end, for logs).
pub const MAX_ITEM: usize = 8 << 20;

/// One collected file, not yet redacted.
#[derive(Debug, Clone)]
pub struct Item {
    /// Its path in the bundle.
    pub path: String,
    pub text: String,
    /// A log: cut first (from its start) when the bundle is over `--max-size`.
    pub log: bool,
}

impl Item {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
            log: false,
        }
    }

    pub fn log(path: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            log: true,
            ..Self::new(path, text)
        }
    }
}

/// How one collector ended, for `SUMMARY.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub name: String,
    /// `ok`, `failed` or `timed-out`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub seconds: f64,
    /// Parts that failed inside a collector that went on (one pod's log).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What every collector reads: the site, the time window, the time limit.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The site config file given (it may not load).
    pub config_path: PathBuf,
    pub cfg: Option<SiteConfig>,
    /// The state folder named by the config (it may be missing).
    pub sd: Option<StateDir>,
    /// Lines of the journal and audit log older than this are left out.
    pub since: SystemTime,
    /// Each collector's time limit.
    pub limit: Duration,
}

/// What a collector gives back: its files, and notes on parts that failed.
#[derive(Debug, Default)]
pub struct Got {
    pub items: Vec<Item>,
    pub notes: Vec<String>,
}

/// A collector: a name and the work, given the context and its deadline.
pub type Collector = (
    String,
    Box<dyn FnOnce(&Ctx, Instant) -> Result<Got, String> + Send>,
);

/// Runs every collector, each in its own thread with `ctx.limit` (a
/// collector past it is recorded `timed-out` and left behind: its children
/// are killed at the same deadline by [`crate::tool::output_within`]);
/// `sink` takes each collector's files as they come.
pub fn run_all(
    ctx: &Arc<Ctx>,
    collectors: Vec<Collector>,
    sink: &mut dyn FnMut(Item),
) -> Vec<Record> {
    let mut records = Vec::new();
    for (name, work) in collectors {
        let began = Instant::now();
        let deadline = began + ctx.limit;
        let (tx, rx) = mpsc::channel();
        let c = Arc::clone(ctx);
        std::thread::spawn(move || {
            let _ = tx.send(work(&c, deadline));
        });
        // a little grace past the deadline: the tools are killed at it
        let got = rx.recv_timeout(ctx.limit + Duration::from_secs(2));
        let seconds = (began.elapsed().as_secs_f64() * 100.0).round() / 100.0;
        let mut rec = Record {
            name,
            outcome: "ok".into(),
            error: None,
            seconds,
            notes: Vec::new(),
        };
        match got {
            Ok(Ok(g)) => {
                rec.notes = g.notes;
                if let Some(n) = rec.notes.iter().find(|n| n.contains("time limit")) {
                    rec.outcome = "timed-out".into();
                    rec.error = Some(n.clone());
                }
                g.items.into_iter().for_each(&mut *sink);
            }
            Ok(Err(e)) if e.contains("time limit") => {
                rec.outcome = "timed-out".into();
                rec.error = Some(e);
            }
            Ok(Err(e)) => {
                rec.outcome = "failed".into();
                rec.error = Some(e);
            }
            Err(_) => {
                rec.outcome = "timed-out".into();
                rec.error = Some(format!(
                    "still running after its time limit of {}s",
                    ctx.limit.as_secs()
                ));
            }
        }
        records.push(rec);
    }
    records
}

/// Runs `program args` through the tool launcher until `deadline`; its
/// stdout, or an error naming the tool (stderr's first line, or the time
/// limit). `Ok` also for a non-zero exit when `any_exit`.
pub fn tool_text(
    program: &Path,
    args: &[&str],
    deadline: Instant,
    any_exit: bool,
) -> Result<String, String> {
    let name = program
        .file_name()
        .map_or_else(|| "tool".into(), |n| n.to_string_lossy().into_owned());
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(format!(
            "{name}: not run, the collector's time limit passed"
        ));
    }
    let mut c = crate::tool::command(program);
    c.env_remove("KUBECONFIG").args(args);
    let out = crate::tool::output_within(&mut c, &name, left, MAX_ITEM)
        .map_err(|e| format!("run {name}: {e}"))?;
    if out.timed_out {
        return Err(format!(
            "{name} {}: killed at the collector's time limit",
            args.first().copied().unwrap_or_default()
        ));
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.stdout_dropped > 0 {
        text.insert_str(
            0,
            &format!(
                "[stoa: the first {} bytes were left out]\n",
                out.stdout_dropped
            ),
        );
    }
    match out.status {
        Some(s) if s.success() || any_exit => Ok(text),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("Warning:"))
                .unwrap_or("failed")
                .to_owned();
            Err(format!("{name}: {line}"))
        }
    }
}

/// The site config file as written (redacted later with everything else).
pub fn config(ctx: &Ctx, _: Instant) -> Result<Got, String> {
    let text = std::fs::read_to_string(&ctx.config_path)
        .map_err(|e| format!("read {}: {e}", ctx.config_path.display()))?;
    Ok(Got {
        items: vec![Item::new("config/updater.toml", text)],
        notes: Vec::new(),
    })
}

/// The versions of everything the updater works with: itself, the formats
/// it reads, helm, kubectl and the Kubernetes server, psql/pg_dump, the OS.
pub fn versions(ctx: &Ctx, deadline: Instant) -> Result<Got, String> {
    let mut notes = Vec::new();
    let mut v = serde_json::json!({
        "updater": env!("CARGO_PKG_VERSION"),
        "formats": {
            "name": stoa_format::FORMAT_NAME,
            "full": stoa_format::FORMAT_VERSION,
            "delta": stoa_format::DELTA_FORMAT_VERSION,
        },
        "os": os_release(),
    });
    let mut ask = |key: &str, program: Option<PathBuf>, args: &[&str]| match program {
        None => v[key] = serde_json::Value::Null,
        Some(p) => match tool_text(&p, args, deadline, false) {
            Ok(t) => v[key] = serde_json::Value::String(t.trim().to_owned()),
            Err(e) => {
                notes.push(format!("{key}: {e}"));
                v[key] = serde_json::Value::Null;
            }
        },
    };
    let find = |p: &Path| crate::config::find_program(p);
    ask("psql", find(Path::new("psql")), &["--version"]);
    ask("pg_dump", find(Path::new("pg_dump")), &["--version"]);
    if let Some(h) = ctx.cfg.as_ref().and_then(|c| c.helm.as_ref()) {
        ask("helm", h.helm_program().ok(), &["version", "--short"]);
        let kc = h.kubeconfig_path().to_string_lossy().into_owned();
        ask(
            "kubectl",
            h.kubectl_program().ok(),
            &["version", "-o", "json", "--kubeconfig", &kc],
        );
    }
    // kubectl's answer holds both the client and the server
    if let Some(k) = v["kubectl"].as_str() {
        let parsed: serde_json::Value = serde_json::from_str(k).unwrap_or_default();
        v["kubernetes_server"] = parsed["serverVersion"]["gitVersion"].clone();
        v["kubectl"] = parsed["clientVersion"]["gitVersion"].clone();
    }
    if let Some(c) = &ctx.cfg {
        v["requires"] = serde_json::json!({"kubernetes": c.preflight.kubernetes});
    }
    if let Some(r) = ctx.sd.as_ref().and_then(release_needs) {
        v["release"] = r;
    }
    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
    Ok(Got {
        items: vec![Item::new("versions.json", text)],
        notes,
    })
}

/// What the release of interest (pending, else installed) needs: its
/// format version and each chart's version and `kubeVersion`.
fn release_needs(sd: &StateDir) -> Option<serde_json::Value> {
    let v = release_of_interest(sd).ok()?;
    let m = crate::stage::load_release(sd, &v).ok()?;
    let charts: Vec<serde_json::Value> = m
        .charts
        .iter()
        .map(|c| {
            serde_json::json!({"release": c.release, "namespace": c.namespace, "chart": c.name,
                "version": c.version, "kube_version": c.kube_version})
        })
        .collect();
    Some(
        serde_json::json!({"version": v.to_string(), "format_version": m.format_version, "charts": charts}),
    )
}

/// The OS: `/etc/os-release`'s PRETTY_NAME and the kernel release.
fn os_release() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{pretty}, Linux {}", kernel.trim())
}

/// The state folder, or why there is none.
fn state_dir(ctx: &Ctx) -> Result<&StateDir, String> {
    let sd = ctx
        .sd
        .as_ref()
        .ok_or("no state folder: the site config did not load")?;
    if !sd.root.is_dir() {
        return Err(format!("state folder {} is missing", sd.root.display()));
    }
    Ok(sd)
}

/// Whether a JSON line is older than `since` (by its `time` or
/// `started_at`; a line without one is kept).
fn older_than(line: &str, since: SystemTime) -> bool {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let t = v["time"].as_str().or_else(|| v["started_at"].as_str());
    t.and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
        .is_some_and(|t| t < since)
}

/// `state.json`, the journal and audit log (lines since `--since`, and
/// every journal line of the pending operation), the history, the trust
/// root in force and the clock floor.
pub fn state(ctx: &Ctx, _: Instant) -> Result<Got, String> {
    let sd = state_dir(ctx)?;
    let mut got = Got::default();
    // the pending operation's journal lines are kept whatever their age
    let pending = sd
        .load()
        .ok()
        .and_then(|s| s.pending)
        .map(|p| format!("\"op_id\":\"{}\"", p.op_id));
    let keep = |l: &str| {
        !older_than(l, ctx.since) || pending.as_ref().is_some_and(|p| l.contains(p.as_str()))
    };
    let files: [(PathBuf, &str, bool); 6] = [
        (sd.state_path(), "state/state.json", false),
        (sd.journal_path(), "state/journal.jsonl", true),
        (sd.history_path(), "state/history.jsonl", false),
        (crate::audit::log_path(&sd.root), "state/audit.log", true),
        (crate::trust::root_path(sd), "state/trust-root.json", false),
        (
            crate::trust::floor_path(sd),
            "state/clock-floor.json",
            false,
        ),
    ];
    for (path, name, bounded) in files {
        match std::fs::read_to_string(&path) {
            Ok(t) if bounded => {
                let kept: Vec<&str> = t.lines().filter(|l| keep(l)).collect();
                let mut t = kept.join("\n");
                t.push('\n');
                got.items.push(Item::log(name, t));
            }
            Ok(t) => got.items.push(Item::new(name, t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                got.notes.push(format!("{}: none", path.display()));
            }
            Err(e) => got.notes.push(format!("read {}: {e}", path.display())),
        }
    }
    Ok(got)
}

/// `stoa-updater status --json`, run as the operator would (it only reads).
pub fn status(ctx: &Ctx, deadline: Instant) -> Result<Got, String> {
    let me = std::env::current_exe().map_err(|e| format!("find stoa-updater: {e}"))?;
    let cfg = ctx.config_path.to_string_lossy().into_owned();
    let text = tool_text(&me, &["--config", &cfg, "status", "--json"], deadline, true)?;
    Ok(Got {
        items: vec![Item::new("status.json", text)],
        notes: Vec::new(),
    })
}

/// The release preflight is run for: the pending one, else the installed.
fn release_of_interest(sd: &StateDir) -> Result<semver::Version, String> {
    let st = sd.load().map_err(|e| e.to_string())?;
    st.pending
        .as_ref()
        .and_then(|p| p.to.clone())
        .or(st.installed)
        .ok_or_else(|| "no release installed or pending: nothing to check".into())
}

/// Preflight run now, for the pending release (else the installed one).
pub fn preflight(ctx: &Ctx, _: Instant) -> Result<Got, String> {
    let sd = state_dir(ctx)?;
    let cfg = ctx.cfg.as_ref().ok_or("the site config did not load")?;
    let v = release_of_interest(sd)?;
    let m = crate::stage::load_release(sd, &v).map_err(|e| e.to_string())?;
    let p = crate::preflight::run(cfg, sd, &m);
    let mut j = serde_json::to_value(&p).unwrap_or_default();
    j["release"] = serde_json::Value::String(v.to_string());
    Ok(Got {
        items: vec![Item::new(
            "preflight.json",
            serde_json::to_string_pretty(&j).unwrap_or_default(),
        )],
        notes: Vec::new(),
    })
}

/// Names and sizes of the files directly in `dir` (none: empty).
fn listing(dir: &Path) -> Vec<serde_json::Value> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), size)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter()
        .map(|(name, size)| serde_json::json!({"name": name, "size": size}))
        .collect()
}

/// The store (blob digests and sizes), the releases kept, the snapshots
/// (names and sizes): never any content.
pub fn store(ctx: &Ctx, _: Instant) -> Result<Got, String> {
    let sd = state_dir(ctx)?;
    let st = sd.load().ok();
    let releases: Vec<serde_json::Value> = st
        .iter()
        .flat_map(|s| s.releases.iter())
        .map(|r| {
            serde_json::json!({"version": r.version.to_string(), "manifest_sha256": r.manifest_sha256,
                "applied_at": r.applied_at, "snapshots": r.snapshots})
        })
        .collect();
    let v = serde_json::json!({
        "blobs": listing(&sd.store_dir()),
        "staged_releases": listing(&sd.root.join("releases")),
        "releases_kept": releases,
        "snapshots": listing(&sd.snapshots_dir()),
    });
    Ok(Got {
        items: vec![Item::new(
            "store.json",
            serde_json::to_string_pretty(&v).unwrap_or_default(),
        )],
        notes: Vec::new(),
    })
}

/// Each database's migration table: ids, names, checksums, times (no data).
pub fn migrations(ctx: &Ctx, _: Instant) -> Result<Got, String> {
    let cfg = ctx.cfg.as_ref().ok_or("the site config did not load")?;
    let mut got = Got::default();
    for (name, d) in &cfg.databases {
        match crate::db::migration_table(name, &d.url) {
            Ok(rows) => got.items.push(Item::new(
                format!("databases/{name}.json"),
                serde_json::to_string_pretty(&rows).unwrap_or_default(),
            )),
            Err(e) => got.notes.push(format!("database {name}: {e}")),
        }
    }
    if got.items.is_empty() && !got.notes.is_empty() {
        return Err(got.notes.join("; "));
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_older_than_since_are_told_by_their_time() {
        let since = humantime::parse_rfc3339("2026-01-02T00:00:00Z").unwrap();
        assert!(older_than(r#"{"time":"2026-01-01T00:00:00Z"}"#, since));
        assert!(!older_than(r#"{"time":"2026-01-03T00:00:00Z"}"#, since));
        assert!(older_than(
            r#"{"started_at":"2026-01-01T23:59:59Z"}"#,
            since
        ));
        // no time, or one that does not parse: kept
        assert!(!older_than(r#"{"x":1}"#, since));
        assert!(!older_than("not json", since));
    }
}
