//! Reed–Solomon parity over a part set (the `reed-solomon-simd` crate's
//! GF(2^16) code): `--parity N` adds N parity parts; any N lost or damaged
//! parts can be rebuilt by [`repair`]. Both stream in stripes: stripe `s`
//! codes bytes `[s·stripe, (s+1)·stripe)` of every data part (the shorter
//! last part padded with zeros) into `stripe` bytes of every parity part,
//! so memory is a few stripes per part, whatever the part size.
//!
//! Speed (see BENCHMARKS.md): the code works on independent 64-byte blocks,
//! so the stripe only sets how much is coded per call; 128 KiB keeps the
//! coder's work in the CPU cache. Writing and hashing the output (parity
//! parts, rebuilt parts) runs on a helper thread ([`ShardSink`]) while the
//! caller reads and codes. With one parity part the code is the byte-wise
//! XOR of the data parts (checked at run time by [`is_xor_recovery`]), and
//! repair of one lost part then XORs in large sequential reads instead of
//! running the decoder.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::digest::{Hasher, Sha256Digest};
use crate::durable::AtomicFile;
use crate::error::{BadPart, FormatError};
use crate::media::partset::PartSet;
use crate::media::split::WrittenParts;
use crate::parts::{parity_name, ParityRecord, PartRecord};
use crate::pipe::{Recycler, Worker};

pub use crate::document::limits::MAX_STRIPE;

/// The `parity.scheme` value in the parts index.
pub const SCHEME: &str = "reed-solomon-gf16";
/// Bytes per read of the XOR repair path.
const XOR_CHUNK: usize = 1 << 20;

/// Size of each parity part: the part size rounded up to whole stripes;
/// None when that does not fit in 64 bits or `stripe` is 0 (an index that
/// claims such sizes is refused, never wrapped).
pub fn parity_size(part_size: u64, stripe: u64) -> Option<u64> {
    part_size.checked_next_multiple_of(stripe)
}

/// The stripe for `n` data and `p` parity parts: 128 KiB (the coder's
/// fastest on this machine, see BENCHMARKS.md), smaller when that would
/// take over about 16 MiB of codec work memory in all; at least 4 KiB, a
/// multiple of 64.
pub fn choose_stripe(n: usize, p: usize) -> u64 {
    let shards = (n + p).next_power_of_two().max(1) as u64 * 2;
    ((16u64 << 20) / shards).clamp(4 << 10, 128 << 10) / 64 * 64
}

/// Reads `buf.len()` bytes or up to the end of `f`, zero-filling the rest.
fn read_padded(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[got..].fill(0);
    Ok(got)
}

fn rs_err(e: reed_solomon_simd::Error) -> io::Error {
    io::Error::other(format!("reed-solomon: {e}"))
}

/// `acc ^= x`, byte-wise (the compiler vectorises it).
fn xor_into(acc: &mut [u8], x: &[u8]) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a ^= *b;
    }
}

/// Whether recovery shard `k` of the code with `n` original and `p`
/// recovery shards is the plain XOR of the originals. It is for `p = 1`
/// with this crate, but that is the crate's business: this checks it by
/// coding one 64-byte stripe of pseudo-random shards. The code is linear
/// and acts alike on every 16-bit symbol, so 32 symbols agreeing leaves a
/// chance below 2^-500 that a code with some other coefficient passes;
/// and every rebuilt part is checked against the signed index anyway.
pub fn is_xor_recovery(n: usize, p: usize, k: usize) -> bool {
    let Ok(mut enc) = ReedSolomonEncoder::new(n, p, 64) else {
        return false;
    };
    let mut seed = Sha256Digest::of(b"stoa parity: is recovery shard the XOR");
    let mut want = [0u8; 64];
    for _ in 0..n {
        let mut shard = [0u8; 64];
        for half in shard.chunks_mut(32) {
            seed = Sha256Digest::of(&seed.0);
            half.copy_from_slice(&seed.0);
        }
        xor_into(&mut want, &shard);
        if enc.add_original_shard(shard).is_err() {
            return false;
        }
    }
    enc.encode()
        .ok()
        .and_then(|r| r.recovery(k).map(|s| s == want))
        .unwrap_or(false)
}

type SinkOut = io::Result<Vec<(File, Hasher)>>;

/// Writes and hashes several output files (parity parts, rebuilt parts) on
/// a helper thread, so that SHA-256 and the write system calls of the
/// output overlap with reading and coding on the caller's thread. At most
/// `depth` buffers are in flight; they are recycled.
struct ShardSink {
    worker: Worker<(usize, Vec<u8>), SinkOut>,
}

