//! Reading a bundle: the head (manifest and signatures) for `inspect`, and a
//! full streaming verification that hands verified-so-far bytes to a sink.
//!
//! Order of checks: the first entry must be `manifest.json` (size-capped),
//! its format version known, its structure valid; the signature entries that
//! follow must include enough valid signatures by trusted keys; only then is
//! content read, each entry checked against the manifest (listed, in order,
//! not duplicated, regular, same size before a byte is read, same SHA-256 at
//! its end; a migration's SQL and the SBOM checked by their rules); at the
//! end every listed entry must have been seen and nothing may follow the
//! end-of-archive marker.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, BufReader, Read};
use std::time::SystemTime;

use crate::archive::{EntryHeader, TarReader};
use crate::codec::zframe::FrameGuard;
use crate::digest::{Hasher, Sha256Digest};
use crate::document::limits::Limits;
use crate::document::limits::{MAX_CLOCK_SKEW, MAX_ROOT_ITEMS, MAX_ROOT_SIZE};
use crate::document::ANCHORS_DIR;
use crate::error::FormatError;
use crate::keys::{KeyId, TrustStore};
use crate::manifest::{BundleManifest, Entry};
use crate::paths::check_entry_path;
use crate::pipe::{ReadAhead, CHUNK, DEPTH};
use crate::root::TrustBase;
use crate::sql::SqlChecker;
use crate::{MANIFEST_PATH, SIGNATURES_DIR};

/// Receives content as it is verified. An entry's bytes are only vouched for
/// once `end` is called for it, and the bundle as a whole only once
/// [`verify`] returns `Ok`: a sink must keep what it writes unusable until
/// then (extract writes into a staging folder renamed at the end).
pub trait ContentSink {
    fn begin(&mut self, entry: &Entry) -> io::Result<()>;
    fn write(&mut self, data: &[u8]) -> io::Result<()>;
    fn end(&mut self, entry: &Entry) -> io::Result<()>;
}

/// A sink that keeps nothing: plain verification.
#[derive(Debug, Default)]
pub struct NullSink;

impl ContentSink for NullSink {
    fn begin(&mut self, _: &Entry) -> io::Result<()> {
        Ok(())
    }
    fn write(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn end(&mut self, _: &Entry) -> io::Result<()> {
        Ok(())
    }
}

/// Verification policy.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub limits: Limits,
    /// The reader's clock, for the expiry check.
    pub now: SystemTime,
    /// Accept a bundle past its `expires` time.
    pub allow_expired: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            now: SystemTime::now(),
            allow_expired: false,
        }
    }
}

/// The head of a bundle, signatures not checked against any trust.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub manifest: BundleManifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_sha256: Sha256Digest,
    /// Key ids of every signature entry present.
    pub signers: Vec<KeyId>,
    /// The leading `anchors/root-<v>.json` entries (trust roots the bundle
    /// carries), read before the signature check because they may name the
    /// keys it needs; each checked against the manifest's size and digest,
    /// bounded by `limits::MAX_ROOT_SIZE` and `limits::MAX_ROOT_ITEMS`.
    pub anchors: Vec<(Entry, Vec<u8>)>,
    signatures: BTreeMap<KeyId, [u8; 64]>,
}

impl Inspection {
    /// Checks the signatures present against `trust` (content not read).
    pub fn check_signatures(&self, trust: &TrustStore) -> Result<Vec<KeyId>, FormatError> {
        trust.check(&self.manifest_bytes, &self.signatures)
    }
}

/// A bundle whose every byte was checked.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub manifest: BundleManifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_sha256: Sha256Digest,
    /// Trusted keys whose signatures verified.
    pub trusted_signers: Vec<KeyId>,
    /// Every signature entry present, trusted or not.
    pub signers: Vec<KeyId>,
    pub content_bytes: u64,
    /// The SHA-256 of the bundle file as read, every byte of it (what
    /// `build` and `split` print as `bundle sha256:`); for a part set, the
    /// signed index's, every part having matched it. None until the source
    /// was read to its end ([`crate::source::verify_source_with`] sets it),
    /// and for a bundle read from a pipe.
    pub file_sha256: Option<Sha256Digest>,
}

