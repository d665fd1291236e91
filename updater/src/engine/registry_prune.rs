//! `prune --registry [--dry-run]`: the site registry's tags no retained
//! release needs, deleted through the distribution API where the registry
//! allows it. What is needed comes from the releases kept in state.json,
//! each image mapped to its site repository and tag by the one mapping push
//! uses ([`map_name`]); only repositories under the configured `[registry]
//! prefix` are looked at. A tag whose manifest digest a needed tag (or a
//! needed index's platform manifest) of the same repository also has is
//! never deleted (a DELETE by digest would take the needed one too). A
//! registry that refuses deletes (405) is reported per tag, not an error.
//! An image's carried upstream signature (its `sha256-<hex>.sig` tag) is
//! needed as long as the image is.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use stoa_format::oci::{is_index, ImageIndex};
use stoa_format::text::escape;
use stoa_format::Sha256Digest;

use crate::error::{Result, UpdaterError};
use crate::registry::{self, check_repo, check_tag, map_name, site_registry_ref, Deleted};
use crate::stage;

use super::Site;

/// The hint every `prune --registry` report carries.
pub const GC_HINT: &str = "blob space is reclaimed only by the registry's own garbage collection \
(`registry garbage-collect <config>`, run with the registry read-only or stopped)";

/// One tag of the site registry and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryTag {
    pub repo: String,
    pub tag: String,
    /// The manifest digest the registry has for it, when it was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Why it was skipped or not deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `prune --registry` deleted, or (`dry_run`) would delete.
#[derive(Debug, Default, Serialize)]
pub struct RegistryPruneReport {
    pub dry_run: bool,
    /// `host[:port]/prefix`, the part of the registry looked at.
    pub registry: String,
    /// Repositories under the prefix, and how many of their tags the
    /// retained releases need (kept).
    pub repositories: usize,
    pub needed_tags: usize,
    /// Tags no retained release needs, deleted (dry run: to delete).
    pub deleted: Vec<RegistryTag>,
    /// Unneeded tags left: their digest is needed, or they were gone.
    pub skipped: Vec<RegistryTag>,
    /// Unneeded tags the registry would not delete (405).
    pub refused: Vec<RegistryTag>,
    /// Names from the registry that are not valid repository or tag names
    /// (escaped): never used in a request.
    pub invalid: Vec<String>,
    pub hint: &'static str,
}

/// What the retained releases need, per site repository: tags and digests.
#[derive(Debug, Default)]
struct Needed {
    tags: BTreeMap<String, BTreeSet<String>>,
    digests: BTreeMap<String, BTreeSet<String>>,
}

