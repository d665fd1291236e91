//! The change report (`plan --report report.html`, issue 20 item 4): one
//! self-contained HTML page for a change board, built from what `plan`
//! computed (the [`Plan`], the preflight checks, the bundle's charts
//! rendered) and the site's state (the installed release's manifest and
//! charts from the store): release, signer key ids and root version, the
//! upgrade path, every image added, removed or changed, each chart's
//! version change with the unified diff of its rendered manifests, each
//! migration's SQL, the files, the preflight results, the snapshots and
//! the rollback path (docs/OPERATIONS.md, *Change report*).
//!
//! The page ([`html`]) has no script and no external reference; every
//! value passes through its one escape function. It is written with the
//! one durable write, 0644. `--sign-key KEY` also writes `<report>.sig`:
//! the raw 64-byte Ed25519 signature over the page's exact bytes, as a
//! bundle's `signatures/<key id>.sig`, checked with the same
//! `openssl pkeyutl -verify … -rawin` command.

pub mod capture;
pub mod charts;
pub mod diff;
pub mod html;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use stoa_format::keys::SigningKeyPair;
use stoa_format::manifest::ImageRecord;
use stoa_format::{BundleManifest, VerifiedBundle};

use crate::engine::plan::Plan;
use crate::engine::Site;
use crate::error::{Result, UpdaterError};
use crate::helm::Helm;
use crate::postrender::RenderedChart;
use crate::preflight::{Check, Preflight};
use crate::state::State;

pub use capture::SqlCapture;
pub use charts::ChartChange;

/// What the upstream signature check says of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureStatus {
    /// The bundle carries no upstream signature for the image.
    NoneCarried,
    /// Signatures by these signers (`name (key id)`), verified at build
    /// and again by the read that made this report.
    Verified(Vec<String>),
}

impl std::fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoneCarried => f.write_str("none carried"),
            Self::Verified(by) => write!(f, "verified: signed by {}", by.join(", ")),
        }
    }
}

/// The one place the report reads an image's signature status: the
/// carried upstream signatures the signed manifest lists (every reader,
/// this plan's included, re-verified them before the report is written).
pub fn signature_status(image: &ImageRecord) -> SignatureStatus {
    if image.signatures.is_empty() {
        return SignatureStatus::NoneCarried;
    }
    SignatureStatus::Verified(
        image
            .signatures
            .iter()
            .map(|s| format!("{} ({})", s.signer, s.key_id))
            .collect(),
    )
}

/// How an item differs from the installed release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Changed => "changed",
            Self::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    pub change: Change,
    /// The bundle's name (the installed one for a removed image).
    pub name: String,
    /// The installed name and digest, for a changed image.
    pub old_name: Option<String>,
    pub old_digest: Option<String>,
    pub digest: String,
    pub size: u64,
    /// Where it is served on site.
    pub to: String,
    pub signatures: SignatureStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationRow {
    pub database: String,
    /// `{id}_{name}`.
    pub step: String,
    /// Not yet applied: apply runs it.
    pub pending: bool,
    pub up_path: String,
    pub up_sql: String,
    pub down_path: Option<String>,
    pub down_sql: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileRow {
    pub change: Change,
    pub dest: String,
    pub mode: String,
    pub size: u64,
    pub sha256: String,
}

/// Everything the page shows, as values (HTML is made from it alone).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub release: String,
    pub version: String,
    pub created: String,
    pub expires: Option<String>,
    pub manifest_sha256: String,
    pub bundle_sha256: Option<String>,
    /// Trusted key ids whose signatures verified.
    pub signers: Vec<String>,
    pub root_version: u64,
    pub trust_change: Option<String>,
    pub installed: Option<String>,
    pub upgrade_from: Option<String>,
    pub delta_bases: Vec<String>,
    pub resume: bool,
    pub steps: Vec<String>,
    pub images: Vec<ImageRow>,
    pub charts: Vec<ChartChange>,
    /// Charts of the installed release this bundle does not carry.
    pub charts_not_carried: Vec<String>,
    pub migrations: Vec<MigrationRow>,
    /// Notes on migrations (a database not read, SQL not shown).
    pub migration_notes: Vec<String>,
    pub files: Vec<FileRow>,
    pub preflight: Vec<Check>,
    /// database → a snapshot is taken before migrating.
    pub snapshots: Vec<(String, bool)>,
    pub rollback: Vec<String>,
    pub generated: String,
}

