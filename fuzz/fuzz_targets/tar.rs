//! The strict tar reader on raw (uncompressed) bytes: every header and every
//! content byte is read until an error or the end; never panics, never reads
//! past a declared size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoa_format::archive::TarReader;

fuzz_target!(|data: &[u8]| {
    let mut tar = TarReader::new(data, 8 * 1024);
    let mut buf = vec![0u8; 4096];
    let mut headers = 0;
    while let Ok(Some(h)) = tar.next_header() {
        headers += 1;
        if headers > 10_000 {
            break;
        }
        let mut left = h.size;
        while left > 0 {
            match tar.read_content(&mut buf, left) {
                Ok(0) | Err(_) => return,
                Ok(n) => left -= n as u64,
            }
        }
    }
});
