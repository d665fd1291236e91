//! `stoa-bundler support open FILE --identity KEY [--extract DIR]`: the
//! vendor's side of a site's support bundle (`stoa-updater support-bundle`,
//! docs/OPERATIONS.md "Support bundle"). Decrypts it (age, X25519 identity
//! as `age-keygen` writes it), reads it streaming, and prints a summary a
//! support engineer reads in a minute ([`super::support_summary`]): the
//! timeline of operations, the last failure with its step, error and the
//! matching Helm and pod evidence, failed preflight checks, pods not ready,
//! version mismatches. `--extract DIR` writes every file out.
//!
//! Bad input never panics: a file that is not a support bundle, a wrong
//! identity, a truncated or tampered archive each give one error line
//! (exit 3; a bad `--identity` file exits 2).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use stoa_format::cli::Output;

use super::support_summary::Summary;
use crate::error::BundlerError;

/// The files the summary reads (each kept up to [`MAX_READ`]).
fn wanted(path: &str) -> bool {
    let top = [
        "SUMMARY.json",
        "versions.json",
        "preflight.json",
        "status.json",
        "state/state.json",
        "state/journal.jsonl",
        "state/history.jsonl",
        "state/audit.log",
    ];
    top.contains(&path)
        || (path.starts_with("cluster/")
            && (path.ends_with("/pods.json") || path.ends_with(".log")))
        || (path.starts_with("helm/")
            && (path.ends_with("/status.json") || path.ends_with("/history.json")))
        || path.starts_with("databases/")
}

/// The most of one file the summary reads (its start).
pub const MAX_READ: u64 = 16 << 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Decrypt a site's support bundle and print its summary.
    Open(OpenArgs),
}

#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    /// The support bundle (as `stoa-updater support-bundle` wrote it).
    pub file: PathBuf,
    /// The vendor's age identity file (AGE-SECRET-KEY-1…, as age-keygen writes it).
    #[arg(long, value_name = "KEY")]
    pub identity: Option<PathBuf>,
    /// Also write every file of the bundle into this new (or empty) folder.
    #[arg(long, value_name = "DIR")]
    pub extract: Option<PathBuf>,
}

pub fn run(a: &Args, out: Output) -> Result<(), BundlerError> {
    match &a.command {
        Sub::Open(o) => open(o, out),
    }
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> BundlerError {
    BundlerError::SupportOpen {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The identities of an age identity file (comments and blank lines skipped).
fn identities(path: &Path) -> Result<Vec<age::x25519::Identity>, BundlerError> {
    let bad_id = |reason: String| BundlerError::SupportIdentity {
        path: path.to_owned(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(|e| bad_id(e.to_string()))?;
    let ids: Vec<age::x25519::Identity> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            age::x25519::Identity::from_str(l).map_err(|_| {
                bad_id("a line is not an age X25519 identity (AGE-SECRET-KEY-1…)".into())
            })
        })
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err(bad_id("no identity in it".into()));
    }
    Ok(ids)
}

/// The plaintext (tar.zst) stream of the bundle at `path`.
fn plaintext(o: &OpenArgs) -> Result<Box<dyn Read>, BundlerError> {
    let f = File::open(&o.file).map_err(|e| bad(&o.file, e))?;
    let mut r = BufReader::new(f);
    let head = r.fill_buf().map_err(|e| bad(&o.file, e))?.to_vec();
    if head.starts_with(b"age-encryption.org/") {
        let Some(idf) = &o.identity else {
            return Err(bad(
                &o.file,
                "it is encrypted: give the vendor's identity with --identity KEY",
            ));
        };
        let ids = identities(idf)?;
        let d = age::Decryptor::new_buffered(r)
            .map_err(|e| bad(&o.file, format!("not a readable age file: {e}")))?;
        let plain = d
            .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| bad(&o.file, format!("cannot decrypt: {e}")))?;
        return Ok(Box::new(plain));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Box::new(r));
    }
    Err(bad(
        &o.file,
        "not a support bundle (neither age-encrypted nor a zstd tar)",
    ))
}

/// A member's path, when it is a plain relative one (no `..`, not absolute).
fn safe_path(p: &Path) -> Option<String> {
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| p.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
}

/// Reads every member: the summary's files into memory (bounded), every
/// file into `extract` when given. The whole stream is read to its end, so
/// a truncated or tampered archive is always noticed.
fn read_all(o: &OpenArgs) -> Result<BTreeMap<String, String>, BundlerError> {
    let plain = plaintext(o)?;
    let z = zstd::Decoder::new(plain).map_err(|e| bad(&o.file, e))?;
    let mut t = tar::Archive::new(z);
    let mut files = BTreeMap::new();
    if let Some(d) = &o.extract {
        fs::create_dir_all(d).map_err(|e| bad(d, e))?;
        if fs::read_dir(d).map_err(|e| bad(d, e))?.next().is_some() {
            return Err(bad(d, "--extract: the folder is not empty"));
        }
    }
    let entries = t.entries().map_err(|e| bad(&o.file, e))?;
    for e in entries {
        let mut e = e.map_err(|e| bad(&o.file, format!("damaged archive: {e}")))?;
        let raw = e.path().map_err(|e| bad(&o.file, e))?.into_owned();
        let Some(name) = safe_path(&raw) else {
            return Err(bad(
                &o.file,
                format!("member {:?} is not a plain relative path", raw),
            ));
        };
        let mut dest = match &o.extract {
            Some(d) => {
                let p = d.join(&name);
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent).map_err(|e| bad(parent, e))?;
                }
                Some(File::create(&p).map_err(|e| bad(&p, e))?)
            }
            None => None,
        };
        let mut kept = Vec::new();
        let keep = wanted(&name);
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = e
                .read(&mut buf)
                .map_err(|e| bad(&o.file, format!("damaged archive: {e}")))?;
            if n == 0 {
                break;
            }
            if keep && (kept.len() as u64) < MAX_READ {
                kept.extend_from_slice(&buf[..n]);
            }
            if let Some(f) = dest.as_mut() {
                f.write_all(&buf[..n]).map_err(|e| bad(&o.file, e))?;
            }
        }
        if keep {
            files.insert(name, String::from_utf8_lossy(&kept).into_owned());
        }
    }
    // the rest of the stream: the age STREAM's last chunk is checked here
    let mut rest = t.into_inner().finish();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| bad(&o.file, format!("damaged archive: {e}")))?;
    if !files.contains_key("SUMMARY.json") {
        return Err(bad(&o.file, "no SUMMARY.json: not a support bundle"));
    }
    Ok(files)
}

fn open(o: &OpenArgs, out: Output) -> Result<(), BundlerError> {
    let files = read_all(o)?;
    let s = Summary::of(&files);
    if out.json {
        println!("{}", serde_json::to_value(&s).unwrap_or_default());
    } else {
        print!("{s}");
        if let Some(d) = &o.extract {
            println!("every file written to {}", d.display());
        }
    }
    Ok(())
}
