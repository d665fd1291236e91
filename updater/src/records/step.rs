//! The typed steps of apply and rollback. Their text form (`Display`,
//! `FromStr`) is exactly the step names state.json and the journal have
//! always held (`migrate:{db}`, `rollback:helm:{release}`, …), so a state
//! folder written before the type existed loads unchanged; and the undo of
//! an apply step is derived here ([`Step::undo`]) instead of being parsed
//! back out of a string.

use std::fmt;
use std::str::FromStr;

/// One journaled step of apply or rollback.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Verify and stage the bundle (recorded done when the apply starts).
    Stage,
    /// Accept the trust roots the bundle carries: the root in force moves
    /// forward (keys added, keys revoked). Journaled and audited before it
    /// takes effect; never undone (a root does not go back).
    Trust,
    /// Push every image to the site registry.
    PushImages,
    /// `pg_dump` the database before migrating it.
    Snapshot(String),
    /// Run the pending migrations of a database.
    Migrate(String),
    /// `helm upgrade --install` one release (the namespace is in the
    /// release's `HelmRecord`; the step name has never carried it).
    Helm(String),
    /// Install the release's files.
    Files,
    /// Record the release as installed.
    Commit,
    /// Resume of an interrupted apply (journal only).
    Resume,
    /// Revert of an interrupted apply (journal only).
    Undo,
    /// Rollback: one Helm release back to its earlier revision.
    RollbackHelm(String),
    /// Rollback: down steps, or the confirmed snapshot, of one database.
    RollbackMigrate(String),
    /// Rollback: the target release's files.
    RollbackFiles,
    /// Rollback: record the target release as installed.
    RollbackCommit,
}

/// What undoing an apply step means; stage, push and snapshot leave
/// nothing to undo (images stay in the registry; snapshots are pruned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Make the files dir hold the previous release's files again.
    Files,
    /// Helm back to the revision recorded before the upgrade (or uninstall).
    Helm(String),
    /// Down steps of what this apply ran, or the snapshot taken before.
    Migrate(String),
}

impl Step {
    /// The undo of this step of an interrupted apply, if it has one.
    pub fn undo(&self) -> Option<Undo> {
        match self {
            Self::Files => Some(Undo::Files),
            Self::Helm(r) => Some(Undo::Helm(r.clone())),
            Self::Migrate(db) => Some(Undo::Migrate(db.clone())),
            _ => None,
        }
    }

    /// The rollback step that undoes this apply step for a retained release.
    pub fn rollback_step(&self) -> Option<Step> {
        match self.undo()? {
            Undo::Files => Some(Self::RollbackFiles),
            Undo::Helm(r) => Some(Self::RollbackHelm(r)),
            Undo::Migrate(db) => Some(Self::RollbackMigrate(db)),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stage => f.write_str("stage"),
            Self::Trust => f.write_str("trust"),
            Self::PushImages => f.write_str("push-images"),
            Self::Snapshot(db) => write!(f, "snapshot:{db}"),
            Self::Migrate(db) => write!(f, "migrate:{db}"),
            Self::Helm(r) => write!(f, "helm:{r}"),
            Self::Files => f.write_str("files"),
            Self::Commit => f.write_str("commit"),
            Self::Resume => f.write_str("resume"),
            Self::Undo => f.write_str("undo"),
            Self::RollbackHelm(r) => write!(f, "rollback:helm:{r}"),
            Self::RollbackMigrate(db) => write!(f, "rollback:migrate:{db}"),
            Self::RollbackFiles => f.write_str("rollback:files"),
            Self::RollbackCommit => f.write_str("rollback:commit"),
        }
    }
}

/// A step name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown step {0:?}")]
pub struct UnknownStep(pub String);

