//! The compressed stream of a bundle: a sequence of zstd frames.
//!
//! Headers, manifests and other compressible bytes go through ordinary zstd
//! frames (fixed level, checksummed). Content that is already compressed
//! (gzip or zstd image layers, chart archives) goes into *raw* frames: valid
//! zstd frames made of Raw_Block blocks, which any zstd decoder reads at
//! memory speed. Nothing is compressed twice, and the output depends only on
//! the input bytes, so bundles stay reproducible.

use std::io::{self, Read, Write};

/// zstd's frame magic number, little-endian on the wire.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Largest block of a raw frame (zstd's Block_Maximum_Size).
pub const RAW_BLOCK: usize = 128 << 10;
/// Frame header: descriptor 0 (no content size, no checksum, not single
/// segment), then a window descriptor for 128 KiB (exponent 7 → 2^17).
const RAW_FRAME_HEADER: [u8; 6] = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x38];

/// Fixed compression level: part of the reproducibility contract.
pub const LEVEL: i32 = 3;

/// True when bytes start like a format that does not compress further.
pub fn looks_compressed(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b]) // gzip (layers, .tgz charts)
        || head.starts_with(&ZSTD_MAGIC) // zstd layers
        || head.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) // xz
        || head.starts_with(b"BZh") // bzip2
        || head.starts_with(b"PK\x03\x04") // zip, jar
}

enum State<W: Write> {
    Compressed(zstd::stream::write::Encoder<'static, W>),
    Raw { w: W, block: Vec<u8> },
    Idle(W),
    Poisoned,
}

/// Writes a bundle's zstd stream, switching between compressed and raw frames.
pub struct FrameWriter<W: Write> {
    state: State<W>,
}

impl<W: Write> std::fmt::Debug for FrameWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameWriter")
    }
}

impl<W: Write> FrameWriter<W> {
    pub fn new(w: W) -> Self {
        Self {
            state: State::Idle(w),
        }
    }

    fn take(&mut self) -> io::Result<W> {
        match std::mem::replace(&mut self.state, State::Poisoned) {
            State::Idle(w) => Ok(w),
            State::Compressed(enc) => enc.finish(),
            State::Raw { mut w, block } => {
                finish_raw(&mut w, &block)?;
                Ok(w)
            }
            State::Poisoned => Err(io::Error::other(
                "frame writer poisoned by an earlier error",
            )),
        }
    }

    /// Writes bytes that should be compressed.
    pub fn compressed(&mut self, buf: &[u8]) -> io::Result<()> {
        if !matches!(self.state, State::Compressed(_)) {
            let w = self.take()?;
            let mut enc = zstd::stream::write::Encoder::new(w, LEVEL)?;
            enc.include_checksum(true)?;
            enc.include_contentsize(false)?;
            self.state = State::Compressed(enc);
        }
        match &mut self.state {
            State::Compressed(enc) => enc.write_all(buf),
            _ => unreachable!("just set"),
        }
    }

    /// Writes bytes stored as they are, in raw blocks.
    pub fn raw(&mut self, mut buf: &[u8]) -> io::Result<()> {
        if !matches!(self.state, State::Raw { .. }) {
            let mut w = self.take()?;
            w.write_all(&RAW_FRAME_HEADER)?;
            self.state = State::Raw {
                w,
                block: Vec::with_capacity(RAW_BLOCK),
            };
        }
        let State::Raw { w, block } = &mut self.state else {
            unreachable!("just set")
        };
        while !buf.is_empty() {
            // emit full blocks straight from the caller's buffer when possible
            if block.is_empty() && buf.len() >= RAW_BLOCK {
                write_raw_block(w, &buf[..RAW_BLOCK], false)?;
                buf = &buf[RAW_BLOCK..];
                continue;
            }
            let n = (RAW_BLOCK - block.len()).min(buf.len());
            block.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if block.len() == RAW_BLOCK {
                write_raw_block(w, block, false)?;
                block.clear();
            }
        }
        Ok(())
    }

