//! `stoa-bundler build <manifest> --key <file>… --out <bundle>`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stoa_format::cli::Output;

use stoa_format::durable::AtomicFile;
use stoa_format::parts::{self, PartSize, PartsRelease};
use stoa_format::pipe::{self, WriteBehind};
use stoa_format::report::human_bytes;
use stoa_format::root::{anchor_path, SignedRoot};
use stoa_format::{ContentSource, FormatError, Limits, PlannedEntry, SigningKeyPair};

use crate::error::{BundlerError, Result};
use crate::images::{self, CarriedImage, ChartJob};
use crate::plan::{plan, Planned};
use crate::progress::bytes_bar;
use crate::release::LoadedRelease;
use crate::settings::BuildSettings;
use crate::sources::registry::PullStats;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The release manifest (TOML).
    pub manifest: PathBuf,
    /// A signing key (PKCS#8 PEM); repeat for several signatures.
    #[arg(long = "key", value_name = "FILE", required = true)]
    pub keys: Vec<PathBuf>,
    /// Where to write the bundle (written beside it first, renamed at the end).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub pull: super::PullArgs,
    /// Parallel blob downloads.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// A signed trust root to carry (entry `anchors/root-<version>.json`);
    /// repeat for a chain. Sites accept it by their root chain rules, not
    /// by the bundle's signature.
    #[arg(long = "root", value_name = "ROOT.JSON")]
    pub roots: Vec<PathBuf>,
    /// Flush the bundle to disk before reporting success (for writing
    /// straight to removable media). Off by default: a bundle damaged by a
    /// power cut is refused by verify, and a rebuild is the remedy.
    #[arg(long)]
    pub fsync: bool,
    #[command(flatten)]
    pub render: super::images::RenderArgs,
    /// Replace the --out file if it exists (else that is an error).
    #[arg(long)]
    pub force: bool,
    /// Write the bundle as parts of at most this size (`4GiB`, `700MB`,
    /// `4294967295` bytes; at least 1 MiB): `<out>.part001`, … and a signed
    /// index `<out>.parts.json` (+ `.parts.sig`). `cat` of the parts is the
    /// unsplit bundle, byte for byte.
    #[arg(long, value_name = "SIZE")]
    pub split: Option<PartSize>,
    /// With --split: add N Reed–Solomon parity parts `<out>.parity1`, …; any
    /// N lost or damaged parts can be rebuilt (`stoa-updater repair`).
    #[arg(long, value_name = "N", requires = "split", value_parser = clap::value_parser!(u16).range(1..=255))]
    pub parity: Option<u16>,
    /// Build a delta on this release: leave out every entry (image blob,
    /// chart, migration, file) whose digest the base release has; the site
    /// must hold them. A bundle, its parts index or folder, or its
    /// manifest.json; repeat to give the part files one by one.
    #[arg(long = "base", value_name = "BUNDLE|PARTS|MANIFEST")]
    pub base: Vec<PathBuf>,
}

/// What `--base` made of the bundle: the base and what was left out.
struct DeltaInfo {
    base: stoa_format::manifest::BaseRelease,
    chain: usize,
    entries: usize,
    bytes: u64,
}

/// Turns the planned bundle into a delta on the release `--base` names.
fn make_delta(
    args: &Args,
    writer: stoa_format::BundleWriter,
    limits: &Limits,
) -> Result<(stoa_format::BundleWriter, DeltaInfo)> {
    let head = stoa_format::delta::read_release_head(&args.base, limits)?;
    let m = writer.manifest();
    let err = |message: String| BundlerError::DeltaBase {
        base: head.from.clone(),
        message,
    };
    if head.manifest.release.name != m.release.name {
        return Err(err(format!(
            "it is a release of {:?}, this one is {:?}",
            head.manifest.release.name, m.release.name
        )));
    }
    if head.manifest.release.version == m.release.version {
        return Err(err(format!(
            "it is {} {} itself; a delta needs an earlier release",
            m.release.name, m.release.version
        )));
    }
    let chain = head.chain();
    if chain.len() > stoa_format::manifest::MAX_DELTA_CHAIN {
        return Err(err(format!(
            "its chain of deltas is {} long, over {}; build on a full bundle",
            chain.len() - 1,
            stoa_format::manifest::MAX_DELTA_CHAIN - 1
        )));
    }
    let (w, bytes) = writer.into_delta(chain, &head.digests(), limits)?;
    let entries = w.manifest().omitted().len();
    Ok((
        w,
        DeltaInfo {
            base: head.as_base(),
            chain: head.chain().len(),
            entries,
            bytes,
        },
    ))
}

