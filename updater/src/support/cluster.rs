//! The support bundle's cluster collectors: per Helm release of the
//! installed and pending releases, `helm status`, `history`, `get values`
//! and `get manifest`; per namespace, `kubectl get events` and `get pods`,
//! and for each pod not Ready its `describe` and the last 200 lines of each
//! container's log. Kubernetes Secrets are never asked for.
//!
//! Everything runs through [`super::collect::tool_text`] (the tool
//! launcher, under the collector's deadline), with `--kubeconfig` from
//! `[helm]`, never `KUBECONFIG` from the environment.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use super::collect::{tool_text, Collector, Ctx, Got, Item};
use crate::config::HelmConfig;
use crate::state::StateDir;

/// The last lines of each container's log kept.
pub const LOG_LINES: &str = "200";

/// The `(release, namespace)` of every chart of the installed and the
/// pending release: from their records and their staged manifests.
pub fn charts(sd: &StateDir) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let Ok(st) = sd.load() else {
        return out;
    };
    let mut versions = Vec::new();
    if let Some(r) = st.releases.last() {
        out.extend(
            r.helm
                .iter()
                .map(|h| (h.release.clone(), h.namespace.clone())),
        );
        versions.push(r.version.clone());
    }
    if let Some(p) = &st.pending {
        out.extend(
            p.record
                .helm
                .iter()
                .map(|h| (h.release.clone(), h.namespace.clone())),
        );
        versions.extend(p.to.clone());
    }
    for v in versions {
        if let Ok(m) = crate::stage::load_release(sd, &v) {
            out.extend(
                m.charts
                    .iter()
                    .map(|c| (c.release.clone(), c.namespace.clone())),
            );
        }
    }
    out
}

/// A name safe as one path component.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The collectors for the site's charts (none without `[helm]` or charts).
pub fn collectors(ctx: &Ctx) -> Vec<Collector> {
    let (Some(h), Some(sd)) = (ctx.cfg.as_ref().and_then(|c| c.helm.clone()), &ctx.sd) else {
        return Vec::new();
    };
    let charts = charts(sd);
    let mut out: Vec<Collector> = Vec::new();
    for (rel, ns) in &charts {
        let (h, rel, ns) = (h.clone(), rel.clone(), ns.clone());
        out.push((
            format!("helm {ns}/{rel}"),
            Box::new(move |_: &Ctx, d: Instant| helm_release(&h, &rel, &ns, d)),
        ));
    }
    let namespaces: BTreeSet<String> = charts.into_iter().map(|(_, ns)| ns).collect();
    for ns in namespaces {
        let h = h.clone();
        out.push((
            format!("kubernetes {ns}"),
            Box::new(move |_: &Ctx, d: Instant| namespace(&h, &ns, d)),
        ));
    }
    out
}

fn kubeconfig(h: &HelmConfig) -> String {
    h.kubeconfig_path().to_string_lossy().into_owned()
}

/// Runs each `(file, args)` and keeps what answers; the failures are notes
/// (all failing is the collector's error).
fn each(program: &Path, asks: &[(String, Vec<String>)], deadline: Instant) -> Result<Got, String> {
    let mut got = Got::default();
    for (file, args) in asks {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        match tool_text(program, &a, deadline, false) {
            Ok(t) => got.items.push(Item::new(file.clone(), t)),
            Err(e) => got.notes.push(format!("{file}: {e}")),
        }
    }
    if got.items.is_empty() {
        return Err(got.notes.join("; "));
    }
    Ok(got)
}

/// `helm status`, `history`, `get values`, `get manifest` of one release.
fn helm_release(h: &HelmConfig, rel: &str, ns: &str, deadline: Instant) -> Result<Got, String> {
    let bin = h.helm_program()?;
    let kc = kubeconfig(h);
    let dir = format!("helm/{}/{}", safe(ns), safe(rel));
    let asks: Vec<(String, Vec<String>)> = [
        ("status.json", vec!["status", rel, "-o", "json"]),
        ("history.json", vec!["history", rel, "-o", "json"]),
        ("values.yaml", vec!["get", "values", rel, "-o", "yaml"]),
        ("manifest.yaml", vec!["get", "manifest", rel]),
    ]
    .into_iter()
    .map(|(file, mut args)| {
        args.extend(["-n", ns, "--kubeconfig", &kc]);
        (
            format!("{dir}/{file}"),
            args.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    each(&bin, &asks, deadline)
}

/// Whether a pod (from `get pods -o json`) is Ready, or done (a Job's).
fn ready(pod: &serde_json::Value) -> bool {
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if phase == "Succeeded" {
        return true;
    }
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// The containers of a pod (init containers first).
fn containers(pod: &serde_json::Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod["spec"][k].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// Events and pods of namespace `ns`; for each pod not Ready, `describe`
/// and the end of each container's log.
fn namespace(h: &HelmConfig, ns: &str, deadline: Instant) -> Result<Got, String> {
    let bin = h.kubectl_program()?;
    let kc = kubeconfig(h);
    let dir = format!("cluster/{}", safe(ns));
    let mut got = Got::default();
    let base = ["-n", ns, "--kubeconfig", &kc];
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(base);
        tool_text(&bin, &a, deadline, false)
    };
    match run(&["get", "events", "-o", "json"]) {
        Ok(t) => got.items.push(Item::new(format!("{dir}/events.json"), t)),
        Err(e) => got.notes.push(format!("events: {e}")),
    }
    let pods = run(&["get", "pods", "-o", "json"]).map_err(|e| {
        let mut n = got.notes.clone();
        n.push(format!("pods: {e}"));
        n.join("; ")
    })?;
    got.items
        .push(Item::new(format!("{dir}/pods.json"), pods.clone()));
    let list: serde_json::Value = serde_json::from_str(&pods).unwrap_or_default();
    for pod in list["items"].as_array().into_iter().flatten() {
        let Some(name) = pod["metadata"]["name"].as_str() else {
            continue;
        };
        if ready(pod) {
            continue;
        }
        let pdir = format!("{dir}/pods/{}", safe(name));
        match run(&["describe", "pod", name]) {
            Ok(t) => got.items.push(Item::new(format!("{pdir}/describe.txt"), t)),
            Err(e) => got.notes.push(format!("describe {name}: {e}")),
        }
        for c in containers(pod) {
            match run(&["logs", name, "-c", &c, "--tail", LOG_LINES]) {
                Ok(t) => got
                    .items
                    .push(Item::log(format!("{pdir}/{}.log", safe(&c)), t)),
                Err(e) => got.notes.push(format!("logs {name}/{c}: {e}")),
            }
        }
    }
    Ok(got)
}