/// What `plan` hands the report.
pub struct Inputs<'a> {
    pub site: &'a Site,
    pub verified: &'a VerifiedBundle,
    pub root_version: u64,
    pub trust_change: Option<&'a crate::trust::TrustChange>,
    pub state: &'a State,
    pub plan: &'a Plan,
    pub preflight: &'a Preflight,
    /// The bundle's charts rendered, with their manifests.
    pub rendered: &'a [RenderedChart],
    pub render_error: Option<&'a UpdaterError>,
    pub helm: Option<&'a Helm>,
    /// plan's private temp folder.
    pub tmp: &'a Path,
    /// The bundle's migration SQL kept while it verified ([`SqlCapture`]).
    pub sql: &'a BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inputs({} {})", self.plan.release, self.plan.version)
    }
}

/// The signing key of `--sign-key`, loaded before the bundle is read (a
/// bad key fails at once). The key's content is never shown.
#[derive(Debug)]
pub struct Signer(SigningKeyPair);

impl Signer {
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self(SigningKeyPair::load(path)?))
    }
}

/// `<report>.sig`.
pub fn sig_path(report: &Path) -> PathBuf {
    let mut s = report.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// Builds the report, writes the page (and its signature).
pub fn write(inp: &Inputs<'_>, path: &Path, signer: Option<&Signer>) -> Result<Written> {
    let report = build(inp);
    let page = html::page(&report);
    crate::state::write_atomic(path, page.as_bytes(), Some(0o644))?;
    let mut w = Written {
        path: path.to_owned(),
        bytes: page.len(),
        signature: None,
        key_id: None,
    };
    if let Some(Signer(k)) = signer {
        let sig = k.sign(page.as_bytes());
        let sp = sig_path(path);
        crate::state::write_atomic(&sp, &sig, Some(0o644))?;
        w.signature = Some(sp);
        w.key_id = Some(k.id().to_string());
    }
    Ok(w)
}

/// The installed release's manifest, from the store (checked against the
/// digest the state recorded).
fn installed_manifest(site: &Site, state: &State) -> Option<Result<BundleManifest>> {
    let v = state.installed.as_ref()?;
    let rec = state.releases.iter().rev().find(|r| &r.version == v)?;
    Some(crate::stage::load_release_checked(
        &site.sd,
        &rec.version,
        &rec.manifest_sha256,
    ))
}

/// The report model of `inp`.
pub fn build(inp: &Inputs<'_>) -> Report {
    let m = &inp.verified.manifest;
    let plan = inp.plan;
    let mut migration_notes = Vec::new();
    let old = match installed_manifest(inp.site, inp.state) {
        Some(Ok(o)) => Some(o),
        Some(Err(e)) => {
            migration_notes.push(format!(
                "the installed release could not be read from the store ({e}): every item is shown as added"
            ));
            None
        }
        None => None,
    };
    let charts = charts::changes(inp, old.as_ref());
    let charts_not_carried = old
        .iter()
        .flat_map(|o| &o.charts)
        .filter(|oc| {
            !m.charts
                .iter()
                .any(|c| c.release == oc.release && c.namespace == oc.namespace)
        })
        .map(|oc| {
            format!(
                "{}/{} ({}-{})",
                oc.namespace, oc.release, oc.name, oc.version
            )
        })
        .collect();
    let (migrations, notes) = migration_rows(inp, m);
    migration_notes.extend(notes);
    Report {
        release: m.release.name.clone(),
        version: m.release.version.to_string(),
        created: stoa_format::fields::format_rfc3339(m.release.created.time()),
        expires: m
            .release
            .expires
            .as_ref()
            .map(|t| stoa_format::fields::format_rfc3339(t.time())),
        manifest_sha256: inp.verified.manifest_sha256.hex(),
        bundle_sha256: inp.verified.file_sha256.map(|d| d.hex()),
        signers: inp
            .verified
            .trusted_signers
            .iter()
            .map(ToString::to_string)
            .collect(),
        root_version: inp.root_version,
        trust_change: inp.trust_change.map(ToString::to_string),
        installed: plan.installed.clone(),
        upgrade_from: m.release.upgrade_from.clone(),
        delta_bases: m
            .delta
            .iter()
            .flat_map(|d| &d.bases)
            .map(|b| format!("{} {}", b.name, b.version))
            .collect(),
        resume: plan.resume,
        steps: plan.steps.iter().map(ToString::to_string).collect(),
        images: image_rows(plan, m, old.as_ref()),
        charts,
        charts_not_carried,
        migrations,
        migration_notes,
        files: file_rows(m, old.as_ref()),
        preflight: inp.preflight.checks.clone(),
        snapshots: plan
            .migrations
            .iter()
            .map(|p| (p.database.clone(), p.snapshot))
            .collect(),
        rollback: rollback_path(plan, m),
        generated: crate::state::now_rfc3339(),
    }
}

/// The repository an image is matched on between releases.
fn repo(i: &ImageRecord) -> String {
    i.name.source_repository()
}

fn image_rows(plan: &Plan, m: &BundleManifest, old: Option<&BundleManifest>) -> Vec<ImageRow> {
    let old_images: &[ImageRecord] = old.map_or(&[], |o| &o.images);
    let mut used = BTreeSet::new();
    let mut rows = Vec::new();
    for (k, i) in m.images.iter().enumerate() {
        let name = i.name.to_string();
        // the same name first, then the same repository
        let found = old_images
            .iter()
            .enumerate()
            .find(|(n, o)| !used.contains(n) && o.name.to_string() == name)
            .or_else(|| {
                old_images
                    .iter()
                    .enumerate()
                    .find(|(n, o)| !used.contains(n) && repo(o) == repo(i))
            });
        let (change, old_name, old_digest) = match found {
            Some((n, o)) => {
                used.insert(n);
                if o.name.to_string() == name && o.digest == i.digest {
                    (Change::Unchanged, None, None)
                } else {
                    (
                        Change::Changed,
                        Some(o.name.to_string()),
                        Some(o.digest.to_string()),
                    )
                }
            }
            None => (Change::Added, None, None),
        };
        rows.push(ImageRow {
            change,
            name,
            old_name,
            old_digest,
            digest: i.digest.to_string(),
            size: i.size,
            to: plan.images.get(k).map(|p| p.to.clone()).unwrap_or_default(),
            signatures: signature_status(i),
        });
    }
    for (n, o) in old_images.iter().enumerate() {
        if !used.contains(&n) {
            rows.push(ImageRow {
                change: Change::Removed,
                name: o.name.to_string(),
                old_name: None,
                old_digest: None,
                digest: o.digest.to_string(),
                size: o.size,
                to: String::new(),
                signatures: signature_status(o),
            });
        }
    }
    rows
}

/// A migration step's SQL: kept while the bundle verified, or (a delta's
/// omitted entry) read from the store and re-hashed.
fn sql_of(inp: &Inputs<'_>, m: &BundleManifest, path: &str) -> std::result::Result<String, String> {
    if let Some(b) = inp.sql.get(path) {
        return Ok(String::from_utf8_lossy(b).into_owned());
    }
    let Some(e) = m.listed(path) else {
        return Err(format!("{path}: not in the manifest"));
    };
    if m.entry(path).is_none() {
        return crate::stage::read_verified_text(&inp.site.sd, e).map_err(|e| e.to_string());
    }
    Err(format!(
        "{path}: {} bytes, over the page's limit of {} bytes per step",
        e.size,
        capture::MAX_SQL
    ))
}

fn migration_rows(inp: &Inputs<'_>, m: &BundleManifest) -> (Vec<MigrationRow>, Vec<String>) {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for set in &m.migrations {
        let planned = inp
            .plan
            .migrations
            .iter()
            .find(|p| p.database == set.database);
        match planned {
            None => notes.push(format!(
                "database {}: not in the site config, its steps are not planned",
                set.database
            )),
            Some(p) => {
                if let Some(n) = &p.note {
                    notes.push(format!("database {}: {n}", set.database));
                }
            }
        }
        for s in &set.steps {
            let step = format!("{}_{}", s.id, s.name);
            let pending = planned.is_some_and(|p| {
                p.pending
                    .iter()
                    .any(|x| x == &step || x.starts_with(&format!("{step} ")))
            });
            let text = |path: &str| {
                sql_of(inp, m, path).unwrap_or_else(|e| format!("-- SQL not shown: {e}"))
            };
            rows.push(MigrationRow {
                database: set.database.clone(),
                step,
                pending,
                up_path: s.up.clone(),
                up_sql: text(&s.up),
                down_path: s.down.clone(),
                down_sql: s.down.as_deref().map(text),
            });
        }
    }
    (rows, notes)
}

