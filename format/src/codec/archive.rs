//! The tar codec of the format: a strict subset of POSIX ustar/pax.
//!
//! Written: ustar headers (mode 0644, uid/gid 0, empty owner names, mtime
//! fixed by the writer), a pax `x` header only when a name does not fit ustar
//! or a size is 8 GiB or more. Read: the same, plus GNU-magic headers so that
//! a hand-made archive is refused with a clear reason rather than a parse
//! error. Every other entry type (links, devices, folders, GNU long names,
//! global pax headers) is refused by the reader.

use std::io::{self, Read, Write};

use crate::error::FormatError;

pub const BLOCK: usize = 512;
const MAX_OCTAL_SIZE: u64 = (1 << 33) - 1; // 11 octal digits

/// A header as written: a regular file of `size` bytes named `path`.
pub fn write_entry_header(w: &mut impl Write, path: &str, size: u64, mtime: u64) -> io::Result<()> {
    let (name, prefix) = split_ustar_name(path);
    let needs_pax = name.is_none() || size > MAX_OCTAL_SIZE;
    if needs_pax {
        let mut records = Vec::new();
        if name.is_none() {
            records.extend(pax_record("path", path));
        }
        if size > MAX_OCTAL_SIZE {
            records.extend(pax_record("size", &size.to_string()));
        }
        let hdr = ustar_header("PaxHeader", "", records.len() as u64, mtime, b'x');
        w.write_all(&hdr)?;
        w.write_all(&records)?;
        w.write_all(&[0u8; BLOCK][..padding(records.len() as u64)])?;
    }
    let (n, p) = match name {
        Some(n) => (n, prefix),
        // the full name is in the pax record; keep a readable tail here
        None => (tail(path, 100), ""),
    };
    let hdr = ustar_header(n, p, size.min(MAX_OCTAL_SIZE), mtime, b'0');
    w.write_all(&hdr)
}

/// Bytes of zero padding after `size` bytes of content.
pub fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// The end-of-archive marker: two zero blocks.
pub const END_OF_ARCHIVE: [u8; 2 * BLOCK] = [0u8; 2 * BLOCK];

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    // "<len> key=value\n" where len counts itself
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// Splits a name into ustar (name, prefix), or `None` for the name when it
/// does not fit.
fn split_ustar_name(path: &str) -> (Option<&str>, &str) {
    if path.len() <= 100 {
        return (Some(path), "");
    }
    // prefix ≤ 155 bytes, name ≤ 100 bytes, split at a '/'
    for (i, b) in path.bytes().enumerate() {
        if b == b'/' && i <= 155 && path.len() - i - 1 <= 100 && i > 0 {
            return (Some(&path[i + 1..]), &path[..i]);
        }
    }
    (None, "")
}

fn ustar_header(name: &str, prefix: &str, size: u64, mtime: u64, typeflag: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    put_octal(&mut h[100..108], 0o644);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], mtime.min(MAX_OCTAL_SIZE));
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    put_octal(&mut h[329..337], 0);
    put_octal(&mut h[337..345], 0);
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    let sum = checksum(&h);
    // six octal digits, NUL, space
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn put_octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

fn checksum(h: &[u8; BLOCK]) -> u64 {
    h.iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(*b)
            }
        })
        .sum()
}

/// The ustar header fields, for naming the one that differs (the checksum
/// last).
const FIELDS: [(&str, std::ops::Range<usize>); 17] = [
    ("name", 0..100),
    ("mode", 100..108),
    ("uid", 108..116),
    ("gid", 116..124),
    ("size", 124..136),
    ("mtime", 136..148),
    ("typeflag", 156..157),
    ("linkname", 157..257),
    ("magic", 257..263),
    ("version", 263..265),
    ("uname", 265..297),
    ("gname", 297..329),
    ("devmajor", 329..337),
    ("devminor", 337..345),
    ("prefix", 345..500),
    ("padding", 500..512),
    // last: every other difference changes it too
    ("checksum", 148..156),
];

/// One entry header as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    pub path: String,
    pub size: u64,
}