impl ShardSink {
    /// With `sync_every`, each file's written data is flushed to disk every
    /// that many bytes, so a final fsync has little left to do.
    fn new(files: Vec<File>, depth: usize, sync_every: Option<u64>) -> Self {
        let worker = Worker::spawn(
            "output writer",
            depth,
            move |rx: Receiver<(usize, Vec<u8>)>, recycler: Recycler| -> SinkOut {
                let mut outs: Vec<(File, Hasher, u64)> = files
                    .into_iter()
                    .map(|f| (f, Hasher::default(), 0))
                    .collect();
                for (k, buf) in rx {
                    let (f, h, since) = outs
                        .get_mut(k)
                        .ok_or_else(|| io::Error::other("no such output"))?;
                    f.write_all(&buf)?;
                    h.update(&buf);
                    *since += buf.len() as u64;
                    if sync_every.is_some_and(|every| *since >= every) {
                        f.sync_data()?;
                        *since = 0;
                    }
                    recycler.give(buf);
                }
                Ok(outs.into_iter().map(|(f, h, _)| (f, h)).collect())
            },
        );
        Self { worker }
    }

    /// Sends a copy of `data` to be appended to output `k`.
    fn send(&mut self, k: usize, data: &[u8]) -> io::Result<()> {
        let mut buf = self.worker.buffer();
        buf.extend_from_slice(data);
        if self.worker.send((k, buf)) {
            Ok(())
        } else {
            // the writer stopped: report its error
            Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("output writer stopped")))
        }
    }

    fn join(&mut self) -> SinkOut {
        self.worker.join()?
    }

    /// Waits for everything to be written; returns each file and the hash
    /// of what was written to it.
    fn finish(mut self) -> SinkOut {
        self.join()
    }
}

/// Computes `count` parity parts over the written (temp) data parts, into
/// temp files beside them (`durable`, not yet committed). Returns the
/// record and the temp files. The data
/// parts were just written, so they are read back from the page cache;
/// the parity parts are hashed and written on a helper thread.
pub fn encode(
    written: &WrittenParts,
    bundle_name: &str,
    count: usize,
    sync: bool,
) -> io::Result<(ParityRecord, Vec<AtomicFile>)> {
    let n = written.parts.len();
    let part_size = written.parts.first().map(|p| p.size).unwrap_or(0);
    if !ReedSolomonEncoder::supports(n, count) {
        return Err(io::Error::other(format!(
            "{n} data parts with {count} parity parts is beyond the Reed–Solomon code"
        )));
    }
    let stripe = choose_stripe(n, count);
    let stripes = part_size.div_ceil(stripe);
    let sb = stripe as usize;
    let mut inputs: Vec<File> = written
        .tmp
        .iter()
        .map(File::open)
        .collect::<io::Result<_>>()?;
    let tmps: Vec<AtomicFile> = (1..=count)
        .map(|k| {
            AtomicFile::options()
                .sync(sync)
                .sync_dir(false)
                .create(written.dir.join(parity_name(bundle_name, k)))
        })
        .collect::<io::Result<_>>()?;
    let files: Vec<File> = tmps
        .iter()
        .map(|t| t.file().and_then(File::try_clone))
        .collect::<io::Result<_>>()?;
    // about 8 MiB of output in flight
    let depth = usize::try_from((8u64 << 20) / stripe)
        .unwrap_or(64)
        .max(2 * count);
    let mut sink = ShardSink::new(files, depth, sync.then_some(64 << 20));
    let mut enc = ReedSolomonEncoder::new(n, count, sb).map_err(rs_err)?;
    let mut buf = vec![0u8; sb];
    for _ in 0..stripes {
        for f in inputs.iter_mut() {
            read_padded(f, &mut buf)?;
            enc.add_original_shard(&buf).map_err(rs_err)?;
        }
        let res = enc.encode().map_err(rs_err)?;
        for (k, shard) in res.recovery_iter().enumerate() {
            sink.send(k, shard)?;
        }
    }
    let outs = sink.finish()?;
    let mut parts = Vec::with_capacity(count);
    for (k, (f, h)) in outs.into_iter().enumerate() {
        if sync {
            f.sync_all()?;
        }
        let (sha256, size) = h.finish();
        parts.push(PartRecord {
            number: k + 1,
            name: parity_name(bundle_name, k + 1),
            size,
            sha256,
        });
    }
    Ok((
        ParityRecord {
            scheme: SCHEME.into(),
            stripe,
            parts,
        },
        tmps,
    ))
}

