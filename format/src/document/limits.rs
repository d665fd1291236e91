//! Every size cap of the format in one place: the [`Limits`] a reader
//! applies to a bundle (their defaults are in docs/FORMAT.md, "Limits"),
//! and the fixed caps of names, delta chains, trust roots, the parts index
//! and parity. Each rule that checks a cap imports it from here; the old
//! homes (`manifest::MAX_DELTA_CHAIN`, `parts::MAX_PARTS`, …) re-export
//! it. What stays with its parser is not a cap of the format but a bound of
//! that parser's own grammar (the tar size field's 11 octal digits, the SQL
//! lexer's nesting), private to it.

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

/// Longest image name accepted (as the distribution grammar does).
pub const MAX_IMAGE_NAME: usize = 255;

/// At most this many releases in a delta's base chain.
pub const MAX_DELTA_CHAIN: usize = 64;

/// The largest trust root file a reader accepts.
pub const MAX_ROOT_SIZE: u64 = 64 * 1024;
/// At most this many signatures and keys in a trust root, and carried
/// roots in a bundle.
pub const MAX_ROOT_ITEMS: usize = 32;

/// How far a bundle's or a root's `created` may be ahead of the reader's
/// clock (24 hours): beyond it the document is refused, so accepting it can
/// raise a site's clock floor by at most this much past the site's clock.
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The smallest part size: a part under 1 MiB is a usage error.
pub const MIN_PART_SIZE: u64 = 1 << 20;
/// The largest part size a parts index may claim (4 TiB, the default
/// `max_total_size`): read before the index's signature is checked, so it
/// bounds every size computed from it.
pub const MAX_PART_SIZE: u64 = 4 << 40;
/// The largest whole bundle a parts index may claim (MAX_PARTS parts of
/// MAX_PART_SIZE fit in 64 bits; this is far below).
pub const MAX_BUNDLE_SIZE: u64 = 64 << 40;
/// At most this many data parts (and as many parity parts) in one set, so
/// names keep three digits and `cat <bundle>.part[0-9]*` concatenates them
/// in order.
pub const MAX_PARTS: usize = 999;
/// Largest parts index accepted (bytes).
pub const MAX_INDEX_BYTES: u64 = 4 << 20;
/// Largest parity stripe accepted from a parts index (bytes per part per
/// step).
pub const MAX_STRIPE: u64 = 16 << 20;

/// The largest upstream signature (`sha256-<hex>.sig`) manifest accepted,
/// at build and in a bundle (docs/FORMAT.md, *Upstream signatures*).
pub const MAX_SIGNATURE_MANIFEST: u64 = 64 * 1024;
/// The largest simple-signing payload (and `.sig` config blob) accepted.
pub const MAX_SIGNATURE_PAYLOAD: u64 = 64 * 1024;
/// At most this many layers (signatures) in one `.sig` manifest.
pub const MAX_SIGNATURE_LAYERS: usize = 64;
/// At most this many verified signatures recorded per image.
pub const MAX_IMAGE_SIGNATURES: usize = 16;
/// The largest signer public key entry (`signers/<name>.pub`).
pub const MAX_SIGNER_KEY: u64 = 8 * 1024;
