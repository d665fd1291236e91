//! Every image served from the site registry: the Helm post-renderer the
//! updater provides (docs/OPERATIONS.md, *Images from the site registry*).
//!
//! Helm renders a chart, hands the manifests to the post-renderer, and
//! applies what comes back. Ours is `stoa-updater post-render --map <file>`
//! (hidden subcommand): it rewrites every pod image to the site registry,
//! pinned to the digest the bundle verified
//! ([`stoa_podimages`], the same rule the build checks with), and fails naming any image the bundle does
//! not carry. The map file (`images.json`: site registry, prefix, the
//! bundle's images and digests; never a secret) is written 0600 in a folder
//! named after its content.
//!
//! - Helm 3 takes an executable: `--post-renderer <stoa-updater>
//!   --post-renderer-args=post-render …`. It does not pass hook manifests
//!   to it: [`render_chart`] finds the hook images that would leave the site
//!   registry, and `plan` / `apply` refuse them unless the operator accepts
//!   (`--accept-hook-images`).
//! - Helm 4 takes only a post-renderer plugin: a `plugin.yaml`
//!   (`type: postrenderer/v1`, `runtime: subprocess`) placed directly in a
//!   `$HELM_PLUGINS` folder the updater owns (`helm plugin install` is not
//!   used: Helm 4.2.3's left the folder empty). Helm 4 passes hooks too.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use stoa_format::manifest::BundleManifest;
use stoa_format::Sha256Digest;
use stoa_podimages::{self as podimages, PodImage, PodImagesError, SiteImage, SiteImages};

use crate::config::SiteConfig;
use crate::error::{Result, UpdaterError};
use crate::helm::Helm;
/// How Helm is told to use the post-renderer (a Helm argument set, in `crate::helm`).
pub use crate::helm::PostRender;

/// The plugin's name (and folder) for Helm 4.
pub const PLUGIN_NAME: &str = "stoa-post-render";

/// Largest rendered input the post-renderer reads (Helm's own release limit
/// is far below).
const MAX_INPUT: u64 = 256 << 20;

/// What a Helm run needs to set the post-renderer up: where its files go
/// and the images it serves (the Helm version picks the mode).
#[derive(Debug, Clone)]
pub struct PostRenderSetup {
    pub base: PathBuf,
    pub images: SiteImages,
}

/// The hidden subcommand Helm runs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image map (written by the updater in its state folder).
    #[arg(long, value_name = "FILE")]
    pub map: PathBuf,
}

