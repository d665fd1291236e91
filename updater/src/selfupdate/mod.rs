//! The updater replacing itself with the `stoa-updater` a verified bundle
//! carries (`self-update`, docs/OPERATIONS.md *Updating the updater*).
//!
//! The running binary is found through `/proc/self/exe`
//! ([`Install::current`]). While the bundle streams through the verifier,
//! [`ToolSink`] writes the one tool entry wanted
//! (`tools/<this platform>/stoa-updater`) into a temp file beside the
//! running binary (the one durable writer, `stoa_format::durable`:
//! `.stoa-updater.partial-<pid>-<n>`, mode 0600 until closed); nothing else
//! is kept. Only when the whole bundle verified is the file closed (mode,
//! fsync), checked ([`check_new`]: an ELF for this platform, then its
//! `--version` run as a smoke test and compared with the signed record) and
//! swapped in ([`swap`]). Any failure before the rename drops the temp file
//! and leaves the running binary as it was; a kill leaves at most the temp
//! file, which the next `self-update` removes ([`clean_leftovers`]).

mod swap;

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use stoa_format::durable::AtomicFile;
use stoa_format::manifest::{Entry, ToolRecord};
use stoa_format::reader::ContentSink;
use stoa_format::tools::{self, Platform};

use crate::error::{Result, UpdaterError};

pub use swap::{clean_leftovers, revert, swap, Reverted, Swapped};

/// How long a new binary may take to answer `--version`.
pub const SMOKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The running updater's file.
#[derive(Debug, Clone)]
pub struct Install {
    /// Where it runs from (symlinks resolved).
    pub path: PathBuf,
    pub dir: PathBuf,
    /// Its file name (`stoa-updater`).
    pub name: OsString,
}

impl Install {
    /// The running binary (`/proc/self/exe`), a regular file in a folder.
    pub fn current() -> Result<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| UpdaterError::io("find the running updater", "/proc/self/exe", e))?;
        Self::at(&exe)
    }

    /// The updater installed at `path`.
    pub fn at(path: &Path) -> Result<Self> {
        let meta = fs::metadata(path)
            .map_err(|e| UpdaterError::io("read the running updater", path, e))?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(self_update(
                "install",
                format!("{} has no folder", path.display()),
            ));
        };
        if !meta.is_file() {
            return Err(self_update(
                "install",
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            dir: dir.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Where the replaced binary is kept: `<name>.previous` beside it.
    pub fn previous(&self) -> PathBuf {
        let mut n = self.name.clone();
        n.push(".previous");
        self.dir.join(n)
    }
}

/// A refusal of the new binary (exit 5): the running one is unchanged.
pub fn self_update(check: &'static str, reason: String) -> UpdaterError {
    UpdaterError::SelfUpdate { check, reason }
}

/// The carried updater for `platform` in a bundle's tool records.
pub fn pick(tools_: &[ToolRecord], platform: Platform) -> Result<&ToolRecord> {
    tools_
        .iter()
        .find(|t| t.name == tools::UPDATER && t.platform == platform.name)
        .ok_or_else(|| {
            let carried: Vec<String> = tools_
                .iter()
                .filter(|t| t.name == tools::UPDATER)
                .map(|t| t.platform.clone())
                .collect();
            UpdaterError::Refused(format!(
                "the bundle carries no stoa-updater for {} (it carries one for: {})",
                platform.name,
                if carried.is_empty() {
                    "no platform".to_owned()
                } else {
                    carried.join(", ")
                }
            ))
        })
}

/// This updater's version.
pub fn running_version() -> semver::Version {
    semver::Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(semver::Version::new(0, 0, 0))
}

/// This updater's platform (one a tool may be carried for).
pub fn host() -> Result<Platform> {
    tools::host_platform().ok_or_else(|| {
        UpdaterError::Refused(format!(
            "this host ({}/{}) is not a platform a bundle carries tools for",
            std::env::consts::OS,
            std::env::consts::ARCH
        ))
    })
}

/// Writes the one wanted tool entry into a temp file beside `dest`; every
/// other entry passes through unkept.
#[derive(Debug)]
pub struct ToolSink {
    want: String,
    dest: PathBuf,
    current: Option<BufWriter<AtomicFile>>,
    done: Option<AtomicFile>,
}

impl ToolSink {
    pub fn new(want: String, dest: PathBuf) -> Self {
        Self {
            want,
            dest,
            current: None,
            done: None,
        }
    }

    /// The written file (closed: mode 0755, fsynced), once its entry ended.
    pub fn take(&mut self) -> Option<AtomicFile> {
        self.done.take()
    }
}

impl ContentSink for ToolSink {
    fn begin(&mut self, entry: &Entry) -> io::Result<()> {
        if entry.path == self.want {
            let f = AtomicFile::options().mode(0o755).create(&self.dest)?;
            self.current = Some(BufWriter::with_capacity(1 << 20, f));
        }
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.current {
            Some(f) => f.write_all(data),
            None => Ok(()),
        }
    }
    fn end(&mut self, _: &Entry) -> io::Result<()> {
        if let Some(f) = self.current.take() {
            let mut f = f.into_inner().map_err(|e| e.into_error())?;
            // mode, fsync, close: a file still open for writing cannot run
            f.close()?;
            self.done = Some(f);
        }
        Ok(())
    }
}

/// The checks a new binary passes before it replaces the running one: an
/// ELF executable for `platform`, whose `--version` (run under setpriv,
/// at most [`SMOKE_TIMEOUT`]) exits 0 and reports `want` (None: any
/// version, for `--revert`). Returns the version it reported.
pub fn check_new(
    file: &Path,
    platform: Platform,
    want: Option<&semver::Version>,
) -> Result<semver::Version> {
    let mut head = Vec::with_capacity(tools::ELF_HEADER_LEN);
    fs::File::open(file)
        .and_then(|f| f.take(tools::ELF_HEADER_LEN as u64).read_to_end(&mut head))
        .map_err(|e| UpdaterError::io("read the new updater", file, e))?;
    tools::check_elf(&head, platform).map_err(|r| self_update("elf", r))?;
    crate::tool::check_setpriv()?;
    let out = crate::tool::output_within(
        crate::tool::command(file).arg("--version"),
        tools::UPDATER,
        SMOKE_TIMEOUT,
        64 * 1024,
    )
    .map_err(|e| {
        self_update(
            "smoke-test",
            format!("cannot run `{} --version`: {e}", file.display()),
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = stoa_format::text::escape(text.lines().next().unwrap_or("(nothing)")).into_owned();
    match out.status {
        Some(s) if s.success() => {}
        Some(s) => {
            return Err(self_update(
                "smoke-test",
                format!("`--version` of the new updater {s}: {line}"),
            ))
        }
        None => {
            return Err(self_update(
                "smoke-test",
                format!(
                    "`--version` of the new updater did not answer within {}s",
                    SMOKE_TIMEOUT.as_secs()
                ),
            ))
        }
    }
    let reported = tools::reported_version(&text).ok_or_else(|| {
        self_update(
            "smoke-test",
            format!("`--version` of the new updater printed no version: {line}"),
        )
    })?;
    if let Some(w) = want {
        if !tools::version_matches(w, &reported) {
            return Err(self_update(
                "smoke-test",
                format!("the new updater reports {reported}, its signed record says {w}"),
            ));
        }
    }
    Ok(reported)
}
