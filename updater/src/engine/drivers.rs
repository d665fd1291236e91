//! The drivers the engine acts through, behind traits: [`Database`]
//! (wire protocol; pg_dump/pg_restore for snapshots), [`Charts`] (helm), [`ImageRegistry`] (the
//! site registry) and [`Files`] (the site's files dir, `engine/files.rs`).
//! [`Drivers::real`] gives the real implementations; the unit tests swap in
//! in-process fakes (`engine::fakes`) so that every step × kill point ×
//! resume/rollback runs in seconds.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stoa_format::manifest::FileRecord;
use stoa_format::BundleManifest;

use crate::config::{HelmConfig, RegistryConfig};
use crate::db::{self, Applied, MigrationUp, RowMismatch};
use crate::error::{Result, UpdaterError};
use crate::helm::{ChartUpgrade, Helm};
use crate::postrender::PostRenderSetup;
use crate::registry::{self, EarlyPush, PushStats};
use crate::state::StateDir;

use super::files::FilesDir;

/// A database the migrations run on, named as in the site config.
pub trait Database {
    /// The migrations recorded as applied: id → name and checksum.
    fn applied(&self, db: &str, url: &str) -> Result<BTreeMap<String, Applied>>;
    /// Runs one up step and records it (with its down step) in one transaction.
    fn migrate_up(&self, up: &MigrationUp<'_>) -> Result<()>;
    /// Runs a verified down step and removes its row; None when not applied.
    fn migrate_down(
        &self,
        db: &str,
        url: &str,
        id: &str,
        up_sha256: &str,
        down: &str,
        down_sha256: &str,
    ) -> Result<Option<RowMismatch>>;
    fn snapshot(&self, db: &str, url: &str, dest: &Path) -> Result<()>;
    fn restore(&self, db: &str, url: &str, dump: &Path) -> Result<()>;
}

/// Helm releases.
pub trait Charts {
    /// The Helm version, None when Helm cannot be started (plan says so).
    fn version(&self) -> Option<String>;
    /// The deployed revision, None when the release is not installed.
    fn revision(&self, release: &str, ns: &str) -> Result<Option<u64>>;
    /// The chart (`<name>-<version>`, as `helm history` shows it) of the
    /// release's latest revision, None when it is not installed.
    fn latest_chart(&self, _release: &str, _ns: &str) -> Result<Option<String>> {
        Ok(None)
    }
    /// Every kept revision and its chart, oldest first (empty when the
    /// release is not installed).
    fn chart_history(&self, _release: &str, _ns: &str) -> Result<Vec<(u64, String)>> {
        Ok(Vec::new())
    }
    /// `post`: the post-renderer serving every image from the site
    /// registry (set up for the Helm version found).
    fn upgrade(&self, up: &ChartUpgrade<'_>, post: &PostRenderSetup) -> Result<()>;
    fn rollback(&self, release: &str, ns: &str, revision: u64) -> Result<()>;
    fn uninstall(&self, release: &str, ns: &str) -> Result<()>;
    /// Back to `rev` once (see `Helm::back_to`): not again when Helm's own
    /// atomic rollback already went there.
    fn back_to(&self, release: &str, ns: &str, rev: u64) -> Result<()> {
        if self.revision(release, ns)? != Some(rev) {
            self.rollback(release, ns, rev)?;
        }
        Ok(())
    }
    /// A release left pending by our killed upgrade (`ours`) is rolled back
    /// to `before` or uninstalled; one left by someone else is refused
    /// (see `Helm::recover_interrupted`). What was done, if anything.
    fn recover_interrupted(
        &self,
        _release: &str,
        _ns: &str,
        _before: Option<u64>,
        _ours: bool,
    ) -> Result<Option<String>> {
        Ok(None)
    }
    /// Whether the namespace exists (before a first install).
    fn namespace_exists(&self, _ns: &str) -> Result<bool> {
        Ok(true)
    }
    /// Deletes a namespace a first install created (its undo).
    fn delete_namespace(&self, _ns: &str) -> Result<()> {
        Ok(())
    }
}

/// The site registry images are pushed to.
pub trait ImageRegistry {
    fn push_release(
        &self,
        sd: &StateDir,
        m: &BundleManifest,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PushStats>;
    /// Starts pushing `m`'s blobs as staging stores them (none by default:
    /// the push step pushes everything).
    fn push_while_staging(&self, _sd: &StateDir, _m: &BundleManifest) -> Option<EarlyPush> {
        None
    }
}

/// The site's installed files (the `files` step and its undo).
pub trait Files {
    /// Installs one file of a release from its staged `content`, with its
    /// mode; the destination is replaced atomically, never written through.
    fn install(&self, f: &FileRecord, content: &Path) -> Result<()>;
    /// Removes a file a release installed; a missing one is no error.
    fn remove(&self, dest: &str) -> Result<()>;
}

/// The drivers a site acts through.
pub struct Drivers {
    pub database: Box<dyn Database>,
    pub charts: Box<dyn Charts>,
    pub registry: Box<dyn ImageRegistry>,
    pub files: Box<dyn Files>,
}

impl std::fmt::Debug for Drivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Drivers")
    }
}

impl Drivers {
    /// the database client, helm (started on first use), the registry client, the files dir.
    pub fn real(helm: Option<HelmConfig>, reg: Option<RegistryConfig>, files_dir: PathBuf) -> Self {
        Self {
            database: Box::new(Psql),
            charts: Box::new(HelmCli {
                cfg: helm,
                helm: OnceCell::new(),
            }),
            registry: Box::new(RegistryClient { cfg: reg }),
            files: Box::new(FilesDir { dir: files_dir }),
        }
    }
}

/// PostgreSQL: migrations and history over the wire protocol, snapshots with pg_dump/pg_restore (`db/`).
#[derive(Debug)]
pub struct Psql;

impl Database for Psql {
    fn applied(&self, db: &str, url: &str) -> Result<BTreeMap<String, Applied>> {
        db::applied(db, url)
    }
    fn migrate_up(&self, up: &MigrationUp<'_>) -> Result<()> {
        db::migrate_up(up)
    }
    fn migrate_down(
        &self,
        db: &str,
        url: &str,
        id: &str,
        up_sha256: &str,
        down: &str,
        down_sha256: &str,
    ) -> Result<Option<RowMismatch>> {
        db::migrate_down(db, url, id, up_sha256, down, down_sha256)
    }
    fn snapshot(&self, db: &str, url: &str, dest: &Path) -> Result<()> {
        db::snapshot(db, url, dest)
    }
    fn restore(&self, db: &str, url: &str, dump: &Path) -> Result<()> {
        db::restore(db, url, dump)
    }
}

/// The helm binary of the site config, started (`helm version`) on first use.
#[derive(Debug)]
pub struct HelmCli {
    cfg: Option<HelmConfig>,
    helm: OnceCell<Helm>,
}

impl HelmCli {
    fn cfg(&self) -> Result<&HelmConfig> {
        self.cfg.as_ref().ok_or(UpdaterError::MissingSection {
            section: "helm".into(),
        })
    }