/// Decompression runs on a helper thread (see [`ReadAhead`]) so that it
/// overlaps with hashing.
type Stream = TarReader<ReadAhead>;

fn open<R: Read + Send + 'static>(r: R, limits: &Limits) -> Result<Stream, FormatError> {
    // every compressed byte passes the frame guard: no skippable frames
    let mut input = BufReader::with_capacity(CHUNK, FrameGuard::new(r));
    if input
        .fill_buf()
        .map_err(crate::archive::read_error)?
        .is_empty()
    {
        return Err(FormatError::EmptyBundle);
    }
    let mut dec =
        zstd::stream::read::Decoder::with_buffer(input).map_err(FormatError::ReadBundle)?;
    dec.window_log_max(limits.max_window_log)
        .map_err(FormatError::ReadBundle)?;
    Ok(TarReader::new(
        ReadAhead::new(dec, CHUNK, DEPTH),
        limits.max_pax_size,
    ))
}

struct Head {
    tar: Stream,
    inspection: Inspection,
    /// the first content header, already read
    next: Option<EntryHeader>,
}

/// How the manifest is read: in full (every command), or as the frozen
/// subset a newer format keeps ([`crate::tools::bootstrap_view`], only
/// `self-update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Full,
    Bootstrap,
}

fn read_head<R: Read + Send + 'static>(
    r: R,
    limits: &Limits,
    reading: Reading,
) -> Result<Head, FormatError> {
    let mut tar = open(r, limits)?;
    let first = tar.next_header()?.ok_or(FormatError::EmptyBundle)?;
    if first.path != MANIFEST_PATH {
        return Err(FormatError::ManifestNotFirst { found: first.path });
    }
    if first.size > limits.max_manifest_size {
        return Err(FormatError::ManifestTooLarge {
            size: first.size,
            limit: limits.max_manifest_size,
        });
    }
    let manifest_bytes = read_small(&mut tar, first.size)?;
    let manifest = match reading {
        Reading::Full => BundleManifest::from_bytes(&manifest_bytes, limits)?,
        Reading::Bootstrap => crate::tools::bootstrap_view(&manifest_bytes, limits)?.0,
    };

    let mut signatures = BTreeMap::new();
    let mut next = None;
    while let Some(h) = tar.next_header()? {
        let Some(rest) = h.path.strip_prefix(SIGNATURES_DIR) else {
            next = Some(h);
            break;
        };
        let bad = |reason: &str| FormatError::InvalidSignatureEntry {
            path: h.path.clone(),
            reason: reason.into(),
        };
        let id = rest
            .strip_suffix(".sig")
            .and_then(Sha256Digest::from_hex)
            .map(KeyId)
            .ok_or_else(|| bad("name is not signatures/<64 hex key id>.sig"))?;
        if h.size != 64 {
            return Err(bad(&format!(
                "{} bytes, an Ed25519 signature is 64",
                h.size
            )));
        }
        if signatures.len() >= limits.max_signatures {
            return Err(bad(&format!(
                "more than {} signatures",
                limits.max_signatures
            )));
        }
        let raw = read_small(&mut tar, 64)?;
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&raw);
        if signatures.insert(id, sig).is_some() {
            return Err(FormatError::DuplicateEntry { path: h.path });
        }
    }
    let anchors = read_anchors(&mut tar, &manifest, &mut next)?;
    let inspection = Inspection {
        manifest_sha256: Sha256Digest::of(&manifest_bytes),
        manifest,
        manifest_bytes,
        signers: signatures.keys().copied().collect(),
        anchors,
        signatures,
    };
    Ok(Head {
        tar,
        inspection,
        next,
    })
}