/// What [`repair`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepairReport {
    /// Data parts rebuilt, with where they were written.
    pub rebuilt: Vec<(String, PathBuf)>,
    /// Parts found bad (data and parity) before the repair.
    pub bad: Vec<String>,
    pub bytes_read: u64,
    pub seconds: f64,
}

/// How [`repair`] writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairOptions {
    /// Flush the rebuilt parts to disk before they are renamed into place
    /// (for repairing straight onto removable media). Off by default, as
    /// for `build`: a rebuilt part damaged by a power cut fails verify by
    /// its signed SHA-256, and running repair again is the remedy.
    pub fsync: bool,
}

/// Rebuilds the missing or damaged data parts of `set` into `out` (which
/// may be the parts' own folder: a damaged part is then replaced). When
/// presence and size already show bad data parts, the other parts are not
/// hashed first: the rebuilt parts are checked against the signed index,
/// and a damaged input cannot give a rebuilt part with the signed SHA-256
/// (every input byte enters the rebuilt bytes with a non-zero
/// coefficient). Only if a rebuilt part does not match is every part hashed
/// to name the bad ones, and the repair runs again with them known. Each
/// rebuilt part must match the signed index before it is renamed into
/// place. More bad parts than good parity parts is an error naming them.
pub fn repair(set: &PartSet, out: &Path, opts: RepairOptions) -> Result<RepairReport, FormatError> {
    let t0 = std::time::Instant::now();
    let stat = set.stat_problems();
    if stat.iter().any(|b| !b.parity) {
        if let Some(r) = repair_with(set, out, stat, true, opts, t0)? {
            return Ok(r);
        }
    }
    repair_with(set, out, set.full_problems(&[]), false, opts, t0)?
        .ok_or_else(|| FormatError::Repair("a part changed while it was read".into()))
}

/// Where the rebuilt bytes come from: the byte-wise XOR of one parity part
/// and the good data parts, or the Reed–Solomon decoder.
enum Inputs {
    Xor {
        parity: File,
        data: Vec<File>,
    },
    Decoder {
        data: Vec<Option<File>>,
        parity: Vec<(usize, File)>,
    },
}

