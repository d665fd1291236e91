//! Split media parts: the signed parts index (`<bundle>.parts.json` and its
//! detached signatures `<bundle>.parts.sig`), part sizes (`4GiB`, `700MB`)
//! and part file names. Cutting a bundle stream into parts is
//! `split.rs` ([`PartWriter`], [`seal`], re-exported here); reading a part
//! set back is [`crate::source`]. See docs/FORMAT.md, "Split media parts".

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::error::FormatError;
use crate::keys::{KeyId, SigningKeyPair, TrustStore};

use crate::document::limits::MAX_STRIPE;

pub use super::split::{remove_partials, remove_stale, seal, PartWriter, SealInfo, WrittenParts};
pub use crate::document::limits::{
    MAX_BUNDLE_SIZE, MAX_INDEX_BYTES, MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE,
};

/// The `format` field of a parts index.
pub const PARTS_FORMAT: &str = "stoa-parts";
/// The parts index version this library reads and writes.
pub const PARTS_FORMAT_VERSION: u32 = 1;
/// The largest file FAT32 holds: 4 GiB − 1.
pub const FAT32_MAX_FILE: u64 = (4 << 30) - 1;

/// A part size: at least [`MIN_PART_SIZE`]. Parsed from `4GiB`, `700MB`,
/// `4294967295` (bytes), units `B`, `kB`/`KB`, `MB`, `GB`, `TB` (powers of
/// 1000) and `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSize(u64);

impl PartSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for PartSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(format!(
                "{s:?} is not a size (examples: 4GiB, 700MB, 4294967295)"
            ));
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "TB" => 1000 * 1000 * 1000 * 1000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            u => {
                return Err(format!(
                    "{s:?}: unknown unit {u:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
                ))
            }
        };
        let bytes = n
            .checked_mul(mult)
            .ok_or_else(|| format!("{s:?}: size too large"))?;
        if bytes < MIN_PART_SIZE {
            return Err(format!(
                "{s:?} is {bytes} bytes; a part must be at least 1 MiB (1048576 bytes)"
            ));
        }
        Ok(Self(bytes))
    }
}

/// The file name of data part `n` (1-based) of `bundle_name`: `.part001`…
/// `.part999`.
pub fn part_name(bundle_name: &str, n: usize) -> String {
    format!("{bundle_name}.part{n:03}")
}

/// The file name of parity part `n` (1-based).
pub fn parity_name(bundle_name: &str, n: usize) -> String {
    format!("{bundle_name}.parity{n}")
}

/// The index file name: `<bundle>.parts.json`.
pub fn index_name(bundle_name: &str) -> String {
    format!("{bundle_name}.parts.json")
}

/// The detached signatures of the index: `<bundle>.parts.sig`.
pub fn sig_name(bundle_name: &str) -> String {
    format!("{bundle_name}.parts.sig")
}

/// `<dir>/<name>`, for the files beside a bundle path.
pub fn beside(bundle: &Path, name: &str) -> PathBuf {
    match bundle.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(name),
        _ => PathBuf::from(name),
    }
}

/// The bundle file name of a path (its last component).
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The release a part set belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartsRelease {
    pub name: String,
    pub version: semver::Version,
}

/// The whole bundle the parts make up when concatenated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WholeBundle {
    /// The unsplit file name (`stoa-platform-2.3.0.tar.zst`).
    pub name: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// One part file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartRecord {
    pub number: usize,
    pub name: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// Reed–Solomon parity over the data parts (see [`crate::parity`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParityRecord {
    /// Always `reed-solomon-gf16` (the `reed-solomon-simd` crate's code).
    pub scheme: String,
    /// Bytes of each part coded together (a stripe); the data parts are read
    /// `stripe` bytes at a time, the last part padded with zeros.
    pub stripe: u64,
    pub parts: Vec<PartRecord>,
}

/// The parts index: `<bundle>.parts.json`. Its exact bytes are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartsIndex {
    pub format: String,
    pub format_version: u32,
    pub release: PartsRelease,
    /// SHA-256 of the bundle's `manifest.json`, binding the index to it.
    pub manifest_sha256: Sha256Digest,
    pub bundle: WholeBundle,
    /// Every data part but the last is exactly this size.
    pub part_size: u64,
    pub parts: Vec<PartRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<ParityRecord>,
}

