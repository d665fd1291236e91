//! Named negative fixtures: one per security rule. Each takes a valid,
//! signed bundle apart at the tar level, changes one thing, and puts it back
//! together (re-signing where the rule is about what a *signed* manifest may
//! say). `stoa-fixtures negative <dir>` writes them into one folder per rule
//! for a person to look at; tests/tests/security.rs checks each is refused.

use std::fs;
use std::path::{Path, PathBuf};

use stoa_format::SigningKeyPair;

/// One tar entry as found in (or put into) a bundle.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub name: String,
    pub data: Vec<u8>,
    /// tar typeflag: b'0' file, b'1' hardlink, b'2' symlink, b'3' char device, b'5' dir
    pub kind: u8,
    pub link: String,
    /// header size field, when it should lie about the data
    pub size_override: Option<u64>,
    /// header mode, uid and gid, when a courier edits them (the writer
    /// writes 0644, 0, 0)
    pub mode: Option<u64>,
    pub uid: Option<u64>,
    /// extra pax records (key, value) in an `x` header before the entry
    pub pax: Vec<(String, String)>,
}

impl RawEntry {
    pub fn file(name: &str, data: &[u8]) -> Self {
        Self {
            name: name.into(),
            data: data.to_vec(),
            kind: b'0',
            link: String::new(),
            size_override: None,
            mode: None,
            uid: None,
            pax: Vec::new(),
        }
    }
}

/// A ustar header with any name, type and size, checksummed: what a
/// hostile archiver can write (the `tar` crate refuses `..` names).
pub fn raw_header(name: &str, size: u64, kind: u8, link: &str) -> [u8; 512] {
    raw_header_with(name, size, kind, link, 0o644, 0)
}

/// [`raw_header`] with any mode and uid/gid.
pub fn raw_header_with(
    name: &str,
    size: u64,
    kind: u8,
    link: &str,
    mode: u64,
    uid: u64,
) -> [u8; 512] {
    let mut h = [0u8; 512];
    let nb = name.as_bytes();
    if nb.len() <= 100 {
        h[..nb.len()].copy_from_slice(nb);
    } else {
        h[..100].copy_from_slice(&nb[..100]);
    }
    let oct = |f: &mut [u8], v: u64| {
        let w = f.len() - 1;
        let s = format!("{v:0w$o}");
        f[..w].copy_from_slice(&s.as_bytes()[s.len() - w..]);
    };
    oct(&mut h[100..108], mode);
    oct(&mut h[108..116], uid);
    oct(&mut h[116..124], uid);
    oct(&mut h[124..136], size);
    oct(&mut h[136..148], 0);
    h[156] = kind;
    h[157..157 + link.len().min(100)].copy_from_slice(&link.as_bytes()[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // devmajor, devminor: as the format's writer writes them
    oct(&mut h[329..337], 0);
    oct(&mut h[337..345], 0);
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A pax header carrying records.
fn pax_header(records: &[(String, String)]) -> Vec<u8> {
    let mut rec = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while len.to_string().len() + body.len() != len {
            len += 1;
        }
        rec.extend(format!("{len}{body}").into_bytes());
    }
    let mut out = raw_header("PaxHeader", rec.len() as u64, b'x', "").to_vec();
    out.extend_from_slice(&rec);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Writes entries as a tar stream (with end marker).
pub fn write_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut name = e.name.as_str();
        let mut pax = e.pax.clone();
        if e.name.len() > 100 {
            pax.insert(0, ("path".into(), e.name.clone()));
            name = &e.name[e.name.len() - 100..];
        }
        if !pax.is_empty() {
            out.extend(pax_header(&pax));
        }
        let size = e.size_override.unwrap_or(e.data.len() as u64);
        out.extend_from_slice(&raw_header_with(
            name,
            size,
            e.kind,
            &e.link,
            e.mode.unwrap_or(0o644),
            e.uid.unwrap_or(0),
        ));
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Reads the entries of one of our bundles' tar streams.
pub fn read_tar(tar_bytes: &[u8]) -> Vec<RawEntry> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut v = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        v.push(RawEntry::file(&name, &data));
    }
    v
}

pub fn compress(tar_bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar_bytes, 3).unwrap()
}