/// Where the bundle's images are on site.
pub fn site_images(cfg: &SiteConfig, m: &BundleManifest) -> Result<SiteImages> {
    let (registry, prefix, layout) = match &cfg.registry {
        Some(r) => {
            let host_prefix = crate::registry::site_registry_ref(r);
            let host = host_prefix.split('/').next().unwrap_or("").to_owned();
            (host, r.prefix.clone(), r.layout)
        }
        None if m.images.is_empty() => Default::default(),
        None => {
            return Err(UpdaterError::MissingSection {
                section: "registry".into(),
            })
        }
    };
    Ok(SiteImages {
        registry,
        prefix,
        layout,
        images: m
            .images
            .iter()
            .map(|i| SiteImage {
                name: i.name.clone(),
                digest: i.digest.to_string(),
            })
            .collect(),
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| UpdaterError::io("write post-renderer file", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| UpdaterError::io("write post-renderer file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| UpdaterError::io("write post-renderer file", path, e))
}

fn private_dir(d: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
        .map_err(|e| UpdaterError::io("create folder", d, e))
}

/// Writes the map (and, for Helm 4, the plugin) under `base/<content
/// digest>/` and returns the Helm arguments that use it.
pub fn prepare(base: &Path, images: &SiteImages, helm_major: u32) -> Result<PostRender> {
    let json = serde_json::to_vec_pretty(images).map_err(|e| UpdaterError::Helm {
        release: "-".into(),
        step: "post-render map".into(),
        reason: e.to_string(),
    })?;
    let exe = std::env::current_exe()
        .map_err(|e| UpdaterError::io("find the updater's own path", "/proc/self/exe", e))?;
    let id = Sha256Digest::of(&[json.as_slice(), exe.as_os_str().as_encoded_bytes()].concat())
        .hex()[..16]
        .to_owned();
    let dir = base.join(&id);
    private_dir(&dir)?;
    // older maps (other releases, an updater since moved) are of no use:
    // only the lock holder (apply) writes under state_dir, plan uses its own
    // temp folder
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            if e.file_name() != id.as_str() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let map = dir.join("images.json");
    write_private(&map, &json)?;
    if helm_major >= 4 {
        let plugins = dir.join("plugins");
        let pdir = plugins.join(PLUGIN_NAME);
        private_dir(&pdir)?;
        // JSON strings are YAML strings: paths with any character stay exact
        let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        let yaml = format!(
            "apiVersion: v1\ntype: postrenderer/v1\nname: {PLUGIN_NAME}\nversion: 1.0.0\n\
             runtime: subprocess\nruntimeConfig:\n  platformCommand:\n  - command: {}\n    \
             args: [\"post-render\", \"--map\", {}]\n",
            q(&exe.to_string_lossy()),
            q(&map.to_string_lossy())
        );
        write_private(&pdir.join("plugin.yaml"), yaml.as_bytes())?;
        Ok(PostRender {
            args: vec!["--post-renderer".into(), PLUGIN_NAME.into()],
            env: vec![("HELM_PLUGINS".into(), plugins)],
        })
    } else {
        let mut a = OsString::from("--post-renderer-args=");
        a.push(map.as_os_str());
        Ok(PostRender {
            args: vec![
                "--post-renderer".into(),
                exe.into_os_string(),
                "--post-renderer-args=post-render".into(),
                "--post-renderer-args=--map".into(),
                a,
            ],
            env: Vec::new(),
        })
    }
}

/// `stoa-updater post-render --map F`: rendered manifests on stdin, the
/// rewritten ones on stdout; one error line on stderr otherwise.
pub fn run(args: &Args) -> Result<()> {
    let text = std::fs::read(&args.map)
        .map_err(|e| UpdaterError::io("read post-renderer map", &args.map, e))?;
    let images: SiteImages = serde_json::from_slice(&text).map_err(|e| UpdaterError::Config {
        path: args.map.clone(),
        reason: format!("not a post-renderer map: {e}"),
    })?;
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut input)
        .map_err(|e| UpdaterError::io("read rendered manifests", "stdin", e))?;
    if input.len() as u64 > MAX_INPUT {
        return Err(PodImagesError::RenderedYaml {
            document: 0,
            template: "stdin".into(),
            reason: format!("over {MAX_INPUT} bytes"),
        }
        .into());
    }
    let input = String::from_utf8(input).map_err(|e| PodImagesError::RenderedYaml {
        document: 0,
        template: "stdin".into(),
        reason: format!("not UTF-8: {e}"),
    })?;
    let out = podimages::rewrite(&input, &|i| images.resolve(i))?;
    let mut so = std::io::stdout().lock();
    so.write_all(out.text.as_bytes())
        .and_then(|()| so.flush())
        .map_err(|e| UpdaterError::io("write rewritten manifests", "stdout", e))
}

/// One chart rendered through the post-renderer, as `plan` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedChart {
    pub release: String,
    pub namespace: String,
    pub chart: String,
    /// Every pod image after rewriting (hooks included, as Helm rendered them).
    pub images: Vec<PodImage>,
    /// Hook images Helm 3 does not pass to the post-renderer and that are
    /// not site-registry names: they would be pulled from elsewhere.
    pub hook_images_outside: Vec<PodImage>,
    /// The final manifests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifests: Option<String>,
}

/// Renders one chart with `helm template` and the post-renderer.
pub fn render_chart(
    helm: &Helm,
    c: &stoa_format::manifest::ChartRecord,
    chart: &Path,
    values: &[PathBuf],
    pr: &PostRender,
    images: &SiteImages,
    registry_value: Option<&str>,
) -> Result<(RenderedChart, String)> {
    let text = helm.template(&c.release, &c.namespace, chart, values, pr, registry_value)?;
    let listed = podimages::list(&text).map_err(|e| UpdaterError::Helm {
        release: c.release.clone(),
        step: "render".into(),
        reason: e.to_string(),
    })?;
    let outside = listed
        .iter()
        .filter(|i| {
            // test hooks run only under `helm test`, never on apply
            let runs = i
                .hook
                .as_deref()
                .is_some_and(|h| h.split(',').any(|t| !t.trim().starts_with("test")));
            runs && !images.is_site(&i.image)
        })
        .cloned()
        .collect();
    Ok((
        RenderedChart {
            release: c.release.clone(),
            namespace: c.namespace.clone(),
            chart: format!("{}-{}", c.name, c.version),
            images: listed,
            hook_images_outside: outside,
            manifests: None,
        },
        text,
    ))
}

/// The refusal for hook images outside the site registry (Helm 3).
pub fn hook_refusal(charts: &[RenderedChart]) -> Option<UpdaterError> {
    let named: Vec<String> = charts
        .iter()
        .flat_map(|c| {
            c.hook_images_outside.iter().map(move |i| {
                format!(
                    "{}/{} hook {} ({}) image {}",
                    c.namespace,
                    c.release,
                    i.describe(),
                    i.hook.as_deref().unwrap_or(""),
                    i.image
                )
            })
        })
        .collect();
    (!named.is_empty()).then(|| {
        UpdaterError::Refused(format!(
            "Helm 3 does not pass hook manifests to the post-renderer, so {} hook image(s) would not come from the site registry: {}; set them through the chart's values, use Helm 4, or pass --accept-hook-images (docs/OPERATIONS.md, Images from the site registry)",
            named.len(),
            named.join("; ")
        ))
    })
}

/// Before any change on site: every chart renders, every pod image is one
/// the site registry serves, and (Helm 3) no hook image would leave it
/// unless accepted. `charts_dir` holds the staged `.tgz` files; the
/// vendor values files are the staged entries in the store (`sd`).
pub fn preflight(
    cfg: &SiteConfig,
    sd: &crate::state::StateDir,
    m: &BundleManifest,
    charts_dir: &Path,
    accept_hook_images: bool,
) -> Result<()> {
    if m.charts.is_empty() {
        return Ok(());
    }
    let hc = cfg.helm.as_ref().ok_or(UpdaterError::MissingSection {
        section: "helm".into(),
    })?;
    let helm = Helm::new(hc)?;
    let images = site_images(cfg, m)?;
    let pr = prepare(&cfg.state_dir.join("post-render"), &images, helm.major)?;
    let reg = registry_value(cfg);
    let mut rendered = Vec::new();
    for c in &m.charts {
        let chart = charts_dir.join(crate::stage::chart_file_name(c));
        let values = c
            .values
            .iter()
            .map(|v| crate::stage::entry_blob(sd, m, &v.path))
            .collect::<Result<Vec<_>>>()?;
        rendered.push(render_chart(&helm, c, &chart, &values, &pr, &images, reg.as_deref())?.0);
    }
    if helm.major < 4 && !accept_hook_images {
        if let Some(e) = hook_refusal(&rendered) {
            return Err(e);
        }
    }
    Ok(())
}

/// `--set <image_registry_value>=<site registry>`, only when the site config
/// names such a value (the post-renderer rewrites images without it).
pub fn registry_value(cfg: &SiteConfig) -> Option<String> {
    let v = cfg.helm.as_ref()?.image_registry_value.as_ref()?;
    let r = cfg.registry.as_ref()?;
    Some(format!("{v}={}", crate::registry::site_registry_ref(r)))
}

/// Keeps the chart archives and vendor values of a bundle being verified
/// (for `plan`, which stages nothing): every `charts/….tgz` entry as
/// `dir/<sha256>.tgz`, every `values/…` entry as `dir/<sha256>.yaml`, and
/// this host's carried `helm` and `kubectl` as `dir/<sha256>.tool`. The
/// manifest's chart list is not known before verification; a chart used
/// afterwards is one the verification accepted.
#[derive(Debug)]
pub struct ChartSink {
    dir: PathBuf,
    file: Option<std::fs::File>,
}

impl ChartSink {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, file: None }
    }

    /// Where a chart's archive was kept. A delta omits a chart its base
    /// carried: it is the site's store blob (`plan` checked the store holds
    /// every omitted entry, re-hashed, before rendering), copied here.
    pub fn chart(
        &self,
        m: &BundleManifest,
        c: &stoa_format::manifest::ChartRecord,
        sd: &crate::state::StateDir,
    ) -> Result<PathBuf> {
        let Some(e) = m.listed(&c.path) else {
            return Err(UpdaterError::io(
                "find chart",
                &c.path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not in the manifest"),
            ));
        };
        let hex = e.sha256.hex();
        let p = self.dir.join(format!("{hex}.tgz"));
        if m.entry(&c.path).is_none() && !p.is_file() {
            let blob = sd.blob(&hex);
            std::fs::copy(&blob, &p)
                .map_err(|e| UpdaterError::io("copy chart from the store", &blob, e))?;
        }
        Ok(p)
    }

    /// Where a chart's vendor values files were kept, in order (a delta's
    /// omitted ones copied from the store, as for [`ChartSink::chart`]).
    pub fn values(
        &self,
        m: &BundleManifest,
        c: &stoa_format::manifest::ChartRecord,
        sd: &crate::state::StateDir,
    ) -> Result<Vec<PathBuf>> {
        c.values
            .iter()
            .map(|v| {
                let hex = v.sha256.hex();
                let p = self.dir.join(format!("{hex}.yaml"));
                if m.entry(&v.path).is_none() && !p.is_file() {
                    let blob = sd.blob(&hex);
                    std::fs::copy(&blob, &p)
                        .map_err(|e| UpdaterError::io("copy values from the store", &blob, e))?;
                }
                Ok(p)
            })
            .collect()
    }
}