/// One repair pass with `bad` as the known bad parts. With `optimistic`
/// (the other parts were not hashed), a rebuilt part that does not match
/// the index gives `None` instead of an error.
fn repair_with(
    set: &PartSet,
    out: &Path,
    bad: Vec<BadPart>,
    optimistic: bool,
    opts: RepairOptions,
    t0: std::time::Instant,
) -> Result<Option<RepairReport>, FormatError> {
    let idx = &set.index.index;
    let n = idx.parts.len();
    let np = set.parity_parts();
    let names: Vec<String> = bad.iter().map(|b| b.describe(n, np)).collect();
    let bad_data: Vec<usize> = bad
        .iter()
        .filter(|b| !b.parity)
        .map(|b| b.number - 1)
        .collect();
    if bad_data.is_empty() {
        return Ok(Some(RepairReport {
            rebuilt: Vec::new(),
            bad: names,
            bytes_read: 0,
            seconds: t0.elapsed().as_secs_f64(),
        }));
    }
    let Some(par) = &idx.parity else {
        return Err(FormatError::PartsBad {
            message: format!(
                "repair parts: {}; the set has no parity parts, so nothing can be rebuilt",
                names.join("; ")
            ),
            bad,
        });
    };
    let good_parity: Vec<usize> = (0..np)
        .filter(|k| !bad.iter().any(|b| b.parity && b.number == k + 1))
        .collect();
    if bad.len() > np || bad_data.len() > good_parity.len() {
        return Err(FormatError::PartsBad {
            message: format!(
                "repair parts: {} parts bad ({}), parity can rebuild up to {np}: not repairable",
                bad.len(),
                names.join("; ")
            ),
            bad,
        });
    }
    fs::create_dir_all(out)
        .map_err(|e| FormatError::Repair(format!("create {}: {e}", out.display())))?;
    let io_err = |what: &str, p: &Path, e: io::Error| {
        FormatError::Repair(format!("{what} {}: {e}", p.display()))
    };
    let open_data = |i: usize| -> Result<File, FormatError> {
        let p = set.files[i]
            .as_ref()
            .ok_or_else(|| FormatError::Repair(format!("part {} has no file", i + 1)))?;
        File::open(p).map_err(|e| io_err("open", p, e))
    };
    let open_parity = |k: usize| -> Result<File, FormatError> {
        let p = set.parity_files[k]
            .as_ref()
            .ok_or_else(|| FormatError::Repair(format!("parity part {} has no file", k + 1)))?;
        File::open(p).map_err(|e| io_err("open", p, e))
    };
    let inputs = if bad_data.len() == 1 && is_xor_recovery(n, np, good_parity[0]) {
        Inputs::Xor {
            parity: open_parity(good_parity[0])?,
            data: (0..n)
                .filter(|i| *i != bad_data[0])
                .map(open_data)
                .collect::<Result<_, _>>()?,
        }
    } else {
        Inputs::Decoder {
            data: (0..n)
                .map(|i| (!bad_data.contains(&i)).then(|| open_data(i)).transpose())
                .collect::<Result<_, _>>()?,
            parity: good_parity
                .iter()
                .take(bad_data.len())
                .map(|&k| Ok((k, open_parity(k)?)))
                .collect::<Result<_, FormatError>>()?,
        }
    };
    // writers for the rebuilt parts, on a helper thread that hashes them
    // too; temp files beside their final names (`durable`), removed on any
    // early return
    let mut temps: Vec<AtomicFile> = Vec::with_capacity(bad_data.len());
    let mut files = Vec::with_capacity(bad_data.len());
    for &i in &bad_data {
        let dest = out.join(&idx.parts[i].name);
        let t = AtomicFile::options()
            .sync(opts.fsync)
            .sync_dir(false)
            .create(&dest)
            .map_err(|e| io_err("create", &dest, e))?;
        files.push(
            t.file()
                .and_then(File::try_clone)
                .map_err(|e| io_err("open", &dest, e))?,
        );
        temps.push(t);
    }
    let tmps: Vec<PathBuf> = temps.iter().map(|t| t.temp_path().to_owned()).collect();
    let sink = ShardSink::new(files, 8, opts.fsync.then_some(64 << 20));
    let rebuilt_sizes: Vec<u64> = bad_data.iter().map(|&i| idx.parts[i].size).collect();
    let res = match inputs {
        Inputs::Xor { parity, data } => rebuild_xor(parity, data, rebuilt_sizes[0], sink),
        Inputs::Decoder { data, parity } => rebuild_decoder(
            data,
            parity,
            &bad_data,
            &rebuilt_sizes,
            n,
            np,
            par.stripe,
            idx.part_size,
            sink,
        ),
    };
    let (outs, bytes_read) = res?;
    let mut finals = Vec::new();
    for ((&i, (f, h)), tmp) in bad_data.iter().zip(outs).zip(&tmps) {
        let rec = &idx.parts[i];
        if opts.fsync {
            if let Err(e) = f.sync_all() {
                return Err(io_err("fsync", tmp, e));
            }
        }
        let (sha, size) = h.finish();
        if sha != rec.sha256 || size != rec.size {
            if optimistic {
                return Ok(None);
            }
            return Err(FormatError::Repair(format!(
                "rebuilt part {} of {n} ({}) does not match the signed index (a parity part is damaged as well?)",
                rec.number, rec.name
            )));
        }
        finals.push(rec.name.clone());
    }
    let mut rebuilt = Vec::new();
    for (name, t) in finals.into_iter().zip(temps) {
        let dest = t.final_path().to_owned();
        t.commit().map_err(|e| io_err("rename", &dest, e))?;
        rebuilt.push((name, dest));
    }
    if opts.fsync {
        let _ = File::open(out).and_then(|d| d.sync_all());
    }
    // a repair into another folder carries the index along
    let idx_dir = set
        .index
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if fs::canonicalize(idx_dir).ok() != fs::canonicalize(out).ok() {
        let base = &idx.bundle.name;
        for name in [crate::parts::index_name(base), crate::parts::sig_name(base)] {
            let from = crate::parts::beside(&set.index.path, &name);
            let to = out.join(&name);
            if !to.exists() {
                fs::copy(&from, &to).map_err(|e| io_err("copy", &to, e))?;
            }
        }
    }
    Ok(Some(RepairReport {
        rebuilt,
        bad: names,
        bytes_read,
        seconds: t0.elapsed().as_secs_f64(),
    }))
}