pub fn decompress(bundle: &[u8]) -> Vec<u8> {
    zstd::decode_all(bundle).unwrap()
}

/// A valid signed bundle taken apart.
#[derive(Debug)]
pub struct Base {
    pub bundle: Vec<u8>,
    pub entries: Vec<RawEntry>,
    pub key: SigningKeyPair,
}

impl Base {
    pub fn from_file(bundle: &Path, key: &Path) -> Self {
        let bytes = fs::read(bundle).unwrap();
        let entries = read_tar(&decompress(&bytes));
        Self {
            bundle: bytes,
            entries,
            key: SigningKeyPair::load(key).unwrap(),
        }
    }

    fn index(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.entries
            .iter()
            .position(|e| pred(&e.name))
            .expect("entry present")
    }

    fn pack(entries: &[RawEntry]) -> Vec<u8> {
        compress(&write_tar(entries))
    }

    /// The base's entries changed by `edit`, packed again (not re-signed).
    fn edited(&self, edit: impl FnOnce(&mut Vec<RawEntry>)) -> Vec<u8> {
        let mut e = self.entries.clone();
        edit(&mut e);
        Self::pack(&e)
    }

    /// The manifest changed by `edit` and re-signed with the base key, packed.
    fn resigned_bundle(&self, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        Self::pack(&self.resigned(edit))
    }

    /// Replaces the manifest and re-signs it with the base key.
    fn resigned(&self, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<RawEntry> {
        let mut entries = self.entries.clone();
        let mut m: serde_json::Value = serde_json::from_slice(&entries[0].data).unwrap();
        edit(&mut m);
        let mut bytes = serde_json::to_vec_pretty(&m).unwrap();
        bytes.push(b'\n');
        let sig = self.key.sign(&bytes);
        entries[0].data = bytes;
        let si = entries
            .iter()
            .position(|e| e.name.starts_with("signatures/"))
            .unwrap();
        entries[si] = RawEntry::file(&format!("signatures/{}.sig", self.key.id()), &sig);
        entries
    }

    /// The base with one byte of entry `name` flipped (same size, not
    /// re-signed): the reader refuses it at that entry, after every entry
    /// before it was read and checked.
    pub fn entry_corrupted(&self, name: &str) -> Vec<u8> {
        let i = self.index(|n| n == name);
        self.edited(|e| {
            let d = &mut e[i].data;
            let mid = d.len() / 2;
            d[mid] ^= 0x01;
        })
    }

    /// Replaces an entry's content and re-signs the manifest with its new
    /// size and digest: what a holder of the key could ship. The manifest's
    /// `sbom` is dropped unless the SBOM itself is the entry replaced (the
    /// SBOM names every entry's digest, so it would refuse the edit first):
    /// the rule under test must refuse it alone.
    pub fn content_signed(&self, name: &str, data: &[u8]) -> Vec<u8> {
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
        let mut entries = self.resigned(|m| {
            if name != "sbom.cdx.json" {
                m.as_object_mut().unwrap().remove("sbom");
            }
            for e in m["entries"].as_array_mut().unwrap() {
                if e["path"] == name {
                    e["size"] = data.len().into();
                    e["sha256"] = digest.clone().into();
                }
            }
        });
        let i = entries.iter().position(|e| e.name == name).unwrap();
        entries[i].data = data.to_vec();
        Self::pack(&entries)
    }

    /// Adds an entry to the tar and lists it (with its digest) in a re-signed
    /// manifest: what a holder of the key could do; the reader must still
    /// refuse what the rule forbids.
    fn listed_and_signed(&self, e: RawEntry) -> Vec<u8> {
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&e.data));
        let (name, size) = (e.name.clone(), e.data.len());
        let mut entries = self.resigned(|m| {
            let list = m["entries"].as_array_mut().unwrap();
            list.push(serde_json::json!({"path": name, "size": size, "sha256": digest}));
        });
        entries.push(e);
        Self::pack(&entries)
    }
}

/// Which trust a fixture is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// the key that signed the base bundle
    Signer,
    /// a key that signed nothing
    Stranger,
    /// the signer's key in two files, threshold 2 (the same key must count once)
    SignerTwiceThreshold2,
}

