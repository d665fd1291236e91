//! Cutting a bundle stream into split media parts (docs/FORMAT.md, "Split
//! media parts"): [`PartWriter`] cuts it into `<bundle>.part001`,
//! `<bundle>.part002`, … while hashing each part and the whole, and
//! [`seal`] completes the set: parity parts, the parts renamed into place,
//! the signed index written last, stale parts of an older run removed.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::parts::{
    part_name, write_index, PartRecord, PartSize, PartsIndex, PartsRelease, WholeBundle,
    PARTS_FORMAT, PARTS_FORMAT_VERSION,
};
use crate::digest::{Hasher, Sha256Digest};
use crate::document::limits::MAX_PARTS;
use crate::durable::{AtomicFile, TEMP_MARKER};
use crate::keys::SigningKeyPair;
use crate::pipe::{SyncData, Worker, CHUNK, DEPTH};

/// What [`PartWriter`] wrote: the parts, still under temp names
/// (`tmp[i]`) until [`WrittenParts::commit`]. Dropped before, the temp
/// files are removed.
#[derive(Debug)]
pub struct WrittenParts {
    pub dir: PathBuf,
    pub parts: Vec<PartRecord>,
    pub tmp: Vec<PathBuf>,
    pub size: u64,
    pub sha256: Sha256Digest,
    /// The closed temp files (`durable`), renamed into place by commit.
    files: Vec<AtomicFile>,
}

impl WrittenParts {
    /// Renames every part to its final name (each already fsynced when
    /// asked; [`seal`] fsyncs the folder once after the index).
    pub fn commit(&mut self) -> io::Result<()> {
        for f in self.files.drain(..) {
            f.commit()?;
        }
        Ok(())
    }
    /// Removes the temp files (after a failure).
    pub fn discard(&mut self) {
        self.files.clear();
    }
}

/// A writer that cuts its stream into part files of at most `part_size`
/// bytes in `dir`, named `<bundle>.partNNN`. Each part is written to a temp
/// name and renamed when complete. Used inside [`crate::pipe::WriteBehind`],
/// so writing runs off the caller's thread; the per-part and whole-bundle
/// SHA-256 run on one more thread ([`PartHashes`]), fed copies of the bytes,
/// so the writing thread only writes: when the disk is the bottleneck the
/// hashing overlaps it instead of adding to it. Through the first part both
/// hashes see the same bytes from the same start, so the whole hash starts
/// as a copy of part 1's at its end and hashes only the bytes after it.
pub struct PartWriter {
    dir: PathBuf,
    bundle_name: String,
    part_size: u64,
    /// The open part: file, temp path, bytes written into it.
    cur: Option<(AtomicFile, PathBuf, u64)>,
    /// Closed parts: name and size (their hashes come from `hashes`).
    closed: Vec<(String, u64)>,
    tmp: Vec<PathBuf>,
    /// The closed parts' temp files, committed by [`WrittenParts::commit`].
    files: Vec<AtomicFile>,
    hashes: PartHashes,
    sync: bool,
}

impl fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartWriter")
            .field("dir", &self.dir)
            .field("bundle_name", &self.bundle_name)
            .field("parts", &self.closed.len())
            .finish()
    }
}

enum HashMsg {
    Data(Vec<u8>),
    /// The current part ends here.
    EndPart,
}

/// The hashes of each part and of the whole stream.
struct Hashed {
    parts: Vec<Sha256Digest>,
    whole: (Sha256Digest, u64),
}

/// The part and whole-stream SHA-256 of a [`PartWriter`], on a
/// [`Worker`] thread fed copies in buffers of [`crate::pipe::CHUNK`] bytes.
struct PartHashes {
    worker: Worker<HashMsg, Hashed>,
    buf: Vec<u8>,
}

