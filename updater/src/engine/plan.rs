//! The plan: what apply will do, computed once from the verified manifest,
//! the state, the site config and read-only probes (applied migrations,
//! Helm revisions). `stoa-updater plan` prints exactly this [`Plan`] (text
//! via `Display`, `--json` via `Serialize`); `apply` computes it with the
//! same function and executes exactly its [`Plan::steps`], and refuses an
//! edited migration through the same [`Plan::refuse_edited`].

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use stoa_format::BundleManifest;

use crate::config::SiteConfig;
use crate::error::{Result, UpdaterError};
use crate::registry::{map_name, site_registry_ref};
use crate::state::State;

use super::{Site, Step};

/// What the plan reads besides the manifest, state and config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The databases and Helm (`plan`).
    Full,
    /// The databases only (`apply`: Helm is read by its own steps).
    Databases,
}

/// What an apply of a bundle will do on this site.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub release: String,
    pub version: String,
    pub installed: Option<String>,
    /// An interrupted apply of this bundle is resumed.
    pub resume: bool,
    pub images: Vec<PlannedImage>,
    pub migrations: Vec<PlannedMigrations>,
    pub charts: Vec<PlannedChart>,
    pub files: Vec<PlannedFile>,
    /// The site's Helm version (None: not probed or not available).
    pub helm: Option<String>,
    /// The journaled steps apply runs, in order (after `stage`, before `commit`).
    pub steps: Vec<Step>,
    /// Applied migrations whose checksum differs from the bundle's.
    #[serde(skip)]
    pub edited: Vec<EditedMigration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedImage {
    pub name: String,
    pub digest: String,
    /// host/repo[:tag] on the site registry.
    pub to: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedMigrations {
    pub database: String,
    /// `{id}_{name}`, with " (no down step)" where it has none.
    pub pending: Vec<String>,
    pub snapshot: bool,
    /// Why `pending` lists every step (the database could not be read).
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedChart {
    pub release: String,
    pub namespace: String,
    /// `{name}-{version}`.
    pub chart: String,
    pub current_revision: Revision,
    pub values_files: Vec<PathBuf>,
}

/// A Helm release's current revision as probed: a number, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Revision {
    Deployed(u64),
    /// "not installed", "unknown: …", "unknown (helm not available)".
    Other(String),
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deployed(r) => write!(f, "{r}"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    pub dest: PathBuf,
    pub mode: String,
}

/// An applied migration the bundle has with another checksum.
#[derive(Debug, Clone)]
pub struct EditedMigration {
    pub database: String,
    /// `{id}_{name}`.
    pub migration: String,
    pub applied_checksum: String,
    pub bundle_checksum: String,
}

impl Plan {
    /// The plan of `m` on `site` in `state`.
    pub fn compute(site: &Site, m: &BundleManifest, state: &State, probe: Probe) -> Plan {
        let helm = match probe {
            Probe::Full => site.drivers.charts.version(),
            Probe::Databases => None,
        };
        let (migrations, edited) = planned_migrations(site, m);
        Plan {
            release: m.release.name.clone(),
            version: m.release.version.to_string(),
            installed: state.installed.as_ref().map(|v| v.to_string()),
            resume: state.pending.is_some(),
            images: planned_images(&site.cfg, m),
            migrations,
            charts: planned_charts(site, m, probe, helm.is_some()),
            files: m
                .files
                .iter()
                .map(|f| PlannedFile {
                    dest: site.cfg.files_dir().join(&f.dest),
                    mode: f.mode.to_string(),
                })
                .collect(),
            helm,
            steps: apply_steps(m, &site.cfg),
            edited,
        }
    }

    /// Apply accepts the roots the bundle carries: its `trust` step comes
    /// first, before any change to images, databases, charts or files.
    pub fn accept_trust(&mut self) {
        if !self.steps.contains(&Step::Trust) {
            self.steps.insert(0, Step::Trust);
        }
    }

    /// An applied migration whose checksum differs from the bundle's
    /// (someone edited it) is refused the same way by plan and apply, exit
    /// 5, before anything on the site changes.
    pub fn refuse_edited(&self) -> Result<()> {
        match self.edited.first() {
            Some(e) => Err(UpdaterError::MigrationEdited {
                database: e.database.clone(),
                migration: e.migration.clone(),
                checksums: format!(
                    "already applied with checksum {}, the bundle's is {}",
                    e.applied_checksum, e.bundle_checksum
                ),
            }),
            None => Ok(()),
        }
    }
}

fn planned_images(cfg: &SiteConfig, m: &BundleManifest) -> Vec<PlannedImage> {
    let (prefix, layout) = cfg
        .registry
        .as_ref()
        .map(|r| (r.prefix.clone(), r.layout))
        .unwrap_or_default();
    let host = cfg
        .registry
        .as_ref()
        .map(site_registry_ref)
        .unwrap_or_default();
    let host_only = host.split('/').next().unwrap_or("");
    m.images
        .iter()
        .map(|i| {
            let t = map_name(&i.name, &prefix, layout);
            PlannedImage {
                name: i.name.to_string(),
                digest: i.digest.to_string(),
                to: format!(
                    "{host_only}/{}{}",
                    t.repo,
                    t.tag.map(|t| format!(":{t}")).unwrap_or_default()
                ),
                size: i.size,
            }
        })
        .collect()
}

/// The pending migrations per database, and the edited ones. A database
/// that cannot be read is noted (its steps all listed), and left to the
/// migrate step to report.
fn planned_migrations(
    site: &Site,
    m: &BundleManifest,
) -> (Vec<PlannedMigrations>, Vec<EditedMigration>) {
    let mut out = Vec::new();
    let mut edited = Vec::new();
    for set in &m.migrations {
        let Some(dbc) = site.cfg.databases.get(&set.database) else {
            continue;
        };
        let (pending, note) = match site.drivers.database.applied(&set.database, &dbc.url) {
            Ok(applied) => {
                let mut pend = Vec::new();
                for s in &set.steps {
                    let sum = m.listed(&s.up).map(|e| e.sha256.hex()).unwrap_or_default();
                    match applied.get(s.id.as_str()) {
                        Some(a) if a.checksum != sum => edited.push(EditedMigration {
                            database: set.database.clone(),
                            migration: format!("{}_{}", s.id, s.name),
                            applied_checksum: a.checksum.clone(),
                            bundle_checksum: sum,
                        }),
                        Some(_) => {}
                        None => pend.push(format!(
                            "{}_{}{}",
                            s.id,
                            s.name,
                            if s.down.is_some() {
                                ""
                            } else {
                                " (no down step)"
                            }
                        )),
                    }
                }
                (pend, None)
            }
            Err(e) => (
                set.steps
                    .iter()
                    .map(|s| format!("{}_{}", s.id, s.name))
                    .collect(),
                Some(format!("could not read the database: {e}")),
            ),
        };
        out.push(PlannedMigrations {
            database: set.database.clone(),
            pending,
            snapshot: dbc.snapshot,
            note,
        });
    }
    (out, edited)
}

fn planned_charts(
    site: &Site,
    m: &BundleManifest,
    probe: Probe,
    helm_up: bool,
) -> Vec<PlannedChart> {
    m.charts
        .iter()
        .map(|c| {
            let current_revision = match (probe, helm_up) {
                (Probe::Databases, _) => Revision::Other("not probed".into()),
                (Probe::Full, false) => Revision::Other("unknown (helm not available)".into()),
                (Probe::Full, true) => match site.drivers.charts.revision(&c.release, &c.namespace)
                {
                    Ok(Some(r)) => Revision::Deployed(r),
                    Ok(None) => Revision::Other("not installed".into()),
                    Err(e) => Revision::Other(format!("unknown: {e}")),
                },
            };
            PlannedChart {
                release: c.release.clone(),
                namespace: c.namespace.clone(),
                chart: format!("{}-{}", c.name, c.version),
                current_revision,
                // in Helm's order: the bundle's vendor files, then the site's
                values_files: c
                    .values
                    .iter()
                    .map(|v| PathBuf::from(format!("bundle:{}", v.path)))
                    .chain(
                        site.cfg
                            .helm
                            .as_ref()
                            .and_then(|h| h.values_file(&c.release)),
                    )
                    .collect(),
            }
        })
        .collect()
}

/// The journaled steps an apply of `m` runs on this site, in order (after
/// `stage`, which is recorded when the apply starts; before `commit`).
pub fn apply_steps(m: &BundleManifest, cfg: &SiteConfig) -> Vec<Step> {
    let mut steps = Vec::new();
    // in `serve` mode the staged store is what nodes pull from: no push
    if !m.images.is_empty() && !cfg.serves_images() {
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

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan: {} {} over {}{}",
            self.release,
            self.version,
            self.installed.as_deref().unwrap_or("nothing installed"),
            if self.resume {
                " (resumes the interrupted apply)"
            } else {
                ""
            }
        )?;
        for i in &self.images {
            writeln!(f, "push image {} -> {}", i.name, i.to)?;
        }
        for mg in &self.migrations {
            writeln!(
                f,
                "database {}: snapshot {}, pending {}",
                mg.database,
                mg.snapshot,
                serde_json::to_string(&mg.pending).unwrap_or_default()
            )?;
            if let Some(n) = &mg.note {
                writeln!(f, "  note: {n}")?;
            }
        }
        for c in &self.charts {
            let values: Vec<String> = c
                .values_files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            writeln!(
                f,
                "helm upgrade --install {}/{} ({}), current revision {}, values: {}",
                c.namespace,
                c.release,
                c.chart,
                c.current_revision,
                if values.is_empty() {
                    "none (the chart's defaults)".to_owned()
                } else {
                    values.join(", ")
                }
            )?;
        }
        for fl in &self.files {
            writeln!(f, "install file {} mode {}", fl.dest.display(), fl.mode)?;
        }
        Ok(())
    }
}
