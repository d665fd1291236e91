//! Where a bundle is read from: one file, or a set of split parts read as
//! one stream ([`BundleSource`]). Every command that reads a bundle takes
//! the paths the operator typed and resolves them here: a bundle file, a
//! parts index (`<bundle>.parts.json`), a folder holding one index, or the
//! list of part files. A part set is read through [`PartsReader`] (the
//! part-set model, `media/partset.rs`), which chains the parts in order and checks each part's size and SHA-256
//! against the signed index as it goes (on a helper thread, fed copies in
//! recycled buffers, so the part hashes use the machine's other core): no
//! concatenated copy, memory bounded. When reading fails, [`BundleSource::explain`]
//! re-checks the parts not yet confirmed and names the bad ones.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::digest::Hasher;

use crate::digest::Sha256Digest;
use crate::error::FormatError;
use crate::keys::TrustStore;
use crate::media::partset::{foreign_release, split_part_name};
use crate::parts::{file_name, index_name, SignedIndex};

pub use crate::media::partset::{PartSet, PartsProgress, PartsReader};

/// A bundle to read: a single file or a part set.
#[derive(Debug, Clone)]
pub enum BundleSource {
    File(PathBuf),
    Parts(Box<PartSet>),
}

impl BundleSource {
    /// Resolves what the operator typed. One path: a bundle file, a
    /// `*.parts.json` index, a folder with exactly one index, or a single
    /// part file. Several paths: part files (and optionally the index and
    /// parity parts) of one set. Every file given must be a listed part.
    pub fn resolve(paths: &[PathBuf]) -> Result<Self, FormatError> {
        let Some(first) = paths.first() else {
            return Err(FormatError::PartsResolve {
                reason: "no bundle given".into(),
            });
        };
        if paths.len() == 1 {
            let p = first;
            let name = file_name(p);
            if p.is_dir() {
                return Self::from_dir(p);
            }
            if name.ends_with(".parts.json") {
                return Self::from_index(p, None);
            }
            if split_part_name(&name).is_none() {
                return Ok(Self::File(p.clone()));
            }
        }
        // a list of part files (maybe with the index)
        let mut index_path: Option<PathBuf> = None;
        let mut listed = Vec::new();
        for p in paths {
            let name = file_name(p);
            if name.ends_with(".parts.sig") {
                continue; // the index's detached signatures, read with it
            }
            if name.ends_with(".parts.json") {
                if let Some(prev) = &index_path {
                    if prev != p {
                        return Err(FormatError::PartsResolve {
                            reason: format!(
                                "two parts indexes given: {} and {}",
                                prev.display(),
                                p.display()
                            ),
                        });
                    }
                }
                index_path = Some(p.clone());
            } else if p.is_dir() {
                return Err(FormatError::PartsResolve {
                    reason: format!(
                        "{} is a folder; give either one folder or a list of part files",
                        p.display()
                    ),
                });
            } else {
                listed.push(p.clone());
            }
        }
        let index_path = match index_path {
            Some(i) => i,
            None => {
                // beside the first part file, by its base name
                let p = &listed[0];
                let name = file_name(p);
                let Some((base, _, _)) = split_part_name(&name) else {
                    return Err(FormatError::PartUnlisted {
                        path: p.clone(),
                        index: PathBuf::from("(none)"),
                    });
                };
                crate::parts::beside(p, &index_name(base))
            }
        };
        Self::from_index(&index_path, Some(&listed))
    }