impl PartHashes {
    fn new() -> Self {
        let worker = Worker::spawn("part hashing thread", DEPTH, |rx, recycler| {
            let mut part = Hasher::default();
            let mut whole: Option<Hasher> = None;
            let mut parts = Vec::new();
            for m in rx {
                match m {
                    HashMsg::Data(d) => {
                        part.update(&d);
                        if let Some(w) = whole.as_mut() {
                            w.update(&d);
                        }
                        recycler.give(d);
                    }
                    HashMsg::EndPart => {
                        let done = std::mem::take(&mut part);
                        if whole.is_none() {
                            // the whole stream so far is part 1
                            whole = Some(done.clone());
                        }
                        parts.push(done.finish().0);
                    }
                }
            }
            Hashed {
                parts,
                whole: whole.unwrap_or_default().finish(),
            }
        });
        Self {
            worker,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, m: HashMsg) -> io::Result<()> {
        if self.worker.send(m) {
            Ok(())
        } else {
            Err(io::Error::other("the part hashing thread stopped"))
        }
    }

    /// Hashes a copy of `data` on the helper thread.
    fn update(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf = self.worker.buffer();
                self.buf.reserve(CHUNK);
            }
            let n = (CHUNK - self.buf.len().min(CHUNK)).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() >= CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::take(&mut self.buf);
        self.send(HashMsg::Data(full))
    }

    fn end_part(&mut self) -> io::Result<()> {
        self.flush()?;
        self.send(HashMsg::EndPart)
    }

    fn finish(&mut self) -> io::Result<Hashed> {
        self.flush()?;
        self.worker.join()
    }
}

impl PartWriter {
    pub fn new(dir: &Path, bundle_name: &str, part_size: PartSize, sync: bool) -> Self {
        Self {
            dir: dir.to_owned(),
            bundle_name: bundle_name.to_owned(),
            part_size: part_size.bytes(),
            cur: None,
            closed: Vec::new(),
            tmp: Vec::new(),
            files: Vec::new(),
            hashes: PartHashes::new(),
            sync,
        }
    }

    /// Part `n`'s temp file (`durable`): beside its final name, fsynced on
    /// close when asked; the folder is fsynced once by [`seal`].
    fn part_file(&self, n: usize) -> io::Result<AtomicFile> {
        AtomicFile::options()
            .sync(self.sync)
            .sync_dir(false)
            .create(self.dir.join(part_name(&self.bundle_name, n)))
    }

    fn close_part(&mut self) -> io::Result<()> {
        if let Some((mut f, tmp, size)) = self.cur.take() {
            f.close()?;
            self.hashes.end_part()?;
            let n = self.closed.len() + 1;
            self.tmp.push(tmp);
            self.files.push(f);
            self.closed.push((part_name(&self.bundle_name, n), size));
        }
        Ok(())
    }

    /// Closes the last part; returns what was written.
    pub fn finish(mut self) -> io::Result<WrittenParts> {
        self.close_part()?;
        if self.closed.len() > MAX_PARTS {
            return Err(io::Error::other(format!(
                "{} parts, over the limit of {MAX_PARTS}: choose a larger part size",
                self.closed.len()
            )));
        }
        let hashed = self.hashes.finish()?;
        if hashed.parts.len() != self.closed.len() {
            return Err(io::Error::other("part hashes: a part was not hashed"));
        }
        let parts = std::mem::take(&mut self.closed)
            .into_iter()
            .zip(hashed.parts)
            .enumerate()
            .map(|(i, ((name, size), sha256))| PartRecord {
                number: i + 1,
                name,
                size,
                sha256,
            })
            .collect();
        let (sha256, size) = hashed.whole;
        Ok(WrittenParts {
            dir: self.dir.clone(),
            parts,
            tmp: std::mem::take(&mut self.tmp),
            size,
            sha256,
            files: std::mem::take(&mut self.files),
        })
    }

