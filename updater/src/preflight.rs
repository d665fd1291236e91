//! Preflight: the named checks `plan` and `apply` run on site before any
//! change (docs/OPERATIONS.md, "Preflight"): the kubeconfig exists, Helm is
//! present and supported, the Kubernetes server's version is within
//! `[preflight] kubernetes` and meets each chart's own Chart.yaml
//! `kubeVersion` (`kube-version`), no chart's release is left pending by a Helm
//! operation the updater did not start, the site registry takes pushes with the
//! configured credentials, each database grants what migrations need, and
//! `state_dir` has room to stage the bundle. Each check is only run when the
//! bundle needs it (charts, images, migrations); the others are `skipped`.
//! `plan` prints every check and exits non-zero after its report when one
//! failed; `apply` stops before any change (exit 9, `preflight-failed`).

use std::path::{Path, PathBuf};

use stoa_format::BundleManifest;

use crate::config::{HelmConfig, SiteConfig};
use crate::error::{Result, UpdaterError};
use crate::helm::Helm;
use crate::state::StateDir;

/// The report's vocabulary (checks, outcomes), in `crate::records`.
pub use crate::records::preflight::{Check, Outcome, Preflight};

impl Preflight {
    /// The error when a check failed (it carries every check).
    /// `reported`: the checks were already printed as JSON.
    pub fn error(self, reported: bool) -> std::result::Result<Self, UpdaterError> {
        if self.failed().next().is_none() {
            return Ok(self);
        }
        Err(UpdaterError::PreflightFailed {
            report: Box::new(self),
            reported,
        })
    }
}

/// The checks that need the cluster (skipped without charts).
const CLUSTER_CHECKS: [&str; 5] = [
    "kubeconfig",
    "helm",
    "kubernetes",
    "kube-version",
    "releases",
];

/// Runs every check for bundle `m` on this site. Reads only: nothing on
/// site changes (the registry check's test upload is cancelled).
pub fn run(cfg: &SiteConfig, sd: &StateDir, m: &BundleManifest) -> Preflight {
    let mut p = Preflight::default();
    match (&cfg.helm, m.charts.is_empty()) {
        (_, true) => {
            for n in CLUSTER_CHECKS {
                p.skip(n, "the bundle has no charts");
            }
        }
        (None, false) => {
            for n in CLUSTER_CHECKS {
                p.push(n, Err("the site config has no [helm] section".into()));
            }
        }
        (Some(h), false) => {
            let kc = h.kubeconfig_path();
            let kc_ok = check_kubeconfig(h, &kc);
            let have_kc = kc_ok.is_ok();
            p.push("kubeconfig", kc_ok);
            let helm = Helm::new(h);
            p.push("helm", check_helm(h, &helm));
            let missing = || {
                Err(format!(
                    "not asked: the kubeconfig {} is missing",
                    kc.display()
                ))
            };
            if have_kc {
                let k = check_kubernetes(h, &kc, &cfg.preflight.kubernetes);
                let server = k.as_ref().ok().map(|(_, v)| v.clone());
                p.push("kubernetes", k.map(|(d, _)| d));
                match server {
                    Some(v) => p.push("kube-version", check_chart_kube_versions(m, &v)),
                    None => p.push(
                        "kube-version",
                        Err("not asked: the kubernetes check failed".into()),
                    ),
                }
            } else {
                p.push("kubernetes", missing());
                p.push("kube-version", missing());
            }
            match (&helm, have_kc) {
                (Ok(helm), true) => p.push("releases", check_releases(helm, sd, m)),
                (Err(_), _) => p.push("releases", Err("not asked: no usable Helm".into())),
                (_, false) => p.push("releases", missing()),
            }
        }
    }
    match (&cfg.registry, m.images.first()) {
        (_, None) => p.skip("registry", "the bundle has no images"),
        (None, Some(_)) => p.push(
            "registry",
            Err("the site config has no [registry] section".into()),
        ),
        (Some(rc), Some(_)) if rc.mode == crate::config::RegistryMode::Serve => p.push(
            "registry",
            Ok(format!(
                "mode serve: nothing is pushed; `stoa-updater serve` serves the store's images at {} (the new release as soon as apply commits)",
                rc.url
            )),
        ),
        (Some(rc), Some(img)) => {
            let repo = crate::registry::map_name(&img.name, &rc.prefix, rc.layout).repo;
            let r = crate::registry::Client::new(rc)
                .map_err(|e| e.to_string())
                .and_then(|mut c| c.check_push(&repo))
                .map(|d| format!("{}: {d}", rc.url));
            p.push("registry", r.map_err(|e| format!("{}: {e}", rc.url)));
        }
    }
    if m.migrations.is_empty() {
        p.skip("database", "the bundle has no migrations");
    }
    for set in &m.migrations {
        let name = format!("database:{}", set.database);
        match cfg.databases.get(&set.database) {
            None => p.push(
                &name,
                Err(format!(
                    "the site config has no [databases.{}] section",
                    set.database
                )),
            ),
            Some(d) => p.push(&name, check_database(&set.database, &d.url)),
        }
    }
    p.push(
        "disk",
        check_disk(&cfg.state_dir, sd, m, cfg.preflight.keep_free_bytes),
    );
    p
}

