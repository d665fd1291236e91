//! The site's state under `state_dir`: `state.json` (written atomically),
//! `journal.jsonl` and `history.jsonl` (append-only, fsynced), and the lock.
//!
//! Layout:
//! ```text
//! state_dir/lock             flock held by apply and rollback
//! state_dir/state.json       installed release, retained releases, pending operation
//! state_dir/journal.jsonl    one line before (and after) every side effect
//! state_dir/history.jsonl    one line per finished operation
//! state_dir/store/sha256/    verified content, by digest, shared between releases
//! state_dir/releases/<v>/    manifest.json of each staged release, chart links
//! state_dir/snapshots/       pg_dump -Fc files
//! state_dir/tools/<sha256>/  runnable copies of carried helm/kubectl (crate::bundled)
//! ```
//!
//! The folder is the operator's alone: created 0700, and an existing one
//! with group or other bits is tightened to 0700 (said on stderr). The
//! state, journal, history and snapshots are 0600.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Result, UpdaterError};
use crate::records::step::Step;
use crate::records::{ChildLine, HistoryEntry, HistoryLine, HistoryRecord, JournalLine};

/// The journal's vocabulary, in the leaf module (`crate::records`).
pub use crate::records::{HelmRecord, OpKind};

pub const STATE_FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: u32,
    /// The installed release, the site's version floor.
    pub installed: Option<semver::Version>,
    /// Retained installed releases, oldest first; the last is `installed`.
    #[serde(default)]
    pub releases: Vec<ReleaseRecord>,
    /// An apply or rollback that started and has not finished.
    #[serde(default)]
    pub pending: Option<Pending>,
}

/// What one apply did, kept so that rollback can undo it without the bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRecord {
    /// The release's name (`[release] name`); absent in records written
    /// before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub version: semver::Version,
    pub manifest_sha256: String,
    pub applied_at: String,
    #[serde(default)]
    pub helm: Vec<HelmRecord>,
    /// database → migration ids this apply ran.
    #[serde(default)]
    pub migrations: BTreeMap<String, Vec<String>>,
    /// database → snapshot file taken before migrating.
    #[serde(default)]
    pub snapshots: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Applied with --allow-expired past the bundle's expiry.
    #[serde(default)]
    pub allow_expired: bool,
    /// The trust root version this apply accepted from the bundle (None:
    /// the root in force was not changed). Rollback keeps it in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_root: Option<u64>,
}

impl Default for ReleaseRecord {
    fn default() -> Self {
        Self {
            name: None,
            version: semver::Version::new(0, 0, 0),
            manifest_sha256: String::new(),
            applied_at: String::new(),
            helm: Vec::new(),
            migrations: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            allow_downgrade: false,
            allow_expired: false,
            trust_root: None,
        }
    }
}

/// An operation in progress, with everything needed to undo it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub op: OpKind,
    pub op_id: String,
    pub started_at: String,
    /// The release installed when the operation started.
    pub from: Option<semver::Version>,
    /// The release the operation goes to.
    pub to: Option<semver::Version>,
    /// For apply: the bundle's manifest digest (resume needs the same one).
    #[serde(default)]
    pub manifest_sha256: Option<String>,
    /// Steps begun, in order, and whether each finished.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// The record being built (apply) — what the undo needs.
    #[serde(default)]
    pub record: ReleaseRecord,
    /// database → migration ids present before this apply touched it.
    #[serde(default)]
    pub migrations_before: BTreeMap<String, Vec<String>>,
    /// The last failure, if the operation failed and was left.
    #[serde(default)]
    pub failed: Option<String>,
    /// For apply: the bundle's paths as they were given (a file, or the
    /// parts), so that a hint to resume is a command to paste.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundle: Vec<PathBuf>,
    /// For rollback: it was confirmed with `--restore-snapshot`, which its
    /// resume needs again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restore_snapshot: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// Serialized as today's step name (`migrate:stoa`, …).
    pub name: Step,
    pub done: bool,
}