    /// Removes the temp files written so far (after a failure; dropping
    /// the writer does the same).
    pub fn abandon(mut self) {
        self.cur = None;
        self.files.clear();
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self
            .cur
            .as_ref()
            .is_some_and(|(_, _, len)| *len == self.part_size)
        {
            self.close_part()?;
        }
        if self.cur.is_none() {
            if self.closed.len() >= MAX_PARTS {
                return Err(io::Error::other(format!(
                    "more than {MAX_PARTS} parts: choose a larger part size"
                )));
            }
            let f = self.part_file(self.closed.len() + 1)?;
            let tmp = f.temp_path().to_owned();
            self.cur = Some((f, tmp, 0));
        }
        let Some((f, _, len)) = self.cur.as_mut() else {
            return Err(io::Error::other("no part open"));
        };
        let room = self.part_size - *len;
        let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
        f.write_all(&data[..n])?;
        *len += n as u64;
        self.hashes.update(&data[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SyncData for PartWriter {
    fn sync_data(&self) -> io::Result<()> {
        match &self.cur {
            Some((f, _, _)) => f.sync_data(),
            None => Ok(()),
        }
    }
}

/// Removes `<bundle>.partNNN` / `.parityN` files in `dir` beyond the ones
/// just written (left by an older run with more parts), so a folder never
/// holds a stale part of another build. Returns the names removed.
pub fn remove_stale(dir: &Path, bundle_name: &str, parts: usize, parity: usize) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return removed;
    };
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(bundle_name) else {
            continue;
        };
        let stale = if let Some(d) = rest.strip_prefix(".part") {
            d.len() >= 3
                && d.bytes().all(|c| c.is_ascii_digit())
                && d.parse::<usize>().is_ok_and(|n| n > parts)
        } else if let Some(d) = rest.strip_prefix(".parity") {
            !d.is_empty()
                && d.bytes().all(|c| c.is_ascii_digit())
                && d.parse::<usize>().is_ok_and(|n| n > parity)
        } else {
            false
        };
        if stale && fs::remove_file(ent.path()).is_ok() {
            removed.push(name);
        }
    }
    removed.sort();
    removed
}

/// Removes temp files a failed run of this process left in `dir`
/// (`durable`'s names, `.<bundle>.partNNN.partial-<pid>-<n>`, and the older
/// `.<bundle>.partNNN.partial-<pid>`).
pub fn remove_partials(dir: &Path, bundle_name: &str) {
    let marker = format!("{TEMP_MARKER}{}", std::process::id());
    let prefix = format!(".{bundle_name}.");
    if let Ok(rd) = fs::read_dir(dir) {
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let ours = name.rsplit_once(&marker).is_some_and(|(_, n)| {
                n.is_empty()
                    || n.strip_prefix('-')
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            });
            if name.starts_with(&prefix) && ours {
                let _ = fs::remove_file(ent.path());
            }
        }
    }
}

/// Everything about the bundle the index needs besides the parts.
#[derive(Debug, Clone)]
pub struct SealInfo {
    pub release: PartsRelease,
    pub manifest_sha256: Sha256Digest,
    pub part_size: PartSize,
    /// Parity parts to add (0: none).
    pub parity: usize,
    pub sync: bool,
}

