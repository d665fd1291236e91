//! `state rebuild`: a lost or stale state folder made again from what the
//! site itself records and the verified bundles the operator gives. Each
//! bundle is verified with the site's trust and staged into the store, as
//! apply stages it; the site is read (the migration tables, each chart's
//! Helm history); the newest bundle the site matches exactly (every
//! migration applied with its checksum, no migration row of a newer
//! release, every chart's latest revision on its chart version) becomes the
//! installed release, the older ones given become the retained releases
//! before it. Every inference is returned as a line for the operator; the
//! state is written once, at the end, by the one durable write.

use std::collections::{BTreeMap, BTreeSet};

use stoa_format::source::{inspect_source, BundleSource};
use stoa_format::{BundleManifest, Limits};

use crate::db::Applied;
use crate::error::{Result, UpdaterError};
use crate::records::HelmRecord;
use crate::state::{now_rfc3339, ReleaseRecord, SiteLock, State, STATE_FORMAT};

use super::{check_regular, is_newer, Site};

/// What a rebuild found and wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RebuildReport {
    /// The release now recorded as installed.
    pub installed: String,
    /// The retained releases recorded, oldest first (the installed last).
    pub releases: Vec<String>,
    /// Every inference, in the order made.
    pub inferences: Vec<String>,
    /// Where the state file that was there before was kept (`--force`).
    pub previous_state: Option<String>,
}

/// What the site records, read once.
struct SiteFacts {
    /// database → applied rows.
    applied: BTreeMap<String, BTreeMap<String, Applied>>,
    /// (namespace, release) → (revision, chart) per revision, oldest first.
    helm: BTreeMap<(String, String), Vec<(u64, String)>>,
}

impl Site {
    /// Rebuilds `state.json` from the site and `bundles` (see the module
    /// comment). Refused when a state file exists, unless `force` (it is
    /// kept beside as `state.json.before-rebuild-<time>`).
    pub fn rebuild_state(&self, bundles: &[BundleSource], force: bool) -> Result<RebuildReport> {
        self.sd.ensure()?;
        let _lock = SiteLock::take(&self.sd, "state rebuild")?;
        let mut report = RebuildReport::default();
        let path = self.sd.state_path();
        if path.exists() && !force {
            return Err(UpdaterError::Refused(format!(
                "{} exists; state rebuild replaces it only with --force (the old one is kept beside)",
                path.display()
            )));
        }
        let mut ms = Vec::new();
        for b in bundles {
            let (m, sha) = self.stage_for_rebuild(b)?;
            report.inferences.push(format!(
                "bundle {}: {} {} verified and staged (manifest sha256:{sha})",
                b.display(),
                m.release.name,
                m.release.version
            ));
            ms.push((m, sha));
        }
        ms.sort_by(|a, b| a.0.release.version.cmp_precedence(&b.0.release.version));
        if let Some(w) = ms
            .windows(2)
            .find(|w| w[0].0.release.name != w[1].0.release.name)
        {
            return Err(UpdaterError::Refused(format!(
                "the bundles are of two releases, {} and {}: a site holds one",
                w[0].0.release.name, w[1].0.release.name
            )));
        }
        let facts = self.read_site(&ms, &mut report.inferences);
        let Some(top) = ms
            .iter()
            .rposition(|(m, _)| self.site_matches(m, &facts, &mut report.inferences))
        else {
            return Err(UpdaterError::SiteAhead(format!(
                "the site matches none of the bundles given: {}",
                report.inferences.join("; ")
            )));
        };
        let records = self.rebuilt_records(&ms[..=top], &facts, &mut report.inferences);
        let state = State {
            format: STATE_FORMAT,
            installed: Some(ms[top].0.release.version.clone()),
            releases: records,
            pending: None,
        };
        if path.exists() {
            let kept = path.with_file_name(format!(
                "state.json.before-rebuild-{}",
                now_rfc3339().replace(':', "")
            ));
            std::fs::rename(&path, &kept).map_err(|e| UpdaterError::io("keep", &path, e))?;
            report.previous_state = Some(kept.display().to_string());
        }
        self.sd.save(&state)?;
        report.installed = ms[top].0.release.version.to_string();
        report.releases = state
            .releases
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        crate::audit::note(format!("state rebuilt: installed {}", report.installed));
        Ok(report)
    }

