//! Node mirror configuration for a site in the mirror layout
//! (`[registry] layout = "mirror"`; `stoa-updater mirror-config`): for each
//! source registry the retained releases' images come from (`docker.io`,
//! `registry.gostoa.dev`, …), the file a container runtime reads to send
//! that registry's pulls to the site, at `<site>/<prefix>/<source host>`
//! ([`stoa_podimages::mirror_namespace`], the rule push and `serve` name
//! repositories by). One writer per runtime, each a pure function from the
//! [`Target`] to the files' text: `containerd.rs` (`<host>/hosts.toml`),
//! `crio.rs` (`registries.conf` v2), `k3s.rs` (`registries.yaml`),
//! `openshift.rs` (`ImageDigestMirrorSet` and `ImageTagMirrorSet`). Files
//! are written through the one durable write ([`crate::state::write_atomic`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::SiteConfig;
use crate::error::{Result, UpdaterError};
use crate::state::StateDir;

mod containerd;
mod crio;
mod k3s;
mod openshift;

/// The container runtimes `mirror-config` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// containerd: `<DIR>/<host>/hosts.toml` (config_path, e.g. /etc/containerd/certs.d).
    Containerd,
    /// CRI-O (and podman, skopeo): `<DIR>/registries.conf` v2.
    #[value(name = "cri-o")]
    CriO,
    /// k3s and RKE2: `<DIR>/registries.yaml`.
    K3s,
    /// OpenShift: `ImageDigestMirrorSet` and `ImageTagMirrorSet` manifests.
    Openshift,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::K3s => "k3s",
            Runtime::Openshift => "openshift",
        }
    }
}

/// Where nodes pull from: the site registry (or `serve`) and its prefix,
/// and the source registries whose pulls go there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` of the site registry or `serve`.
    pub host: String,
    /// `[registry] prefix` (may be empty).
    pub prefix: String,
    /// The CA nodes verify the site with (PEM), when it has its own.
    pub ca: Option<Vec<u8>>,
    /// Source registries (`host[:port]`), sorted, each once.
    pub sources: Vec<String>,
}

impl Target {
    /// `<prefix>/<source>`: where `source`'s images are on site.
    pub fn namespace(&self, source: &str) -> String {
        stoa_podimages::mirror_namespace(source, &self.prefix)
    }

    /// Plain http: runtimes must be told the mirror is insecure.
    pub fn insecure(&self) -> bool {
        self.scheme == "http"
    }

    /// `https://host` as a runtime reaches a source registry itself (Docker
    /// Hub's API host for `docker.io`).
    pub fn upstream(source: &str) -> String {
        match source {
            "docker.io" => "https://registry-1.docker.io".into(),
            s => format!("https://{s}"),
        }
    }
}

/// One file to write: its path under `--out`, its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl File {
    fn text(path: impl Into<PathBuf>, text: String) -> Self {
        Self {
            path: path.into(),
            bytes: text.into_bytes(),
        }
    }
}

/// A string as a quoted TOML basic string or YAML double-quoted scalar
/// (JSON's escapes are valid in both).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The files `runtime` reads, for `t`.
pub fn render(runtime: Runtime, t: &Target) -> Vec<File> {
    match runtime {
        Runtime::Containerd => containerd::render(t),
        Runtime::CriO => crio::render(t),
        Runtime::K3s => k3s::render(t),
        Runtime::Openshift => openshift::render(t),
    }
}

/// The source registries of every image of every retained release (what
/// `serve` serves, what apply pushed), each release manifest checked
/// against its recorded digest.
pub fn sources(sd: &StateDir) -> Result<Vec<String>> {
    let state = sd.load()?;
    let mut hosts = BTreeSet::new();
    for rec in &state.releases {
        let m = crate::stage::load_release_checked(sd, &rec.version, &rec.manifest_sha256)?;
        hosts.extend(m.images.iter().map(|i| i.name.source_host().to_owned()));
    }
    Ok(hosts.into_iter().collect())
}

