//! The audit log: JSON lines for every verify, extract, plan, apply,
//! rollback and trust change, appended to `state_dir/audit.log` and fsynced.
//!
//! `main` writes a `started` line before the command does any work
//! ([`start`], which also leaves a marker `state_dir/audit.open/<pid>.json`)
//! and the end line when it ends ([`record`]: result `ok` or `failed`, exit
//! code; the marker goes). A command killed or panicking leaves its marker:
//! the next audited command closes it with an `interrupted` line, so every
//! run has an end line. Start and end share a `run` id; `history --audit`
//! shows one entry per run.
//!
//! Commands note what they learn (bundle digest, release, signing keys, root
//! version) as they go. The line never holds a secret: no config values,
//! no URLs, and error messages only for verification errors (which name
//! bundle entries, digests, key ids and root versions); other errors are
//! recorded by kind. Every text taken from a bundle or a root passes through
//! the one escaping function ([`stoa_format::text::escape`]). Each line holds
//! the site's clock floor beside its time, and `before_clock_floor` when the
//! time is earlier (a clock set back). Written only when a site config
//! (hence a `state_dir`) is known: `verify` on a machine without `--config`
//! logs nothing.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Result, UpdaterError};

/// What a command learnt, for its audit line.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Facts {
    /// The SHA-256 of the bundle's signed manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// The SHA-256 of the bundle file as read, every byte (what `build` and
    /// `split` print as `bundle sha256:`). Lines written before
    /// `manifest_sha256` existed held the manifest's digest here:
    /// [`Facts::upgrade`] moves it on reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default)]
    pub signing_key_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Facts {
    /// A line written before `manifest_sha256` existed: its
    /// `bundle_sha256` was the manifest's digest.
    fn upgrade(mut self) -> Self {
        if self.manifest_sha256.is_none() {
            self.manifest_sha256 = self.bundle_sha256.take();
        }
        self
    }
}

/// One line of `audit.log`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditLine {
    pub time: String,
    /// The site's clock floor when the line was written (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_floor: Option<String>,
    /// The time is before the clock floor: the clock was set back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub before_clock_floor: bool,
    /// `<pid>-<start time ns>`: the started line and the end line of one
    /// run share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// `$SUDO_USER`, `$USER` or `$LOGNAME` (informational).
    pub user: String,
    /// The real uid of the process.
    pub uid: u32,
    pub command: String,
    #[serde(flatten)]
    pub facts: Facts,
    /// `started`, then `ok`, `failed` or `interrupted` (the run never
    /// ended: killed, crashed or panicked; written by the next run); or
    /// `trust-change`, written just before a root is persisted.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// None on `started` and `interrupted` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
}

/// This process's run: its id and command (set by [`start`]) and what the
/// command learnt. The one piece of audit state, like a logger's: every
/// fact is noted through the functions below and read only by [`record`]
/// and [`trust_change`], so the trust functions that verify, plan, apply
/// and trust share need no audit parameter.
#[derive(Debug, Default)]
struct Run {
    id: Option<String>,
    command: Option<String>,
    facts: Facts,
}

static RUN: Mutex<Option<Run>> = Mutex::new(None);

/// This run's state, changed in one place.
fn with_run<T>(f: impl FnOnce(&mut Run) -> T) -> Option<T> {
    RUN.lock()
        .ok()
        .map(|mut g| f(g.get_or_insert_with(Run::default)))
}

fn with(f: impl FnOnce(&mut Facts)) {
    with_run(|r| f(&mut r.facts));
}

/// The bundle a command verified.
pub fn note_bundle(v: &stoa_format::VerifiedBundle) {
    with(|x| {
        x.manifest_sha256 = Some(v.manifest_sha256.hex());
        x.bundle_sha256 = v.file_sha256.map(|d| d.hex());
        x.release = Some(format!(
            "{} {}",
            v.manifest.release.name, v.manifest.release.version
        ));
        x.signing_key_ids = v.trusted_signers.iter().map(|k| k.to_string()).collect();
    });
}

