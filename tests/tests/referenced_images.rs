//! Images outside `image:` fields (issue 19 item 5), with real Helm 3: an
//! operator's chart names the images of the pods it will create in an
//! argument (`--sidecar-image=<full reference>`), a ConfigMap value under a
//! key naming an image, and a custom resource's `imageName`. `stoa-bundler
//! images` lists each as `referenced` with its field path, `build` refuses
//! one the release does not carry unless `[[image_exceptions]]` lists it,
//! and on site the post-renderer hands the operator site names pinned by
//! digest (prefix layout) or its own names pinned (mirror layout), so
//! nothing is mutated after the fact.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use stoa_e2e::harness::{self, fails, json, ok, real_helm};
use stoa_e2e::release_fixture::write_release;
use stoa_e2e::site::{manifests_dir, Site};

/// An operator's templates: its own pod runs the api image; the images it
/// starts later are named in an argument, a ConfigMap and a custom resource.
fn operator_template(configmap_image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: operator\nspec:\n  template:\n    spec:\n      containers:\n      - name: manager\n        image: registry.gostoa.dev/stoa/api:2.3.0\n        args:\n        - --leader-elect\n        - --sidecar-image=registry.gostoa.dev/stoa/gateway:2.3.0\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: operator-config\ndata:\n  RELOADER_IMAGE: \"{configmap_image}\"\n  url: https://vault.example:8200/v1\n---\napiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 3\n  imageName: registry.gostoa.dev/stoa/portal:2.3.0\n"
    )
}

