//! Reading and deleting on the site registry for `prune --registry`: the
//! catalog and each repository's tags (both paginated with `?n=&last=` and
//! the `Link` header, the next page only on the registry's own origin), a
//! manifest's `Docker-Content-Digest` (HEAD with every manifest type in
//! `Accept`, so that the registry converts nothing), and the DELETE of a
//! manifest by digest. Names the registry sends are untrusted: a repository
//! or tag that is not a valid distribution name is refused here
//! ([`check_repo`], [`check_tag`]) and never put in a URL.

use std::io::Read;

use stoa_format::names::check_path_component;
use stoa_format::text::escape;

use super::*;

/// Every manifest type a pushed image can have: the registry answers with
/// the stored manifest's own digest, never a converted one.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Entries asked per page of the catalog and of a tag list.
const PAGE: usize = 100;
/// A page's body is read up to this size, then refused.
const MAX_PAGE_BYTES: u64 = 8 << 20;
/// At most this many pages of one listing (a registry whose `Link` never
/// ends is not followed for ever).
const MAX_PAGES: usize = 100_000;

/// What a DELETE of a manifest came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// 202: the manifest (and every tag pointing at it) is gone.
    Yes,
    /// 404: already gone (another tag with the same digest took it).
    Gone,
    /// 405: the registry does not allow deletes.
    Refused,
}

/// A repository name as the distribution spec has it: path components of
/// `[a-z0-9]+` joined by `.`, `_`, `__` or `-`, separated by `/`, at most
/// 255 bytes. Refuses `..`, empty components, control characters.
pub fn check_repo(repo: &str) -> std::result::Result<(), String> {
    if repo.len() > 255 {
        return Err(format!(
            "repository name of {} bytes (over 255)",
            repo.len()
        ));
    }
    for c in repo.split('/') {
        check_path_component(c)?;
    }
    Ok(())
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let b = tag.as_bytes();
    let ok_first = b
        .first()
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    let ok_rest = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !ok_first || !ok_rest || b.len() > 128 {
        return Err(format!(
            "tag {tag:?} is not [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
        ));
    }
    Ok(())
}

/// The `rel="next"` target of a `Link` header, if any.
fn next_link(h: Option<&str>) -> Option<String> {
    let h = h?;
    h.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.to_owned())
    })
}

/// The page size: [`PAGE`], or (debug builds only, for the e2e tests of
/// pagination) `STOA_UPDATER_TEST_REGISTRY_PAGE`.
fn page_size() -> usize {
    #[cfg(debug_assertions)]
    if let Some(n) = std::env::var("STOA_UPDATER_TEST_REGISTRY_PAGE")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    PAGE
}

impl Client {
    /// Every page of a listing that starts at `first` (a path on the
    /// registry): the strings of `field` in each page's JSON body, in order.
    /// `missing_ok`: a 404 on the first page is an empty list (a repository
    /// whose last tag went).
    fn list_pages(
        &mut self,
        scope: &str,
        first: String,
        field: &str,
        missing_ok: bool,
    ) -> std::result::Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut seen = std::collections::HashSet::new();
        while let Some(path) = next.take() {
            if !seen.insert(path.clone()) || seen.len() > MAX_PAGES {
                return Err(format!(
                    "the registry's Link goes round ({})",
                    escape(&path)
                ));
            }
            let url = self.url(&path)?;
            let resp = self.call(scope, &mut |a, auth| {
                let mut r = a.get(&url).set("Accept", "application/json");
                if let Some(h) = auth {
                    r = r.set("Authorization", h);
                }
                r.call().map_err(Box::new)
            });
            let resp = match resp {
                Ok(r) => r,
                Err(e) if missing_ok && out.is_empty() && e.status_code() == Some(404) => {
                    return Ok(out)
                }
                Err(e) => return Err(escape(&e.to_string()).into_owned()),
            };
            next = next_link(resp.header("link"));
            let mut body = Vec::new();
            resp.into_reader()
                .take(MAX_PAGE_BYTES + 1)
                .read_to_end(&mut body)
                .map_err(|e| format!("read the answer: {e}"))?;
            if body.len() as u64 > MAX_PAGE_BYTES {
                return Err(format!("a page over {MAX_PAGE_BYTES} bytes"));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
            match v.get(field) {
                Some(serde_json::Value::Array(a)) => {
                    out.extend(a.iter().filter_map(|x| x.as_str().map(str::to_owned)));
                }
                Some(serde_json::Value::Null) | None => {}
                Some(_) => return Err(format!("\"{field}\" is not a list")),
            }
        }
        Ok(out)
    }