/// Reads the leading content entries under `anchors/` that are listed, in
/// manifest order, with the declared size; anything else is left for the
/// content loop to judge.
fn read_anchors(
    tar: &mut Stream,
    manifest: &BundleManifest,
    next: &mut Option<EntryHeader>,
) -> Result<Vec<(Entry, Vec<u8>)>, FormatError> {
    let mut out: Vec<(Entry, Vec<u8>)> = Vec::new();
    while let Some(h) = next.as_ref() {
        let Some(entry) = manifest.entries.get(out.len()) else {
            break;
        };
        if !h.path.starts_with(ANCHORS_DIR) || h.path != entry.path || h.size != entry.size {
            break;
        }
        if entry.size > MAX_ROOT_SIZE || out.len() >= MAX_ROOT_ITEMS {
            return Err(FormatError::Root {
                version: "?".into(),
                rule: "size",
                detail: format!(
                    "bundle entry {:?}: at most {MAX_ROOT_ITEMS} roots of {MAX_ROOT_SIZE} bytes each",
                    entry.path
                ),
            });
        }
        let bytes = read_small(tar, entry.size)?;
        let found = Sha256Digest::of(&bytes);
        if found != entry.sha256 {
            return Err(FormatError::DigestMismatch {
                path: entry.path.clone(),
                expected: entry.sha256.hex(),
                found: found.hex(),
            });
        }
        out.push((entry.clone(), bytes));
        *next = tar.next_header()?;
    }
    Ok(out)
}

fn read_small(tar: &mut Stream, size: u64) -> Result<Vec<u8>, FormatError> {
    let mut v = vec![0u8; usize::try_from(size).unwrap_or(0)];
    let mut got = 0;
    while got < v.len() {
        let n = tar.read_content(&mut v[got..], size - got as u64)?;
        got += n;
    }
    Ok(v)
}

/// Reads the head of a bundle: manifest and signature entries. Checks the
/// manifest's structure but not the signatures or the content.
pub fn inspect<R: Read + Send + 'static>(r: R, limits: &Limits) -> Result<Inspection, FormatError> {
    read_head(r, limits, Reading::Full).map(|h| h.inspection)
}

/// [`inspect`] for `self-update`: a manifest of a newer format version is
/// read as its frozen subset ([`crate::tools::bootstrap_view`]).
pub fn inspect_bootstrap<R: Read + Send + 'static>(
    r: R,
    limits: &Limits,
) -> Result<Inspection, FormatError> {
    read_head(r, limits, Reading::Bootstrap).map(|h| h.inspection)
}

/// What [`verify_bootstrap_with`] verified: every check of [`verify_with`]
/// passed. When `newer_format`, `verified.manifest` holds only the frozen
/// subset (release, tools, entries) of a format this library does not
/// read: only the `stoa-updater` tool may be used from it.
#[derive(Debug, Clone)]
pub struct BootstrapVerified {
    pub verified: VerifiedBundle,
    pub newer_format: bool,
}

/// [`verify_with`] for `self-update`, reading the manifest as
/// [`inspect_bootstrap`] does; signatures, expiry and every carried entry
/// are checked exactly as for any bundle.
pub fn verify_bootstrap_with<R: Read + Send + 'static>(
    r: R,
    resolve: &mut dyn FnMut(&Inspection) -> Result<TrustStore, FormatError>,
    opts: &VerifyOptions,
    sink: &mut dyn ContentSink,
    progress: &mut dyn FnMut(u64),
) -> Result<BootstrapVerified, FormatError> {
    let verified = verify_reading(r, Reading::Bootstrap, resolve, opts, sink, progress)?;
    Ok(BootstrapVerified {
        newer_format: verified.manifest.format_version > crate::DELTA_FORMAT_VERSION,
        verified,
    })
}

/// Verifies a whole bundle against `trust`, streaming content into `sink`.
pub fn verify<R: Read + Send + 'static>(
    r: R,
    trust: &TrustStore,
    opts: &VerifyOptions,
    sink: &mut dyn ContentSink,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifiedBundle, FormatError> {
    verify_with(r, &mut |_| Ok(trust.clone()), opts, sink, progress)
}

/// Like [`verify`], with the trust decided from the bundle's head: `resolve`
/// sees the manifest and the carried roots (`Inspection::anchors`) and
/// returns the keys the signatures are checked against (a site walks its
/// root chain there).
pub fn verify_with<R: Read + Send + 'static>(
    r: R,
    resolve: &mut dyn FnMut(&Inspection) -> Result<TrustStore, FormatError>,
    opts: &VerifyOptions,
    sink: &mut dyn ContentSink,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifiedBundle, FormatError> {
    verify_reading(r, Reading::Full, resolve, opts, sink, progress)
}

