//! The preflight report's vocabulary: each named check and how it ended
//! (`plan` prints it, `apply` carries it in `preflight-failed`); the checks
//! themselves are run by `crate::preflight`.

use serde::Serialize;

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    Skipped,
}

/// One named check and what it saw.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `kubeconfig`, `helm`, `kubernetes`, `kube-version`, `releases`,
    /// `registry`, `database:<name>`,
    /// `disk`.
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
}

/// Every check, in a fixed order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Preflight {
    pub checks: Vec<Check>,
}

impl Preflight {
    pub(crate) fn push(&mut self, name: &str, r: std::result::Result<String, String>) {
        let (outcome, detail) = match r {
            Ok(d) => (Outcome::Ok, d),
            Err(d) => (Outcome::Failed, d),
        };
        self.checks.push(Check {
            name: name.to_owned(),
            outcome,
            detail,
        });
    }

    pub(crate) fn skip(&mut self, name: &str, why: &str) {
        self.checks.push(Check {
            name: name.to_owned(),
            outcome: Outcome::Skipped,
            detail: why.to_owned(),
        });
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome == Outcome::Failed)
    }

    /// The failed checks on one line: `name: detail; name: detail`.
    pub fn summary(&self) -> String {
        self.failed()
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The text report, one line per check.
    pub fn print_text(&self) {
        println!("preflight:");
        for c in &self.checks {
            let o = match c.outcome {
                Outcome::Ok => "ok",
                Outcome::Failed => "FAILED",
                Outcome::Skipped => "skipped",
            };
            println!("  {o:<7} {:<12} {}", c.name, c.detail);
        }
    }
}