/// `repo` is `prefix` itself or below it.
fn under_prefix(repo: &str, prefix: &str) -> bool {
    repo == prefix
        || repo
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

impl Site {
    /// The site repositories, tags and digests the `retained` releases'
    /// images are pushed to (the index's platform manifests too, pushed by
    /// digest): push's own mapping. A release (or index) that cannot be
    /// read fails the whole prune (nothing could be known safe to delete).
    fn registry_needed(&self, retained: &[semver::Version], prefix: &str) -> Result<Needed> {
        let mut n = Needed::default();
        for v in retained {
            let m = stage::load_release(&self.sd, v)?;
            for img in &m.images {
                let layout = self
                    .cfg
                    .registry
                    .as_ref()
                    .map(|r| r.layout)
                    .unwrap_or_default();
                let t = map_name(&img.name, prefix, layout);
                let d = img.digest.digest();
                let digests = n.digests.entry(t.repo.clone()).or_default();
                digests.insert(format!("sha256:{}", d.hex()));
                if is_index(&img.media_type) {
                    let p = self.sd.blob(&d.hex());
                    let bytes = std::fs::read(&p)
                        .map_err(|e| UpdaterError::io("read staged index", &p, e))?;
                    let idx: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
                        UpdaterError::io("read staged index", &p, std::io::Error::other(e))
                    })?;
                    digests.extend(idx.manifests.into_iter().map(|c| c.digest));
                }
                // the carried upstream signatures are part of the image
                digests.extend(img.signatures.iter().map(|s| s.manifest.to_string()));
                let tags = n.tags.entry(t.repo).or_default();
                tags.extend(t.tag);
                if !img.signatures.is_empty() {
                    tags.insert(stoa_format::signature::sig_tag(&d));
                }
            }
        }
        Ok(n)
    }

    /// Lists the registry's repositories under the prefix and their tags,
    /// and deletes (unless `dry_run`) the tags none of the `retained`
    /// releases needs. Runs under the caller's lock.
    pub fn prune_registry(
        &self,
        retained: &[semver::Version],
        dry_run: bool,
    ) -> Result<RegistryPruneReport> {
        let rc = self
            .cfg
            .registry
            .as_ref()
            .ok_or(UpdaterError::MissingSection {
                section: "registry".into(),
            })?;
        let prefix = rc.prefix.trim_matches('/');
        if prefix.is_empty() {
            return Err(UpdaterError::Config {
                path: "[registry] prefix".into(),
                reason: "prune --registry needs a prefix: without one every repository of the \
                         registry would be a candidate for deletion"
                    .into(),
            });
        }
        let needed = self.registry_needed(retained, prefix)?;
        let mut report = RegistryPruneReport {
            dry_run,
            registry: site_registry_ref(rc),
            hint: GC_HINT,
            ..RegistryPruneReport::default()
        };
        let mut c = registry::Client::new(rc)?;
        let mut candidates = Vec::new();
        for repo in c.catalog()? {
            if !under_prefix(&repo, prefix) {
                continue;
            }
            if let Err(e) = check_repo(&repo) {
                report
                    .invalid
                    .push(escape(&format!("{repo}: {e}")).into_owned());
                continue;
            }
            report.repositories += 1;
            let keep = needed.tags.get(&repo);
            for tag in c.tags(&repo)? {
                if let Err(e) = check_tag(&tag) {
                    let n = escape(&format!("{repo}:{tag}: {e}")).into_owned();
                    report.invalid.push(n);
                } else if keep.is_some_and(|k| k.contains(&tag)) {
                    report.needed_tags += 1;
                } else {
                    candidates.push((repo.clone(), tag));
                }
            }
        }
        for (repo, tag) in candidates {
            let kept = needed.digests.get(&repo);
            prune_tag(&mut c, &mut report, kept, repo, tag)?;
        }
        Ok(report)
    }
}

/// One unneeded tag: its digest read, then deleted unless that digest
/// is needed in the same repository (or this is a dry run).
fn prune_tag(
    c: &mut registry::Client,
    report: &mut RegistryPruneReport,
    kept: Option<&BTreeSet<String>>,
    repo: String,
    tag: String,
) -> Result<()> {
    let mut t = RegistryTag {
        repo,
        tag,
        digest: None,
        reason: None,
    };
    let Some(d) = c.manifest_digest(&t.repo, &t.tag)? else {
        t.reason = Some("gone (404) before it was deleted".into());
        report.skipped.push(t);
        return Ok(());
    };
    let digest = format!("sha256:{}", d.hex());
    t.digest = Some(digest.clone());
    if kept.is_some_and(|k| k.contains(&digest)) {
        t.reason = Some(
            "a retained release's image in this repository has the same digest: \
             deleting it would delete that one too (the distribution API deletes \
             manifests, not tags)"
                .into(),
        );
        report.skipped.push(t);
        return Ok(());
    }
    if dry_run_or_delete(c, report.dry_run, &t, &d)? == Deleted::Refused {
        t.reason = Some("not deleted: the registry does not allow deletes (405)".into());
        report.refused.push(t);
    } else {
        report.deleted.push(t);
    }
    Ok(())
}

/// The DELETE of `t`'s manifest, or nothing on a dry run (as deleted).
fn dry_run_or_delete(
    c: &mut registry::Client,
    dry_run: bool,
    t: &RegistryTag,
    d: &Sha256Digest,
) -> Result<Deleted> {
    if dry_run {
        return Ok(Deleted::Yes);
    }
    c.delete_manifest(&t.repo, &t.tag, d)
}

#[cfg(test)]
mod tests {
    use super::under_prefix;

    #[test]
    fn only_repositories_under_the_prefix() {
        assert!(under_prefix("site", "site"));
        assert!(under_prefix("site/stoa/api", "site"));
        assert!(under_prefix("a/b/c", "a/b"));
        assert!(!under_prefix("sitex/api", "site"));
        assert!(!under_prefix("other/x", "site"));
        assert!(!under_prefix("x/site", "site"));
    }
}
