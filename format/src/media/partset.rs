//! The part-set model (docs/FORMAT.md, "Reading parts"): a resolved
//! [`PartSet`] (the signed index and the file of each part), its health
//! (which parts are missing, short, or hold other bytes: [`BadPart`]s, named
//! in one error), the part-name grammar read back (`x.part003`, `x.parity1`),
//! and [`PartsReader`], which chains the data parts in order as one stream
//! and checks each part's size and SHA-256 against the signed index as it
//! goes (on a helper thread, fed copies in recycled buffers, so the part
//! hashes use the machine's other core): no concatenated copy, memory
//! bounded. Resolving what the operator typed into a set is
//! `read/source.rs`; rebuilding bad parts is [`super::parity`].

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use crate::digest::{Hasher, Sha256Digest};
use crate::error::{BadPart, FormatError, PartProblem};
use crate::parts::{file_name, index_name, PartRecord, PartsIndex, SignedIndex};
use crate::pipe::{Recycler, Worker};

/// A resolved part set: the signed index and, per data part, the file that
/// holds it (None when missing). Parity parts likewise.
#[derive(Debug, Clone)]
pub struct PartSet {
    pub index: SignedIndex,
    pub files: Vec<Option<PathBuf>>,
    pub parity_files: Vec<Option<PathBuf>>,
}

fn is_part_suffix(rest: &str) -> Option<usize> {
    let d = rest.strip_prefix(".part")?;
    (d.len() >= 3 && d.bytes().all(|c| c.is_ascii_digit()))
        .then(|| d.parse().ok())
        .flatten()
}