fn file_rows(m: &BundleManifest, old: Option<&BundleManifest>) -> Vec<FileRow> {
    let digest = |mm: &BundleManifest, p: &str| mm.listed(p).map(|e| (e.sha256.hex(), e.size));
    let mut rows = Vec::new();
    for f in &m.files {
        let (sha, size) = digest(m, &f.path).unwrap_or_default();
        let before = old.and_then(|o| {
            o.files
                .iter()
                .find(|x| x.dest == f.dest)
                .map(|x| (digest(o, &x.path).unwrap_or_default().0, x.mode.to_string()))
        });
        let change = match before {
            None => Change::Added,
            Some((s, mode)) if s == sha && mode == f.mode.to_string() => Change::Unchanged,
            Some(_) => Change::Changed,
        };
        rows.push(FileRow {
            change,
            dest: f.dest.clone(),
            mode: f.mode.to_string(),
            size,
            sha256: sha,
        });
    }
    for o in old.iter().flat_map(|o| &o.files) {
        if !m.files.iter().any(|f| f.dest == o.dest) {
            let (sha, size) = old.and_then(|om| digest(om, &o.path)).unwrap_or_default();
            rows.push(FileRow {
                change: Change::Removed,
                dest: o.dest.clone(),
                mode: o.mode.to_string(),
                size,
                sha256: sha,
            });
        }
    }
    rows
}

