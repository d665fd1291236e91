//! In-process fakes of the drivers (a database, Helm, a registry, the files
//! dir) for the
//! engine's unit tests: the kill matrix runs every step × kill point ×
//! resume/rollback in seconds. Each fake keeps its state behind an `Rc` the
//! test holds a clone of, to assert what the site looks like.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use stoa_format::manifest::FileRecord;
use stoa_format::BundleManifest;

use crate::db::{Applied, MigrationUp, RowMismatch};
use crate::error::{Result, UpdaterError};
use crate::helm::ChartUpgrade;
use crate::registry::PushStats;
use crate::state::StateDir;

use super::drivers::{Charts, Database, Files, ImageRegistry};
use super::{Drivers, Killed};

/// database → id → applied row (with the down SQL as recorded).
pub type Rows = BTreeMap<String, BTreeMap<String, (Applied, Option<String>)>>;

/// A database: rows of `stoa_schema_migrations`; a snapshot is a JSON copy.
#[derive(Debug, Default, Clone)]
pub struct FakeDb(pub Rc<RefCell<Rows>>);

impl FakeDb {
    /// The applied migration ids of `db`, in order.
    pub fn ids(&self, db: &str) -> Vec<String> {
        self.0
            .borrow()
            .get(db)
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl Database for FakeDb {
    fn applied(&self, db: &str, _url: &str) -> Result<BTreeMap<String, Applied>> {
        Ok(self
            .0
            .borrow()
            .get(db)
            .map(|r| r.iter().map(|(k, (a, _))| (k.clone(), a.clone())).collect())
            .unwrap_or_default())
    }
    fn migrate_up(&self, up: &MigrationUp<'_>) -> Result<()> {
        self.0
            .borrow_mut()
            .entry(up.database.into())
            .or_default()
            .insert(
                up.id.into(),
                (
                    Applied {
                        name: up.name.into(),
                        checksum: up.checksum.into(),
                        release: Some(up.release.into()),
                    },
                    up.down.map(str::to_owned),
                ),
            );
        Ok(())
    }
    fn migrate_down(
        &self,
        db: &str,
        _url: &str,
        id: &str,
        _up_sha256: &str,
        _down: &str,
        _down_sha256: &str,
    ) -> Result<Option<RowMismatch>> {
        let gone = self.0.borrow_mut().get_mut(db).and_then(|r| r.remove(id));
        Ok(gone.map(|_| RowMismatch {
            database: db.into(),
            id: id.into(),
            down_sql_edited: false,
            checksum_edited: false,
        }))
    }
    fn snapshot(&self, db: &str, _url: &str, dest: &Path) -> Result<()> {
        let rows = self.0.borrow().get(db).cloned().unwrap_or_default();
        let text: Vec<(String, String, String, Option<String>)> = rows
            .into_iter()
            .map(|(k, (a, d))| (k, a.name, a.checksum, d))
            .collect();
        let bytes = serde_json::to_vec(&text).unwrap_or_default();
        std::fs::write(dest, bytes).map_err(|e| UpdaterError::io("snapshot", dest, e))
    }
    fn restore(&self, db: &str, _url: &str, dump: &Path) -> Result<()> {
        let bytes = std::fs::read(dump).map_err(|e| UpdaterError::io("restore", dump, e))?;
        let rows: Vec<(String, String, String, Option<String>)> = serde_json::from_slice(&bytes)
            .map_err(|e| UpdaterError::Database {
                database: db.into(),
                step: "restore".into(),
                reason: e.to_string(),
            })?;
        let map = rows
            .into_iter()
            .map(|(k, name, checksum, d)| {
                let a = Applied {
                    name,
                    checksum,
                    release: None,
                };
                (k, (a, d))
            })
            .collect();
        self.0.borrow_mut().insert(db.into(), map);
        Ok(())
    }
}

/// Helm: per release, the history of deployed charts (revision = index + 1).
#[derive(Debug, Default, Clone)]
pub struct FakeHelm(pub Rc<RefCell<Releases>>);

/// (release, namespace) → the charts deployed, oldest first.
pub type Releases = BTreeMap<(String, String), Vec<String>>;

impl FakeHelm {
    /// The chart file name deployed for `release`, None when not installed.
    pub fn deployed(&self, release: &str, ns: &str) -> Option<String> {
        self.0
            .borrow()
            .get(&(release.into(), ns.into()))
            .and_then(|h| h.last().cloned())
    }
}

impl Charts for FakeHelm {
    fn version(&self) -> Option<String> {
        Some("v3.18.0-fake".into())
    }
    fn revision(&self, release: &str, ns: &str) -> Result<Option<u64>> {
        Ok(self
            .0
            .borrow()
            .get(&(release.into(), ns.into()))
            .map(|h| h.len() as u64))
    }
    fn upgrade(
        &self,
        up: &ChartUpgrade<'_>,
        _post: &crate::postrender::PostRenderSetup,
    ) -> Result<()> {
        let name = up
            .chart
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.0
            .borrow_mut()
            .entry((up.release.into(), up.namespace.into()))
            .or_default()
            .push(name);
        Ok(())
    }
    fn rollback(&self, release: &str, ns: &str, revision: u64) -> Result<()> {
        let mut all = self.0.borrow_mut();
        let h = all.entry((release.into(), ns.into())).or_default();
        let i = usize::try_from(revision).unwrap_or(usize::MAX);
        let chart = h
            .get(i.wrapping_sub(1))
            .cloned()
            .ok_or(UpdaterError::Helm {
                release: release.into(),
                step: "rollback".into(),
                reason: format!("no revision {revision}"),
            })?;
        h.push(chart);
        Ok(())
    }
    fn uninstall(&self, release: &str, ns: &str) -> Result<()> {
        self.0.borrow_mut().remove(&(release.into(), ns.into()));
        Ok(())
    }
}

/// A registry: counts the images pushed.
#[derive(Debug, Default, Clone)]
pub struct FakeRegistry(pub Rc<RefCell<u64>>);

impl ImageRegistry for FakeRegistry {
    fn push_release(
        &self,
        _sd: &StateDir,
        m: &BundleManifest,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PushStats> {
        *self.0.borrow_mut() += m.images.len() as u64;
        progress(m.images.iter().map(|i| i.size).sum());
        Ok(PushStats::default())
    }
}

/// dest → (mode bits, content).
pub type FileMap = BTreeMap<String, (u32, Vec<u8>)>;

/// The files dir: dest → (mode, content). `kill_after_install` names a
/// destination: right after installing it the fake panics with
/// [`Killed`]`("install:<dest>")`, as a kill -9 in the middle of the `files`
/// step (the file written, the step not recorded done) would stop the engine.
#[derive(Debug, Default, Clone)]
pub struct FakeFiles {
    pub files: Rc<RefCell<FileMap>>,
    pub kill_after_install: Rc<RefCell<Option<String>>>,
}

impl FakeFiles {
    /// The content installed at `dest`, None when there is no file.
    pub fn content(&self, dest: &str) -> Option<String> {
        let files = self.files.borrow();
        let (_, bytes) = files.get(dest)?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

impl Files for FakeFiles {
    fn install(&self, f: &FileRecord, content: &Path) -> Result<()> {
        let bytes = std::fs::read(content).map_err(|e| UpdaterError::InstallFile {
            dest: f.dest.clone(),
            reason: e.to_string(),
        })?;
        self.files
            .borrow_mut()
            .insert(f.dest.clone(), (f.mode.bits(), bytes));
        let kill = self.kill_after_install.borrow().clone();
        if kill.as_deref() == Some(f.dest.as_str()) {
            *self.kill_after_install.borrow_mut() = None;
            std::panic::panic_any(Killed(format!("install:{}", f.dest)));
        }
        Ok(())
    }
    fn remove(&self, dest: &str) -> Result<()> {
        self.files.borrow_mut().remove(dest);
        Ok(())
    }
}

/// The fakes, and handles on their state.
#[derive(Debug, Default, Clone)]
pub struct Fakes {
    pub db: FakeDb,
    pub helm: FakeHelm,
    pub registry: FakeRegistry,
    pub files: FakeFiles,
}

impl Fakes {
    pub fn drivers(&self) -> Drivers {
        Drivers {
            database: Box::new(self.db.clone()),
            charts: Box::new(self.helm.clone()),
            registry: Box::new(self.registry.clone()),
            files: Box::new(self.files.clone()),
        }
    }
}