fn is_parity_suffix(rest: &str) -> Option<usize> {
    let d = rest.strip_prefix(".parity")?;
    (!d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
        .then(|| d.parse().ok())
        .flatten()
}

/// Splits `x.tar.zst.part003` into (`x.tar.zst`, part 3), `.parity1` into
/// (`x.tar.zst`, parity 1).
pub(crate) fn split_part_name(name: &str) -> Option<(&str, bool, usize)> {
    if let Some(i) = name.rfind(".part") {
        if let Some(n) = is_part_suffix(&name[i..]) {
            return Some((&name[..i], false, n));
        }
    }
    if let Some(i) = name.rfind(".parity") {
        if let Some(n) = is_parity_suffix(&name[i..]) {
            return Some((&name[..i], true, n));
        }
    }
    None
}

/// Says which release a foreign part file belongs to, from the index of its
/// own base name beside it (unsigned: for the message only).
pub(crate) fn foreign_release(file: &Path, base: &str) -> Option<String> {
    let idx = crate::parts::beside(file, &index_name(base));
    let bytes = fs::read(&idx).ok()?;
    PartsIndex::from_bytes(&bytes, &idx)
        .ok()
        .map(|i| i.release_label())
}

impl PartSet {
    pub fn data_parts(&self) -> usize {
        self.index.index.parts.len()
    }
    pub fn parity_parts(&self) -> usize {
        self.index
            .index
            .parity
            .as_ref()
            .map(|p| p.parts.len())
            .unwrap_or(0)
    }

    fn records(&self) -> impl Iterator<Item = (bool, &PartRecord, &Option<PathBuf>)> {
        let data = self
            .index
            .index
            .parts
            .iter()
            .zip(&self.files)
            .map(|(r, f)| (false, r, f));
        let par = self
            .index
            .index
            .parity
            .iter()
            .flat_map(|p| p.parts.iter())
            .zip(&self.parity_files)
            .map(|(r, f)| (true, r, f));
        data.chain(par)
    }

    fn bad(parity: bool, r: &PartRecord, problem: PartProblem) -> BadPart {
        BadPart {
            parity,
            number: r.number,
            name: r.name.clone(),
            problem,
        }
    }

    fn stat_one(r: &PartRecord, f: &Option<PathBuf>) -> Option<PartProblem> {
        let Some(f) = f else {
            return Some(PartProblem::Missing);
        };
        match fs::metadata(f) {
            Ok(m) if m.is_file() && m.len() == r.size => None,
            Ok(m) if m.is_file() => Some(PartProblem::Size {
                found: m.len(),
                expected: r.size,
            }),
            Ok(_) => Some(PartProblem::Unreadable("not a regular file".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(PartProblem::Missing),
            Err(e) => Some(PartProblem::Unreadable(e.to_string())),
        }
    }

    /// Presence and size of every part (data and parity), without reading.
    pub fn stat_problems(&self) -> Vec<BadPart> {
        self.records()
            .filter_map(|(par, r, f)| Self::stat_one(r, f).map(|p| Self::bad(par, r, p)))
            .collect()
    }

    /// Presence, size and SHA-256 of every part, except data parts already
    /// confirmed good (by number).
    pub fn full_problems(&self, confirmed: &[usize]) -> Vec<BadPart> {
        let by_sha: BTreeMap<Sha256Digest, String> = self
            .records()
            .map(|(par, r, _)| {
                (
                    r.sha256,
                    if par {
                        format!("it holds parity part {}", r.number)
                    } else {
                        format!("it holds part {}: renamed or reordered", r.number)
                    },
                )
            })
            .collect();
        let mut out = Vec::new();
        for (par, r, f) in self.records() {
            if !par && confirmed.contains(&r.number) {
                continue;
            }
            if let Some(p) = Self::stat_one(r, f) {
                out.push(Self::bad(par, r, p));
                continue;
            }
            let Some(f) = f else { continue };
            match File::open(f).and_then(Sha256Digest::of_reader) {
                Ok((sha, _)) if sha == r.sha256 => {}
                Ok((sha, _)) => {
                    let holds = by_sha.get(&sha).cloned().or_else(|| {
                        let name = file_name(f);
                        let (b, _, _) = split_part_name(&name)?;
                        let _ = b;
                        self.foreign_by_sibling(f, &sha)
                    });
                    out.push(Self::bad(par, r, PartProblem::Sha256Mismatch { holds }));
                }
                Err(e) => out.push(Self::bad(par, r, PartProblem::Unreadable(e.to_string()))),
            }
        }
        out
    }

    /// A part whose bytes are listed by another `*.parts.json` beside it:
    /// "it belongs to stoa-platform 2.1.0".
    fn foreign_by_sibling(&self, f: &Path, sha: &Sha256Digest) -> Option<String> {
        let dir = f
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        for ent in fs::read_dir(dir).ok()?.flatten() {
            let p = ent.path();
            if !file_name(&p).ends_with(".parts.json") || p == self.index.path {
                continue;
            }
            let Ok(bytes) = fs::read(&p) else { continue };
            let Ok(other) = PartsIndex::from_bytes(&bytes, &p) else {
                continue;
            };
            if let Some(r) = other.parts.iter().find(|r| &r.sha256 == sha) {
                return Some(format!(
                    "it belongs to {} (part {})",
                    other.release_label(),
                    r.number
                ));
            }
        }
        None
    }

    /// The error for a list of bad parts: each named, and what parity can do.
    pub fn bad_parts_error(&self, bad: Vec<BadPart>) -> FormatError {
        let n = self.data_parts();
        let np = self.parity_parts();
        let list: Vec<String> = bad.iter().map(|b| b.describe(n, np)).collect();
        let lost = bad.len();
        let parity = if np == 0 {
            String::new()
        } else if lost <= np {
            format!("; repairable: parity can rebuild up to {np} (run stoa-updater repair)")
        } else {
            format!("; parity can rebuild up to {np}: not repairable")
        };
        let head = if lost == 1 {
            String::new()
        } else {
            format!("{lost} parts bad: ")
        };
        FormatError::PartsBad {
            message: format!("{head}{}{parity}", list.join("; ")),
            bad,
        }
    }
}

/// Which data parts a [`PartsReader`] has confirmed good, shared with the
/// caller (the reader itself may live on another thread).
#[derive(Debug, Clone, Default)]
pub struct PartsProgress {
    inner: Arc<Mutex<ProgressState>>,
}

#[derive(Debug, Default)]
struct ProgressState {
    confirmed: Vec<usize>,
    total: usize,
    problem: Option<String>,
}

impl PartsProgress {
    pub fn confirmed(&self) -> Vec<usize> {
        self.inner
            .lock()
            .map(|s| s.confirmed.clone())
            .unwrap_or_default()
    }
    pub fn all_confirmed(&self) -> bool {
        self.inner
            .lock()
            .map(|s| s.total > 0 && s.confirmed.len() == s.total && s.problem.is_none())
            .unwrap_or(false)
    }
    fn problem(&self) -> Option<String> {
        self.inner.lock().ok().and_then(|s| s.problem.clone())
    }
}

enum HashMsg {
    Data(Vec<u8>),
    End(usize),
}

/// Reads the data parts in order as one stream. Each part is opened when
/// reached, must hold exactly its signed size, and is hashed on a helper
/// thread; a part whose SHA-256 differs fails the stream (at the latest
/// when the next part starts, and always before the end of the stream).
#[derive(Debug)]
pub struct PartsReader {
    set: PartSet,
    next: usize,
    cur: Option<(File, u64)>,
    /// The part hashes, on their own thread.
    hashes: Worker<HashMsg, ()>,
    pub(crate) progress: PartsProgress,
    finished: bool,
}

impl std::fmt::Debug for HashMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Data(d) => write!(f, "Data({})", d.len()),
            Self::End(n) => write!(f, "End({n})"),
        }
    }
}

