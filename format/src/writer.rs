//! Writing a bundle: manifest, signatures, then content, in one pass over the
//! sources. Every source is hashed while it is copied and checked against the
//! digest the manifest declares, so a bundle never carries bytes its manifest
//! does not vouch for.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::archive::{self, END_OF_ARCHIVE};
use crate::codec::zframe::{looks_compressed, FrameWriter};
use crate::digest::{Hasher, Sha256Digest};
use crate::document::limits::Limits;
use crate::error::FormatError;
use crate::keys::SigningKeyPair;
use crate::manifest::{BaseRelease, BundleManifest, Delta, Entry};
use crate::{MANIFEST_PATH, SIGNATURES_DIR};

/// Where an entry's bytes come from at write time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSource {
    Bytes(Vec<u8>),
    File(PathBuf),
    /// A byte range of a file (a member of an uncompressed tar, say).
    FileRange {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl ContentSource {
    fn describe(&self) -> String {
        match self {
            Self::Bytes(_) => "(generated)".into(),
            Self::File(p) => p.display().to_string(),
            Self::FileRange { path, offset, .. } => format!("{} at byte {offset}", path.display()),
        }
    }

    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match self {
            Self::Bytes(b) => Box::new(&b[..]),
            Self::File(p) => Box::new(File::open(p)?),
            Self::FileRange { path, offset, len } => {
                let mut f = File::open(path)?;
                f.seek(SeekFrom::Start(*offset))?;
                Box::new(f.take(*len))
            }
        })
    }
}

/// One content entry to be written.
#[derive(Debug, Clone)]
pub struct PlannedEntry {
    pub path: String,
    pub size: u64,
    pub sha256: Sha256Digest,
    pub source: ContentSource,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct WriteSummary {
    pub manifest_sha256: Sha256Digest,
    pub entries: usize,
    pub content_bytes: u64,
    /// Content bytes stored as raw zstd blocks (already compressed data).
    pub raw_bytes: u64,
}

/// A bundle ready to be written: a complete manifest and a source for each
/// of its entries.
#[derive(Debug)]
pub struct BundleWriter {
    manifest: BundleManifest,
    sources: Vec<ContentSource>,
    mtime: u64,
}

impl BundleWriter {
    /// Takes a manifest (its `entries` are replaced) and the content. Entries
    /// are sorted by path; an entry planned twice with the same digest (a
    /// layer shared by two images) is stored once; the same path with two
    /// digests is an error.
    pub fn new(
        mut manifest: BundleManifest,
        mut planned: Vec<PlannedEntry>,
        mtime: u64,
        limits: &Limits,
    ) -> Result<Self, FormatError> {
        planned.sort_by(|a, b| a.path.cmp(&b.path));
        let mut entries: Vec<Entry> = Vec::with_capacity(planned.len());
        let mut sources = Vec::with_capacity(planned.len());
        for p in planned {
            if let Some(last) = entries.last() {
                if last.path == p.path {
                    if last.sha256 == p.sha256 && last.size == p.size {
                        continue;
                    }
                    return Err(FormatError::InvalidManifest(format!(
                        "entry {:?} planned twice with different content ({} and {})",
                        p.path, last.sha256, p.sha256
                    )));
                }
            }
            entries.push(Entry {
                path: p.path,
                size: p.size,
                sha256: p.sha256,
            });
            sources.push(p.source);
        }
        manifest.entries = entries;
        manifest.validate(limits)?;
        Ok(Self {
            manifest,
            sources,
            mtime,
        })
    }

    /// Adds entries to a planned bundle (the trust roots it carries, say);
    /// the same rules as [`Self::new`].
    pub fn add_entries(
        self,
        extra: Vec<PlannedEntry>,
        limits: &Limits,
    ) -> Result<Self, FormatError> {
        let mut planned: Vec<PlannedEntry> = self
            .manifest
            .entries
            .iter()
            .zip(self.sources)
            .map(|(e, source)| PlannedEntry {
                path: e.path.clone(),
                size: e.size,
                sha256: e.sha256,
                source,
            })
            .collect();
        planned.extend(extra);
        Self::new(self.manifest, planned, self.mtime, limits)
    }

    /// Adds the SBOM entry ([`crate::sbom::SBOM_PATH`], the bytes
    /// [`crate::sbom::generate`] made of this manifest) and names it in the
    /// manifest's `sbom` field; the bytes are checked by the reader's own
    /// rule ([`crate::sbom::check`]) first, so no bundle carries an SBOM
    /// that disagrees with it.
    pub fn add_sbom(self, bytes: Vec<u8>, limits: &Limits) -> Result<Self, FormatError> {
        let path = crate::sbom::SBOM_PATH.to_owned();
        let entry = PlannedEntry {
            path: path.clone(),
            size: bytes.len() as u64,
            sha256: Sha256Digest::of(&bytes),
            source: ContentSource::Bytes(bytes.clone()),
        };
        let mut w = self.add_entries(vec![entry], limits)?;
        w.manifest.sbom = Some(path);
        w.manifest.validate(limits)?;
        crate::sbom::check(&bytes, &w.manifest)?;
        Ok(w)
    }