/// The command that finishes a pending operation `op` (see
/// [`Pending::resume_hint`]).
pub fn resume_hint(
    config: &Path,
    op: OpKind,
    bundle: &[PathBuf],
    restore_snapshot: bool,
) -> String {
    let sub = match op {
        OpKind::Apply if bundle.is_empty() => "apply <the same bundle>".to_owned(),
        OpKind::Apply => {
            let paths: Vec<String> = bundle
                .iter()
                .map(|p| crate::config::shell_word(&p.to_string_lossy()))
                .collect();
            format!("apply {}", paths.join(" "))
        }
        OpKind::Rollback if restore_snapshot => "rollback --restore-snapshot".into(),
        OpKind::Rollback => "rollback".into(),
        OpKind::Remove if restore_snapshot => "remove --yes --restore-snapshot".into(),
        OpKind::Remove => "remove --yes".into(),
    };
    crate::config::hint(config, &sub)
}

impl Pending {
    /// The command that finishes this operation, to paste: apply of the same
    /// bundle (its paths as given), or rollback (with `--restore-snapshot`
    /// when it was confirmed so).
    pub fn resume_hint(&self, config: &Path) -> String {
        resume_hint(config, self.op, &self.bundle, self.restore_snapshot)
    }

    pub fn step_done(&self, name: &Step) -> bool {
        self.steps.iter().any(|s| &s.name == name && s.done)
    }
    pub fn step_begun(&self, name: &Step) -> bool {
        self.steps.iter().any(|s| &s.name == name)
    }
    /// The step it stopped at: the last begun and not done, else the last.
    pub fn current_step(&self) -> Option<&StepRecord> {
        self.steps
            .iter()
            .rev()
            .find(|s| !s.done)
            .or(self.steps.last())
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The state folder and its files.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn journal_path(&self) -> PathBuf {
        self.root.join("journal.jsonl")
    }
    pub fn history_path(&self) -> PathBuf {
        self.root.join("history.jsonl")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store").join("sha256")
    }
    pub fn blob(&self, hex: &str) -> PathBuf {
        self.store_dir().join(hex)
    }
    pub fn release_dir(&self, v: &semver::Version) -> PathBuf {
        self.root.join("releases").join(v.to_string())
    }
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn ensure(&self) -> Result<()> {
        self.tighten()?;
        if !self.root.exists() {
            // the staging area is the operator's alone
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .map_err(|e| UpdaterError::io("create folder", &self.root, e))?;
        }
        for d in [
            self.root.clone(),
            self.store_dir(),
            self.root.join("releases"),
            self.snapshots_dir(),
        ] {
            fs::create_dir_all(&d).map_err(|e| UpdaterError::io("create folder", &d, e))?;
        }
        Ok(())
    }

    /// An existing state folder looser than 0700 is tightened (snapshots
    /// hold the databases' data), and so are its files (0600).
    fn tighten(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let m = match fs::metadata(&self.root) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(UpdaterError::io("stat", &self.root, e)),
        };
        let mode = m.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                .map_err(|e| UpdaterError::io("tighten to 0700", &self.root, e))?;
            eprintln!(
                "stoa-updater: state folder {} was mode {mode:04o}; tightened to 0700",
                self.root.display()
            );
        }
        let mut files = vec![self.state_path(), self.journal_path(), self.history_path()];
        if let Ok(rd) = fs::read_dir(self.snapshots_dir()) {
            files.extend(rd.flatten().map(|e| e.path()));
        }
        for f in files {
            if let Ok(m) = fs::symlink_metadata(&f) {
                if m.is_file() && m.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(&f, fs::Permissions::from_mode(0o600))
                        .map_err(|e| UpdaterError::io("tighten to 0600", &f, e))?;
                }
            }
        }
        Ok(())
    }

    /// Reads the state. Missing with no journal: a fresh site. Missing with
    /// a journal, unreadable, or not parseable: fail closed.
    pub fn load(&self) -> Result<State> {
        let path = self.state_path();
        let corrupt = |reason: String| UpdaterError::StateCorrupt {
            path: path.clone(),
            reason,
        };
        match fs::read(&path) {
            Ok(bytes) => {
                let s: State = serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(format!("not valid state: {e}")))?;
                if s.format != STATE_FORMAT {
                    return Err(corrupt(format!("unknown state format {}", s.format)));
                }
                if let (Some(v), Some(last)) = (&s.installed, s.releases.last()) {
                    if &last.version != v {
                        return Err(corrupt(
                            "installed version does not match the last release record".into(),
                        ));
                    }
                }
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // a fresh site only when neither the journal nor the history
                // shows an operation; an unreadable one does not count as empty
                for (what, p) in [
                    ("journal", self.journal_path()),
                    ("history", self.history_path()),
                ] {
                    match fs::metadata(&p) {
                        Ok(m) if m.len() == 0 => {}
                        Ok(_) => {
                            return Err(corrupt(format!(
                                "missing, but the {what} shows operations were made"
                            )))
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(corrupt(format!("missing, and the {what}: {e}"))),
                    }
                }
                Ok(State {
                    format: STATE_FORMAT,
                    ..State::default()
                })
            }
            Err(e) => Err(corrupt(format!("read: {e}"))),
        }
    }

    /// Writes the state atomically: temp file, fsync, rename, fsync folder.
    pub fn save(&self, s: &State) -> Result<()> {
        let path = self.state_path();
        // never write a half or empty state: a serialisation error is an error
        let mut bytes = serde_json::to_vec_pretty(s).map_err(|e| UpdaterError::StateCorrupt {
            path: path.clone(),
            reason: format!("cannot serialise the state: {e}"),
        })?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes, None)
    }

    pub fn journal(&self, line: &JournalLine) -> Result<()> {
        append_line(&self.journal_path(), to_value(line))
    }

    /// A `child` line: a helper process an operation started (`tool.rs`).
    pub fn journal_child(&self, line: &ChildLine) -> Result<()> {
        append_line(&self.journal_path(), to_value(line))
    }

    /// Appends a finished operation to `history.jsonl`, with the time.
    pub fn history(&self, entry: HistoryEntry) -> Result<()> {
        let line = HistoryLine {
            entry,
            time: now_rfc3339(),
        };
        append_line(&self.history_path(), to_value(&line))
    }

    pub fn read_history(&self) -> Result<Vec<HistoryRecord>> {
        let path = self.history_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(UpdaterError::io("read history", &path, e)),
        };
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // a torn last line after power loss is not fatal for reading
            out.push(HistoryRecord::parse(line));
        }
        Ok(out)
    }

    /// The last journal entry, for status.
    pub fn last_journal(&self) -> Option<serde_json::Value> {
        let text = fs::read_to_string(self.journal_path()).ok()?;
        text.lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
    }
}