/// Completes a split: computes parity parts (if asked) from the written
/// parts, renames parts and parity into place, writes the signed index last,
/// and removes stale higher-numbered parts of an older run. On failure the
/// temp files are removed.
pub fn seal(
    written: &mut WrittenParts,
    bundle_name: &str,
    info: &SealInfo,
    keys: &[SigningKeyPair],
) -> io::Result<(PartsIndex, PathBuf)> {
    let dir = written.dir.clone();
    let dir = &dir;
    let res = (|| {
        let mut parity = if info.parity > 0 {
            Some(crate::parity::encode(
                written,
                bundle_name,
                info.parity,
                info.sync,
            )?)
        } else {
            None
        };
        written.commit()?;
        if let Some((_, tmps)) = parity.as_mut() {
            for t in tmps.drain(..) {
                t.commit()?;
            }
        }
        let index = PartsIndex {
            format: PARTS_FORMAT.into(),
            format_version: PARTS_FORMAT_VERSION,
            release: info.release.clone(),
            manifest_sha256: info.manifest_sha256,
            bundle: WholeBundle {
                name: bundle_name.to_owned(),
                size: written.size,
                sha256: written.sha256,
            },
            part_size: info.part_size.bytes(),
            parts: written.parts.clone(),
            parity: parity.map(|(r, _)| r),
        };
        let (ip, _) = write_index(dir, &index, keys)?;
        let np = index.parity.as_ref().map(|p| p.parts.len()).unwrap_or(0);
        remove_stale(dir, bundle_name, index.parts.len(), np);
        if info.sync {
            File::open(dir)?.sync_all()?;
        }
        Ok((index, ip))
    })();
    if res.is_err() {
        written.discard();
        remove_partials(dir, bundle_name);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_writer_cuts_at_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let size: PartSize = "1MiB".parse().unwrap();
        let mut w = PartWriter::new(dir.path(), "b.tar.zst", size, false);
        let data: Vec<u8> = (0..(2 * (1 << 20) + 5))
            .map(|i: u32| (i % 251) as u8)
            .collect();
        for c in data.chunks(70_000) {
            w.write_all(c).unwrap();
        }
        let mut out = w.finish().unwrap();
        out.commit().unwrap();
        assert_eq!(out.parts.len(), 3);
        assert_eq!(out.parts[2].size, 5);
        assert_eq!(out.sha256, Sha256Digest::of(&data));
        let mut cat = Vec::new();
        for p in &out.parts {
            cat.extend(fs::read(dir.path().join(&p.name)).unwrap());
        }
        assert_eq!(cat, data);
    }

    #[test]
    fn part_writer_whole_hash_with_one_part_and_an_exact_fit() {
        let dir = tempfile::tempdir().unwrap();
        let size: PartSize = "1MiB".parse().unwrap();
        for len in [5usize, 1 << 20, 2 << 20, (3 << 20) + 1] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut w = PartWriter::new(dir.path(), &format!("b{len}"), size, false);
            w.write_all(&data).unwrap();
            let mut out = w.finish().unwrap();
            assert_eq!(out.parts.len(), len.div_ceil(1 << 20), "{len}");
            assert_eq!(out.sha256, Sha256Digest::of(&data), "{len}");
            assert_eq!(out.size, len as u64);
            out.discard();
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Parts are written through `durable`: under its temp names until the
    /// set is committed, and gone if it never is.
    #[test]
    fn part_temps_are_durable_and_go_when_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let size: PartSize = "1MiB".parse().unwrap();
        let mut w = PartWriter::new(dir.path(), "b", size, false);
        w.write_all(&vec![7u8; (1 << 20) + 1]).unwrap();
        let now = names(dir.path());
        assert_eq!(now.len(), 2, "{now:?}");
        let marker = format!("{TEMP_MARKER}{}-", std::process::id());
        assert!(
            now.iter()
                .all(|n| n.starts_with(".b.part00") && n.contains(&marker)),
            "{now:?}"
        );
        drop(w.finish().unwrap());
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn remove_partials_takes_this_process_temps_only() {
        let dir = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        let other = pid.wrapping_add(1);
        for n in [
            format!(".b.part001{TEMP_MARKER}{pid}-3"),
            format!(".b.parity1{TEMP_MARKER}{pid}"),
            format!(".b.part002{TEMP_MARKER}{other}-1"),
            format!(".c.part001{TEMP_MARKER}{pid}-0"),
            "b.part001".to_owned(),
        ] {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        remove_partials(dir.path(), "b");
        assert_eq!(
            names(dir.path()),
            vec![
                format!(".b.part002{TEMP_MARKER}{other}-1"),
                format!(".c.part001{TEMP_MARKER}{pid}-0"),
                "b.part001".to_owned(),
            ]
        );
    }
}