    fn from_dir(dir: &Path) -> Result<Self, FormatError> {
        let rd = fs::read_dir(dir).map_err(|e| FormatError::OpenBundle {
            path: dir.to_owned(),
            source: e,
        })?;
        let mut idx: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| file_name(p).ends_with(".parts.json") && !file_name(p).starts_with('.'))
            .collect();
        idx.sort();
        match idx.len() {
            1 => Self::from_index(&idx[0], None),
            0 => Err(FormatError::PartsResolve {
                reason: format!("{} holds no *.parts.json index", dir.display()),
            }),
            _ => Err(FormatError::PartsResolve {
                reason: format!(
                    "{} holds several parts indexes ({}); name the one to use",
                    dir.display(),
                    idx.iter()
                        .map(|p| file_name(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// `listed`: the part files given on the command line; None: take the
    /// parts from the index's folder, by name.
    fn from_index(index_path: &Path, listed: Option<&[PathBuf]>) -> Result<Self, FormatError> {
        let index = SignedIndex::load(index_path)?;
        let idx = &index.index;
        let base = idx.bundle.name.clone();
        let n = idx.parts.len();
        let np = idx.parity.as_ref().map(|p| p.parts.len()).unwrap_or(0);
        let mut files: Vec<Option<PathBuf>> = vec![None; n];
        let mut parity_files: Vec<Option<PathBuf>> = vec![None; np];
        match listed {
            None => {
                for p in &idx.parts {
                    let f = crate::parts::beside(index_path, &p.name);
                    if f.exists() {
                        files[p.number - 1] = Some(f);
                    }
                }
                if let Some(par) = &idx.parity {
                    for p in &par.parts {
                        let f = crate::parts::beside(index_path, &p.name);
                        if f.exists() {
                            parity_files[p.number - 1] = Some(f);
                        }
                    }
                }
                // an unlisted `<bundle>.partNNN` beside the index: stale or foreign
                if let Ok(rd) = fs::read_dir(
                    index_path
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(Path::new(".")),
                ) {
                    let mut extra: Vec<PathBuf> = rd
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| {
                            let name = file_name(p);
                            matches!(split_part_name(&name),
                                Some((b, par, k)) if b == base && (if par { k > np } else { k > n }))
                        })
                        .collect();
                    extra.sort();
                    if let Some(x) = extra.into_iter().next() {
                        return Err(FormatError::PartUnlisted {
                            path: x,
                            index: index_path.to_owned(),
                        });
                    }
                }
            }
            Some(list) => {
                for p in list {
                    let name = file_name(p);
                    let Some((b, par, k)) = split_part_name(&name) else {
                        return Err(FormatError::PartUnlisted {
                            path: p.clone(),
                            index: index_path.to_owned(),
                        });
                    };
                    if b != base {
                        if let Some(rel) = foreign_release(p, b) {
                            return Err(FormatError::PartForeign {
                                path: p.clone(),
                                release: rel,
                                expected: idx.release_label(),
                            });
                        }
                        return Err(FormatError::PartUnlisted {
                            path: p.clone(),
                            index: index_path.to_owned(),
                        });
                    }
                    let slot = if par {
                        parity_files.get_mut(k.wrapping_sub(1))
                    } else {
                        files.get_mut(k.wrapping_sub(1))
                    };
                    let Some(slot) = slot else {
                        return Err(FormatError::PartUnlisted {
                            path: p.clone(),
                            index: index_path.to_owned(),
                        });
                    };
                    if let Some(prev) = slot {
                        return Err(FormatError::PartGivenTwice {
                            what: if par {
                                format!("parity part {k}")
                            } else {
                                format!("part {k}")
                            },
                            first: prev.clone(),
                            second: p.clone(),
                        });
                    }
                    *slot = Some(p.clone());
                }
            }
        }
        Ok(Self::Parts(Box::new(PartSet {
            index,
            files,
            parity_files,
        })))
    }

    /// What to call the source in messages.
    pub fn display(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Parts(s) => s.index.path.display().to_string(),
        }
    }

    /// The bundle's size in bytes (for progress bars).
    pub fn size(&self) -> u64 {
        match self {
            Self::File(p) => fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Self::Parts(s) => s.index.index.bundle.size,
        }
    }

    /// For a part set: checks the index's signatures with `trust` (same keys
    /// and threshold as the bundle), then that every data part is present
    /// with its signed size, and every parity part likewise. A bad data part
    /// is an error (all problems are reported together); bad parity parts
    /// alone are returned as warnings (the bundle itself is whole). A single
    /// file passes.
    pub fn check(&self, trust: &TrustStore) -> Result<Vec<String>, FormatError> {
        match self {
            Self::File(_) => Ok(Vec::new()),
            Self::Parts(s) => {
                s.index.check_signatures(trust)?;
                let bad = s.stat_problems();
                if bad.iter().any(|b| !b.parity) {
                    // name every bad part (and what parity can do), not only the first found
                    return Err(s.bad_parts_error(s.full_problems(&[])));
                }
                let (n, np) = (s.data_parts(), s.parity_parts());
                Ok(bad.iter().map(|b| b.describe(n, np)).collect())
            }
        }
    }

    /// Opens the bundle as one stream. For a part set, the stream fails if a
    /// part's size or SHA-256 differs from the index, and ends only once the
    /// last part has been checked.
    pub fn open(&self) -> Result<SourceReader, FormatError> {
        match self {
            Self::File(p) => {
                let f = File::open(p).map_err(|e| FormatError::OpenBundle {
                    path: p.clone(),
                    source: e,
                })?;
                Ok(SourceReader::File(HashedFile {
                    file: f,
                    hasher: Arc::default(),
                }))
            }
            Self::Parts(s) => Ok(SourceReader::Parts(Box::new(PartsReader::new(
                (**s).clone(),
            )))),
        }
    }

    /// Turns a failure while reading into the part-level cause, when there
    /// is one: the parts not yet confirmed good are re-checked (size, then
    /// SHA-256) and every bad one is named. Otherwise `err` is returned.
    pub fn explain(&self, reader_state: Option<&PartsProgress>, err: FormatError) -> FormatError {
        let Self::Parts(s) = self else { return err };
        if matches!(
            err,
            FormatError::PartsBad { .. } | FormatError::PartsIndexSignature { .. }
        ) {
            return err;
        }
        let confirmed = reader_state.map(|r| r.confirmed()).unwrap_or_default();
        let bad = s.full_problems(&confirmed);
        if bad.iter().any(|b| !b.parity) {
            s.bad_parts_error(bad)
        } else {
            err
        }
    }

    /// Reads the whole bundle through `f` (which gets the stream), turning a
    /// failure into its part-level cause. For a part set, success means every
    /// part was read and matched the index, and that the index names this
    /// bundle's manifest (`sha_of` gives the manifest SHA-256 of the result).
    /// Also returns the SHA-256 of the bundle file, every byte of it (for a
    /// part set, the signed index's); None for a pipe, which cannot be read
    /// again for the bytes after the archive's end.
    pub fn read_all<T>(
        &self,
        f: impl FnOnce(SourceReader) -> Result<T, FormatError>,
        sha_of: impl Fn(&T) -> Sha256Digest,
    ) -> Result<(T, Option<Sha256Digest>), FormatError> {
        let r = self.open()?;
        let progress = r.progress();
        let file_hash = match &r {
            SourceReader::File(h) => Some(h.hasher.clone()),
            SourceReader::Parts(_) => None,
        };
        let t = f(r).map_err(|e| self.explain(progress.as_ref(), e))?;
        match self {
            Self::File(p) if !fs::metadata(p).is_ok_and(|m| m.is_file()) => Ok((t, None)),
            Self::File(p) => {
                let hasher = file_hash.unwrap_or_default();
                let sha = finish_file_hash(p, &hasher).map_err(|e| FormatError::OpenBundle {
                    path: p.clone(),
                    source: e,
                })?;
                Ok((t, Some(sha)))
            }
            Self::Parts(s) => {
                let done = progress.as_ref().is_some_and(PartsProgress::all_confirmed);
                if !done {
                    let confirmed = progress.as_ref().map(|p| p.confirmed()).unwrap_or_default();
                    let bad = s.full_problems(&confirmed);
                    if bad.iter().any(|b| !b.parity) {
                        return Err(s.bad_parts_error(bad));
                    }
                }
                let sha = sha_of(&t);
                if sha != s.index.index.manifest_sha256 {
                    return Err(FormatError::PartsIndex {
                        path: s.index.path.clone(),
                        reason: format!(
                            "the index names manifest sha256:{}, the parts hold sha256:{sha}",
                            s.index.index.manifest_sha256
                        ),
                    });
                }
                Ok((t, Some(s.index.index.bundle.sha256)))
            }
        }
    }
}

/// A bundle file that hashes what is read from it, on the reading thread
/// (the decompressor's helper thread, which has time to spare: the content
/// hashes are the slower side). The hasher is shared so that the reader,
/// once done, takes it and hashes the bytes the decompressor never asked
/// for (the end of the last frame, anything after it): [`finish_file_hash`].
#[derive(Debug)]
pub struct HashedFile {
    file: File,
    /// None once taken by [`finish_file_hash`]: later reads are not hashed.
    hasher: Arc<Mutex<Option<Hasher>>>,
}

impl Read for HashedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Ok(mut h) = self.hasher.lock() {
            if let Some(h) = h.as_mut() {
                h.update(&buf[..n]);
            }
        }
        Ok(n)
    }
}

/// Takes the hasher of a [`HashedFile`] (the bytes hashed so far are the
/// file's first `len` bytes) and hashes the rest of the file from there.
fn finish_file_hash(path: &Path, hasher: &Mutex<Option<Hasher>>) -> io::Result<Sha256Digest> {
    let mut h = hasher
        .lock()
        .ok()
        .and_then(|mut g| g.take())
        .unwrap_or_default();
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(h.len()))?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finish().0)
}