    /// Ends the last frame and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.take()
    }
}

fn write_raw_block(w: &mut impl Write, data: &[u8], last: bool) -> io::Result<()> {
    debug_assert!(data.len() <= RAW_BLOCK);
    // Block_Header: bit 0 Last_Block, bits 1-2 Block_Type (0 = Raw), bits 3-23 size
    let h = ((data.len() as u32) << 3) | u32::from(last);
    w.write_all(&h.to_le_bytes()[..3])?;
    w.write_all(data)
}

fn finish_raw(w: &mut impl Write, block: &[u8]) -> io::Result<()> {
    // the buffered tail (possibly empty) is the last block
    write_raw_block(w, block, true)
}

/// Why [`FrameGuard`] stopped the stream.
#[derive(Debug)]
pub struct FrameError {
    /// byte offset in the compressed stream
    pub offset: u64,
    pub reason: &'static str,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at byte {} of the zstd stream",
            self.reason, self.offset
        )
    }
}

impl std::error::Error for FrameError {}

#[derive(Debug, Clone, Copy)]
enum Scan {
    /// collecting a frame's magic number
    Magic,
    /// collecting the frame header descriptor
    Descriptor,
    /// skipping the rest of the frame header
    HeaderRest,
    /// collecting a 3-byte block header
    BlockHeader,
    /// skipping block content
    Block { last: bool },
    /// skipping the content checksum
    Checksum,
}

/// Passes a bundle's compressed bytes through unchanged while following the
/// zstd frame structure (headers and block sizes only; content is skipped
/// in bulk), so that what libzstd silently skips is refused: a skippable
/// frame anywhere (before, between or after the frames), a reserved block
/// type, a dictionary id, or a stream that ends between frames' parts.
/// Every byte of a bundle is then either a zstd frame the decoder reads or
/// refused.
#[derive(Debug)]
pub struct FrameGuard<R> {
    inner: R,
    state: Scan,
    buf: [u8; 4],
    have: usize,
    skip: u64,
    checksum: bool,
    offset: u64,
    failed: bool,
}

