//! Where an image comes from on site: [`SiteImages::resolve`] maps a
//! rendered image to the one the bundle verified under the same name (Docker
//! Hub's short forms normalised), as `<registry>/<prefix>/<path>:<tag>@<digest>`.

use stoa_format::names::ImageRef;

/// Where the bundle's images are served on site: `<host>[/<prefix>]`, and
/// each verified image with its manifest digest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SiteImages {
    /// `host[:port]` of the site registry.
    pub registry: String,
    /// The site's repository prefix (may be empty).
    pub prefix: String,
    /// The bundle's images: name as the manifest has it, and `sha256:…`.
    pub images: Vec<SiteImage>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SiteImage {
    pub name: ImageRef,
    pub digest: String,
}

/// `docker.io` for Docker Hub's names, and `library/` for its official
/// images, so `busybox`, `docker.io/busybox` and
/// `index.docker.io/library/busybox` are one image.
fn normalised(r: &ImageRef) -> (String, String) {
    let domain = match r.domain() {
        None | Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => "docker.io",
        Some(d) => d,
    };
    let path = if domain == "docker.io" && !r.path().contains('/') {
        format!("library/{}", r.path())
    } else {
        r.path().to_owned()
    };
    (domain.to_owned(), path)
}

impl SiteImages {
    /// The repository an image is pushed to on site (`<prefix>/<path>`, as
    /// the updater's push names it).
    fn site_repo(&self, name: &ImageRef) -> String {
        if self.prefix.is_empty() {
            name.path().to_owned()
        } else {
            format!("{}/{}", self.prefix, name.path())
        }
    }

    /// The site name for `image` as a chart rendered it:
    /// `<registry>/<prefix>/<path>:<tag>@<digest>`, or why it cannot be served.
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
        Ok(format!(
            "{}/{}{}@{}",
            self.registry,
            self.site_repo(&hit.name),
            tag.map(|t| format!(":{t}")).unwrap_or_default(),
            hit.digest
        ))
    }

    /// Whether `image` is already served by the site registry.
    pub fn is_site(&self, image: &str) -> bool {
        let head = if self.prefix.is_empty() {
            format!("{}/", self.registry)
        } else {
            format!("{}/{}/", self.registry, self.prefix)
        };
        image.starts_with(&head)
    }
}