    fn helm(&self) -> Result<&Helm> {
        if let Some(h) = self.helm.get() {
            return Ok(h);
        }
        let hc = self.cfg.as_ref().ok_or(UpdaterError::MissingSection {
            section: "helm".into(),
        })?;
        let h = Helm::new(hc)?;
        Ok(self.helm.get_or_init(|| h))
    }
}

impl Charts for HelmCli {
    fn version(&self) -> Option<String> {
        self.helm().ok().map(|h| h.version.clone())
    }
    fn latest_chart(&self, release: &str, ns: &str) -> Result<Option<String>> {
        self.helm()?.latest_chart(release, ns)
    }
    fn chart_history(&self, release: &str, ns: &str) -> Result<Vec<(u64, String)>> {
        self.helm()?.chart_history(release, ns)
    }
    fn revision(&self, release: &str, ns: &str) -> Result<Option<u64>> {
        self.helm()?.revision(release, ns)
    }
    fn upgrade(&self, up: &ChartUpgrade<'_>, post: &PostRenderSetup) -> Result<()> {
        let h = self.helm()?;
        let pr = crate::postrender::prepare(&post.base, &post.images, h.major)?;
        h.upgrade(up, Some(&pr))
    }
    fn rollback(&self, release: &str, ns: &str, revision: u64) -> Result<()> {
        self.helm()?.rollback(release, ns, revision)
    }
    fn uninstall(&self, release: &str, ns: &str) -> Result<()> {
        self.helm()?.uninstall(release, ns)
    }
    fn back_to(&self, release: &str, ns: &str, rev: u64) -> Result<()> {
        self.helm()?.back_to(release, ns, rev)
    }
    fn recover_interrupted(
        &self,
        release: &str,
        ns: &str,
        before: Option<u64>,
        ours: bool,
    ) -> Result<Option<String>> {
        self.helm()?.recover_interrupted(release, ns, before, ours)
    }
    fn namespace_exists(&self, ns: &str) -> Result<bool> {
        crate::kube::namespace_exists(self.cfg()?, ns)
    }
    fn delete_namespace(&self, ns: &str) -> Result<()> {
        crate::kube::delete_namespace(self.cfg()?, ns)
    }
}

/// The registry client of `registry.rs`, one per push.
#[derive(Debug)]
pub struct RegistryClient {
    cfg: Option<RegistryConfig>,
}

impl ImageRegistry for RegistryClient {
    fn push_release(
        &self,
        sd: &StateDir,
        m: &BundleManifest,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PushStats> {
        let rc = self.cfg.as_ref().ok_or(UpdaterError::MissingSection {
            section: "registry".into(),
        })?;
        let mut c = registry::Client::new(rc)?;
        c.push_release(sd, m, &rc.prefix, rc.layout, rc.parallel, progress)
    }
    fn push_while_staging(&self, sd: &StateDir, m: &BundleManifest) -> Option<EarlyPush> {
        // a client that cannot be made is the push step's error to report
        let rc = self.cfg.as_ref()?;
        let c = registry::Client::new(rc).ok()?;
        Some(EarlyPush::start(
            c,
            sd,
            m,
            &rc.prefix,
            rc.layout,
            rc.parallel,
        ))
    }
}