impl PartsIndex {
    /// The exact bytes written and signed: pretty JSON, one trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses and validates index bytes (signatures are checked separately).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, FormatError> {
        let bad = |reason: String| FormatError::PartsIndex {
            path: path.to_owned(),
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(PARTS_FORMAT) {
            return Err(bad(format!("format is not {PARTS_FORMAT:?}")));
        }
        match v.get("format_version").and_then(|f| f.as_u64()) {
            Some(n) if n == u64::from(PARTS_FORMAT_VERSION) => {}
            Some(n) => {
                return Err(bad(format!(
                    "format version {n} is newer than this tool reads (up to {PARTS_FORMAT_VERSION}); use a newer stoa-updater"
                )))
            }
            None => return Err(bad("no format_version".into())),
        }
        let idx: Self = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        idx.validate().map_err(bad)?;
        Ok(idx)
    }

    fn validate(&self) -> Result<(), String> {
        let b = &self.bundle.name;
        if b.is_empty() || b.contains('/') || b.starts_with('.') {
            return Err(format!("bundle name {b:?} is not a plain file name"));
        }
        if self.part_size < MIN_PART_SIZE {
            return Err(format!("part_size {} is under 1 MiB", self.part_size));
        }
        // read before any signature is checked: every size is bounded, and
        // every sum below is checked, so a forged index is refused, never
        // wrapped (docs/FORMAT.md, "Limits")
        if self.part_size > MAX_PART_SIZE {
            return Err(format!(
                "part_size {} is over the largest part size {MAX_PART_SIZE}",
                self.part_size
            ));
        }
        if self.bundle.size > MAX_BUNDLE_SIZE {
            return Err(format!(
                "bundle size {} is over the largest bundle size {MAX_BUNDLE_SIZE}",
                self.bundle.size
            ));
        }
        if self.parts.is_empty() || self.parts.len() > MAX_PARTS {
            return Err(format!(
                "{} parts (1 to {MAX_PARTS} allowed)",
                self.parts.len()
            ));
        }
        let n = self.parts.len();
        let mut sum = 0u64;
        for (i, p) in self.parts.iter().enumerate() {
            if p.number != i + 1 {
                return Err(format!("part {} is listed as number {}", i + 1, p.number));
            }
            if p.name != part_name(b, i + 1) {
                return Err(format!(
                    "part {} is named {:?}, expected {:?}",
                    i + 1,
                    p.name,
                    part_name(b, i + 1)
                ));
            }
            let last = i + 1 == n;
            if p.size == 0 || p.size > self.part_size || (!last && p.size != self.part_size) {
                return Err(format!(
                    "part {} is {} bytes; parts are {} bytes, the last 1 to {}",
                    i + 1,
                    p.size,
                    self.part_size,
                    self.part_size
                ));
            }
            sum = sum
                .checked_add(p.size)
                .ok_or_else(|| "part sizes overflow".to_owned())?;
        }
        if sum != self.bundle.size {
            return Err(format!(
                "the parts add up to {sum} bytes, the index says the bundle is {}",
                self.bundle.size
            ));
        }
        if let Some(par) = &self.parity {
            if par.scheme != crate::parity::SCHEME {
                return Err(format!("unknown parity scheme {:?}", par.scheme));
            }
            if par.parts.is_empty() || par.parts.len() > MAX_PARTS {
                return Err("parity lists no parts".into());
            }
            if par.stripe == 0 || par.stripe % 64 != 0 || par.stripe > MAX_STRIPE {
                return Err(format!("parity stripe {} is invalid", par.stripe));
            }
            let want = crate::parity::parity_size(self.part_size, par.stripe).ok_or_else(|| {
                format!(
                    "parity stripe {} of part_size {} overflows",
                    par.stripe, self.part_size
                )
            })?;
            for (i, p) in par.parts.iter().enumerate() {
                if p.number != i + 1 || p.name != parity_name(b, i + 1) || p.size != want {
                    return Err(format!(
                        "parity part {} must be number {}, named {:?}, {} bytes",
                        i + 1,
                        i + 1,
                        parity_name(b, i + 1),
                        want
                    ));
                }
            }
        }
        Ok(())
    }

    /// `stoa-platform 2.3.0`, for messages.
    pub fn release_label(&self) -> String {
        format!("{} {}", self.release.name, self.release.version)
    }
}

/// Detached signatures over the index bytes, stored as `<bundle>.parts.sig`:
/// one line per key, `<key id hex> <signature hex>`, sorted by key id.
pub fn signatures_to_text(sigs: &BTreeMap<KeyId, [u8; 64]>) -> String {
    let mut s = String::new();
    for (id, sig) in sigs {
        s.push_str(&format!("{id} {}\n", hex::encode(sig)));
    }
    s
}