/// A strict streaming tar reader. It reads headers and hands out content
/// readers bounded to the entry's size; it never seeks and never buffers more
/// than a block.
#[derive(Debug)]
pub struct TarReader<R> {
    inner: R,
    /// bytes of the tar stream consumed so far
    offset: u64,
    /// content + padding of the current entry not yet consumed
    pending: u64,
    max_pax_size: u64,
    /// the first header's mtime: every header of a bundle has the same
    mtime: Option<u64>,
    /// the end-of-archive marker and the end of the stream were read: every
    /// further `next_header` is `Ok(None)` (a bundle without content
    /// entries ends right after its manifest and signature entries)
    ended: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R, max_pax_size: u64) -> Self {
        Self {
            inner,
            offset: 0,
            pending: 0,
            max_pax_size,
            mtime: None,
            ended: false,
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next header, skipping what is left of the current entry.
    /// `Ok(None)` at a well-formed end of archive followed by end of stream.
    /// Once the end was read, every further call is `Ok(None)` again.
    pub fn next_header(&mut self) -> Result<Option<EntryHeader>, FormatError> {
        if self.ended {
            return Ok(None);
        }
        self.skip_pending()?;
        let mut pax_path: Option<String> = None;
        let mut pax_size: Option<u64> = None;
        let mut first = true;
        loop {
            let mut block = [0u8; BLOCK];
            let start = self.offset;
            let got = self.read_full(&mut block)?;
            if got == 0 && start == 0 && first {
                return Err(FormatError::EmptyBundle);
            }
            if got < BLOCK {
                return Err(FormatError::Truncated {
                    during: format!("in the tar header at byte {start}"),
                });
            }
            first = false;
            if block.iter().all(|b| *b == 0) {
                if pax_path.is_some() || pax_size.is_some() {
                    return Err(corrupt(start, "pax header not followed by an entry"));
                }
                let mut second = [0u8; BLOCK];
                if self.read_full(&mut second)? < BLOCK {
                    return Err(FormatError::Truncated {
                        during: "in the end-of-archive marker".into(),
                    });
                }
                if second.iter().any(|b| *b != 0) {
                    return Err(corrupt(start, "lone zero block inside the archive"));
                }
                let mut probe = [0u8; 1];
                if self.read_full(&mut probe)? != 0 {
                    return Err(FormatError::TrailingData);
                }
                self.ended = true;
                return Ok(None);
            }
            let stored = parse_octal(&block[148..156])
                .ok_or_else(|| corrupt(start, "bad checksum field"))?;
            if stored != checksum(&block) {
                return Err(corrupt(start, "header checksum does not match"));
            }
            let magic = &block[257..265];
            if magic != b"ustar\x0000" && magic != b"ustar  \x00" {
                return Err(corrupt(start, "not a ustar header"));
            }
            let name = header_name(&block).map_err(|r| corrupt(start, r))?;
            if matches!(block[156], b'0' | b'x') {
                self.check_as_written(&block, start, pax_path.as_deref().unwrap_or(&name))?;
            }
            let size =
                parse_size(&block[124..136]).ok_or_else(|| corrupt(start, "bad size field"))?;
            let shown = pax_path.clone().unwrap_or_else(|| name.clone());
            match block[156] {
                b'0' => {
                    let size = pax_size.unwrap_or(size);
                    self.pending = size + padding(size) as u64;
                    return Ok(Some(EntryHeader {
                        path: pax_path.unwrap_or(name),
                        size,
                    }));
                }
                b'x' => {
                    if pax_path.is_some() || pax_size.is_some() {
                        return Err(corrupt(start, "two pax headers for one entry"));
                    }
                    if size > self.max_pax_size {
                        return Err(corrupt(start, "pax header over the size limit"));
                    }
                    let mut data = vec![0u8; size as usize];
                    if self.read_full(&mut data)? < data.len() {
                        return Err(FormatError::Truncated {
                            during: "in a pax header".into(),
                        });
                    }
                    self.skip(padding(size) as u64)?;
                    let (p, s) = parse_pax(&data).map_err(|r| corrupt(start, r))?;
                    if s.is_some_and(|s| s <= MAX_OCTAL_SIZE) {
                        return Err(corrupt(start, "pax size for a size that fits the header"));
                    }
                    if p.is_none() && s.is_none() {
                        return Err(corrupt(start, "empty pax header"));
                    }
                    pax_path = p;
                    pax_size = s;
                }
                t => {
                    let kind = match t {
                        0 => "pre-POSIX regular file (type NUL)",
                        b'1' => "hardlink",
                        b'2' => "symlink",
                        b'3' => "character device",
                        b'4' => "block device",
                        b'5' => "directory",
                        b'6' => "fifo",
                        b'7' => "contiguous file",
                        b'g' => "global pax header",
                        b'L' | b'K' => "GNU long name",
                        b'S' => "GNU sparse file",
                        _ => "unknown-type",
                    };
                    return Err(FormatError::NonRegularEntry {
                        path: shown,
                        kind: kind.into(),
                    });
                }
            }
        }
    }

    /// Every field of a regular or pax header must be what the writer
    /// writes: mode 0644, uid/gid 0, empty owner names, no link name, no
    /// device numbers, POSIX magic, octal numbers, the same mtime as the
    /// first header. So `tar -xpf` as root can never make a setuid or
    /// foreign-owned file from a courier-edited (unsigned) header.
    fn check_as_written(
        &mut self,
        h: &[u8; BLOCK],
        start: u64,
        path: &str,
    ) -> Result<(), FormatError> {
        let field_err = |field: &str, found: &[u8]| FormatError::HeaderField {
            path: path.to_owned(),
            field: field.to_owned(),
            found: String::from_utf8_lossy(cstr(found)).into_owned(),
        };
        if &h[257..265] != b"ustar\x0000" {
            return Err(field_err("magic", &h[257..265]));
        }
        let name = std::str::from_utf8(cstr(&h[..100]))
            .map_err(|_| corrupt(start, "name is not UTF-8"))?;
        let prefix = std::str::from_utf8(cstr(&h[345..500]))
            .map_err(|_| corrupt(start, "prefix is not UTF-8"))?;
        let size = parse_octal(&h[124..136]).ok_or_else(|| field_err("size", &h[124..136]))?;
        let mtime = parse_octal(&h[136..148]).ok_or_else(|| field_err("mtime", &h[136..148]))?;
        if size > MAX_OCTAL_SIZE || mtime > MAX_OCTAL_SIZE {
            return Err(corrupt(start, "number out of range"));
        }
        let want = ustar_header(name, prefix, size, mtime, h[156]);
        if let Some((field, r)) = FIELDS.iter().find(|(_, r)| h[r.clone()] != want[r.clone()]) {
            return Err(field_err(field, &h[r.clone()]));
        }
        match self.mtime {
            None => self.mtime = Some(mtime),
            Some(m) if m != mtime => return Err(field_err("mtime", &h[136..148])),
            Some(_) => {}
        }
        Ok(())
    }

    /// Reads content of the current entry into `buf`; returns 0 when the
    /// content (not the padding) is used up.
    pub fn read_content(&mut self, buf: &mut [u8], remaining: u64) -> Result<usize, FormatError> {
        if remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            }
        };
        if n == 0 {
            return Err(FormatError::Truncated {
                during: format!("inside an entry at byte {}", self.offset),
            });
        }
        self.offset += n as u64;
        self.pending -= n as u64;
        Ok(n)
    }

    fn skip_pending(&mut self) -> Result<(), FormatError> {
        let p = self.pending;
        self.pending = 0;
        self.skip(p)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), FormatError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = buf.len().min(n as usize);
            let got = self.read_full(&mut buf[..want])?;
            if got < want {
                return Err(FormatError::Truncated {
                    during: format!("in entry data at byte {}", self.offset),
                });
            }
            n -= got as u64;
        }
        Ok(())
    }

    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, FormatError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        self.offset += got as u64;
        Ok(got)
    }
}

