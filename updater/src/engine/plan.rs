//! The plan: what apply will do, computed from the verified manifest and
//! the site config. `stoa-updater plan` prints it and `apply` executes
//! exactly its steps.

use stoa_format::BundleManifest;

use crate::config::SiteConfig;

use super::Step;

/// The journaled steps an apply of `m` runs on this site, in order (after
/// `stage`, which is recorded when the apply starts; before `commit`).
pub fn apply_steps(m: &BundleManifest, cfg: &SiteConfig) -> Vec<Step> {
    let mut steps = Vec::new();
    if !m.images.is_empty() {
        steps.push(Step::PushImages);
    }
    for set in &m.migrations {
        if cfg.databases.get(&set.database).is_some_and(|d| d.snapshot) {
            steps.push(Step::Snapshot(set.database.clone()));
        }
        steps.push(Step::Migrate(set.database.clone()));
    }
    steps.extend(m.charts.iter().map(|c| Step::Helm(c.release.clone())));
    if !m.files.is_empty() {
        steps.push(Step::Files);
    }
    steps
}
