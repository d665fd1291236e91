//! The site configuration (`--config`, default /etc/stoa/updater.toml).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Result, UpdaterError};

pub const DEFAULT_CONFIG: &str = "/etc/stoa/updater.toml";

/// The environment variable that names the site config when `--config` is
/// not given (before [`DEFAULT_CONFIG`]).
pub const CONFIG_ENV: &str = "STOA_UPDATER_CONFIG";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The file this was loaded from (made absolute), for hints.
    #[serde(skip)]
    pub path: PathBuf,
    pub state_dir: PathBuf,
    /// A `.pub` file or a folder of them.
    pub trust: PathBuf,
    /// How many distinct trusted keys must have signed (default 1).
    #[serde(default = "one")]
    pub threshold: usize,
    #[serde(default = "three")]
    pub keep_releases: usize,
    /// Where `[[files]]` are installed (default `<state_dir>/files`).
    #[serde(default)]
    pub files_dir: Option<PathBuf>,
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseConfig>,
    #[serde(default)]
    pub helm: Option<HelmConfig>,
    /// What `plan` and `apply` check on site before any change.
    #[serde(default)]
    pub preflight: PreflightConfig,
    /// `[serve]`: how `stoa-updater serve` listens (crate::serve).
    #[serde(default)]
    pub serve: ServeConfig,
    /// `[support]`: where support bundles go (crate::support).
    #[serde(default)]
    pub support: SupportConfig,
}

/// `[support]`: `recipient`, the vendor's age X25519 public key (`age1…`)
/// support bundles are encrypted to (`support-bundle --recipient` wins).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportConfig {
    #[serde(default)]
    pub recipient: Option<String>,
}

/// `[serve]`: the address `serve` listens on, its TLS files, and `url`,
/// the address nodes use (default: from `listen`, `https://` with TLS).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub url: Option<String>,
}

/// `[preflight]`: the site's requirements checked before any change
/// (crate::preflight).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreflightConfig {
    /// The Kubernetes server versions the site accepts (a semver range,
    /// default `>=1.28`, as the platform requires).
    #[serde(default = "kubernetes_range")]
    pub kubernetes: String,
    /// Bytes that must stay free in `state_dir`'s file system after
    /// staging (default 0).
    #[serde(default)]
    pub keep_free_bytes: u64,
}

impl Default for PreflightConfig {
    fn default() -> Self {
        Self {
            kubernetes: kubernetes_range(),
            keep_free_bytes: 0,
        }
    }
}

fn kubernetes_range() -> String {
    ">=1.28".into()
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub url: String,
    #[serde(default)]
    pub prefix: String,
    /// How repositories are named on site (`"prefix"`, the default, or
    /// `"mirror"`: `<prefix>/<source host>/<path>`, names kept in pods).
    #[serde(default)]
    pub layout: stoa_podimages::Layout,
    /// `"push"` (the default): apply pushes every image to the registry at
    /// `url`. `"serve"`: a site with no registry: apply pushes nothing, the
    /// images stay in the store and `stoa-updater serve` serves them; `url`
    /// is where nodes reach that `serve`.
    #[serde(default)]
    pub mode: RegistryMode,
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Uploads larger than this go in chunks (PATCH); default 64 MiB.
    #[serde(default)]
    pub chunk_size: Option<u64>,
    /// Blobs pushed at once, each on its own connection (1 to 16).
    #[serde(default = "four")]
    pub parallel: usize,
}

/// How images reach the site's nodes (`[registry] mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryMode {
    /// Apply pushes every image to the site registry.
    #[default]
    Push,
    /// No registry: the store is served by `stoa-updater serve`.
    Serve,
}

