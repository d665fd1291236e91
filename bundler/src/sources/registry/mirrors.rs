//! Build-host mirrors: the containers `registries.conf` (version 2, as
//! containers-registries.conf(5) defines it) for image and OCI chart pulls,
//! and `--chart-repo-mirror <repo-url>=<mirror-url>` for classic Helm
//! repositories.
//!
//! What is honoured: `[[registry]]` tables with `prefix`, `location`,
//! `insecure`, `blocked`, `mirror-by-digest-only` and `[[registry.mirror]]`
//! tables with `location`, `insecure`, `pull-from-mirror`. The table with
//! the longest matching `prefix` is chosen (a name matches when it starts
//! with the prefix followed by its end, `/`, or — when the prefix has a
//! path — `:` or `@`); `*.example.com` matches any subdomain (and may
//! set only `blocked`). Pulls try each mirror in order, then the
//! location (the prefix replaced by `location`, or the name itself).
//! Docker Hub has three host names: `docker.io`, `index.docker.io` and
//! `registry-1.docker.io` are one registry for matching (and one-component
//! Hub names get `library/`), so `prefix = "docker.io"` also covers
//! `oci://registry-1.docker.io/bitnamicharts/…`.
//!
//! Not used: `unqualified-search-registries`, `short-name-mode`, `[aliases]`
//! (release manifests name images fully; a short name is Docker Hub's, as
//! Docker reads it), `credential-helpers` (credentials: auth files only),
//! drop-in folders (`registries.conf.d`). The version 1 format is refused.
//! `insecure = true` means plain HTTP to that host (as
//! `--insecure-registry`); TLS verification is never switched off.
//!
//! The bundle records the names written in the release manifest; a mirror
//! only changes where the bytes come from, and every byte is checked
//! against its digest as from any registry.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{BundlerError, Result};

/// The environment variable containers tools read for another file.
pub const ENV: &str = "CONTAINERS_REGISTRIES_CONF";
/// The system-wide file, used when it exists and nothing else is named.
pub const SYSTEM_FILE: &str = "/etc/containers/registries.conf";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileV2 {
    #[serde(default)]
    registry: Vec<RegistryToml>,
    // read and not used (module doc)
    #[serde(default)]
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    short_name_mode: Option<String>,
    #[serde(default)]
    aliases: Option<toml::Table>,
    #[serde(default)]
    credential_helpers: Option<Vec<String>>,
    #[serde(default)]
    additional_layer_store_auth_helper: Option<String>,
    /// version 1 (`[registries.search]` …): refused with its own message
    #[serde(default)]
    registries: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RegistryToml {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<MirrorToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MirrorToml {
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    pull_from_mirror: Option<String>,
}

/// When a mirror is used: `pull-from-mirror`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PullFrom {
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Debug, Clone)]
struct Mirror {
    location: String,
    insecure: bool,
    pull_from: PullFrom,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Canonical (Docker Hub host names folded into `docker.io`); a
    /// wildcard is kept as `*.example.com`.
    prefix: String,
    wildcard: bool,
    location: Option<String>,
    insecure: bool,
    blocked: bool,
    mirrors: Vec<Mirror>,
}

/// A parsed `registries.conf`.
#[derive(Debug, Clone)]
pub struct RegistriesConf {
    path: PathBuf,
    entries: Vec<Entry>,
}

/// One place to pull a name from, in the order to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]/repository[:tag][@digest]` to fetch.
    pub reference: String,
    /// A `[[registry.mirror]]` (else the location or the name itself).
    pub mirror: bool,
}

/// Docker Hub's host names, all one registry.
const HUB_HOSTS: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Folds Docker Hub's host names into `docker.io` and adds `library/` to
/// one-component Hub names (`docker.io/busybox` → `docker.io/library/busybox`).
pub fn canonical(name: &str) -> String {
    let (host, rest) = match name.split_once('/') {
        Some((h, r)) => (h, Some(r)),
        None => (name, None),
    };
    if !HUB_HOSTS.contains(&host) {
        return name.to_owned();
    }
    match rest {
        None => "docker.io".to_owned(),
        Some(r) => {
            // the repository part ends at the tag or digest
            let repo_end = r.find(['@', ':']).unwrap_or(r.len());
            if r[..repo_end].contains('/') {
                format!("docker.io/{r}")
            } else {
                format!("docker.io/library/{r}")
            }
        }
    }
}

