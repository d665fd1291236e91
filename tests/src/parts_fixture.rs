//! Split-bundle fixtures: a release with enough content for several 1 MiB
//! parts (built split, with parity), and the named bad part sets of issue 10
//! (truncated, reordered, renamed, duplicated, foreign, zero-length part;
//! index signed by an unknown key; index whose parts do not add up; parity
//! damaged as well; more losses than parity). Each fixture is a folder made
//! from a good set plus the paths to give the programs.

use std::fs;
use std::path::{Path, PathBuf};

use stoa_format::parts::{write_index, PartsIndex, SignedIndex};
use stoa_format::SigningKeyPair;

use crate::harness::{bundler, ok};
use crate::release::Release;

/// Incompressible, reproducible bytes, different per `seed` (xorshift).
pub fn noise(bytes: usize, seed: &str) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15
        ^ seed
            .bytes()
            .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
    let mut data = Vec::with_capacity(bytes + 8);
    while data.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(bytes);
    data
}

/// Writes a release `name`/`version` holding a `mib`-MiB pseudo-random file
/// (different per version) and returns the release manifest path.
pub fn write_big_release(dir: &Path, version: &str, bytes: usize) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("payload.bin"), noise(bytes, version)).unwrap();
    Release::stoa(version)
        .file("payload.bin", "data/payload.bin", None)
        .write(dir)
}

/// Builds `<dir>/stoa-platform-<v>.tar.zst` split into 1 MiB parts with
/// `parity` parity parts (0: none). Returns the bundle path (not written
/// itself; its parts and index are beside it).
pub fn build_split(rel: &Path, key: &Path, dir: &Path, version: &str, parity: u16) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let out = dir.join(format!("stoa-platform-{version}.tar.zst"));
    let mut c = bundler();
    c.arg("build")
        .arg(rel)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(&out)
        .args(["--split", "1MiB", "--quiet"]);
    if parity > 0 {
        c.args(["--parity", &parity.to_string()]);
    }
    ok(&mut c);
    out
}

/// Copies every regular file of `from` into a new folder `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `<bundle>.partNNN` in `dir`.
pub fn part(dir: &Path, version: &str, n: usize) -> PathBuf {
    dir.join(format!("stoa-platform-{version}.tar.zst.part{n:03}"))
}

pub fn parity(dir: &Path, version: &str, n: usize) -> PathBuf {
    dir.join(format!("stoa-platform-{version}.tar.zst.parity{n}"))
}

pub fn index(dir: &Path, version: &str) -> PathBuf {
    dir.join(format!("stoa-platform-{version}.tar.zst.parts.json"))
}

/// Flips one byte of a file at `offset`.
pub fn flip(p: &Path, offset: usize) {
    let mut b = fs::read(p).unwrap();
    b[offset] ^= 0x55;
    fs::write(p, b).unwrap();
}

/// Rewrites the index in `dir` through `edit` and signs it with `key`.
pub fn resign_index(dir: &Path, version: &str, key: &Path, edit: impl FnOnce(&mut PartsIndex)) {
    let p = index(dir, version);
    let mut si = SignedIndex::load(&p).unwrap();
    edit(&mut si.index);
    let k = SigningKeyPair::load(key).unwrap();
    write_index(dir, &si.index, &[k]).unwrap();
}

/// One bad part set: what to give the programs and what they must say.
pub struct PartsFixture {
    pub name: &'static str,
    /// Paths to pass (a folder, the index, or part files).
    pub args: Vec<PathBuf>,
    /// Fragments the one error line must contain.
    pub expect: Vec<String>,
    /// `--json` error kind.
    pub kind: &'static str,
}

/// Context for making fixtures: a good 2.3.0 set (6 data parts, parity 1)
/// and a good 2.1.0 set, both 1 MiB parts, the signer's and a stranger's key.
pub struct PartsCtx {
    pub good: PathBuf,
    pub good_210: PathBuf,
    pub signer: PathBuf,
    pub stranger: PathBuf,
    pub root: PathBuf,
}

