//! The content cache of downloaded blobs: `<cache>/blobs/sha256/<hex>`,
//! the same shape as an OCI image layout (an `oci-layout` file is written
//! too), so the layout resolver reads images out of it unchanged.
//!
//! A blob is written through `stoa_format::durable` (the one temp+rename
//! writer): to `blobs/sha256/.<hex>.partial-<pid>-<n>` while it is hashed,
//! renamed to `blobs/sha256/<hex>` only when its digest and size are right,
//! so what is under a blob's name is always correct: a build killed
//! mid-download leaves at most temp files (removed by the next build once
//! their process is gone), and a re-run fetches only the blobs not yet in
//! `blobs/`. Not fsynced: the bundle writer hashes every blob it reads from
//! the cache again.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use stoa_format::digest::Hasher;
use stoa_format::durable::{AtomicFile, TEMP_MARKER};
use stoa_format::Sha256Digest;

/// The default cache folder: `$XDG_CACHE_HOME/stoa-bundler`, else
/// `~/.cache/stoa-bundler`, else `.stoa-bundler-cache`.
pub fn default_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("stoa-bundler");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(h).join(".cache/stoa-bundler");
    }
    PathBuf::from(".stoa-bundler-cache")
}

#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Opens (creating) the cache and removes temp files of dead builds.
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join("blobs/sha256"))?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            fs::write(&layout, stoa_format::oci::OCI_LAYOUT_CONTENT)?;
        }
        let alive =
            |pid: Option<u32>| pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        // temp files of dead builds: `blobs/sha256/.<hex>.partial-<pid>-<n>`
        for e in fs::read_dir(root.join("blobs/sha256"))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((_, rest)) = name.rsplit_once(TEMP_MARKER) else {
                continue;
            };
            if name.starts_with('.') && !alive(rest.split('-').next().and_then(|p| p.parse().ok()))
            {
                let _ = fs::remove_file(e.path());
            }
        }
        // and those of bundlers before it: `tmp/<hex>.<pid>.<n>`
        if let Ok(rd) = fs::read_dir(root.join("tmp")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !alive(name.split('.').nth(1).and_then(|p| p.parse().ok())) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives once verified.
    pub fn blob_path(&self, d: &Sha256Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// True when the blob is cached with this size. (Its bytes were checked
    /// when it was stored, and the bundle writer checks them again.)
    pub fn has(&self, d: &Sha256Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(d)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Reads a small cached blob.
    pub fn read(&self, d: &Sha256Digest) -> io::Result<Vec<u8>> {
        fs::read(self.blob_path(d))
    }

    /// Stores bytes already in memory after checking their digest.
    pub fn put_bytes(&self, d: &Sha256Digest, bytes: &[u8]) -> io::Result<()> {
        let got = Sha256Digest::of(bytes);
        if got != *d {
            return Err(io::Error::other(format!(
                "content has {}, not {}",
                got.oci(),
                d.oci()
            )));
        }
        let mut w = self.writer(d)?;
        w.write_all(bytes)?;
        w.commit(bytes.len() as u64)
    }

    /// A temp file for `d`, hashed as it is written.
    pub fn writer(&self, d: &Sha256Digest) -> io::Result<BlobWriter> {
        let dest = self.blob_path(d);
        Ok(BlobWriter {
            file: Some(io::BufWriter::with_capacity(1 << 20, blob_file(&dest)?)),
            dest,
            want: *d,
            hasher: Hasher::default(),
        })
    }
}

/// A blob's temp file beside its place (`durable`): renamed into place
/// atomically, not fsynced (see the module comment).
fn blob_file(dest: &Path) -> io::Result<AtomicFile> {
    AtomicFile::options().sync(false).create(dest)
}

/// A blob being downloaded. Dropped without `commit`, its temp file goes.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<io::BufWriter<AtomicFile>>,
    dest: PathBuf,
    want: Sha256Digest,
    hasher: Hasher,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// Starts again from nothing (the server ignored a range request).
    pub fn restart(&mut self) -> io::Result<()> {
        // the old temp file goes with its writer
        self.file = None;
        self.file = Some(io::BufWriter::with_capacity(
            1 << 20,
            blob_file(&self.dest)?,
        ));
        self.hasher = Hasher::default();
        Ok(())
    }

    /// Checks digest and size, then renames the temp file into the cache.
    pub fn commit(mut self, size: u64) -> io::Result<()> {
        let f = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("blob writer already closed"))?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        let (got, len) = std::mem::take(&mut self.hasher).finish();
        if got != self.want || len != size {
            drop(f);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the registry sent {len} bytes with digest {}, expected {size} bytes with digest {}",
                    got.oci(),
                    self.want.oci()
                ),
            ));
        }
        f.commit()
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer closed"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_or_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let c = Cache::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let d = Sha256Digest::of(b"hello");
        let mut w = c.writer(&d).unwrap_or_else(|e| panic!("{e}"));
        w.write_all(b"hellO").unwrap_or_else(|e| panic!("{e}"));
        assert!(w.commit(5).is_err());
        assert!(!c.has(&d, 5));
        c.put_bytes(&d, b"hello").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.has(&d, 5));
        // no temp file left: the blobs folder holds the blob alone
        let names: Vec<String> = fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names, vec![d.hex()]);
    }

    /// A killed build's temp file is removed by the next open once its
    /// process is gone; a live process's is kept; an older bundler's
    /// `tmp/` leftovers go too.
    #[test]
    fn open_removes_temps_of_dead_builds_only() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let blobs = dir.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(dir.path().join("tmp")).unwrap_or_else(|e| panic!("{e}"));
        let hex = Sha256Digest::of(b"x").hex();
        let dead = blobs.join(format!(".{hex}{TEMP_MARKER}{}-0", u32::MAX));
        let live = blobs.join(format!(".{hex}{TEMP_MARKER}{}-0", std::process::id()));
        let old = dir.path().join("tmp").join(format!("{hex}.{}.0", u32::MAX));
        for p in [&dead, &live, &old] {
            fs::write(p, b"half").unwrap_or_else(|e| panic!("{e}"));
        }
        Cache::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(!old.exists());
    }
}