    /// Every repository of the registry (`GET /v2/_catalog`, paginated).
    /// Names are returned as the registry sent them: check them.
    pub fn catalog(&mut self) -> Result<Vec<String>> {
        let first = format!("/v2/_catalog?n={}", page_size());
        self.list_pages("registry:catalog:*", first, "repositories", false)
            .map_err(|reason| UpdaterError::RegistryCatalog { reason })
    }

    /// Every tag of `repo` (checked by [`check_repo`] first), paginated.
    pub fn tags(&mut self, repo: &str) -> Result<Vec<String>> {
        let fail = |reason: String| UpdaterError::RegistryTags {
            repo: escape(repo).into_owned(),
            reason,
        };
        check_repo(repo).map_err(fail)?;
        let first = format!("/v2/{repo}/tags/list?n={}", page_size());
        self.list_pages(&format!("repository:{repo}:pull"), first, "tags", true)
            .map_err(fail)
    }

    /// The digest the registry has for `repo:tag` (HEAD of the manifest);
    /// None when the tag is gone (404).
    pub fn manifest_digest(&mut self, repo: &str, tag: &str) -> Result<Option<Sha256Digest>> {
        let fail = |reason: String| UpdaterError::RegistryManifest {
            repo: escape(repo).into_owned(),
            tag: escape(tag).into_owned(),
            reason,
        };
        check_repo(repo).map_err(fail)?;
        check_tag(tag).map_err(fail)?;
        let url = self
            .url(&format!("/v2/{repo}/manifests/{tag}"))
            .map_err(fail)?;
        let resp = self.call(&format!("repository:{repo}:pull"), &mut |a, auth| {
            let mut r = a.head(&url).set("Accept", MANIFEST_ACCEPT);
            if let Some(h) = auth {
                r = r.set("Authorization", h);
            }
            r.call().map_err(Box::new)
        });
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.status_code() == Some(404) => return Ok(None),
            Err(e) => return Err(fail(escape(&e.to_string()).into_owned())),
        };
        let h = resp.header("docker-content-digest").unwrap_or("");
        Sha256Digest::from_oci(h).map(Some).ok_or_else(|| {
            fail(format!(
                "the answer has no sha256 Docker-Content-Digest ({:?})",
                escape(h)
            ))
        })
    }

    /// `DELETE /v2/<repo>/manifests/<digest>` (for the tag `tag`, named in
    /// errors): deleted, already gone (404), or refused (405).
    pub fn delete_manifest(&mut self, repo: &str, tag: &str, d: &Sha256Digest) -> Result<Deleted> {
        let digest = format!("sha256:{}", d.hex());
        let fail = |reason: String| UpdaterError::RegistryDelete {
            repo: escape(repo).into_owned(),
            tag: escape(tag).into_owned(),
            reason: format!("manifest {digest}: {reason}"),
        };
        check_repo(repo).map_err(fail)?;
        let url = self
            .url(&format!("/v2/{repo}/manifests/{digest}"))
            .map_err(fail)?;
        let done = self.call(&format!("repository:{repo}:delete"), &mut |a, auth| {
            let mut r = a.delete(&url);
            if let Some(h) = auth {
                r = r.set("Authorization", h);
            }
            r.call().map_err(Box::new)
        });
        match done {
            Ok(_) => Ok(Deleted::Yes),
            Err(e) if e.status_code() == Some(404) => Ok(Deleted::Gone),
            Err(e) if e.status_code() == Some(405) => Ok(Deleted::Refused),
            Err(e) => Err(fail(escape(&e.to_string()).into_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_and_tag_names_from_the_registry_are_checked() {
        assert!(check_repo("site/stoa/api").is_ok());
        assert!(check_repo("site/a-b.c__d").is_ok());
        for bad in [
            "site/../etc",
            "site/..",
            "site//x",
            "site/x\u{1b}[2J",
            "site/x\n",
            "Site/X",
            "",
            "site/x?y",
        ] {
            assert!(check_repo(bad).is_err(), "{bad:?}");
        }
        assert!(check_repo(&format!("site/{}", "a".repeat(260))).is_err());
        assert!(check_tag("2.0.0").is_ok());
        assert!(check_tag("_x-Y.1").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a\u{7}", &"a".repeat(129), "a:b"] {
            assert!(check_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn link_next() {
        assert_eq!(
            next_link(Some("</v2/_catalog?last=b&n=2>; rel=\"next\"")).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link(Some("</x>; rel=\"prev\"")), None);
        assert_eq!(next_link(None), None);
        assert_eq!(next_link(Some("garbage")), None);
    }
}