/// A negative fixture: bytes, the trust to check against, and the check
/// (`FormatError::kind`) that must refuse it.
#[derive(Debug)]
pub struct Fixture {
    pub name: &'static str,
    pub rule: &'static str,
    pub bytes: Vec<u8>,
    pub trust: Trust,
    /// any of these kinds is a correct refusal
    pub expect: &'static [&'static str],
}

/// Makes a case's bytes from the base bundle and `other` (a validly signed
/// bundle of another version made with the same key).
type Make = fn(&Base, &Base) -> Vec<u8>;

/// One row of the table: a named negative fixture, the rule it breaks, the
/// trust it is checked against, the checks that may refuse it, and how it
/// is made.
pub struct Case {
    pub name: &'static str,
    pub rule: &'static str,
    pub trust: Trust,
    /// any of these kinds (`FormatError::kind`) is a correct refusal
    pub expect: &'static [&'static str],
    make: Make,
}

/// A case checked against the key that signed the base bundle.
const fn signer(
    name: &'static str,
    rule: &'static str,
    expect: &'static [&'static str],
    make: Make,
) -> Case {
    trusting(name, rule, Trust::Signer, expect, make)
}

const fn trusting(
    name: &'static str,
    rule: &'static str,
    trust: Trust,
    expect: &'static [&'static str],
    make: Make,
) -> Case {
    Case {
        name,
        rule,
        trust,
        expect,
        make,
    }
}

/// A byte flipped somewhere in the compressed stream: any of these checks
/// may be the first to see it.
const ANY_DAMAGE: &[&str] = &[
    "decompress",
    "digest",
    "bad-signature",
    "corrupt-header",
    "manifest-parse",
    "truncated",
    "read",
    "size",
    "trailing-data",
    "unlisted",
    "missing",
    "wrong-format",
    "unsafe-path",
    "signature-entry",
    "manifest-not-first",
    "zstd-frame",
    "header-field",
];

/// The manifest's name fields checked by parse or validation.
const BAD_NAME: &[&str] = &["manifest-parse", "manifest-invalid"];

/// Rules 1-3: flipped bytes, an edited manifest, truncation, empty, random.
const DAMAGE: &[Case] = &[
    signer(
        "flipped-byte-in-blob",
        "1 flipped byte",
        &["digest"],
        |b, _| {
            let i = blob_i(b);
            b.edited(|e| e[i].data[3] ^= 0x01)
        },
    ),
    signer(
        "flipped-byte-in-manifest",
        "1 flipped byte",
        &["bad-signature"],
        |b, _| b.edited(|e| flip_manifest_digest(e)),
    ),
    signer(
        "flipped-byte-in-signature",
        "1 flipped byte",
        &["bad-signature"],
        |b, _| b.edited(|e| e[1].data[10] ^= 0x01),
    ),
    signer(
        "flipped-byte-in-zstd-head",
        "1 flipped byte",
        ANY_DAMAGE,
        |b, _| flip(b.bundle.clone(), 40),
    ),
    signer(
        "flipped-byte-in-zstd-middle",
        "1 flipped byte",
        ANY_DAMAGE,
        |b, _| flip(b.bundle.clone(), b.bundle.len() / 2),
    ),
    signer(
        "flipped-byte-in-zstd-tail",
        "1 flipped byte",
        ANY_DAMAGE,
        |b, _| flip(b.bundle.clone(), b.bundle.len() - 3),
    ),
    signer(
        "edited-manifest-not-resigned",
        "2 edited manifest",
        &["bad-signature"],
        |b, _| b.edited(|e| edit_version_unsigned(e)),
    ),
    signer(
        "truncated-at-10-bytes",
        "3 truncation",
        &["truncated", "decompress"],
        |b, _| b.bundle[..10].to_vec(),
    ),
    signer(
        "truncated-in-head",
        "3 truncation",
        &["truncated", "decompress"],
        |b, _| b.bundle[..300.min(b.bundle.len() / 4)].to_vec(),
    ),
    signer(
        "truncated-at-half",
        "3 truncation",
        &["truncated", "decompress"],
        |b, _| b.bundle[..b.bundle.len() / 2].to_vec(),
    ),
    signer(
        "truncated-last-byte",
        "3 truncation",
        &["truncated", "decompress"],
        |b, _| b.bundle[..b.bundle.len() - 1].to_vec(),
    ),
    signer("empty-file", "3 empty file", &["empty"], |_, _| Vec::new()),
    signer(
        "random-zstd-content",
        "3 random file",
        &["corrupt-header", "truncated"],
        |_, _| compress(&random()),
    ),
    signer(
        "random-file",
        "3 random file",
        &["decompress", "zstd-frame"],
        |_, _| random(),
    ),
];

