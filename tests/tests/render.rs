//! Every image served from the site registry (issue 9, item 6), with real
//! Helm 3 and 4: the upstream charts rendered through the updater's
//! post-renderer have no image outside the site registry; `plan --render`
//! shows the final manifests; Helm 3's hook images (which its post-renderer
//! never sees) are named by plan and refused by plan and apply unless
//! accepted; a post-renderer fed invalid YAML fails with one clear line.
//! Helm 3's bare "timed out waiting for the condition" for a hook that
//! never completed gets the hook's name (issue 9 item 9, error text).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use stoa_e2e::harness::{self, fails, json, ok, real_helm, upstream_charts};
use stoa_e2e::site::{manifests_dir, Site};

const SITE: &str = "127.0.0.1:5000";
const DIGEST: &str = "sha256:5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Every image each upstream chart runs with the values the test gives
/// (minio with provisioning, whose Job is a post-install hook), as the
/// bundle would carry them.
const UPSTREAM_IMAGES: &[&str] = &[
    "docker.io/bitnami/pgpool:4.6.3-debian-12-r0",
    "docker.io/bitnami/postgresql-repmgr:17.6.0-debian-12-r2",
    "docker.io/bitnami/minio-object-browser:2.0.2-debian-12-r3",
    "docker.io/bitnami/minio:2025.7.23-debian-12-r3",
    "docker.io/bitnami/os-shell:12-debian-12-r50",
    "hashicorp/vault-k8s:1.7.6",
    "hashicorp/vault:2.0.4",
    "busybox:latest",
    "opensearchproject/opensearch:3.6.0",
];

/// A copy of an upstream chart, with bitnami's `common` packaged into its
/// `charts/` (as the bundler vendors it) when it depends on it.
fn chart_copy(dir: &Path, name: &str) -> PathBuf {
    let src = upstream_charts().join(name);
    let dst = dir.join(name);
    ok(Command::new("cp").arg("-r").arg(&src).arg(&dst));
    let chart_yaml = fs::read_to_string(dst.join("Chart.yaml")).unwrap();
    if chart_yaml.contains("name: common") {
        fs::create_dir_all(dst.join("charts")).unwrap();
        ok(Command::new(real_helm(3))
            .arg("package")
            .arg(upstream_charts().join("common"))
            .arg("-d")
            .arg(dst.join("charts")));
    }
    dst
}

/// The post-renderer as the updater sets it up for `major` (Helm 3: the
/// executable and its arguments; Helm 4: a plugin in a HELM_PLUGINS folder).
fn post_renderer(dir: &Path, major: u8) -> (Vec<String>, Option<PathBuf>) {
    let images: Vec<_> = UPSTREAM_IMAGES
        .iter()
        .map(|n| serde_json::json!({"name": n, "digest": DIGEST}))
        .collect();
    let map = dir.join("images.json");
    fs::write(
        &map,
        serde_json::json!({"registry": SITE, "prefix": "site", "images": images}).to_string(),
    )
    .unwrap();
    let updater = harness::bin_dir().join("stoa-updater");
    if major == 3 {
        (
            vec![
                "--post-renderer".into(),
                updater.display().to_string(),
                "--post-renderer-args=post-render".into(),
                "--post-renderer-args=--map".into(),
                format!("--post-renderer-args={}", map.display()),
            ],
            None,
        )
    } else {
        let plugins = dir.join("plugins");
        fs::create_dir_all(plugins.join("stoa-post-render")).unwrap();
        fs::write(
            plugins.join("stoa-post-render/plugin.yaml"),
            format!(
                "apiVersion: v1\ntype: postrenderer/v1\nname: stoa-post-render\nversion: 1.0.0\nruntime: subprocess\nruntimeConfig:\n  platformCommand:\n  - command: {:?}\n    args: [\"post-render\", \"--map\", {:?}]\n",
                updater.display().to_string(),
                map.display().to_string()
            ),
        )
        .unwrap();
        // and `cat` as a plugin, the baseline
        fs::create_dir_all(plugins.join("cat")).unwrap();
        fs::write(
            plugins.join("cat/plugin.yaml"),
            "apiVersion: v1\ntype: postrenderer/v1\nname: cat\nversion: 1.0.0\nruntime: subprocess\nruntimeConfig:\n  platformCommand:\n  - command: /bin/cat\n",
        )
        .unwrap();
        (
            vec!["--post-renderer".into(), "stoa-post-render".into()],
            Some(plugins),
        )
    }
}

