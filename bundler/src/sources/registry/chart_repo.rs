//! Charts from classic Helm repositories, the way `helm repo add` users know
//! them: `<repo>/index.yaml` lists each chart's versions with their archive
//! URLs and sha256 digests. The archive is downloaded into the content
//! cache and kept only when its digest matches the index; an index entry
//! without a digest is refused (nothing is taken unchecked).
//!
//! `https://` uses the system roots plus `--ca-cert`; `http://` is allowed
//! only for hosts named by `--insecure-registry`.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use futures_util::StreamExt;
use serde::Deserialize;
use stoa_format::Sha256Digest;

use super::transport::classify_reqwest;
use super::{Puller, RETRY};
use crate::error::{BundlerError, Result};
use stoa_format::retry::{parse_retry_after, TransportError};

/// The most bytes of an index.yaml read into memory.
pub const MAX_INDEX_SIZE: usize = 64 << 20;
/// The most bytes of a chart archive.
pub const MAX_CHART_ARCHIVE: u64 = crate::sources::chart::MAX_CHART_SIZE;

#[derive(Debug, Deserialize)]
struct IndexFile {
    #[serde(default)]
    entries: HashMap<String, Vec<IndexEntry>>,
}

#[derive(Debug, Deserialize)]
struct IndexEntry {
    version: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    urls: Vec<String>,
}

/// `scheme://host[:port]` → `host[:port]`.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// Resolves a chart URL from the index against the repository URL.
fn join_url(repo: &str, u: &str) -> String {
    if u.starts_with("https://") || u.starts_with("http://") {
        u.to_owned()
    } else if let Some(abs) = u.strip_prefix('/') {
        let scheme_end = repo.find("://").map_or(0, |i| i + 3);
        let host_end = repo[scheme_end..]
            .find('/')
            .map_or(repo.len(), |i| scheme_end + i);
        format!("{}/{abs}", &repo[..host_end])
    } else {
        format!("{}/{u}", repo.trim_end_matches('/'))
    }
}