/// The site nodes pull from: `[registry] url` (with its `ca_cert`), or
/// with `serve` the `[serve] url`; `ca` (a PEM file) overrides the CA.
/// Refused (config error) unless the site is in the mirror layout.
pub fn target(cfg: &SiteConfig, serve: bool, ca: Option<&Path>) -> Result<Target> {
    let bad = |reason: String| UpdaterError::Config {
        path: cfg.path.clone(),
        reason,
    };
    let r = cfg
        .registry
        .as_ref()
        .filter(|r| r.layout == stoa_podimages::Layout::Mirror)
        .ok_or_else(|| {
            bad("mirror-config needs [registry] layout = \"mirror\" (in the prefix layout pods are named on the site registry and nodes need no mirror)".into())
        })?;
    let url = if serve {
        crate::serve::node_url(cfg, None)
    } else {
        r.url.clone()
    };
    let u = url::Url::parse(&url).map_err(|e| bad(format!("site URL {url:?}: {e}")))?;
    let host = match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(bad(format!("site URL {url:?} has no host"))),
    };
    let ca_path = ca
        .map(Path::to_owned)
        .or_else(|| (!serve).then(|| r.ca_cert.clone()).flatten());
    let ca = match ca_path {
        Some(p) => Some(std::fs::read(&p).map_err(|e| UpdaterError::MirrorConfig {
            path: p.clone(),
            reason: format!("read the site CA: {e}"),
        })?),
        None => None,
    };
    Ok(Target {
        scheme: u.scheme().to_owned(),
        host,
        prefix: r.prefix.clone(),
        ca,
        sources: Vec::new(),
    })
}

/// Writes `files` under `out` (created when missing), each durably, 0644
/// (nodes' config files; no secret in them). Returns the paths written.
pub fn write(out: &Path, files: &[File]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for f in files {
        let p = out.join(&f.path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| UpdaterError::MirrorConfig {
                path: dir.to_owned(),
                reason: format!("create folder: {e}"),
            })?;
        }
        crate::state::write_atomic(&p, &f.bytes, Some(0o644))?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A named fixture per rule: a prefix, Docker Hub, a registry with a
    /// port, plain http and a CA over https.
    pub fn target(scheme: &str, prefix: &str, ca: bool) -> Target {
        Target {
            scheme: scheme.into(),
            host: "site.example:5000".into(),
            prefix: prefix.into(),
            ca: ca.then(|| b"-----BEGIN CERTIFICATE-----\n".to_vec()),
            sources: vec![
                "docker.io".into(),
                "localhost:5001".into(),
                "registry.gostoa.dev".into(),
            ],
        }
    }

    pub fn text<'a>(files: &'a [File], path: &str) -> &'a str {
        let f = files
            .iter()
            .find(|f| f.path == Path::new(path))
            .unwrap_or_else(|| panic!("no {path} in {files:?}"));
        std::str::from_utf8(&f.bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn cfg(extra: &str) -> SiteConfig {
        toml::from_str(&format!("state_dir = \"/s\"\ntrust = \"/t\"\n{extra}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The site is `[registry] url` or, with `--serve`, `[serve] url` (else
    /// its listen address); only in the mirror layout; a CA that cannot be
    /// read is named.
    #[test]
    fn the_site_is_the_registry_or_serve_and_only_in_the_mirror_layout() {
        let e = super::target(
            &cfg("[registry]\nurl = \"https://r.site:5000\"\n"),
            false,
            None,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("layout = \"mirror\""), "{e}");
        let reg =
            "[registry]\nurl = \"https://r.site:5000\"\nprefix = \"stoa\"\nlayout = \"mirror\"\n";
        let c = cfg(&format!("{reg}[serve]\nlisten = \"10.0.0.5:5001\"\n"));
        let t = super::target(&c, false, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.scheme.as_str(), t.host.as_str(), t.prefix.as_str()),
            ("https", "r.site:5000", "stoa")
        );
        assert_eq!(t.ca, None);
        let t = super::target(&c, true, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.scheme.as_str(), t.host.as_str()),
            ("http", "10.0.0.5:5001")
        );
        let c = cfg(&format!("{reg}[serve]\nurl = \"https://store.site\"\n"));
        let t = super::target(&c, true, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.scheme.as_str(), t.host.as_str()),
            ("https", "store.site")
        );
        let e = super::target(&c, true, Some(Path::new("/nope/ca.pem"))).unwrap_err();
        assert_eq!((e.exit_code(), e.kind()), (2, "mirror-config"));
        assert!(e.to_string().contains("/nope/ca.pem"), "{e}");
    }

    #[test]
    fn namespaces_follow_the_one_site_repository_rule() {
        let t = target("http", "stoa", false);
        let img = stoa_format::names::ImageRef::parse("bitnami/pgpool:4.6.3")
            .unwrap_or_else(|e| panic!("{e}"));
        let repo = stoa_podimages::site_repository(&img, "stoa", stoa_podimages::Layout::Mirror);
        assert_eq!(repo, format!("{}/bitnami/pgpool", t.namespace("docker.io")));
        assert_eq!(t.namespace("localhost:5001"), "stoa/localhost:5001");
        assert_eq!(
            target("http", "", false).namespace("docker.io"),
            "docker.io"
        );
        assert_eq!(
            Target::upstream("docker.io"),
            "https://registry-1.docker.io"
        );
        assert_eq!(Target::upstream("quay.io"), "https://quay.io");
        assert_eq!(q("a\"b"), "\"a\\\"b\"");
    }
}