/// The `--root` files, checked (structure, own signatures) and planned as
/// `anchors/root-<version>.json` entries. The newest must trust `keys`
/// (by the readers' own check, [`SignedRoot::check_bundle_signers`]): a
/// site that accepts it would refuse a bundle signed otherwise.
fn carried_roots(paths: &[PathBuf], keys: &[SigningKeyPair]) -> Result<Vec<PlannedEntry>> {
    let mut out: Vec<PlannedEntry> = Vec::new();
    let mut newest: Option<(&PathBuf, SignedRoot)> = None;
    for p in paths {
        let bytes = fs::read(p).map_err(|e| BundlerError::RootFile {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let r = SignedRoot::parse(&bytes)?;
        r.check_own_threshold()?;
        let path = anchor_path(r.version());
        if out.iter().any(|e| e.path == path) {
            return Err(BundlerError::RootFile {
                path: p.clone(),
                message: format!("a second root of version {}", r.version()),
            });
        }
        out.push(PlannedEntry {
            path,
            size: bytes.len() as u64,
            sha256: stoa_format::Sha256Digest::of(&bytes),
            source: ContentSource::Bytes(bytes),
        });
        if newest
            .as_ref()
            .is_none_or(|(_, n)| n.version() < r.version())
        {
            newest = Some((p, r));
        }
    }
    if let Some((p, r)) = newest {
        check_signers(p, &r, keys)?;
    }
    Ok(out)
}

/// Refuses signing keys the root would not trust, naming them and the
/// root version.
fn check_signers(path: &Path, root: &SignedRoot, keys: &[SigningKeyPair]) -> Result<()> {
    let Err(e) = root.check_bundle_signers(keys) else {
        return Ok(());
    };
    let v = root.version();
    let release: Vec<_> = root.release_key_ids().collect();
    let outside: Vec<String> = keys
        .iter()
        .map(SigningKeyPair::id)
        .filter(|id| !release.contains(&id))
        .map(|id| id.short())
        .collect();
    let release: Vec<String> = release.iter().map(|id| id.short()).collect();
    let why = match e {
        FormatError::ThresholdNotMet { valid, required } => format!(
            "{valid} of the signing keys are release keys of root version {v}, its release_threshold is {required}"
        ),
        _ => format!(
            "signing key {} is not a release key of root version {v}",
            outside.join(", ")
        ),
    };
    Err(BundlerError::RootSigners {
        path: path.to_owned(),
        version: v,
        message: format!(
            "{why} (its release keys: {}); every site that accepts this root would refuse the bundle",
            release.join(", ")
        ),
    })
}

/// Every image the charts use (rendered with real Helm) must be carried by
/// the bundle, with the digest a chart pins, or be listed under
/// `[[image_exceptions]]`.
fn check_images(
    release: &LoadedRelease,
    carried: &[stoa_format::manifest::ImageRecord],
    charts: Vec<crate::sources::chart::PackagedChart>,
    render: &super::images::RenderArgs,
) -> Result<()> {
    if charts.is_empty() {
        return Ok(());
    }
    let helm = images::find_helm(render.helm.as_deref())?;
    let jobs = release
        .charts
        .iter()
        .zip(charts)
        .map(|(spec, c)| Ok(ChartJob::new(release, spec, c)));
    let found = images::find_all(&helm, &render.kube_version, jobs)?;
    let have = CarriedImage::from_records(carried);
    let uses = images::classify(found, &have, release);
    match images::refusal(&uses) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// SOURCE_DATE_EPOCH, the reproducible-builds convention, or now.
fn build_time() -> Result<(SystemTime, u64)> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            let secs: u64 = s
                .trim()
                .parse()
                .map_err(|_| BundlerError::SourceDateEpoch(s.clone()))?;
            Ok((UNIX_EPOCH + Duration::from_secs(secs), secs))
        }
        Err(_) => {
            let now = SystemTime::now();
            let secs = now
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Ok((UNIX_EPOCH + Duration::from_secs(secs), secs))
        }
    }
}

