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

    /// Replaces an entry's content and re-signs the manifest with its new
    /// size and digest: what a holder of the key could ship.
    pub fn content_signed(&self, name: &str, data: &[u8]) -> Vec<u8> {
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
        let mut entries = self.resigned(|m| {
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

fn flip(mut v: Vec<u8>, at: usize) -> Vec<u8> {
    v[at] ^= 0x01;
    v
}

/// Every named fixture, built from `base` (and `other`, a validly signed
/// bundle of another version made with the same key).
pub fn all(base: &Base, other: &Base) -> Vec<Fixture> {
    let mut v = Vec::new();
    let mut add = |name, rule, bytes, trust, expect| {
        v.push(Fixture {
            name,
            rule,
            bytes,
            trust,
            expect,
        })
    };
    let blob_i = base.index(|n| n.starts_with("oci/blobs/"));
    let chart_i = base.index(|n| n.starts_with("charts/"));

    // 1. a flipped byte anywhere
    let mut e = base.entries.clone();
    e[blob_i].data = flip(e[blob_i].data.clone(), 3);
    add(
        "flipped-byte-in-blob",
        "1 flipped byte",
        Base::pack(&e),
        Trust::Signer,
        &["digest"][..],
    );
    let mut e = base.entries.clone();
    let pos = e[0]
        .data
        .windows(8)
        .position(|w| w == b"\"sha256\"")
        .unwrap()
        + 12;
    e[0].data[pos] = if e[0].data[pos] == b'0' { b'1' } else { b'0' };
    add(
        "flipped-byte-in-manifest",
        "1 flipped byte",
        Base::pack(&e),
        Trust::Signer,
        &["bad-signature"][..],
    );
    let mut e = base.entries.clone();
    e[1].data = flip(e[1].data.clone(), 10);
    add(
        "flipped-byte-in-signature",
        "1 flipped byte",
        Base::pack(&e),
        Trust::Signer,
        &["bad-signature"][..],
    );
    for (name, at) in [
        ("flipped-byte-in-zstd-head", 40usize),
        ("flipped-byte-in-zstd-middle", base.bundle.len() / 2),
        ("flipped-byte-in-zstd-tail", base.bundle.len() - 3),
    ] {
        add(
            name,
            "1 flipped byte",
            flip(base.bundle.clone(), at),
            Trust::Signer,
            &[
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
            ][..],
        );
    }

    // 2. edited manifest, not re-signed
    let mut e = base.entries.clone();
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
    add(
        "edited-manifest-not-resigned",
        "2 edited manifest",
        Base::pack(&e),
        Trust::Signer,
        &["bad-signature"][..],
    );

    // 3. truncation, empty, random
    for (name, frac) in [
        ("truncated-at-10-bytes", 0usize),
        ("truncated-in-head", 1),
        ("truncated-at-half", 2),
        ("truncated-last-byte", 3),
    ] {
        let len = match frac {
            0 => 10,
            1 => 300.min(base.bundle.len() / 4),
            2 => base.bundle.len() / 2,
            _ => base.bundle.len() - 1,
        };
        add(
            name,
            "3 truncation",
            base.bundle[..len].to_vec(),
            Trust::Signer,
            &["truncated", "decompress"][..],
        );
    }
    add(
        "empty-file",
        "3 empty file",
        Vec::new(),
        Trust::Signer,
        &["empty"][..],
    );
    let mut random = vec![0u8; 64 << 10];
    crate::oci_fixture::pseudo_random(42, &mut random);
    add(
        "random-zstd-content",
        "3 random file",
        compress(&random),
        Trust::Signer,
        &["corrupt-header", "truncated"][..],
    );
    add(
        "random-file",
        "3 random file",
        random,
        Trust::Signer,
        &["decompress", "zstd-frame"][..],
    );

    // 4. keys and policy
    add(
        "unknown-key",
        "4 unknown key",
        base.bundle.clone(),
        Trust::Stranger,
        &["untrusted"][..],
    );
    add(
        "same-key-twice-for-threshold-2",
        "4 same key counted twice",
        base.bundle.clone(),
        Trust::SignerTwiceThreshold2,
        &["threshold"][..],
    );
    let mut e = base.entries.clone();
    let sig = e[1].clone();
    e.insert(2, sig);
    add(
        "duplicate-signature-entry",
        "4 same key counted twice",
        Base::pack(&e),
        Trust::Signer,
        &["duplicate"][..],
    );

    // 5. expired
    let e = base.resigned(|m| {
        m["release"]["created"] = "2000-01-01T00:00:00Z".into();
        m["release"]["expires"] = "2001-01-01T00:00:00Z".into();
    });
    add(
        "expired",
        "5 expired bundle",
        Base::pack(&e),
        Trust::Signer,
        &["expired"][..],
    );

    // issue 17: created in 2100 (its created time would lock the site's
    // clock floor for 75 years), or after its own expiry
    let e = base.resigned(|m| m["release"]["created"] = "2100-01-01T00:00:00Z".into());
    add(
        "created-in-future",
        "issue 17 bundle created in the future",
        Base::pack(&e),
        Trust::Signer,
        &["created-in-future"][..],
    );
    let e = base.resigned(|m| {
        m["release"]["created"] = "2026-06-01T00:00:00Z".into();
        m["release"]["expires"] = "2026-05-01T00:00:00Z".into();
    });
    add(
        "created-after-expires",
        "issue 17 bundle created after its own expiry",
        Base::pack(&e),
        Trust::Signer,
        &["created-after-expires"][..],
    );

    // 7. a blob swapped in from another validly signed bundle
    let mut e = base.entries.clone();
    let theirs = other
        .entries
        .iter()
        .find(|x| {
            x.name
                == e[chart_i]
                    .name
                    .replace(&version_of(base), &version_of(other))
        })
        .cloned();
    let theirs = theirs.unwrap_or_else(|| {
        other
            .entries
            .iter()
            .find(|x| x.name.starts_with("charts/"))
            .cloned()
            .unwrap()
    });
    e[chart_i].data = theirs.data;
    add(
        "blob-from-other-signed-bundle",
        "7 swapped blob",
        Base::pack(&e),
        Trust::Signer,
        &["digest", "size"][..],
    );

    // 9. names and entry types
    let mut e = base.entries.clone();
    e.push(RawEntry::file("extra/unlisted.txt", b"surprise"));
    add(
        "extra-unlisted-entry",
        "9 unlisted entry",
        Base::pack(&e),
        Trust::Signer,
        &["unlisted"][..],
    );
    let mut e = base.entries.clone();
    e.remove(chart_i);
    add(
        "missing-entry",
        "9 missing entry",
        Base::pack(&e),
        Trust::Signer,
        &["missing"][..],
    );
    let mut e = base.entries.clone();
    e.insert(chart_i + 1, e[chart_i].clone());
    add(
        "duplicate-entry",
        "9 duplicate name",
        Base::pack(&e),
        Trust::Signer,
        &["duplicate"][..],
    );
    let mut e = base.entries.clone();
    e.push(RawEntry::file("../escaped.txt", b"owned"));
    add(
        "dotdot-name",
        "9 .. in a name",
        Base::pack(&e),
        Trust::Signer,
        &["unsafe-path"][..],
    );
    add(
        "dotdot-name-signed",
        "9 .. in a name",
        base.listed_and_signed(RawEntry::file("files/../../escaped.txt", b"owned")),
        Trust::Signer,
        &["unsafe-path"][..],
    );
    let mut e = base.entries.clone();
    e.push(RawEntry::file("/tmp/stoa-absolute.txt", b"owned"));
    add(
        "absolute-name",
        "9 absolute path",
        Base::pack(&e),
        Trust::Signer,
        &["unsafe-path"][..],
    );
    let mut e = base.entries.clone();
    e.insert(
        2,
        RawEntry {
            kind: b'2',
            link: "/etc/passwd".into(),
            ..RawEntry::file("files/link", b"")
        },
    );
    add(
        "symlink-entry",
        "9 symlink",
        Base::pack(&e),
        Trust::Signer,
        &["non-regular"][..],
    );
    let mut e = base.entries.clone();
    e.insert(
        2,
        RawEntry {
            kind: b'1',
            link: "manifest.json".into(),
            ..RawEntry::file("files/hard", b"")
        },
    );
    add(
        "hardlink-entry",
        "9 hardlink",
        Base::pack(&e),
        Trust::Signer,
        &["non-regular"][..],
    );
    let mut e = base.entries.clone();
    e.insert(
        2,
        RawEntry {
            kind: b'3',
            ..RawEntry::file("files/dev", b"")
        },
    );
    add(
        "device-entry",
        "9 device",
        Base::pack(&e),
        Trust::Signer,
        &["non-regular"][..],
    );
    let mut e = base.entries.clone();
    e.push(RawEntry::file(
        &format!("files/{}", "n".repeat(300)),
        b"long",
    ));
    add(
        "very-long-name",
        "9 very long name",
        Base::pack(&e),
        Trust::Signer,
        &["unsafe-path"][..],
    );
    let mut e = base.entries.clone();
    e.swap(0, 2);
    add(
        "manifest-not-first",
        "9 manifest first",
        Base::pack(&e),
        Trust::Signer,
        &["manifest-not-first"][..],
    );

    // 10. declared size N, more data: stopped before reading
    let mut e = base.entries.clone();
    let mut big = e[blob_i].data.clone();
    big.extend(std::iter::repeat_n(0u8, 1 << 20));
    e[blob_i].data = big;
    add(
        "size-lie-bigger-entry",
        "10 size lie",
        Base::pack(&e),
        Trust::Signer,
        &["size"][..],
    );
    let mut raw = base.bundle.clone();
    // a zstd frame asking for a 1 GiB window: refused before allocating it
    raw.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD, 0x00, 0xA0, 0x01, 0x00, 0x00]);
    add(
        "huge-zstd-window",
        "10 size lie",
        raw,
        Trust::Signer,
        &["decompress"][..],
    );
    let mut tar_bytes = decompress(&base.bundle);
    tar_bytes.extend_from_slice(b"trailing garbage after the end marker");
    add(
        "trailing-data",
        "1 flipped byte",
        compress(&tar_bytes),
        Trust::Signer,
        &["trailing-data", "corrupt-header"][..],
    );

    // issue 7: psql meta-commands and transaction control in signed migrations
    // (the entries by their number, whatever the release names them)
    let migration = |number: &str, down: bool| {
        let i = base.index(|n| {
            n.starts_with("migrations/")
                && n.contains(&format!("/{number}_"))
                && n.ends_with(".sql")
                && n.ends_with(".down.sql") == down
        });
        base.entries[i].name.clone()
    };
    let (up2, down1) = (migration("0002", false), migration("0001", true));
    for (name, path, sql) in [
        (
            "migration-psql-shell",
            up2.as_str(),
            "CREATE TABLE apis (id int);\n\\! touch /tmp/stoa-pwned\n",
        ),
        (
            "migration-psql-meta-mid-line",
            up2.as_str(),
            "CREATE TABLE apis (id int); SELECT 'x' \\o /tmp/stoa-pwned\n",
        ),
        (
            "migration-down-psql-copy",
            down1.as_str(),
            "DROP TABLE tenants;\n\\copy (SELECT 1) TO '/tmp/stoa-pwned'\n",
        ),
        (
            "migration-commit",
            up2.as_str(),
            "CREATE TABLE apis (id int);\nCOMMIT;\nCREATE TABLE more (id int);\n",
        ),
    ] {
        add(
            name,
            "issue 7: migration SQL",
            base.content_signed(path, sql.as_bytes()),
            Trust::Signer,
            &["migration-sql"][..],
        );
    }

    // issue 7: names that end up in registry URLs, paths, Helm and history rows
    for (name, field, value) in [
        (
            "image-name-dotdot",
            "image",
            "registry.gostoa.dev/../victim/app:1",
        ),
        (
            "image-name-query-fragment",
            "image",
            "registry.gostoa.dev/stoa/api:1?x=y#frag",
        ),
        (
            "image-name-uppercase",
            "image",
            "registry.gostoa.dev/Stoa/API:1",
        ),
        (
            "chart-version-dotdot",
            "chart-version",
            "1.0.0/../../../etc",
        ),
        ("chart-release-invalid", "chart-release", "Stoa_API"),
        (
            "chart-namespace-invalid",
            "chart-namespace",
            "kube-system/../x",
        ),
        (
            "migration-name-newline",
            "migration-name",
            "init\n0002|apis",
        ),
    ] {
        let e = base.resigned(|m| match field {
            "image" => m["images"][0]["name"] = value.into(),
            "chart-version" => m["charts"][0]["version"] = value.into(),
            "chart-release" => m["charts"][0]["release"] = value.into(),
            "chart-namespace" => m["charts"][0]["namespace"] = value.into(),
            _ => m["migrations"][0]["steps"][0]["name"] = value.into(),
        });
        add(
            name,
            "issue 7: names",
            Base::pack(&e),
            Trust::Signer,
            &["manifest-parse", "manifest-invalid"][..],
        );
    }

    // issue 7: unsigned bytes riding along in zstd skippable frames
    let skip = [0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, b'e', b'v', b'i', b'l'];
    let tar_bytes = decompress(&base.bundle);
    let mut before = skip.to_vec();
    before.extend_from_slice(&base.bundle);
    let mut between = compress(&tar_bytes[..2048]);
    between.extend_from_slice(&skip);
    between.extend(compress(&tar_bytes[2048..]));
    let mut after = base.bundle.clone();
    after.extend_from_slice(&skip);
    for (name, bytes) in [
        ("skippable-frame-before", before),
        ("skippable-frame-between", between),
        ("skippable-frame-after", after),
    ] {
        add(
            name,
            "issue 7: skippable zstd frames",
            bytes,
            Trust::Signer,
            &["zstd-frame"][..],
        );
    }

    // issue 7: unsigned tar header fields a courier can edit
    let file_i = base.index(|n| n.starts_with("files/"));
    let mut e = base.entries.clone();
    e[file_i].mode = Some(0o4755);
    add(
        "setuid-mode-header",
        "issue 7: tar header fields",
        Base::pack(&e),
        Trust::Signer,
        &["header-field"][..],
    );
    let mut e = base.entries.clone();
    e[file_i].uid = Some(1000);
    add(
        "uid-gid-header",
        "issue 7: tar header fields",
        Base::pack(&e),
        Trust::Signer,
        &["header-field"][..],
    );
    let mut e = base.entries.clone();
    e[file_i].pax = vec![
        ("GNU.sparse.major".into(), "1".into()),
        ("GNU.sparse.minor".into(), "0".into()),
    ];
    add(
        "pax-gnu-sparse",
        "issue 7: tar header fields",
        Base::pack(&e),
        Trust::Signer,
        &["corrupt-header"][..],
    );

    // format version from the future (2 is a delta: one past the newest)
    let e = base.resigned(|m| {
        m["format_version"] = (stoa_format::DELTA_FORMAT_VERSION + 1).into();
        m["delta_base"] = "sha256:0".into();
    });
    add(
        "newer-format-version",
        "format versioning",
        Base::pack(&e),
        Trust::Signer,
        &["format-version"][..],
    );
    v
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
