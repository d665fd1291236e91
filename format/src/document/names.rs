//! Names a signed manifest carries that end up in URLs, paths, Helm calls
//! or database rows: validated here, so that a value that breaks out of its
//! place cannot be held at all.
//!
//! - [`ImageRef`]: an OCI distribution reference (the grammar of
//!   `github.com/distribution/reference`): `[domain[:port]/]path[:tag][@sha256:<hex>]`,
//!   path components `[a-z0-9]+(separator[a-z0-9]+)*` with separator `.`,
//!   `_`, `__` or `-`+, tag `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
//! - chart versions (SemVer 2, so no `/`), Helm release names (Helm's rule:
//!   a DNS-1123 subdomain of at most 53 characters), Kubernetes namespaces (a
//!   DNS-1123 label), migration ids (1-10 digits) and names (`[a-z0-9_]`,
//!   1-100).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;

pub use super::limits::MAX_IMAGE_NAME;

/// A parsed, valid image reference. It keeps the text it was parsed from,
/// so a manifest serialises back to the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    raw: String,
    domain: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<Sha256Digest>,
}

impl ImageRef {
    /// Parses `s`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > MAX_IMAGE_NAME {
            return Err(format!("must be 1-{MAX_IMAGE_NAME} bytes"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .filter(|h| {
                        h.len() == 64
                            && h.bytes()
                                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                    })
                    .ok_or("digest must be sha256:<64 lowercase hex>")?;
                (n, Some(Sha256Digest::from_hex(hex).ok_or("bad digest")?))
            }
            None => (s, None),
        };
        // a tag is after the last ':' that is not followed by a '/'
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t)?;
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                check_domain(first)?;
                (Some(first.to_owned()), rest)
            }
            _ => (None, name),
        };
        if path.is_empty() {
            return Err("has no repository path".into());
        }
        for c in path.split('/') {
            check_path_component(c)?;
        }
        Ok(Self {
            raw: s.to_owned(),
            domain,
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
    /// `host[:port]`, when the name has one.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }
    /// The repository path without the domain: `stoa/api`.
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Sha256Digest> {
        self.digest.as_ref()
    }

    /// The registry a container runtime pulls this name from: `docker.io`
    /// for no domain and for Docker Hub's other spellings
    /// (`index.docker.io`, `registry-1.docker.io`), else the domain as
    /// written (`host[:port]`). With [`ImageRef::source_path`], the one
    /// normaliser of Docker Hub's short forms.
    pub fn source_host(&self) -> &str {
        match self.domain() {
            None | Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => "docker.io",
            Some(d) => d,
        }
    }

    /// The repository path on [`ImageRef::source_host`]: Docker Hub's
    /// official images get `library/` (`nginx` is `library/nginx`).
    pub fn source_path(&self) -> std::borrow::Cow<'_, str> {
        if self.source_host() == "docker.io" && !self.path.contains('/') {
            format!("library/{}", self.path).into()
        } else {
            self.path.as_str().into()
        }
    }

    /// `<source host>/<source path>`, the name a runtime pulls:
    /// `bitnami/pgpool` is `docker.io/bitnami/pgpool`, `nginx`
    /// `docker.io/library/nginx`, `localhost:5000/a/b` itself.
    pub fn source_repository(&self) -> String {
        format!("{}/{}", self.source_host(), self.source_path())
    }
}

impl TryFrom<String> for ImageRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|e| format!("image name {s:?} is not a valid reference: {e}"))
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> String {
        r.raw
    }
}

impl std::ops::Deref for ImageRef {
    type Target = str;
    fn deref(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A repository path component: `[a-z0-9]+` joined by `.`, `_`, `__` or
/// one or more `-`.
pub fn check_path_component(c: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "path component {c:?} is not [a-z0-9]+ joined by '.', '_', '__' or '-'"
        ))
    };
    let b = c.as_bytes();
    if b.is_empty() {
        return bad();
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return bad();
        }
        if i == b.len() {
            return Ok(());
        }
        let sep = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let s = &c[sep..i];
        let ok =
            s == "." || s == "_" || s == "__" || (!s.is_empty() && s.bytes().all(|x| x == b'-'));
        if !ok || i == b.len() {
            return bad();
        }
    }
}

fn check_tag(t: &str) -> Result<(), String> {
    let w = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && w(b[0])
        && b.iter().all(|x| w(*x) || *x == b'.' || *x == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {t:?} is not [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
        ))
    }
}

fn check_domain(d: &str) -> Result<(), String> {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("domain {d:?} has a bad port"));
        }
    }
    let comp_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
    };
    if host.split('.').all(comp_ok) {
        Ok(())
    } else {
        Err(format!("domain {d:?} is not host[:port]"))
    }
}

fn dns_label(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b.iter()
            .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || *x == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A release (product) name, `release.name` of a bundle: 1-63 of a-z 0-9
/// `-` `_` `.`, starting with a letter or digit. The ONE rule: the bundler
/// parses its release manifest into it (failing with the line) and the
/// format checks a bundle manifest with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReleaseName(String);

impl ReleaseName {
    /// Parses `s`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
            })
            && s.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} must be 1-63 of a-z 0-9 - _ . starting with a letter or digit"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ReleaseName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<ReleaseName> for String {
    fn from(n: ReleaseName) -> String {
        n.0
    }
}

impl std::ops::Deref for ReleaseName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReleaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Helm release name: a DNS-1123 subdomain of at most 53 characters
/// (Helm's own limit).
pub fn check_helm_release(s: &str) -> Result<(), String> {
    if s.len() <= 53 && s.split('.').all(|l| dns_label(l, 63)) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a Helm release name (at most 53 of a-z 0-9 '-' '.', \
             each dot-separated part starting and ending with a letter or digit)"
        ))
    }
}