fn to_value(v: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn append_line(path: &Path, mut value: serde_json::Value) -> Result<()> {
    if value
        .get("time")
        .and_then(|t| t.as_str())
        .is_none_or(str::is_empty)
    {
        value["time"] = serde_json::json!(now_rfc3339());
    }
    let created = !path.exists();
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| UpdaterError::io("open", path, e))?;
    let mut line = value.to_string();
    line.push('\n');
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| UpdaterError::io("append", path, e))?;
    if created {
        // the new file's name must survive a power loss too
        let dir = path.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| UpdaterError::io("fsync", dir, e))?;
    }
    Ok(())
}

/// Durable write through [`stoa_format::durable`] (temp in the same
/// folder, fsync, rename, fsync folder): 0600 unless `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    stoa_format::durable::write_atomic_mode(path, bytes, mode.unwrap_or(0o600))
        .map_err(|e| UpdaterError::io("write", path, e))
}

/// The site lock: an exclusive flock on `state_dir/lock`, held while the
/// value lives. A second holder fails at once. The holder writes who it is
/// ([`LockOwner`]) into the lock file, so that `status` and `plan` can tell
/// a running operation from an interrupted one ([`SiteLock::probe`]).
#[derive(Debug)]
pub struct SiteLock {
    _file: File,
}

