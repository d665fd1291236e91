//! `stoa-bundler images <release.toml> [--json]`: every image the release's
//! charts will run, found by rendering each chart with the build host's
//! real Helm, and whether the release carries it.

use std::io::Write;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;
use stoa_format::cli::Output;

use serde::Serialize;
use stoa_format::Limits;

use crate::error::Result;
use crate::images::{self, CarriedImage, ChartJob, ImageUse};
use crate::plan::resolve_chart;
use crate::release::{Chart, ChartSource, LoadedRelease};
use crate::settings::BuildSettings;
use crate::sources::registry::slot::PullSlot;

/// Where Helm is and what it renders for; shared with `build`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// The Helm to render charts with (else $STOA_HELM, else `helm` on
    /// PATH).
    #[arg(long, value_name = "PATH")]
    pub helm: Option<PathBuf>,
    /// The Kubernetes version charts are rendered for (`helm template
    /// --kube-version`).
    #[arg(long, value_name = "VERSION", default_value = images::DEFAULT_KUBE_VERSION, value_parser = images::check_kube_version)]
    pub kube_version: String,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The release manifest (TOML).
    pub manifest: PathBuf,
    #[command(flatten)]
    pub render: RenderArgs,
    #[command(flatten)]
    pub pull: super::PullArgs,
}

/// The `--json` report.
#[derive(Debug, Serialize)]
struct Report<'a> {
    ok: bool,
    release: &'a str,
    version: &'a str,
    kube_version: &'a str,
    helm: String,
    images: &'a [ImageUse],
    /// Uses `build` would refuse.
    refused: usize,
}

/// Whether resolving `chart` may pull: an OCI or repository chart, or a
/// chart folder whose Chart.yaml lists dependencies (vendored or not; a
/// guess that only decides when the puller is made).
fn may_pull(rel: &LoadedRelease, chart: &Chart) -> bool {
    match &chart.source {
        ChartSource::Oci { .. } | ChartSource::Repo { .. } => true,
        ChartSource::Path(p) => std::fs::read_to_string(rel.resolve(p).join("Chart.yaml"))
            .map(|t| t.lines().any(|l| l.starts_with("dependencies:")))
            .unwrap_or(false),
    }
}

pub fn run(args: &Args, out: Output) -> Result<()> {
    let rel = LoadedRelease::load(&args.manifest)?;
    let settings = BuildSettings {
        created: UNIX_EPOCH,
        mtime: 0,
        limits: Limits::default(),
        pull: args.pull.options(4, true),
        // the archives only go to `helm template`: not compressed (deflate
        // was half of our own CPU)
        chart_gzip: flate2::Compression::none(),
    };
    // a chart that is pulled or has dependencies needs the puller: start
    // making it now, while the first charts are packaged
    let mut pull = if rel.charts.iter().any(|c| may_pull(&rel, c)) {
        PullSlot::start(&settings.pull)
    } else {
        PullSlot::default()
    };
    let (helm, uses) = if rel.charts.is_empty() {
        (None, Vec::new())
    } else {
        let helm = images::find_helm(args.render.helm.as_deref())?;
        // each chart renders as soon as it is resolved
        let jobs = rel.charts.iter().map(|spec| {
            resolve_chart(&rel, spec, &settings, &mut pull).map(|c| ChartJob::new(&rel, spec, c))
        });
        let found = images::find_all(&helm, &args.render.kube_version, jobs)?;
        let have = CarriedImage::from_release(&rel);
        (Some(helm), images::classify(found, &have, &rel))
    };
    let refused = uses.iter().filter(|u| u.carried.refused()).count();
    let version = rel.release.version.to_string();
    if out.json {
        let r = Report {
            ok: true,
            release: rel.release.name.as_str(),
            version: &version,
            kube_version: &args.render.kube_version,
            helm: helm.map(|h| h.display().to_string()).unwrap_or_default(),
            images: &uses,
            refused,
        };
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
        return Ok(());
    }
    let mut o = std::io::stdout().lock();
    let mut last: Option<(&str, &str)> = None;
    for u in &uses {
        let f = &u.found;
        if last != Some((f.namespace.as_str(), f.release.as_str())) {
            stoa_format::cli::pipe::stdout_written(writeln!(
                o,
                "chart {} (release {}/{})",
                f.chart, f.namespace, f.release
            ));
            last = Some((f.namespace.as_str(), f.release.as_str()));
        }
        let status = match &u.carried {
            images::Carried::Yes { by } => format!("carried ({by})"),
            images::Carried::Exception { reason } => format!("not carried: exception ({reason})"),
            images::Carried::Missing => "NOT CARRIED".to_owned(),
            images::Carried::DigestMismatch { by, has } => {
                format!("DIGEST DIFFERS: the release's {by} is {has}")
            }
            images::Carried::Invalid { message } => format!("INVALID REFERENCE: {message}"),
        };
        stoa_format::cli::pipe::stdout_written(writeln!(
            o,
            "  {}  {} {} {:?} {}  {status}",
            f.image,
            f.template,
            f.kind,
            f.field,
            stoa_format::text::escape(&f.path)
        ));
    }
    stoa_format::cli::pipe::stdout_written(writeln!(
        o,
        "{} image uses in {} charts; {refused} would be refused by build",
        uses.len(),
        rel.charts.len()
    ));
    Ok(())
}
