//! One chart through `helm template`, and the images in what it printed
//! (read by `stoa-podimages`, the rule the site's post-renderer uses), plus
//! those its Chart.yaml annotations list.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use stoa_podimages::Origin;

use super::{ChartJob, Field, Found};
use crate::error::{BundlerError, Result};

/// Chart.yaml annotations that list a chart's images (Bitnami's `images`,
/// Artifact Hub's `artifacthub.io/images`): a YAML list of `{name, image}`.
pub const IMAGE_ANNOTATIONS: &[&str] = &["images", "artifacthub.io/images"];

fn render_err(job: &ChartJob, message: impl Into<String>) -> BundlerError {
    BundlerError::Render {
        chart: format!(
            "{} {} (release {})",
            job.chart.name, job.chart.version, job.release
        ),
        message: message.into(),
    }
}

/// Helm's stderr as one line, without its `Error: ` prefix.
fn one_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
        .trim_start_matches("Error: ")
        .to_owned()
}

/// Renders `job` and lists its images (templates, then annotations).
pub fn find(helm: &Path, kube_version: &str, job: &ChartJob) -> Result<Vec<Found>> {
    let mut tgz = tempfile::Builder::new()
        .prefix("stoa-images-")
        .suffix(".tgz")
        .tempfile()
        .map_err(|e| render_err(job, format!("temp file: {e}")))?;
    tgz.write_all(&job.chart.bytes)
        .and_then(|()| tgz.flush())
        .map_err(|e| render_err(job, format!("temp file: {e}")))?;
    let mut cmd = Command::new(helm);
    cmd.arg("template")
        .arg(&job.release)
        .arg(tgz.path())
        .args(["--namespace", &job.namespace])
        .args(["--kube-version", kube_version]);
    for v in &job.values {
        cmd.arg("--values").arg(v);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| render_err(job, format!("run {}: {e}", helm.display())))?;
    if !out.status.success() {
        return Err(render_err(job, one_line(&out.stderr)));
    }
    let text = String::from_utf8(out.stdout)
        .map_err(|_| render_err(job, "helm template printed something not UTF-8"))?;
    let mut found = scan(&text).map_err(|m| render_err(job, m))?;
    found.extend(annotated(job).map_err(|m| render_err(job, m))?);
    Ok(found
        .into_iter()
        .map(|(template, kind, field, path, image)| Found {
            chart: job.chart.name.clone(),
            release: job.release.clone(),
            namespace: job.namespace.clone(),
            template,
            kind,
            field,
            path,
            image,
        })
        .collect())
}

/// template, kind, field, field path, image.
type Hit = (String, String, Field, String, String);

/// The images named by Chart.yaml's image annotations.
fn annotated(job: &ChartJob) -> std::result::Result<Vec<Hit>, String> {
    #[derive(serde::Deserialize)]
    struct Item {
        image: String,
    }
    let mut out = Vec::new();
    for key in IMAGE_ANNOTATIONS {
        let Some(text) = job.chart.annotations.get(*key) else {
            continue;
        };
        let items: Vec<Item> = serde_yaml::from_str(text).map_err(|e| {
            format!("Chart.yaml annotation {key:?} is not a list of {{name, image}}: {e}")
        })?;
        for i in items {
            out.push((
                format!("{}/Chart.yaml", job.chart.name),
                format!("Chart (annotation {key})"),
                Field::Annotation,
                format!("annotations.{key:?}"),
                i.image.trim().to_owned(),
            ));
        }
    }
    Ok(out)
}

/// The images in a `helm template` output, as the site's post-renderer
/// reads them: [`stoa_podimages::list`] (every document parsed and checked,
/// each pod image and env `*_IMAGE` value, under the template its
/// `# Source:` comment names).
pub fn scan(text: &str) -> std::result::Result<Vec<Hit>, String> {
    let listed = stoa_podimages::list(text).map_err(|e| e.to_string())?;
    Ok(listed
        .into_iter()
        .map(|i| {
            let field = match i.origin {
                Origin::Containers => Field::Containers,
                Origin::InitContainers => Field::InitContainers,
                Origin::EphemeralContainers => Field::EphemeralContainers,
                Origin::Env => Field::Env,
                Origin::Referenced => Field::Referenced,
            };
            (
                i.template.unwrap_or_default(),
                i.kind,
                field,
                i.container,
                i.image.trim().to_owned(),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pod_bearing_kind_container_list_and_referenced_image() {
        let text = "---\n# Source: c/templates/a.yaml\napiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n      - name: i\n        image: busybox:1\n      containers:\n      - name: a\n        image: \"a.io/x:1\"\n        env:\n        - name: AGENT_IMAGE\n          value: a.io/agent:2\n---\n# Source: c/templates/cron.yaml\nkind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - image: b.io/y@sha256:0000000000000000000000000000000000000000000000000000000000000000\n---\n# Source: c/templates/pod.yaml\nkind: Pod\nspec:\n  ephemeralContainers:\n  - image: dbg:2\n---\n# Source: c/templates/cm.yaml\nkind: ConfigMap\ndata:\n  image: not-me:1\n";
        let hits = scan(text).unwrap();
        let got: Vec<(&str, &str, Field, &str)> = hits
            .iter()
            .map(|(t, k, f, _, i)| (t.as_str(), k.as_str(), *f, i.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("c/templates/a.yaml", "Deployment", Field::Containers, "a.io/x:1"),
                ("c/templates/a.yaml", "Deployment", Field::Env, "a.io/agent:2"),
                ("c/templates/a.yaml", "Deployment", Field::InitContainers, "busybox:1"),
                (
                    "c/templates/cron.yaml",
                    "CronJob",
                    Field::Containers,
                    "b.io/y@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                ),
                ("c/templates/pod.yaml", "Pod", Field::EphemeralContainers, "dbg:2"),
                ("c/templates/cm.yaml", "ConfigMap", Field::Referenced, "not-me:1"),
            ]
        );
        assert_eq!(hits[1].3, "containers/a/env/AGENT_IMAGE");
        assert_eq!(hits[5].3, "data.image");
    }

    #[test]
    fn invalid_yaml_names_the_template() {
        let e = scan("---\n# Source: c/templates/bad.yaml\nkind: [\nimage: x\n").unwrap_err();
        assert!(
            e.starts_with("read rendered manifests: document 1 (c/templates/bad.yaml): "),
            "{e}"
        );
        // every document is parsed, one that names no image too (the
        // site's post-renderer refuses it as well)
        let e = scan("---\n# Source: c/templates/cm.yaml\nkind: [\n").unwrap_err();
        assert!(e.contains("(c/templates/cm.yaml)"), "{e}");
    }
}