/// One lost part as the XOR of the parity part and every other data part
/// (shorter parts count as zero-padded), in large sequential reads.
fn rebuild_xor(
    mut parity: File,
    mut data: Vec<File>,
    size: u64,
    mut sink: ShardSink,
) -> Result<(Vec<(File, Hasher)>, u64), FormatError> {
    let rerr = |what: &str, e: io::Error| FormatError::Repair(format!("read {what}: {e}"));
    let mut acc = vec![0u8; XOR_CHUNK];
    let mut buf = vec![0u8; XOR_CHUNK];
    let mut done = 0u64;
    let mut bytes_read = 0u64;
    while done < size {
        let take = usize::try_from(size - done)
            .unwrap_or(usize::MAX)
            .min(XOR_CHUNK);
        bytes_read +=
            read_padded(&mut parity, &mut acc[..take]).map_err(|e| rerr("parity part", e))? as u64;
        for f in data.iter_mut() {
            bytes_read += read_padded(f, &mut buf[..take]).map_err(|e| rerr("part", e))? as u64;
            xor_into(&mut acc[..take], &buf[..take]);
        }
        sink.send(0, &acc[..take])
            .map_err(|e| FormatError::Repair(format!("write rebuilt part: {e}")))?;
        done += take as u64;
    }
    let outs = sink
        .finish()
        .map_err(|e| FormatError::Repair(format!("write rebuilt part: {e}")))?;
    Ok((outs, bytes_read))
}

/// Lost parts through the Reed–Solomon decoder, stripe by stripe.
#[allow(clippy::too_many_arguments)]
fn rebuild_decoder(
    mut data: Vec<Option<File>>,
    mut parity: Vec<(usize, File)>,
    bad_data: &[usize],
    sizes: &[u64],
    n: usize,
    np: usize,
    stripe: u64,
    part_size: u64,
    mut sink: ShardSink,
) -> Result<(Vec<(File, Hasher)>, u64), FormatError> {
    let rs = |e: reed_solomon_simd::Error| FormatError::Repair(e.to_string());
    let sb = usize::try_from(stripe).map_err(|_| FormatError::Repair("stripe too large".into()))?;
    let stripes = part_size.div_ceil(stripe);
    let mut dec = ReedSolomonDecoder::new(n, np, sb).map_err(rs)?;
    let mut buf = vec![0u8; sb];
    let mut bytes_read = 0u64;
    for s in 0..stripes {
        for (i, f) in data.iter_mut().enumerate() {
            if let Some(f) = f {
                bytes_read += read_padded(f, &mut buf)
                    .map_err(|e| FormatError::Repair(format!("read part {}: {e}", i + 1)))?
                    as u64;
                dec.add_original_shard(i, &buf).map_err(rs)?;
            }
        }
        for (k, f) in parity.iter_mut() {
            bytes_read += read_padded(f, &mut buf)
                .map_err(|e| FormatError::Repair(format!("read parity part {}: {e}", *k + 1)))?
                as u64;
            dec.add_recovery_shard(*k, &buf).map_err(rs)?;
        }
        let r = dec.decode().map_err(rs)?;
        for (j, (&i, &size)) in bad_data.iter().zip(sizes).enumerate() {
            let shard = r
                .restored_original(i)
                .ok_or_else(|| FormatError::Repair(format!("part {} not restored", i + 1)))?;
            let start = s * stripe;
            let take = size.saturating_sub(start).min(stripe) as usize;
            if take > 0 {
                sink.send(j, &shard[..take])
                    .map_err(|e| FormatError::Repair(format!("write rebuilt part: {e}")))?;
            }
        }
    }
    let outs = sink
        .finish()
        .map_err(|e| FormatError::Repair(format!("write rebuilt part: {e}")))?;
    Ok((outs, bytes_read))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_parity_part_is_the_xor_of_the_data_parts() {
        for n in [1, 2, 3, 5, 6, 17, 64, 100, 999] {
            assert!(is_xor_recovery(n, 1, 0), "{n} data parts, 1 parity");
        }
        // two parity parts are a real Reed–Solomon code, not XOR
        assert!(!is_xor_recovery(5, 2, 0) || !is_xor_recovery(5, 2, 1));
    }

    #[test]
    fn stripe_is_128k_or_less_and_bounds_codec_memory() {
        assert_eq!(choose_stripe(5, 1), 128 << 10);
        assert_eq!(choose_stripe(999, 255) % 64, 0);
        assert!(choose_stripe(999, 255) * 2048 <= 16 << 20);
        assert!(choose_stripe(999, 255) >= 4 << 10);
    }
}