/// Parses `<bundle>.parts.sig`.
pub fn signatures_from_text(
    text: &str,
    path: &Path,
) -> Result<BTreeMap<KeyId, [u8; 64]>, FormatError> {
    let bad = |reason: String| FormatError::PartsIndex {
        path: path.to_owned(),
        reason,
    };
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        if out.len() >= 32 {
            return Err(bad("more than 32 signatures".into()));
        }
        let (id, sig) = line
            .split_once(' ')
            .ok_or_else(|| bad(format!("line {}: expected `<key id> <signature>`", i + 1)))?;
        let id = Sha256Digest::from_hex(id)
            .map(KeyId)
            .ok_or_else(|| bad(format!("line {}: key id is not 64 lowercase hex", i + 1)))?;
        let raw = hex::decode(sig)
            .ok()
            .and_then(|v| <[u8; 64]>::try_from(v).ok())
            .ok_or_else(|| bad(format!("line {}: signature is not 128 hex digits", i + 1)))?;
        if out.insert(id, raw).is_some() {
            return Err(bad(format!(
                "line {}: key {} signs twice",
                i + 1,
                id.short()
            )));
        }
    }
    Ok(out)
}

/// An index with its exact bytes and signatures, as read from disk.
#[derive(Debug, Clone)]
pub struct SignedIndex {
    pub index: PartsIndex,
    pub bytes: Vec<u8>,
    pub signatures: BTreeMap<KeyId, [u8; 64]>,
    /// Where the index file is.
    pub path: PathBuf,
}

impl SignedIndex {
    /// Reads `<x>.parts.json` and `<x>.parts.sig` beside it.
    pub fn load(path: &Path) -> Result<Self, FormatError> {
        let open = |p: &Path| -> Result<Vec<u8>, FormatError> {
            let f = File::open(p).map_err(|e| FormatError::OpenBundle {
                path: p.to_owned(),
                source: e,
            })?;
            let mut v = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(f, MAX_INDEX_BYTES + 1), &mut v).map_err(
                |e| FormatError::OpenBundle {
                    path: p.to_owned(),
                    source: e,
                },
            )?;
            if v.len() as u64 > MAX_INDEX_BYTES {
                return Err(FormatError::PartsIndex {
                    path: p.to_owned(),
                    reason: format!("over {MAX_INDEX_BYTES} bytes"),
                });
            }
            Ok(v)
        };
        let bytes = open(path)?;
        let index = PartsIndex::from_bytes(&bytes, path)?;
        let name = file_name(path);
        let sig_path = match name.strip_suffix(".parts.json") {
            Some(base) => beside(path, &sig_name(base)),
            None => beside(path, &format!("{name}.sig")),
        };
        let text = open(&sig_path)?;
        let text = String::from_utf8(text).map_err(|_| FormatError::PartsIndex {
            path: sig_path.clone(),
            reason: "not text".into(),
        })?;
        let signatures = signatures_from_text(&text, &sig_path)?;
        Ok(Self {
            index,
            bytes,
            signatures,
            path: path.to_owned(),
        })
    }

    /// Checks the detached signatures with the same trust and threshold as
    /// the bundle's.
    pub fn check_signatures(&self, trust: &TrustStore) -> Result<Vec<KeyId>, FormatError> {
        trust
            .check(&self.bytes, &self.signatures)
            .map_err(|e| FormatError::PartsIndexSignature {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }
}

/// Signs `index` with `keys` and writes `<dir>/<bundle>.parts.json` and
/// `.parts.sig` (each via a temp file renamed into place). Returns the paths.
pub fn write_index(
    dir: &Path,
    index: &PartsIndex,
    keys: &[SigningKeyPair],
) -> io::Result<(PathBuf, PathBuf)> {
    let bytes = index.to_bytes();
    let sigs: BTreeMap<KeyId, [u8; 64]> = keys.iter().map(|k| (k.id(), k.sign(&bytes))).collect();
    let ip = dir.join(index_name(&index.bundle.name));
    let sp = dir.join(sig_name(&index.bundle.name));
    for (p, data) in [(&sp, signatures_to_text(&sigs).into_bytes()), (&ip, bytes)] {
        crate::durable::write_atomic(p, &data)?;
    }
    Ok((ip, sp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_parses_units_and_refuses_small() {
        assert_eq!("4GiB".parse::<PartSize>().unwrap().bytes(), 4 << 30);
        assert_eq!("700MB".parse::<PartSize>().unwrap().bytes(), 700_000_000);
        assert_eq!(
            "4294967295".parse::<PartSize>().unwrap().bytes(),
            4294967295
        );
        assert_eq!("1MiB".parse::<PartSize>().unwrap().bytes(), 1 << 20);
        assert!("1048575".parse::<PartSize>().is_err());
        assert!("1MB".parse::<PartSize>().is_err());
        assert!("4 furlongs".parse::<PartSize>().is_err());
        assert!("GiB".parse::<PartSize>().is_err());
        assert!("99999999999999999999".parse::<PartSize>().is_err());
        assert!("20000000TiB".parse::<PartSize>().is_err());
    }
}
