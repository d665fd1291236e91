//! Reed–Solomon parity over a part set (the `reed-solomon-simd` crate's
//! GF(2^16) code): `--parity N` adds N parity parts; any N lost or damaged
//! parts can be rebuilt by [`repair`]. Both stream in stripes: stripe `s`
//! codes bytes `[s·stripe, (s+1)·stripe)` of every data part (the shorter
//! last part padded with zeros) into `stripe` bytes of every parity part,
//! so memory is a few stripes per part, whatever the part size.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::digest::Hasher;
use crate::error::FormatError;
use crate::parts::{parity_name, ParityRecord, PartRecord, WrittenParts};
use crate::source::{BadPart, PartSet};

/// The `parity.scheme` value in the parts index.
pub const SCHEME: &str = "reed-solomon-gf16";
/// Largest stripe accepted from an index (bytes per part per step).
pub const MAX_STRIPE: u64 = 16 << 20;

/// Size of each parity part: the part size rounded up to whole stripes.
pub fn parity_size(part_size: u64, stripe: u64) -> u64 {
    part_size.div_ceil(stripe) * stripe
}

/// The stripe for `n` data and `p` parity parts: about 16 MiB of codec
/// work memory in all, between 4 KiB and 1 MiB, a multiple of 64.
pub fn choose_stripe(n: usize, p: usize) -> u64 {
    let shards = (n + p).next_power_of_two().max(1) as u64 * 2;
    ((16u64 << 20) / shards).clamp(4 << 10, 1 << 20) / 64 * 64
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

/// Computes `count` parity parts over the written (temp) data parts, into
/// temp files beside them. Returns the record and the temp paths.
pub fn encode(
    written: &WrittenParts,
    bundle_name: &str,
    count: usize,
    sync: bool,
) -> io::Result<(ParityRecord, Vec<PathBuf>)> {
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
    let tmps: Vec<PathBuf> = (1..=count)
        .map(|k| {
            written.dir.join(format!(
                ".{}.partial-{}",
                parity_name(bundle_name, k),
                std::process::id()
            ))
        })
        .collect();
    let mut outs: Vec<(io::BufWriter<File>, Hasher)> = tmps
        .iter()
        .map(|t| {
            Ok((
                io::BufWriter::with_capacity(1 << 20, File::create(t)?),
                Hasher::default(),
            ))
        })
        .collect::<io::Result<_>>()?;
    let mut enc = ReedSolomonEncoder::new(n, count, sb).map_err(rs_err)?;
    let mut buf = vec![0u8; sb];
    for _ in 0..stripes {
        for f in inputs.iter_mut() {
            read_padded(f, &mut buf)?;
            enc.add_original_shard(&buf).map_err(rs_err)?;
        }
        let res = enc.encode().map_err(rs_err)?;
        for ((w, h), shard) in outs.iter_mut().zip(res.recovery_iter()) {
            w.write_all(shard)?;
            h.update(shard);
        }
    }
    let mut parts = Vec::with_capacity(count);
    for (k, (w, h)) in outs.into_iter().enumerate() {
        let f = w.into_inner().map_err(|e| e.into_error())?;
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

/// Rebuilds the missing or damaged data parts of `set` into `out` (which
/// may be the parts' own folder: a damaged part is then replaced). The
/// shards used must be good: when presence and size already show bad data
/// parts, the others are hashed while they are decoded (one pass) and the
/// repair starts over with a full check if one of them turns out damaged;
/// otherwise every part is hashed first. Each rebuilt part must match the
/// signed index before it is renamed into place. More bad parts than good
/// parity parts is an error naming them.
pub fn repair(set: &PartSet, out: &Path) -> Result<RepairReport, FormatError> {
    let t0 = std::time::Instant::now();
    let stat = set.stat_problems();
    if stat.iter().any(|b| !b.parity) {
        if let Some(r) = repair_with(set, out, stat, true, t0)? {
            return Ok(r);
        }
    }
    repair_with(set, out, set.full_problems(&[]), false, t0)?
        .ok_or_else(|| FormatError::Repair("a part changed while it was read".into()))
}

/// One repair pass with `bad` as the known bad parts. With `check_inputs`,
/// the shards read are hashed and `None` is returned if one of them does
/// not match the index.
fn repair_with(
    set: &PartSet,
    out: &Path,
    bad: Vec<BadPart>,
    check_inputs: bool,
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
    let stripe = par.stripe;
    let sb = stripe as usize;
    let stripes = idx.part_size.div_ceil(stripe);
    // readers: good data parts, good parity parts
    let mut data_in: Vec<Option<File>> = Vec::with_capacity(n);
    for (i, f) in set.files.iter().enumerate() {
        if bad_data.contains(&i) {
            data_in.push(None);
        } else {
            let p = f
                .as_ref()
                .ok_or_else(|| FormatError::Repair(format!("part {} has no file", i + 1)))?;
            data_in.push(Some(File::open(p).map_err(|e| io_err("open", p, e))?));
        }
    }
    let mut par_in: Vec<(usize, File)> = Vec::new();
    for &k in good_parity.iter().take(bad_data.len()) {
        let p = set.parity_files[k]
            .as_ref()
            .ok_or_else(|| FormatError::Repair(format!("parity part {} has no file", k + 1)))?;
        par_in.push((k, File::open(p).map_err(|e| io_err("open", p, e))?));
    }
    // writers for the rebuilt parts
    let mut outs: Vec<(usize, PathBuf, io::BufWriter<File>, Hasher)> = Vec::new();
    for &i in &bad_data {
        let name = &idx.parts[i].name;
        let tmp = out.join(format!(".{name}.partial-{}", std::process::id()));
        let f = File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        outs.push((
            i,
            tmp,
            io::BufWriter::with_capacity(1 << 20, f),
            Hasher::default(),
        ));
    }
    let cleanup = |outs: &[(usize, PathBuf, io::BufWriter<File>, Hasher)]| {
        for (_, t, _, _) in outs {
            let _ = fs::remove_file(t);
        }
    };
    let mut dec =
        ReedSolomonDecoder::new(n, np, sb).map_err(|e| FormatError::Repair(e.to_string()))?;
    let mut buf = vec![0u8; sb];
    let mut bytes_read = 0u64;
    let mut data_h: Vec<Hasher> = vec![Hasher::default(); n];
    let mut par_h: Vec<Hasher> = vec![Hasher::default(); par_in.len()];
    let res = (|| -> Result<(), FormatError> {
        for s in 0..stripes {
            for (i, f) in data_in.iter_mut().enumerate() {
                if let Some(f) = f {
                    let got = read_padded(f, &mut buf)
                        .map_err(|e| FormatError::Repair(format!("read part {}: {e}", i + 1)))?;
                    if check_inputs {
                        data_h[i].update(&buf[..got]);
                    }
                    dec.add_original_shard(i, &buf)
                        .map_err(|e| FormatError::Repair(e.to_string()))?;
                    bytes_read += stripe;
                }
            }
            for (j, (k, f)) in par_in.iter_mut().enumerate() {
                let got = read_padded(f, &mut buf).map_err(|e| {
                    FormatError::Repair(format!("read parity part {}: {e}", *k + 1))
                })?;
                if check_inputs {
                    par_h[j].update(&buf[..got]);
                }
                dec.add_recovery_shard(*k, &buf)
                    .map_err(|e| FormatError::Repair(e.to_string()))?;
                bytes_read += stripe;
            }
            let r = dec
                .decode()
                .map_err(|e| FormatError::Repair(e.to_string()))?;
            for (i, tmp, w, h) in outs.iter_mut() {
                let shard = r
                    .restored_original(*i)
                    .ok_or_else(|| FormatError::Repair(format!("part {} not restored", *i + 1)))?;
                let size = idx.parts[*i].size;
                let start = s * stripe;
                let take = size.saturating_sub(start).min(stripe) as usize;
                w.write_all(&shard[..take])
                    .map_err(|e| io_err("write", tmp, e))?;
                h.update(&shard[..take]);
            }
        }
        Ok(())
    })();
    if let Err(e) = res {
        cleanup(&outs);
        return Err(e);
    }
    if check_inputs {
        let data_ok = data_in.iter().enumerate().all(|(i, f)| {
            f.is_none() || {
                let (sha, len) = std::mem::take(&mut data_h[i]).finish();
                sha == idx.parts[i].sha256 && len == idx.parts[i].size
            }
        });
        let par_ok = par_in.iter().enumerate().all(|(j, (k, _))| {
            let (sha, len) = std::mem::take(&mut par_h[j]).finish();
            sha == par.parts[*k].sha256 && len == par.parts[*k].size
        });
        if !(data_ok && par_ok) {
            cleanup(&outs);
            return Ok(None);
        }
    }
    let mut rebuilt = Vec::new();
    let mut finals = Vec::new();
    for (i, tmp, w, h) in std::mem::take(&mut outs) {
        let rec = &idx.parts[i];
        let f = w
            .into_inner()
            .map_err(|e| io_err("write", &tmp, e.into_error()))?;
        f.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
        let (sha, size) = h.finish();
        if sha != rec.sha256 || size != rec.size {
            let _ = fs::remove_file(&tmp);
            for (_, t) in &finals {
                let _ = fs::remove_file(t);
            }
            return Err(FormatError::Repair(format!(
                "rebuilt part {} of {n} ({}) does not match the signed index (a parity part is damaged as well?)",
                rec.number, rec.name
            )));
        }
        finals.push((rec.name.clone(), tmp));
    }
    for (name, tmp) in finals {
        let dest = out.join(&name);
        fs::rename(&tmp, &dest).map_err(|e| io_err("rename", &dest, e))?;
        rebuilt.push((name, dest));
    }
    let _ = File::open(out).and_then(|d| d.sync_all());
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