/// Folds Docker Hub's host names into `docker.io`, nothing else: a prefix
/// `docker.io/alpine` is the `alpine` namespace, not `library/alpine`
/// (containers-registries.conf(5), *Normalization of docker.io references*).
fn canonical_prefix(prefix: &str) -> String {
    match prefix.split_once('/') {
        Some((h, r)) if HUB_HOSTS.contains(&h) => format!("docker.io/{r}"),
        None if HUB_HOSTS.contains(&prefix) => "docker.io".to_owned(),
        _ => prefix.to_owned(),
    }
}

fn host_of(s: &str) -> &str {
    s.split('/').next().unwrap_or(s)
}

/// Does `name` (canonical) start with `prefix` followed by a boundary?
fn prefix_len(prefix: &str, wildcard: bool, name: &str) -> Option<usize> {
    if wildcard {
        // `*.example.com` matches any subdomain's host, whatever follows
        let suffix = prefix.strip_prefix('*')?;
        let host = host_of(name);
        let host_no_port = host.split(':').next().unwrap_or(host);
        return (host_no_port.ends_with(suffix) && host_no_port.len() > suffix.len()).then_some(0);
    }
    let rest = name.strip_prefix(prefix)?;
    let has_path = prefix.contains('/');
    match rest.chars().next() {
        None | Some('/') => Some(prefix.len()),
        Some(':' | '@') if has_path => Some(prefix.len()),
        _ => None,
    }
}

