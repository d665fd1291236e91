//! The site's trust and its clock floor, kept under `state_dir`.
//!
//! * `state_dir/trust/root.json`: the highest signed root this site accepted
//!   (the file as signed), replaced atomically and never by a lower version.
//!   Without it the config's `trust` is used: a root file (the first root) or
//!   a plain key folder (root version 0, threshold from the config).
//! * `state_dir/clock-floor.json`: the newest `created` time of any bundle
//!   or root accepted, never more than [`MAX_CLOCK_SKEW`] past the clock
//!   that accepted it (a bundle or root created later is refused). A clock
//!   earlier than it is refused before any expiry check, unless the
//!   operator passes `--ignore-clock-floor` (audited).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use stoa_format::root::{looks_like_root, SignedRoot, TrustBase, MAX_CLOCK_SKEW};
use stoa_format::{FormatError, TrustStore};

use crate::config::SiteConfig;
use crate::error::{Result, UpdaterError};
use crate::state::{write_atomic, StateDir};

/// Where the accepted root lives.
pub fn root_path(sd: &StateDir) -> PathBuf {
    sd.root.join("trust").join("root.json")
}

pub fn floor_path(sd: &StateDir) -> PathBuf {
    sd.root.join("clock-floor.json")
}

/// Where [`raise_floor`] may set the floor at most: the clock plus
/// [`MAX_CLOCK_SKEW`] (a bundle or root created later is refused anyway;
/// this bounds the jump whatever the caller passes).
pub fn floor_cap(now: SystemTime) -> SystemTime {
    now + MAX_CLOCK_SKEW
}

/// True when `path` is a file holding a root (JSON), not a PEM key.
pub fn is_root_file(path: &Path) -> bool {
    path.is_file() && fs::read(path).is_ok_and(|b| looks_like_root(&b))
}

/// The trust a site starts from, and where it came from.
#[derive(Debug, Clone)]
pub struct SiteTrust {
    pub base: TrustBase,
    /// `state` (accepted root), `config-root` or `key-folder`.
    pub source: &'static str,
}

fn read_root(path: &Path) -> Result<Option<SignedRoot>> {
    match fs::read(path) {
        Ok(b) if looks_like_root(&b) => Ok(Some(SignedRoot::parse(&b)?)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(UpdaterError::io("read", path, e)),
    }
}

/// Loads the site's current trust. The accepted root is re-checked against
/// its own root keys (a file altered on disk is refused), not for expiry:
/// expiry is checked when a root is accepted.
pub fn load(cfg: &SiteConfig, sd: &StateDir, now: SystemTime) -> Result<SiteTrust> {
    let rp = root_path(sd);
    let config_root = if cfg.trust.is_file() {
        read_root(&cfg.trust)?
    } else {
        None
    };
    if let Some(r) = read_root(&rp)? {
        r.check_own_threshold()
            .map_err(|e| UpdaterError::StateCorrupt {
                path: rp.clone(),
                reason: e.to_string(),
            })?;
        if let Some(c) = &config_root {
            if c.version() > r.version() {
                return Err(UpdaterError::Refused(format!(
                    "the config's trust {} is root version {}, newer than the accepted version {}: run `stoa-updater trust update {}`",
                    cfg.trust.display(),
                    c.version(),
                    r.version(),
                    cfg.trust.display()
                )));
            }
        }
        return Ok(SiteTrust {
            base: TrustBase::Root(Box::new(r)),
            source: "state",
        });
    }
    if let Some(c) = config_root {
        c.check_self(now)?;
        return Ok(SiteTrust {
            base: TrustBase::Root(Box::new(c)),
            source: "config-root",
        });
    }
    Ok(SiteTrust {
        base: TrustBase::Keys(TrustStore::load(&cfg.trust)?.with_threshold(cfg.threshold)),
        source: "key-folder",
    })
}

/// Persists `root` as the accepted root unless one of an equal or higher
/// version is already there (never goes back).
pub fn persist(sd: &StateDir, root: &SignedRoot) -> Result<bool> {
    let rp = root_path(sd);
    if let Some(cur) = read_root(&rp)? {
        if cur.version() >= root.version() {
            return Ok(false);
        }
    }
    let dir = sd.root.join("trust");
    fs::create_dir_all(&dir).map_err(|e| UpdaterError::io("create folder", &dir, e))?;
    // every accepted version is kept beside it, so a refusal can say in
    // which version a key was revoked
    let kept = dir.join(format!("root-{}.json", root.version()));
    write_atomic(&kept, &root.file_bytes, Some(0o644))?;
    write_atomic(&rp, &root.file_bytes, Some(0o644))?;
    Ok(true)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockFloor {
    /// RFC 3339 UTC.
    pub floor: String,
    /// What set it (`bundle stoa-platform 2.3.0`, `root version 2`).
    pub source: String,
}

pub fn read_floor(sd: &StateDir) -> Result<Option<(SystemTime, ClockFloor)>> {
    read_floor_in(&sd.root)
}

/// [`read_floor`] of the state folder at `state_dir`.
pub fn read_floor_in(state_dir: &Path) -> Result<Option<(SystemTime, ClockFloor)>> {
    let p = state_dir.join("clock-floor.json");
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(UpdaterError::io("read", &p, e)),
    };
    let corrupt = |reason: String| UpdaterError::StateCorrupt {
        path: p.clone(),
        reason,
    };
    let f: ClockFloor = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let t = humantime::parse_rfc3339(&f.floor).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some((t, f)))
}

