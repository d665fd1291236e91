//! Extraction of verified content into a folder that appears only when every
//! byte has been verified: a staging folder beside the target, renamed into
//! place at the end, the parent folder fsynced.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::FormatError;
use crate::keys::TrustStore;
use crate::manifest::Entry;
use crate::reader::{ContentSink, VerifiedBundle, VerifyOptions};
use crate::source::{verify_source, BundleSource};

/// Writes entries below a root folder. Names were checked by the reader
/// (relative, no `..`, conservative characters); files are created new, so
/// nothing is overwritten or followed.
#[derive(Debug)]
pub struct DirSink {
    root: PathBuf,
    file: Option<io::BufWriter<File>>,
}

impl DirSink {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            file: None,
        }
    }
}

impl ContentSink for DirSink {
    fn begin(&mut self, entry: &Entry) -> io::Result<()> {
        let path = self.root.join(&entry.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        self.file = Some(io::BufWriter::with_capacity(1 << 20, f));
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(data),
            None => Err(io::Error::other("write before begin")),
        }
    }

    fn end(&mut self, _: &Entry) -> io::Result<()> {
        match self.file.take() {
            Some(f) => f.into_inner().map_err(|e| e.into_error())?.sync_data(),
            None => Ok(()),
        }
    }
}

pub use crate::durable::sync_dir;

/// Verifies `bundle` (a file or a part set) and extracts its content to `dest`, which must not
/// exist. On any failure `dest` does not appear and the staging folder is
/// removed.
pub fn extract(
    bundle: &BundleSource,
    trust: &TrustStore,
    opts: &VerifyOptions,
    dest: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifiedBundle, FormatError> {
    let target_err = |reason: String| FormatError::ExtractTarget {
        path: dest.to_owned(),
        reason,
    };
    if fs::symlink_metadata(dest).is_ok() {
        return Err(target_err(
            "already exists; extract only creates a new folder".into(),
        ));
    }
    let name = dest
        .file_name()
        .ok_or_else(|| target_err("has no folder name".into()))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut staging_name = std::ffi::OsString::from(".");
    staging_name.push(name);
    staging_name.push(format!(".partial-{}", std::process::id()));
    let staging = parent.join(staging_name);
    fs::create_dir_all(&parent)
        .map_err(|e| target_err(format!("create {}: {e}", parent.display())))?;
    fs::create_dir(&staging)
        .map_err(|e| target_err(format!("create staging folder {}: {e}", staging.display())))?;

    let result = (|| {
        let mut sink = DirSink::new(&staging);
        let v = verify_source(bundle, trust, opts, &mut sink, progress)?;
        fs::rename(&staging, dest)
            .map_err(|e| target_err(format!("rename staging folder into place: {e}")))?;
        sync_dir(&parent).map_err(|e| target_err(format!("fsync {}: {e}", parent.display())))?;
        Ok(v)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}