/// Rules 4, 5, 7 and issue 17: keys, policy, time, a swapped blob.
const TRUST_AND_TIME: &[Case] = &[
    trusting(
        "unknown-key",
        "4 unknown key",
        Trust::Stranger,
        &["untrusted"],
        |b, _| b.bundle.clone(),
    ),
    trusting(
        "same-key-twice-for-threshold-2",
        "4 same key counted twice",
        Trust::SignerTwiceThreshold2,
        &["threshold"],
        |b, _| b.bundle.clone(),
    ),
    signer(
        "duplicate-signature-entry",
        "4 same key counted twice",
        &["duplicate"],
        |b, _| b.edited(|e| e.insert(2, e[1].clone())),
    ),
    signer("expired", "5 expired bundle", &["expired"], |b, _| {
        b.resigned_bundle(|m| {
            m["release"]["created"] = "2000-01-01T00:00:00Z".into();
            m["release"]["expires"] = "2001-01-01T00:00:00Z".into();
            // the SBOM names the original `created`: not named, not checked
            m.as_object_mut().unwrap().remove("sbom");
        })
    }),
    // created in 2100: its created time would lock the site's clock floor
    // for 75 years
    signer(
        "created-in-future",
        "issue 17 bundle created in the future",
        &["created-in-future"],
        |b, _| b.resigned_bundle(|m| m["release"]["created"] = "2100-01-01T00:00:00Z".into()),
    ),
    signer(
        "created-after-expires",
        "issue 17 bundle created after its own expiry",
        &["created-after-expires"],
        |b, _| {
            b.resigned_bundle(|m| {
                m["release"]["created"] = "2026-06-01T00:00:00Z".into();
                m["release"]["expires"] = "2026-05-01T00:00:00Z".into();
            })
        },
    ),
    signer(
        "blob-from-other-signed-bundle",
        "7 swapped blob",
        &["digest", "size"],
        blob_from_other,
    ),
];
/// Rules 9 and 10: names, entry types, order, sizes and what trails the end.
const ENTRIES: &[Case] = &[
    signer(
        "extra-unlisted-entry",
        "9 unlisted entry",
        &["unlisted"],
        |b, _| b.edited(|e| e.push(RawEntry::file("extra/unlisted.txt", b"surprise"))),
    ),
    signer("missing-entry", "9 missing entry", &["missing"], |b, _| {
        let i = chart_i(b);
        b.edited(|e| {
            e.remove(i);
        })
    }),
    signer(
        "duplicate-entry",
        "9 duplicate name",
        &["duplicate"],
        |b, _| {
            let i = chart_i(b);
            b.edited(|e| e.insert(i + 1, e[i].clone()))
        },
    ),
    signer("dotdot-name", "9 .. in a name", &["unsafe-path"], |b, _| {
        b.edited(|e| e.push(RawEntry::file("../escaped.txt", b"owned")))
    }),
    signer(
        "dotdot-name-signed",
        "9 .. in a name",
        &["unsafe-path"],
        |b, _| b.listed_and_signed(RawEntry::file("files/../../escaped.txt", b"owned")),
    ),
    signer(
        "absolute-name",
        "9 absolute path",
        &["unsafe-path"],
        |b, _| b.edited(|e| e.push(RawEntry::file("/tmp/stoa-absolute.txt", b"owned"))),
    ),
    signer("symlink-entry", "9 symlink", &["non-regular"], |b, _| {
        b.edited(|e| e.insert(2, special(b'2', "files/link", "/etc/passwd")))
    }),
    signer("hardlink-entry", "9 hardlink", &["non-regular"], |b, _| {
        b.edited(|e| e.insert(2, special(b'1', "files/hard", "manifest.json")))
    }),
    signer("device-entry", "9 device", &["non-regular"], |b, _| {
        b.edited(|e| e.insert(2, special(b'3', "files/dev", "")))
    }),
    signer(
        "very-long-name",
        "9 very long name",
        &["unsafe-path"],
        |b, _| {
            let name = format!("files/{}", "n".repeat(300));
            b.edited(|e| e.push(RawEntry::file(&name, b"long")))
        },
    ),
    signer(
        "manifest-not-first",
        "9 manifest first",
        &["manifest-not-first"],
        |b, _| b.edited(|e| e.swap(0, 2)),
    ),
    // declared size N, more data: stopped before reading
    signer("size-lie-bigger-entry", "10 size lie", &["size"], |b, _| {
        let i = blob_i(b);
        b.edited(|e| e[i].data.extend(std::iter::repeat_n(0u8, 1 << 20)))
    }),
    // a zstd frame asking for a 1 GiB window: refused before allocating it
    signer(
        "huge-zstd-window",
        "10 size lie",
        &["decompress"],
        |b, _| {
            let mut raw = b.bundle.clone();
            raw.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD, 0x00, 0xA0, 0x01, 0x00, 0x00]);
            raw
        },
    ),
    signer(
        "trailing-data",
        "1 flipped byte",
        &["trailing-data", "corrupt-header"],
        |b, _| {
            let mut tar_bytes = decompress(&b.bundle);
            tar_bytes.extend_from_slice(b"trailing garbage after the end marker");
            compress(&tar_bytes)
        },
    ),
];