pub const V: &str = "2.3.0";

/// Damages the copy `d` of the good set and returns what to pass and the
/// fragments the error must contain.
type Make = fn(&PartsCtx, &Path) -> (Vec<PathBuf>, Vec<String>);

/// One row of the table: a named bad part set, its `--json` error kind, and
/// how it is made from a copy of the good set.
struct Case {
    name: &'static str,
    kind: &'static str,
    make: Make,
}

/// `part <n> of 6 (<file name>)`, as the programs name a part.
fn pn(n: usize) -> String {
    format!("part {n} of 6 (stoa-platform-{V}.tar.zst.part{n:03})")
}

/// The table, in the order the fixtures are made.
const CASES: &[Case] = &[
    Case {
        name: "truncated_part",
        kind: "part",
        make: |_, d| {
            let b = fs::read(part(d, V, 3)).unwrap();
            fs::write(part(d, V, 3), &b[..b.len() - 1000]).unwrap();
            let expect = vec![pn(3), "(truncated)".into(), "repairable".into()];
            (vec![d.into()], expect)
        },
    },
    Case {
        name: "zero_length_part",
        kind: "part",
        make: |_, d| {
            fs::write(part(d, V, 2), b"").unwrap();
            let expect = vec![pn(2), "0 bytes, the signed index says 1048576".into()];
            (vec![d.into()], expect)
        },
    },
    Case {
        name: "reordered_parts",
        kind: "part",
        make: reordered,
    },
    Case {
        name: "renamed_part",
        kind: "part",
        make: |_, d| {
            fs::rename(part(d, V, 4), d.join("disc4.bin")).unwrap();
            (vec![d.into()], vec![format!("{}: missing", pn(4))])
        },
    },
    Case {
        name: "damaged_part",
        kind: "part",
        make: |_, d| {
            flip(&part(d, V, 3), 4242);
            let expect = vec![format!("{}: sha256 mismatch", pn(3)), "repairable".into()];
            (vec![d.into()], expect)
        },
    },
    Case {
        name: "duplicated_part",
        kind: "part-twice",
        make: |_, d| {
            fs::create_dir_all(d.join("copy")).unwrap();
            fs::copy(part(d, V, 5), part(&d.join("copy"), V, 5)).unwrap();
            let mut args: Vec<PathBuf> = (1..=6).map(|n| part(d, V, n)).collect();
            args.push(part(&d.join("copy"), V, 5));
            (args, vec!["part 5 given twice".into()])
        },
    },
    Case {
        name: "foreign_part",
        kind: "part-foreign",
        make: foreign,
    },
    Case {
        name: "foreign_part_same_name",
        kind: "part",
        make: |c, d| {
            fs::copy(part(&c.good_210, "2.1.0", 2), part(d, V, 2)).unwrap();
            fs::copy(index(&c.good_210, "2.1.0"), index(d, "2.1.0")).unwrap();
            let expect = vec![format!(
                "{}: sha256 mismatch (it belongs to stoa-platform 2.1.0 (part 2))",
                pn(2)
            )];
            (vec![index(d, V)], expect)
        },
    },
    Case {
        name: "unlisted_extra_part",
        kind: "part-unlisted",
        make: |_, d| {
            fs::copy(part(d, V, 6), part(d, V, 7)).unwrap();
            let expect = vec![format!(
                "{} is an extra file, not listed in the signed parts index",
                part(d, V, 7).display()
            )];
            (vec![d.into()], expect)
        },
    },
    Case {
        name: "unknown_key_index",
        kind: "parts-index-signature",
        make: |c, d| {
            resign_index(d, V, &c.stranger, |_| {});
            let expect = vec![
                "check parts index".into(),
                "no signature by a trusted key".into(),
            ];
            (vec![d.into()], expect)
        },
    },
    Case {
        name: "part_size_overflow",
        kind: "parts-index",
        make: part_size_overflow,
    },
    Case {
        name: "parts_do_not_add_up",
        kind: "parts-index",
        make: |c, d| {
            resign_index(d, V, &c.signer, |i| i.bundle.size += 1);
            let expect = vec![
                "the parts add up to".into(),
                "the index says the bundle is".into(),
            ];
            (vec![d.into()], expect)
        },
    },
    Case {
        name: "parity_damaged_as_well",
        kind: "part",
        make: |_, d| {
            flip(&part(d, V, 2), 10);
            flip(&parity(d, V, 1), 10);
            let expect = vec![
                "2 parts bad".into(),
                format!("{}: sha256 mismatch", pn(2)),
                "parity part 1 of 1".into(),
                "not repairable".into(),
            ];
            (vec![d.into()], expect)
        },
    },
    Case {
        name: "two_lost_one_parity",
        kind: "part",
        make: |_, d| {
            fs::remove_file(part(d, V, 1)).unwrap();
            fs::remove_file(part(d, V, 6)).unwrap();
            let expect = vec![
                format!("{}: missing", pn(1)),
                format!("{}: missing", pn(6)),
                "not repairable".into(),
            ];
            (vec![d.into()], expect)
        },
    },
];