/// Loads two manifest streams with PyYAML (YAML 1.1), masks every `image`
/// string and env `*_IMAGE` value (and what differs per render: generated Secret data and the
/// `checksum/…` annotations of them), and prints `same` when they are equal.
const SAME_BUT_IMAGES: &str = r#"
import json, sys, yaml
RANDOM = ("data", "stringData")
def mask(o, secret=False):
    if isinstance(o, dict):
        secret = secret or o.get("kind") == "Secret"
        env_image = str(o.get("name", "")).endswith("_IMAGE")
        return {k: ("MASKED" if (k == "image" and isinstance(v, str)) or (secret and k in RANDOM)
                    or (env_image and k == "value" and isinstance(v, str))
                    or str(k).startswith("checksum/") else mask(v, secret)) for k, v in o.items()}
    if isinstance(o, list):
        return [mask(x) for x in o]
    return o
# Helm may order the post-rendered documents differently: compare sorted
key = lambda d: json.dumps(d, sort_keys=True, default=str)
a, b = (sorted((mask(d) for d in yaml.safe_load_all(open(f)) if d is not None), key=key) for f in sys.argv[1:3])
if a == b:
    print("same")
else:
    for x, y in zip(a, b):
        if x != y:
            print("differ:", x, "\n!=\n", y)
            break
    else:
        print("differ: %d documents before, %d after" % (len(a), len(b)))
"#;

fn images_of(text: &str) -> Vec<String> {
    Site::images_of(text)
}

/// Helm's `# Source:` and hook annotation of the document holding each image.
fn hook_images(text: &str) -> Vec<String> {
    text.split("\n---")
        .filter(|d| d.contains("helm.sh/hook") && !d.contains("helm.sh/hook\": test"))
        .flat_map(images_of)
        .collect()
}