impl SiteConfig {
    /// A site without a registry: images are served from the store.
    pub fn serves_images(&self) -> bool {
        self.registry
            .as_ref()
            .is_some_and(|r| r.mode == RegistryMode::Serve)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    #[serde(default = "yes")]
    pub snapshot: bool,
}

fn yes() -> bool {
    true
}

fn four() -> usize {
    4
}

/// The most blobs `[registry] parallel` may push at once.
pub const MAX_PARALLEL: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelmConfig {
    #[serde(default = "helm_bin")]
    pub bin: PathBuf,
    /// The kubeconfig Helm (and kubectl) are given with `--kubeconfig`;
    /// default `~/.kube/config`. `KUBECONFIG` from the environment is never
    /// used: with it a mistyped path sends Helm to localhost:8080.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// kubectl, for the preflight's Kubernetes version check (default
    /// `kubectl` on PATH).
    #[serde(default = "kubectl_bin")]
    pub kubectl: PathBuf,
    #[serde(default)]
    pub values_dir: Option<PathBuf>,
    #[serde(default = "ten_minutes")]
    pub timeout: String,
    /// A value the site registry (`host/prefix`) is also passed as
    /// (`--set <name>=…`); none by default: the post-renderer serves every
    /// image from the site registry without it.
    #[serde(default)]
    pub image_registry_value: Option<String>,
    /// The site's `keep_releases`, copied at load (sizes `--history-max`).
    #[serde(skip)]
    pub keep_releases: usize,
    /// Which of `bin` and `kubectl` are `"bundled"` (the release's carried
    /// binaries, crate::bundled), and what they are bound to.
    #[serde(skip)]
    pub bundled: crate::bundled::Binding,
}

impl HelmConfig {
    /// How `bin` is named in reports: the carried Helm and its release, or
    /// the path.
    pub fn bin_name(&self) -> String {
        self.bundled
            .describe("helm")
            .unwrap_or_else(|| self.bin.display().to_string())
    }

    /// How `kubectl` is named in reports.
    pub fn kubectl_name(&self) -> String {
        self.bundled
            .describe("kubectl")
            .unwrap_or_else(|| self.kubectl.display().to_string())
    }

    /// The helm to run (bound when bundled; else found at its path or on
    /// PATH), or why there is none.
    pub fn helm_program(&self) -> std::result::Result<PathBuf, String> {
        program("bin", &self.bin, self.bundled.ready("helm"))
    }

    /// The kubectl to run, or why there is none.
    pub fn kubectl_program(&self) -> std::result::Result<PathBuf, String> {
        program("kubectl", &self.kubectl, self.bundled.ready("kubectl"))
    }
}

fn program(
    key: &str,
    p: &Path,
    ready: std::result::Result<(), String>,
) -> std::result::Result<PathBuf, String> {
    if let Err(why) = ready {
        return Err(format!("[helm] {key} = \"bundled\": {why}"));
    }
    find_program(p).ok_or_else(|| format!("[helm] {key} {}: no such program", p.display()))
}

fn helm_bin() -> PathBuf {
    PathBuf::from("helm")
}
fn kubectl_bin() -> PathBuf {
    PathBuf::from("kubectl")
}
fn ten_minutes() -> String {
    "10m".into()
}

/// The shortest `[helm] timeout` accepted: Helm takes whole seconds, and
/// `--timeout 0s` would mean "no wait at all".
pub const MIN_HELM_TIMEOUT: Duration = Duration::from_secs(1);

/// A `[helm] timeout`: a humantime duration of at least 1 s, rounded up to
/// whole seconds (`1500ms` is 2 s).
pub fn helm_timeout_secs(text: &str) -> std::result::Result<u64, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("[helm] timeout {text:?} is not a duration: {e}"))?;
    if d < MIN_HELM_TIMEOUT {
        return Err(format!(
            "[helm] timeout {text:?} is shorter than the minimum of 1s"
        ));
    }
    Ok(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

impl HelmConfig {
    /// The timeout in whole seconds (validated at load: at least 1).
    pub fn timeout_secs(&self) -> u64 {
        helm_timeout_secs(&self.timeout).unwrap_or(600)
    }

    /// The kubeconfig Helm is given: `[helm] kubeconfig`, else
    /// `~/.kube/config` (Helm's own default, made explicit).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.kubeconfig.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"))
                .join(".kube/config")
        })
    }

    /// The site's values file for a Helm release: `values_dir/<release>.yaml`
    /// when it exists (none is fine: the chart's defaults apply).
    pub fn values_file(&self, release: &str) -> Option<PathBuf> {
        let f = self.values_dir.as_ref()?.join(format!("{release}.yaml"));
        f.is_file().then_some(f)
    }
}