/// zstd reports truncation as an I/O error; name it as such.
pub(crate) fn read_error(e: io::Error) -> FormatError {
    if let Some(f) = e
        .get_ref()
        .and_then(|x| x.downcast_ref::<crate::codec::zframe::FrameError>())
    {
        FormatError::ZstdFrame {
            offset: f.offset,
            reason: f.reason.to_owned(),
        }
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        FormatError::Truncated {
            during: format!("in the zstd stream ({e})"),
        }
    } else if e.kind() == io::ErrorKind::Other {
        // libzstd's errors surface as `Other`
        FormatError::Decompress(e.to_string())
    } else {
        FormatError::ReadBundle(e)
    }
}

fn corrupt(offset: u64, reason: &str) -> FormatError {
    FormatError::CorruptHeader {
        offset,
        reason: reason.to_owned(),
    }
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

fn header_name(h: &[u8; BLOCK]) -> Result<String, &'static str> {
    let name = cstr(&h[..100]);
    let prefix = if &h[257..263] == b"ustar\0" {
        cstr(&h[345..500])
    } else {
        &[][..]
    };
    let mut full = Vec::with_capacity(prefix.len() + 1 + name.len());
    if !prefix.is_empty() {
        full.extend_from_slice(prefix);
        full.push(b'/');
    }
    full.extend_from_slice(name);
    String::from_utf8(full).map_err(|_| "name is not UTF-8")
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        // GNU base-256: big-endian, first byte's high bit is the marker
        if field[0] != 0x80 || field[1..4].iter().any(|b| *b != 0) {
            return None;
        }
        return Some(
            field[4..]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        );
    }
    parse_octal(field)
}