impl FromStr for Step {
    type Err = UnknownStep;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let arg = |rest: &str| {
            if rest.is_empty() {
                Err(UnknownStep(s.to_owned()))
            } else {
                Ok(rest.to_owned())
            }
        };
        Ok(match s {
            "stage" => Self::Stage,
            "trust" => Self::Trust,
            "push-images" => Self::PushImages,
            "files" => Self::Files,
            "commit" => Self::Commit,
            "resume" => Self::Resume,
            "undo" => Self::Undo,
            "rollback:files" => Self::RollbackFiles,
            "rollback:commit" => Self::RollbackCommit,
            _ => {
                if let Some(r) = s.strip_prefix("rollback:helm:") {
                    Self::RollbackHelm(arg(r)?)
                } else if let Some(db) = s.strip_prefix("rollback:migrate:") {
                    Self::RollbackMigrate(arg(db)?)
                } else if let Some(db) = s.strip_prefix("snapshot:") {
                    Self::Snapshot(arg(db)?)
                } else if let Some(db) = s.strip_prefix("migrate:") {
                    Self::Migrate(arg(db)?)
                } else if let Some(r) = s.strip_prefix("helm:") {
                    Self::Helm(arg(r)?)
                } else {
                    return Err(UnknownStep(s.to_owned()));
                }
            }
        })
    }
}

impl From<Step> for String {
    fn from(s: Step) -> Self {
        s.to_string()
    }
}

impl TryFrom<String> for Step {
    type Error = UnknownStep;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl serde::Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_round_trip_exactly() {
        for name in [
            "stage",
            "trust",
            "push-images",
            "snapshot:stoa",
            "migrate:stoa",
            "helm:stoa-api",
            "files",
            "commit",
            "resume",
            "undo",
            "rollback:helm:stoa-api",
            "rollback:migrate:stoa",
            "rollback:files",
            "rollback:commit",
        ] {
            let s: Step = name.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.to_string(), name);
        }
        assert_eq!(
            "migrate:app:db".parse::<Step>(),
            Ok(Step::Migrate("app:db".into()))
        );
        for bad in [
            "",
            "migrate:",
            "helm:",
            "push",
            "rollback:helm:",
            "snapshot",
        ] {
            assert!(bad.parse::<Step>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn undo_is_derived_per_step() {
        assert_eq!(Step::Files.undo(), Some(Undo::Files));
        assert_eq!(Step::Helm("a".into()).undo(), Some(Undo::Helm("a".into())));
        assert_eq!(
            Step::Migrate("d".into()).rollback_step(),
            Some(Step::RollbackMigrate("d".into()))
        );
        for s in [Step::Stage, Step::PushImages, Step::Snapshot("d".into())] {
            assert_eq!(s.undo(), None, "{s}");
        }
    }
}

#[cfg(test)]
mod fixture_tests {
    use crate::state::{OpKind, StateDir};

    use super::*;

    /// A state folder and journal written by the updater before `Step`
    /// existed (tests/fixtures/state-v1, captured from main at f3d5c04)
    /// load unchanged, every step name parses, and a save writes the same
    /// names back.
    #[test]
    fn a_state_folder_of_todays_format_loads_unchanged() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v1");
        let st = StateDir::new(&dir).load().unwrap_or_else(|e| panic!("{e}"));
        let p = st.pending.as_ref().unwrap_or_else(|| panic!("no pending"));
        assert_eq!(p.op, OpKind::Apply);
        let names: Vec<String> = p.steps.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "stage",
                "push-images",
                "snapshot:stoa",
                "migrate:stoa",
                "helm:stoa-api",
                "helm:stoa-gateway",
                "files"
            ]
        );
        assert_eq!(p.steps[3].name, Step::Migrate("stoa".into()));
        assert_eq!(p.current_step().map(|s| s.name.clone()), Some(Step::Files));
        // the same bytes when written again
        let before = std::fs::read_to_string(dir.join("state.json")).unwrap_or_default();
        let mut again = serde_json::to_string_pretty(&st).unwrap_or_default();
        again.push('\n');
        assert_eq!(again, before);
        // every journal line's step is a known step
        let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap_or_default();
        let mut n = 0;
        for line in journal.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let step = v["step"].as_str().unwrap_or_default();
            let parsed: Step = step.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(parsed.to_string(), step);
            n += 1;
        }
        assert!(n > 20, "{n} journal lines");
    }
}
