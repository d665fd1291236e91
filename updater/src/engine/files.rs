//! Installing and removing the release's files under `files_dir`, never
//! through a symlink.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use stoa_format::BundleManifest;

use crate::error::{Result, UpdaterError};
use crate::stage::entry_blob;

use super::*;

impl Site {
    pub(crate) fn file_dest(&self, dest: &str) -> Result<PathBuf> {
        let p = Path::new(dest);
        if p.components().any(|c| !matches!(c, Component::Normal(_))) || dest.is_empty() {
            return Err(UpdaterError::InstallFile {
                dest: dest.into(),
                reason: "not a plain relative path".into(),
            });
        }
        Ok(self.cfg.files_dir().join(p))
    }

    /// The destination of a file, with every folder between `files_dir` and
    /// it created when missing and checked to be a real folder: a symlink
    /// (to a folder outside `files_dir`, say) is refused, never followed. A
    /// symlink at the destination itself is replaced (rename) or removed,
    /// never written through.
    pub(crate) fn file_dest_checked(&self, dest: &str, create: bool) -> Result<Option<PathBuf>> {
        let full = self.file_dest(dest)?;
        let mut dir = self.cfg.files_dir();
        let rel = Path::new(dest);
        let parents: Vec<_> = rel
            .parent()
            .map(|p| p.components().collect())
            .unwrap_or_default();
        for c in parents {
            dir.push(c);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UpdaterError::InstallFile {
                        dest: dest.into(),
                        reason: format!(
                            "{} is a symlink; refusing to follow it out of files_dir",
                            dir.display()
                        ),
                    })
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(UpdaterError::InstallFile {
                        dest: dest.into(),
                        reason: format!("{} is not a folder", dir.display()),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    match fs::create_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            return Err(UpdaterError::InstallFile {
                                dest: dest.into(),
                                reason: format!("create {}: {e}", dir.display()),
                            })
                        }
                    }
                    // created by someone else in between: check it again
                    if fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
                        return Err(UpdaterError::InstallFile {
                            dest: dest.into(),
                            reason: format!("{} is not a folder", dir.display()),
                        });
                    }
                }
                Err(e) => {
                    return Err(UpdaterError::InstallFile {
                        dest: dest.into(),
                        reason: format!("{}: {e}", dir.display()),
                    })
                }
            }
        }
        Ok(Some(full))
    }

    pub(crate) fn install_file(
        &self,
        m: &BundleManifest,
        f: &stoa_format::manifest::FileRecord,
    ) -> Result<()> {
        let ierr = |reason: String| UpdaterError::InstallFile {
            dest: f.dest.clone(),
            reason,
        };
        let files_dir = self.cfg.files_dir();
        fs::create_dir_all(&files_dir)
            .map_err(|e| ierr(format!("create {}: {e}", files_dir.display())))?;
        let dest = self
            .file_dest_checked(&f.dest, true)?
            .ok_or_else(|| ierr("no destination".into()))?;
        let mode = u32::from_str_radix(f.mode.trim_start_matches("0o"), 8)
            .map_err(|_| ierr(format!("mode {:?} is not octal", f.mode)))?;
        let src = entry_blob(&self.sd, m, &f.path)?;
        let res = (|| -> io::Result<()> {
            let mut r = fs::File::open(&src)?;
            let mut w = stoa_format::durable::AtomicFile::options()
                .mode(mode)
                .create(&dest)?;
            io::copy(&mut r, &mut w)?;
            w.commit()
        })();
        res.map_err(|e| ierr(e.to_string()))
    }

    /// Makes the files dir hold `target`'s files: installs them, and removes
    /// files of `others` that `target` does not have.
    pub(crate) fn sync_files(
        &self,
        target: Option<&BundleManifest>,
        others: &[BundleManifest],
    ) -> Result<()> {
        let mut keep = BTreeSet::new();
        if let Some(t) = target {
            for f in &t.files {
                self.install_file(t, f)?;
                keep.insert(f.dest.clone());
            }
        }
        for o in others {
            for f in &o.files {
                if !keep.contains(&f.dest) {
                    let Some(d) = self.file_dest_checked(&f.dest, false)? else {
                        continue;
                    };
                    match fs::remove_file(&d) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(UpdaterError::InstallFile {
                                dest: f.dest.clone(),
                                reason: format!("remove: {e}"),
                            })
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