/// The stream of a [`BundleSource`].
#[derive(Debug)]
pub enum SourceReader {
    File(HashedFile),
    Parts(Box<PartsReader>),
}

impl SourceReader {
    /// For a part set: which parts have been confirmed so far.
    pub fn progress(&self) -> Option<PartsProgress> {
        match self {
            Self::File(_) => None,
            Self::Parts(p) => Some(p.progress.clone()),
        }
    }
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::File(f) => f.read(buf),
            Self::Parts(p) => p.read(buf),
        }
    }
}

/// Verifies a bundle from any source: for a part set, the index signatures
/// and every part's presence and size first, then the stream (each part's
/// SHA-256 on the way). The one entry point of verify, extract and staging.
pub fn verify_source(
    src: &BundleSource,
    trust: &TrustStore,
    opts: &crate::reader::VerifyOptions,
    sink: &mut dyn crate::reader::ContentSink,
    progress: &mut dyn FnMut(u64),
) -> Result<crate::reader::VerifiedBundle, FormatError> {
    verify_source_with(src, trust, &mut |_| Ok(trust.clone()), opts, sink, progress)
}

/// [`verify_source`] with the bundle's trust resolved from its head (a
/// site's signed root, extended by the roots the bundle carries); the parts
/// index is checked against `index_trust`, the keys the reader holds before
/// it reads the bundle.
pub fn verify_source_with(
    src: &BundleSource,
    index_trust: &TrustStore,
    resolve: &mut dyn FnMut(&crate::reader::Inspection) -> Result<TrustStore, FormatError>,
    opts: &crate::reader::VerifyOptions,
    sink: &mut dyn crate::reader::ContentSink,
    progress: &mut dyn FnMut(u64),
) -> Result<crate::reader::VerifiedBundle, FormatError> {
    for w in src.check(index_trust)? {
        eprintln!("warning: {w}");
    }
    let (mut v, file_sha256) = src.read_all(
        |r| crate::reader::verify_with(r, resolve, opts, sink, progress),
        |v| v.manifest_sha256,
    )?;
    v.file_sha256 = file_sha256;
    Ok(v)
}

