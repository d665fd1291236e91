//! Putting a checked new updater in place, going back (`--revert`), and
//! what a killed run leaves behind.
//!
//! [`swap`]: the running binary is first kept as `<name>.previous` (a hard
//! link made under a temp name and renamed over any older `.previous`; a
//! copy where the filesystem has no hard links), then the new file is
//! renamed over the running one's name and the folder fsynced. `rename(2)`
//! replaces the name atomically: at every instant the name holds the whole
//! old binary or the whole new one. The process that runs keeps its own
//! (now unnamed) file until it exits.
//!
//! [`revert`]: the same in the other direction; the binary it replaces
//! becomes the `.previous`, so a second `--revert` goes forward again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use stoa_format::durable::{sync_dir, temp_path_for, AtomicFile, TEMP_MARKER};
use stoa_format::tools::Platform;

use super::{check_new, Install};
use crate::error::{Result, UpdaterError};

/// What [`swap`] did.
#[derive(Debug, Clone)]
pub struct Swapped {
    pub path: PathBuf,
    /// The replaced binary, kept.
    pub previous: PathBuf,
}

/// Makes `to` another name of `from`'s bytes: a new name (a temp one in
/// `to`'s folder) then renamed over `to`. A hard link, or a durable copy
/// with `from`'s mode where hard links are not possible.
fn keep_as(from: &Path, to: &Path) -> io::Result<()> {
    let tmp = temp_path_for(to);
    match fs::hard_link(from, &tmp) {
        Ok(()) => {
            if let Err(e) = fs::rename(&tmp, to) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            Ok(())
        }
        Err(_) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(from)?.permissions().mode() & 0o777;
            let mut f = AtomicFile::options().mode(mode).create(to)?;
            io::copy(&mut fs::File::open(from)?, &mut f)?;
            f.commit()
        }
    }
}

/// Keeps the running binary as `.previous`, then renames `new` (closed,
/// checked) over it and fsyncs the folder. On any error before that
/// rename, `new` is removed and the running binary is untouched.
pub fn swap(install: &Install, new: AtomicFile) -> Result<Swapped> {
    let previous = install.previous();
    keep_as(&install.path, &previous)
        .map_err(|e| UpdaterError::io("keep the running updater as", &previous, e))?;
    // a failed rename drops the temp file (AtomicFile)
    new.commit()
        .map_err(|e| UpdaterError::io("rename the new updater over", &install.path, e))?;
    Ok(Swapped {
        path: install.path.clone(),
        previous,
    })
}

/// What [`revert`] did.
#[derive(Debug, Clone)]
pub struct Reverted {
    pub path: PathBuf,
    /// What the restored binary reports.
    pub version: semver::Version,
    /// Where the binary it replaced is kept now.
    pub previous: PathBuf,
}

/// Puts `<name>.previous` back in place (after the same ELF and
/// `--version` checks as a new binary, any version) and keeps the binary it
/// replaces as the new `.previous`.
pub fn revert(install: &Install, platform: Platform) -> Result<Reverted> {
    let previous = install.previous();
    if fs::symlink_metadata(&previous).is_err() {
        return Err(UpdaterError::Refused(format!(
            "no previous updater at {} to go back to (self-update keeps the one it replaces there)",
            previous.display()
        )));
    }
    let version = check_new(&previous, platform, None)?;
    // the running binary under a temp name, so that nothing is lost
    let keep = temp_path_for(&previous);
    fs::hard_link(&install.path, &keep)
        .or_else(|_| fs::copy(&install.path, &keep).map(|_| ()))
        .map_err(|e| UpdaterError::io("keep the running updater as", &keep, e))?;
    let io = |what: &'static str, p: &Path| {
        let p = p.to_owned();
        move |e| UpdaterError::io(what, p, e)
    };
    if let Err(e) = fs::rename(&previous, &install.path) {
        let _ = fs::remove_file(&keep);
        return Err(io("rename the previous updater over", &install.path)(e));
    }
    fs::rename(&keep, &previous).map_err(io("keep the replaced updater as", &previous))?;
    sync_dir(&install.dir).map_err(io("fsync", &install.dir))?;
    Ok(Reverted {
        path: install.path.clone(),
        version,
        previous,
    })
}

/// Removes the temp files a killed self-update (or revert) left beside
/// the binary (`.<name>.partial-<pid>-<n>`, `.<name>.previous.partial-…`)
/// whose process is gone; returns them.
pub fn clean_leftovers(install: &Install) -> Vec<PathBuf> {
    let name = install.name.to_string_lossy();
    let prefixes = [
        format!(".{name}{TEMP_MARKER}"),
        format!(".{name}.previous{TEMP_MARKER}"),
    ];
    let mut removed = Vec::new();
    let Ok(dir) = fs::read_dir(&install.dir) else {
        return removed;
    };
    for e in dir.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = prefixes.iter().find_map(|p| file.strip_prefix(p.as_str())) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}
