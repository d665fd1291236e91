//! Staging: the bundle is verified once, and while it streams every verified
//! entry is written into the content-addressed store under the state folder
//! (`store/sha256/<hex>`, shared between releases). Nothing is read from the
//! medium again. An entry becomes visible in the store only after its digest
//! was checked (temp file, fsync, rename); the release folder, which makes
//! the staged release usable, is written only when the whole bundle verified.
//!
//! A stored blob is never opened for writing again: it is written once
//! through a new temp file (`create_new`), made read-only (0444) and renamed
//! into place. Chart files of a release are hard links to store blobs; one
//! chart archive used by several Helm releases is linked once, and nothing
//! is ever copied onto an existing path.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use stoa_format::durable::{sync_dir, AtomicFile};
use stoa_format::manifest::Entry;
use stoa_format::reader::{ContentSink, VerifiedBundle, VerifyOptions};
use stoa_format::source::{verify_source, BundleSource};
use stoa_format::{BundleManifest, Limits, TrustStore};

use crate::error::{Result, UpdaterError};
use crate::state::{write_atomic, StateDir};

/// Writes verified entries into the store by digest.
#[derive(Debug)]
pub struct StoreSink {
    dir: PathBuf,
    current: Option<BufWriter<AtomicFile>>,
    pub written: u64,
    pub reused: u64,
    /// Told of each entry once it is stored and its digest was checked
    /// (the blobs pushed while staging, `registry::EarlyPush`).
    stored: Option<Sender<crate::registry::Stored>>,
}

impl StoreSink {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            current: None,
            written: 0,
            reused: 0,
            stored: None,
        }
    }
}

impl ContentSink for StoreSink {
    fn begin(&mut self, entry: &Entry) -> io::Result<()> {
        let final_path = self.dir.join(entry.sha256.hex());
        if final_path.exists() {
            // a stored file is trusted only if it still has the digest its
            // name says (bit rot, a torn write on a filesystem without
            // ordered data, a hand-edited store); otherwise it is replaced
            if stored_intact(&final_path, entry) {
                self.reused += entry.size;
                self.current = None;
                return Ok(());
            }
            fs::remove_file(&final_path)?;
        }
        // a new temp name (create_new), never a file left by a killed run;
        // stored content is read-only (0444); the store folder is fsynced
        // once after the whole bundle (verify_and_stage)
        let f = AtomicFile::options()
            .mode(0o444)
            .sync_dir(false)
            .create(final_path)?;
        self.current = Some(BufWriter::with_capacity(1 << 20, f));
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.current {
            Some(f) => f.write_all(data),
            None => Ok(()),
        }
    }
    fn end(&mut self, entry: &Entry) -> io::Result<()> {
        if let Some(f) = self.current.take() {
            debug_assert_eq!(f.get_ref().final_path(), self.dir.join(entry.sha256.hex()));
            f.into_inner().map_err(|e| e.into_error())?.commit()?;
            self.written += entry.size;
        }
        // `end` comes after the reader checked the entry's digest
        if let Some(tx) = &self.stored {
            let _ = tx.send((entry.sha256, entry.size));
        }
        Ok(())
    }
}

/// Whether the file at `path` has `entry`'s size and SHA-256 (the store's
/// check before a blob is trusted again; also the bundled tools' copies).
pub(crate) fn stored_intact(path: &Path, entry: &Entry) -> bool {
    match File::open(path) {
        Ok(f) => matches!(
            stoa_format::Sha256Digest::of_reader(io::BufReader::with_capacity(1 << 20, f)),
            Ok((d, n)) if d == entry.sha256 && n == entry.size
        ),
        Err(_) => false,
    }
}

/// Verified and staged.
#[derive(Debug)]
pub struct Staged {
    pub verified: VerifiedBundle,
    pub bytes_written: u64,
    pub bytes_reused: u64,
}

/// Verifies `bundle` against `trust` and stages its content. The release
/// folder `releases/<version>` (the verified manifest, chart links) is
/// written last, in a temp folder renamed into place. `stored` is told of
/// each entry once it is stored and its digest checked.
pub fn verify_and_stage(
    bundle: &BundleSource,
    trust: &TrustStore,
    opts: &VerifyOptions,
    sd: &StateDir,
    stored: Option<Sender<crate::registry::Stored>>,
    progress: &mut dyn FnMut(u64),
) -> Result<Staged> {
    sd.ensure()?;
    let mut sink = StoreSink::new(sd.store_dir());
    sink.stored = stored;
    let verified = verify_source(bundle, trust, opts, &mut sink, progress)?;
    let store = sd.store_dir();
    sync_dir(&store).map_err(|e| UpdaterError::io("fsync", &store, e))?;
    write_release_dir(sd, &verified)?;
    Ok(Staged {
        verified,
        bytes_written: sink.written,
        bytes_reused: sink.reused,
    })
}

