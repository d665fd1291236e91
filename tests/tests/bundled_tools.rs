//! `[helm] bin = "bundled"` and `kubectl = "bundled"` (issue 24 item 3,
//! docs/OPERATIONS.md *Helm and kubectl from the release*): the site runs
//! the Helm and kubectl the release carries as signed `[[tools]]` entries.
//!
//! The site is the usual one (real docker-registry, real PostgreSQL, the
//! Kubernetes API stand-in); the carried Helm is the Helm stand-in
//! (`fake-helm`, an ELF that answers `helm version --short` as Helm 3.18.0
//! does) copied into a folder the test deletes once the bundle is built,
//! and the carried kubectl is real kubectl, copied the same way. The site
//! config names no Helm or kubectl path at all, so whatever runs is the
//! copy the updater made from its verified store.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use stoa_e2e::harness::{self, fails, json, ok};
use stoa_e2e::site::Site;

const HELM_ENTRY: &str = "tools/linux/amd64/helm";
const KUBECTL_ENTRY: &str = "tools/linux/amd64/kubectl";

/// What `kubectl version --client` reports, as the `[[tools]]` version.
fn kubectl_version(k: &Path) -> String {
    let out = ok(std::process::Command::new(k).args(["version", "--client"]));
    stoa_format::tools::reported_version(&out)
        .unwrap_or_else(|| panic!("no version in {out:?}"))
        .to_string()
}

/// The site with `bin` and `kubectl` = "bundled".
fn bundled_site() -> Site {
    let mut s = Site::start();
    let text = fs::read_to_string(&s.config).unwrap();
    let mut out = String::new();
    for l in text.lines() {
        if l.starts_with("bin = ") {
            out.push_str("bin = \"bundled\"\n");
        } else if l.starts_with("kubectl = ") {
            out.push_str("kubectl = \"bundled\"\n");
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    assert!(out.contains("bin = \"bundled\"") && out.contains("kubectl = \"bundled\""));
    fs::write(&s.config, out).unwrap();
    // the stand-in renders with real Helm, found beside itself when not told
    s.env.push((
        "STOA_REAL_HELM".into(),
        harness::real_helm(3).display().to_string(),
    ));
    s
}

/// Copies of the Helm stand-in and real kubectl in `dir` (deleted by the
/// caller after the build), and the `[[tools]]` text carrying them.
fn carried_tools(dir: &Path) -> (String, PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let helm = dir.join("helm");
    fs::copy(harness::bin_dir().join("fake-helm"), &helm).unwrap();
    let kubectl = dir.join("kubectl");
    fs::copy(harness::real_kubectl(), &kubectl).unwrap();
    let text = format!(
        "\n[[tools]]\nname = \"helm\"\nsource = \"{}\"\nplatform = \"linux/amd64\"\nversion = \"3.18.0\"\n\
         \n[[tools]]\nname = \"kubectl\"\nsource = \"{}\"\nplatform = \"linux/amd64\"\nversion = \"{}\"\n",
        helm.display(),
        kubectl.display(),
        kubectl_version(&kubectl)
    );
    (text, helm, kubectl)
}

/// 2.1.0 and then 2.3.0 applied, both carrying the same tools: the first
/// apply stages the carried Helm before its preflight runs it, the second
/// finds it in the store already. Returns the carried Helm's SHA-256.
fn two_releases_applied(s: &Site) -> String {
    let tools = s.path().join("vendor-tools");
    let (text, helm, _) = carried_tools(&tools);
    let helm_sha = sha256_hex(&helm);
    let b210 = s.bundle_with("2.1.0", None, &|t| t + &text);
    let b230 = s.bundle_with("2.3.0", None, &|t| t + &text);
    fs::remove_dir_all(&tools).unwrap();
    ok(s.updater().arg("apply").arg(&b210));
    ok(s.updater().arg("apply").arg(&b230));
    assert_eq!(s.installed().as_deref(), Some("2.3.0"));
    helm_sha
}

fn sha256_hex(p: &Path) -> String {
    stoa_format::Sha256Digest::of(&fs::read(p).unwrap()).hex()
}

#[test]
fn plan_and_apply_run_the_helm_and_kubectl_the_release_carries() {
    let s = bundled_site();
    let tools = s.path().join("vendor-tools");
    let (text, helm, kubectl) = carried_tools(&tools);
    let (helm_sha, kubectl_sha) = (sha256_hex(&helm), sha256_hex(&kubectl));
    let b = s.bundle_with("2.3.0", None, &|t| t + &text);
    fs::remove_dir_all(&tools).unwrap();

    // inspect lists both
    let insp = json(&ok(harness::updater().arg("inspect").arg(&b).arg("--json")));
    let listed = insp["tools"].to_string();
    assert!(
        listed.contains(HELM_ENTRY) && listed.contains(KUBECTL_ENTRY),
        "{listed}"
    );

    // plan runs them from its own temp folder: nothing written on site
    let calls_before = s.helm_calls("template");
    let plan = json(&ok(s.updater().arg("plan").arg(&b).arg("--json")));
    let checks = plan["preflight"].as_array().unwrap();
    let check = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
            .clone()
    };
    let h = check("helm");
    assert_eq!(h["outcome"], "ok", "{h}");
    let detail = h["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "the helm of release 2.3.0 ({HELM_ENTRY}, sha256:{}, v3.18.0)",
            &helm_sha[..12]
        )),
        "preflight names the carried Helm it ran: {detail}"
    );
    let k = check("kubernetes");
    assert_eq!(
        k["outcome"], "ok",
        "the carried kubectl asked the server: {k}"
    );
    assert!(
        k["detail"].as_str().unwrap().ends_with(&format!(
            "(asked with the kubectl of release 2.3.0 ({KUBECTL_ENTRY}, sha256:{}, v{}))",
            &kubectl_sha[..12],
            kubectl_version(&harness::real_kubectl())
        )),
        "{k}"
    );
    assert!(
        s.helm_calls("template") > calls_before,
        "plan rendered with the carried Helm"
    );
    assert!(
        !s.state_dir.join("tools").exists(),
        "plan wrote nothing on site"
    );

    // apply: the copies are made from the store, re-hashed, 0555
    ok(s.updater().arg("apply").arg(&b));
    assert_eq!(s.installed().as_deref(), Some("2.3.0"));
    assert_eq!(s.helm_revision("stoa-api"), Some(1));
    for (name, sha) in [("helm", &helm_sha), ("kubectl", &kubectl_sha)] {
        let copy = s.state_dir.join("tools").join(sha).join(name);
        assert_eq!(&sha256_hex(&copy), sha, "{name}");
        assert_eq!(
            fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o555,
            "{name}"
        );
    }
    let calls = fs::read_to_string(s.helm_state.join("calls.log")).unwrap();
    assert!(calls.contains("helm upgrade --install stoa-api"), "{calls}");
}