impl PartsReader {
    pub(crate) fn new(set: PartSet) -> Self {
        let progress = PartsProgress::default();
        if let Ok(mut s) = progress.inner.lock() {
            s.total = set.data_parts();
        }
        let records: Vec<PartRecord> = set.index.index.parts.clone();
        let prog = progress.clone();
        let hashes = Worker::spawn(
            "part hashing thread",
            crate::pipe::DEPTH,
            move |rx, recycler| hash_thread(rx, &recycler, &records, &prog),
        );
        Self {
            set,
            next: 0,
            cur: None,
            hashes,
            progress,
            finished: false,
        }
    }

    fn fail(&self, msg: String) -> io::Error {
        if let Ok(mut s) = self.progress.inner.lock() {
            s.problem.get_or_insert(msg.clone());
        }
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    fn send(&mut self, m: HashMsg) -> io::Result<()> {
        if self.hashes.send(m) {
            Ok(())
        } else {
            Err(io::Error::other("part hashing thread stopped"))
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.hashes.join()?;
        self.finished = true;
        match self.progress.problem() {
            Some(p) => Err(io::Error::new(io::ErrorKind::InvalidData, p)),
            None => Ok(()),
        }
    }
}

fn hash_thread(
    rx: Receiver<HashMsg>,
    recycler: &Recycler,
    records: &[PartRecord],
    prog: &PartsProgress,
) {
    let mut h = Hasher::default();
    for m in rx {
        match m {
            HashMsg::Data(d) => {
                h.update(&d);
                recycler.give(d);
            }
            HashMsg::End(i) => {
                let (sha, len) = std::mem::take(&mut h).finish();
                let r = &records[i];
                if let Ok(mut s) = prog.inner.lock() {
                    if sha == r.sha256 && len == r.size {
                        s.confirmed.push(r.number);
                    } else {
                        s.problem.get_or_insert(format!(
                            "part {} of {} ({}): sha256 mismatch",
                            r.number,
                            records.len(),
                            r.name
                        ));
                    }
                }
            }
        }
    }
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        if let Some(p) = self.progress.problem() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, p));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n_parts = self.set.data_parts();
            if self.cur.is_none() {
                if self.next == n_parts {
                    self.finish()?;
                    return Ok(0);
                }
                let r = &self.set.index.index.parts[self.next];
                let name = r.name.clone();
                let number = r.number;
                let Some(path) = self.set.files[self.next].clone() else {
                    return Err(self.fail(format!("part {number} of {n_parts} ({name}): missing")));
                };
                let f = File::open(&path)
                    .map_err(|e| self.fail(format!("part {number} of {n_parts} ({name}): {e}")))?;
                self.cur = Some((f, 0));
            }
            let i = self.next;
            let r = &self.set.index.index.parts[i];
            let (size, number, name) = (r.size, r.number, r.name.clone());
            let Some((f, got)) = self.cur.as_mut() else {
                continue;
            };
            let want = usize::try_from(size - *got)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = if want == 0 {
                0
            } else {
                f.read(&mut buf[..want])?
            };
            if n == 0 {
                let got = *got;
                if got < size {
                    return Err(self.fail(format!(
                        "part {number} of {n_parts} ({name}): {got} bytes, the signed index says {size} (truncated)"
                    )));
                }
                // the part must end here
                let mut probe = [0u8; 1];
                if f.read(&mut probe)? != 0 {
                    return Err(self.fail(format!(
                        "part {number} of {n_parts} ({name}): longer than the {size} bytes the signed index says"
                    )));
                }
                self.cur = None;
                self.next += 1;
                self.send(HashMsg::End(i))?;
                continue;
            }
            *got += n as u64;
            // a copy for the hashing thread, in a recycled buffer: no
            // allocation (and no fresh pages) per read
            let mut copy = self.hashes.buffer();
            copy.extend_from_slice(&buf[..n]);
            self.send(HashMsg::Data(copy))?;
            return Ok(n);
        }
    }
}
