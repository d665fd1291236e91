//! The audit log: one JSON line per verify, extract, plan, apply, rollback
//! and trust change, appended to `state_dir/audit.log` and fsynced.
//!
//! Commands note what they learn (bundle digest, release, signing keys, root
//! version) as they go; `main` writes the line when the command ends, with
//! its result and exit code. The line never holds a secret: no config values,
//! no URLs, and error messages only for verification errors (which name
//! bundle entries, digests, key ids and root versions); other errors are
//! recorded by kind. Written only when a site config (hence a `state_dir`)
//! is known: `verify` on a machine without `--config` logs nothing.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Result, UpdaterError};

/// What a command learnt, for its audit line.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Facts {
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

/// One line of `audit.log`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditLine {
    pub time: String,
    /// `$SUDO_USER`, `$USER` or `$LOGNAME` (informational).
    pub user: String,
    /// The real uid of the process.
    pub uid: u32,
    pub command: String,
    #[serde(flatten)]
    pub facts: Facts,
    /// `ok` or `failed`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub exit_code: u8,
}

static FACTS: Mutex<Option<Facts>> = Mutex::new(None);

fn with(f: impl FnOnce(&mut Facts)) {
    if let Ok(mut g) = FACTS.lock() {
        f(g.get_or_insert_with(Facts::default));
    }
}

/// The bundle a command verified.
pub fn note_bundle(v: &stoa_format::VerifiedBundle) {
    with(|x| {
        x.bundle_sha256 = Some(v.manifest_sha256.hex());
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
    let facts = FACTS
        .lock()
        .ok()
        .and_then(|mut g| g.take())
        .unwrap_or_default();
    let (res, kind, msg, code) = match result {
        Ok(()) => ("ok", None, None, 0),
        Err(e) => (
            "failed",
            Some(e.kind().to_owned()),
            match e {
                UpdaterError::Format(f) => Some(f.to_string()),
                _ => None,
            },
            e.exit_code(),
        ),
    };
    let line = AuditLine {
        time: crate::state::now_rfc3339(),
        user: user(),
        uid: uid(),
        command: command.to_owned(),
        facts,
        result: res.into(),
        error_kind: kind,
        error: msg,
        exit_code: code,
    };
    append(state_dir, &line)
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
            serde_json::from_str(l).map_err(|e| UpdaterError::StateCorrupt {
                path: path.clone(),
                reason: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}
