//! Where an image comes from on site: [`SiteImages::resolve`] maps a
//! rendered image to the one the bundle verified under the same name (Docker
//! Hub's short forms normalised), as `<registry>/<prefix>/<path>:<tag>@<digest>`
//! in the prefix [`Layout`], or as its own name pinned
//! (`docker.io/bitnami/pgpool:4.6.3@<digest>`) in the mirror layout.
//! [`site_repository`] is the one rule naming an image's repository on
//! site, used by the updater's push, `serve`, this post-renderer and
//! `mirror-config`.

use stoa_format::names::ImageRef;

/// How the site names the repositories it holds (`[registry] layout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `<prefix>/<path>`: the source host dropped
    /// (`registry.gostoa.dev/stoa/api` is `<prefix>/stoa/api`); the
    /// post-renderer names each pod image on the site registry.
    #[default]
    Prefix,
    /// `<prefix>/<source host>/<source path>` (Docker Hub's short forms
    /// normalised: `nginx` is `<prefix>/docker.io/library/nginx`); pods
    /// keep their images' own names and the nodes' mirror configuration
    /// sends every pull to the site.
    Mirror,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Prefix => "prefix",
            Layout::Mirror => "mirror",
        }
    }
}

/// `a/b`, `b` alone when `a` is empty.
fn join(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_owned()
    } else {
        format!("{prefix}/{path}")
    }
}

/// Where a source registry's images are held on site in the mirror
/// layout: `<prefix>/<source host>` (`docker.io` with no prefix). A node's
/// mirror for that host points here (`mirror-config`).
pub fn mirror_namespace(source_host: &str, prefix: &str) -> String {
    join(prefix, source_host)
}

/// The repository an image is held in on site (pushed by apply, served by
/// `serve`), under `prefix` (may be empty) in `layout`: the one rule.
pub fn site_repository(name: &ImageRef, prefix: &str, layout: Layout) -> String {
    match layout {
        Layout::Prefix => join(prefix, name.path()),
        Layout::Mirror => format!(
            "{}/{}",
            mirror_namespace(name.source_host(), prefix),
            name.source_path()
        ),
    }
}

/// Where the bundle's images are served on site: `<host>[/<prefix>]`, and
/// each verified image with its manifest digest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SiteImages {
    /// `host[:port]` of the site registry.
    pub registry: String,
    /// The site's repository prefix (may be empty).
    pub prefix: String,
    /// How repositories are named on site (default prefix).
    #[serde(default)]
    pub layout: Layout,
    /// The bundle's images: name as the manifest has it, and `sha256:…`.
    pub images: Vec<SiteImage>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SiteImage {
    pub name: ImageRef,
    pub digest: String,
}

/// Docker Hub's names normalised ([`ImageRef::source_repository`]), so
/// `busybox`, `docker.io/busybox` and `index.docker.io/library/busybox` are
/// one image.
fn normalised(r: &ImageRef) -> String {
    r.source_repository()
}

impl SiteImages {
    /// The repository an image is pushed to on site (`<prefix>/<path>`, as
    /// the updater's push names it).
    fn site_repo(&self, name: &ImageRef) -> String {
        site_repository(name, &self.prefix, self.layout)
    }

