//! Pushing a staged release: every blob first, `[registry] parallel` at a
//! time (HEAD, skip when present; cross-repository mount when another
//! repository has it, from this run or a release the store holds;
//! otherwise an upload streamed from the staged file, monolithic or in
//! chunks), then manifests in order, byte-exact with their media type,
//! checking the registry's `Docker-Content-Digest`; each image's carried
//! upstream signatures (its cosign `.sig` manifest) beside it under the tag
//! `sha256-<hex>.sig`; and the preflight check that a push is accepted.

use super::*;

/// One blob to push, and every repository of the release that needs it
/// (first-seen order: the first gets the upload, the others mount it).
#[derive(Debug)]
struct BlobJob {
    digest: Sha256Digest,
    size: u64,
    /// `(image, repo)`.
    targets: Vec<(String, String)>,
}

/// One manifest PUT, in the order the registry must get them (children
/// before their index, each after its blobs).
#[derive(Debug)]
struct ManifestPut {
    image: String,
    repo: String,
    digest: Sha256Digest,
    media_type: String,
    reference: String,
}

/// What a release's push does: the blobs (pushed `[registry] parallel` at
/// a time), then the manifests, in order.
#[derive(Debug, Default)]
struct PushPlan {
    blobs: Vec<BlobJob>,
    by_digest: HashMap<Sha256Digest, usize>,
    manifests: Vec<ManifestPut>,
}

impl PushPlan {
    fn blob(&mut self, image: &str, repo: &str, digest: Sha256Digest, size: u64) {
        let i = *self.by_digest.entry(digest).or_insert_with(|| {
            self.blobs.push(BlobJob {
                digest,
                size,
                targets: Vec::new(),
            });
            self.blobs.len() - 1
        });
        let job = &mut self.blobs[i];
        if !job.targets.iter().any(|(_, r)| r == repo) {
            job.targets.push((image.to_owned(), repo.to_owned()));
        }
    }
}