/// A Kubernetes namespace: a DNS-1123 label.
pub fn check_namespace(s: &str) -> Result<(), String> {
    if dns_label(s, 63) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a namespace (1-63 of a-z 0-9 '-', starting and ending with a letter or digit)"
        ))
    }
}

/// A chart version: SemVer 2 (so it holds no `/`, space or control byte).
pub fn check_chart_version(s: &str) -> Result<(), String> {
    semver::Version::parse(s)
        .map(|_| ())
        .map_err(|e| format!("chart version {s:?} is not SemVer: {e}"))
}

/// A migration id: 1-10 digits (`0001`).
pub fn check_migration_id(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("migration id {s:?} is not 1-10 digits"))
    }
}

/// A migration name: 1-100 of `a-z 0-9 _` (it is written into a history
/// row and read back from psql's output).
pub fn check_migration_name(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(())
    } else {
        Err(format!("migration name {s:?} is not 1-100 of a-z 0-9 '_'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One normaliser: Docker Hub's short forms, a registry with a port,
    /// and a digest reference.
    #[test]
    fn source_names_normalise_docker_hub_short_forms() {
        let d = format!("@sha256:{}", "b".repeat(64));
        for (name, host, repo) in [
            ("nginx", "docker.io", "docker.io/library/nginx"),
            ("nginx:1.27", "docker.io", "docker.io/library/nginx"),
            (
                "bitnami/pgpool:4.6.3",
                "docker.io",
                "docker.io/bitnami/pgpool",
            ),
            ("docker.io/nginx", "docker.io", "docker.io/library/nginx"),
            (
                "index.docker.io/library/nginx",
                "docker.io",
                "docker.io/library/nginx",
            ),
            (
                "registry-1.docker.io/bitnami/pgpool",
                "docker.io",
                "docker.io/bitnami/pgpool",
            ),
            (
                "registry.gostoa.dev/stoa/api:2.3.0",
                "registry.gostoa.dev",
                "registry.gostoa.dev/stoa/api",
            ),
            ("localhost:5000/x:1", "localhost:5000", "localhost:5000/x"),
            ("quay.io:443/a/b", "quay.io:443", "quay.io:443/a/b"),
        ] {
            for n in [name.to_owned(), format!("{name}{d}")] {
                let r = ImageRef::parse(&n).unwrap();
                assert_eq!(r.source_host(), host, "{n}");
                assert_eq!(r.source_repository(), repo, "{n}");
            }
        }
    }

    #[test]
    fn image_refs() {
        let r = ImageRef::parse("registry.gostoa.dev/stoa/api:2.3.0").unwrap();
        assert_eq!(r.domain(), Some("registry.gostoa.dev"));
        assert_eq!(r.path(), "stoa/api");
        assert_eq!(r.tag(), Some("2.3.0"));
        let r = ImageRef::parse(&format!("localhost:5000/a/b@sha256:{}", "a".repeat(64))).unwrap();
        assert_eq!(r.domain(), Some("localhost:5000"));
        assert_eq!(r.tag(), None);
        assert!(r.digest().is_some());
        let r = ImageRef::parse("stoa/api").unwrap();
        assert_eq!((r.domain(), r.tag()), (None, None));
        ImageRef::parse("a__b/c--d/e.f_g:V1_x.y-z").unwrap();
        for bad in [
            "registry.gostoa.dev/../victim/app:1",
            "registry.gostoa.dev/stoa/api:1?x=y#frag",
            "registry.gostoa.dev/stoa/api:1/../x",
            "Registry.gostoa.dev/Stoa/api:1",
            "r.dev/stoa/API:1",
            "r.dev/stoa//api",
            "r.dev/stoa/api/",
            "r.dev/stoa/api:",
            "r.dev/stoa/api:-x",
            "r.dev/stoa/a..b",
            "r.dev/stoa/a___b",
            "r.dev/stoa/a%2fb",
            "r.dev/stoa/api@sha256:abc",
            "evil.dev:80x/a",
            "r.dev/a b",
            "",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
        assert!(ImageRef::parse(&format!("a:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn release_names() {
        for ok in ["stoa-platform", "a", "x1.2_b", "9lives"] {
            assert_eq!(ReleaseName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "-stoa",
            ".x",
            "_x",
            "Stoa",
            "a b",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(ReleaseName::parse(bad).is_err(), "{bad:?}");
        }
        let e = serde_json::from_str::<ReleaseName>("\"-x\"").unwrap_err();
        assert!(
            e.to_string().contains("starting with a letter or digit"),
            "{e}"
        );
    }

    #[test]
    fn names() {
        assert!(check_helm_release("stoa-api-canary").is_ok());
        assert!(check_helm_release("a.b").is_ok());
        for bad in ["Stoa", "-a", "a-", "a_b", "a/b", "", &"a".repeat(54)] {
            assert!(check_helm_release(bad).is_err(), "{bad}");
        }
        assert!(check_namespace("stoa-system").is_ok());
        assert!(check_namespace("a.b").is_err());
        assert!(check_chart_version("1.2.3-rc.1+b2").is_ok());
        assert!(check_chart_version("1.0.0/../../x").is_err());
        assert!(check_migration_id("0001").is_ok());
        assert!(check_migration_id("1a").is_err());
        assert!(check_migration_name("create_users").is_ok());
        for bad in ["a\nb", "a\tb", "A", "a-b", ""] {
            assert!(check_migration_name(bad).is_err(), "{bad:?}");
        }
    }
}