fn parse_pax(data: &[u8]) -> Result<(Option<String>, Option<u64>), &'static str> {
    let mut path = None;
    let mut size = None;
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or("pax record without length")?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("bad pax record length")?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("bad pax record length");
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|b| *b == b'=')
            .ok_or("pax record without '='")?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        let v = std::str::from_utf8(v).map_err(|_| "pax value is not UTF-8")?;
        // the writer emits `path` and `size` only; every other key (GNU.sparse.*,
        // mode, uid, linkpath, …) would make other readers disagree with us
        match k {
            b"path" if path.is_none() => path = Some(v.to_owned()),
            b"size" if size.is_none() => {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("bad pax size");
                }
                size = Some(v.parse().map_err(|_| "bad pax size")?)
            }
            b"path" | b"size" => return Err("pax key given twice"),
            _ => return Err("pax key other than path and size"),
        }
        rest = &rest[len..];
    }
    Ok((path, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(path: &str, size: u64) -> EntryHeader {
        let mut buf = Vec::new();
        write_entry_header(&mut buf, path, size, 1_700_000_000).unwrap();
        // pretend content follows: we only parse the header
        let mut r = TarReader::new(&buf[..], 8192);
        r.next_header().unwrap().unwrap()
    }

    #[test]
    fn short_long_and_huge() {
        assert_eq!(roundtrip("a/b", 5).path, "a/b");
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        assert_eq!(roundtrip(&long, 5).path, long);
        let very_long = "x".repeat(230);
        assert_eq!(roundtrip(&very_long, 1).path, very_long);
        assert_eq!(roundtrip("big", 9 << 30).size, 9 << 30);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("path", "abc");
        assert_eq!(r, b"12 path=abc\n");
        let r = pax_record("path", &"a".repeat(95));
        let len: usize = std::str::from_utf8(&r[..r.iter().position(|b| *b == b' ').unwrap()])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, r.len());
    }

    fn reseal(h: &mut [u8]) {
        let mut b = [0u8; BLOCK];
        b.copy_from_slice(&h[..BLOCK]);
        let sum = checksum(&b);
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    fn edited(edit: impl Fn(&mut Vec<u8>)) -> FormatError {
        let mut buf = Vec::new();
        write_entry_header(&mut buf, "files/run.sh", 0, 1_700_000_000).unwrap();
        edit(&mut buf);
        reseal(&mut buf);
        buf.extend_from_slice(&END_OF_ARCHIVE);
        TarReader::new(&buf[..], 8192).next_header().unwrap_err()
    }

    #[test]
    fn refuses_every_header_field_the_writer_does_not_write() {
        for (field, range, value) in [
            ("mode", 100..108, &b"0004755\0"[..]),
            ("uid", 108..116, &b"0001750\0"[..]),
            ("gid", 116..124, &b"0000012\0"[..]),
            ("uname", 265..269, &b"root"[..]),
            ("gname", 297..301, &b"root"[..]),
            ("linkname", 157..160, &b"abc"[..]),
            ("devmajor", 329..337, &b"0000001\0"[..]),
            ("padding", 500..501, &b"x"[..]),
            ("name", 50..52, &b"\0x"[..]),
        ] {
            let e = edited(|b| b[range.clone()].copy_from_slice(value));
            assert!(
                matches!(&e, FormatError::HeaderField { field: f, .. } if f == field),
                "{field}: {e}"
            );
        }
        // GNU magic, a NUL typeflag
        let e = edited(|b| b[257..265].copy_from_slice(b"ustar  \0"));
        assert_eq!(e.kind(), "header-field", "{e}");
        let e = edited(|b| b[156] = 0);
        assert_eq!(e.kind(), "non-regular", "{e}");
    }

    #[test]
    fn refuses_a_second_mtime() {
        let mut buf = Vec::new();
        write_entry_header(&mut buf, "a", 0, 1_700_000_000).unwrap();
        write_entry_header(&mut buf, "b", 0, 1_700_000_001).unwrap();
        let mut r = TarReader::new(&buf[..], 8192);
        r.next_header().unwrap();
        let e = r.next_header().unwrap_err();
        assert!(
            matches!(&e, FormatError::HeaderField { field, .. } if field == "mtime"),
            "{e}"
        );
    }

    #[test]
    fn refuses_pax_keys_other_than_path_and_size() {
        for rec in [
            pax_record("GNU.sparse.map", "0,10"),
            pax_record("mode", "4755"),
            pax_record("uid", "0"),
            [pax_record("path", "a"), pax_record("path", "b")].concat(),
        ] {
            let mut buf = ustar_header("PaxHeader", "", rec.len() as u64, 0, b'x').to_vec();
            buf.extend_from_slice(&rec);
            buf.resize(BLOCK * 2, 0);
            buf.extend_from_slice(&ustar_header("a", "", 0, 0, b'0'));
            let e = TarReader::new(&buf[..], 8192).next_header().unwrap_err();
            assert_eq!(e.kind(), "corrupt-header", "{e}");
        }
    }
}
