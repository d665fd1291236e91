//! Every size cap of the format in one place.

/// Size caps applied while reading (and, where they matter, while writing) a
/// bundle. The defaults are documented in docs/FORMAT.md; a reader never
/// allocates more than these allow, whatever the bundle claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest `manifest.json` accepted, in bytes.
    pub max_manifest_size: u64,
    /// The most signature entries accepted.
    pub max_signatures: usize,
    /// The most content entries a manifest may list.
    pub max_entries: usize,
    /// The largest single content entry, in bytes.
    pub max_entry_size: u64,
    /// The largest sum of all content entries, in bytes.
    pub max_total_size: u64,
    /// The longest entry name, in bytes.
    pub max_path_len: usize,
    /// The largest pax extended header accepted, in bytes.
    pub max_pax_size: u64,
    /// The largest zstd window a frame may ask for, as log2 bytes. Bounds the
    /// decoder's memory whatever the bundle claims.
    pub max_window_log: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_manifest_size: 16 << 20,
            max_signatures: 32,
            max_entries: 200_000,
            max_entry_size: 1 << 40,
            max_total_size: 4 << 40,
            max_path_len: 240,
            max_pax_size: 8 << 10,
            max_window_log: 24,
        }
    }
}