pub fn run(args: &Args, output: Output) -> Result<()> {
    if args.keys.is_empty() {
        return Err(BundlerError::NoSigningKey);
    }
    let keys: Vec<SigningKeyPair> = args
        .keys
        .iter()
        .map(|k| SigningKeyPair::load(k))
        .collect::<Result<_, _>>()?;
    if !args.force && fs::symlink_metadata(&args.out).is_ok() {
        return Err(BundlerError::OutputExists {
            path: args.out.clone(),
        });
    }
    // before any pull: a root that would not trust the keys fails fast
    let roots = carried_roots(&args.roots, &keys)?;
    let release = LoadedRelease::load(&args.manifest)?;
    let (created, mtime) = build_time()?;
    let settings = BuildSettings {
        created,
        mtime,
        limits: Limits::default(),
        pull: args.pull.options(usize::from(args.jobs), !output.bars()),
        chart_gzip: crate::sources::chart::BUNDLE_GZIP,
    };
    let Planned {
        writer,
        pulled,
        charts,
        attestations,
    } = plan(&release, &settings)?;
    let extras = crate::sbom::extras(&writer.manifest().charts, &charts, attestations)?;
    check_images(&release, &writer.manifest().images, charts, &args.render)?;
    let writer = writer.add_entries(roots, &settings.limits)?;
    // the SBOM last, of the final entries (a delta keeps it: a reader checks it)
    let sbom = stoa_format::sbom::generate(writer.manifest(), &extras);
    let writer = writer.add_sbom(sbom, &settings.limits)?;
    let (writer, delta) = if args.base.is_empty() {
        (writer, None)
    } else {
        let (w, d) = make_delta(args, writer, &settings.limits)?;
        (w, Some(d))
    };
    let out = &args.out;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| write_error(out, e))?;
    if let Some(size) = args.split {
        write_split(args, output, &dir, size, &writer, &keys)?;
        if let (Some(d), false) = (&delta, output.json) {
            print_delta(d);
        }
        return Ok(());
    }
    let (summary, size, sha) = write_bundle(args, output, &writer, &keys)?;
    if size > parts::FAT32_MAX_FILE {
        eprintln!(
            "stoa-bundler: hint: {} is {}, over FAT32's 4 GiB file limit; use --split 4GiB (or split) for FAT32 media",
            out.display(),
            human_bytes(size)
        );
    }
    print_summary(
        output,
        out,
        writer.manifest(),
        &keys,
        &summary,
        (size, sha),
        pulled,
        delta.as_ref(),
    );
    Ok(())
}

fn write_error(out: &Path, e: std::io::Error) -> BundlerError {
    BundlerError::WriteOutput {
        path: out.to_owned(),
        source: e,
    }
}

/// `--split`: the bundle written as parts (and parity) in `dir` with a
/// signed index, which is printed.
fn write_split(
    args: &Args,
    output: Output,
    dir: &Path,
    size: PartSize,
    writer: &stoa_format::BundleWriter,
    keys: &[SigningKeyPair],
) -> Result<()> {
    let m = writer.manifest();
    let name = parts::file_name(&args.out);
    let pb = bytes_bar(m.content_size(), "build", !output.bars());
    let created = m.release.created.to_string();
    let release = PartsRelease {
        name: m.release.name.clone(),
        version: m.release.version.clone(),
    };
    let (index, ip) = super::split::write_parts(
        dir,
        &name,
        size,
        args.parity.map(usize::from).unwrap_or(0),
        keys,
        args.fsync,
        |w| {
            let (_, summary) = writer.write(w, keys, &mut |n| pb.inc(n))?;
            Ok((release, summary.manifest_sha256))
        },
    )?;
    pb.finish_and_clear();
    super::split::print_parts(output.json, &index, &ip, Some(&created));
    Ok(())
}