    /// Verifies `b` with the site's trust (roots it carries accepted, as
    /// apply accepts them) and stages it.
    fn stage_for_rebuild(&self, b: &BundleSource) -> Result<(BundleManifest, String)> {
        let now = crate::trust::checked_now(&self.sd, false)?;
        let base = crate::trust::load(&self.cfg, &self.sd, now)?.base;
        if let BundleSource::File(p) = b {
            check_regular(p)?;
        }
        b.check(&base.store())?;
        let head = inspect_source(b, &Limits::default())?;
        let (trust, chain) = base.resolve(&head.anchors, now)?;
        head.check_signatures(&trust)
            .map_err(|e| crate::trust::explain_revoked(&self.sd, &chain, e))?;
        let staged = crate::stage::verify_and_stage(
            b,
            &trust,
            &Self::verify_options(true),
            &self.sd,
            None,
            &mut |_| {},
        )?;
        crate::trust::accept_roots(&self.sd, &chain)?;
        let v = staged.verified;
        Ok((v.manifest, v.manifest_sha256.hex()))
    }

    /// The migration tables of the bundles' databases and the Helm history
    /// of their charts. What cannot be read is said, and counts as empty.
    fn read_site(&self, ms: &[(BundleManifest, String)], said: &mut Vec<String>) -> SiteFacts {
        let mut facts = SiteFacts {
            applied: BTreeMap::new(),
            helm: BTreeMap::new(),
        };
        let dbs: BTreeSet<&str> = ms
            .iter()
            .flat_map(|(m, _)| m.migrations.iter().map(|s| s.database.as_str()))
            .collect();
        for db in dbs {
            let Some(dbc) = self.cfg.databases.get(db) else {
                said.push(format!("database {db}: not in the site config, not read"));
                continue;
            };
            match self.drivers.database.applied(db, &dbc.url) {
                Ok(a) => {
                    said.push(format!(
                        "database {db}: {} migration(s) applied: {}",
                        a.len(),
                        a.iter()
                            .map(|(id, r)| match &r.release {
                                Some(by) => format!("{id} (by {by})"),
                                None => id.clone(),
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    facts.applied.insert(db.to_owned(), a);
                }
                Err(e) => said.push(format!("database {db}: cannot be read ({e})")),
            }
        }
        let charts: BTreeSet<(String, String)> = ms
            .iter()
            .flat_map(|(m, _)| {
                m.charts
                    .iter()
                    .map(|c| (c.namespace.clone(), c.release.clone()))
            })
            .collect();
        for (ns, rel) in charts {
            match self.drivers.charts.chart_history(&rel, &ns) {
                Ok(h) => {
                    said.push(match h.last() {
                        Some((r, c)) => format!("helm {ns}/{rel}: revision {r}, chart {c}"),
                        None => format!("helm {ns}/{rel}: not installed"),
                    });
                    facts.helm.insert((ns, rel), h);
                }
                Err(e) => said.push(format!("helm {ns}/{rel}: cannot be read ({e})")),
            }
        }
        facts
    }

    /// Whether the site is exactly on `m`: every migration applied with
    /// its checksum, none by a newer release, every chart's latest revision
    /// on `m`'s chart. Says why not.
    fn site_matches(&self, m: &BundleManifest, f: &SiteFacts, said: &mut Vec<String>) -> bool {
        let v = &m.release.version;
        let mut why = Vec::new();
        for set in &m.migrations {
            let applied = f.applied.get(&set.database);
            for st in &set.steps {
                let sum = m.listed(&st.up).map(|e| e.sha256.hex()).unwrap_or_default();
                match applied.and_then(|a| a.get(st.id.as_str())) {
                    None => why.push(format!("{} {} not applied", set.database, st.id)),
                    Some(a) if a.checksum != sum => why.push(format!(
                        "{} {} applied with another checksum",
                        set.database, st.id
                    )),
                    Some(_) => {}
                }
            }
            for (id, a) in applied.into_iter().flatten() {
                let newer = a
                    .release
                    .as_deref()
                    .and_then(|r| semver::Version::parse(r).ok())
                    .is_some_and(|r| is_newer(&r, v));
                if newer {
                    why.push(format!(
                        "{} {id} was applied by a newer release",
                        set.database
                    ));
                }
            }
        }
        for c in &m.charts {
            let want = format!("{}-{}", c.name, c.version);
            let key = (c.namespace.clone(), c.release.clone());
            match f.helm.get(&key).and_then(|h| h.last()) {
                Some((_, chart)) if *chart == want => {}
                Some((_, chart)) => why.push(format!("helm {}: on {chart}, not {want}", c.release)),
                None => why.push(format!("helm {}: not installed", c.release)),
            }
        }
        if why.is_empty() {
            said.push(format!(
                "{v}: the site matches it (every migration and chart)"
            ));
            true
        } else {
            said.push(format!("{v}: not what the site runs ({})", why.join(", ")));
            false
        }
    }

    /// The release records of `ms` (oldest first, the installed last): the
    /// migrations each release added, and per chart the revision on its
    /// chart (`after`) and the one before (`before`: the previous release's,
    /// or, for the oldest, the revision before its first one on that chart;
    /// none when it was the first install).
    fn rebuilt_records(
        &self,
        ms: &[(BundleManifest, String)],
        f: &SiteFacts,
        said: &mut Vec<String>,
    ) -> Vec<ReleaseRecord> {
        let mut out: Vec<ReleaseRecord> = Vec::new();
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (m, sha) in ms {
            let mut migrations = BTreeMap::new();
            for set in &m.migrations {
                let s = seen.entry(set.database.clone()).or_default();
                let new: Vec<String> = set
                    .steps
                    .iter()
                    .map(|st| st.id.to_string())
                    .filter(|id| s.insert(id.clone()))
                    .collect();
                if !new.is_empty() {
                    migrations.insert(set.database.clone(), new);
                }
            }
            let helm = m
                .charts
                .iter()
                .map(|c| {
                    let h = f
                        .helm
                        .get(&(c.namespace.clone(), c.release.clone()))
                        .cloned()
                        .unwrap_or_default();
                    let want = format!("{}-{}", c.name, c.version);
                    let after = h.iter().rev().find(|(_, ch)| *ch == want).map(|(r, _)| *r);
                    let prev = out
                        .last()
                        .and_then(|p| p.helm.iter().find(|x| x.release == c.release))
                        .and_then(|x| x.after);
                    let before = prev.or_else(|| {
                        let first = h.iter().find(|(_, ch)| *ch == want).map(|(r, _)| *r)?;
                        h.iter().rev().find(|(r, _)| *r < first).map(|(r, _)| *r)
                    });
                    HelmRecord {
                        release: c.release.clone(),
                        namespace: c.namespace.clone(),
                        before,
                        after,
                        created_namespace: false,
                    }
                })
                .collect::<Vec<_>>();
            for h in &helm {
                said.push(format!(
                    "{}: helm {}/{} revision {} (before it: {})",
                    m.release.version,
                    h.namespace,
                    h.release,
                    h.after.map_or("none".into(), |r| r.to_string()),
                    h.before.map_or("not installed".into(), |r| r.to_string())
                ));
            }
            out.push(ReleaseRecord {
                name: Some(m.release.name.clone()),
                version: m.release.version.clone(),
                manifest_sha256: sha.clone(),
                applied_at: format!("rebuilt {}", now_rfc3339()),
                helm,
                migrations,
                ..ReleaseRecord::default()
            });
        }
        said.push(
            "snapshots: none recorded (a rebuilt state has none; a rollback needs down steps)"
                .into(),
        );
        out
    }
}
