//! Sending a stored blob so that wrong bytes are never sent as good.
//!
//! The whole stored file is read and hashed on every GET, through two
//! fixed buffers; the bytes inside the asked range (the whole blob without
//! a `Range`) are written as they pass, except the range's last piece,
//! which is held back (the two buffers are swapped, so nothing is copied)
//! until the file's size and SHA-256 are known to be the signed ones. If
//! they are not, the held piece is never written and the connection is
//! closed: the client gets fewer bytes than `Content-Length` said, a cut
//! response it cannot take for the blob.
//! A file whose size is already wrong is refused before any byte is sent.
//!
//! So a range costs a read of the whole blob from disk (never more memory):
//! the range rule is "hash from 0 to the end of the file, send only the
//! range, and its last byte only when the whole blob verified".

use std::fs::File;
use std::io::{self, Read, Write};

use stoa_format::digest::Hasher;
use stoa_format::Sha256Digest;

use super::http::ByteRange;

/// The size of each of the two buffers a blob is streamed through.
pub const BUF: usize = 64 << 10;

/// How a blob send ended.
#[derive(Debug)]
pub enum Sent {
    /// Every byte of the range went out and the blob verified.
    Whole,
    /// The stored file does not hash to its digest (or its length changed
    /// while read): the response was cut after `sent` bytes.
    Damaged { sent: u64, reason: String },
}

/// Streams `range` of the stored blob `f` (signed `size`, digest `d`) to
/// `w`, re-hashing all of `f`. An `Err` is the client's side (it went away,
/// it was too slow) or a read error of the store.
pub fn send_blob(
    f: &mut File,
    d: &Sha256Digest,
    size: u64,
    range: ByteRange,
    w: &mut impl Write,
) -> io::Result<Sent> {
    // two buffers, swapped: the piece read last is held in place (no copy)
    // while the next one is read; it goes out once another piece of the
    // range follows it, or at the end once the whole blob verified
    let mut cur = vec![0u8; BUF];
    let mut held = vec![0u8; BUF];
    let mut held_part: Option<(usize, usize)> = None;
    let mut hasher = Hasher::default();
    let mut off: u64 = 0;
    let mut sent: u64 = 0;
    // one byte past the signed size shows a file that grew
    let mut r = f.take(size + 1);
    loop {
        let n = match r.read(&mut cur) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&cur[..n]);
        let (lo, hi) = (off, off + n as u64);
        off = hi;
        let (s, e) = (range.start.max(lo), (range.end + 1).min(hi));
        if s < e && e <= size {
            // the piece held so far was not the last one: it goes out now
            if let Some((a, b)) = held_part.take() {
                w.write_all(&held[a..b])?;
                sent += (b - a) as u64;
            }
            std::mem::swap(&mut cur, &mut held);
            held_part = Some(((s - lo) as usize, (e - lo) as usize));
        }
    }
    let (got, len) = hasher.finish();
    if len != size || got != *d {
        let reason = if len != size {
            format!("the stored file has {len} bytes, the release signed {size}")
        } else {
            format!("the stored bytes hash to {}", got.oci())
        };
        return Ok(Sent::Damaged { sent, reason });
    }
    if let Some((a, b)) = held_part {
        w.write_all(&held[a..b])?;
    }
    w.flush()?;
    Ok(Sent::Whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(bytes: &[u8]) -> (tempfile_path::Tmp, Sha256Digest) {
        (tempfile_path::Tmp::new(bytes), Sha256Digest::of(bytes))
    }

    /// A file in the temp folder, removed on drop.
    mod tempfile_path {
        pub struct Tmp(pub std::path::PathBuf);
        impl Tmp {
            pub fn new(bytes: &[u8]) -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "stoa-serve-stream-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::write(&p, bytes).unwrap();
                Self(p)
            }
        }
        impl Drop for Tmp {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn send(bytes_on_disk: &[u8], signed: &[u8], r: ByteRange) -> (Sent, Vec<u8>) {
        let (t, _) = blob(bytes_on_disk);
        let d = Sha256Digest::of(signed);
        let mut out = Vec::new();
        let mut f = File::open(&t.0).unwrap();
        let s = send_blob(&mut f, &d, signed.len() as u64, r, &mut out).unwrap();
        (s, out)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_good_blob_and_any_range_of_it_are_sent_exactly() {
        let b = data(3 * BUF + 17);
        let n = b.len() as u64;
        for (s, e) in [
            (0, n - 1),
            (0, 0),
            (5, 70_000),
            (n - 1, n - 1),
            (BUF as u64, 2 * BUF as u64 - 1),
        ] {
            let (sent, out) = send(&b, &b, ByteRange { start: s, end: e });
            assert!(matches!(sent, Sent::Whole), "{s}-{e}");
            assert_eq!(out, &b[s as usize..=e as usize], "{s}-{e}");
        }
    }

    #[test]
    fn a_bit_flipped_blob_is_never_sent_whole() {
        let b = data(3 * BUF + 17);
        let mut flipped = b.clone();
        flipped[2 * BUF + 3] ^= 0x01;
        let n = b.len() as u64;
        for (s, e) in [(0, n - 1), (0, 10), (n - 5, n - 1)] {
            let (sent, out) = send(&flipped, &b, ByteRange { start: s, end: e });
            let Sent::Damaged { sent, .. } = sent else {
                panic!("sent as good")
            };
            assert_eq!(sent, out.len() as u64);
            assert!(out.len() < (e - s + 1) as usize, "{s}-{e}: cut");
        }
    }

    #[test]
    fn a_truncated_or_grown_blob_is_never_sent_whole() {
        let b = data(BUF + 9);
        let n = b.len() as u64;
        let (sent, out) = send(
            &b[..b.len() - 1],
            &b,
            ByteRange {
                start: 0,
                end: n - 1,
            },
        );
        assert!(matches!(sent, Sent::Damaged { .. }));
        assert!(out.len() < b.len());
        let mut grown = b.clone();
        grown.push(0);
        let (sent, out) = send(
            &grown,
            &b,
            ByteRange {
                start: 0,
                end: n - 1,
            },
        );
        assert!(matches!(sent, Sent::Damaged { .. }));
        assert!(out.len() < b.len());
    }
}
