//! `stoa-updater --config F trust init|update|show`: the site's signed trust
//! root (docs/OPERATIONS.md, "Trust roots").

use std::collections::BTreeSet;
use std::path::PathBuf;
use stoa_format::cli::Output;

use serde::Serialize;
use stoa_format::root::{SignedRoot, TrustBase};
use stoa_format::{FormatError, KeyId, TrustStore};

use crate::error::{Result, UpdaterError};
use crate::state::SiteLock;
use crate::trust;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: TrustCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// Install the site's first signed root (moving from a key folder: the
    /// root must list exactly the folder's keys as release keys).
    Init(InitArgs),
    /// Accept newer roots, one version at a time.
    Update(UpdateArgs),
    /// The root in force, its keys and the clock floor.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The site's first signed root (root.json).
    pub root: PathBuf,
    /// Check expiry against the machine clock even when it is before the
    /// clock floor (logged in the audit log).
    #[arg(long)]
    pub ignore_clock_floor: bool,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Root files: version N+1, or a chain N+1, N+2, … in any order.
    #[arg(required = true)]
    pub roots: Vec<PathBuf>,
    /// Check expiry against the machine clock even when it is before the
    /// clock floor (logged in the audit log).
    #[arg(long)]
    pub ignore_clock_floor: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {}

impl Args {
    /// The audit log's command name, or None for read-only `show`.
    pub fn audit_name(&self) -> Option<&'static str> {
        match &self.command {
            TrustCommand::Init(_) => Some("trust init"),
            TrustCommand::Update(_) => Some("trust update"),
            TrustCommand::Show(_) => None,
        }
    }
}

/// What `trust show` prints.
#[derive(Debug, Serialize)]
pub struct TrustReport {
    /// 0 for a key folder.
    pub version: u64,
    /// `state`, `config-root` or `key-folder`.
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    pub release_threshold: usize,
    pub release_keys: Vec<String>,
    pub root_threshold: usize,
    pub root_keys: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_floor: Option<trust::ClockFloor>,
}

fn ids<'a>(it: impl Iterator<Item = &'a KeyId>) -> Vec<String> {
    it.map(|k| k.to_string()).collect()
}

fn report(t: &trust::SiteTrust, floor: Option<trust::ClockFloor>) -> TrustReport {
    match &t.base {
        TrustBase::Keys(k) => TrustReport {
            version: 0,
            source: t.source,
            created: None,
            expires: None,
            release_threshold: k.threshold(),
            release_keys: ids(k.key_ids()),
            root_threshold: 0,
            root_keys: Vec::new(),
            clock_floor: floor,
        },
        TrustBase::Root(r) => TrustReport {
            version: r.version(),
            source: t.source,
            created: Some(r.body.created.clone()),
            expires: Some(r.body.expires.clone()),
            release_threshold: r.body.release_threshold,
            release_keys: ids(r.release_key_ids()),
            root_threshold: r.body.root_threshold,
            root_keys: ids(r.root_key_ids()),
            clock_floor: floor,
        },
    }
}

fn print(r: &TrustReport, json: bool, verb: &str) {
    if json {
        println!("{}", serde_json::json!({"ok": true, "trust": r}));
        return;
    }
    if r.version == 0 {
        println!("{verb}key folder (root version 0, from the config's trust)");
    } else {
        println!(
            "{verb}root version {} ({}), created {}, expires {}",
            r.version,
            r.source,
            r.created.as_deref().unwrap_or("-"),
            r.expires.as_deref().unwrap_or("-")
        );
    }
    println!("release keys (threshold {}):", r.release_threshold);
    for k in &r.release_keys {
        println!("  {k}");
    }
    if r.version > 0 {
        println!("root keys (threshold {}):", r.root_threshold);
        for k in &r.root_keys {
            println!("  {k}");
        }
    }
    if let Some(f) = &r.clock_floor {
        println!("clock floor {} (set by {})", f.floor, f.source);
    }
}

fn read_root(path: &std::path::Path) -> Result<SignedRoot> {
    let bytes = std::fs::read(path).map_err(|e| UpdaterError::io("read", path, e))?;
    Ok(SignedRoot::parse(&bytes)?)
}

