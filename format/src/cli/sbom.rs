//! `sbom <bundle>` in both programs: the bundle verified in full, as
//! `verify` does (trusted signature, every entry, the SBOM's own rule),
//! then its CycloneDX SBOM (`sbom.cdx.json`) printed byte for byte on
//! stdout, or written to `--out FILE`. Only verified bytes are printed: the
//! entry is kept aside while it streams and handed out once the whole
//! bundle has verified.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::durable::AtomicFile;
use crate::error::FormatError;
use crate::manifest::Entry;
use crate::reader::{ContentSink, VerifiedBundle, VerifyOptions};
use crate::root::TrustBase;
use crate::sbom::SBOM_PATH;
use crate::source::{verify_source_with, BundleSource};
use crate::Sha256Digest;

use super::{bytes_bar, report, Output};

/// The flags of `sbom` beside the bundle and the trust.
#[derive(Debug, Clone, clap::Args)]
pub struct SbomOut {
    /// Write the SBOM to this file (replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Keeps the SBOM entry's bytes as they stream (its size is capped by the
/// manifest's rules); drops everything else.
#[derive(Debug, Default)]
struct SbomSink {
    current: Option<Vec<u8>>,
    sbom: Option<Vec<u8>>,
}

impl ContentSink for SbomSink {
    fn begin(&mut self, e: &Entry) -> io::Result<()> {
        self.current = (e.path == SBOM_PATH).then(Vec::new);
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(b) = self.current.as_mut() {
            b.extend_from_slice(data);
        }
        Ok(())
    }
    fn end(&mut self, _: &Entry) -> io::Result<()> {
        if let Some(b) = self.current.take() {
            self.sbom = Some(b);
        }
        Ok(())
    }
}

/// Verifies `bundle` from `base` and returns it with its SBOM's bytes; a
/// bundle built without an SBOM is refused (check `sbom`).
pub fn verified_sbom(
    bundle: &[PathBuf],
    base: &TrustBase,
    opts: &VerifyOptions,
    out: Output,
) -> Result<(VerifiedBundle, Vec<u8>), FormatError> {
    let src = BundleSource::resolve(bundle)?;
    let pb = bytes_bar(src.size(), "verify", !out.bars());
    let mut root_version = 0;
    let mut sink = SbomSink::default();
    let v = verify_source_with(
        &src,
        &base.store(),
        &mut base.resolver(opts.now, &mut root_version),
        opts,
        &mut sink,
        &mut |n| pb.inc(n),
    )?;
    pb.finish_and_clear();
    match (v.manifest.sbom.as_deref(), sink.sbom) {
        (Some(_), Some(b)) => Ok((v, b)),
        _ => Err(FormatError::Sbom {
            path: SBOM_PATH.into(),
            message: format!(
                "{} {} carries no SBOM (built by a stoa-bundler without SBOMs)",
                v.manifest.release.name, v.manifest.release.version
            ),
        }),
    }
}

/// Prints the SBOM (or writes it to `--out`); with `--json`, a summary on
/// stdout instead, holding the document itself when there is no `--out`.
pub fn print_sbom(
    v: &VerifiedBundle,
    bytes: &[u8],
    args: &SbomOut,
    out: Output,
) -> Result<(), FormatError> {
    let m = &v.manifest;
    if let Some(path) = &args.out {
        write_file(path, bytes)?;
    }
    if out.json {
        let mut doc = serde_json::json!({
            "ok": true,
            "name": m.release.name,
            "version": m.release.version.to_string(),
            "manifest_sha256": v.manifest_sha256.hex(),
            "sbom_sha256": Sha256Digest::of(bytes).hex(),
            "sbom_bytes": bytes.len(),
            "out": args.out,
        });
        if args.out.is_none() {
            doc["sbom"] = serde_json::from_slice(bytes).unwrap_or_default();
        }
        println!("{}", report::to_json(&doc));
    } else if let Some(path) = &args.out {
        println!(
            "wrote the SBOM of {} {} (verified, {} bytes, sha256:{}) to {}",
            m.release.name,
            m.release.version,
            bytes.len(),
            Sha256Digest::of(bytes),
            path.display()
        );
    } else {
        let mut o = io::stdout().lock();
        super::pipe::stdout_written(o.write_all(bytes).and_then(|()| o.flush()));
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    let err = |e: io::Error| FormatError::ExtractTarget {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut f = AtomicFile::create(path).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.commit().map_err(err)
}
