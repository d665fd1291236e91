//! Keeps the migration SQL of a bundle being verified, for the change
//! report (`plan` stages nothing): every `migrations/…` entry up to
//! [`MAX_SQL`] bytes is held in memory, the total bounded by
//! [`MAX_TOTAL`]; larger ones are named in the page by size. Everything
//! else passes to the inner sink (the chart sink) unchanged. What is kept
//! is used only once verification succeeded: every byte was then checked.

use std::collections::BTreeMap;
use std::io;

use stoa_format::manifest::Entry;
use stoa_format::ContentSink;

/// The largest migration step shown in the page.
pub const MAX_SQL: u64 = 256 << 10;
/// The most SQL held for one report.
pub const MAX_TOTAL: u64 = 16 << 20;

/// A [`ContentSink`] that keeps migration SQL and forwards everything.
pub struct SqlCapture<'a> {
    inner: &'a mut dyn ContentSink,
    kept: BTreeMap<String, Vec<u8>>,
    current: Option<(String, Vec<u8>)>,
    total: u64,
}

impl std::fmt::Debug for SqlCapture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlCapture({} kept)", self.kept.len())
    }
}

impl<'a> SqlCapture<'a> {
    pub fn new(inner: &'a mut dyn ContentSink) -> Self {
        Self {
            inner,
            kept: BTreeMap::new(),
            current: None,
            total: 0,
        }
    }

    /// The inner sink alone (nothing kept).
    pub fn inner(&mut self) -> &mut dyn ContentSink {
        &mut *self.inner
    }

    /// The kept SQL, by entry path.
    pub fn into_kept(self) -> BTreeMap<String, Vec<u8>> {
        self.kept
    }
}

impl ContentSink for SqlCapture<'_> {
    fn begin(&mut self, entry: &Entry) -> io::Result<()> {
        self.current = None;
        if entry.path.starts_with("migrations/")
            && entry.size <= MAX_SQL
            && self.total + entry.size <= MAX_TOTAL
        {
            self.total += entry.size;
            // the size is the manifest's, checked by the reader
            self.current = Some((
                entry.path.clone(),
                Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0)),
            ));
        }
        self.inner.begin(entry)
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some((_, buf)) = &mut self.current {
            if (buf.len() + data.len()) as u64 <= MAX_SQL {
                buf.extend_from_slice(data);
            }
        }
        self.inner.write(data)
    }

    fn end(&mut self, entry: &Entry) -> io::Result<()> {
        if let Some((path, buf)) = self.current.take() {
            self.kept.insert(path, buf);
        }
        self.inner.end(entry)
    }
}