/// `--config <path>` as a hint prints it: the command an operator can paste.
pub fn hint(config: &Path, subcommand: &str) -> String {
    format!(
        "stoa-updater --config {} {subcommand}",
        shell_word(&config.to_string_lossy())
    )
}

/// `s` as one shell word to paste: as it is when it holds only characters
/// no shell treats specially, else in single quotes (a `'` as `'\''`).
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@=,%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A TOML error on one line: `line 4: unknown field ...` (no source excerpt).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match e.span() {
        Some(s) => {
            let line = text[..s.start.min(text.len())]
                .bytes()
                .filter(|b| *b == b'\n')
                .count()
                + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

/// Finds a program as `Command` would: a path with a `/` as is, a bare name
/// on `PATH`.
pub fn find_program(bin: &Path) -> Option<PathBuf> {
    if bin.components().count() > 1 || bin.is_absolute() {
        return bin.is_file().then(|| bin.to_owned());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

impl SiteConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |reason: String| UpdaterError::Config {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("read: {e}")))?;
        let mut c: SiteConfig = toml::from_str(&text).map_err(|e| bad(toml_error(&text, &e)))?;
        c.path = if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_owned())
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut c.state_dir);
        abs(&mut c.trust);
        if let Some(f) = &mut c.files_dir {
            abs(f);
        }
        if let Err(e) = semver::VersionReq::parse(&c.preflight.kubernetes) {
            return Err(bad(format!(
                "[preflight] kubernetes {:?} is not a version range: {e}",
                c.preflight.kubernetes
            )));
        }
        if c.keep_releases == 0 {
            return Err(bad("keep_releases must be 1 or more".into()));
        }
        if let Some(r) = &mut c.registry {
            if let Some(p) = &mut r.ca_cert {
                abs(p);
            }
            if let Some(p) = &mut r.password_file {
                abs(p);
            }
            if r.username.is_some() != r.password_file.is_some() {
                return Err(bad(
                    "[registry] username and password_file go together".into()
                ));
            }
            // the same URL rule as token realms: a real parser, no userinfo,
            // plain http only to loopback
            check_credential_url(&r.url).map_err(|e| bad(format!("[registry] url {e}")))?;
            r.prefix = r.prefix.trim_matches('/').to_owned();
            if !r.prefix.is_empty() {
                for c in r.prefix.split('/') {
                    stoa_format::names::check_path_component(c)
                        .map_err(|e| bad(format!("[registry] prefix {:?}: {e}", r.prefix)))?;
                }
            }
        }
        for p in [&mut c.serve.tls_cert, &mut c.serve.tls_key]
            .into_iter()
            .flatten()
        {
            abs(p);
        }
        if let Some(r) = &c.registry {
            if !(1..=MAX_PARALLEL).contains(&r.parallel) {
                return Err(bad(format!(
                    "[registry] parallel = {}: from 1 to {MAX_PARALLEL}",
                    r.parallel
                )));
            }
        }
        if c.serve.tls_cert.is_some() != c.serve.tls_key.is_some() {
            return Err(bad("[serve] tls_cert and tls_key go together".into()));
        }
        if let Some(h) = &mut c.helm {
            h.keep_releases = c.keep_releases;
            helm_timeout_secs(&h.timeout).map_err(bad)?;
            if let Some(p) = &mut h.values_dir {
                abs(p);
            }
            if let Some(p) = &mut h.kubeconfig {
                abs(p);
            }
            h.bundled.helm = h.bin.as_os_str() == crate::bundled::BUNDLED;
            h.bundled.kubectl = h.kubectl.as_os_str() == crate::bundled::BUNDLED;
            if h.bin.components().count() > 1 {
                abs(&mut h.bin);
            }
            if h.kubectl.components().count() > 1 {
                abs(&mut h.kubectl);
            }
        }
        let mirror = c.registry.as_ref().map(|r| r.layout) == Some(stoa_podimages::Layout::Mirror);
        if mirror
            && c.helm
                .as_ref()
                .is_some_and(|h| h.image_registry_value.is_some())
        {
            return Err(bad("[helm] image_registry_value does not go with [registry] layout = \"mirror\" (pods keep their images' own names)".into()));
        }
        c.check_database_urls().map_err(bad)?;
        c.check_paths().map_err(bad)?;
        c.warn_readable_secrets(path);
        Ok(c)
    }

    /// Every `[databases.*] url` is a postgres:// URL (parsed with a real
    /// URL parser; the message never holds the password).
    fn check_database_urls(&self) -> std::result::Result<(), String> {
        for (name, d) in &self.databases {
            crate::tool::PgConn::parse(&d.url)
                .map_err(|e| format!("[databases.{name}] url: {e}"))?;
            // what the updater's own client reads (parameters it does not
            // support are refused here, not at the first migration)
            crate::db::conninfo::ConnInfo::parse(&d.url)
                .map_err(|e| format!("[databases.{name}] url: {e}"))?;
        }
        Ok(())
    }

    /// Every path the config names must be there when it is loaded, not
    /// found missing halfway through an apply: `trust`, the `files_dir`
    /// parent, `[registry] ca_cert` and `password_file`, `[helm] bin`,
    /// and `values_dir`. (`state_dir` is created on first use; the
    /// kubeconfig is a preflight check, shown by `plan` with the others.)
    fn check_paths(&self) -> std::result::Result<(), String> {
        let missing =
            |key: &str, p: &Path| format!("{key} {}: no such file or folder", p.display());
        let need = |key: &str, p: &Path, dir: bool| -> std::result::Result<(), String> {
            match std::fs::metadata(p) {
                Ok(m) if dir && !m.is_dir() => Err(format!("{key} {}: not a folder", p.display())),
                Ok(m) if !dir && m.is_dir() => {
                    Err(format!("{key} {}: a folder, not a file", p.display()))
                }
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing(key, p)),
                Err(e) => Err(format!("{key} {}: {e}", p.display())),
            }
        };
        if !self.trust.exists() {
            return Err(missing("trust", &self.trust));
        }
        if let Some(f) = &self.files_dir {
            if let Some(parent) = f.parent().filter(|p| !p.as_os_str().is_empty()) {
                need("files_dir (parent folder)", parent, true)?;
            }
        }
        if let Some(r) = &self.registry {
            if let Some(p) = &r.ca_cert {
                need("[registry] ca_cert", p, false)?;
            }
            if let Some(p) = &r.password_file {
                need("[registry] password_file", p, false)?;
            }
        }
        if let Some(h) = &self.helm {
            if !h.bundled.helm && find_program(&h.bin).is_none() {
                return Err(format!(
                    "[helm] bin {}: no such program{}",
                    h.bin.display(),
                    if h.bin.components().count() > 1 {
                        ""
                    } else {
                        " on PATH"
                    }
                ));
            }
            if let Some(p) = &h.values_dir {
                need("[helm] values_dir", p, true)?;
            }
        }
        Ok(())
    }

    /// One line on stderr when a file holding a secret (this config with a
    /// database password, the registry's password_file) is readable by
    /// group or others.
    fn warn_readable_secrets(&self, path: &Path) {
        // once per process: the config may be loaded again (the audit log)
        static WARNED: std::sync::Once = std::sync::Once::new();
        let mut first = false;
        WARNED.call_once(|| first = true);
        if !first {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let loose = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| m.permissions().mode() & 0o777)
                .filter(|m| m & 0o077 != 0)
        };
        let db_password = self
            .databases
            .iter()
            .find(|(_, d)| crate::tool::PgConn::parse(&d.url).is_ok_and(|c| c.has_password()));
        if let (Some((name, _)), Some(mode)) = (db_password, loose(path)) {
            eprintln!(
                "stoa-updater: warning: site config {} holds a password ([databases.{name}] url) and is readable by group/others (mode {mode:04o}); run chmod 600 on it",
                path.display()
            );
        }
        if let Some(pf) = self
            .registry
            .as_ref()
            .and_then(|r| r.password_file.as_ref())
        {
            if let Some(mode) = loose(pf) {
                eprintln!(
                    "stoa-updater: warning: registry password_file {} is readable by group/others (mode {mode:04o}); run chmod 600 on it",
                    pf.display()
                );
            }
        }
    }

    pub fn files_dir(&self) -> PathBuf {
        self.files_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("files"))
    }

    /// The sections a bundle needs, checked before anything else.
    pub fn check_needs(&self, m: &stoa_format::BundleManifest) -> Result<()> {
        if !m.images.is_empty() && self.registry.is_none() {
            return Err(UpdaterError::MissingSection {
                section: "registry".into(),
            });
        }
        if !m.charts.is_empty() && self.helm.is_none() {
            return Err(UpdaterError::MissingSection {
                section: "helm".into(),
            });
        }
        if let (Some(h), false) = (&self.helm, m.charts.is_empty()) {
            crate::bundled::check_carried(h, m)?;
        }
        for set in &m.migrations {
            if !self.databases.contains_key(&set.database) {
                return Err(UpdaterError::MissingSection {
                    section: format!("databases.{}", set.database),
                });
            }
        }
        Ok(())
    }
}