pub fn note_root(version: u64) {
    with(|x| x.root_version = Some(version));
}

pub fn note(s: String) {
    with(|x| x.notes.push(s));
}

/// A trust change about to take effect (a root about to be persisted): its
/// own line, `result: "trust-change"`, written at once (before the change,
/// so a run killed after it still leaves it in the log). Needs [`start`]
/// to have named the state folder's run; without it (no site config) the
/// line is still written to `state_dir`.
pub fn trust_change(state_dir: &Path, what: &str) -> Result<()> {
    let cmd = with_run(|r| r.command.clone())
        .flatten()
        .unwrap_or_else(|| "-".into());
    let mut l = line(state_dir, &cmd, "trust-change");
    l.facts
        .notes
        .push(stoa_format::text::escape(what).into_owned());
    append(state_dir, &l)
}

fn run_id() -> Option<String> {
    with_run(|r| r.id.clone()).flatten()
}

fn open_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.open")
}

fn marker(state_dir: &Path, pid: u32) -> PathBuf {
    open_dir(state_dir).join(format!("{pid}.json"))
}

/// A line stamped with the time, the clock floor and who runs it.
fn line(state_dir: &Path, command: &str, result: &str) -> AuditLine {
    let now = std::time::SystemTime::now();
    let floor = crate::trust::read_floor_in(state_dir).ok().flatten();
    AuditLine {
        time: humantime::format_rfc3339_seconds(now).to_string(),
        clock_floor: floor.as_ref().map(|(_, f)| f.floor.clone()),
        before_clock_floor: floor.is_some_and(|(t, _)| now < t),
        run: run_id(),
        user: user(),
        uid: uid(),
        command: command.to_owned(),
        facts: Facts::default(),
        result: result.to_owned(),
        error_kind: None,
        error: None,
        exit_code: None,
    }
}

/// Before a command does any work: closes the runs that never ended (their
/// process is gone) with an `interrupted` line, then writes this run's
/// `started` line and its marker.
pub fn start(state_dir: &Path, command: &str) -> Result<()> {
    close_interrupted(state_dir)?;
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    with_run(|r| {
        r.id = Some(format!("{pid}-{nanos}"));
        r.command = Some(command.to_owned());
    });
    let l = line(state_dir, command, "started");
    append(state_dir, &l)?;
    let dir = open_dir(state_dir);
    fs::create_dir_all(&dir).map_err(|e| UpdaterError::io("create folder", &dir, e))?;
    let m = marker(state_dir, pid);
    let bytes = serde_json::to_vec(&l).unwrap_or_default();
    stoa_format::durable::write_atomic(&m, &bytes).map_err(|e| UpdaterError::io("write", &m, e))
}

/// Writes an `interrupted` line for every marker whose process is gone.
fn close_interrupted(state_dir: &Path) -> Result<()> {
    let dir = open_dir(state_dir);
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut markers: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    markers.sort();
    for m in markers {
        let pid = m
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u32>().ok());
        // a live process (pid reuse aside) is still running its command
        if pid.is_some_and(|p| p != std::process::id() && Path::new(&format!("/proc/{p}")).exists())
        {
            continue;
        }
        let started: Option<AuditLine> = fs::read(&m)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let mut l = line(state_dir, "-", "interrupted");
        match started {
            Some(s) => {
                l.command = s.command;
                l.run = s.run;
                l.facts.notes.push(format!(
                    "started {} and never ended: killed, crashed or panicked",
                    s.time
                ));
            }
            None => l
                .facts
                .notes
                .push("an unreadable start marker: a run that never ended".into()),
        }
        l.error_kind = Some("interrupted".into());
        append(state_dir, &l)?;
        fs::remove_file(&m).map_err(|e| UpdaterError::io("remove", &m, e))?;
    }
    Ok(())
}