impl RegistriesConf {
    /// The file to read: `--registries-conf`, else `$CONTAINERS_REGISTRIES_CONF`,
    /// else /etc/containers/registries.conf when it exists. A named file
    /// that is missing is an error; no file at all is no mirrors.
    pub fn load(flag: Option<&Path>) -> Result<Option<Self>> {
        let named = flag
            .map(Path::to_owned)
            .or_else(|| std::env::var_os(ENV).map(PathBuf::from));
        let path = match named {
            Some(p) => p,
            None if Path::new(SYSTEM_FILE).is_file() => PathBuf::from(SYSTEM_FILE),
            None => return Ok(None),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| BundlerError::RegistriesConf {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path)
            .map(Some)
            .map_err(|message| BundlerError::RegistriesConf { path, message })
    }

    /// Parses the text of a registries.conf (version 2).
    pub fn parse(text: &str, path: &Path) -> std::result::Result<Self, String> {
        let f: FileV2 = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        if f.registries.is_some() {
            return Err("the version 1 format ([registries.search] …) is not supported; write [[registry]] tables (version 2, containers-registries.conf(5))".into());
        }
        let _ignored = (
            f.unqualified_search_registries,
            f.short_name_mode,
            f.aliases,
            f.credential_helpers,
            f.additional_layer_store_auth_helper,
        );
        let mut entries = Vec::new();
        for (i, r) in f.registry.into_iter().enumerate() {
            let at = |m: String| format!("registry[{i}]: {m}");
            let raw_prefix = match (&r.prefix, &r.location) {
                (Some(p), _) => p.clone(),
                (None, Some(l)) => l.clone(),
                (None, None) => return Err(at("needs a prefix or a location".into())),
            };
            if raw_prefix.is_empty() || raw_prefix.contains("://") {
                return Err(at(format!(
                    "prefix {raw_prefix:?} is not host[:port][/namespace…] (no scheme)"
                )));
            }
            let wildcard = raw_prefix.starts_with("*.");
            if raw_prefix.contains('*') && (!wildcard || raw_prefix.contains('/')) {
                return Err(at(format!(
                    "prefix {raw_prefix:?}: a wildcard is only allowed as *.domain, without a path"
                )));
            }
            if wildcard && (r.location.is_some() || !r.mirror.is_empty() || r.insecure) {
                return Err(at(format!(
                    "prefix {raw_prefix:?}: a wildcard prefix can only set blocked here (no location, mirror or insecure)"
                )));
            }
            for l in r
                .location
                .iter()
                .chain(r.mirror.iter().map(|m| &m.location))
            {
                if l.is_empty() || l.contains("://") || l.contains('*') {
                    return Err(at(format!(
                        "location {l:?} is not host[:port][/namespace…] (no scheme, no wildcard)"
                    )));
                }
            }
            let mut mirrors = Vec::new();
            for m in r.mirror {
                let pull_from = match m.pull_from_mirror.as_deref() {
                    None | Some("all") | Some("") => PullFrom::All,
                    Some("digest-only") => PullFrom::DigestOnly,
                    Some("tag-only") => PullFrom::TagOnly,
                    Some(o) => {
                        return Err(at(format!(
                            "pull-from-mirror {o:?} is not all, digest-only or tag-only"
                        )))
                    }
                };
                let pull_from = if r.mirror_by_digest_only {
                    PullFrom::DigestOnly
                } else {
                    pull_from
                };
                mirrors.push(Mirror {
                    location: m.location,
                    insecure: m.insecure,
                    pull_from,
                });
            }
            let prefix = if wildcard {
                raw_prefix
            } else {
                canonical_prefix(&raw_prefix)
            };
            if entries.iter().any(|e: &Entry| e.prefix == prefix) {
                return Err(at(format!("prefix {prefix:?} is given twice")));
            }
            entries.push(Entry {
                prefix,
                wildcard,
                location: r.location,
                insecure: r.insecure,
                blocked: r.blocked,
                mirrors,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `host[:port]` of every location and mirror marked `insecure`.
    pub fn insecure_hosts(&self) -> Vec<String> {
        let mut v = Vec::new();
        for e in &self.entries {
            if e.insecure {
                v.push(host_of(e.location.as_deref().unwrap_or(&e.prefix)).to_owned());
            }
            for m in &e.mirrors {
                if m.insecure {
                    v.push(host_of(&m.location).to_owned());
                }
            }
        }
        v.sort();
        v.dedup();
        v
    }

    fn entry_for(&self, name: &str) -> Option<&Entry> {
        let mut best: Option<(&Entry, (bool, usize))> = None;
        for e in &self.entries {
            if let Some(n) = prefix_len(&e.prefix, e.wildcard, name) {
                // an exact prefix beats a wildcard; then the longest wins
                let rank = (!e.wildcard, if e.wildcard { e.prefix.len() } else { n });
                if best.is_none_or(|(_, r)| rank > r) {
                    best = Some((e, rank));
                }
            }
        }
        best.map(|(e, _)| e)
    }

    /// Where to pull `name` (`host/repository[:tag][@digest]`) from, in
    /// order: the mirrors that apply, then the location. `Err` names the
    /// prefix when the entry is `blocked`.
    pub fn endpoints(&self, name: &str) -> std::result::Result<Vec<Endpoint>, String> {
        let name = canonical(name);
        let Some(e) = self.entry_for(&name) else {
            return Ok(vec![Endpoint {
                reference: name,
                mirror: false,
            }]);
        };
        if e.blocked {
            return Err(format!(
                "pulling from {} is blocked (blocked = true for prefix {:?} in {})",
                host_of(&name),
                e.prefix,
                self.path.display()
            ));
        }
        let by_digest = name.contains('@');
        let rest = if e.wildcard {
            ""
        } else {
            &name[e.prefix.len()..]
        };
        let mut v: Vec<Endpoint> = e
            .mirrors
            .iter()
            .filter(|m| match m.pull_from {
                PullFrom::All => true,
                PullFrom::DigestOnly => by_digest,
                PullFrom::TagOnly => !by_digest,
            })
            .map(|m| Endpoint {
                reference: format!("{}{rest}", m.location),
                mirror: true,
            })
            .collect();
        v.push(Endpoint {
            reference: match &e.location {
                Some(l) if !e.wildcard => format!("{l}{rest}"),
                _ => name.clone(),
            },
            mirror: false,
        });
        Ok(v)
    }
}

/// `--chart-repo-mirror <repo-url>=<mirror-url>`: a classic Helm
/// repository served from another URL (tried first, then the repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartRepoMirror {
    pub repo: String,
    pub mirror: String,
}

impl std::str::FromStr for ChartRepoMirror {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (repo, mirror) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not <repo-url>=<mirror-url>"))?;
        for u in [repo, mirror] {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(format!("{u:?} is not an http(s) URL"));
            }
        }
        Ok(Self {
            repo: repo.trim_end_matches('/').to_owned(),
            mirror: mirror.trim_end_matches('/').to_owned(),
        })
    }
}

/// The URLs to try for repository `repo`: its mirrors in the order given,
/// then the repository itself.
pub fn chart_repo_urls(mirrors: &[ChartRepoMirror], repo: &str) -> Vec<(String, bool)> {
    let key = repo.trim_end_matches('/');
    let mut v: Vec<(String, bool)> = mirrors
        .iter()
        .filter(|m| m.repo == key)
        .map(|m| (m.mirror.clone(), true))
        .collect();
    v.push((repo.to_owned(), false));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(t: &str) -> RegistriesConf {
        RegistriesConf::parse(t, Path::new("test.conf")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn refs(c: &RegistriesConf, name: &str) -> Vec<String> {
        c.endpoints(name)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|e| e.reference)
            .collect()
    }

    #[test]
    fn docker_hub_names_are_one_registry() {
        assert_eq!(
            canonical("docker.io/busybox:1"),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            canonical("registry-1.docker.io/bitnamicharts/common:2.31.10"),
            "docker.io/bitnamicharts/common:2.31.10"
        );
        assert_eq!(
            canonical("index.docker.io/bitnami/pgpool"),
            "docker.io/bitnami/pgpool"
        );
        assert_eq!(canonical("quay.io/x/y:1"), "quay.io/x/y:1");
        let c = conf(
            "[[registry]]\nprefix = \"registry-1.docker.io\"\n[[registry.mirror]]\nlocation = \"m:5000/hub\"\n",
        );
        assert_eq!(
            refs(&c, "docker.io/bitnami/pgpool:4.6"),
            [
                "m:5000/hub/bitnami/pgpool:4.6",
                "docker.io/bitnami/pgpool:4.6"
            ]
        );
        assert_eq!(
            refs(&c, "registry-1.docker.io/bitnamicharts/minio:17.0.23"),
            [
                "m:5000/hub/bitnamicharts/minio:17.0.23",
                "docker.io/bitnamicharts/minio:17.0.23"
            ]
        );
    }

    #[test]
    fn mirrors_in_order_then_location() {
        // the man page's example
        let c = conf(
            r#"unqualified-search-registries = ["example.com"]
[[registry]]
prefix = "example.com/foo"
insecure = false
blocked = false
location = "internal-registry-for-example.com/bar"
[[registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"
[[registry.mirror]]
location = "example-mirror-1.local/mirrors/foo"
insecure = true
"#,
        );
        assert_eq!(
            refs(&c, "example.com/foo/image:latest"),
            [
                "example-mirror-0.local/mirror-for-foo/image:latest",
                "example-mirror-1.local/mirrors/foo/image:latest",
                "internal-registry-for-example.com/bar/image:latest"
            ]
        );
        assert_eq!(c.insecure_hosts(), ["example-mirror-1.local"]);
        let e = c.endpoints("example.com/foo/image:latest").unwrap();
        assert!(e[0].mirror && e[1].mirror && !e[2].mirror);
        // no match: the name itself
        assert_eq!(refs(&c, "example.com/other:1"), ["example.com/other:1"]);
    }

    #[test]
    fn longest_prefix_wins_on_boundaries() {
        let c = conf(
            r#"[[registry]]
prefix = "docker.io"
location = "a:1/hub"
[[registry]]
prefix = "docker.io/bitnami"
location = "b:1/bitnami"
[[registry]]
prefix = "docker.io/bitnami/pgpool:4.6"
location = "c:1/pinned"
"#,
        );
        assert_eq!(
            refs(&c, "docker.io/bitnami/os-shell:12"),
            ["b:1/bitnami/os-shell:12"]
        );
        // "bitnami" is not a prefix of "bitnamicharts"
        assert_eq!(
            refs(&c, "docker.io/bitnamicharts/common:2"),
            ["a:1/hub/bitnamicharts/common:2"]
        );
        assert_eq!(refs(&c, "docker.io/bitnami/pgpool:4.6"), ["c:1/pinned"]);
        // a Hub prefix is taken as written: `docker.io/busybox` is not library/busybox
        let c = conf("[[registry]]\nprefix = \"docker.io/busybox\"\nblocked = true\n");
        assert!(c.endpoints("docker.io/busybox:1").is_ok());
        assert!(c.endpoints("docker.io/busybox/x:1").is_err());
        // a host prefix is not a prefix of a host with a port
        let c = conf("[[registry]]\nlocation = \"localhost\"\nblocked = true\n");
        assert!(c.endpoints("localhost:5000/x:1").is_ok());
        assert!(c.endpoints("localhost/x:1").is_err());
    }

    #[test]
    fn blocked_is_refused_naming_the_file() {
        let c = conf("[[registry]]\nprefix = \"quay.io\"\nblocked = true\n");
        let e = c.endpoints("quay.io/x/y:1").unwrap_err();
        assert!(e.contains("blocked") && e.contains("test.conf"), "{e}");
    }

    #[test]
    fn digest_only_mirrors() {
        let c = conf(
            r#"[[registry]]
prefix = "quay.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m:1/quay"
"#,
        );
        assert_eq!(refs(&c, "quay.io/a/b:1"), ["quay.io/a/b:1"]);
        let d = format!("quay.io/a/b@sha256:{}", "0".repeat(64));
        assert_eq!(refs(&c, &d).len(), 2);
        let c = conf(
            "[[registry]]\nprefix = \"quay.io\"\n[[registry.mirror]]\nlocation = \"m:1/quay\"\npull-from-mirror = \"tag-only\"\n",
        );
        assert_eq!(refs(&c, &d), [d]);
        assert_eq!(
            refs(&c, "quay.io/a/b:1"),
            ["m:1/quay/a/b:1", "quay.io/a/b:1"]
        );
    }

    #[test]
    fn wildcards_and_bad_files() {
        let c = conf("[[registry]]\nprefix = \"*.corp.example\"\nblocked = true\n");
        assert!(c.endpoints("reg.corp.example/a:1").is_err());
        assert!(c.endpoints("corp.example/a:1").is_ok());
        for bad in [
            "[registries.search]\nregistries = [\"a\"]\n",
            "[[registry]]\nprefix = \"a\"\nlocaton = \"b\"\n",
            "[[registry]]\ninsecure = true\n",
            "[[registry]]\nprefix = \"*.a.com\"\nlocation = \"b\"\n",
            "[[registry]]\nprefix = \"https://a\"\n",
            "[[registry]]\nprefix = \"a\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"sometimes\"\n",
            "[[registry]]\nprefix = \"docker.io\"\n[[registry]]\nprefix = \"index.docker.io\"\n",
            "nonsense = 1\n",
        ] {
            assert!(
                RegistriesConf::parse(bad, Path::new("x")).is_err(),
                "accepted: {bad}"
            );
        }
    }

    #[test]
    fn chart_repo_mirror_flag() {
        let m: ChartRepoMirror =
            "https://helm.releases.hashicorp.com/=http://127.0.0.1:8080/hashicorp"
                .parse()
                .unwrap();
        assert_eq!(m.repo, "https://helm.releases.hashicorp.com");
        let urls = chart_repo_urls(&[m], "https://helm.releases.hashicorp.com");
        assert_eq!(
            urls,
            [
                ("http://127.0.0.1:8080/hashicorp".to_owned(), true),
                ("https://helm.releases.hashicorp.com".to_owned(), false)
            ]
        );
        assert!("no-equals".parse::<ChartRepoMirror>().is_err());
        assert!("ftp://a=http://b".parse::<ChartRepoMirror>().is_err());
    }
}