/// `tools/<this host's platform>/{helm,kubectl}`.
fn is_runnable_tool(path: &str) -> bool {
    stoa_format::tools::host_platform().is_some_and(|p| {
        ["helm", "kubectl"]
            .iter()
            .any(|n| path == stoa_format::tools::tool_entry_path(p.name, n))
    })
}

impl stoa_format::ContentSink for ChartSink {
    fn begin(&mut self, entry: &stoa_format::manifest::Entry) -> std::io::Result<()> {
        self.file = None;
        if entry.path.starts_with("charts/") && entry.path.ends_with(".tgz") {
            let p = self.dir.join(format!("{}.tgz", entry.sha256.hex()));
            self.file = Some(std::fs::File::create(p)?);
        } else if entry.path.starts_with("values/") {
            let p = self.dir.join(format!("{}.yaml", entry.sha256.hex()));
            self.file = Some(std::fs::File::create(p)?);
        } else if is_runnable_tool(&entry.path) {
            // a `"bundled"` Helm or kubectl (crate::bundled) for this host
            let p = self.dir.join(format!("{}.tool", entry.sha256.hex()));
            self.file = Some(std::fs::File::create(p)?);
        }
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(data),
            None => Ok(()),
        }
    }
    fn end(&mut self, _: &stoa_format::manifest::Entry) -> std::io::Result<()> {
        self.file = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn images() -> SiteImages {
        SiteImages {
            registry: "127.0.0.1:5000".into(),
            prefix: "site".into(),
            layout: stoa_podimages::Layout::Prefix,
            images: vec![SiteImage {
                name: stoa_format::names::ImageRef::parse("busybox:1").unwrap(),
                digest: format!("sha256:{}", "1".repeat(64)),
            }],
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn helm_3_gets_the_executable_and_helm_4_a_plugin_folder_both_private() {
        let base =
            std::env::temp_dir().join(format!("stoa-postrender-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let p3 = prepare(&base, &images(), 3).unwrap();
        assert_eq!(p3.args[0], "--post-renderer");
        assert_eq!(p3.args[2], "--post-renderer-args=post-render");
        assert_eq!(p3.args[3], "--post-renderer-args=--map");
        let map = PathBuf::from(
            p3.args[4]
                .to_str()
                .unwrap()
                .trim_start_matches("--post-renderer-args="),
        );
        assert!(p3.env.is_empty());
        assert_eq!(mode(&map), 0o600);
        assert_eq!(mode(map.parent().unwrap()), 0o700);
        let back: SiteImages = serde_json::from_slice(&std::fs::read(&map).unwrap()).unwrap();
        assert_eq!(back.images.len(), 1);
        assert!(!std::fs::read_to_string(&map).unwrap().contains("password"));

        let p4 = prepare(&base, &images(), 4).unwrap();
        assert_eq!(p4.args, ["--post-renderer", PLUGIN_NAME]);
        let (k, plugins) = &p4.env[0];
        assert_eq!(k, "HELM_PLUGINS");
        let y = plugins.join(PLUGIN_NAME).join("plugin.yaml");
        assert_eq!(mode(&y), 0o600);
        let text = std::fs::read_to_string(&y).unwrap();
        for want in [
            "apiVersion: v1\n",
            "type: postrenderer/v1\n",
            "runtime: subprocess\n",
            "platformCommand:",
            "args: [\"post-render\", \"--map\", ",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        // the same content twice: the same folder, rewritten in place
        let again = prepare(&base, &images(), 4).unwrap();
        assert_eq!(again.env, p4.env);
        // another map replaces the older one's folder
        let mut other = images();
        other.prefix = "other".into();
        let p = prepare(&base, &other, 3).unwrap();
        assert!(!map.exists(), "the older map was removed");
        assert_eq!(std::fs::read_dir(&base).unwrap().count(), 1, "{p:?}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
