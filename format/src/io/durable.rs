//! Durable file writes: the one way a file that must survive a crash is
//! written (state, journal, audit, trust roots, the clock floor, staged
//! blobs, snapshots, bundles, keys, split parts, parity and rebuilt parts,
//! part indexes), and the one temp+rename writer (the bundler's blob cache
//! uses it without fsync).
//!
//! [`AtomicFile`] writes into a temp file in the SAME folder as the final
//! path, named `.<name>.partial-<pid>-<n>` (the one naming scheme; `n`
//! counts within the process), and on [`AtomicFile::commit`]: sets the
//! requested mode, fsyncs the file, renames it over the final path and
//! fsyncs the folder, so after a power loss either the old or the new
//! content is there, never a torn file. Dropped without commit (an error,
//! a panic), the temp file is removed. [`AtomicFile::commit_new`] is the
//! same but refuses to replace an existing file (keys, root files).
//! [`AtomicFile::close`] does the file's half of a commit early (mode,
//! fsync, close) and leaves the rename for later, for a set of files
//! renamed into place together (the parts of a split, parity parts, rebuilt
//! parts) without one open descriptor per file until then.
//!
//! No network code, no unsafe: plain `std::fs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The marker every temp name carries (`.<name>.partial-<pid>-<n>`).
pub const TEMP_MARKER: &str = ".partial-";

/// The temp path [`AtomicFile`] uses for `final_path`: same folder,
/// `.<name>.partial-<pid>-<n>`.
pub fn temp_path_for(final_path: &Path) -> PathBuf {
    let dir = parent_dir(final_path);
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}{TEMP_MARKER}{}-{n}", std::process::id()))
}

/// The folder a path is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Fsyncs a folder, so that a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How an [`AtomicFile`] is created and committed.
#[derive(Debug, Clone, Copy)]
pub struct AtomicOptions {
    mode: Option<u32>,
    sync: bool,
    sync_dir: bool,
}

impl Default for AtomicOptions {
    fn default() -> Self {
        Self {
            mode: None,
            sync: true,
            sync_dir: true,
        }
    }
}

