//! One chart through `helm template`, and the images in what it printed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_yaml::Value;

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
        .map(|(template, kind, field, image)| Found {
            chart: job.chart.name.clone(),
            release: job.release.clone(),
            namespace: job.namespace.clone(),
            template,
            kind,
            field,
            image,
        })
        .collect())
}

type Hit = (String, String, Field, String);

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
                i.image.trim().to_owned(),
            ));
        }
    }
    Ok(out)
}

/// The images in a `helm template` output: each YAML document, under the
/// template its `# Source:` comment names.
pub fn scan(text: &str) -> std::result::Result<Vec<Hit>, String> {
    let mut out = Vec::new();
    let mut doc = String::new();
    let mut source = String::new();
    let mut flush = |doc: &mut String, source: &str| -> std::result::Result<(), String> {
        // only a document that names an image can hold one: the others
        // (ConfigMaps, RBAC, CRDs) are not parsed
        if doc.contains("image") || doc.contains("_IMAGE") {
            let v: Value = serde_yaml::from_str(doc)
                .map_err(|e| format!("{source}: helm template printed invalid YAML: {e}"))?;
            pod_images(&v, source, &mut out);
        }
        doc.clear();
        Ok(())
    };
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            flush(&mut doc, &source)?;
            source.clear();
            continue;
        }
        if let Some(s) = line.strip_prefix("# Source: ") {
            source = s.trim().to_owned();
        }
        doc.push_str(line);
        doc.push('\n');
    }
    flush(&mut doc, &source)?;
    Ok(out)
}

/// The pod spec of a pod-bearing object.
fn pod_spec(v: &Value) -> Option<(&str, &Value)> {
    let kind = v.get("kind")?.as_str()?;
    let spec = v.get("spec")?;
    let pod = match kind {
        "Pod" => spec,
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => spec.get("template")?.get("spec")?,
        "CronJob" => spec
            .get("jobTemplate")?
            .get("spec")?
            .get("template")?
            .get("spec")?,
        _ => return None,
    };
    Some((kind, pod))
}

fn pod_images(v: &Value, source: &str, out: &mut Vec<Hit>) {
    let Some((kind, pod)) = pod_spec(v) else {
        return;
    };
    for (key, field) in [
        ("containers", Field::Containers),
        ("initContainers", Field::InitContainers),
        ("ephemeralContainers", Field::EphemeralContainers),
    ] {
        for c in pod
            .get(key)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            // an image handed to a controller or injector to start later
            // (Vault's AGENT_INJECT_VAULT_IMAGE): an env var named *_IMAGE
            for e in c
                .get("env")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let name = e.get("name").and_then(Value::as_str).unwrap_or("");
                if let (true, Some(v)) = (
                    name.ends_with("_IMAGE"),
                    e.get("value").and_then(Value::as_str),
                ) {
                    out.push((
                        source.to_owned(),
                        kind.to_owned(),
                        Field::Env,
                        v.trim().to_owned(),
                    ));
                }
            }
            if let Some(img) = c.get("image") {
                let image = match img {
                    Value::String(s) => s.trim().to_owned(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                out.push((source.to_owned(), kind.to_owned(), field, image));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pod_bearing_kind_and_container_list() {
        let text = "---\n# Source: c/templates/a.yaml\napiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n      - name: i\n        image: busybox:1\n      containers:\n      - name: a\n        image: \"a.io/x:1\"\n        env:\n        - name: AGENT_IMAGE\n          value: a.io/agent:2\n---\n# Source: c/templates/cron.yaml\nkind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - image: b.io/y@sha256:0000000000000000000000000000000000000000000000000000000000000000\n---\n# Source: c/templates/pod.yaml\nkind: Pod\nspec:\n  ephemeralContainers:\n  - image: dbg:2\n---\n# Source: c/templates/cm.yaml\nkind: ConfigMap\ndata:\n  image: not-me:1\n";
        let hits = scan(text).unwrap();
        let got: Vec<(&str, &str, Field, &str)> = hits
            .iter()
            .map(|(t, k, f, i)| (t.as_str(), k.as_str(), *f, i.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("c/templates/a.yaml", "Deployment", Field::Env, "a.io/agent:2"),
                ("c/templates/a.yaml", "Deployment", Field::Containers, "a.io/x:1"),
                ("c/templates/a.yaml", "Deployment", Field::InitContainers, "busybox:1"),
                (
                    "c/templates/cron.yaml",
                    "CronJob",
                    Field::Containers,
                    "b.io/y@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                ),
                ("c/templates/pod.yaml", "Pod", Field::EphemeralContainers, "dbg:2"),
            ]
        );
    }

    #[test]
    fn invalid_yaml_names_the_template() {
        let e = scan("---\n# Source: c/templates/bad.yaml\nkind: [\nimage: x\n").unwrap_err();
        assert!(e.starts_with("c/templates/bad.yaml: "), "{e}");
        // a document that names no image is not parsed (it cannot hold one)
        let none = scan("---\n# Source: c/templates/cm.yaml\nkind: [\n").unwrap();
        assert!(none.is_empty());
    }
}