/// The URL rule for everything credentials may be sent to (the site's
/// `[registry] url`, a token realm): parsed with a real URL parser; http or
/// https; no user name or password in it (`http://localhost:1@evil/` is a
/// URL for host `evil`); plain http only to a loopback address.
pub fn check_credential_url(s: &str) -> std::result::Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("{s:?} has a user name or password in it"));
    }
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => return Err(format!("{s:?} has no host")),
    };
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        "http" => Err(format!(
            "{s:?} is plain http to a host that is not loopback (credentials only over https)"
        )),
        other => Err(format!("{s:?}: scheme {other:?} is not http or https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21 item 10: a hint is a command to paste, whatever the paths
    /// hold, and a confirmed snapshot restore is resumed confirmed.
    #[test]
    fn hints_are_commands_to_paste() {
        use crate::state::{resume_hint, OpKind};
        use std::path::PathBuf;
        assert_eq!(shell_word("/srv/b-2.1.0.tar.zst"), "/srv/b-2.1.0.tar.zst");
        assert_eq!(shell_word("/media/USB disk/b"), "'/media/USB disk/b'");
        assert_eq!(shell_word("it's;rm -rf"), "'it'\\''s;rm -rf'");
        assert_eq!(shell_word(""), "''");
        let cfg = Path::new("/etc/stoa/updater.toml");
        let parts = [PathBuf::from("/m/p 1"), PathBuf::from("/m/p2")];
        assert_eq!(
            resume_hint(cfg, OpKind::Apply, &parts, false),
            "stoa-updater --config /etc/stoa/updater.toml apply '/m/p 1' /m/p2"
        );
        assert_eq!(
            resume_hint(cfg, OpKind::Apply, &[], false),
            "stoa-updater --config /etc/stoa/updater.toml apply <the same bundle>"
        );
        assert_eq!(
            resume_hint(cfg, OpKind::Rollback, &[], true),
            "stoa-updater --config /etc/stoa/updater.toml rollback --restore-snapshot"
        );
    }

    fn load(text: &str) -> Result<SiteConfig> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("stoa-config-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("trust")).unwrap();
        let p = dir.join("updater.toml");
        std::fs::write(&p, text).unwrap();
        let r = SiteConfig::load(&p);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    const BASE: &str = "state_dir = \"state\"\ntrust = \"trust\"\n";

    #[test]
    fn minimal_config_resolves_paths() {
        let c = load(BASE).unwrap();
        assert!(c.state_dir.is_absolute());
        assert_eq!(c.keep_releases, 3);
        assert_eq!(c.files_dir(), c.state_dir.join("files"));
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = load(&format!("{BASE}colour = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
        let e = load(&format!(
            "{BASE}[registry]\nurl = \"https://r\"\nprefx = \"x\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("prefx"), "{e}");
    }

    #[test]
    fn plain_http_only_for_loopback() {
        assert!(load(&format!(
            "{BASE}[registry]\nurl = \"http://127.0.0.1:5000\"\n"
        ))
        .is_ok());
        assert!(load(&format!(
            "{BASE}[registry]\nurl = \"http://localhost:5000\"\n"
        ))
        .is_ok());
        let e = load(&format!(
            "{BASE}[registry]\nurl = \"http://harbor.site:5000\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("loopback"), "{e}");
    }

    #[test]
    fn database_urls_are_parsed_and_errors_hide_the_password() {
        let ok = load(&format!(
            "{BASE}[databases.stoa]\nurl = \"postgresql://app:pw@db/stoa?sslmode=require\"\n"
        ));
        assert!(ok.is_ok());
        let e = load(&format!(
            "{BASE}[databases.stoa]\nurl = \"mysql://app:hunter2@db/stoa\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[databases.stoa] url") && e.contains("mysql"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        // a parameter the updater's client does not speak: refused at load
        let e = load(&format!(
            "{BASE}[databases.stoa]\nurl = \"postgres://app:hunter2@db/stoa?sslcert=/c.pem\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslcert") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn registry_url_with_userinfo_is_refused() {
        for url in [
            "http://localhost:1@evil:80",
            "https://user:secret@harbor.site",
            "http://127.0.0.1@evil.example:5000",
        ] {
            let e = load(&format!("{BASE}[registry]\nurl = \"{url}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("user name or password") || e.contains("not loopback"),
                "{url}: {e}"
            );
        }
        let e = load(&format!(
            "{BASE}[registry]\nurl = \"https://r\"\nprefix = \"../victim\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("prefix"), "{e}");
    }

    #[test]
    fn registry_layout_is_prefix_or_mirror() {
        use stoa_podimages::Layout;
        let c = load(&format!("{BASE}[registry]\nurl = \"https://r\"\n")).unwrap();
        assert_eq!(c.registry.unwrap().layout, Layout::Prefix);
        let c = load(&format!(
            "{BASE}[registry]\nurl = \"https://r\"\nlayout = \"mirror\"\n"
        ))
        .unwrap();
        assert_eq!(c.registry.unwrap().layout, Layout::Mirror);
        let e = load(&format!(
            "{BASE}[registry]\nurl = \"https://r\"\nlayout = \"flat\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = e.to_string();
        assert!(
            e.contains("line 5") && e.contains("flat") && e.contains("mirror"),
            "{e}"
        );
        let e = load(&format!("{BASE}[registry]\nurl = \"https://r\"\nlayout = \"mirror\"\n[helm]\nbin = \"/bin/sh\"\nimage_registry_value = \"global.imageRegistry\"\n"))
        .unwrap_err()
        .to_string();
        assert!(e.contains("image_registry_value"), "{e}");
    }

    #[test]
    fn credentials_go_together_and_durations_parse() {
        let e = load(&format!(
            "{BASE}[registry]\nurl = \"https://r\"\nusername = \"u\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("password_file"), "{e}");
        let e = load(&format!("{BASE}[helm]\ntimeout = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout"), "{e}");
        let c = load(&format!(
            "{BASE}[helm]\nbin = \"/bin/sh\"\ntimeout = \"90s\"\n"
        ))
        .unwrap();
        assert_eq!(c.helm.unwrap().timeout_secs(), 90);
    }

    #[test]
    fn bundled_tools_need_no_program_at_load_and_name_why_they_cannot_run_unbound() {
        let c = load(&format!(
            "{BASE}[helm]\nbin = \"bundled\"\nkubectl = \"bundled\"\n"
        ))
        .unwrap();
        let h = c.helm.unwrap();
        assert!(h.bundled.helm && h.bundled.kubectl);
        for e in [
            h.helm_program().unwrap_err(),
            h.kubectl_program().unwrap_err(),
        ] {
            assert!(e.contains("= \"bundled\": no release is installed"), "{e}");
        }
        let e = crate::helm::Helm::new(&h).unwrap_err();
        assert_eq!(e.kind(), "bundled-tool");
        // a program named otherwise is still looked up as one
        let c = load(&format!("{BASE}[helm]\nbin = \"/bin/sh\"\n")).unwrap();
        assert!(!c.helm.unwrap().bundled.any());
    }

    #[test]
    fn helm_timeout_has_a_minimum_and_rounds_up() {
        for short in ["500ms", "0s", "999ms"] {
            let e = load(&format!(
                "{BASE}[helm]\nbin = \"/bin/sh\"\ntimeout = \"{short}\"\n"
            ))
            .unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let e = e.to_string();
            assert!(e.contains("minimum of 1s") && e.contains(short), "{e}");
        }
        for (t, secs) in [("1s", 1), ("1500ms", 2), ("1s 1ms", 2), ("2m", 120)] {
            let c = load(&format!(
                "{BASE}[helm]\nbin = \"/bin/sh\"\ntimeout = \"{t}\"\n"
            ))
            .unwrap();
            assert_eq!(c.helm.unwrap().timeout_secs(), secs, "{t}");
        }
    }

    #[test]
    fn kubernetes_range_is_validated_and_defaults_to_1_28() {
        let c = load(BASE).unwrap();
        assert_eq!(c.preflight.kubernetes, ">=1.28");
        let e = load(&format!("{BASE}[preflight]\nkubernetes = \"one dot 28\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[preflight] kubernetes"), "{e}");
    }

    #[test]
    fn toml_errors_are_one_line_with_the_line_number() {
        let e = load(&format!("{BASE}keep_releases = 3\nkeep_release = 2\n"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n') && !e.contains('|'), "{e}");
        assert!(
            e.contains("line 4: unknown field `keep_release`, expected one of"),
            "{e}"
        );
    }

    #[test]
    fn missing_config_paths_are_config_errors_naming_key_and_path() {
        for (extra, key) in [
            ("[helm]\nbin = \"/bin/sh\"\nvalues_dir = \"nope-values\"\n", "[helm] values_dir"),
            ("[helm]\nbin = \"/nope/helm\"\n", "[helm] bin /nope/helm"),
            ("[helm]\nbin = \"stoa-no-such-helm\"\n", "[helm] bin stoa-no-such-helm: no such program on PATH"),
            ("[registry]\nurl = \"https://r\"\nca_cert = \"nope-ca.pem\"\n", "[registry] ca_cert"),
            ("[registry]\nurl = \"https://r\"\nusername = \"u\"\npassword_file = \"nope-pass\"\n", "[registry] password_file"),
            ("files_dir = \"nope-parent/files\"\n", "files_dir (parent folder)"),
        ] {
            let text = if extra.starts_with('[') {
                format!("{BASE}{extra}")
            } else {
                format!("{extra}{BASE}")
            };
            let e = load(&text).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
            let e = e.to_string();
            assert!(e.contains(key), "{key}: {e}");
            assert!(e.contains("nope") || e.contains("stoa-no-such"), "names the path: {e}");
        }
        let e = load("state_dir = \"s\"\ntrust = \"no-trust\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("trust ") && e.contains("no-trust"), "{e}");
    }
}
