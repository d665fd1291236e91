//! `stoa-bundler split <bundle> --size <size> --key <file>…`: cuts an
//! existing bundle into media-sized parts with a signed parts index (and
//! `--parity N` Reed–Solomon parity parts). `build --split` uses the same
//! code while it writes. `cat <bundle>.part[0-9]* > <bundle>` gives back the
//! identical file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use stoa_format::cli::Output;

use stoa_format::parts::{self, PartSize, PartWriter, PartsIndex, PartsRelease, SealInfo};
use stoa_format::pipe::{self, WriteBehind};
use stoa_format::reader::inspect;
use stoa_format::report::human_bytes;
use stoa_format::{Limits, SigningKeyPair, TrustStore};

use crate::error::{BundlerError, Result};
use crate::progress::bytes_bar;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle to split.
    pub bundle: PathBuf,
    /// Largest part: `4GiB`, `700MB`, `4294967295` (bytes); at least 1 MiB.
    #[arg(long, value_name = "SIZE")]
    pub size: PartSize,
    /// Reed–Solomon parity parts to add: any N lost or damaged parts can be
    /// rebuilt (`stoa-updater repair`).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=255))]
    pub parity: u16,
    /// A release signing key (PKCS#8 PEM) that signed the bundle; repeat for
    /// several signatures. The index is signed with the same keys.
    #[arg(long = "key", value_name = "FILE", required = true)]
    pub keys: Vec<PathBuf>,
    /// Where to write the parts (default: beside the bundle).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Streams `input` into parts in `dir`, then seals them (parity, rename,
/// signed index). `release`/`manifest_sha256` come from the bundle.
#[allow(clippy::too_many_arguments)]
pub fn write_parts<F>(
    dir: &Path,
    bundle_name: &str,
    size: PartSize,
    parity: usize,
    keys: &[SigningKeyPair],
    fsync: bool,
    produce: F,
) -> Result<(PartsIndex, PathBuf)>
where
    F: FnOnce(&mut WriteBehind<PartWriter>) -> Result<(PartsRelease, stoa_format::Sha256Digest)>,
{
    let werr = |e| BundlerError::WriteOutput {
        path: dir.join(parts::part_name(bundle_name, 1)),
        source: e,
    };
    let res = (|| {
        let pw = PartWriter::new(dir, bundle_name, size, fsync);
        let sync_every = fsync.then_some(64 << 20);
        let mut w = WriteBehind::new(pw, pipe::CHUNK, pipe::DEPTH, sync_every);
        let (release, manifest_sha256) = produce(&mut w)?;
        let pw = w.finish().map_err(werr)?;
        let mut written = pw.finish().map_err(werr)?;
        let info = SealInfo {
            release,
            manifest_sha256,
            part_size: size,
            parity,
            sync: fsync,
        };
        parts::seal(&mut written, bundle_name, &info, keys).map_err(werr)
    })();
    if res.is_err() {
        parts::remove_partials(dir, bundle_name);
    }
    res
}

pub fn run(args: &Args, out: Output) -> Result<()> {
    let keys: Vec<SigningKeyPair> = args
        .keys
        .iter()
        .map(|k| SigningKeyPair::load(k))
        .collect::<Result<_, _>>()?;
    let open = || {
        File::open(&args.bundle).map_err(|e| stoa_format::FormatError::OpenBundle {
            path: args.bundle.clone(),
            source: e,
        })
    };
    // the index vouches for these bytes: the bundle must be signed by the keys
    let head = inspect(open()?, &Limits::default())?;
    head.check_signatures(&TrustStore::from_keys(
        keys.iter().map(|k| k.verifying_key()),
    ))?;
    let m = &head.manifest;
    let name = parts::file_name(&args.bundle);
    let dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| parts::beside(&args.bundle, "."));
    std::fs::create_dir_all(&dir).map_err(|e| BundlerError::WriteOutput {
        path: dir.clone(),
        source: e,
    })?;
    let mut f = open()?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let pb = bytes_bar(total, "split", !out.bars());
    let release = PartsRelease {
        name: m.release.name.clone(),
        version: m.release.version.clone(),
    };
    let sha = head.manifest_sha256;
    let (index, ip) = write_parts(
        &dir,
        &name,
        args.size,
        usize::from(args.parity),
        &keys,
        false,
        |w| {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = std::io::Read::read(&mut f, &mut buf)
                    .map_err(stoa_format::FormatError::ReadBundle)?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n])
                    .map_err(|e| BundlerError::WriteOutput {
                        path: dir.clone(),
                        source: e,
                    })?;
                pb.inc(n as u64);
            }
            Ok((release, sha))
        },
    )?;
    pb.finish_and_clear();
    print_parts(out.json, &index, &ip, None);
    Ok(())
}

/// The parts summary (text or JSON), shared with `build --split`.
/// `built` is the new bundle's `created` when `build --split` made it (the
/// operator must see that it is a new build, not the bundle QA tested).
pub fn print_parts(json: bool, index: &PartsIndex, ip: &Path, built: Option<&str>) {
    let parity = index.parity.as_ref().map(|p| p.parts.len()).unwrap_or(0);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "index": ip, "bundle": index.bundle.name, "bundle_bytes": index.bundle.size,
                "bundle_sha256": index.bundle.sha256.hex(), "manifest_sha256": index.manifest_sha256.hex(),
                "built": built.is_some(), "created": built,
                "part_size": index.part_size,
                "parts": index.parts.iter().map(|p| serde_json::json!({"name": p.name, "size": p.size, "sha256": p.sha256.hex()})).collect::<Vec<_>>(),
                "parity": index.parity.as_ref().map(|p| p.parts.iter().map(|x| x.name.clone()).collect::<Vec<_>>()),
            })
        );
    } else {
        if let Some(created) = built {
            println!(
                "built a new bundle {} ({} {}, created {created}): sha256:{}, manifest sha256:{} (to carry a bundle already tested, split that file with `stoa-bundler split`)",
                ip.with_file_name(&index.bundle.name).display(),
                index.release.name,
                index.release.version,
                index.bundle.sha256,
                index.manifest_sha256
            );
        }
        println!(
            "split {} ({}) into {} part(s) of at most {}{}; signed index {}",
            index.bundle.name,
            human_bytes(index.bundle.size),
            index.parts.len(),
            human_bytes(index.part_size),
            if parity > 0 {
                format!(" + {parity} parity part(s)")
            } else {
                String::new()
            },
            ip.display()
        );
        println!("bundle sha256:{}", index.bundle.sha256);
        println!("manifest sha256:{}", index.manifest_sha256);
    }
}