/// Downloads `url` with retries: into memory (bounded) or into `sink`.
async fn get(
    p: &Puller,
    url: &str,
    limit: u64,
    mut sink: impl FnMut(Option<&[u8]>) -> std::io::Result<()>,
) -> std::result::Result<(), String> {
    let mut attempt = 1;
    loop {
        let outcome: std::result::Result<(), TransportError> = async {
            let local = |e: std::io::Error| TransportError::Other(e.to_string());
            sink(None).map_err(local)?; // restart
            let resp = p
                .http()
                .map_err(TransportError::Other)?
                .get(url)
                .send()
                .await
                .map_err(|e| classify_reqwest(&e))?;
            let st = resp.status();
            if !st.is_success() {
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                return Err(TransportError::status(
                    st.as_u16(),
                    retry_after,
                    format!("HTTP {st}"),
                ));
            }
            let mut n = 0u64;
            let mut body = resp.bytes_stream();
            while let Some(c) = body.next().await {
                let c = c.map_err(|e| TransportError::Body(e.to_string()))?;
                n += c.len() as u64;
                if n > limit {
                    return Err(TransportError::Other(format!(
                        "larger than the {limit}-byte limit"
                    )));
                }
                sink(Some(&c)).map_err(local)?;
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => match RETRY.delay(attempt, &e) {
                Some(delay) => {
                    p.counters_add_retry();
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None if e.is_retryable() => return Err(format!("{e} (after {attempt} attempts)")),
                None => return Err(e.to_string()),
            },
        }
    }
}

/// Downloads and parses `<repo>/index.yaml`; an error names the URL.
fn fetch_index(
    p: &Puller,
    repo: &str,
) -> std::result::Result<(String, IndexFile), (String, String)> {
    let index_url = format!("{}/index.yaml", repo.trim_end_matches('/'));
    let mut text = Vec::new();
    p.block_on(get(p, &index_url, MAX_INDEX_SIZE as u64, |c| {
        match c {
            None => text.clear(),
            Some(b) => text.extend_from_slice(b),
        }
        Ok(())
    }))
    .map_err(|m| (index_url.clone(), m))?;
    p.counters_add_manifest();
    let index: IndexFile = serde_yaml::from_slice(&text).map_err(|e| {
        (
            index_url.clone(),
            format!("not a Helm repository index: {e}"),
        )
    })?;
    Ok((index_url, index))
}

/// The versions of chart `name` the repository at `repo` lists, through
/// its `--chart-repo-mirror`s first (the first index that answers).
pub fn versions(p: &Puller, repo: &str, name: &str) -> Result<Vec<String>> {
    through_mirrors(p, repo, |url| versions_from(p, url, name))
}

/// The versions one repository URL lists.
fn versions_from(p: &Puller, repo: &str, name: &str) -> Result<Vec<String>> {
    let err = |url: &str, m: String| BundlerError::ChartPull {
        chart: name.to_owned(),
        url: url.to_owned(),
        message: m,
    };
    if repo.starts_with("http://") && !p.is_insecure(host_of(repo)) {
        return Err(err(
            repo,
            format!("plain HTTP needs --insecure-registry {}", host_of(repo)),
        ));
    }
    let (_, index) = fetch_index(p, repo).map_err(|(u, m)| err(&u, m))?;
    Ok(index
        .entries
        .get(name)
        .map(|v| v.iter().map(|e| e.version.clone()).collect())
        .unwrap_or_default())
}

/// Fetches chart `name` `version` from the repository at `repo` into the
/// cache, through its `--chart-repo-mirror`s first (in the order given);
/// returns the cached archive's path and its digest. A mirror is a
/// repository like any other: its index.yaml gives the digest, and the
/// archive must match it and carry the requested name and version.
pub fn pull(p: &Puller, repo: &str, name: &str, version: &str) -> Result<(PathBuf, String)> {
    through_mirrors(p, repo, |url| pull_from(p, url, name, version))
}

/// Runs `f` on each `--chart-repo-mirror` of `repo`, then on `repo`
/// itself; the first success wins. A failed mirror is reported (unless
/// quiet) and the next one tried; when all fail, the error says what each
/// mirror answered.
fn through_mirrors<T>(p: &Puller, repo: &str, f: impl Fn(&str) -> Result<T>) -> Result<T> {
    let urls = super::mirrors::chart_repo_urls(p.chart_repo_mirrors(), repo);
    let mut tried: Vec<String> = Vec::new();
    let n = urls.len();
    for (i, (url, _mirror)) in urls.into_iter().enumerate() {
        match f(&url) {
            Ok(v) => return Ok(v),
            Err(e) if i + 1 < n => {
                if !p.quiet() {
                    eprintln!(
                        "stoa-bundler: chart repository mirror {url} failed, trying the next: {e}"
                    );
                }
                tried.push(format!("mirror {url}: {e}"));
            }
            Err(BundlerError::ChartPull {
                chart,
                url,
                message,
            }) if !tried.is_empty() => {
                return Err(BundlerError::ChartPull {
                    chart,
                    url,
                    message: format!("{message} (tried first: {})", tried.join("; ")),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Err(BundlerError::ChartPull {
        chart: String::new(),
        url: repo.to_owned(),
        message: "nowhere to pull from".into(),
    })
}

/// Fetches the chart from one repository URL.
fn pull_from(p: &Puller, repo: &str, name: &str, version: &str) -> Result<(PathBuf, String)> {
    let err = |url: &str, m: String| BundlerError::ChartPull {
        chart: format!("{name} {version}"),
        url: url.to_owned(),
        message: m,
    };
    let check_scheme = |url: &str| -> Result<()> {
        if url.starts_with("https://") {
            Ok(())
        } else if url.starts_with("http://") {
            if p.is_insecure(host_of(url)) {
                Ok(())
            } else {
                Err(err(
                    url,
                    format!("plain HTTP needs --insecure-registry {}", host_of(url)),
                ))
            }
        } else {
            Err(err(url, "not an http(s) URL".into()))
        }
    };
    check_scheme(repo)?;
    let (index_url, index) = fetch_index(p, repo).map_err(|(u, m)| err(&u, m))?;
    let versions = index.entries.get(name).ok_or_else(|| {
        err(
            &index_url,
            format!("no chart named {name:?} in the repository"),
        )
    })?;
    let entry = versions
        .iter()
        .find(|e| e.version == version)
        .ok_or_else(|| {
            let mut have: Vec<&str> = versions.iter().map(|e| e.version.as_str()).collect();
            have.sort();
            err(
                &index_url,
                format!(
                    "chart {name:?} has no version {version:?} (it has: {})",
                    have.join(", ")
                ),
            )
        })?;
    let digest_text = entry.digest.as_deref().ok_or_else(|| {
        err(
            &index_url,
            format!("the index gives no digest for {name} {version}; refusing an unchecked chart"),
        )
    })?;
    let digest = Sha256Digest::from_oci(digest_text)
        .or_else(|| Sha256Digest::from_hex(digest_text))
        .ok_or_else(|| {
            err(
                &index_url,
                format!("the index digest {digest_text:?} is not a sha256"),
            )
        })?;
    let url = entry
        .urls
        .first()
        .map(|u| join_url(repo, u))
        .ok_or_else(|| err(&index_url, format!("no URL for {name} {version}")))?;
    check_scheme(&url)?;

    let cache = p.cache();
    let path = cache.blob_path(&digest);
    if path.is_file() {
        p.counters_add_cached();
        return Ok((path, digest.oci()));
    }
    let mut w = cache
        .writer(&digest)
        .map_err(|e| err(&url, format!("cache: {e}")))?;
    p.block_on(get(p, &url, MAX_CHART_ARCHIVE, |c| match c {
        None => w.restart(),
        Some(b) => w.write_all(b),
    }))
    .map_err(|m| err(&url, m))?;
    let n = w.len();
    w.commit(n).map_err(|e| {
        err(
            &url,
            format!("{e} (the digest is the one in {index_url})").replace("registry", "repository"),
        )
    })?;
    p.counters_add_download(n);
    Ok((path, digest.oci()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            join_url("http://h:1/charts/", "a-1.tgz"),
            "http://h:1/charts/a-1.tgz"
        );
        assert_eq!(
            join_url("http://h:1/charts", "/x/a.tgz"),
            "http://h:1/x/a.tgz"
        );
        assert_eq!(
            join_url("http://h:1/c", "https://o/a.tgz"),
            "https://o/a.tgz"
        );
        assert_eq!(host_of("http://127.0.0.1:8080/x"), "127.0.0.1:8080");
    }
}