impl Client {
    /// Pushes every image of a staged release: every blob first, up to
    /// `parallel` at once (each on its own connection; a blob several
    /// repositories need is uploaded once and mounted into the others),
    /// then the manifests in order, so that a tag never names a manifest
    /// whose blobs are not all there. Blobs that a release the store
    /// still holds pushed to another repository are mounted from it
    /// (`POST …/blobs/uploads/?mount=…&from=…`; a registry that does not
    /// mount answers with an upload, which is then made).
    pub fn push_release(
        &mut self,
        sd: &StateDir,
        m: &BundleManifest,
        prefix: &str,
        layout: Layout,
        parallel: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PushStats> {
        let mut plan = PushPlan::default();
        for img in &m.images {
            let t = map_name(&img.name, prefix, layout);
            let d = img.digest.digest();
            let name = img.name.to_string();
            plan_tree(sd, &name, &t.repo, &d, &img.media_type, &mut plan)?;
            if let Some(tag) = &t.tag {
                plan.manifests.push(ManifestPut {
                    image: name.clone(),
                    repo: t.repo.clone(),
                    digest: d,
                    media_type: img.media_type.clone(),
                    reference: tag.clone(),
                });
            }
            // the carried upstream signatures, beside the image under
            // cosign's tag (after it), for the cluster's own policy to check
            let mut pushed = std::collections::BTreeSet::new();
            for sig in &img.signatures {
                let sd_ = sig.manifest.digest();
                if !pushed.insert(sd_) {
                    continue;
                }
                plan_tree(sd, &name, &t.repo, &sd_, &sig.media_type, &mut plan)?;
                plan.manifests.push(ManifestPut {
                    image: name.clone(),
                    repo: t.repo.clone(),
                    digest: sd_,
                    media_type: sig.media_type.clone(),
                    reference: stoa_format::signature::sig_tag(&d),
                });
            }
        }
        self.seed_known(sd, m, prefix, layout);
        self.push_blobs(sd, &plan.blobs, parallel.max(1), progress)?;
        for p in &plan.manifests {
            self.put_manifest(
                sd,
                &p.image,
                &p.repo,
                &p.digest,
                &p.media_type,
                &p.reference,
            )?;
        }
        self.stats.images += m.images.len();
        Ok(self.stats.clone())
    }

    /// The blobs of the other releases the store holds, and the site
    /// repository each went to (mount sources for this push).
    pub(super) fn seed_known(
        &mut self,
        sd: &StateDir,
        m: &BundleManifest,
        prefix: &str,
        layout: Layout,
    ) {
        for e in std::fs::read_dir(sd.root.join("releases"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(v) = semver::Version::parse(&e.file_name().to_string_lossy()) else {
                continue;
            };
            if v == m.release.version {
                continue;
            }
            let Ok(other) = crate::stage::load_release(sd, &v) else {
                continue;
            };
            for img in &other.images {
                let repo = map_name(&img.name, prefix, layout).repo;
                let mut plan = PushPlan::default();
                let name = img.name.to_string();
                let d = img.digest.digest();
                if plan_tree(sd, &name, &repo, &d, &img.media_type, &mut plan).is_err() {
                    continue;
                }
                for b in plan.blobs {
                    self.known
                        .entry(b.digest.oci())
                        .or_insert_with(|| repo.clone());
                }
            }
        }
    }

    /// Every blob job, `parallel` workers taking the next job until none is
    /// left or one failed; each worker is a copy of this client (its own
    /// connections and auth). The first failure, in job order, is returned.
    fn push_blobs(
        &mut self,
        sd: &StateDir,
        jobs: &[BlobJob],
        parallel: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        if parallel == 1 || jobs.len() < 2 {
            for j in jobs {
                self.push_job(sd, j, progress)?;
            }
            return Ok(());
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let mut outcomes: Vec<(PushStats, Vec<(usize, UpdaterError)>)> = Vec::new();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..parallel.min(jobs.len()))
                .map(|_| {
                    let mut c = self.worker();
                    let tx = tx.clone();
                    let (next, failed) = (&next, &failed);
                    s.spawn(move || {
                        let mut errors = Vec::new();
                        let mut report = |n: u64| {
                            let _ = tx.send(n);
                        };
                        while !failed.load(std::sync::atomic::Ordering::SeqCst) {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let Some(j) = jobs.get(i) else { break };
                            if let Err(e) = c.push_job(sd, j, &mut report) {
                                failed.store(true, std::sync::atomic::Ordering::SeqCst);
                                errors.push((i, e));
                            }
                        }
                        (c.stats, errors)
                    })
                })
                .collect();
            drop(tx);
            for n in rx {
                progress(n);
            }
            for h in handles {
                match h.join() {
                    Ok(o) => outcomes.push(o),
                    Err(_) => outcomes.push((
                        PushStats::default(),
                        vec![(usize::MAX, err("registry", "a push worker panicked"))],
                    )),
                }
            }
        });
        let mut first: Option<(usize, UpdaterError)> = None;
        for (stats, errors) in outcomes {
            add_stats(&mut self.stats, &stats);
            for (i, e) in errors {
                if first.as_ref().is_none_or(|(f, _)| i < *f) {
                    first = Some((i, e));
                }
            }
        }
        match first {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// One blob into every repository that needs it.
    fn push_job(
        &mut self,
        sd: &StateDir,
        j: &BlobJob,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        for (image, repo) in &j.targets {
            self.push_blob(sd, image, repo, &j.digest, j.size, progress)?;
        }
        Ok(())
    }

    /// A copy of this client for a push worker: the same agent
    /// (connection pool), registry, credentials, auth and mount sources;
    /// its own stats.
    pub(super) fn worker(&self) -> Client {
        Client {
            agent: self.agent.clone(),
            base: self.base.clone(),
            origin: self.origin.clone(),
            creds: self.creds.clone(),
            auth: self.auth.clone(),
            chunk: self.chunk,
            stats: PushStats::default(),
            known: self.known.clone(),
        }
    }

    fn scope(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    pub(super) fn push_blob(
        &mut self,
        sd: &StateDir,
        image: &str,
        repo: &str,
        d: &Sha256Digest,
        size: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let digest = format!("sha256:{}", d.hex());
        let scope = Self::scope(repo);
        if self.has_blob(&scope, image, repo, &digest)? {
            self.stats.blobs_skipped += 1;
            progress(size);
            self.known.insert(digest, repo.to_owned());
            return Ok(());
        }
        let path = sd.blob(&d.hex());
        let file_len = std::fs::metadata(&path)
            .map_err(|e| UpdaterError::io("read staged blob", &path, e))?
            .len();
        if file_len != size {
            return Err(err(
                image,
                format!("staged blob {digest} is {file_len} bytes, the manifest says {size}"),
            ));
        }
        // start an upload, mounting from a repo that has it when we know one
        let mut start_url = self
            .url(&format!("/v2/{repo}/blobs/uploads/"))
            .map_err(|e| err(image, e))?;
        if let Some(from) = self.known.get(&digest).filter(|r| r.as_str() != repo) {
            start_url = format!("{start_url}?mount={digest}&from={from}");
        }
        let resp = self
            .call(&scope, &mut |a, auth| {
                let mut r = a.post(&start_url);
                if let Some(h) = auth {
                    r = r.set("Authorization", h);
                }
                r.set("Content-Length", "0").call().map_err(Box::new)
            })
            .map_err(|e| err(image, format!("start upload of {digest}: {e}")))?;
        if resp.status() == 201 {
            self.stats.blobs_mounted += 1;
            progress(size);
            self.known.insert(digest, repo.to_owned());
            return Ok(());
        }
        let location = resp
            .header("location")
            .ok_or_else(|| err(image, "upload start without Location"))?
            .to_owned();
        let u = Upload {
            scope: &scope,
            image,
            digest: &digest,
            path: &path,
            size,
        };
        if size > self.chunk {
            self.upload_chunks(&u, location, progress)?;
        } else {
            self.upload_whole(&u, &location)?;
            progress(size);
        }
        self.stats.blobs_uploaded += 1;
        self.stats.bytes_uploaded += size;
        self.known.insert(digest, repo.to_owned());
        Ok(())
    }

    /// Whether `repo` has the blob already (HEAD; 404 is "no").
    fn has_blob(&mut self, scope: &str, image: &str, repo: &str, digest: &str) -> Result<bool> {
        let head_url = self
            .url(&format!("/v2/{repo}/blobs/{digest}"))
            .map_err(|e| err(image, e))?;
        let head = self.call(scope, &mut |a, auth| {
            let mut r = a.head(&head_url);
            if let Some(h) = auth {
                r = r.set("Authorization", h);
            }
            r.call().map_err(Box::new)
        });
        match head {
            Ok(_) => Ok(true),
            Err(e) if e.status_code() == Some(404) => Ok(false),
            Err(e) => Err(err(image, format!("HEAD blob {digest}: {e}"))),
        }
    }

    /// PATCH the blob in chunks of `self.chunk` bytes, then PUT with the
    /// digest: an upload that never holds the blob in memory.
    fn upload_chunks(
        &mut self,
        u: &Upload<'_>,
        mut location: String,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let Upload {
            scope,
            image,
            digest,
            path,
            size,
        } = *u;
        let mut offset = 0u64;
        while offset < size {
            let n = (size - offset).min(self.chunk);
            let url = self.url(&location).map_err(|e| err(image, e))?;
            let end = offset + n - 1;
            let resp = self
                .call(scope, &mut |a, auth| {
                    let mut f = File::open(path).map_err(|e| Box::new(ureq::Error::from(e)))?;
                    f.seek(SeekFrom::Start(offset))
                        .map_err(|e| Box::new(ureq::Error::from(e)))?;
                    let mut r = a
                        .request("PATCH", &url)
                        .set("Content-Type", "application/octet-stream")
                        .set("Content-Length", &n.to_string())
                        .set("Content-Range", &format!("{offset}-{end}"));
                    if let Some(h) = auth {
                        r = r.set("Authorization", h);
                    }
                    r.send(f.take(n)).map_err(Box::new)
                })
                .map_err(|e| err(image, format!("upload chunk of {digest}: {e}")))?;
            location = resp
                .header("location")
                .ok_or_else(|| err(image, "chunk upload without Location"))?
                .to_owned();
            offset += n;
            progress(n);
        }
        let url = with_query(
            &self.url(&location).map_err(|e| err(image, e))?,
            "digest",
            digest,
        );
        self.call(scope, &mut |a, auth| {
            let mut r = a.put(&url).set("Content-Length", "0");
            if let Some(h) = auth {
                r = r.set("Authorization", h);
            }
            r.call().map_err(Box::new)
        })
        .map_err(|e| err(image, format!("finish upload of {digest}: {e}")))?;
        Ok(())
    }

    /// One PUT with the whole blob and its digest.
    fn upload_whole(&mut self, u: &Upload<'_>, location: &str) -> Result<()> {
        let Upload {
            scope,
            image,
            digest,
            path,
            size,
        } = *u;
        let url = with_query(
            &self.url(location).map_err(|e| err(image, e))?,
            "digest",
            digest,
        );
        self.call(scope, &mut |a, auth| {
            let f = File::open(path).map_err(|e| Box::new(ureq::Error::from(e)))?;
            let mut r = a
                .put(&url)
                .set("Content-Type", "application/octet-stream")
                .set("Content-Length", &size.to_string());
            if let Some(h) = auth {
                r = r.set("Authorization", h);
            }
            r.send(f).map_err(Box::new)
        })
        .map_err(|e| err(image, format!("upload {digest}: {e}")))?;
        Ok(())
    }

    fn put_manifest(
        &mut self,
        sd: &StateDir,
        image: &str,
        repo: &str,
        d: &Sha256Digest,
        media_type: &str,
        reference: &str,
    ) -> Result<()> {
        let path = sd.blob(&d.hex());
        let bytes = read_manifest(image, &path)?;
        let url = self
            .url(&format!("/v2/{repo}/manifests/{reference}"))
            .map_err(|e| err(image, e))?;
        let scope = Self::scope(repo);
        let resp = self
            .call(&scope, &mut |a, auth| {
                let mut r = a.put(&url).set("Content-Type", media_type);
                if let Some(h) = auth {
                    r = r.set("Authorization", h);
                }
                r.send_bytes(&bytes).map_err(Box::new)
            })
            .map_err(|e| err(image, format!("PUT manifest {repo}:{reference}: {e}")))?;
        let want = format!("sha256:{}", d.hex());
        match resp.header("docker-content-digest") {
            Some(got) if got == want => {}
            Some(got) => {
                return Err(err(
                    image,
                    format!(
                        "registry stored manifest {repo}:{reference} as {got}, expected {want}"
                    ),
                ))
            }
            None => {}
        }
        self.stats.manifests_put += 1;
        Ok(())
    }
}

impl Client {
    /// Preflight: the registry is reachable and takes pushes to `repo` with
    /// the configured credentials. Starts a blob upload (the push
    /// permission, auth negotiated as for a push) and cancels it (DELETE on
    /// its Location), so nothing is left behind. Returns what was seen.
    pub fn check_push(&mut self, repo: &str) -> std::result::Result<String, String> {
        let scope = Self::scope(repo);
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let resp = self
            .call(&scope, &mut |a, auth| {
                let mut r = a.post(&start);
                if let Some(h) = auth {
                    r = r.set("Authorization", h);
                }
                r.set("Content-Length", "0").call().map_err(Box::new)
            })
            .map_err(|e| format!("start an upload to {repo}: {e}"))?;
        let Some(location) = resp.header("location").map(str::to_owned) else {
            return Err(format!(
                "start an upload to {repo}: HTTP {} without Location",
                resp.status()
            ));
        };
        let cancel = self.url(&location)?;
        let done = self.call(&scope, &mut |a, auth| {
            let mut r = a.delete(&cancel);
            if let Some(h) = auth {
                r = r.set("Authorization", h);
            }
            r.call().map_err(Box::new)
        });
        Ok(match done {
            Ok(_) => format!("push to {repo} accepted (test upload cancelled)"),
            Err(e) => format!(
                "push to {repo} accepted (the test upload could not be cancelled: {e}; the registry expires it)"
            ),
        })
    }
}

/// What a staged manifest or index names: an index its platform manifests
/// (digest, media type, the reference it is put under), a manifest its
/// config and layers (digest, size). The one reading of a staged manifest's
/// references, for the push plan and the push while staging.
pub(super) enum Refs {
    Index(Vec<(Sha256Digest, String, String)>),
    Blobs(Vec<(Sha256Digest, u64)>),
}

/// Reads the staged manifest or index `d` of `image` and what it names.
pub(super) fn refs(sd: &StateDir, image: &str, d: &Sha256Digest, media_type: &str) -> Result<Refs> {
    let bytes = read_manifest(image, &sd.blob(&d.hex()))?;
    if is_index(media_type) {
        let idx: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| err(image, format!("index {d}: {e}")))?;
        idx.manifests
            .iter()
            .map(|c| {
                let cd = Sha256Digest::from_oci(&c.digest)
                    .ok_or_else(|| err(image, "bad child digest"))?;
                Ok((cd, c.media_type.clone(), c.digest.clone()))
            })
            .collect::<Result<_>>()
            .map(Refs::Index)
    } else {
        let man: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| err(image, format!("manifest {d}: {e}")))?;
        std::iter::once(&man.config)
            .chain(&man.layers)
            .map(|b| {
                let bd = Sha256Digest::from_oci(&b.digest)
                    .ok_or_else(|| err(image, format!("bad blob digest {}", b.digest)))?;
                Ok((bd, b.size))
            })
            .collect::<Result<_>>()
            .map(Refs::Blobs)
    }
}

/// The blobs and manifest PUTs of the manifest tree `d` (an index: each
/// carried platform's manifest, then its blobs, then the PUT by digest).
fn plan_tree(
    sd: &StateDir,
    image: &str,
    repo: &str,
    d: &Sha256Digest,
    media_type: &str,
    plan: &mut PushPlan,
) -> Result<()> {
    match refs(sd, image, d, media_type)? {
        Refs::Index(children) => {
            for (cd, child_type, reference) in children {
                if !sd.blob(&cd.hex()).exists() {
                    // a platform not carried by the bundle
                    continue;
                }
                plan_tree(sd, image, repo, &cd, &child_type, plan)?;
                plan.manifests.push(ManifestPut {
                    image: image.to_owned(),
                    repo: repo.to_owned(),
                    digest: cd,
                    media_type: child_type,
                    reference,
                });
            }
        }
        Refs::Blobs(blobs) => {
            for (bd, size) in blobs {
                plan.blob(image, repo, bd, size);
            }
        }
    }
    Ok(())
}

pub(super) fn add_stats(to: &mut PushStats, s: &PushStats) {
    to.images += s.images;
    to.blobs_uploaded += s.blobs_uploaded;
    to.bytes_uploaded += s.bytes_uploaded;
    to.blobs_skipped += s.blobs_skipped;
    to.blobs_mounted += s.blobs_mounted;
    to.manifests_put += s.manifests_put;
}

/// A staged manifest or index, size-capped before it is read.
fn read_manifest(image: &str, path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .map_err(|e| UpdaterError::io("read staged manifest", path, e))?
        .len();
    if len > 4 << 20 {
        return Err(err(image, "manifest over 4 MiB"));
    }
    std::fs::read(path).map_err(|e| UpdaterError::io("read staged manifest", path, e))
}

/// One blob upload: where, what, from which staged file.
#[derive(Debug, Clone, Copy)]
struct Upload<'a> {
    scope: &'a str,
    image: &'a str,
    digest: &'a str,
    path: &'a Path,
    size: u64,
}

fn with_query(url: &str, k: &str, v: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{k}={}", v.replace(':', "%3A"))
}