/// Who holds the site lock, as the holder wrote it into `state_dir/lock`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockOwner {
    pub pid: u32,
    /// `apply` or `rollback`.
    pub op: String,
    pub started_at: String,
}

/// What [`SiteLock::probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockProbe {
    Free,
    /// Held; the owner is None when the holder wrote nothing (yet), e.g.
    /// `flock(1)` or an updater that has just taken it.
    Held(Option<LockOwner>),
}

impl LockProbe {
    /// "an apply (pid 42, since 2026-…)" or "another process".
    pub fn describe(&self) -> String {
        match self {
            Self::Held(Some(o)) => format!("{} (pid {}, since {})", o.op, o.pid, o.started_at),
            _ => "another apply or rollback".into(),
        }
    }
}

impl SiteLock {
    fn path(dir: &StateDir) -> PathBuf {
        dir.root.join("lock")
    }

    /// Takes the lock for `op` and records the owner in the lock file. A
    /// `status` probe holds a shared lock for an instant: a refusal is
    /// retried for up to a second before it counts as busy.
    pub fn take(dir: &StateDir, op: &str) -> Result<Self> {
        let path = Self::path(dir);
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| UpdaterError::io("open lock", &path, e))?;
        let mut tries = 0;
        loop {
            match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    let by = Self::probe(dir).unwrap_or(LockProbe::Held(None)).describe();
                    return Err(UpdaterError::Busy { path, by });
                }
                Err(e) => return Err(UpdaterError::io("lock", &path, e.into())),
            }
        }
        let owner = LockOwner {
            pid: std::process::id(),
            op: op.to_owned(),
            started_at: now_rfc3339(),
        };
        let mut line = serde_json::to_string(&owner).unwrap_or_default();
        line.push('\n');
        f.set_len(0)
            .and_then(|_| f.write_all(line.as_bytes()))
            .and_then(|_| f.sync_data())
            .map_err(|e| UpdaterError::io("write lock owner", &path, e))?;
        Ok(Self { _file: f })
    }

    /// Is the lock held, and by whom? Never blocks and never makes a
    /// holder wait: it takes a shared lock for an instant (an updater that
    /// meets it retries), else reads the owner the holder wrote.
    pub fn probe(dir: &StateDir) -> Result<LockProbe> {
        let path = Self::path(dir);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockProbe::Free),
            Err(e) => return Err(UpdaterError::io("open lock", &path, e)),
        };
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => Ok(LockProbe::Free),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let text = fs::read_to_string(&path).unwrap_or_default();
                Ok(LockProbe::Held(serde_json::from_str(text.trim()).ok()))
            }
            Err(e) => Err(UpdaterError::io("lock", &path, e.into())),
        }
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn probe_tells_held_with_owner_from_free() {
        let dir = std::env::temp_dir().join(format!("stoa-lock-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let sd = StateDir::new(&dir);
        assert_eq!(SiteLock::probe(&sd).unwrap(), LockProbe::Free);
        {
            let _l = SiteLock::take(&sd, "apply").unwrap();
            match SiteLock::probe(&sd).unwrap() {
                LockProbe::Held(Some(o)) => {
                    assert_eq!(o.pid, std::process::id());
                    assert_eq!(o.op, "apply");
                }
                other => panic!("{other:?}"),
            }
            let e = SiteLock::take(&sd, "rollback").unwrap_err();
            assert_eq!(e.exit_code(), 4);
            assert!(
                e.to_string()
                    .contains(&format!("apply (pid {}", std::process::id())),
                "{e}"
            );
        }
        // released, the owner left in the file does not count
        assert_eq!(SiteLock::probe(&sd).unwrap(), LockProbe::Free);
        let _ = fs::remove_dir_all(&dir);
    }
}