fn write_release_dir(sd: &StateDir, v: &VerifiedBundle) -> Result<()> {
    let m = &v.manifest;
    let dest = sd.release_dir(&m.release.version);
    if let Ok(existing) = fs::read(dest.join("manifest.json")) {
        if existing == v.manifest_bytes {
            return Ok(());
        }
    }
    let parent = sd.root.join("releases");
    let tmp = parent.join(format!(
        ".{}.partial-{}",
        m.release.version,
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    let res = (|| -> Result<()> {
        let io = |what, p: &Path| {
            let p = p.to_owned();
            move |e| UpdaterError::io(what, p, e)
        };
        fs::create_dir_all(tmp.join("charts")).map_err(io("create", &tmp))?;
        write_atomic(&tmp.join("manifest.json"), &v.manifest_bytes, None)?;
        for c in &m.charts {
            let link = tmp.join("charts").join(chart_file_name(c));
            let src = entry_blob(sd, m, &c.path)?;
            link_chart(&src, &link).map_err(io("link chart", &link))?;
        }
        if dest.exists() {
            let old = parent.join(format!(".{}.old-{}", m.release.version, std::process::id()));
            fs::rename(&dest, &old).map_err(io("replace", &dest))?;
            let _ = fs::remove_dir_all(&old);
        }
        fs::rename(&tmp, &dest).map_err(io("rename", &dest))?;
        sync_dir(&parent).map_err(io("fsync", &parent))
    })();
    if res.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    res
}

/// Links (or, across filesystems, copies) a store blob to a chart file of a
/// new release folder. An existing chart file is kept when it already holds
/// the same blob (one chart archive used by two Helm releases) and refused
/// otherwise; nothing is ever written onto an existing path.
fn link_chart(src: &Path, link: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    match fs::hard_link(src, link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let (a, b) = (fs::metadata(src)?, fs::symlink_metadata(link)?);
            if a.dev() == b.dev() && a.ino() == b.ino() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "two different chart archives have the same name and version",
                ))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            let mut r = File::open(src)?;
            let mut w = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(link)?;
            io::copy(&mut r, &mut w)?;
            w.sync_all()
        }
        Err(e) => Err(e),
    }
}

/// Reads a staged entry, checking again that the stored file has the size
/// and digest the (verified) manifest gives it: the store is trusted only
/// as far as it still matches. For small content (migration steps).
pub fn read_verified_text(sd: &StateDir, e: &Entry) -> Result<String> {
    let p = sd.blob(&e.sha256.hex());
    let bytes = fs::read(&p).map_err(|err| UpdaterError::io("read staged content", &p, err))?;
    if bytes.len() as u64 != e.size || stoa_format::Sha256Digest::of(&bytes) != e.sha256 {
        return Err(UpdaterError::StoreMismatch {
            path: p,
            entry: e.path.clone(),
        });
    }
    String::from_utf8(bytes).map_err(|_| UpdaterError::StoreMismatch {
        path: sd.blob(&e.sha256.hex()),
        entry: e.path.clone(),
    })
}

/// Loads a staged release's manifest and checks it is the one applied
/// (`manifest_sha256` as recorded in the state).
pub fn load_release_checked(
    sd: &StateDir,
    v: &semver::Version,
    manifest_sha256: &str,
) -> Result<BundleManifest> {
    let p = sd.release_dir(v).join("manifest.json");
    let bytes = fs::read(&p).map_err(|e| UpdaterError::io("read staged release", &p, e))?;
    if stoa_format::Sha256Digest::of(&bytes).hex() != manifest_sha256 {
        return Err(UpdaterError::StoreMismatch {
            path: p,
            entry: format!("manifest of {v} (recorded sha256 {manifest_sha256})"),
        });
    }
    Ok(BundleManifest::from_bytes(&bytes, &Limits::default())?)
}

pub fn chart_file_name(c: &stoa_format::manifest::ChartRecord) -> String {
    format!("{}-{}.tgz", c.name, c.version)
}

/// The staged file of a bundle entry.
pub fn entry_blob(sd: &StateDir, m: &BundleManifest, path: &str) -> Result<PathBuf> {
    let e = m.listed(path).ok_or_else(|| UpdaterError::Io {
        what: "find staged entry",
        path: PathBuf::from(path),
        source: io::Error::new(io::ErrorKind::NotFound, "not in the manifest"),
    })?;
    Ok(sd.blob(&e.sha256.hex()))
}

/// Loads the manifest of a staged release.
pub fn load_release(sd: &StateDir, v: &semver::Version) -> Result<BundleManifest> {
    let p = sd.release_dir(v).join("manifest.json");
    let bytes = fs::read(&p).map_err(|e| UpdaterError::io("read staged release", &p, e))?;
    Ok(BundleManifest::from_bytes(&bytes, &Limits::default())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_linked_twice_is_kept_and_never_copied_onto_itself() {
        let d = std::env::temp_dir().join(format!("stoa-stage-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let blob = d.join("blob");
        fs::write(&blob, b"chart archive").unwrap();
        let link = d.join("stoa-api-1.0.0.tgz");
        link_chart(&blob, &link).unwrap();
        // the same archive for a second Helm release: kept as it is
        link_chart(&blob, &link).unwrap();
        assert_eq!(fs::read(&blob).unwrap(), b"chart archive");
        assert_eq!(fs::read(&link).unwrap(), b"chart archive");
        // another archive under the same name: refused, nothing written
        let other = d.join("other");
        fs::write(&other, b"another chart").unwrap();
        let e = link_chart(&other, &link).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&blob).unwrap(), b"chart archive");
        let _ = fs::remove_dir_all(&d);
    }
}