#[test]
fn rollback_runs_the_helm_of_the_installed_release_with_no_bundle_in_hand() {
    let s = bundled_site();
    let helm_sha = two_releases_applied(&s);
    assert_eq!(s.helm_revision("stoa-api"), Some(2));
    let before = s.helm_calls("rollback");
    ok(s.updater().arg("rollback"));
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
    assert!(
        s.helm_calls("rollback") > before,
        "Helm rolled the charts back"
    );
    assert_eq!(s.helm_revision("stoa-api"), Some(3));
    // prune keeps the copy while a retained release carries it
    let j = json(&ok(s.updater().arg("prune").arg("--dry-run").arg("--json")));
    assert_eq!(j["prune"]["tools"], serde_json::json!([]), "{j}");
    assert!(s
        .state_dir
        .join("tools")
        .join(&helm_sha)
        .join("helm")
        .is_file());
}

#[test]
fn a_bundle_without_the_bundled_helm_is_refused_before_anything_is_read() {
    let s = bundled_site();
    let b = s.bundle("2.3.0", None);
    for cmd in ["plan", "apply"] {
        let err = fails(s.updater().arg(cmd).arg(&b), 3);
        assert!(
            err.contains("[helm] bin = \"bundled\": release 2.3.0 carries no helm for linux/amd64"),
            "{cmd}: {err}"
        );
    }
    let j = json(&String::from_utf8_lossy(
        &harness::run(s.updater().arg("apply").arg(&b).arg("--json")).stdout,
    ));
    assert_eq!(j["error"]["kind"], "bundled-tool", "{j}");
    assert_eq!(s.installed(), None);
    assert!(
        !s.state_dir.join("store").exists()
            || fs::read_dir(s.state_dir.join("store/sha256"))
                .map_or(true, |mut d| d.next().is_none()),
        "nothing staged"
    );
}

#[test]
fn an_altered_runnable_copy_is_replaced_from_the_store_before_it_runs() {
    let s = bundled_site();
    let helm_sha = two_releases_applied(&s);

    // someone edits the runnable copy: a script that would run instead
    let copy = s.state_dir.join("tools").join(&helm_sha).join("helm");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(&copy, "#!/bin/sh\necho tampered > \"$0.ran\"\nexit 0\n").unwrap();
    // the next command that needs Helm re-hashes it and copies it again
    ok(s.updater().arg("rollback"));
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
    assert_eq!(
        sha256_hex(&copy),
        helm_sha,
        "the copy was replaced from the store"
    );
    assert!(
        !Path::new(&format!("{}.ran", copy.display())).exists(),
        "the altered copy never ran"
    );
}

#[test]
fn an_altered_store_blob_of_the_carried_helm_is_never_run() {
    let s = bundled_site();
    let helm_sha = two_releases_applied(&s);
    let revision = s.helm_revision("stoa-api");
    // both the copy and the store blob are gone bad (a hand-edited store)
    fs::remove_dir_all(s.state_dir.join("tools")).unwrap();
    let blob = s.state_dir.join("store/sha256").join(&helm_sha);
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&blob, "#!/bin/sh\necho tampered\n").unwrap();
    let err = fails(s.updater().arg("rollback"), 6);
    assert!(
        err.contains("[helm] bin = \"bundled\"")
            && err.contains(&format!("not the signed sha256:{helm_sha}")),
        "{err}"
    );
    assert_eq!(s.helm_revision("stoa-api"), revision, "Helm never ran");
    assert!(
        !s.state_dir
            .join("tools")
            .join(&helm_sha)
            .join("helm")
            .exists(),
        "no copy of the altered blob was made"
    );
}