fn verify_reading<R: Read + Send + 'static>(
    r: R,
    reading: Reading,
    resolve: &mut dyn FnMut(&Inspection) -> Result<TrustStore, FormatError>,
    opts: &VerifyOptions,
    sink: &mut dyn ContentSink,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifiedBundle, FormatError> {
    let Head {
        mut tar,
        mut inspection,
        mut next,
    } = read_head(r, &opts.limits, reading)?;
    let trust = resolve(&inspection)?;
    let trusted_signers = inspection.check_signatures(&trust)?;
    check_expiry(&inspection.manifest, opts)?;

    let manifest = &inspection.manifest;
    let entries = &manifest.entries;
    let mut idx = 0usize;
    let mut seen: HashSet<&str> = HashSet::with_capacity(entries.len());
    let mut buf = vec![0u8; 1 << 20];
    let mut content_bytes = 0u64;
    let sql_entries = manifest.migration_entries();
    // the upstream signatures' manifests, payloads and keys: small (capped
    // by the manifest's rules), kept whole and re-verified at the end
    let material_paths = manifest.signature_material();
    let mut material: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // the carried roots were read and digest-checked with the head
    for (entry, bytes) in std::mem::take(&mut inspection.anchors) {
        let sink_err = |e| FormatError::Sink {
            path: entry.path.clone(),
            source: e,
        };
        let Some(listed) = manifest.entries.get(idx) else {
            break;
        };
        sink.begin(listed).map_err(sink_err)?;
        sink.write(&bytes).map_err(sink_err)?;
        sink.end(listed).map_err(sink_err)?;
        progress(entry.size);
        content_bytes += entry.size;
        seen.insert(listed.path.as_str());
        idx += 1;
    }
    loop {
        let h = match next.take() {
            Some(h) => h,
            None => match tar.next_header().map_err(|e| match idx.checked_sub(1) {
                Some(i) => e.while_reading(&format!("the entry after {:?}", entries[i].path)),
                None => e,
            })? {
                Some(h) => h,
                None => break,
            },
        };
        check_entry_path(&h.path, opts.limits.max_path_len)?;
        if h.path == MANIFEST_PATH {
            return Err(FormatError::DuplicateEntry { path: h.path });
        }
        let Some(entry) = manifest.entry(&h.path) else {
            if h.path.starts_with(SIGNATURES_DIR) {
                let expected = entries.get(idx).map(|e| e.path.clone()).unwrap_or_default();
                return Err(FormatError::OutOfOrderEntry {
                    path: h.path,
                    expected,
                });
            }
            return Err(FormatError::UnlistedEntry { path: h.path });
        };
        if seen.contains(entry.path.as_str()) {
            return Err(FormatError::DuplicateEntry { path: h.path });
        }
        match entries.get(idx) {
            Some(e) if e.path == entry.path => {}
            Some(e) => {
                return Err(FormatError::MissingEntry {
                    path: e.path.clone(),
                })
            }
            None => return Err(FormatError::DuplicateEntry { path: h.path }),
        }
        if h.size != entry.size {
            return Err(FormatError::SizeMismatch {
                path: h.path,
                declared: entry.size,
                found: h.size,
            });
        }
        let sink_err = |e| FormatError::Sink {
            path: entry.path.clone(),
            source: e,
        };
        sink.begin(entry).map_err(sink_err)?;
        let mut hasher = Hasher::default();
        // migration SQL is checked as it streams; reported after the digest
        let mut sql = sql_entries
            .contains(entry.path.as_str())
            .then(SqlChecker::new);
        let mut sql_result = Ok(());
        // the SBOM is parsed whole once its digest holds (its size is capped
        // by the manifest's rules, `sbom::MAX_SBOM_SIZE`)
        let mut sbom = (manifest.sbom.as_deref() == Some(entry.path.as_str())).then(Vec::new);
        let mut kept = material_paths.contains(entry.path.as_str()).then(Vec::new);
        while hasher.len() < entry.size {
            let n = tar
                .read_content(&mut buf, entry.size - hasher.len())
                .map_err(|e| e.while_reading(&format!("entry {:?}", entry.path)))?;
            hasher.update(&buf[..n]);
            if let Some(c) = sql.as_mut() {
                if sql_result.is_ok() {
                    sql_result = c.feed(&buf[..n]);
                }
            }
            if let Some(b) = sbom.as_mut() {
                b.extend_from_slice(&buf[..n]);
            }
            if let Some(b) = kept.as_mut() {
                b.extend_from_slice(&buf[..n]);
            }
            sink.write(&buf[..n]).map_err(sink_err)?;
            progress(n as u64);
        }
        let (digest, _) = hasher.finish();
        if digest != entry.sha256 {
            return Err(FormatError::DigestMismatch {
                path: entry.path.clone(),
                expected: entry.sha256.hex(),
                found: digest.hex(),
            });
        }
        if let Some(c) = sql {
            sql_result
                .and_then(|()| c.finish())
                .map_err(|v| crate::sql::violation(&entry.path, v))?;
        }
        if let Some(b) = sbom {
            crate::sbom::check(&b, manifest)?;
        }
        if let Some(b) = kept {
            material.insert(entry.path.clone(), b);
        }
        sink.end(entry).map_err(sink_err)?;
        content_bytes += entry.size;
        seen.insert(entry.path.as_str());
        idx += 1;
    }
    if let Some(e) = entries.get(idx) {
        return Err(FormatError::MissingEntry {
            path: e.path.clone(),
        });
    }
    crate::signature::check_carried(manifest, &material)?;
    Ok(VerifiedBundle {
        manifest: inspection.manifest.clone(),
        manifest_bytes: inspection.manifest_bytes,
        manifest_sha256: inspection.manifest_sha256,
        trusted_signers,
        signers: inspection.signers,
        content_bytes,
        file_sha256: None,
    })
}

