//! The support bundle (`stoa-updater support-bundle`, docs/OPERATIONS.md
//! "Support bundle"): what the vendor needs to help a site, gathered by the
//! collectors ([`collect`], [`cluster`]), every text passed through the one
//! redaction function ([`redact`]), bounded by `--max-size` (the biggest
//! logs cut first), then written as one archive encrypted to the vendor
//! ([`archive`]).
//!
//! It reads only: no site lock, nothing written into `state_dir` (the
//! collected files wait in a private temp folder beside `--out`), and a
//! missing state folder or site config is recorded, not fatal.
//!
//! Inside the archive: `SUMMARY.json` (what was collected, how each
//! collector ended, what was cut), `REDACTIONS.txt` (what kind of value was
//! redacted where, never the value), then the collected files.

pub mod archive;
pub mod cluster;
pub mod collect;
pub mod redact;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::SiteConfig;
use crate::error::{Result, UpdaterError};
use crate::state::StateDir;
use collect::{Collector, Ctx, Item, Record};
use redact::{Redaction, Redactor};

/// The archive's format name, in `SUMMARY.json`.
pub const FORMAT: &str = "stoa-support-bundle/1";

/// A log cut to fit `--max-size` keeps at least this much of its end.
pub const MIN_KEPT: u64 = 4096;

/// What `support-bundle` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// None: `--dry-run` (list, write nothing).
    pub out: Option<PathBuf>,
    pub since: Duration,
    pub max_size: u64,
    pub limit: Duration,
    pub seal: archive::Seal,
}

/// One file of the bundle.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    /// Its size before it was cut to fit `--max-size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut_from: Option<u64>,
    #[serde(skip)]
    log: bool,
    #[serde(skip)]
    src: PathBuf,
}

/// What `SUMMARY.json` holds, and `--json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub format: &'static str,
    pub created_at: String,
    pub updater_version: &'static str,
    pub config: PathBuf,
    /// The bundle written (None with `--dry-run`).
    pub out: Option<PathBuf>,
    /// `age` or `none`.
    pub encryption: &'static str,
    pub since: String,
    pub max_size: u64,
    pub collectors: Vec<Record>,
    pub files: Vec<FileEntry>,
    /// The collected bytes (after cuts).
    pub bytes: u64,
    /// Files cut to fit `--max-size`, biggest logs first.
    pub cut: Vec<String>,
    pub redactions: usize,
    /// The archive's size on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_bytes: Option<u64>,
}

/// The secrets the updater knows from the site config: database URL
/// passwords, what each database connects with (`PGPASSWORD`, `passfile`,
/// `~/.pgpass`), the registry's `password_file`.
pub fn known_secrets(cfg: &SiteConfig) -> Redactor {
    let mut r = Redactor::default();
    for (name, d) in &cfg.databases {
        if let Ok(u) = url::Url::parse(&d.url) {
            if let Some(p) = u.password() {
                let what = format!("the password in [databases.{name}] url");
                r.know(p, &what);
                r.know(&crate::tool::percent_decode(p), &what);
            }
            for (k, v) in u.query_pairs() {
                if k == "password" {
                    r.know(&v, &format!("the password in [databases.{name}] url"));
                }
            }
        }
        if let Some(p) = crate::db::conninfo::ConnInfo::parse(&d.url)
            .ok()
            .and_then(|c| c.resolve_password())
        {
            r.know(
                &p,
                &format!("the password [databases.{name}] connects with (PGPASSWORD or its .pgpass/passfile entry)"),
            );
        }
    }
    if let Some(pf) = cfg.registry.as_ref().and_then(|r| r.password_file.as_ref()) {
        if let Ok(t) = std::fs::read_to_string(pf) {
            r.know(t.trim(), "the registry password ([registry] password_file)");
        }
    }
    // the values under secret keys of the site's Helm values files
    let values_dir = cfg.helm.as_ref().and_then(|h| h.values_dir.as_ref());
    for f in values_dir
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = f.file_name().to_string_lossy().into_owned();
        for (key, value) in std::fs::read_to_string(f.path())
            .map(|t| redact::secret_values(&t))
            .unwrap_or_default()
        {
            r.know(&value, &format!("`{key}` in the site's values file {name}"));
        }
    }
    if let Some(p) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
        r.know(&p, "PGPASSWORD");
    }
    r
}

