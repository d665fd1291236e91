//! The site configuration (`--config`, default /etc/stoa/updater.toml).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Result, UpdaterError};

pub const DEFAULT_CONFIG: &str = "/etc/stoa/updater.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
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
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Uploads larger than this go in chunks (PATCH); default 64 MiB.
    #[serde(default)]
    pub chunk_size: Option<u64>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelmConfig {
    #[serde(default = "helm_bin")]
    pub bin: PathBuf,
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub values_dir: Option<PathBuf>,
    #[serde(default = "ten_minutes")]
    pub timeout: String,
    /// The value name the site registry is passed as.
    #[serde(default = "image_registry_key")]
    pub image_registry_value: String,
}

fn helm_bin() -> PathBuf {
    PathBuf::from("helm")
}
fn ten_minutes() -> String {
    "10m".into()
}
fn image_registry_key() -> String {
    "global.imageRegistry".into()
}

impl HelmConfig {
    pub fn timeout(&self) -> Duration {
        humantime::parse_duration(&self.timeout).unwrap_or(Duration::from_secs(600))
    }
}

impl SiteConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |reason: String| UpdaterError::Config {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("read: {e}")))?;
        let mut c: SiteConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
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
            crate::registry::check_credential_url(&r.url)
                .map_err(|e| bad(format!("[registry] url {e}")))?;
            r.prefix = r.prefix.trim_matches('/').to_owned();
            if !r.prefix.is_empty() {
                for c in r.prefix.split('/') {
                    stoa_format::names::check_path_component(c)
                        .map_err(|e| bad(format!("[registry] prefix {:?}: {e}", r.prefix)))?;
                }
            }
        }
        if let Some(h) = &mut c.helm {
            if humantime::parse_duration(&h.timeout).is_err() {
                return Err(bad(format!(
                    "[helm] timeout {:?} is not a duration",
                    h.timeout
                )));
            }
            if let Some(p) = &mut h.values_dir {
                abs(p);
            }
            if let Some(p) = &mut h.kubeconfig {
                abs(p);
            }
        }
        Ok(c)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<SiteConfig> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("stoa-config-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
        let c = load(&format!("{BASE}[helm]\ntimeout = \"90s\"\n")).unwrap();
        assert_eq!(c.helm.unwrap().timeout().as_secs(), 90);
    }
}
