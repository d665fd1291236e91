//! The security rules of the pod-image rule, each a named negative test
//! reading its own fixture under `tests/fixtures/<rule>/` (issue 17 items
//! 2–5; docs/THREAT-MODEL.md rows 38–42). Each refusal is checked through
//! both [`list`] (the build) and [`rewrite`] (the site), as one line naming
//! the document.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use stoa_podimages::{list, rewrite, Origin, PodImagesError};

fn fixture(rule: &str, name: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", rule, name]
        .iter()
        .collect();
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every image to `site/<image>`.
fn to_site(i: &str) -> Result<String, String> {
    Ok(format!("reg.site/{i}"))
}

/// `text` is refused by list and by rewrite alike, as a one-line
/// rendered-yaml error holding every one of `needles`.
fn refused(text: &str, needles: &[&str]) -> String {
    let a = list(text).unwrap_err();
    let b = rewrite(text, &to_site).unwrap_err();
    let (ma, mb) = (a.to_string(), b.to_string());
    assert_eq!(ma, mb, "build and site refuse alike");
    assert!(matches!(a, PodImagesError::RenderedYaml { .. }), "{ma}");
    assert_eq!(a.kind(), "rendered-yaml");
    assert!(!ma.contains('\n'), "one line: {ma}");
    assert!(ma.starts_with("read rendered manifests: document "), "{ma}");
    for n in needles {
        assert!(ma.contains(n), "{n:?} not in: {ma}");
    }
    ma
}

#[test]
fn duplicate_keys_are_refused_in_any_document() {
    for (file, object, key) in [
        (
            "image-twice.yaml",
            "Deployment/web",
            "spec.template.spec.containers[0].image",
        ),
        (
            "containers-twice.yaml",
            "Deployment/web",
            "spec.template.spec.containers",
        ),
        (
            "kind-twice.yaml",
            "ConfigMap/not-a-configmap",
            "duplicate key kind",
        ),
        (
            "configmap-data-twice.yaml",
            "ConfigMap/settings",
            "data.mode",
        ),
    ] {
        refused(
            &fixture("duplicate-keys", file),
            &[object, key, "duplicate key", "(c/templates/"],
        );
    }
    // the same key in two different maps is no duplicate
    let ok = "kind: ConfigMap\nmetadata: {name: a}\ndata: {name: b}\n";
    assert!(list(ok).unwrap().is_empty());
}

#[test]
fn merge_keys_are_refused_in_any_document() {
    refused(
        &fixture("merge-keys", "containers-merged.yaml"),
        &[
            "Deployment/web",
            "merge key",
            "spec.template.spec.<<",
            "(c/templates/deploy.yaml)",
        ],
    );
    refused(
        &fixture("merge-keys", "configmap-merged.yaml"),
        &["ConfigMap/settings", "merge key", "data.merged.<<"],
    );
}

#[test]
fn list_kinds_items_are_read_as_objects() {
    let text = fixture("list-kinds", "list.yaml");
    let l = list(&text).unwrap();
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(
        (l[0].kind.as_str(), l[0].name.as_str()),
        ("Deployment", "hidden")
    );
    assert_eq!(l[0].image, "busybox:1.36");
    // the ConfigMap item is no pod, but its `image` key names an image
    // (an operator's setting): a referenced image of its own object
    assert_eq!(
        (l[1].kind.as_str(), l[1].origin, l[1].container.as_str()),
        ("ConfigMap", Origin::Referenced, "data.image")
    );
    let r = rewrite(&text, &to_site).unwrap();
    let again = list(&r.text).unwrap();
    assert_eq!(again[0].image, "reg.site/busybox:1.36", "{}", r.text);
    assert!(
        r.text.contains("image: \"reg.site/not-an-image\""),
        "{}",
        r.text
    );

    let pods = list(&fixture("list-kinds", "pod-list.yaml")).unwrap();
    let got: Vec<(&str, &str, &str)> = pods
        .iter()
        .map(|i| (i.name.as_str(), i.container.as_str(), i.image.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("p1", "containers/a", "hashicorp/vault:1.20.4"),
            ("p2", "initContainers/i", "busybox:1.36")
        ]
    );
    // an item is an object like any other: its kind is checked
    refused(
        &fixture("list-kinds", "list-bad-item.yaml"),
        &["List/ items[0]", "\"deployment\" is not a Kubernetes kind"],
    );
}

/// Refused quickly, before memory grows with the expansion.
fn refused_fast(text: &str, needles: &[&str]) {
    let t = Instant::now();
    refused(text, needles);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn alias_bombs_and_oversized_documents_are_refused() {
    let bomb = fixture("alias-bomb", "billion-laughs.yaml");
    assert!(bomb.len() < 1200, "a small document");
    refused_fast(
        &bomb,
        &[
            "ConfigMap",
            "over 500000 nodes",
            "excessive aliasing",
            "(c/templates/bomb.yaml)",
        ],
    );
    refused_fast(
        &fixture("alias-bomb", "deep.yaml"),
        &["ConfigMap", "nested deeper than 128"],
    );
    refused_fast(
        &fixture("alias-bomb", "deep-alias.yaml"),
        &["nested deeper than 128 (through an alias)"],
    );
    // few nodes, many bytes: one 1 MiB scalar aliased 40 times
    let wide = format!(
        "kind: ConfigMap\nmetadata: {{name: wide}}\ndata:\n  a: &a {}\n  b: [{}]\n",
        "x".repeat(1 << 20),
        vec!["*a"; 40].join(",")
    );
    refused_fast(&wide, &["bytes of scalars with aliases expanded"]);
    // a document over the size cap is refused before it is parsed
    let big = format!(
        "# Source: c/templates/big.yaml\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  a: {}\n",
        "x".repeat(stoa_podimages::MAX_DOCUMENT_BYTES)
    );
    refused_fast(
        &big,
        &["ConfigMap", "over 8388608 bytes", "(c/templates/big.yaml)"],
    );
    // a few aliases stay fine
    let ok = "kind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers:\n      - &c {name: a, image: busybox}\n      - *c\n";
    assert_eq!(list(ok).unwrap().len(), 2);
}

#[test]
fn custom_resources_embedding_a_pod_template_are_read_as_pods() {
    let text = fixture("embedded-pod-template", "rollout.yaml");
    let l = list(&text).unwrap();
    let got: Vec<(&str, &str, &str)> = l
        .iter()
        .map(|i| (i.kind.as_str(), i.container.as_str(), i.image.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("Rollout", "containers/app", "hashicorp/vault:1.20.4"),
            ("Rollout", "initContainers/init", "busybox:1.36"),
            (
                "ScheduledTask",
                "containers/run",
                "registry.k8s.io/pause:3.10"
            ),
            // no pod spec, but a key naming an image: referenced
            ("Widget", "spec.template.image", "not-a-pod-image"),
        ]
    );
    assert_eq!(l[3].origin, Origin::Referenced);
    let r = rewrite(&text, &to_site).unwrap();
    assert_eq!(r.images.len(), 4);
    assert!(list(&r.text)
        .unwrap()
        .iter()
        .all(|i| i.image.starts_with("reg.site/")));
    // the Widget holds no pod spec; its image value is rewritten all the same
    assert!(
        r.text
            .contains("  template:\n    image: \"reg.site/not-a-pod-image\"\n"),
        "{}",
        r.text
    );
}

#[test]
fn invalid_kinds_are_refused() {
    for (file, needle) in [
        (
            "lower-case.yaml",
            "kind \"deployment\" is not a Kubernetes kind",
        ),
        (
            "non-alphanumeric.yaml",
            "kind \"Deploy-ment\" is not a Kubernetes kind",
        ),
        ("empty.yaml", "kind \"\" is not a Kubernetes kind"),
        (
            "trailing-space.yaml",
            "kind \"Deployment \" is not a Kubernetes kind",
        ),
        ("non-string.yaml", "kind is not a string"),
        ("missing.yaml", "has no kind"),
    ] {
        refused(
            &fixture("invalid-kind", file),
            &[needle, "document 1 (c/templates/a.yaml)"],
        );
    }
    // a document that is no mapping at all
    refused(
        "# Source: x.yaml\n- a\n- b\n",
        &["is not a Kubernetes object"],
    );
}

#[test]
fn pod_templates_and_env_images_are_listed_and_rewritten() {
    let text = fixture("env-image", "pod-template-and-env.yaml");
    let l = list(&text).unwrap();
    let got: Vec<(&str, &str, Origin, &str)> = l
        .iter()
        .map(|i| {
            (
                i.kind.as_str(),
                i.container.as_str(),
                i.origin,
                i.image.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "PodTemplate",
                "containers/w",
                Origin::Containers,
                "busybox:1.36"
            ),
            (
                "Deployment",
                "containers/injector",
                Origin::Containers,
                "hashicorp/vault-k8s:1.7.0"
            ),
            (
                "Deployment",
                "containers/injector/env/AGENT_INJECT_VAULT_IMAGE",
                Origin::Env,
                "hashicorp/vault:1.20.4"
            ),
        ]
    );
    let r = rewrite(&text, &to_site).unwrap();
    assert!(
        r.text
            .contains("value: \"reg.site/hashicorp/vault:1.20.4\""),
        "{}",
        r.text
    );
    assert!(r.text.contains("value: info"), "{}", r.text);
    // an env image the site cannot serve is named like a container's
    let e = rewrite(&text, &|i: &str| {
        if i.contains("vault:") {
            Err("is not carried by the bundle".into())
        } else {
            to_site(i)
        }
    })
    .unwrap_err();
    let m = e.to_string();
    assert_eq!(e.kind(), "image-not-served");
    assert!(
        m.contains("Deployment/injector container containers/injector/env/AGENT_INJECT_VAULT_IMAGE (c/templates/injector.yaml): image hashicorp/vault:1.20.4 is not carried by the bundle"),
        "{m}"
    );
}

#[test]
fn untrusted_names_in_errors_stay_one_line() {
    let text = "# Source: c/t.yaml\nkind: Deployment\nmetadata: {name: \"a\\nb\\u001b[31m\"}\nspec: {template: {spec: {containers: [{name: \"x\\ny\", image: busybox}]}}}\n";
    let e = rewrite(text, &|_| Err("is not\ncarried".into())).unwrap_err();
    let m = e.to_string();
    assert!(!m.contains('\n') && !m.contains('\u{1b}'), "{m}");
    assert!(m.contains("Deployment/a\\nb\\u{1b}[31m"), "{m}");
}

/// What rewrite emits reads back with the same images, now site names
/// (every fixture that is accepted).
#[test]
fn rewrite_output_reads_back_alike() {
    let root: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures"]
        .iter()
        .collect();
    let mut accepted = 0;
    for rule in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(rule.unwrap().path()).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            let Ok(l) = list(&text) else { continue };
            let r = rewrite(&text, &to_site).unwrap();
            let back = list(&r.text).unwrap();
            assert_eq!(back.len(), l.len(), "{}", r.text);
            for (a, b) in l.iter().zip(&back) {
                assert_eq!(b.image, format!("reg.site/{}", a.image));
                assert_eq!(
                    (&a.kind, &a.name, &a.container),
                    (&b.kind, &b.name, &b.container)
                );
            }
            accepted += 1;
        }
    }
    assert!(accepted >= 4, "{accepted} fixtures accepted");
}