#[test]
fn images_lists_referenced_images_and_build_refuses_a_missing_one_unless_excepted() {
    let d = tempfile::tempdir().unwrap();
    let key = harness::keygen(&d.path().join("k"));
    let m = write_release(d.path(), "2.3.0");
    fs::write(
        d.path().join("charts/stoa-api/templates/operator.yaml"),
        operator_template("docker.io/library/busybox:1.36"),
    )
    .unwrap();
    let out = json(&ok(harness::bundler()
        .arg("images")
        .arg(&m)
        .arg("--json")
        .arg("--helm")
        .arg(real_helm(3))));
    let uses = out["images"].as_array().unwrap();
    let referenced: Vec<(&str, &str, &str, &str)> = uses
        .iter()
        .filter(|u| u["field"] == "referenced")
        .map(|u| {
            (
                u["kind"].as_str().unwrap(),
                u["path"].as_str().unwrap(),
                u["image"].as_str().unwrap(),
                u["carried"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        referenced,
        // in Helm's install order: the ConfigMap before the Deployment
        [
            (
                "ConfigMap",
                "data.RELOADER_IMAGE",
                "docker.io/library/busybox:1.36",
                "missing"
            ),
            (
                "Deployment",
                "spec.template.spec.containers[0].args[1]",
                "registry.gostoa.dev/stoa/gateway:2.3.0",
                "yes"
            ),
            (
                "Cluster",
                "spec.imageName",
                "registry.gostoa.dev/stoa/portal:2.3.0",
                "yes"
            ),
        ],
        "{out}"
    );
    for u in uses.iter().filter(|u| u["field"] == "referenced") {
        assert_eq!(u["chart"], "stoa-api");
        assert_eq!(u["template"], "stoa-api/templates/operator.yaml");
    }
    // the text form: one line each, with the field path
    let text = ok(harness::bundler()
        .arg("images")
        .arg(&m)
        .arg("--helm")
        .arg(real_helm(3)));
    assert!(
        text.lines()
            .any(|l| l.contains("docker.io/library/busybox:1.36")
                && l.contains("Referenced data.RELOADER_IMAGE")
                && l.contains("NOT CARRIED")),
        "{text}"
    );

    // build refuses it, naming the field
    let bundle = d.path().join("b.stoa");
    let mut b = harness::bundler_build(&m, &key, &bundle);
    b.arg("--force");
    let e = fails(&mut b, 2);
    assert!(
        e.contains("stoa-api/templates/operator.yaml (ConfigMap field data.RELOADER_IMAGE): image docker.io/library/busybox:1.36 is not carried"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!bundle.exists());

    // listed under [[image_exceptions]]: built
    let t = fs::read_to_string(&m).unwrap();
    fs::write(
        &m,
        format!("{t}\n[[image_exceptions]]\nimage = \"busybox:1.36\"\nreason = \"the operator's reloader comes from the cluster's own mirror\"\n"),
    )
    .unwrap();
    let mut b = harness::bundler_build(&m, &key, &bundle);
    b.arg("--force");
    ok(&mut b);
    assert!(bundle.exists());
}

/// A copy of the example's stoa-api chart with the operator's templates,
/// every image they name carried.
fn chart_with_operator(dir: &Path) -> std::path::PathBuf {
    let c = dir.join("stoa-api-operator");
    ok(Command::new("cp")
        .arg("-r")
        .arg(manifests_dir().join("charts/stoa-api"))
        .arg(&c));
    fs::write(
        c.join("templates/operator.yaml"),
        operator_template("registry.gostoa.dev/stoa/gateway:2.3.0"),
    )
    .unwrap();
    c
}

/// `stoa-updater post-render --map MAP` over `text`, which must succeed.
fn post_render(map: &Path, text: &str) -> String {
    let out = harness::post_render(map, text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn apply_hands_the_operator_site_names_and_the_mirror_layout_keeps_names_pinned() {
    let s = Site::start();
    let chart = chart_with_operator(s.path());
    let charts = manifests_dir().join("charts");
    let b = s.bundle_with("2.3.0", None, &|t| {
        t.replace(
            &format!("path = \"{}/stoa-api\"", charts.display()),
            &format!("path = \"{}\"", chart.display()),
        )
    });
    let digest = |n: &str| Site::bundle_image_digest(&b, n);
    let (api, gw, portal) = (
        digest("registry.gostoa.dev/stoa/api:2.3.0"),
        digest("registry.gostoa.dev/stoa/gateway:2.3.0"),
        digest("registry.gostoa.dev/stoa/portal:2.3.0"),
    );
    let host = s.registry.host.clone();

    // plan lists the referenced images with their new names
    let plan = json(&ok(s
        .updater()
        .args(["plan", "--render", "--json"])
        .arg(&b)));
    let c = plan["render"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["release"] == "stoa-api")
        .unwrap()
        .clone();
    let refs: Vec<&str> = c["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["origin"] == "referenced")
        .map(|i| i["container"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        [
            "data.RELOADER_IMAGE",
            "spec.template.spec.containers[0].args[1]",
            "spec.imageName"
        ],
        "{c}"
    );

    // apply: what "the cluster" got names the site registry, pinned
    ok(s.updater().arg("apply").arg(&b));
    let m = s.helm_manifest("stoa-api");
    for want in [
        format!("image: \"{host}/site/stoa/api:2.3.0@{api}\""),
        format!("- \"--sidecar-image={host}/site/stoa/gateway:2.3.0@{gw}\""),
        format!("RELOADER_IMAGE: \"{host}/site/stoa/gateway:2.3.0@{gw}\""),
        format!("imageName: \"{host}/site/stoa/portal:2.3.0@{portal}\""),
    ] {
        assert!(m.contains(&want), "{want} not in {m}");
    }
    assert!(m.contains("url: https://vault.example:8200/v1"), "{m}");
    assert!(m.contains("instances: 3"), "{m}");

    // the mirror layout: the same documents keep their names, pinned
    let map = s.path().join("mirror-images.json");
    let images: Vec<_> = [
        ("registry.gostoa.dev/stoa/api:2.3.0", &api),
        ("registry.gostoa.dev/stoa/gateway:2.3.0", &gw),
        ("registry.gostoa.dev/stoa/portal:2.3.0", &portal),
    ]
    .iter()
    .map(|(n, d)| serde_json::json!({"name": n, "digest": d}))
    .collect();
    fs::write(
        &map,
        serde_json::json!({"registry": host, "prefix": "site", "layout": "mirror", "images": images})
            .to_string(),
    )
    .unwrap();
    let out = post_render(
        &map,
        &operator_template("registry.gostoa.dev/stoa/gateway:2.3.0"),
    );
    for want in [
        format!("- \"--sidecar-image=registry.gostoa.dev/stoa/gateway:2.3.0@{gw}\""),
        format!("RELOADER_IMAGE: \"registry.gostoa.dev/stoa/gateway:2.3.0@{gw}\""),
        format!("imageName: \"registry.gostoa.dev/stoa/portal:2.3.0@{portal}\""),
    ] {
        assert!(out.contains(&want), "{want} not in {out}");
    }
    assert!(!out.contains(&host), "{out}");
}