/// How the site goes back after this apply (`stoa-updater rollback`, as
/// docs/OPERATIONS.md describes it).
fn rollback_path(plan: &Plan, m: &BundleManifest) -> Vec<String> {
    let mut out = Vec::new();
    out.push(match &plan.installed {
        Some(v) => format!(
            "`stoa-updater rollback` returns the site to {v}, the retained release it was before (its content is in the site's store)"
        ),
        None => "nothing is installed before: `stoa-updater remove` goes back to nothing installed".into(),
    });
    for c in &plan.charts {
        out.push(match &c.current_revision {
            crate::engine::plan::Revision::Deployed(r) => format!(
                "Helm release {}/{}: back to revision {r}",
                c.namespace, c.release
            ),
            other => format!(
                "Helm release {}/{}: uninstalled (now {other})",
                c.namespace, c.release
            ),
        });
    }
    for p in &plan.migrations {
        let no_down: Vec<&String> = p
            .pending
            .iter()
            .filter(|x| x.ends_with(" (no down step)"))
            .collect();
        if p.pending.is_empty() {
            out.push(format!("database {}: no migration to undo", p.database));
            continue;
        }
        let mut undo: Vec<String> = p
            .pending
            .iter()
            .map(|x| x.trim_end_matches(" (no down step)").to_owned())
            .collect();
        undo.reverse();
        if no_down.is_empty() {
            out.push(format!(
                "database {}: down steps run newest first: {}{}",
                p.database,
                undo.join(", "),
                if p.snapshot {
                    " (a snapshot is also taken before migrating)"
                } else {
                    ""
                }
            ));
        } else if p.snapshot {
            out.push(format!(
                "database {}: {} without a down step: rollback restores the snapshot taken before migrating (`rollback --restore-snapshot`)",
                p.database,
                no_down.len()
            ));
        } else {
            out.push(format!(
                "database {}: {} step(s) without a down step and no snapshot: the migrations cannot be undone",
                p.database,
                no_down.len()
            ));
        }
    }
    if !m.files.is_empty() {
        out.push(
            "files: the installed release's files are reinstated, this release's new files removed"
                .into(),
        );
    }
    out
}
