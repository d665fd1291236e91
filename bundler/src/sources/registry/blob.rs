//! Blobs downloaded into the content cache, `jobs` at a time: each resumed
//! by range after a dropped connection and checked (digest and size)
//! before it is kept; blobs already cached or already counted in this
//! build are not fetched again.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use indicatif::ProgressBar;
use oci_client::client::BlobResponse;
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, Reference};
use stoa_format::oci::Descriptor;
use stoa_format::retry::TransportError;
use stoa_format::Sha256Digest;

use super::cache::Cache;
use super::transport::{after, classify, fatal, Failure};
use super::{Counters, Puller, RETRY};
use crate::error::{BundlerError, Result};

fn oci_descriptor(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size as i64,
        urls: None,
        annotations: None,
        artifact_type: None,
    }
}

impl Puller {
    /// Downloads one blob into the cache, resuming by range after a dropped
    /// connection; its digest and size are checked before it is kept.
    async fn download_blob(
        client: Client,
        cache: Arc<Cache>,
        counters: Arc<Counters>,
        reference: Reference,
        d: Descriptor,
        pb: ProgressBar,
    ) -> std::result::Result<(), Failure> {
        let digest =
            Sha256Digest::from_oci(&d.digest).ok_or_else(|| fatal("digest is not sha256"))?;
        let mut w = cache
            .writer(&digest)
            .map_err(|e| fatal(format!("cache: {e}")))?;
        let od = oci_descriptor(&d);
        let mut attempt = 1;
        loop {
            if d.size == 0 {
                break;
            }
            let off = w.len();
            let outcome: std::result::Result<bool, Failure> = async {
                let resp = client
                    .pull_blob_stream_partial(&reference, &od, off, Some(d.size - off))
                    .await
                    .map_err(classify)?;
                let mut stream = match resp {
                    BlobResponse::Full(s) => {
                        if off > 0 {
                            w.restart().map_err(|e| fatal(format!("cache: {e}")))?;
                        }
                        s
                    }
                    BlobResponse::Partial(s) => s,
                };
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| {
                        // a digest mismatch reported by the client is final;
                        // any other stream error is a dropped body
                        let m = e.to_string();
                        if m.to_ascii_lowercase().contains("digest") {
                            TransportError::Other(m)
                        } else {
                            TransportError::Body(m)
                        }
                    })?;
                    if w.len() + chunk.len() as u64 > d.size {
                        return Err(fatal(format!(
                            "the registry sent more than the {} bytes of the descriptor",
                            d.size
                        )));
                    }
                    w.write_all(&chunk)
                        .map_err(|e| fatal(format!("cache: {e}")))?;
                    pb.inc(chunk.len() as u64);
                    counters
                        .bytes_downloaded
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Ok(w.len() == d.size)
            }
            .await;
            let wait = match &outcome {
                Ok(true) => break,
                // a short body: resumed by range, like a dropped connection
                Ok(false) => RETRY.next(attempt, None),
                Err(e) => RETRY.delay(attempt, e),
            };
            match (wait, outcome) {
                (Some(delay), _) => {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                (None, Ok(_)) => {
                    return Err(fatal(format!(
                        "the registry sent {} of {} bytes (after {attempt} attempts)",
                        w.len(),
                        d.size
                    )))
                }
                (None, Err(e)) => return Err(after(e, attempt)),
            }
        }
        w.commit(d.size).map_err(|e| fatal(e.to_string()))?;
        counters.blobs_downloaded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Downloads the blobs not in the cache yet, `jobs` at a time.
    pub(super) fn download_all(
        &mut self,
        image: &str,
        reference: &Reference,
        blobs: Vec<Descriptor>,
    ) -> Result<()> {
        let mut todo = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for d in blobs {
            let digest =
                Sha256Digest::from_oci(&d.digest).ok_or_else(|| BundlerError::RegistryBlob {
                    image: image.to_owned(),
                    blob: d.digest.clone(),
                    message: "digest is not sha256".into(),
                })?;
            if !seen.insert(digest) || !self.seen.insert(digest) {
                continue;
            }
            if self.cache.has(&digest, d.size) {
                self.counters.blobs_cached.fetch_add(1, Ordering::Relaxed);
            } else {
                todo.push(d);
            }
        }
        let total: u64 = todo.iter().map(|d| d.size).sum();
        let n = todo.len();
        let pb = crate::progress::pull_bar(total, image, n, self.opts.quiet);
        let jobs = self.opts.jobs.max(1);
        let delay = self.delay;
        let result = self.rt.block_on(async {
            let sem = Arc::new(tokio::sync::Semaphore::new(jobs));
            let mut set = tokio::task::JoinSet::new();
            for d in todo {
                let permit_sem = sem.clone();
                let client = self.client.clone();
                let cache = self.cache.clone();
                let counters = self.counters.clone();
                let reference = reference.clone();
                let pb = pb.clone();
                set.spawn(async move {
                    let _permit = permit_sem.acquire_owned().await;
                    let digest = d.digest.clone();
                    let r = Self::download_blob(client, cache, counters, reference, d, pb.clone())
                        .await;
                    if r.is_ok() {
                        if let Some(t) = delay {
                            tokio::time::sleep(t).await;
                        }
                    }
                    (digest, r)
                });
            }
            let mut done = 0;
            while let Some(j) = set.join_next().await {
                match j {
                    Ok((_, Ok(()))) => {
                        done += 1;
                        crate::progress::pull_bar_blobs(&pb, image, done, n);
                    }
                    Ok((digest, Err(f))) => return Err((digest, f.to_string())),
                    Err(e) => return Err((String::new(), format!("download task failed: {e}"))),
                }
            }
            Ok(())
        });
        pb.finish_and_clear();
        result.map_err(|(blob, message)| BundlerError::RegistryBlob {
            image: image.to_owned(),
            blob,
            message,
        })
    }
}