/// The time rules: a bundle `created` after its own `expires`, or more than
/// [`MAX_CLOCK_SKEW`] after the reader's clock, is refused (whatever
/// `allow_expired` says: its creation time would raise a site's clock
/// floor); a bundle whose `expires` is at or before the reader's clock is
/// refused unless `allow_expired`. A clock set back makes an expired bundle
/// look valid; that is why the updater also keeps a clock floor.
pub fn check_expiry(m: &BundleManifest, opts: &VerifyOptions) -> Result<(), FormatError> {
    let created = m.release.created.time();
    let expires_text = || {
        m.release
            .expires
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    if m.expires_at().is_some_and(|e| created > e) {
        return Err(FormatError::CreatedAfterExpires {
            created: m.release.created.to_string(),
            expires: expires_text(),
        });
    }
    if created > opts.now + MAX_CLOCK_SKEW {
        return Err(FormatError::CreatedInFuture {
            created: m.release.created.to_string(),
            now: humantime::format_rfc3339_seconds(opts.now).to_string(),
            skew: humantime::format_duration(MAX_CLOCK_SKEW).to_string(),
        });
    }
    let Some(exp) = m.expires_at() else {
        return Ok(());
    };
    if !opts.allow_expired && opts.now >= exp {
        return Err(FormatError::Expired {
            expires: expires_text(),
            now: humantime::format_rfc3339_seconds(opts.now).to_string(),
        });
    }
    Ok(())
}

/// The trust callback of [`verify_with`] from a [`TrustBase`]: the adapter
/// lives with the reader, so trust never needs to know what an
/// [`Inspection`] is.
impl TrustBase {
    /// [`Self::resolve`] as the trust callback of
    /// [`verify_with`] for a reader that persists nothing:
    /// `reached` is set to the version of the root the bundle's keys come
    /// from.
    pub fn resolver<'a>(
        &'a self,
        now: SystemTime,
        reached: &'a mut u64,
    ) -> impl FnMut(&Inspection) -> Result<TrustStore, FormatError> + 'a {
        *reached = self.version();
        move |insp| {
            let (store, chain) = self.resolve(&insp.anchors, now)?;
            if let Some(r) = chain.last() {
                *reached = r.version();
            }
            Ok(store)
        }
    }
}
