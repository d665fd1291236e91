//! Typed records of what the updater writes and prints: the history lines
//! (`history.jsonl`, `history`) and the journal lines (`journal.jsonl`:
//! steps, and the `child` lines of helper processes). This is the crate's
//! leaf vocabulary: steps (`step`), Helm records (`helm`), op kinds, push
//! counts, delta history (`delta`) and the preflight report (`preflight`);
//! it imports nothing of the crate, and every layer above may use it.
//! Field names are those the lines have always had (`docs/OPERATIONS.md`),
//! so an existing history reads back unchanged; a line that does not parse
//! (a torn last line after power loss) is kept as [`HistoryRecord::Unreadable`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod delta;
pub mod helm;
pub mod preflight;
pub mod step;

pub use helm::{HelmBack, HelmRecord};
pub use step::{Step, Undo};

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryLine {
    #[serde(flatten)]
    pub entry: HistoryEntry,
    /// RFC 3339, set when the line is written.
    #[serde(default)]
    pub time: String,
}

/// A finished operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HistoryEntry {
    Apply(ApplyHistory),
    Rollback(RollbackHistory),
    Prune(PruneHistory),
}

/// An apply: applied, or failed (rolled back, left, or the rollback failed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyHistory {
    pub from: Option<String>,
    pub to: String,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_downgrade: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_expired: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<Vec<HelmRecord>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushCounts>,
    /// A delta bundle's base chain (absent for a full bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<delta::DeltaHistory>,
    /// The step that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Apply,
    Rollback,
    /// `remove`: a rollback to nothing installed.
    Remove,
}

/// What a push did; re-pushing the same images uploads no blob bytes.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PushStats {
    pub images: usize,
    pub blobs_uploaded: u64,
    pub bytes_uploaded: u64,
    pub blobs_skipped: u64,
    pub blobs_mounted: u64,
    pub manifests_put: u64,
}

impl PushStats {
    /// The blobs pushed while staging (`self`), then the push step's
    /// stats: a blob the step found present because it was pushed while
    /// staging counts once, as uploaded or mounted; one present before
    /// both counts once, as the step's skip.
    pub fn then(self, step: PushStats) -> PushStats {
        let early = self.blobs_uploaded + self.blobs_mounted;
        PushStats {
            images: step.images,
            blobs_uploaded: self.blobs_uploaded + step.blobs_uploaded,
            bytes_uploaded: self.bytes_uploaded + step.bytes_uploaded,
            blobs_skipped: step.blobs_skipped.saturating_sub(early),
            blobs_mounted: self.blobs_mounted + step.blobs_mounted,
            manifests_put: step.manifests_put,
        }
    }
}

#[cfg(test)]
mod push_stats_tests {
    use super::PushStats;

    #[test]
    fn pushed_while_staging_then_the_step_counts_each_blob_once() {
        let n = |u, b, s, m, p| PushStats {
            images: 0,
            blobs_uploaded: u,
            bytes_uploaded: b,
            blobs_skipped: s,
            blobs_mounted: m,
            manifests_put: p,
        };
        // 3 blob targets: 1 present before, 1 uploaded, 1 mounted while
        // staging; the step finds all 3 present and puts 2 manifests
        let t = n(1, 100, 1, 1, 0).then(n(0, 0, 3, 0, 2));
        assert_eq!(
            (
                t.blobs_uploaded,
                t.bytes_uploaded,
                t.blobs_skipped,
                t.blobs_mounted,
                t.manifests_put
            ),
            (1, 100, 1, 1, 2)
        );
        // the push while staging failed on one: the step uploads it
        let t = n(1, 100, 0, 0, 0).then(n(1, 50, 1, 0, 2));
        assert_eq!(
            (t.blobs_uploaded, t.bytes_uploaded, t.blobs_skipped),
            (2, 150, 0)
        );
    }
}

/// What a push did, as the history records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushCounts {
    pub images: usize,
    pub blobs_uploaded: u64,
    pub bytes_uploaded: u64,
    pub blobs_skipped: u64,
    pub blobs_mounted: u64,
    pub manifests_put: u64,
}

impl From<&PushStats> for PushCounts {
    fn from(p: &PushStats) -> Self {
        Self {
            images: p.images,
            blobs_uploaded: p.blobs_uploaded,
            bytes_uploaded: p.bytes_uploaded,
            blobs_skipped: p.blobs_skipped,
            blobs_mounted: p.blobs_mounted,
            manifests_put: p.manifests_put,
        }
    }
}

/// A rollback, or the revert of an interrupted apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RollbackHistory {
    pub from: Option<String>,
    pub to: Option<String>,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<Vec<HelmBack>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations_undone: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_restored: Option<BTreeMap<String, PathBuf>>,
    /// A failed rollback: the step that failed, and its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Releases pruned beyond `keep_releases`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneHistory {
    pub outcome: String,
    pub releases: Vec<String>,
}

/// A history line as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HistoryRecord {
    Line(Box<HistoryLine>),
    Unreadable { unreadable: String },
}

impl HistoryRecord {
    /// Parses one line of `history.jsonl`.
    pub fn parse(line: &str) -> Self {
        serde_json::from_str(line).unwrap_or_else(|_| Self::Unreadable {
            unreadable: line.to_owned(),
        })
    }
}