/// Every collector, in the order of the bundle.
fn collectors(ctx: &Ctx) -> Vec<Collector> {
    let mut v: Vec<Collector> = vec![
        ("versions".into(), Box::new(collect::versions)),
        ("site config".into(), Box::new(collect::config)),
        ("state folder".into(), Box::new(collect::state)),
        ("status".into(), Box::new(collect::status)),
        ("preflight".into(), Box::new(collect::preflight)),
        ("store".into(), Box::new(collect::store)),
        ("migration tables".into(), Box::new(collect::migrations)),
    ];
    v.extend(cluster::collectors(ctx));
    v
}

/// Where the collected files wait: a private temp folder beside `--out`
/// (else in the temp dir), never in `state_dir`.
fn work_dir(out: Option<&Path>) -> Result<tempfile::TempDir> {
    let parent = out
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(std::env::temp_dir, Path::to_owned);
    tempfile::Builder::new()
        .prefix(".stoa-support-")
        .tempdir_in(&parent)
        .map_err(|e| UpdaterError::io("create support work folder in", parent, e))
}

/// Collects, redacts, bounds and (without `--dry-run`) writes the bundle.
pub fn build(config_path: &Path, opts: &Options) -> Result<Report> {
    let loaded = SiteConfig::load(config_path);
    let (cfg, cfg_error) = match loaded {
        Ok(mut c) => {
            // `"bundled"` Helm and kubectl: the installed release's
            let sd = StateDir::new(&c.state_dir);
            if let Some(h) = &mut c.helm {
                crate::bundled::bind_from_state(h, &sd);
            }
            (Some(c), None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let redactor = cfg.as_ref().map(known_secrets).unwrap_or_default();
    let sd = cfg.as_ref().map(|c| StateDir::new(&c.state_dir));
    if let (Some(out), Some(sd)) = (&opts.out, &sd) {
        let abs = std::path::absolute(out).unwrap_or_else(|_| out.clone());
        if abs.starts_with(&sd.root) {
            return Err(UpdaterError::SupportOut {
                path: out.clone(),
                reason: "inside state_dir; the support bundle never writes there".into(),
            });
        }
    }
    let ctx = Arc::new(Ctx {
        config_path: config_path.to_owned(),
        cfg,
        sd,
        since: SystemTime::now() - opts.since,
        limit: opts.limit,
    });
    let work = work_dir(opts.out.as_deref())?;
    let mut files = Vec::new();
    let mut log = Vec::new();
    let mut failed: Option<UpdaterError> = None;
    let mut sink = |item: Item| {
        if failed.is_some() {
            return;
        }
        match keep(&redactor, work.path(), files.len(), item, &mut log) {
            Ok(f) => files.push(f),
            Err(e) => failed = Some(e),
        }
    };
    let mut records = collect::run_all(&ctx, collectors(&ctx), &mut sink);
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(e) = cfg_error {
        records.insert(0, failed_record("load site config", &e));
    }
    let cut = fit(&mut files, opts.max_size)?;
    let got = Collected {
        files,
        records,
        cut,
        log,
    };
    finish(config_path, opts, &redactor, work, got)
}

/// What the collectors gave, redacted and bounded.
#[derive(Debug)]
struct Collected {
    files: Vec<FileEntry>,
    records: Vec<Record>,
    cut: Vec<String>,
    log: Vec<Redaction>,
}

fn failed_record(name: &str, error: &str) -> Record {
    Record {
        name: name.into(),
        outcome: "failed".into(),
        error: Some(error.into()),
        seconds: 0.0,
        notes: Vec::new(),
    }
}

/// Redacts one collected file and writes it into the work folder.
fn keep(
    r: &Redactor,
    work: &Path,
    n: usize,
    item: Item,
    log: &mut Vec<Redaction>,
) -> Result<FileEntry> {
    let text = r.redact(&item.path, &item.text, log);
    let src = work.join(format!("{n:04}"));
    std::fs::write(&src, text.as_bytes()).map_err(|e| UpdaterError::io("write", &src, e))?;
    Ok(FileEntry {
        path: item.path,
        size: text.len() as u64,
        cut_from: None,
        log: item.log,
        src,
    })
}

/// Cuts files until the total fits `max`: the biggest log first, keeping
/// its end (at least [`MIN_KEPT`]); then other files the same way. Returns
/// what was cut, for the summary.
fn fit(files: &mut [FileEntry], max: u64) -> Result<Vec<String>> {
    let mut cut = Vec::new();
    // room for SUMMARY.json and REDACTIONS.txt
    let max = max.saturating_sub(256 * 1024).max(MIN_KEPT);
    for logs_only in [true, false] {
        // each file is cut at most twice a round: the loop always ends
        for _ in 0..2 * files.len() {
            let total: u64 = files.iter().map(|f| f.size).sum();
            if total <= max {
                return Ok(cut);
            }
            // a file at the minimum (its header line included) stays
            let Some(f) = files
                .iter_mut()
                .filter(|f| (f.log || !logs_only) && f.size > MIN_KEPT + 1024)
                .max_by_key(|f| f.size)
            else {
                break;
            };
            // 128: room for the line saying what was cut
            let keep = f.size.saturating_sub(total - max + 128).max(MIN_KEPT);
            cut_to(f, keep)?;
            cut.push(format!(
                "{}: cut from {} to {} bytes (its end kept) to fit --max-size",
                f.path,
                f.cut_from.unwrap_or(0),
                f.size
            ));
        }
    }
    Ok(cut)
}

/// Keeps the last `keep` bytes of `f` (from a line start when one is near).
fn cut_to(f: &mut FileEntry, keep: u64) -> Result<()> {
    let bytes = std::fs::read(&f.src).map_err(|e| UpdaterError::io("read", &f.src, e))?;
    let mut from = bytes.len().saturating_sub(keep as usize);
    if let Some(nl) = bytes[from..].iter().take(4096).position(|b| *b == b'\n') {
        from += nl + 1;
    }
    let mut text =
        format!("[stoa: the first {from} bytes were cut to fit --max-size]\n").into_bytes();
    text.extend_from_slice(&bytes[from..]);
    std::fs::write(&f.src, &text).map_err(|e| UpdaterError::io("write", &f.src, e))?;
    f.cut_from = Some(f.cut_from.unwrap_or(bytes.len() as u64));
    f.size = text.len() as u64;
    Ok(())
}

/// `REDACTIONS.txt`: one line per file and kind, with the lines.
fn redactions_text(log: &[Redaction], known: usize) -> String {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for r in log {
        by.entry((&r.file, &r.kind)).or_default().push(r.line);
    }
    let mut t = format!(
        "# What was replaced by {} in this bundle: file, lines, kind of value (never the value).\n\
         # {} known secret string(s) searched for in every file; Kubernetes Secrets are never read.\n",
        redact::MARK,
        known
    );
    for ((file, kind), lines) in by {
        let shown: Vec<String> = lines.iter().take(20).map(|l| l.to_string()).collect();
        let more = if lines.len() > 20 {
            format!(" and {} more", lines.len() - 20)
        } else {
            String::new()
        };
        t.push_str(&format!(
            "{file}: line {}{more}: {kind}\n",
            shown.join(", ")
        ));
    }
    t
}

/// Writes SUMMARY.json and REDACTIONS.txt, then the archive (unless dry-run).
fn finish(
    config_path: &Path,
    opts: &Options,
    known: &Redactor,
    work: tempfile::TempDir,
    got: Collected,
) -> Result<Report> {
    let Collected {
        files,
        records,
        cut,
        mut log,
    } = got;
    let mut report = Report {
        ok: true,
        format: FORMAT,
        created_at: crate::state::now_rfc3339(),
        updater_version: env!("CARGO_PKG_VERSION"),
        config: config_path.to_owned(),
        out: opts.out.clone(),
        encryption: match opts.seal {
            archive::Seal::Age(_) => "age",
            archive::Seal::Plain => "none",
        },
        since: humantime::format_duration(opts.since).to_string(),
        max_size: opts.max_size,
        bytes: files.iter().map(|f| f.size).sum(),
        files,
        collectors: records,
        cut,
        redactions: 0,
        archive_bytes: None,
    };
    report.redactions = log.len();
    // the collectors' errors hold tools' stderr: redacted like the rest
    let summary = known.redact(
        "SUMMARY.json",
        &serde_json::to_string_pretty(&report).unwrap_or_default(),
        &mut log,
    );
    report.redactions = log.len();
    let red = redactions_text(&log, known.known_count());
    let mut members = Vec::new();
    for (name, text) in [("SUMMARY.json", summary), ("REDACTIONS.txt", red)] {
        let src = work.path().join(name);
        std::fs::write(&src, text).map_err(|e| UpdaterError::io("write", &src, e))?;
        members.push(archive::Member {
            name: name.into(),
            src,
        });
    }
    members.extend(report.files.iter().map(|f| archive::Member {
        name: f.path.clone(),
        src: f.src.clone(),
    }));
    if let Some(out) = &opts.out {
        let n =
            archive::write(out, &opts.seal, &members).map_err(|e| UpdaterError::SupportBundle {
                path: out.clone(),
                reason: e.to_string(),
            })?;
        report.archive_bytes = Some(n);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path, name: &str, size: usize, log: bool) -> FileEntry {
        let src = dir.join(name.replace('/', "_"));
        let text: String = (0..size)
            .map(|i| if i % 100 == 99 { '\n' } else { 'a' })
            .collect();
        std::fs::write(&src, &text).unwrap();
        FileEntry {
            path: name.into(),
            size: size as u64,
            cut_from: None,
            log,
            src,
        }
    }

    #[test]
    fn the_biggest_logs_are_cut_first_keeping_their_end() {
        let d = tempfile::tempdir().unwrap();
        let mut files = vec![
            entry(d.path(), "state/state.json", 200_000, false),
            entry(d.path(), "a.log", 900_000, true),
            entry(d.path(), "b.log", 300_000, true),
        ];
        let max = 256 * 1024 + 600_000;
        let cut = fit(&mut files, max).unwrap();
        let total: u64 = files.iter().map(|f| f.size).sum();
        assert!(total <= 600_000, "{total}");
        assert_eq!(files[0].size, 200_000, "not a log: kept whole");
        assert_eq!(files[1].cut_from, Some(900_000));
        assert_eq!(files[2].cut_from, None, "the smaller log was not needed");
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert!(cut[0].starts_with("a.log: cut from 900000 to "), "{cut:?}");
        let kept = std::fs::read_to_string(&files[1].src).unwrap();
        assert!(kept.starts_with("[stoa: the first "), "{}", &kept[..60]);
        assert!(kept.ends_with("a\n"), "the end is kept");
        // nothing fits but the minimum: every file is cut to it, logs first
        let cut = fit(&mut files, 0).unwrap();
        assert!(files.iter().all(|f| f.size < MIN_KEPT + 200), "{cut:?}");
    }
}

#[cfg(test)]
mod known_tests {
    use super::*;

    #[test]
    fn the_config_s_secrets_are_known() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("trust")).unwrap();
        std::fs::write(
            p.join("pgpass"),
            "127.0.0.1:*:other:postgres:Pgpass-file-1\n",
        )
        .unwrap();
        std::fs::set_permissions(p.join("pgpass"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(p.join("reg.pass"), "Reg-pass-2\n").unwrap();
        let cfg = format!(
            "state_dir = \"{d}/state\"\ntrust = \"{d}/trust\"\n\n[registry]\nurl = \"http://127.0.0.1:5000\"\nusername = \"u\"\npassword_file = \"{d}/reg.pass\"\n\n\
             [databases.stoa]\nurl = \"postgres://app:Url%40pass-3@127.0.0.1:5432/stoa\"\n\n\
             [databases.other]\nurl = \"postgres://postgres@127.0.0.1:5432/other?passfile={d}/pgpass\"\n",
            d = p.display()
        );
        std::fs::write(p.join("u.toml"), cfg).unwrap();
        let c = SiteConfig::load(&p.join("u.toml")).unwrap();
        let r = known_secrets(&c);
        let mut log = Vec::new();
        let out = r.redact(
            "x",
            "a Pgpass-file-1 b Reg-pass-2 c Url@pass-3 d Url%40pass-3",
            &mut log,
        );
        assert_eq!(out, "a [REDACTED] b [REDACTED] c [REDACTED] d [REDACTED]");
    }
}