impl AtomicOptions {
    /// The final file's permission bits (e.g. `0o600`, `0o444`). The temp
    /// file is created `0600` and set to `mode` just before the rename.
    /// Without a mode the file gets what `File::create` gives (0666 less
    /// the umask).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }
    /// Whether commit fsyncs the file and the folder (default true). Only
    /// for outputs whose durability the operator chose to skip (the
    /// bundler's build without `--fsync`); the rename stays atomic.
    pub fn sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }
    /// Whether commit fsyncs the folder (default true). Off only when the
    /// caller fsyncs the folder once after many commits (the staged store).
    pub fn sync_dir(mut self, sync_dir: bool) -> Self {
        self.sync_dir = sync_dir;
        self
    }
    /// Creates the temp file for `final_path`.
    pub fn create(self, final_path: impl AsRef<Path>) -> io::Result<AtomicFile> {
        let dest = final_path.as_ref().to_owned();
        let mut last = None;
        // a name left by a killed run (same PID, same counter) is never
        // written through: another name is tried
        for _ in 0..8 {
            let tmp = temp_path_for(&dest);
            let mut o = OpenOptions::new();
            o.write(true).create_new(true);
            if self.mode.is_some() {
                o.mode(0o600);
            }
            match o.open(&tmp) {
                Ok(file) => {
                    return Ok(AtomicFile {
                        file: Some(file),
                        tmp,
                        dest,
                        opts: self,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temp name")))
    }
}

/// A file written under a temp name and renamed into place on
/// [`AtomicFile::commit`]. See the module comment.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    opts: AtomicOptions,
}

impl AtomicFile {
    /// A new temp file for `final_path` with the default options (fsync
    /// file and folder; mode as `File::create`).
    pub fn create(final_path: impl AsRef<Path>) -> io::Result<Self> {
        AtomicOptions::default().create(final_path)
    }
    /// Options: mode, fsync.
    pub fn options() -> AtomicOptions {
        AtomicOptions::default()
    }
    /// The temp file's path (for a tool that writes the file by name,
    /// e.g. `pg_dump -f`).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }
    /// The path the file gets on commit.
    pub fn final_path(&self) -> &Path {
        &self.dest
    }
    /// The open temp file.
    pub fn file(&self) -> io::Result<&File> {
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("atomic file already closed"))
    }

    fn finish_file(&mut self) -> io::Result<()> {
        let f = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("atomic file already closed"))?;
        if let Some(m) = self.opts.mode {
            f.set_permissions(fs::Permissions::from_mode(m))?;
        }
        if self.opts.sync {
            f.sync_all()?;
        }
        Ok(())
    }

    fn sync_parent(&self) -> io::Result<()> {
        if self.opts.sync && self.opts.sync_dir {
            sync_dir(&parent_dir(&self.dest))?;
        }
        Ok(())
    }

    /// The file's half of [`AtomicFile::commit`] now: sets the mode,
    /// fsyncs (unless `sync(false)`) and closes the temp file. Writing
    /// after this fails; [`AtomicFile::commit`] then only renames (and
    /// fsyncs the folder). Dropped instead, the temp file is removed.
    pub fn close(&mut self) -> io::Result<()> {
        self.finish_file()
    }

    /// The file's half of a commit, unless [`AtomicFile::close`] did it.
    fn finish_open_file(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            self.finish_file()?;
        }
        Ok(())
    }

    /// Mode, fsync, rename over the final path, fsync the folder.
    pub fn commit(mut self) -> io::Result<()> {
        self.finish_open_file()?;
        fs::rename(&self.tmp, &self.dest)?;
        self.tmp = PathBuf::new();
        self.sync_parent()
    }

    /// As [`AtomicFile::commit`], but fails with `AlreadyExists` (and
    /// removes the temp file) if the final path exists: the file appears
    /// complete or not at all, and nothing is overwritten.
    pub fn commit_new(mut self) -> io::Result<()> {
        self.finish_open_file()?;
        fs::hard_link(&self.tmp, &self.dest)?;
        let _ = fs::remove_file(&self.tmp);
        self.tmp = PathBuf::new();
        self.sync_parent()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("atomic file already closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl crate::pipe::SyncData for AtomicFile {
    fn sync_data(&self) -> io::Result<()> {
        self.file()?.sync_data()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` durably (temp, fsync, rename, fsync folder),
/// replacing what was there. Mode as `File::create`.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    write_with(AtomicFile::create(path)?, bytes, false)
}

/// [`write_atomic`] with the final file's permission bits.
pub fn write_atomic_mode(path: impl AsRef<Path>, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_with(AtomicFile::options().mode(mode).create(path)?, bytes, false)
}

/// Writes `bytes` to a NEW file `path` durably with `mode`; fails with
/// `AlreadyExists` if it exists (nothing is overwritten).
pub fn write_new(path: impl AsRef<Path>, bytes: &[u8], mode: u32) -> io::Result<()> {
    let path = path.as_ref();
    if fs::symlink_metadata(path).is_ok() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
    }
    write_with(AtomicFile::options().mode(mode).create(path)?, bytes, true)
}

fn write_with(mut f: AtomicFile, bytes: &[u8], new: bool) -> io::Result<()> {
    f.write_all(bytes)?;
    if new {
        f.commit_new()
    } else {
        f.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(d.path()), vec!["state.json"]);
    }

    #[test]
    fn temp_is_in_the_same_folder_with_the_one_naming_scheme() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        let f = AtomicFile::create(&p).unwrap();
        let t = f.temp_path().to_owned();
        assert_eq!(t.parent(), Some(d.path()));
        let n = t.file_name().unwrap().to_string_lossy().into_owned();
        let pre = format!(".x.json{TEMP_MARKER}{}-", std::process::id());
        assert!(n.starts_with(&pre), "{n}");
        assert!(t.exists());
        assert!(!p.exists(), "nothing at the final path before commit");
        f.commit().unwrap();
        assert!(!t.exists());
        assert!(p.exists());
    }

    #[test]
    fn dropped_without_commit_removes_the_temp_and_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomic(&p, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half of the new").unwrap();
        }
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(names(d.path()), vec!["state.json"]);
    }

    /// A closed file holds no descriptor, refuses writes, and is renamed
    /// into place by commit with its mode; a closed file dropped instead
    /// leaves nothing behind.
    #[test]
    fn closed_early_then_committed_or_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.part001");
        let mut f = AtomicFile::options()
            .mode(0o640)
            .sync_dir(false)
            .create(&p)
            .unwrap();
        f.write_all(b"part one").unwrap();
        f.close().unwrap();
        assert!(f.write_all(b"more").is_err());
        assert!(f.file().is_err());
        assert!(!p.exists());
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"part one");
        assert_eq!(mode_of(&p), 0o640);
        let mut g = AtomicFile::create(d.path().join("b.part002")).unwrap();
        g.write_all(b"part two").unwrap();
        g.close().unwrap();
        drop(g);
        assert_eq!(names(d.path()), vec!["b.part001"]);
    }

    #[test]
    fn mode_is_set_on_commit() {
        let d = tempfile::tempdir().unwrap();
        for m in [0o600, 0o444, 0o644] {
            let p = d.path().join(format!("f{m:o}"));
            write_atomic_mode(&p, b"x", m).unwrap();
            assert_eq!(mode_of(&p), m);
        }
        // the temp of a moded file is private while written
        let f = AtomicFile::options()
            .mode(0o644)
            .create(d.path().join("g"))
            .unwrap();
        assert_eq!(mode_of(f.temp_path()), 0o600);
    }

    #[test]
    fn write_new_refuses_to_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key.pem");
        write_new(&p, b"first", 0o600).unwrap();
        assert_eq!(mode_of(&p), 0o600);
        let e = write_new(&p, b"second", 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        // commit_new racing a file that appeared after create
        let q = d.path().join("late");
        let mut f = AtomicFile::create(&q).unwrap();
        f.write_all(b"mine").unwrap();
        fs::write(&q, b"theirs").unwrap();
        let e = f.commit_new().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(fs::read(&q).unwrap(), b"theirs");
        assert_eq!(names(d.path()), vec!["key.pem", "late"]);
    }

    #[test]
    fn two_writers_for_one_path_get_two_temps() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        let mut f1 = AtomicFile::create(&p).unwrap();
        let mut f2 = AtomicFile::create(&p).unwrap();
        assert_ne!(f1.temp_path(), f2.temp_path());
        f1.write_all(b"1").unwrap();
        f2.write_all(b"2").unwrap();
        f1.commit().unwrap();
        f2.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"2");
        assert_eq!(names(d.path()), vec!["a"]);
    }

    #[test]
    fn a_failed_commit_removes_the_temp() {
        let d = tempfile::tempdir().unwrap();
        // the final path is a non-empty folder: rename fails
        let p = d.path().join("dir");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("inside"), b"x").unwrap();
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"x").unwrap();
        assert!(f.commit().is_err());
        assert_eq!(names(d.path()), vec!["dir"]);
    }
}
