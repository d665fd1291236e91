//! The compressed stream of a bundle: a sequence of zstd frames.
//!
//! Headers, manifests and other compressible bytes go through ordinary zstd
//! frames (fixed level, checksummed). Content that is already compressed
//! (gzip or zstd image layers, chart archives) goes into *raw* frames: valid
//! zstd frames made of Raw_Block blocks, which any zstd decoder reads at
//! memory speed. Nothing is compressed twice, and the output depends only on
//! the input bytes, so bundles stay reproducible.

use std::io::{self, Write};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

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