impl<R> FrameGuard<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            state: Scan::Magic,
            buf: [0; 4],
            have: 0,
            skip: 0,
            checksum: false,
            offset: 0,
            failed: false,
        }
    }

    fn fail(&mut self, at: u64, reason: &'static str) -> io::Error {
        self.failed = true;
        io::Error::new(
            io::ErrorKind::InvalidData,
            FrameError { offset: at, reason },
        )
    }

    fn scan(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let at = self.offset;
            match self.state {
                Scan::HeaderRest | Scan::Block { .. } | Scan::Checksum => {
                    let n = usize::try_from(self.skip)
                        .unwrap_or(usize::MAX)
                        .min(data.len());
                    self.skip -= n as u64;
                    self.offset += n as u64;
                    data = &data[n..];
                    if self.skip == 0 {
                        self.state = match self.state {
                            Scan::HeaderRest => Scan::BlockHeader,
                            Scan::Block { last: false } => Scan::BlockHeader,
                            Scan::Block { last: true } if self.checksum => {
                                self.skip = 4;
                                Scan::Checksum
                            }
                            _ => Scan::Magic,
                        };
                    }
                    continue;
                }
                _ => {}
            }
            self.buf[self.have] = data[0];
            self.have += 1;
            self.offset += 1;
            data = &data[1..];
            match self.state {
                Scan::Magic if self.have == 4 => {
                    self.have = 0;
                    if self.buf == ZSTD_MAGIC {
                        self.state = Scan::Descriptor;
                    } else if self.buf[1..] == [0x2A, 0x4D, 0x18] && self.buf[0] & 0xF0 == 0x50 {
                        return Err(
                            self.fail(at - 3, "skippable frame (unsigned bytes riding along)")
                        );
                    } else {
                        return Err(self.fail(at - 3, "not a zstd frame"));
                    }
                }
                Scan::Descriptor => {
                    self.have = 0;
                    let d = self.buf[0];
                    let single = d & 0x20 != 0;
                    if d & 0x08 != 0 {
                        return Err(self.fail(at, "reserved bit set in a frame header"));
                    }
                    if d & 0x03 != 0 {
                        return Err(self.fail(at, "frame needs a dictionary"));
                    }
                    self.checksum = d & 0x04 != 0;
                    let fcs = match d >> 6 {
                        0 => u64::from(single),
                        1 => 2,
                        2 => 4,
                        _ => 8,
                    };
                    self.skip = fcs + u64::from(!single);
                    self.state = if self.skip == 0 {
                        Scan::BlockHeader
                    } else {
                        Scan::HeaderRest
                    };
                }
                Scan::BlockHeader if self.have == 3 => {
                    self.have = 0;
                    let h = u32::from(self.buf[0])
                        | (u32::from(self.buf[1]) << 8)
                        | (u32::from(self.buf[2]) << 16);
                    let last = h & 1 != 0;
                    let size = u64::from(h >> 3);
                    self.skip = match (h >> 1) & 3 {
                        0 | 2 => size,
                        1 => 1,
                        _ => return Err(self.fail(at - 2, "reserved block type")),
                    };
                    self.state = if self.skip > 0 {
                        Scan::Block { last }
                    } else if !last {
                        Scan::BlockHeader
                    } else if self.checksum {
                        self.skip = 4;
                        Scan::Checksum
                    } else {
                        Scan::Magic
                    };
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for FrameGuard<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("zstd stream already refused"));
        }
        // at the end of input, a stream cut inside a frame is reported by
        // the decoder, in its own words
        let n = self.inner.read(out)?;
        self.scan(&out[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // small reads: the scanner must carry state across them
        let mut g = FrameGuard::new(bytes);
        let mut buf = [0u8; 7];
        loop {
            let n = g.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn sample() -> Vec<u8> {
        let mut fw = FrameWriter::new(Vec::new());
        fw.compressed(b"hello ").unwrap();
        fw.raw(&[7u8; 3 * RAW_BLOCK + 5]).unwrap();
        fw.compressed(b" world").unwrap();
        fw.finish().unwrap()
    }

    #[test]
    fn guard_passes_our_frames_through() {
        let s = sample();
        assert_eq!(guarded(&s).unwrap(), s);
        let rle = zstd::encode_all(&[0u8; 100_000][..], 3).unwrap();
        assert_eq!(guarded(&rle).unwrap(), rle);
    }

    #[test]
    fn guard_refuses_skippable_frames_anywhere() {
        let skip = [0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, b'a', b'b', b'c'];
        let s = sample();
        let first_frame_len = {
            let mut fw = FrameWriter::new(Vec::new());
            fw.compressed(b"hello ").unwrap();
            fw.finish().unwrap().len()
        };
        for at in [0, first_frame_len, s.len()] {
            let mut v = s.clone();
            v.splice(at..at, skip);
            let e = guarded(&v).unwrap_err();
            let fe = e
                .get_ref()
                .and_then(|x| x.downcast_ref::<FrameError>())
                .unwrap();
            assert!(fe.reason.contains("skippable"), "{fe}");
            assert_eq!(fe.offset, at as u64);
        }
    }

    #[test]
    fn mixed_frames_decode_with_libzstd() {
        let mut fw = FrameWriter::new(Vec::new());
        fw.compressed(b"hello ").unwrap();
        let big: Vec<u8> = (0..(3 * RAW_BLOCK + 17))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        fw.raw(&big[..1000]).unwrap();
        fw.raw(&big[1000..]).unwrap();
        fw.compressed(b" world").unwrap();
        fw.raw(b"").unwrap();
        let out = fw.finish().unwrap();
        let mut dec = zstd::stream::read::Decoder::new(&out[..]).unwrap();
        let mut got = Vec::new();
        dec.read_to_end(&mut got).unwrap();
        let mut want = b"hello ".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b" world");
        assert_eq!(got, want);
    }
}