pub fn run(site: &crate::engine::Site, args: &Args, out: Output) -> Result<()> {
    let sd = &site.sd;
    match &args.command {
        TrustCommand::Show(_) => {
            let t = trust::load(&site.cfg, sd, std::time::SystemTime::now())?;
            let floor = trust::read_floor(sd)?.map(|(_, f)| f);
            print(&report(&t, floor), out.json, "");
            Ok(())
        }
        TrustCommand::Init(a) => {
            sd.ensure()?;
            let _lock = SiteLock::take(sd, "trust init")?;
            let now = trust::checked_now(sd, a.ignore_clock_floor)?;
            let r = read_root(&a.root)?;
            crate::audit::note_root(r.version());
            if let Some(cur) = std::fs::read(trust::root_path(sd))
                .ok()
                .and_then(|b| SignedRoot::parse(&b).ok())
            {
                return Err(FormatError::Root {
                    version: r.version().to_string(),
                    rule: "already-initialised",
                    detail: format!(
                        "this site already accepted root version {}; use `stoa-updater trust update`",
                        cur.version()
                    ),
                }
                .into());
            }
            r.check_self(now)?;
            // moving from a key folder: same keys, or refuse
            if !trust::is_root_file(&site.cfg.trust) {
                if let Ok(folder) = TrustStore::load(&site.cfg.trust) {
                    check_folder_agrees(&folder, &site.cfg.trust, &r)?;
                }
            }
            trust::accept_roots(sd, std::slice::from_ref(&r))?;
            let t = trust::load(&site.cfg, sd, now)?;
            let floor = trust::read_floor(sd)?.map(|(_, f)| f);
            print(&report(&t, floor), out.json, "installed ");
            Ok(())
        }
        TrustCommand::Update(a) => {
            sd.ensure()?;
            let _lock = SiteLock::take(sd, "trust update")?;
            let now = trust::checked_now(sd, a.ignore_clock_floor)?;
            let t = trust::load(&site.cfg, sd, now)?;
            let TrustBase::Root(cur) = &t.base else {
                return Err(UpdaterError::Refused(
                    "this site trusts a key folder (root version 0), which has no root keys to sign a successor: install a signed root with `stoa-updater trust init <root.json>` first".into(),
                ));
            };
            crate::audit::note_root(cur.version());
            let roots = a
                .roots
                .iter()
                .map(|p| read_root(p))
                .collect::<Result<Vec<_>>>()?;
            let chain = cur.walk_chain(roots, now, false)?;
            // a config root not yet persisted becomes the base on disk too
            if t.source == "config-root" {
                trust::accept_roots(sd, std::slice::from_ref(&**cur))?;
            }
            trust::accept_roots(sd, &chain)?;
            if let Some(last) = chain.last() {
                crate::audit::note_root(last.version());
            }
            let t = trust::load(&site.cfg, sd, now)?;
            let floor = trust::read_floor(sd)?.map(|(_, f)| f);
            print(&report(&t, floor), out.json, "accepted ");
            Ok(())
        }
    }
}

/// A key folder and the root replacing it must name the same release keys.
fn check_folder_agrees(
    folder: &TrustStore,
    path: &std::path::Path,
    r: &SignedRoot,
) -> Result<(), FormatError> {
    let a: BTreeSet<&KeyId> = folder.key_ids().collect();
    let b: BTreeSet<&KeyId> = r.release_key_ids().collect();
    if a == b {
        return Ok(());
    }
    let only_folder: Vec<String> = a.difference(&b).map(|k| k.short()).collect();
    let only_root: Vec<String> = b.difference(&a).map(|k| k.short()).collect();
    Err(FormatError::Root {
        version: r.version().to_string(),
        rule: "folder-disagrees",
        detail: format!(
            "the trust folder {} and the root list different release keys (only in the folder: {}; only in the root: {}); a first root keeps the folder's keys, rotate afterwards",
            path.display(),
            if only_folder.is_empty() { "none".into() } else { only_folder.join(", ") },
            if only_root.is_empty() { "none".into() } else { only_root.join(", ") },
        ),
    })
}
