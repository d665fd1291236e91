//! The read-only OCI distribution API over the catalog: which request gets
//! which answer. `GET /v2/`, manifests and blobs by tag or digest (GET and
//! HEAD), `tags/list`, `_catalog`, the referrers API; every other method is
//! 405 `UNSUPPORTED`; a bad name, reference or digest 400, an unknown one
//! 404, a bad `Range` 416, each in the OCI error JSON.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use stoa_format::oci::MT_OCI_INDEX;
use stoa_format::Sha256Digest;

use super::http::{self, error_response, write_small, ByteRange, Head, Request};
use super::store::{Catalog, Stamp, Store};
use super::stream::{send_blob, Sent};

/// The longest repository name accepted (as docker-registry).
pub const MAX_NAME: usize = 255;
/// The most entries one `_catalog` or `tags/list` page holds.
pub const MAX_PAGE: usize = 10_000;

/// What every worker shares: the store and its current catalog.
#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    catalog: Mutex<(Stamp, Arc<Catalog>)>,
    pub verbose: bool,
}

impl Shared {
    pub fn new(store: Store, catalog: Catalog, verbose: bool) -> Self {
        let stamp = store.stamp();
        Self {
            store,
            catalog: Mutex::new((stamp, Arc::new(catalog))),
            verbose,
        }
    }

    /// The catalog, rebuilt first when `state.json` changed since (an
    /// apply or rollback committed). A state that cannot be read keeps
    /// the last good catalog (said on stderr).
    pub fn catalog(&self) -> Arc<Catalog> {
        let mut g = match self.catalog.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now = self.store.stamp();
        if now != g.0 {
            match self.store.load() {
                Ok(c) => {
                    eprintln!(
                        "stoa-updater: serve: state changed; serving releases {}",
                        versions(&c)
                    );
                    *g = (now, Arc::new(c));
                }
                Err(e) => {
                    eprintln!("stoa-updater: serve: state changed but cannot be read ({e}); serving the releases read before");
                    g.0 = now;
                }
            }
        }
        g.1.clone()
    }
}

/// The served releases, for log lines.
pub fn versions(c: &Catalog) -> String {
    if c.releases.is_empty() {
        return "(none)".into();
    }
    c.releases
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a response ended, for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    KeepAlive,
    Close,
}

/// One response being written: whether the request was a HEAD and whether
/// the connection closes after it.
struct Answer<'w> {
    w: &'w mut dyn Write,
    is_head: bool,
    close: bool,
}

impl Answer<'_> {
    /// What the connection does once this response is written whole.
    fn after(&self) -> After {
        if self.close {
            After::Close
        } else {
            After::KeepAlive
        }
    }

    /// A response held in memory (JSON, a manifest, an error).
    fn small(&mut self, mut h: Head, body: &[u8]) -> io::Result<After> {
        h.close = self.close;
        write_small(&mut WriteRef(self.w), h, body, self.is_head)?;
        Ok(self.after())
    }

    /// The OCI error JSON.
    fn error(&mut self, status: u16, code: &str, msg: &str) -> io::Result<After> {
        let (h, body) = error_response(status, code, msg);
        let h = if status == 405 {
            h.with("Allow", "GET, HEAD")
        } else {
            h
        };
        self.small(h, &body)
    }

    /// A JSON list page, with its `Link` to the next page.
    fn page(&mut self, doc: serde_json::Value, link: Option<String>) -> io::Result<After> {
        let body = serde_json::to_vec(&doc).unwrap_or_default();
        let mut h = Head::new(200, body.len() as u64).with("Content-Type", "application/json");
        if let Some(l) = link {
            h = h.with("Link", l);
        }
        self.small(h, &body)
    }

    /// 404 `NAME_UNKNOWN`.
    fn no_repo(&mut self, name: &str) -> io::Result<After> {
        self.error(
            404,
            "NAME_UNKNOWN",
            &format!("repository {name} is not served"),
        )
    }
}