/// Issue 7: psql meta-commands and transaction control in signed migrations
/// (the entries by their number, whatever the release names them).
const MIGRATIONS: &[Case] = &[
    signer(
        "migration-psql-shell",
        "issue 7: migration SQL",
        &["migration-sql"],
        |b, _| {
            let sql = "CREATE TABLE apis (id int);\n\\! touch /tmp/stoa-pwned\n";
            b.content_signed(&migration(b, "0002", false), sql.as_bytes())
        },
    ),
    signer(
        "migration-psql-meta-mid-line",
        "issue 7: migration SQL",
        &["migration-sql"],
        |b, _| {
            let sql = "CREATE TABLE apis (id int); SELECT 'x' \\o /tmp/stoa-pwned\n";
            b.content_signed(&migration(b, "0002", false), sql.as_bytes())
        },
    ),
    signer(
        "migration-down-psql-copy",
        "issue 7: migration SQL",
        &["migration-sql"],
        |b, _| {
            let sql = "DROP TABLE tenants;\n\\copy (SELECT 1) TO '/tmp/stoa-pwned'\n";
            b.content_signed(&migration(b, "0001", true), sql.as_bytes())
        },
    ),
    signer(
        "migration-commit",
        "issue 7: migration SQL",
        &["migration-sql"],
        |b, _| {
            let sql = "CREATE TABLE apis (id int);\nCOMMIT;\nCREATE TABLE more (id int);\n";
            b.content_signed(&migration(b, "0002", false), sql.as_bytes())
        },
    ),
];