fn user() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "-".into())
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

pub fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.log")
}

/// Appends the line of a finished command.
pub fn record(
    state_dir: &Path,
    command: &str,
    result: std::result::Result<(), &UpdaterError>,
) -> Result<()> {
    let facts = with_run(|r| std::mem::take(&mut r.facts)).unwrap_or_default();
    // text from bundles and roots: escaped, like every terminal line
    let esc = |s: String| stoa_format::text::escape(&s).into_owned();
    let facts = Facts {
        release: facts.release.map(esc),
        signing_key_ids: facts.signing_key_ids.into_iter().map(esc).collect(),
        notes: facts.notes.into_iter().map(esc).collect(),
        ..facts
    };
    let (res, kind, msg, code) = match result {
        Ok(()) => ("ok", None, None, 0),
        Err(e) => (
            "failed",
            Some(e.kind().to_owned()),
            match e {
                UpdaterError::Format(f) => Some(esc(f.to_string())),
                _ => None,
            },
            e.exit_code(),
        ),
    };
    let line = AuditLine {
        facts,
        error_kind: kind,
        error: msg,
        exit_code: Some(code),
        ..line(state_dir, command, res)
    };
    append(state_dir, &line)?;
    let m = marker(state_dir, std::process::id());
    if run_id().is_some() && m.exists() {
        fs::remove_file(&m).map_err(|e| UpdaterError::io("remove", &m, e))?;
    }
    Ok(())
}

/// The log as `history --audit` shows it: one entry per run. A `started`
/// line is left out once its run has an end line, and a `trust-change`
/// line is folded into its run's end line (its note first).
pub fn runs(lines: Vec<AuditLine>) -> Vec<AuditLine> {
    use std::collections::{HashMap, HashSet};
    let ended: HashSet<String> = lines
        .iter()
        .filter(|l| l.result != "started" && l.result != "trust-change")
        .filter_map(|l| l.run.clone())
        .collect();
    let mut changes: HashMap<String, Vec<String>> = HashMap::new();
    for l in &lines {
        if let (true, Some(r)) = (l.result == "trust-change", &l.run) {
            changes
                .entry(r.clone())
                .or_default()
                .extend(l.facts.notes.iter().cloned());
        }
    }
    let folded = |l: &AuditLine| {
        (l.result == "started" || l.result == "trust-change")
            && l.run.as_ref().is_some_and(|r| ended.contains(r))
    };
    lines
        .into_iter()
        .filter(|l| !folded(l))
        .map(|mut l| {
            if let Some(n) = l.run.as_ref().and_then(|r| changes.get(r)) {
                let mut notes = n.clone();
                notes.append(&mut l.facts.notes);
                l.facts.notes = notes;
            }
            l
        })
        .collect()
}

fn append(state_dir: &Path, line: &AuditLine) -> Result<()> {
    fs::create_dir_all(state_dir).map_err(|e| UpdaterError::io("create folder", state_dir, e))?;
    let path = log_path(state_dir);
    let created = !path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| UpdaterError::io("open", &path, e))?;
    let mut text = serde_json::to_string(line).unwrap_or_default();
    text.push('\n');
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| UpdaterError::io("append", &path, e))?;
    if created {
        File::open(state_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| UpdaterError::io("fsync", state_dir, e))?;
    }
    Ok(())
}

/// Every line, oldest first. A line that does not parse is an error (the log
/// is append-only; a damaged line is worth a look).
pub fn read(state_dir: &Path) -> Result<Vec<AuditLine>> {
    let path = log_path(state_dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(UpdaterError::io("read", &path, e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<AuditLine>(l)
                .map(|mut a| {
                    a.facts = std::mem::take(&mut a.facts).upgrade();
                    a
                })
                .map_err(|e| UpdaterError::StateCorrupt {
                    path: path.clone(),
                    reason: format!("line {}: {e}", i + 1),
                })
        })
        .collect()
}
