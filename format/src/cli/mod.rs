//! The command-line pieces both programs share (feature `cli`): the trust
//! flags, the `verify` and `inspect` subcommands, progress bars, and the
//! quiet exit on a closed stdout (`pipe`), completions, man pages and the
//! version text (`docs`). Both
//! binaries mount these, so a site and a build host run the very same check
//! and print the very same report.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::FormatError;
use crate::reader::{NullSink, VerifiedBundle, VerifyOptions};
use crate::root::{carried_roots, TrustBase};
use crate::source::{inspect_source, parts_summary, verify_source_with, BundleSource};
use crate::{Limits, TrustStore};

pub mod docs;
pub mod pipe;
pub mod report;
pub mod sbom;

/// The output flags of every subcommand of both programs: global, parsed
/// once by clap in each `main` and handed to the command that runs
/// (ripgrep's habit: arguments parsed once, then passed as values).
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Output {
    /// Print a JSON object on stdout instead of text (an error too).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

impl Output {
    /// Whether progress bars may draw: neither --quiet nor --json.
    pub fn bars(self) -> bool {
        !self.quiet && !self.json
    }
}

/// How a bundle is checked: the flags of verify, extract, plan and apply.
#[derive(Debug, Clone, clap::Args)]
pub struct TrustArgs {
    /// A trusted public key (.pub), a folder of them, or a signed trust
    /// root (root.json; roots the bundle carries extend it).
    #[arg(long, value_name = "PATH")]
    pub trust: PathBuf,
    /// How many distinct trusted keys must have signed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Accept a bundle past its expiry time.
    #[arg(long)]
    pub allow_expired: bool,
}

impl TrustArgs {
    pub fn load(&self) -> Result<(TrustStore, VerifyOptions), FormatError> {
        let (base, opts) = self.base()?;
        Ok((base.store(), opts))
    }

    /// The trust to start from (key folder or signed root) and the options.
    pub fn base(&self) -> Result<(TrustBase, VerifyOptions), FormatError> {
        let opts = VerifyOptions {
            allow_expired: self.allow_expired,
            ..VerifyOptions::default()
        };
        let base = TrustBase::load(&self.trust, self.threshold, opts.now)?;
        Ok((base, opts))
    }
}

/// `verify <bundle> --trust <pub|dir>`
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The bundle file; or its parts: the `.parts.json` index, a folder
    /// holding it, or the part files.
    #[arg(required = true, num_args = 1..)]
    pub bundle: Vec<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `inspect <bundle> [--trust <pub|dir|root.json>]`
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The bundle file; or its parts: the `.parts.json` index, a folder
    /// holding it, or the part files.
    #[arg(required = true, num_args = 1..)]
    pub bundle: Vec<PathBuf>,
    /// Also check the signatures: a trusted public key (.pub), a folder of
    /// them, or a signed trust root (root.json; roots the bundle carries
    /// extend it), as `verify --trust` takes it.
    #[arg(long, value_name = "PATH")]
    pub trust: Option<PathBuf>,
}

/// Opens a bundle file, naming it on failure.
pub fn open_bundle(path: &Path) -> Result<File, FormatError> {
    File::open(path).map_err(|e| FormatError::OpenBundle {
        path: path.to_owned(),
        source: e,
    })
}

/// Runs `verify`: trusted signature, then every entry, streaming; for a
/// part set, the signed index and every part first. Returns the verified
/// bundle and the version of the root its keys came from (0 for a key
/// folder).
pub fn run_verify(args: &VerifyArgs, out: Output) -> Result<(VerifiedBundle, u64), FormatError> {
    let (base, opts) = args.trust.base()?;
    verify_with_base(&args.bundle, &base, &opts, out)
}

