//! Build and site read a chart's images alike (issue 18, Checks): a chart
//! holding a `PodTemplate`, an env `*_IMAGE` image, an init container and a
//! pod inside a `kind: List`, rendered with real Helm 3. The images
//! `stoa-bundler images --json` lists are exactly those the updater's
//! post-renderer (run by that Helm) needs: given a map of just them it
//! rewrites every use to the site registry, and without any one of them it
//! fails naming that one. Both read through `stoa-podimages`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use stoa_e2e::harness::{self, ok, real_helm};
use stoa_e2e::release::Release;

const SITE: &str = "127.0.0.1:5000";
const DIGEST: &str = "sha256:5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn chart(dir: &Path) {
    let c = dir.join("agree");
    fs::create_dir_all(c.join("templates")).unwrap();
    fs::write(
        c.join("Chart.yaml"),
        "apiVersion: v2\nname: agree\nversion: 0.1.0\n",
    )
    .unwrap();
    fs::write(
        c.join("values.yaml"),
        "agentImage: docker.io/hashicorp/vault:1.20.4\nworkerTag: \"1.36\"\n",
    )
    .unwrap();
    fs::write(
        c.join("templates/podtemplate.yaml"),
        "apiVersion: v1\nkind: PodTemplate\nmetadata:\n  name: {{ .Release.Name }}-worker\ntemplate:\n  spec:\n    containers:\n    - name: w\n      image: \"busybox:{{ .Values.workerTag }}\"\n",
    )
    .unwrap();
    fs::write(
        c.join("templates/injector.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-injector\nspec:\n  template:\n    spec:\n      initContainers:\n      - name: init\n        image: registry.k8s.io/pause:3.10\n      containers:\n      - name: injector\n        image: hashicorp/vault-k8s:1.7.6\n        env:\n        - name: AGENT_INJECT_VAULT_IMAGE\n          value: {{ .Values.agentImage | quote }}\n        - name: LOG_LEVEL\n          value: info\n",
    )
    .unwrap();
    fs::write(
        c.join("templates/list.yaml"),
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: {{ .Release.Name }}-listed\n  spec:\n    containers:\n    - name: p\n      image: quay.io/prometheus/busybox:latest\n",
    )
    .unwrap();
    Release::new("agree", "1.0.0")
        .image("busybox:1.36", Some("oci:unused"))
        .chart(&c.display().to_string(), "r", "ns")
        .write(dir);
}

/// `helm template` with the updater's post-renderer serving `images`.
fn post_render(dir: &Path, images: &BTreeSet<String>) -> std::process::Output {
    let map = dir.join("images.json");
    let list: Vec<_> = images
        .iter()
        .map(|n| serde_json::json!({"name": n, "digest": DIGEST}))
        .collect();
    fs::write(
        &map,
        serde_json::json!({"registry": SITE, "prefix": "site", "images": list}).to_string(),
    )
    .unwrap();
    harness::run(
        Command::new(real_helm(3))
            .args(["template", "r"])
            .arg(dir.join("agree"))
            .args(["--namespace", "ns", "--post-renderer"])
            .arg(harness::bin_dir().join("stoa-updater"))
            .arg("--post-renderer-args=post-render")
            .arg("--post-renderer-args=--map")
            .arg(format!("--post-renderer-args={}", map.display())),
    )
}

#[test]
fn bundler_images_and_the_post_renderer_agree_on_a_pod_template_and_an_env_image() {
    let d = tempfile::tempdir().unwrap();
    chart(d.path());
    let out: serde_json::Value = serde_json::from_str(&ok(harness::bundler()
        .arg("images")
        .arg(d.path().join("release.toml"))
        .arg("--json")
        .arg("--helm")
        .arg(real_helm(3))))
    .unwrap();
    let uses = out["images"].as_array().unwrap();
    let listed: BTreeSet<String> = uses
        .iter()
        .map(|u| u["image"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = [
        "busybox:1.36",
        "registry.k8s.io/pause:3.10",
        "hashicorp/vault-k8s:1.7.6",
        "docker.io/hashicorp/vault:1.20.4",
        "quay.io/prometheus/busybox:latest",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(listed, want, "{out}");
    let kind_of = |image: &str| {
        uses.iter()
            .find(|u| u["image"] == image)
            .map(|u| (u["kind"].clone(), u["field"].clone()))
            .unwrap()
    };
    assert_eq!(kind_of("busybox:1.36").0, "PodTemplate");
    assert_eq!(kind_of("docker.io/hashicorp/vault:1.20.4").1, "env");
    assert_eq!(kind_of("quay.io/prometheus/busybox:latest").0, "Pod");

    // the post-renderer, given exactly the listed images, serves every use
    let o = post_render(d.path(), &listed);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout.matches(&format!("\"{SITE}/site/")).count(),
        uses.len(),
        "each listed use rewritten once: {stdout}"
    );
    for line in stdout.lines() {
        let t = line.trim_start_matches([' ', '-']);
        if t.starts_with("image:") || t.starts_with("value: \"") && t.contains('/') {
            assert!(t.contains(SITE), "left outside the site registry: {line}");
        }
    }
    // and needs every one of them
    for gone in &listed {
        let mut fewer = listed.clone();
        fewer.remove(gone);
        let o = post_render(d.path(), &fewer);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "served without {gone}");
        assert!(
            err.contains(&format!("image {gone} is not carried by the bundle")),
            "{gone}: {err}"
        );
    }
}