/// The bundle written to `--out`: a temp beside it, renamed into place;
/// fsynced (file, folder) only with --fsync. Dropped on an error, the temp
/// goes. Returns the summary, the file's size and its SHA-256 (hashed as it
/// is written, on the writer thread).
fn write_bundle(
    args: &Args,
    output: Output,
    writer: &stoa_format::BundleWriter,
    keys: &[SigningKeyPair],
) -> Result<(stoa_format::WriteSummary, u64, stoa_format::Sha256Digest)> {
    let out = &args.out;
    let werr = |e| write_error(out, e);
    let f = AtomicFile::options()
        .sync(args.fsync)
        .create(out)
        .map_err(werr)?;
    let total = writer.manifest().content_size();
    let pb = bytes_bar(total, "build", !output.bars());
    let sync_every = args.fsync.then_some(64 << 20);
    let hashed = stoa_format::digest::HashingWriter::new(f);
    let out_stream = WriteBehind::new(hashed, pipe::CHUNK, pipe::DEPTH, sync_every);
    let (w, summary) = writer.write(out_stream, keys, &mut |n| pb.inc(n))?;
    pb.finish_and_clear();
    let hashed = w.finish().map_err(werr)?;
    let (sha, size) = hashed.hasher.finish();
    hashed.inner.commit().map_err(werr)?;
    Ok((summary, size, sha))
}

fn print_delta(d: &DeltaInfo) {
    println!(
        "delta on {} {} (manifest sha256:{}{}): {} entries ({}) left out, the site must hold them",
        d.base.name,
        d.base.version,
        d.base.manifest_sha256,
        if d.chain > 1 {
            format!(", a chain of {}", d.chain)
        } else {
            String::new()
        },
        d.entries,
        human_bytes(d.bytes)
    );
}

#[allow(clippy::too_many_arguments)]
fn print_summary(
    output: Output,
    out: &Path,
    m: &stoa_format::BundleManifest,
    keys: &[SigningKeyPair],
    s: &stoa_format::WriteSummary,
    (size, sha): (u64, stoa_format::Sha256Digest),
    pulled: Option<PullStats>,
    delta: Option<&DeltaInfo>,
) {
    let signers: Vec<String> = keys.iter().map(|k| k.id().to_string()).collect();
    if output.json {
        println!(
            "{}",
            serde_json::json!({
                "bundle": out, "name": m.release.name, "version": m.release.version.to_string(),
                "manifest_sha256": s.manifest_sha256.hex(), "signers": signers, "entries": s.entries,
                "content_bytes": s.content_bytes, "stored_raw_bytes": s.raw_bytes, "bundle_bytes": size,
                "bundle_sha256": sha.hex(),
                "pulled": pulled,
                "delta": delta.map(|d| serde_json::json!({
                    "base": {"name": d.base.name, "version": d.base.version.to_string(),
                             "manifest_sha256": d.base.manifest_sha256.hex()},
                    "chain": d.chain, "omitted_entries": d.entries, "omitted_bytes": d.bytes,
                })),
            })
        );
    } else {
        let mut o = std::io::stdout().lock();
        stoa_format::cli::pipe::stdout_written(writeln!(
            o,
            "built {} ({} {}): {} entries, {} content, {} file",
            out.display(),
            m.release.name,
            m.release.version,
            s.entries,
            human_bytes(s.content_bytes),
            human_bytes(size)
        ));
        stoa_format::cli::pipe::stdout_written(writeln!(
            o,
            "manifest sha256:{}",
            s.manifest_sha256
        ));
        stoa_format::cli::pipe::stdout_written(writeln!(o, "bundle sha256:{sha}"));
        drop(o);
        if let Some(d) = delta {
            print_delta(d);
        }
        let mut o = std::io::stdout().lock();
        for k in &signers {
            stoa_format::cli::pipe::stdout_written(writeln!(o, "signed by {k}"));
        }
        if let Some(p) = pulled {
            stoa_format::cli::pipe::stdout_written(writeln!(
                o,
                "pulled {} blobs ({}), {} from the cache, {} manifests fetched, {} retries",
                p.blobs_downloaded,
                human_bytes(p.bytes_downloaded),
                p.blobs_cached,
                p.manifests_fetched,
                p.retries
            ));
        }
    }
}