/// [`verify_source_with`] for `self-update`
/// ([`crate::reader::verify_bootstrap_with`]): a bundle of a newer format
/// version is verified as its frozen subset.
pub fn verify_source_bootstrap(
    src: &BundleSource,
    index_trust: &TrustStore,
    resolve: &mut dyn FnMut(&crate::reader::Inspection) -> Result<TrustStore, FormatError>,
    opts: &crate::reader::VerifyOptions,
    sink: &mut dyn crate::reader::ContentSink,
    progress: &mut dyn FnMut(u64),
) -> Result<crate::reader::BootstrapVerified, FormatError> {
    for w in src.check(index_trust)? {
        eprintln!("warning: {w}");
    }
    let (mut v, file_sha256) = src.read_all(
        |r| crate::reader::verify_bootstrap_with(r, resolve, opts, sink, progress),
        |v| v.verified.manifest_sha256,
    )?;
    v.verified.file_sha256 = file_sha256;
    Ok(v)
}

/// [`inspect_source`] for `self-update` ([`crate::reader::inspect_bootstrap`]).
pub fn inspect_source_bootstrap(
    src: &BundleSource,
    limits: &crate::Limits,
) -> Result<crate::reader::Inspection, FormatError> {
    let r = src.open()?;
    let progress = r.progress();
    crate::reader::inspect_bootstrap(r, limits).map_err(|e| src.explain(progress.as_ref(), e))
}

/// Reads the head (manifest and signatures) from any source.
pub fn inspect_source(
    src: &BundleSource,
    limits: &crate::Limits,
) -> Result<crate::reader::Inspection, FormatError> {
    let r = src.open()?;
    let progress = r.progress();
    crate::reader::inspect(r, limits).map_err(|e| src.explain(progress.as_ref(), e))
}

/// The parts facts for reports: `{"parts": n, "parity": m, "index": path}`.
pub fn parts_summary(src: &BundleSource) -> Option<serde_json::Value> {
    match src {
        BundleSource::File(_) => None,
        BundleSource::Parts(s) => Some(serde_json::json!({
            "index": s.index.path,
            "parts": s.data_parts(),
            "parity": s.parity_parts(),
            "part_size": s.index.index.part_size,
            "bundle": s.index.index.bundle.name,
            "bundle_sha256": s.index.index.bundle.sha256.hex(),
        })),
    }
}