#[test]
fn upstream_charts_render_with_every_image_from_the_site_registry_helm_3_and_4() {
    let dir = tempfile::tempdir().unwrap();
    let charts = [
        (
            "postgresql-ha",
            chart_copy(dir.path(), "postgresql-ha"),
            vec![],
        ),
        (
            "minio",
            chart_copy(dir.path(), "minio"),
            vec!["--set", "provisioning.enabled=true"],
        ),
        ("opensearch", upstream_charts().join("opensearch"), vec![]),
        ("vault", upstream_charts().join("vault"), vec![]),
    ];
    for major in [3u8, 4] {
        let pdir = dir.path().join(format!("pr{major}"));
        fs::create_dir_all(&pdir).unwrap();
        let (pr_args, plugins) = post_renderer(&pdir, major);
        for (name, path, extra) in &charts {
            let mut c = Command::new(real_helm(major));
            c.args(["template", "r"])
                .arg(path)
                .args(["-n", "data", "--skip-tests"])
                .args(extra)
                .args(&pr_args);
            if let Some(p) = &plugins {
                c.env("HELM_PLUGINS", p);
            }
            // bitnami's "Original containers have been substituted" guard
            // must not trip: nothing here changes values
            let out = ok(&mut c);
            let all = images_of(&out);
            assert!(!all.is_empty(), "helm {major} {name}: no image rendered");
            let hooks = hook_images(&out);
            for img in &all {
                let served = img.starts_with(&format!("{SITE}/site/")) && img.ends_with(DIGEST);
                if major == 3 && hooks.contains(img) {
                    // Helm 3 never gives hooks to the post-renderer: plan
                    // names these (test below)
                    assert!(
                        !served,
                        "helm 3 {name}: hook image {img} was post-rendered?"
                    );
                    continue;
                }
                assert!(
                    served,
                    "helm {major} {name}: {img} is not from the site registry:\n{out}"
                );
            }
            // the same YAML, images aside, read by an independent YAML 1.1
            // reader (PyYAML, like Kubernetes' reader): nothing else changed.
            // The baseline has `cat` as post-renderer: Helm 4 re-serialises
            // post-rendered manifests itself (an empty `annotations: {}` of a
            // Service goes), whatever the post-renderer did
            let mut plain = Command::new(real_helm(major));
            plain
                .args(["template", "r"])
                .arg(path)
                .args(["-n", "data", "--skip-tests"])
                .args(extra);
            match &plugins {
                Some(p) => plain
                    .args(["--post-renderer", "cat"])
                    .env("HELM_PLUGINS", p),
                None => plain.args(["--post-renderer", "/bin/cat"]),
            };
            let before = ok(&mut plain);
            let a = dir.path().join(format!("before-{major}-{name}.yaml"));
            let b = dir.path().join(format!("after-{major}-{name}.yaml"));
            fs::write(&a, &before).unwrap();
            fs::write(&b, &out).unwrap();
            let same = ok(Command::new("python3")
                .arg("-c")
                .arg(SAME_BUT_IMAGES)
                .arg(&a)
                .arg(&b));
            assert_eq!(same.trim(), "same", "helm {major} {name}");
            if *name == "vault" {
                // the injector's agent image (an env `*_IMAGE` value) is
                // served from the site registry too
                assert!(
                    out.contains(&format!(
                        "value: \"{SITE}/site/hashicorp/vault:2.0.4@{DIGEST}\""
                    )),
                    "helm {major} vault: agent image not rewritten:\n{out}"
                );
            }
            if *name == "minio" {
                assert!(!hooks.is_empty(), "minio's provisioning Job is a hook");
                if major == 4 {
                    assert!(
                        hooks.iter().all(|i| i.starts_with(SITE)),
                        "helm 4 post-renders hooks: {hooks:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn post_renderer_fed_invalid_yaml_or_a_foreign_image_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (args, _) = post_renderer(dir.path(), 3);
    let map = args[4]
        .trim_start_matches("--post-renderer-args=")
        .to_owned();
    let run = |input: &str| harness::post_render(Path::new(&map), input);
    let out = run("---\n# Source: c/templates/d.yaml\nkind: Deployment\nspec: {template: [\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "stoa-updater: error: read rendered manifests: document 1 (c/templates/d.yaml):"
        ),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let out = run(
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: quay.io/x/y:1}]}\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(
            "Pod/p container containers/c: image quay.io/x/y:1 is not carried by the bundle"
        ),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing goes to Helm on failure");
    // and through real Helm: the chart fails to render, naming the image
    let chart = dir.path().join("c");
    fs::create_dir_all(chart.join("templates")).unwrap();
    fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
    )
    .unwrap();
    fs::write(
        chart.join("templates/p.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: quay.io/x/y:1}]}\n",
    )
    .unwrap();
    let out = harness::run(
        Command::new(real_helm(3))
            .args(["template", "r"])
            .arg(&chart)
            .args(&args),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("image quay.io/x/y:1 is not carried by the bundle"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A copy of the example's stoa-api chart with a pre-install hook Job that
/// runs the chart's image (Helm 3 does not post-render it).
fn chart_with_hook(dir: &Path) -> PathBuf {
    let c = dir.join("stoa-api-hook");
    ok(Command::new("cp")
        .arg("-r")
        .arg(manifests_dir().join("charts/stoa-api"))
        .arg(&c));
    fs::write(
        c.join("templates/migrate-hook.yaml"),
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ .Release.Name }}-pre\n  annotations:\n    \"helm.sh/hook\": pre-install,pre-upgrade\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: pre\n          image: \"{{ .Values.global.imageRegistry }}/{{ .Values.image.repository }}:{{ .Values.image.tag }}\"\n",
    )
    .unwrap();
    c
}

#[test]
fn plan_render_shows_final_manifests_and_helm_3_hook_images_are_refused_unless_accepted() {
    let s = Site::start();
    let hooked = chart_with_hook(s.path());
    let charts = manifests_dir().join("charts");
    let b = s.bundle_with("2.3.0", None, &|t| {
        t.replace(
            &format!("path = \"{}/stoa-api\"", charts.display()),
            &format!("path = \"{}\"", hooked.display()),
        )
    });
    let api = Site::bundle_image_digest(&b, "registry.gostoa.dev/stoa/api:2.3.0");
    let site_api = format!("{}/site/stoa/api:2.3.0@{api}", s.registry.host);

    // Helm 3 (the stand-in renders with real Helm 3): the hook is named,
    // plan shows everything, then refuses (exit 5)
    let out = harness::run(s.updater().args(["plan", "--render", "--json"]).arg(&b));
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let plan = json(stdout.lines().next().unwrap());
    let c = &plan["render"][0];
    assert_eq!(c["release"], "stoa-api");
    let manifests = c["manifests"].as_str().unwrap();
    assert!(
        manifests.contains(&format!("image: \"{site_api}\"")),
        "{manifests}"
    );
    let outside = c["hook_images_outside"].as_array().unwrap();
    assert_eq!(outside.len(), 1, "{c}");
    assert_eq!(outside[0]["kind"], "Job");
    assert_eq!(outside[0]["name"], "stoa-api-pre");
    assert_eq!(outside[0]["image"], "registry.gostoa.dev/stoa/api:2.3.0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Helm 3 does not pass hook manifests to the post-renderer")
            && err.contains("stoa-system/stoa-api hook Job/stoa-api-pre container containers/pre")
            && err.contains("--accept-hook-images"),
        "{err}"
    );
    // the text form names it too
    let text = harness::run(s.updater().args(["plan", "--render"]).arg(&b));
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(t.contains("hook image NOT from the site registry"), "{t}");
    assert!(
        t.contains("--- manifests of stoa-system/stoa-api after rewriting ---"),
        "{t}"
    );
    // every preflight check first, then the render
    let pf = t.find("preflight:").expect("preflight shown");
    assert!(
        t[pf..].contains("  ok      helm ") && pf < t.find("render stoa-system/").unwrap(),
        "{t}"
    );
    // accepted: plan passes
    ok(s.updater().args(["plan", "--accept-hook-images"]).arg(&b));

    // apply refuses before any change: no image pushed, no migration, no helm
    let e = fails(s.updater().arg("apply").arg(&b), 5);
    assert!(e.contains("Job/stoa-api-pre"), "{e}");
    assert!(s.registry_digest("site/stoa/api:2.3.0").is_none());
    assert!(s.tables().is_empty());
    assert_eq!(s.helm_calls("upgrade"), 0);
    assert!(s.status_json()["pending"].is_null());

    // accepted: applied, and "the cluster" got the site image
    ok(s.updater().args(["apply", "--accept-hook-images"]).arg(&b));
    let got = Site::images_of(&s.helm_manifest("stoa-api"));
    // Helm 3 post-rendered the Deployment; the accepted hook kept its image
    assert_eq!(
        got,
        [site_api, "registry.gostoa.dev/stoa/api:2.3.0".to_owned()],
        "Helm 3 post-renders the Deployment only"
    );
}

#[test]
fn helm_4_post_renders_hooks_so_plan_and_apply_need_no_acceptance() {
    let mut s = Site::start();
    s.env.push(("FAKE_HELM_VERSION".into(), "4".into()));
    let hooked = chart_with_hook(s.path());
    let charts = manifests_dir().join("charts");
    let b = s.bundle_with("2.3.0", None, &|t| {
        t.replace(
            &format!("path = \"{}/stoa-api\"", charts.display()),
            &format!("path = \"{}\"", hooked.display()),
        )
    });
    let api = Site::bundle_image_digest(&b, "registry.gostoa.dev/stoa/api:2.3.0");
    let site_api = format!("{}/site/stoa/api:2.3.0@{api}", s.registry.host);
    let plan = json(&ok(s
        .updater()
        .args(["plan", "--render", "--json"])
        .arg(&b)));
    let c = &plan["render"][0];
    assert!(
        c["hook_images_outside"].as_array().unwrap().is_empty(),
        "{c}"
    );
    let images = Site::images_of(c["manifests"].as_str().unwrap());
    assert_eq!(
        images,
        [site_api.clone(), site_api.clone()],
        "hook and Deployment"
    );
    ok(s.updater().arg("apply").arg(&b));
    let got = Site::images_of(&s.helm_manifest("stoa-api"));
    assert_eq!(got, [site_api.clone(), site_api], "{got:?}");
    // the plugin lives in a HELM_PLUGINS folder the updater owns, 0600 map
    let pr = s.state_dir.join("post-render");
    let d = fs::read_dir(&pr).unwrap().next().unwrap().unwrap().path();
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(d.join("images.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(d.join("plugins/stoa-post-render/plugin.yaml").is_file());
}

/// Issue 9 item 9 (error text): Helm 3 says only "pre-upgrade hooks failed:
/// 1 error occurred: * timed out waiting for the condition" for a hook Job
/// that never completed (transcript hook.txt); the updater asks Helm for
/// the failed revision and names the hook Helm recorded as failed. Helm 4
/// names it itself, once.
#[test]
fn helm_3_hook_that_never_completes_is_named() {
    let mut s = Site::start();
    let hooked = chart_with_hook(s.path());
    let charts = manifests_dir().join("charts");
    let b210 = s.bundle("2.1.0", None);
    let b230 = s.bundle_with("2.3.0", None, &|t| {
        t.replace(
            &format!("path = \"{}/stoa-api\"", charts.display()),
            &format!("path = \"{}\"", hooked.display()),
        )
    });
    ok(s.updater().arg("apply").arg(&b210));
    s.env
        .push(("FAKE_HELM_FAIL_HOOK".into(), "stoa-api".into()));
    let e = fails(
        s.updater()
            .args(["apply", "--accept-hook-images"])
            .arg(&b230),
        6,
    );
    assert!(
        e.contains("pre-upgrade hooks failed: 1 error occurred: | * timed out waiting for the condition (not complete within 60s, revision 2: Job/stoa-system/stoa-api-pre)"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    // Helm rolled the release back once; the error is in the history
    let h = s.helm_history("stoa-api");
    assert_eq!(h.last().unwrap().2, "Rollback to 1", "{h:?}");
    let hist = fs::read_to_string(s.state_dir.join("history.jsonl")).unwrap();
    assert!(
        hist.lines()
            .last()
            .unwrap()
            .contains("Job/stoa-system/stoa-api-pre"),
        "{hist}"
    );

    // Helm 4 names the Job itself: kept once, nothing added
    s.env.push(("FAKE_HELM_VERSION".into(), "4".into()));
    let e = fails(s.updater().arg("apply").arg(&b230), 6);
    assert_eq!(
        e.matches("resource Job/stoa-system/stoa-api-pre not ready")
            .count(),
        1,
        "{e}"
    );
    assert!(!e.contains("not complete within"), "{e}");
}

/// A delta omits a chart its base carried (the same archive): `plan`
/// renders it from the site's store (seen first in the demo, where the
/// upstream charts are unchanged between 2.1.0 and 2.3.0).
#[test]
fn plan_renders_a_chart_a_delta_omits_from_the_store() {
    let s = Site::start();
    let m = manifests_dir();
    // 2.1.0's gateway chart as one archive (kept as it is by the bundler)
    // that both releases name: the delta omits it
    let tgz_dir = s.path().join("gateway-tgz");
    ok(Command::new(real_helm(3))
        .arg("package")
        .arg(m.join("charts-2.1.0/stoa-gateway"))
        .arg("-d")
        .arg(&tgz_dir));
    let tgz = tgz_dir.join("stoa-gateway-2.1.0.tgz");
    let b210 = s.bundle_with("2.1.0", None, &|t| {
        t.replace(
            &format!("path = \"{}/charts-2.1.0/stoa-gateway\"", m.display()),
            &format!("path = \"{}\"", tgz.display()),
        )
    });
    // 2.3.0 with 2.1.0's gateway chart and image
    let delta = s.delta_bundle_with("2.3.0", &b210, &|t| {
        t.replace(
            &format!("path = \"{}/charts/stoa-gateway\"", m.display()),
            &format!("path = \"{}\"", tgz.display()),
        )
        .replace("gateway:2.3.0\"", "gateway:2.1.0\"")
        .replace(":gateway-2.3.0\"", ":gateway-2.1.0\"")
    });
    let out = ok(Command::new("tar")
        .arg("--zstd")
        .arg("-xOf")
        .arg(&delta)
        .arg("manifest.json"));
    let man = json(&out);
    let omitted: Vec<&str> = man["delta"]["omitted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(
        omitted.contains(&"charts/stoa-gateway-2.1.0.tgz"),
        "{omitted:?}"
    );
    ok(s.updater().arg("apply").arg(&b210));
    let gw = Site::bundle_image_digest(&b210, "registry.gostoa.dev/stoa/gateway:2.1.0");
    let plan = json(&ok(s
        .updater()
        .args(["plan", "--render", "--json"])
        .arg(&delta)));
    let c = plan["render"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["release"] == "stoa-gateway")
        .unwrap_or_else(|| panic!("{plan}"));
    let images = Site::images_of(c["manifests"].as_str().unwrap());
    assert_eq!(
        images,
        [format!("{}/site/stoa/gateway:2.1.0@{gw}", s.registry.host)]
    );
}

/// The bundle's vendor values reach the render as they reach the upgrade:
/// `plan --render` and "the cluster" (the stand-in's real `helm template`)
/// show the vendor's `replicaCount` instead of the chart's default.
#[test]
fn plan_and_apply_render_with_the_vendor_values() {
    let s = Site::start();
    let vals = s.path().join("vendor-gateway.yaml");
    fs::write(&vals, "replicaCount: 5\n").unwrap();
    let b = s.bundle_with("2.3.0", None, &|t| {
        t.replacen(
            "release = \"stoa-gateway\"",
            &format!(
                "release = \"stoa-gateway\"\nvalues = [\"{}\"]",
                vals.display()
            ),
            1,
        )
    });
    let plan = json(&ok(s
        .updater()
        .args(["plan", "--render", "--json"])
        .arg(&b)));
    let c = plan["render"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["release"] == "stoa-gateway")
        .unwrap_or_else(|| panic!("{plan}"));
    let m = c["manifests"].as_str().unwrap();
    assert!(m.contains("replicas: 5"), "{m}");
    ok(s.updater().arg("apply").arg(&b));
    let m = s.helm_manifest("stoa-gateway");
    assert!(m.contains("replicas: 5"), "{m}");
}