/// The clock for expiry checks. Refused when earlier than the floor, unless
/// `ignore` (then the override is noted in the audit log).
pub fn checked_now(sd: &StateDir, ignore: bool) -> Result<SystemTime> {
    let now = SystemTime::now();
    if let Some((floor, f)) = read_floor(sd)? {
        if now < floor {
            let e = FormatError::ClockBeforeFloor {
                now: humantime::format_rfc3339_seconds(now).to_string(),
                floor: format!("{} (set by {})", f.floor, f.source),
            };
            if !ignore {
                return Err(e.into());
            }
            crate::audit::note(format!("--ignore-clock-floor: {e}"));
            eprintln!("stoa-updater: warning: --ignore-clock-floor: {e}");
        }
    }
    Ok(now)
}

/// Raises the floor to `t` (never lowers it), at most to
/// [`floor_cap`] of the machine clock.
pub fn raise_floor(sd: &StateDir, t: SystemTime, source: &str) -> Result<()> {
    let t = t.min(floor_cap(SystemTime::now()));
    if let Some((cur, _)) = read_floor(sd)? {
        if cur >= t {
            return Ok(());
        }
    }
    let f = ClockFloor {
        floor: humantime::format_rfc3339_seconds(t).to_string(),
        source: source.to_owned(),
    };
    let bytes = serde_json::to_vec_pretty(&f).unwrap_or_default();
    fs::create_dir_all(&sd.root).map_err(|e| UpdaterError::io("create folder", &sd.root, e))?;
    write_atomic(&floor_path(sd), &bytes, Some(0o644))
}

/// `e` made precise when it is "no signature by a trusted key" and a signer
/// was a release key of an earlier root (one kept under `trust/`, or one of
/// `chain`): [`FormatError::RevokedKey`], naming the version that removed
/// it. Anything else is returned as is.
pub fn explain_revoked(sd: &StateDir, chain: &[SignedRoot], e: FormatError) -> FormatError {
    let FormatError::NoTrustedSignature { signers, trusted } = &e else {
        return e;
    };
    let mut roots: Vec<SignedRoot> = chain.to_vec();
    if let Ok(rd) = fs::read_dir(sd.root.join("trust")) {
        for ent in rd.flatten() {
            if let Ok(Some(r)) = read_root(&ent.path()) {
                if r.check_own_threshold().is_ok() {
                    roots.push(r);
                }
            }
        }
    }
    let newest = roots.iter().map(SignedRoot::version).max().unwrap_or(0);
    for short in signers.split(", ") {
        let last_with = roots
            .iter()
            .filter(|r| r.release_key_ids().any(|k| k.short() == short))
            .map(SignedRoot::version)
            .max();
        if let Some(v) = last_with.filter(|v| *v < newest) {
            return FormatError::RevokedKey {
                key_id: short.to_owned(),
                version: v + 1,
                trusted: trusted.clone(),
            };
        }
    }
    e
}

/// A change of the root in force: what `plan` announces and the audit log
/// records before it takes effect. Displays as `root version 1 -> 3:
/// release keys added ab12…; revoked cd34…` (key ids shortened).
#[derive(Debug, Clone, Serialize)]
pub struct TrustChange {
    pub from_version: u64,
    pub to_version: u64,
    /// Full key ids.
    pub release_keys_added: Vec<String>,
    pub release_keys_revoked: Vec<String>,
}

impl std::fmt::Display for TrustChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.iter()
                    .map(|k| &k[..k.len().min(16)])
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        write!(
            f,
            "root version {} -> {}: release keys added {}; revoked {}",
            self.from_version,
            self.to_version,
            list(&self.release_keys_added),
            list(&self.release_keys_revoked)
        )
    }
}

/// The change from `cur` (None: a key folder or nothing) to `next`.
pub fn describe_change(cur: Option<&SignedRoot>, next: &SignedRoot) -> TrustChange {
    use std::collections::BTreeSet;
    let before: BTreeSet<_> = cur
        .map(|c| c.release_key_ids().copied().collect())
        .unwrap_or_default();
    let after: BTreeSet<_> = next.release_key_ids().copied().collect();
    TrustChange {
        from_version: cur.map_or(0, SignedRoot::version),
        to_version: next.version(),
        release_keys_added: after.difference(&before).map(|k| k.to_string()).collect(),
        release_keys_revoked: before.difference(&after).map(|k| k.to_string()).collect(),
    }
}

/// The version of the root persisted in `sd` (None: none accepted yet).
pub fn persisted_version(sd: &StateDir) -> Option<u64> {
    read_root(&root_path(sd))
        .ok()
        .flatten()
        .map(|r| r.version())
}

/// The change accepting `chain` makes to the root persisted in `sd` (None:
/// no root newer than the one in force).
pub fn change_of(sd: &StateDir, chain: &[SignedRoot]) -> Option<TrustChange> {
    let last = chain.last()?;
    let cur = read_root(&root_path(sd)).ok().flatten();
    cur.as_ref()
        .is_none_or(|c| c.version() < last.version())
        .then(|| describe_change(cur.as_ref(), last))
}

/// Records roots accepted on the way to a verified bundle (or a trust
/// update): the newest is persisted, the floor raised to their `created`.
/// Returns the change made, if any.
///
/// The change is written to the audit log as its own line (`trust-change`:
/// versions, release keys added and revoked) *before* the root is
/// persisted, so an apply killed right after still leaves it recorded
/// (apply journals it first too: its `trust` step).
pub fn accept_roots(sd: &StateDir, chain: &[SignedRoot]) -> Result<Option<TrustChange>> {
    for r in chain {
        raise_floor(sd, r.created, &format!("root version {}", r.version()))?;
    }
    let change = change_of(sd, chain);
    if let Some(c) = &change {
        crate::audit::trust_change(&sd.root, &c.to_string())?;
    }
    if let Some(last) = chain.last() {
        persist(sd, last)?;
        crate::audit::note(format!("accepted root version {}", last.version()));
    }
    Ok(change)
}