/// Issue 7: names that end up in registry URLs, paths, Helm and history rows.
const NAMES: &[Case] = &[
    signer("image-name-dotdot", "issue 7: names", BAD_NAME, |b, _| {
        b.resigned_bundle(|m| m["images"][0]["name"] = "registry.gostoa.dev/../victim/app:1".into())
    }),
    signer(
        "image-name-query-fragment",
        "issue 7: names",
        BAD_NAME,
        |b, _| {
            b.resigned_bundle(|m| {
                m["images"][0]["name"] = "registry.gostoa.dev/stoa/api:1?x=y#frag".into();
            })
        },
    ),
    signer(
        "image-name-uppercase",
        "issue 7: names",
        BAD_NAME,
        |b, _| {
            b.resigned_bundle(|m| m["images"][0]["name"] = "registry.gostoa.dev/Stoa/API:1".into())
        },
    ),
    signer(
        "chart-version-dotdot",
        "issue 7: names",
        BAD_NAME,
        |b, _| b.resigned_bundle(|m| m["charts"][0]["version"] = "1.0.0/../../../etc".into()),
    ),
    signer(
        "chart-release-invalid",
        "issue 7: names",
        BAD_NAME,
        |b, _| b.resigned_bundle(|m| m["charts"][0]["release"] = "Stoa_API".into()),
    ),
    signer(
        "chart-namespace-invalid",
        "issue 7: names",
        BAD_NAME,
        |b, _| b.resigned_bundle(|m| m["charts"][0]["namespace"] = "kube-system/../x".into()),
    ),
    signer(
        "migration-name-newline",
        "issue 7: names",
        BAD_NAME,
        |b, _| {
            b.resigned_bundle(|m| m["migrations"][0]["steps"][0]["name"] = "init\n0002|apis".into())
        },
    ),
];

/// Issue 7: unsigned bytes riding along in zstd skippable frames, and unsigned
/// tar header fields a courier can edit; a format version from the future.
const FRAMES_AND_HEADERS: &[Case] = &[
    signer(
        "skippable-frame-before",
        "issue 7: skippable zstd frames",
        &["zstd-frame"],
        |b, _| [&SKIPPABLE[..], &b.bundle].concat(),
    ),
    signer(
        "skippable-frame-between",
        "issue 7: skippable zstd frames",
        &["zstd-frame"],
        |b, _| {
            let tar_bytes = decompress(&b.bundle);
            let (head, tail) = tar_bytes.split_at(2048);
            [compress(head), SKIPPABLE.to_vec(), compress(tail)].concat()
        },
    ),
    signer(
        "skippable-frame-after",
        "issue 7: skippable zstd frames",
        &["zstd-frame"],
        |b, _| [&b.bundle, &SKIPPABLE[..]].concat(),
    ),
    signer(
        "setuid-mode-header",
        "issue 7: tar header fields",
        &["header-field"],
        |b, _| {
            let i = file_i(b);
            b.edited(|e| e[i].mode = Some(0o4755))
        },
    ),
    signer(
        "uid-gid-header",
        "issue 7: tar header fields",
        &["header-field"],
        |b, _| {
            let i = file_i(b);
            b.edited(|e| e[i].uid = Some(1000))
        },
    ),
    signer(
        "pax-gnu-sparse",
        "issue 7: tar header fields",
        &["corrupt-header"],
        |b, _| {
            let i = file_i(b);
            b.edited(|e| {
                e[i].pax = vec![
                    ("GNU.sparse.major".into(), "1".into()),
                    ("GNU.sparse.minor".into(), "0".into()),
                ];
            })
        },
    ),
    // 2 is a delta: one past the newest
    signer(
        "newer-format-version",
        "format versioning",
        &["format-version"],
        |b, _| {
            b.resigned_bundle(|m| {
                m["format_version"] = (stoa_format::DELTA_FORMAT_VERSION + 1).into();
                m["delta_base"] = "sha256:0".into();
            })
        },
    ),
];

/// The table, in the order the fixtures are written.
pub const CASES: &[&[Case]] = &[
    DAMAGE,
    TRUST_AND_TIME,
    ENTRIES,
    MIGRATIONS,
    NAMES,
    FRAMES_AND_HEADERS,
];

/// Every named fixture, built from `base` (and `other`, a validly signed
/// bundle of another version made with the same key).
pub fn all(base: &Base, other: &Base) -> Vec<Fixture> {
    CASES
        .iter()
        .flat_map(|group| group.iter())
        .map(|c| Fixture {
            name: c.name,
            rule: c.rule,
            bytes: (c.make)(base, other),
            trust: c.trust.clone(),
            expect: c.expect,
        })
        .collect()
}

/// A zstd skippable frame carrying 4 unsigned bytes.
const SKIPPABLE: [u8; 12] = [0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, b'e', b'v', b'i', b'l'];

fn flip(mut v: Vec<u8>, at: usize) -> Vec<u8> {
    v[at] ^= 0x01;
    v
}

