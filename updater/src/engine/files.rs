//! The site's files: [`FilesDir`], the real [`Files`] driver, installs and
//! removes the release's files under `files_dir`, never through a symlink;
//! the engine's `files` step and its undo (`restore_files`) act through the
//! driver (the unit tests' fake is `engine::fakes::FakeFiles`).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use stoa_format::manifest::FileRecord;
use stoa_format::BundleManifest;

use crate::error::{Result, UpdaterError};
use crate::stage::entry_blob;

use super::drivers::Files;
use super::*;

impl Site {
    /// The `files` step: every file of `m`, from the staged content.
    pub(crate) fn install_files(&self, m: &BundleManifest) -> Result<()> {
        for f in &m.files {
            let src = entry_blob(&self.sd, m, &f.path)?;
            self.drivers.files.install(f, &src)?;
        }
        Ok(())
    }

    /// Makes the files dir hold `target`'s files: installs them, and removes
    /// files of `others` that `target` does not have (the undo of `files`).
    pub(crate) fn restore_files(
        &self,
        target: Option<&BundleManifest>,
        others: &[BundleManifest],
    ) -> Result<()> {
        let mut keep = BTreeSet::new();
        if let Some(t) = target {
            self.install_files(t)?;
            keep.extend(t.files.iter().map(|f| f.dest.as_str()));
        }
        for f in others.iter().flat_map(|o| &o.files) {
            if !keep.contains(f.dest.as_str()) {
                self.drivers.files.remove(&f.dest)?;
            }
        }
        Ok(())
    }
}

/// The real files driver: the site config's `files_dir`.
#[derive(Debug)]
pub struct FilesDir {
    pub dir: PathBuf,
}

impl Files for FilesDir {
    fn install(&self, f: &FileRecord, content: &Path) -> Result<()> {
        let ierr = |reason: String| UpdaterError::InstallFile {
            dest: f.dest.clone(),
            reason,
        };
        fs::create_dir_all(&self.dir)
            .map_err(|e| ierr(format!("create {}: {e}", self.dir.display())))?;
        let dest = self
            .dest_checked(&f.dest, true)?
            .ok_or_else(|| ierr("no destination".into()))?;
        let res = (|| -> io::Result<()> {
            let mut r = fs::File::open(content)?;
            let mut w = stoa_format::durable::AtomicFile::options()
                .mode(f.mode.bits())
                .create(&dest)?;
            io::copy(&mut r, &mut w)?;
            w.commit()
        })();
        res.map_err(|e| ierr(e.to_string()))
    }

    fn remove(&self, dest: &str) -> Result<()> {
        let Some(d) = self.dest_checked(dest, false)? else {
            return Ok(());
        };
        match fs::remove_file(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(UpdaterError::InstallFile {
                dest: dest.into(),
                reason: format!("remove: {e}"),
            }),
        }
    }
}

impl FilesDir {
    fn dest(&self, dest: &str) -> Result<PathBuf> {
        let p = Path::new(dest);
        if p.components().any(|c| !matches!(c, Component::Normal(_))) || dest.is_empty() {
            return Err(UpdaterError::InstallFile {
                dest: dest.into(),
                reason: "not a plain relative path".into(),
            });
        }
        Ok(self.dir.join(p))
    }

    /// The destination of a file, with every folder between `files_dir` and
    /// it created when missing and checked to be a real folder: a symlink
    /// (to a folder outside `files_dir`, say) is refused, never followed. A
    /// symlink at the destination itself is replaced (rename) or removed,
    /// never written through.
    fn dest_checked(&self, dest: &str, create: bool) -> Result<Option<PathBuf>> {
        let full = self.dest(dest)?;
        let mut dir = self.dir.clone();
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn record(dest: &str, mode: &str) -> FileRecord {
        FileRecord {
            dest: dest.into(),
            mode: mode.parse().unwrap(),
            path: "files/x".into(),
        }
    }

    #[test]
    fn files_dir_installs_with_mode_replaces_and_never_follows_a_symlink() {
        let tmp = std::env::temp_dir().join(format!("stoa-filesdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let outside = tmp.join("outside");
        fs::create_dir_all(&outside).unwrap();
        let content = tmp.join("content");
        fs::write(&content, "v2\n").unwrap();
        let d = FilesDir {
            dir: tmp.join("files"),
        };

        d.install(&record("bin/tool", "0750"), &content).unwrap();
        let p = tmp.join("files/bin/tool");
        assert_eq!(fs::read_to_string(&p).unwrap(), "v2\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o750
        );

        // a symlink at the destination is replaced, not written through
        let target = outside.join("victim");
        fs::write(&target, "keep\n").unwrap();
        std::os::unix::fs::symlink(&target, tmp.join("files/app.conf")).unwrap();
        d.install(&record("app.conf", "0644"), &content).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep\n");
        assert!(!fs::symlink_metadata(tmp.join("files/app.conf"))
            .unwrap()
            .file_type()
            .is_symlink());

        // a symlinked folder on the way is refused, for install and remove
        std::os::unix::fs::symlink(&outside, tmp.join("files/etc")).unwrap();
        let e = d
            .install(&record("etc/victim", "0644"), &content)
            .unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(d.remove("etc/victim").is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep\n");

        // remove: gone, and a missing file (or folder) is no error
        d.remove("bin/tool").unwrap();
        assert!(!p.exists());
        d.remove("bin/tool").unwrap();
        d.remove("nope/nothing").unwrap();
        assert!(d.remove("../escape").is_err());
        let _ = fs::remove_dir_all(&tmp);
    }
}
