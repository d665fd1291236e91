//! Blobs pushed while the bundle is still being verified and staged (issue
//! 23 item 1): the push overlaps the read of the medium instead of waiting
//! for it.
//!
//! The staging sink tells [`EarlyPush`] each entry it stored, once the
//! entry's own digest was checked (`ContentSink::end`). An image's blobs are
//! known from its manifest, which the bundle holds among its blobs (entries
//! sorted by path, so by digest): a blob is pushed as soon as it and the
//! manifest naming it are both stored, `[registry] parallel` at a time, to
//! every repository of the release that needs it (uploaded once, mounted
//! into the others). Only blobs: no manifest and no tag is put here, so
//! nothing names them until the journaled push step, which runs after the
//! whole bundle verified, finds them present (HEAD) and puts the manifests.
//! A failure here is not the apply's: the push step pushes what is missing
//! and reports its own errors. The carried upstream signatures are left to
//! the push step (they are re-verified at the end of the read).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::push::{add_stats, refs, Refs};
use super::*;

/// A stored, digest-checked entry: its SHA-256 and size.
pub type Stored = (Sha256Digest, u64);

/// One blob for one worker: every repository known to need it so far (the
/// first gets the upload, the others a mount), and a repository an earlier
/// job already sent it to.
struct Job {
    digest: Sha256Digest,
    size: u64,
    /// `(image, repo)`.
    targets: Vec<(String, String)>,
    from: Option<String>,
}

/// The background push of verified blobs during staging; [`finish`]
/// waits for it, dropping it cancels what has not started.
///
/// [`finish`]: EarlyPush::finish
pub struct EarlyPush {
    tx: Option<Sender<Stored>>,
    cancel: Arc<AtomicBool>,
    handle: Option<JoinHandle<PushStats>>,
}

impl std::fmt::Debug for EarlyPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyPush").finish_non_exhaustive()
    }
}

impl EarlyPush {
    /// Starts the push of `m`'s image blobs as they are stored, with
    /// `parallel` workers, each a copy of `client`.
    pub fn start(
        client: Client,
        sd: &StateDir,
        m: &BundleManifest,
        prefix: &str,
        layout: Layout,
        parallel: usize,
    ) -> Self {
        let (tx, rx) = channel::<Stored>();
        let cancel = Arc::new(AtomicBool::new(false));
        let (sd, m, prefix) = (sd.clone(), m.clone(), prefix.to_owned());
        let stop = cancel.clone();
        let handle = std::thread::spawn(move || {
            run(client, &sd, &m, &prefix, layout, parallel.max(1), rx, &stop)
        });
        Self {
            tx: Some(tx),
            cancel,
            handle: Some(handle),
        }
    }

    /// Where the staging sink reports each stored entry.
    pub fn sender(&self) -> Option<Sender<Stored>> {
        self.tx.clone()
    }

    /// Every blob whose manifest was stored is pushed (or failed, left to
    /// the push step); what was done.
    pub fn finish(mut self) -> PushStats {
        self.tx = None;
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for EarlyPush {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            self.cancel.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
    }
}

/// What the dispatcher knows: what is stored, which stored manifests name
/// which blobs for which repositories, and what was sent.
#[derive(Default)]
struct Known {
    stored: HashSet<Sha256Digest>,
    /// manifest or index digest → `(image, repo, media type)` waiting for it
    roots: HashMap<Sha256Digest, Vec<(String, String, String)>>,
    /// blob → its size and `(image, repo)` needing it
    wanted: HashMap<Sha256Digest, (u64, Vec<(String, String)>)>,
    sent: HashSet<(Sha256Digest, String)>,
    first_repo: HashMap<Sha256Digest, String>,
}

#[allow(clippy::too_many_arguments)]
fn run(
    mut client: Client,
    sd: &StateDir,
    m: &BundleManifest,
    prefix: &str,
    layout: Layout,
    parallel: usize,
    rx: Receiver<Stored>,
    cancel: &AtomicBool,
) -> PushStats {
    client.seed_known(sd, m, prefix, layout);
    let mut k = Known::default();
    for img in &m.images {
        let repo = map_name(&img.name, prefix, layout).repo;
        k.roots.entry(img.digest.digest()).or_default().push((
            img.name.to_string(),
            repo,
            img.media_type.clone(),
        ));
    }
    let (jtx, jrx) = channel::<Job>();
    let jrx = Mutex::new(jrx);
    let mut total = PushStats::default();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..parallel)
            .map(|_| {
                let mut w = client.worker();
                let jrx = &jrx;
                s.spawn(move || {
                    loop {
                        let job = match jrx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => break,
                        };
                        let Ok(j) = job else { break };
                        if cancel.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Some(from) = j.from {
                            w.known.entry(j.digest.oci()).or_insert(from);
                        }
                        for (image, repo) in &j.targets {
                            // a failure is the push step's to report
                            if w.push_blob(sd, image, repo, &j.digest, j.size, &mut |_| {})
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                    w.stats
                })
            })
            .collect();
        for (d, _) in rx {
            if cancel.load(Ordering::SeqCst) {
                break;
            }
            k.stored.insert(d);
            dispatch(sd, &mut k, d, &jtx);
        }
        drop(jtx);
        for h in workers {
            if let Ok(st) = h.join() {
                add_stats(&mut total, &st);
            }
        }
    });
    total
}

/// `d` was stored: read it when it is a manifest a release image waits
/// for (its blobs become wanted), and send every wanted, stored blob.
fn dispatch(sd: &StateDir, k: &mut Known, d: Sha256Digest, jobs: &Sender<Job>) {
    let mut queue = vec![d];
    while let Some(x) = queue.pop() {
        for (image, repo, media_type) in k.roots.remove(&x).unwrap_or_default() {
            // unreadable here: the push step reports it
            match refs(sd, &image, &x, &media_type) {
                Ok(Refs::Index(children)) => {
                    for (cd, child_type, _) in children {
                        k.roots.entry(cd).or_default().push((
                            image.clone(),
                            repo.clone(),
                            child_type,
                        ));
                        if k.stored.contains(&cd) {
                            queue.push(cd);
                        }
                    }
                }
                Ok(Refs::Blobs(blobs)) => {
                    for (bd, size) in blobs {
                        let e = k.wanted.entry(bd).or_insert((size, Vec::new()));
                        if !e.1.iter().any(|(_, r)| r == &repo) {
                            e.1.push((image.clone(), repo.clone()));
                        }
                        if k.stored.contains(&bd) && bd != x {
                            queue.push(bd);
                        }
                    }
                }
                Err(_) => {}
            }
        }
        if !k.stored.contains(&x) {
            continue;
        }
        let Some((size, targets)) = k.wanted.get(&x) else {
            continue;
        };
        let new: Vec<(String, String)> = targets
            .iter()
            .filter(|(_, r)| !k.sent.contains(&(x, r.clone())))
            .cloned()
            .collect();
        if new.is_empty() {
            continue;
        }
        for (_, r) in &new {
            k.sent.insert((x, r.clone()));
        }
        let from = k.first_repo.get(&x).cloned();
        k.first_repo.entry(x).or_insert_with(|| new[0].1.clone());
        let _ = jobs.send(Job {
            digest: x,
            size: *size,
            targets: new,
            from,
        });
    }
}