/// `verify` from a given trust (the `--trust` flag's, or a site's root in
/// force): the check and the report, in text or JSON.
pub fn verify_with_base(
    bundle: &[PathBuf],
    base: &TrustBase,
    opts: &VerifyOptions,
    out: Output,
) -> Result<(VerifiedBundle, u64), FormatError> {
    let src = BundleSource::resolve(bundle)?;
    let pb = bytes_bar(src.size(), "verify", !out.bars());
    let mut root_version = 0;
    let index_trust = base.store();
    let v = verify_source_with(
        &src,
        &index_trust,
        &mut base.resolver(opts.now, &mut root_version),
        opts,
        &mut NullSink,
        &mut |n| pb.inc(n),
    )?;
    pb.finish_and_clear();
    if out.json {
        let mut doc = report::verified(&v);
        doc.parts = parts_summary(&src);
        println!("{}", report::to_json(&doc));
    } else {
        println!(
            "OK {} {}: {} entries, {} verified, manifest sha256:{}",
            v.manifest.release.name,
            v.manifest.release.version,
            v.manifest.entries.len(),
            report::human_bytes(v.content_bytes),
            v.manifest_sha256
        );
        if let Some(b) = v.file_sha256 {
            println!("bundle sha256:{b}");
        }
        if let Some(b) = v.manifest.base() {
            println!(
                "a delta on {b}: {} omitted entries ({}) are not in it; a site must hold them",
                v.manifest.omitted().len(),
                report::human_bytes(v.manifest.omitted().iter().map(|e| e.size).sum())
            );
        }
        if let BundleSource::Parts(s) = &src {
            println!(
                "{} parts checked against the signed index {} ({} parity part(s) present)",
                s.data_parts(),
                s.index.path.display(),
                s.parity_parts()
            );
        }
        for k in &v.trusted_signers {
            println!("signed by trusted key {k}");
        }
        for s in report::image_signatures(&v.manifest) {
            println!("{}", report::signature_line(&s));
        }
        if root_version > 0 {
            println!("trusted through root version {root_version}");
        }
    }
    Ok((v, root_version))
}

/// Runs `inspect`: the signed manifest's account of the bundle (content is
/// not read; signatures are checked only with `--trust`).
pub fn run_inspect(args: &InspectArgs, out: Output) -> Result<(), FormatError> {
    let src = BundleSource::resolve(&args.bundle)?;
    let size = Some(src.size());
    let i = inspect_source(&src, &Limits::default())?;
    let roots = carried_roots(&i.anchors)?;
    let (trusted, reached) = match &args.trust {
        Some(t) => {
            // the loader verify uses: a key, a key folder or a signed root
            let now = VerifyOptions::default().now;
            let base = TrustBase::load(t, 1, now)?;
            if let BundleSource::Parts(s) = &src {
                s.index.check_signatures(&base.store())?;
            }
            let (store, chain) = base.resolve(&i.anchors, now)?;
            let reached = chain.last().map_or(base.version(), |r| r.version());
            (Some(i.check_signatures(&store)?), Some(reached))
        }
        None => (None, None),
    };
    let mut doc = report::inspection(&i, trusted.as_deref(), size);
    doc.parts = parts_summary(&src);
    doc.roots = i
        .anchors
        .iter()
        .zip(&roots)
        .map(|((e, _), r)| report::RootSummary::of(&e.path, r))
        .collect();
    doc.trusted_through_root = reached;
    if out.json {
        println!("{}", report::to_json(&doc));
    } else {
        print!("{doc}");
        if let BundleSource::Parts(s) = &src {
            println!(
                "parts: {} of {} (+{} parity), index {}",
                s.data_parts(),
                report::human_bytes(s.index.index.part_size),
                s.parity_parts(),
                s.index.path.display()
            );
        }
    }
    Ok(())
}

/// A byte-count bar on stderr when it is a terminal and `quiet` is false;
/// otherwise a hidden bar that costs nothing.
pub fn bytes_bar(total: u64, message: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(message.to_owned());
    pb
}

/// A clap usage error as one line, for the error line and `--json`: clap's
/// first line, and when that line announces a list ("the following required
/// arguments were not provided:") the list too, so the message names every
/// missing flag.
pub fn usage_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim_end);
    let first = lines
        .by_ref()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("usage error")
        .trim_start_matches("error: ")
        .to_owned();
    if !first.ends_with(':') {
        return first;
    }
    let listed: Vec<&str> = lines
        .take_while(|l| l.starts_with(' ') && !l.trim().is_empty())
        .map(str::trim)
        .collect();
    format!("{first} {}", listed.join(", "))
}
