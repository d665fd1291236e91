//! The content cache of downloaded blobs: `<cache>/blobs/sha256/<hex>`,
//! the same shape as an OCI image layout (an `oci-layout` file is written
//! too), so the layout resolver reads images out of it unchanged.
//!
//! A blob is written to `<cache>/tmp/<hex>.<pid>.<n>` while it is hashed and
//! renamed into `blobs/` only when its digest and size are right, so what is
//! in `blobs/` is always correct: a build killed mid-download leaves at most
//! temp files (removed by the next build once their process is gone), and a
//! re-run fetches only the blobs not yet in `blobs/`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use stoa_format::digest::Hasher;
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
    counter: AtomicU64,
}

impl Cache {
    /// Opens (creating) the cache and removes temp files of dead builds.
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join("blobs/sha256"))?;
        fs::create_dir_all(root.join("tmp"))?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            fs::write(&layout, stoa_format::oci::OCI_LAYOUT_CONTENT)?;
        }
        for e in fs::read_dir(root.join("tmp"))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('.').nth(1).and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(Self {
            root: root.to_owned(),
            counter: AtomicU64::new(0),
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
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}.{}.{n}", d.hex(), std::process::id()));
        let file = File::create(&tmp)?;
        Ok(BlobWriter {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            tmp,
            dest: self.blob_path(d),
            want: *d,
            hasher: Hasher::default(),
        })
    }
}

/// A blob being downloaded. Dropped without `commit`, its temp file goes.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<io::BufWriter<File>>,
    tmp: PathBuf,
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
        if let Some(f) = self.file.take() {
            drop(f);
        }
        self.file = Some(io::BufWriter::with_capacity(
            1 << 20,
            File::create(&self.tmp)?,
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
        drop(f);
        let (got, len) = std::mem::take(&mut self.hasher).finish();
        if got != self.want || len != size {
            let _ = fs::remove_file(&self.tmp);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the registry sent {len} bytes with digest {}, expected {size} bytes with digest {}",
                    got.oci(),
                    self.want.oci()
                ),
            ));
        }
        fs::rename(&self.tmp, &self.dest)
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

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
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
        assert_eq!(
            fs::read_dir(dir.path().join("tmp"))
                .unwrap_or_else(|e| panic!("{e}"))
                .count(),
            0
        );
    }
}