/// The text of `history`: one line per operation.
impl fmt::Display for HistoryRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = match self {
            Self::Unreadable { unreadable } => return write!(f, "(unreadable line: {unreadable})"),
            Self::Line(l) => l,
        };
        let dash = |s: Option<&String>| s.map_or("-".to_owned(), Clone::clone);
        match &l.entry {
            HistoryEntry::Prune(p) => write!(
                f,
                "{}  prune    releases {}  {}",
                l.time,
                if p.releases.is_empty() {
                    "-".to_owned()
                } else {
                    p.releases.join(", ")
                },
                p.outcome
            ),
            HistoryEntry::Rollback(r) => {
                write!(
                    f,
                    "{}  {:<8} {} -> {}  {}",
                    l.time,
                    "rollback",
                    dash(r.from.as_ref()),
                    dash(r.to.as_ref()),
                    r.outcome
                )?;
                if let Some(err) = &r.error {
                    write!(f, "  at {}: {err}", dash(r.step.as_ref()))?;
                }
                Ok(())
            }
            HistoryEntry::Apply(a) => {
                write!(
                    f,
                    "{}  {:<8} {} -> {}  {}",
                    l.time,
                    "apply",
                    dash(a.from.as_ref()),
                    a.to,
                    a.outcome
                )?;
                if a.resumed == Some(true) {
                    f.write_str("  [resumed]")?;
                }
                if a.allow_downgrade == Some(true) {
                    f.write_str("  [--allow-downgrade]")?;
                }
                if a.allow_expired == Some(true) {
                    f.write_str("  [--allow-expired]")?;
                }
                if let Some(err) = &a.error {
                    write!(f, "  at {}: {err}", dash(a.step.as_ref()))?;
                }
                Ok(())
            }
        }
    }
}

/// One line of `journal.jsonl`: a step's `begin`/`done`/`undo`/`failed`, a
/// migration about to run, an edited history row met in rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalLine {
    pub op: OpKind,
    pub op_id: String,
    pub to: Option<String>,
    /// The step's name (`migrate:stoa`, …).
    pub step: String,
    pub event: String,
    /// Event details (`id`/`name` of a migration, `error`, …).
    #[serde(flatten)]
    pub detail: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub time: String,
}

/// A `child` line of `journal.jsonl`: a helper process (psql, helm, …) an
/// operation started, named by PID and start time so that recovery can end
/// it even after PID reuse (`tool.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildLine {
    pub op_id: String,
    /// Always `child`: the line's kind.
    pub event: ChildEvent,
    /// The program (`psql`, `helm`, …).
    pub tool: String,
    pub pid: u32,
    /// Clock ticks since boot (field 22 of `/proc/<pid>/stat`), when read.
    pub start_time: Option<u64>,
    /// RFC 3339, set when the line is written.
    #[serde(default)]
    pub time: String,
}

/// The `event` of a [`ChildLine`]: only `child` parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildEvent {
    Child,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// History lines as today's main writes them read back typed, print the
    /// same text, and are written again with the same fields.
    #[test]
    fn history_lines_of_todays_format_read_back_typed() {
        let lines = [
            r#"{"allow_downgrade":false,"allow_expired":false,"from":null,"helm":[{"after":1,"before":null,"namespace":"stoa","release":"stoa-api"}],"manifest_sha256":"ab","migrations":{"stoa":["0001"]},"op":"apply","outcome":"applied","push":{"blobs_mounted":0,"blobs_skipped":0,"blobs_uploaded":3,"bytes_uploaded":10,"images":1,"manifests_put":1},"resumed":false,"time":"2026-11-28T10:00:00Z","to":"2.0.0"}"#,
            r#"{"error":"boom","from":"2.0.0","op":"apply","outcome":"failed, rolled back","step":"helm:stoa-api","time":"2026-11-28T10:01:00Z","to":"2.1.0"}"#,
            r#"{"from":"2.1.0","helm":[{"namespace":"stoa","release":"stoa-api","rolled_back_to":1}],"migrations_undone":{"stoa":["0002"]},"op":"rollback","outcome":"rolled back","snapshots_restored":{},"time":"2026-11-28T10:02:00Z","to":"2.0.0"}"#,
            r#"{"op":"prune","outcome":"pruned","releases":["1.0.0"],"time":"2026-11-28T10:03:00Z"}"#,
            r#"{"op":"apply","to":"#,
        ];
        let texts: Vec<String> = lines
            .iter()
            .map(|l| HistoryRecord::parse(l).to_string())
            .collect();
        assert_eq!(
            texts,
            [
                "2026-11-28T10:00:00Z  apply    - -> 2.0.0  applied",
                "2026-11-28T10:01:00Z  apply    2.0.0 -> 2.1.0  failed, rolled back  at helm:stoa-api: boom",
                "2026-11-28T10:02:00Z  rollback 2.1.0 -> 2.0.0  rolled back",
                "2026-11-28T10:03:00Z  prune    releases 1.0.0  pruned",
                "(unreadable line: {\"op\":\"apply\",\"to\":)",
            ]
        );
        for l in &lines[..4] {
            let before: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            let again = serde_json::to_value(HistoryRecord::parse(l)).unwrap_or_default();
            assert_eq!(again, before, "{l}");
        }
    }

    /// A `child` line as written before it was typed reads back, and is
    /// written again with the same fields; a step line is not a child line.
    #[test]
    fn child_journal_lines_read_back_typed() {
        let l = r#"{"event":"child","op_id":"a1","pid":42,"start_time":123,"time":"2026-11-28T10:00:00Z","tool":"psql"}"#;
        let c: ChildLine = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.tool.as_str(), c.pid, c.start_time),
            ("psql", 42, Some(123))
        );
        let before: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        assert_eq!(serde_json::to_value(&c).unwrap_or_default(), before);
        let step = r#"{"event":"begin","op":"apply","op_id":"a1","pid":1,"step":"files","to":"2.0.0","tool":"x","time":""}"#;
        assert!(serde_json::from_str::<ChildLine>(step).is_err());
    }
}