/// Answers one request on `w`.
pub fn handle(sh: &Shared, req: &Request, w: &mut impl Write) -> io::Result<After> {
    let mut a = Answer {
        w,
        is_head: req.method == "HEAD",
        close: !req.keep_alive() || req.has_body(),
    };
    if req.method != "GET" && !a.is_head {
        return a.error(
            405,
            "UNSUPPORTED",
            "this registry is read-only (stoa-updater serve): only GET and HEAD",
        );
    }
    let (segs, query) = match http::split_target(&req.target) {
        Ok(s) => s,
        Err(why) => return a.error(400, "NAME_INVALID", why),
    };
    let route = match Route::parse(&segs) {
        Ok(r) => r,
        Err((status, code, msg)) => return a.error(status, code, &msg),
    };
    let cat = sh.catalog();
    match route {
        Route::Base => a.small(
            Head::new(200, 2).with("Content-Type", "application/json"),
            b"{}",
        ),
        Route::Catalog => {
            let names: Vec<&String> = cat.repos.keys().collect();
            match paginate(&names, query, "/v2/_catalog") {
                Err(m) => a.error(400, "UNSUPPORTED", &m),
                Ok((page, link)) => a.page(serde_json::json!({ "repositories": page }), link),
            }
        }
        Route::Tags(name) => {
            let Some(repo) = cat.repos.get(&name) else {
                return a.no_repo(&name);
            };
            let tags: Vec<&String> = repo.tags.keys().collect();
            match paginate(&tags, query, &format!("/v2/{name}/tags/list")) {
                Err(m) => a.error(400, "UNSUPPORTED", &m),
                Ok((page, link)) => a.page(serde_json::json!({"name": name, "tags": page}), link),
            }
        }
        Route::Manifest(name, reference) => manifest(sh, &cat, &mut a, &name, reference),
        Route::Referrers(name, d) => referrers(&cat, &mut a, &name, &d, query),
        Route::Blob(name, d) => blob(sh, &cat, &mut a, req, &name, &d),
    }
}

