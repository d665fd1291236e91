//! Pushing a staged release: blobs first (HEAD, skip when present;
//! cross-repository mount when pushed earlier in the run; otherwise an
//! upload streamed from the staged file, monolithic or in chunks), then
//! manifests byte-exact with their media type, checking the registry's
//! `Docker-Content-Digest`; each image's carried upstream signatures (its
//! cosign `.sig` manifest) beside it under the tag `sha256-<hex>.sig`; and
//! the preflight check that a push is accepted.

use super::*;

impl Client {
    /// Pushes every image of a staged release.
    pub fn push_release(
        &mut self,
        sd: &StateDir,
        m: &BundleManifest,
        prefix: &str,
        layout: Layout,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PushStats> {
        for img in &m.images {
            let t = map_name(&img.name, prefix, layout);
            let d = img.digest.digest();
            self.push_manifest_tree(sd, &img.name, &t.repo, &d, &img.media_type, progress)?;
            if let Some(tag) = &t.tag {
                self.put_manifest(sd, &img.name, &t.repo, &d, &img.media_type, tag)?;
            }
            // the carried upstream signatures, beside the image under
            // cosign's tag, for the cluster's own policy to check
            let mut pushed = std::collections::BTreeSet::new();
            for sig in &img.signatures {
                let sd_ = sig.manifest.digest();
                if !pushed.insert(sd_) {
                    continue;
                }
                self.push_manifest_tree(sd, &img.name, &t.repo, &sd_, &sig.media_type, progress)?;
                let tag = stoa_format::signature::sig_tag(&d);
                self.put_manifest(sd, &img.name, &t.repo, &sd_, &sig.media_type, &tag)?;
            }
            self.stats.images += 1;
        }
        Ok(self.stats.clone())
    }

    fn push_manifest_tree(
        &mut self,
        sd: &StateDir,
        image: &str,
        repo: &str,
        d: &Sha256Digest,
        media_type: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let path = sd.blob(&d.hex());
        let bytes = read_manifest(image, &path)?;
        if is_index(media_type) {
            let idx: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| err(image, format!("index {d}: {e}")))?;
            for child in &idx.manifests {
                let cd = Sha256Digest::from_oci(&child.digest)
                    .ok_or_else(|| err(image, "bad child digest"))?;
                if !sd.blob(&cd.hex()).exists() {
                    // a platform not carried by the bundle
                    continue;
                }
                self.push_manifest_tree(sd, image, repo, &cd, &child.media_type, progress)?;
                self.put_manifest(sd, image, repo, &cd, &child.media_type, &child.digest)?;
            }
        } else {
            let man: ImageManifest = serde_json::from_slice(&bytes)
                .map_err(|e| err(image, format!("manifest {d}: {e}")))?;
            let mut blobs = vec![man.config.clone()];
            blobs.extend(man.layers.iter().cloned());
            for b in blobs {
                let bd = Sha256Digest::from_oci(&b.digest)
                    .ok_or_else(|| err(image, format!("bad blob digest {}", b.digest)))?;
                self.push_blob(sd, image, repo, &bd, b.size, progress)?;
            }
        }
        Ok(())
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