/// Lines end where YAML ends them: a bare `\r` ends a comment (what follows
/// is content, kept once by rewrite), a NEL/LS/PS (a line break to go-yaml,
/// not to YAML 1.2) is refused, and `---# …` starts a document as it does
/// for Kubernetes' reader.
#[test]
fn lines_and_documents_end_where_the_cluster_ends_them() {
    let cr = fixture("line-breaks", "comment-ended-by-cr.yaml");
    let l = list(&cr).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].template.as_deref(), Some("c/templates/pod.yaml"));
    let r = rewrite(&cr, &to_site).unwrap();
    assert_eq!(r.text.matches("kind: Pod").count(), 1, "{:?}", r.text);
    assert_eq!(list(&r.text).unwrap()[0].image, "reg.site/busybox");

    refused(
        &fixture("line-breaks", "line-separator-in-comment.yaml"),
        &[
            "U+2028 at line 9",
            "readers disagree on where a line ends",
            ": Pod: ",
            "(c/templates/pod.yaml)",
        ],
    );

    let sep = fixture("line-breaks", "separator-with-comment.yaml");
    let l = list(&sep).unwrap();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(
        (l[0].kind.as_str(), l[0].image.as_str()),
        ("Pod", "busybox")
    );
    let r = rewrite(&sep, &to_site).unwrap();
    assert!(r.text.contains("---# Kubernetes starts a document here\n"));
    assert_eq!(list(&r.text).unwrap()[0].image, "reg.site/busybox");
}