/// `GET|HEAD /v2/<name>/manifests/<tag|digest>`.
fn manifest(
    sh: &Shared,
    cat: &Catalog,
    a: &mut Answer<'_>,
    name: &str,
    reference: Ref,
) -> io::Result<After> {
    let Some(repo) = cat.repos.get(name) else {
        return a.no_repo(name);
    };
    let d = match reference {
        Ref::Tag(t) => match repo.tags.get(&t) {
            Some(d) => *d,
            None => {
                return a.error(
                    404,
                    "MANIFEST_UNKNOWN",
                    &format!("{name}:{t} is not served"),
                )
            }
        },
        Ref::Digest(d) => d,
    };
    let Some(info) = repo.manifests.get(&d) else {
        return a.error(
            404,
            "MANIFEST_UNKNOWN",
            &format!("{name}@{} is not served", d.oci()),
        );
    };
    match sh.store.read_manifest(&cat.sizes, &d) {
        Ok(bytes) => a.small(
            Head::new(200, bytes.len() as u64)
                .with("Content-Type", info.media_type.clone())
                .with("Docker-Content-Digest", d.oci())
                .with("ETag", format!("\"{}\"", d.oci())),
            &bytes,
        ),
        Err(why) => {
            eprintln!(
                "stoa-updater: serve: manifest {} of {name} not served: {why}",
                d.oci()
            );
            a.error(
                500,
                "UNKNOWN",
                &format!("manifest {} in the store is damaged; not served", d.oci()),
            )
        }
    }
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=…]`: an OCI index.
fn referrers(
    cat: &Catalog,
    a: &mut Answer<'_>,
    name: &str,
    d: &Sha256Digest,
    query: &str,
) -> io::Result<After> {
    let Some(repo) = cat.repos.get(name) else {
        return a.no_repo(name);
    };
    let filter = http::query_param(query, "artifactType").map(crate::tool::percent_decode);
    let mut found: Vec<(&Sha256Digest, &super::store::ManifestInfo)> = repo
        .manifests
        .iter()
        .filter(|(_, m)| m.subject == Some(*d))
        .filter(|(_, m)| {
            filter
                .as_ref()
                .is_none_or(|f| m.artifact_type.as_deref() == Some(f.as_str()))
        })
        .collect();
    found.sort_by_key(|(k, _)| **k);
    let manifests: Vec<serde_json::Value> = found
        .iter()
        .map(|(k, m)| {
            let mut v =
                serde_json::json!({"mediaType": m.media_type, "digest": k.oci(), "size": m.size});
            if let Some(a) = &m.artifact_type {
                v["artifactType"] = a.clone().into();
            }
            if let Some(a) = &m.annotations {
                v["annotations"] = a.clone();
            }
            v
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests
    }))
    .unwrap_or_default();
    let mut h = Head::new(200, body.len() as u64).with("Content-Type", MT_OCI_INDEX);
    if filter.is_some() {
        h = h.with("OCI-Filters-Applied", "artifactType");
    }
    a.small(h, &body)
}

/// `GET|HEAD /v2/<name>/blobs/<digest>` with `Range`: the store's file,
/// re-hashed as it is sent (a damaged blob is never sent whole).
fn blob(
    sh: &Shared,
    cat: &Catalog,
    a: &mut Answer<'_>,
    req: &Request,
    name: &str,
    d: &Sha256Digest,
) -> io::Result<After> {
    let Some(repo) = cat.repos.get(name) else {
        return a.no_repo(name);
    };
    let size = match cat.sizes.get(d) {
        Some(s) if repo.blobs.contains(d) || repo.manifests.contains_key(d) => *s,
        _ => {
            return a.error(
                404,
                "BLOB_UNKNOWN",
                &format!("blob {} is not in {name}", d.oci()),
            )
        }
    };
    let range = match http::parse_range(req.header("range"), size) {
        Ok(r) => r,
        Err(()) => {
            let (h, body) = error_response(
                416,
                "SIZE_INVALID",
                &format!("Range {:?} cannot be served for a blob of {size} bytes (one range of bytes=START-END, START-, or -N)", req.header("range").unwrap_or("")),
            );
            return a.small(h.with("Content-Range", format!("bytes */{size}")), &body);
        }
    };
    let path = sh.store.blob_path(d);
    let Some(mut f) = open_blob(&path, d, size) else {
        return a.error(
            500,
            "UNKNOWN",
            &format!(
                "blob {} cannot be read from the store, or is damaged; not served",
                d.oci()
            ),
        );
    };
    let (status, r) = match range {
        Some(r) => (206, r),
        None if size == 0 => {
            // the empty blob: nothing to send, its digest is checked
            if *d != Sha256Digest::of(b"") {
                return a.error(500, "UNKNOWN", "damaged empty blob");
            }
            return a.small(blob_head(200, 0, d), b"");
        }
        None => (
            200,
            ByteRange {
                start: 0,
                end: size - 1,
            },
        ),
    };
    let mut h = blob_head(status, r.end - r.start + 1, d);
    if status == 206 {
        h = h.with(
            "Content-Range",
            format!("bytes {}-{}/{size}", r.start, r.end),
        );
    }
    if a.is_head {
        return a.small(h, b"");
    }
    h.close = a.close;
    a.w.write_all(&h.to_bytes())?;
    match send_blob(&mut f, d, size, r, &mut WriteRef(a.w))? {
        Sent::Whole => Ok(a.after()),
        Sent::Damaged { sent, reason } => {
            eprintln!(
                "stoa-updater: serve: blob {} is damaged in the store ({}: {reason}); response to {} cut after {sent} of {} bytes",
                d.oci(),
                path.display(),
                req.target,
                r.end - r.start + 1
            );
            Ok(After::Close)
        }
    }
}

/// The store's file of blob `d`, when it opens and has the signed size;
/// else None, the failure logged with the digest and the path.
fn open_blob(path: &std::path::Path, d: &Sha256Digest, size: u64) -> Option<std::fs::File> {
    let opened = std::fs::File::open(path).and_then(|f| f.metadata().map(|m| (f, m)));
    match opened {
        Err(e) => {
            eprintln!(
                "stoa-updater: serve: blob {} not served: {}: {e}",
                d.oci(),
                path.display()
            );
            None
        }
        Ok((_, meta)) if meta.len() != size => {
            eprintln!(
                "stoa-updater: serve: blob {} is damaged in the store ({}: {} bytes, the release signed {size}); not served",
                d.oci(),
                path.display(),
                meta.len()
            );
            None
        }
        Ok((f, _)) => Some(f),
    }
}

fn blob_head(status: u16, len: u64, d: &Sha256Digest) -> Head {
    Head::new(status, len)
        .with("Content-Type", "application/octet-stream")
        .with("Docker-Content-Digest", d.oci())
        .with("Accept-Ranges", "bytes")
        .with("ETag", format!("\"{}\"", d.oci()))
}

/// `&mut dyn Write` as a sized writer.
struct WriteRef<'a>(&'a mut dyn Write);
impl Write for WriteRef<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `?n=&last=` over sorted names: the page and the `Link` to the next.
fn paginate<'a>(
    all: &[&'a String],
    query: &str,
    path: &str,
) -> Result<(Vec<&'a String>, Option<String>), String> {
    let n = match http::query_param(query, "n") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| format!("n={v:?} is not a number"))?
                .min(MAX_PAGE),
        ),
    };
    let last = http::query_param(query, "last").map(crate::tool::percent_decode);
    let from = match &last {
        Some(l) => all.partition_point(|x| x.as_str() <= l.as_str()),
        None => 0,
    };
    let rest = &all[from..];
    let take = n.unwrap_or(MAX_PAGE).min(rest.len());
    let page = rest[..take].to_vec();
    let link = match (n, page.last()) {
        (Some(n), Some(l)) if take < rest.len() => {
            Some(format!("<{path}?n={n}&last={l}>; rel=\"next\""))
        }
        _ => None,
    };
    Ok((page, link))
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Tag(String),
    Digest(Sha256Digest),
}

/// A request path, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, Ref),
    Blob(String, Sha256Digest),
    Referrers(String, Sha256Digest),
}

type RouteError = (u16, &'static str, String);

impl Route {
    /// From the decoded segments (`["v2", …]`).
    pub fn parse(segs: &[String]) -> Result<Self, RouteError> {
        let not_found = || {
            (
                404,
                "NAME_UNKNOWN",
                "no such endpoint (this is an OCI registry: /v2/…)".to_owned(),
            )
        };
        let Some((first, rest)) = segs.split_first() else {
            return Err(not_found());
        };
        if first != "v2" {
            return Err(not_found());
        }
        let s: Vec<&str> = rest.iter().map(String::as_str).collect();
        match s.as_slice() {
            [] => return Ok(Self::Base),
            ["_catalog"] => return Ok(Self::Catalog),
            _ => {}
        }
        let n = s.len();
        // /v2/<name>/blobs/uploads/[<id>]: the upload API, which is not served
        if s.windows(2).any(|w| w == ["blobs", "uploads"]) {
            return Err((405, "UNSUPPORTED", "this registry is read-only".into()));
        }
        let (name_segs, route): (&[&str], _) = if n >= 3 && s[n - 2] == "tags" && s[n - 1] == "list"
        {
            (&s[..n - 2], 't')
        } else if n >= 3 && s[n - 2] == "manifests" {
            (&s[..n - 2], 'm')
        } else if n >= 3 && s[n - 2] == "blobs" {
            (&s[..n - 2], 'b')
        } else if n >= 3 && s[n - 2] == "referrers" {
            (&s[..n - 2], 'r')
        } else {
            return Err(not_found());
        };
        let name = check_name(name_segs)?;
        let last = s[n - 1];
        match route {
            't' => Ok(Self::Tags(name)),
            'm' => Ok(Self::Manifest(name, parse_ref(last)?)),
            'b' => Ok(Self::Blob(name, parse_digest(last)?)),
            _ => Ok(Self::Referrers(name, parse_digest(last)?)),
        }
    }
}

/// A repository name: path components of `[a-z0-9]+` joined by `.`, `_`,
/// `__` or `-`, at most [`MAX_NAME`] characters.
fn check_name(segs: &[&str]) -> Result<String, RouteError> {
    let name = segs.join("/");
    if name.len() > MAX_NAME {
        return Err((
            400,
            "NAME_INVALID",
            format!("the repository name is longer than {MAX_NAME} characters"),
        ));
    }
    for c in segs {
        stoa_format::names::check_path_component(c)
            .map_err(|e| (400, "NAME_INVALID", format!("repository name: {e}")))?;
    }
    Ok(name)
}

fn parse_digest(s: &str) -> Result<Sha256Digest, RouteError> {
    let bad = || {
        (
            400,
            "DIGEST_INVALID",
            format!("{s:?} is not a sha256:<64 hex> digest"),
        )
    };
    let hex = s.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    Sha256Digest::from_hex(hex).ok_or_else(bad)
}

fn parse_ref(s: &str) -> Result<Ref, RouteError> {
    if s.contains(':') {
        return parse_digest(s).map(Ref::Digest);
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c));
    if !ok {
        return Err((
            400,
            "MANIFEST_INVALID",
            format!("{s:?} is not a tag or a digest"),
        ));
    }
    Ok(Ref::Tag(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(p: &str) -> Result<Route, RouteError> {
        let (segs, _) = http::split_target(p).map_err(|e| (400, "NAME_INVALID", e.to_owned()))?;
        Route::parse(&segs)
    }

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn registry_paths_are_routed() {
        assert_eq!(route("/v2/").unwrap(), Route::Base);
        assert_eq!(route("/v2").unwrap(), Route::Base);
        assert_eq!(route("/v2/_catalog").unwrap(), Route::Catalog);
        assert_eq!(
            route("/v2/site/stoa/api/tags/list").unwrap(),
            Route::Tags("site/stoa/api".into())
        );
        assert_eq!(
            route("/v2/site/stoa/api/manifests/2.0.0").unwrap(),
            Route::Manifest("site/stoa/api".into(), Ref::Tag("2.0.0".into()))
        );
        let d = Sha256Digest::from_oci(D).unwrap();
        assert_eq!(
            route(&format!("/v2/a/manifests/{D}")).unwrap(),
            Route::Manifest("a".into(), Ref::Digest(d))
        );
        assert_eq!(
            route(&format!("/v2/a/blobs/{D}")).unwrap(),
            Route::Blob("a".into(), d)
        );
        assert_eq!(
            route(&format!("/v2/a/b/referrers/{D}")).unwrap(),
            Route::Referrers("a/b".into(), d)
        );
        // a repository may be named like a route word
        assert_eq!(
            route("/v2/manifests/manifests/x").unwrap(),
            Route::Manifest("manifests".into(), Ref::Tag("x".into()))
        );
    }

    #[test]
    fn bad_names_references_and_digests_are_400() {
        let long = format!("/v2/{}/manifests/x", "a".repeat(MAX_NAME + 1));
        for p in [
            long.as_str(),
            "/v2/Site/api/manifests/x",
            "/v2/a-/manifests/x",
            "/v2/a/manifests/-x",
            "/v2/a/manifests/sha256:abc",
            "/v2/a/manifests/sha512:aa",
            "/v2/a/blobs/latest",
        ] {
            assert_eq!(route(p).unwrap_err().0, 400, "{p}");
        }
        assert_eq!(route("/v2/a/blobs/uploads/").unwrap_err().0, 405);
        assert_eq!(route("/v3/").unwrap_err().0, 404);
        assert_eq!(route("/v2/a/b").unwrap_err().0, 404);
    }

    #[test]
    fn pages_follow_n_and_last() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let all: Vec<&String> = names.iter().collect();
        let (p, l) = paginate(&all, "n=2", "/v2/_catalog").unwrap();
        assert_eq!(p, ["a", "b"]);
        assert_eq!(l.unwrap(), "</v2/_catalog?n=2&last=b>; rel=\"next\"");
        let (p, l) = paginate(&all, "n=2&last=b", "/v2/_catalog").unwrap();
        assert_eq!(p, ["c", "d"]);
        assert!(l.is_none());
        assert_eq!(paginate(&all, "", "/x").unwrap().0.len(), 4);
        assert!(paginate(&all, "n=x", "/x").is_err());
    }
}