fn check_kubeconfig(h: &HelmConfig, kc: &Path) -> std::result::Result<String, String> {
    let key = if h.kubeconfig.is_some() {
        "[helm] kubeconfig"
    } else {
        "the default kubeconfig ([helm] kubeconfig not set)"
    };
    match std::fs::metadata(kc) {
        Ok(m) if m.is_file() => Ok(format!("{} (given to Helm as --kubeconfig)", kc.display())),
        Ok(_) => Err(format!("{key} {}: not a file", kc.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{key} {}: no such file", kc.display()))
        }
        Err(e) => Err(format!("{key} {}: {e}", kc.display())),
    }
}

fn check_helm(h: &HelmConfig, helm: &Result<Helm>) -> std::result::Result<String, String> {
    match helm {
        Ok(helm) => Ok(format!(
            "{} {} (Helm {}; supported: {})",
            h.bin_name(),
            helm.version,
            helm.major,
            crate::helm::SUPPORTED
        )),
        Err(UpdaterError::Helm { reason, .. }) => Err(format!("{}: {reason}", h.bin_name())),
        Err(e) => Err(e.to_string()),
    }
}

/// No chart's release is left pending (`pending-install`,
/// `pending-upgrade`, `pending-rollback`) by a Helm operation the updater
/// did not start: Helm refuses every operation on it. One the interrupted
/// apply being resumed left is fine: the resume recovers it.
fn check_releases(
    helm: &Helm,
    sd: &StateDir,
    m: &BundleManifest,
) -> std::result::Result<String, String> {
    let state = sd.load().map_err(|e| e.to_string())?;
    let ours = |rel: &str, ns: &str| {
        state.pending.as_ref().is_some_and(|p| {
            p.record
                .helm
                .iter()
                .any(|r| r.release == rel && r.namespace == ns)
        })
    };
    let mut seen = Vec::new();
    for c in &m.charts {
        let s = helm
            .status(&c.release, &c.namespace)
            .map_err(|e| e.to_string())?;
        let what = match &s {
            None => "not installed".to_owned(),
            Some(s) if s.is_pending() && !ours(&c.release, &c.namespace) => {
                return Err(crate::helm::pending_not_ours(&c.release, &c.namespace, s));
            }
            Some(s) if s.is_pending() => format!(
                "{} revision {} (left by the interrupted apply; recovered on resume)",
                s.status, s.revision
            ),
            Some(s) => format!("{} revision {}", s.status, s.revision),
        };
        seen.push(format!("{}/{}: {what}", c.namespace, c.release));
    }
    Ok(seen.join(", "))
}

/// Each chart's own `kubeVersion` (Chart.yaml, recorded in the signed
/// manifest) against the server's version, read as Helm reads it: the
/// first chart that needs another server fails the check, naming it and its
/// constraint.
fn check_chart_kube_versions(
    m: &BundleManifest,
    server: &semver::Version,
) -> std::result::Result<String, String> {
    let mut seen = Vec::new();
    for c in &m.charts {
        let Some(k) = &c.kube_version else { continue };
        let what = format!(
            "chart {} {} (release {}/{}) kubeVersion {k:?}",
            c.name, c.version, c.namespace, c.release
        );
        let reqs = stoa_format::constraint::helm_constraint(k)
            .map_err(|e| format!("{what}: not a version constraint: {e}"))?;
        if !reqs.iter().any(|r| r.matches(server)) {
            return Err(format!(
                "{what}: the server is {server}, which the chart does not support"
            ));
        }
        seen.push(what);
    }
    if seen.is_empty() {
        return Ok(format!("server {server}; no chart sets kubeVersion"));
    }
    Ok(format!("server {server} meets {}", seen.join(", ")))
}

/// `kubectl version -o json --kubeconfig K`: the server's version, as a
/// plain `major.minor.patch` (a `+k3s1` or `-gke.100` suffix dropped).
/// Returns the detail and the version (the charts' own constraints are
/// checked against it next).
fn check_kubernetes(
    h: &HelmConfig,
    kc: &Path,
    range: &str,
) -> std::result::Result<(String, semver::Version), String> {
    let req = semver::VersionReq::parse(range)
        .map_err(|e| format!("[preflight] kubernetes {range:?}: {e}"))?;
    let kubectl = h
        .kubectl_program()
        .map_err(|e| format!("{e} (needed to ask the server's version)"))?;
    let mut c = crate::tool::command(&kubectl);
    c.env_remove("KUBECONFIG")
        .args(["version", "-o", "json", "--request-timeout", "20s"])
        .arg("--kubeconfig")
        .arg(kc)
        .stdin(std::process::Stdio::null());
    let out = crate::tool::output(&mut c, "kubectl")
        .map_err(|e| format!("run {}: {e}", kubectl.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let server = &v["serverVersion"];
    let Some(git) = server["gitVersion"].as_str() else {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("Warning:"))
            .unwrap_or("no server version in kubectl's answer");
        return Err(format!("server through {}: {line}", kc.display()));
    };
    let parsed = parse_server_version(git)
        .ok_or_else(|| format!("cannot read the server version {git:?}"))?;
    if req.matches(&parsed) {
        let by = h
            .bundled
            .describe("kubectl")
            .map(|k| format!(" (asked with {k})"))
            .unwrap_or_default();
        Ok((format!("server {git}, required {range}{by}"), parsed))
    } else {
        Err(format!(
            "server {git} is outside the required range {range} ([preflight] kubernetes)"
        ))
    }
}

/// `v1.29.3`, `v1.28.2+k3s1`, `v1.30.1-gke.1200` → 1.29.3, 1.28.2, 1.30.1.
pub fn parse_server_version(git: &str) -> Option<semver::Version> {
    let core = git
        .trim()
        .trim_start_matches('v')
        .split(['+', '-'])
        .next()?;
    let mut it = core.split('.').map(|x| x.parse::<u64>().ok());
    let (major, minor) = (it.next()??, it.next()??);
    let patch = it.next().flatten().unwrap_or(0);
    Some(semver::Version::new(major, minor, patch))
}

fn check_database(name: &str, url: &str) -> std::result::Result<String, String> {
    let (user, schema, db_create, schema_create) =
        crate::db::privileges(name, url).map_err(|e| e.to_string())?;
    let mut missing = Vec::new();
    if !db_create {
        missing.push("CREATE on the database".to_owned());
    }
    if !schema_create {
        missing.push(format!("CREATE on schema {schema:?}"));
    }
    if missing.is_empty() {
        Ok(format!(
            "connected as {user}; CREATE on the database and on schema {schema:?}"
        ))
    } else {
        Err(format!(
            "connected as {user}, which lacks {} (migrations need it)",
            missing.join(" and ")
        ))
    }
}

/// Free space where `state_dir` is (or will be) against the bytes staging
/// still has to write: every entry not already in the store, plus
/// `[preflight] keep_free_bytes`.
fn check_disk(
    state_dir: &Path,
    sd: &StateDir,
    m: &BundleManifest,
    keep_free: u64,
) -> std::result::Result<String, String> {
    let staging: u64 = m
        .entries
        .iter()
        .filter(|e| !sd.blob(&e.sha256.hex()).exists())
        .map(|e| e.size)
        .sum();
    let need = staging.saturating_add(keep_free);
    let mut at: PathBuf = state_dir.to_owned();
    while !at.exists() {
        match at.parent() {
            Some(p) => at = p.to_owned(),
            None => break,
        }
    }
    let st = rustix::fs::statvfs(&at).map_err(|e| format!("statvfs {}: {e}", at.display()))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let text = format!(
        "{} free at {}, staging needs {}{}",
        mib(free),
        at.display(),
        mib(staging),
        if keep_free > 0 {
            format!(" and [preflight] keep_free_bytes {}", mib(keep_free))
        } else {
            String::new()
        }
    );
    if free >= need {
        Ok(text)
    } else {
        Err(text)
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// `apply`'s gate, before any change: the checks, or
/// [`UpdaterError::PreflightFailed`] carrying them when one failed.
pub fn gate(cfg: &SiteConfig, sd: &StateDir, m: &BundleManifest) -> Result<Preflight> {
    run(cfg, sd, m).error(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_drop_vendor_suffixes() {
        let v = |s| parse_server_version(s).map(|v| v.to_string());
        assert_eq!(v("v1.29.3").as_deref(), Some("1.29.3"));
        assert_eq!(v("v1.28.2+k3s1").as_deref(), Some("1.28.2"));
        assert_eq!(v("v1.30.1-gke.1200").as_deref(), Some("1.30.1"));
        assert_eq!(v("nonsense"), None);
        let req = semver::VersionReq::parse(">=1.28").unwrap();
        assert!(!req.matches(&parse_server_version("v1.27.9").unwrap()));
        assert!(req.matches(&parse_server_version("v1.28.0-eks.1").unwrap()));
    }
}