    /// Makes this bundle a delta on `bases[0]` (the chain after it are that
    /// release's own bases): every entry whose digest is in `have` (what a
    /// site holds once it has applied the base) and that a delta may leave
    /// out ([`crate::delta::omittable`]) moves from the entries to
    /// `delta.omitted`, and its source is dropped. The manifest becomes
    /// format version 2. Returns the bundle and the bytes left out.
    pub fn into_delta(
        self,
        bases: Vec<BaseRelease>,
        have: &HashSet<Sha256Digest>,
        limits: &Limits,
    ) -> Result<(Self, u64), FormatError> {
        let mut manifest = self.manifest;
        let mut kept = Vec::with_capacity(manifest.entries.len());
        let mut sources = Vec::with_capacity(self.sources.len());
        let mut omitted = Vec::new();
        let mut left_out = 0;
        // a reader re-verifies the carried upstream signatures: never omitted
        let material = manifest.signature_material();
        for (e, s) in std::mem::take(&mut manifest.entries)
            .into_iter()
            .zip(self.sources)
        {
            if have.contains(&e.sha256)
                && crate::delta::omittable(&e)
                && !material.contains(&e.path)
            {
                left_out += e.size;
                omitted.push(e);
            } else {
                kept.push(e);
                sources.push(s);
            }
        }
        manifest.entries = kept;
        manifest.format_version = crate::DELTA_FORMAT_VERSION;
        manifest.delta = Some(Delta { bases, omitted });
        manifest.validate(limits)?;
        Ok((
            Self {
                manifest,
                sources,
                mtime: self.mtime,
            },
            left_out,
        ))
    }

    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    /// Writes the whole bundle to `out`, signed by every key in `keys`.
    /// `progress` receives content bytes as they are copied.
    pub fn write<W: Write>(
        &self,
        out: W,
        keys: &[SigningKeyPair],
        progress: &mut dyn FnMut(u64),
    ) -> Result<(W, WriteSummary), FormatError> {
        let wb = FormatError::WriteBundle;
        let manifest_bytes = self.manifest.to_bytes();
        let mut fw = FrameWriter::new(out);
        let mut block = Vec::with_capacity(2048);

        // manifest, then signatures sorted by key id
        archive::write_entry_header(
            &mut block,
            MANIFEST_PATH,
            manifest_bytes.len() as u64,
            self.mtime,
        )
        .map_err(wb)?;
        block.extend_from_slice(&manifest_bytes);
        block.resize(
            block.len() + archive::padding(manifest_bytes.len() as u64),
            0,
        );
        let mut signers: Vec<&SigningKeyPair> = keys.iter().collect();
        signers.sort_by_key(|k| k.id());
        signers.dedup_by_key(|k| k.id());
        for k in signers {
            let name = format!("{SIGNATURES_DIR}{}.sig", k.id());
            archive::write_entry_header(&mut block, &name, 64, self.mtime).map_err(wb)?;
            block.extend_from_slice(&k.sign(&manifest_bytes));
            block.resize(block.len() + archive::padding(64), 0);
        }
        fw.compressed(&block).map_err(wb)?;

        let mut buf = vec![0u8; 1 << 20];
        let mut raw_bytes = 0;
        for (entry, source) in self.manifest.entries.iter().zip(&self.sources) {
            block.clear();
            archive::write_entry_header(&mut block, &entry.path, entry.size, self.mtime)
                .map_err(wb)?;
            fw.compressed(&block).map_err(wb)?;
            let raw = copy_entry(entry, source, &mut fw, &mut buf, progress)?;
            if raw {
                raw_bytes += entry.size;
            }
            let pad = archive::padding(entry.size);
            if pad > 0 {
                fw.compressed(&END_OF_ARCHIVE[..pad]).map_err(wb)?;
            }
        }
        fw.compressed(&END_OF_ARCHIVE).map_err(wb)?;
        let out = fw.finish().map_err(wb)?;
        Ok((
            out,
            WriteSummary {
                manifest_sha256: Sha256Digest::of(&manifest_bytes),
                entries: self.manifest.entries.len(),
                content_bytes: self.manifest.content_size(),
                raw_bytes,
            },
        ))
    }
}

/// Copies one source into the stream, hashing it; returns whether it went
/// into raw blocks.
fn copy_entry<W: Write>(
    entry: &Entry,
    source: &ContentSource,
    fw: &mut FrameWriter<W>,
    buf: &mut [u8],
    progress: &mut dyn FnMut(u64),
) -> Result<bool, FormatError> {
    let src_err = |e: io::Error| FormatError::ReadSource {
        path: entry.path.clone(),
        source_name: source.describe(),
        error: e,
    };
    let mut r = source.open().map_err(src_err)?;
    let mut hasher = Hasher::default();
    let mut raw: Option<bool> = None;
    // read at most one byte past the declared size, to notice a grown source
    let limit = entry.size.saturating_add(1);
    loop {
        let want = buf
            .len()
            .min(usize::try_from(limit - hasher.len()).unwrap_or(usize::MAX));
        if want == 0 {
            break;
        }
        let n = read_some(&mut r, &mut buf[..want]).map_err(src_err)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        hasher.update(chunk);
        if hasher.len() > entry.size {
            break;
        }
        let is_raw = *raw.get_or_insert_with(|| entry.size >= 4096 && looks_compressed(chunk));
        if is_raw {
            fw.raw(chunk)
        } else {
            fw.compressed(chunk)
        }
        .map_err(FormatError::WriteBundle)?;
        progress(n as u64);
    }
    let (digest, len) = hasher.finish();
    if len != entry.size {
        return Err(FormatError::SourceSizeMismatch {
            path: entry.path.clone(),
            source_name: source.describe(),
            expected: entry.size,
            found: len,
        });
    }
    if digest != entry.sha256 {
        return Err(FormatError::SourceDigestMismatch {
            path: entry.path.clone(),
            source_name: source.describe(),
            expected: entry.sha256.hex(),
            found: digest.hex(),
        });
    }
    Ok(raw.unwrap_or(false))
}

/// Fills as much of `buf` as the source gives before EOF.
fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