/// Parts 2 and 3 swapped.
fn reordered(_: &PartsCtx, d: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let (a, b) = (
        fs::read(part(d, V, 2)).unwrap(),
        fs::read(part(d, V, 3)).unwrap(),
    );
    fs::write(part(d, V, 2), &b).unwrap();
    fs::write(part(d, V, 3), &a).unwrap();
    let expect = vec![
        "2 parts bad".into(),
        format!(
            "{}: sha256 mismatch (it holds part 3: renamed or reordered)",
            pn(2)
        ),
        format!("{}: sha256 mismatch (it holds part 2", pn(3)),
        "parity can rebuild up to 1: not repairable".into(),
    ];
    (vec![d.into()], expect)
}

/// Part 2 of the 2.1.0 set given among the 2.3.0 parts.
fn foreign(c: &PartsCtx, d: &Path) -> (Vec<PathBuf>, Vec<String>) {
    copy_dir(&c.good_210, d);
    let args: Vec<PathBuf> = (1..=6)
        .map(|n| {
            if n == 2 {
                part(d, "2.1.0", 2)
            } else {
                part(d, V, n)
            }
        })
        .collect();
    let expect = vec![
        "stoa-platform-2.1.0.tar.zst.part002 belongs to stoa-platform 2.1.0, not to stoa-platform 2.3.0".into(),
    ];
    (args, expect)
}

/// Issue 17 item 7: an index signed by an untrusted key claiming part_size
/// 2^64-1 (one part, so the part sizes agree): its parity size overflowed (a
/// panic, exit 101, in debug builds; a wrap in release) while it was read,
/// before any signature was checked.
fn part_size_overflow(c: &PartsCtx, d: &Path) -> (Vec<PathBuf>, Vec<String>) {
    resign_index(d, V, &c.stranger, |i| {
        i.part_size = u64::MAX;
        i.parts.truncate(1);
        i.bundle.size = i.parts[0].size;
    });
    for n in 2..=6 {
        fs::remove_file(part(d, V, n)).unwrap();
    }
    let expect = vec![
        "read parts index".into(),
        format!("part_size {} is over the largest part size", u64::MAX),
    ];
    (vec![d.into()], expect)
}

/// Every named bad part set, each made in `<root>/<name>` from a copy of
/// the good set.
pub fn all(c: &PartsCtx) -> Vec<PartsFixture> {
    CASES
        .iter()
        .map(|case| {
            let d = c.root.join(case.name);
            copy_dir(&c.good, &d);
            let (args, expect) = (case.make)(c, &d);
            PartsFixture {
                name: case.name,
                args,
                expect,
                kind: case.kind,
            }
        })
        .collect()
}