fn blob_i(b: &Base) -> usize {
    b.index(|n| n.starts_with("oci/blobs/"))
}

fn chart_i(b: &Base) -> usize {
    b.index(|n| n.starts_with("charts/"))
}

fn file_i(b: &Base) -> usize {
    b.index(|n| n.starts_with("files/"))
}

/// A link or device entry named `name` (typeflag `kind`, link target `link`).
fn special(kind: u8, name: &str, link: &str) -> RawEntry {
    RawEntry {
        kind,
        link: link.into(),
        ..RawEntry::file(name, b"")
    }
}

/// 64 KiB of seeded noise.
fn random() -> Vec<u8> {
    let mut random = vec![0u8; 64 << 10];
    crate::oci_fixture::pseudo_random(42, &mut random);
    random
}

/// One digit of the manifest's first `"sha256"` value changed, not re-signed.
fn flip_manifest_digest(e: &mut [RawEntry]) {
    let pos = e[0]
        .data
        .windows(8)
        .position(|w| w == b"\"sha256\"")
        .unwrap()
        + 12;
    e[0].data[pos] = if e[0].data[pos] == b'0' { b'1' } else { b'0' };
}

/// The manifest's release version edited in its text to 9.9.9, not re-signed.
fn edit_version_unsigned(e: &mut [RawEntry]) {
    let text = String::from_utf8(e[0].data.clone()).unwrap();
    let ver = serde_json::from_str::<serde_json::Value>(&text).unwrap()["release"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    e[0].data = text
        .replacen(
            &format!("\"version\": \"{ver}\""),
            "\"version\": \"9.9.9\"",
            1,
        )
        .into_bytes();
}

/// The base's chart entry with the content of `other`'s same chart (or its
/// first chart).
fn blob_from_other(base: &Base, other: &Base) -> Vec<u8> {
    let chart_i = chart_i(base);
    let mine = base.entries[chart_i]
        .name
        .replace(&version_of(base), &version_of(other));
    let theirs = other
        .entries
        .iter()
        .find(|x| x.name == mine)
        .or_else(|| other.entries.iter().find(|x| x.name.starts_with("charts/")))
        .cloned()
        .unwrap();
    base.edited(|e| e[chart_i].data = theirs.data)
}

/// The entry name of migration `number` (its down step when `down`).
fn migration(b: &Base, number: &str, down: bool) -> String {
    let i = b.index(|n| {
        n.starts_with("migrations/")
            && n.contains(&format!("/{number}_"))
            && n.ends_with(".sql")
            && n.ends_with(".down.sql") == down
    });
    b.entries[i].name.clone()
}

fn version_of(b: &Base) -> String {
    let m: serde_json::Value = serde_json::from_slice(&b.entries[0].data).unwrap();
    m["release"]["version"].as_str().unwrap().to_owned()
}

/// Writes every fixture into `<dir>/<name>/` with the bundle, the trust to
/// use and what must refuse it.
pub fn write_all(
    dir: &Path,
    fixtures: &[Fixture],
    signer_pub: &Path,
    stranger_pub: &Path,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for f in fixtures {
        let d = dir.join(f.name);
        fs::create_dir_all(d.join("trust")).unwrap();
        fs::write(d.join("bundle.tar.zst"), &f.bytes).unwrap();
        match f.trust {
            Trust::Signer => {
                fs::copy(signer_pub, d.join("trust/signer.pub")).unwrap();
            }
            Trust::Stranger => {
                fs::copy(stranger_pub, d.join("trust/stranger.pub")).unwrap();
            }
            Trust::SignerTwiceThreshold2 => {
                fs::copy(signer_pub, d.join("trust/a.pub")).unwrap();
                fs::copy(signer_pub, d.join("trust/b.pub")).unwrap();
            }
        }
        let threshold = if f.trust == Trust::SignerTwiceThreshold2 {
            2
        } else {
            1
        };
        fs::write(
            d.join("EXPECT"),
            format!(
                "rule: {}\nrefused by: {}\nthreshold: {threshold}\n",
                f.rule,
                f.expect.join(" | ")
            ),
        )
        .unwrap();
        out.push(d);
    }
    out
}