    /// The site name for `image` as a chart rendered it:
    /// `<registry>/<prefix>/<path>:<tag>@<digest>` (prefix layout) or
    /// `<source host>/<source path>:<tag>@<digest>` (mirror layout: the
    /// name kept, pinned), or why it cannot be served.
    pub fn resolve(&self, image: &str) -> Result<String, String> {
        let r = ImageRef::parse(image).map_err(|e| format!("is not a valid OCI reference: {e}"))?;
        // already a site name (a chart given the site registry as a value)
        let on_site = r.domain() == Some(self.registry.as_str());
        let want = normalised(&r);
        let candidates: Vec<&SiteImage> = self
            .images
            .iter()
            .filter(|i| {
                normalised(&i.name) == want || (on_site && self.site_repo(&i.name) == r.path())
            })
            .collect();
        if candidates.is_empty() {
            return Err("is not carried by the bundle".into());
        }
        let hit = match r.digest() {
            Some(d) => {
                let d = format!("sha256:{}", d.hex());
                candidates.iter().find(|i| i.digest == d).ok_or_else(|| {
                    format!(
                        "pins {d}, which the bundle's {} does not have",
                        candidates
                            .iter()
                            .map(|i| format!("{} ({})", i.name, i.digest))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?
            }
            None => {
                let tag = r.tag().unwrap_or("latest");
                candidates
                    .iter()
                    .find(|i| i.name.tag() == Some(tag))
                    .ok_or_else(|| {
                        format!(
                            "is not carried by the bundle with tag {tag} (it has {})",
                            candidates
                                .iter()
                                .map(|i| i.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?
            }
        };
        let tag = r.tag().or(hit.name.tag());
        let name = match self.layout {
            Layout::Prefix => format!("{}/{}", self.registry, self.site_repo(&hit.name)),
            Layout::Mirror => hit.name.source_repository(),
        };
        Ok(format!(
            "{name}{}@{}",
            tag.map(|t| format!(":{t}")).unwrap_or_default(),
            hit.digest
        ))
    }

    /// Whether `image` is already served by the site: named on the site
    /// registry, or (mirror layout, where the nodes' mirror configuration
    /// sends every pull to the site) an image the bundle carries.
    pub fn is_site(&self, image: &str) -> bool {
        if self.layout == Layout::Mirror && self.resolve(image).is_ok() {
            return true;
        }
        let head = if self.prefix.is_empty() {
            format!("{}/", self.registry)
        } else {
            format!("{}/{}/", self.registry, self.prefix)
        };
        image.starts_with(&head)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn r(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    fn site(layout: Layout) -> SiteImages {
        let img = |n: &str, d: &str| SiteImage {
            name: r(n),
            digest: d.into(),
        };
        SiteImages {
            registry: "reg.site:5000".into(),
            prefix: "stoa".into(),
            layout,
            images: vec![
                img("bitnami/pgpool:4.6.3-debian-12-r0", D1),
                img("nginx:1.27", D2),
                img("localhost:5000/team/app:1", D1),
                img(&format!("registry.gostoa.dev/stoa/api@{D2}"), D2),
            ],
        }
    }

    /// The one mapping, a fixture per rule: Docker Hub's short forms, a
    /// registry with a port, a digest reference; both layouts, with and
    /// without a prefix.
    #[test]
    fn site_repository_per_layout() {
        let dig = format!("registry.gostoa.dev/stoa/api@{D2}");
        for (name, prefix_layout, mirror_layout) in [
            (
                "bitnami/pgpool:4.6.3",
                "bitnami/pgpool",
                "docker.io/bitnami/pgpool",
            ),
            ("nginx", "nginx", "docker.io/library/nginx"),
            (
                "docker.io/library/nginx:1",
                "library/nginx",
                "docker.io/library/nginx",
            ),
            (
                "localhost:5000/team/app:1",
                "team/app",
                "localhost:5000/team/app",
            ),
            (dig.as_str(), "stoa/api", "registry.gostoa.dev/stoa/api"),
        ] {
            let n = r(name);
            assert_eq!(site_repository(&n, "", Layout::Prefix), prefix_layout);
            assert_eq!(site_repository(&n, "", Layout::Mirror), mirror_layout);
            assert_eq!(
                site_repository(&n, "site/x", Layout::Mirror),
                format!("site/x/{mirror_layout}")
            );
            assert_eq!(
                site_repository(&n, "site", Layout::Prefix),
                format!("site/{prefix_layout}")
            );
        }
    }

    #[test]
    fn layout_parses_only_its_two_values() {
        #[derive(serde::Deserialize)]
        struct C {
            layout: Layout,
        }
        let c: C = serde_json::from_str(r#"{"layout":"mirror"}"#).unwrap();
        assert_eq!(c.layout, Layout::Mirror);
        let c: C = serde_json::from_str(r#"{"layout":"prefix"}"#).unwrap();
        assert_eq!(c.layout, Layout::Prefix);
        assert!(serde_json::from_str::<C>(r#"{"layout":"Mirror"}"#).is_err());
        assert!(serde_json::from_str::<C>(r#"{"layout":"flat"}"#).is_err());
        assert_eq!(Layout::default(), Layout::Prefix);
    }

    /// Mirror layout: the name kept (normalised), pinned by digest.
    #[test]
    fn mirror_layout_keeps_the_name_and_pins_the_digest() {
        let s = site(Layout::Mirror);
        assert_eq!(
            s.resolve("bitnami/pgpool:4.6.3-debian-12-r0").unwrap(),
            format!("docker.io/bitnami/pgpool:4.6.3-debian-12-r0@{D1}")
        );
        assert_eq!(
            s.resolve("nginx:1.27").unwrap(),
            format!("docker.io/library/nginx:1.27@{D2}")
        );
        assert_eq!(
            s.resolve(&format!("docker.io/library/nginx@{D2}")).unwrap(),
            format!("docker.io/library/nginx:1.27@{D2}")
        );
        assert_eq!(
            s.resolve("localhost:5000/team/app:1").unwrap(),
            format!("localhost:5000/team/app:1@{D1}")
        );
        assert_eq!(
            s.resolve(&format!("registry.gostoa.dev/stoa/api@{D2}"))
                .unwrap(),
            format!("registry.gostoa.dev/stoa/api@{D2}")
        );
        // a site name (a chart given the site registry) gets the kept name
        assert_eq!(
            s.resolve("reg.site:5000/stoa/docker.io/library/nginx:1.27")
                .unwrap(),
            format!("docker.io/library/nginx:1.27@{D2}")
        );
        assert!(s.resolve("nginx:1.26").is_err());
        assert!(s.is_site("nginx:1.27") && !s.is_site("redis:7"));
        // the prefix layout is unchanged
        let p = site(Layout::Prefix);
        assert_eq!(
            p.resolve("nginx:1.27").unwrap(),
            format!("reg.site:5000/stoa/nginx:1.27@{D2}")
        );
        assert!(!p.is_site("nginx:1.27") && p.is_site("reg.site:5000/stoa/nginx:1.27"));
    }
}
