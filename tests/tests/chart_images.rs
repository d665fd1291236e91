//! Issue 9 (bundler side), with real Helm 3 and the real upstream charts:
//! vendor values files bundled, signed and applied beneath the site's own
//! file; `stoa-bundler images` rendering every chart and listing every image;
//! `build` refusing a chart image the release does not carry (or a digest it
//! does not have); chart dependencies fetched from a registry and vendored.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use stoa_e2e::harness::{
    self, copy_dir, fails, json, ok, real_helm, upstream_charts, HttpServer, Registry,
};
use stoa_e2e::release::{Release, Table};
use stoa_e2e::release_fixture::write_release;
use stoa_e2e::site::Site;

/// A signing key `<dir>/k.key`.
fn keygen(dir: &Path) -> PathBuf {
    harness::keygen(&dir.join("k"))
}

/// `build --quiet --force`: these tests build to the same `--out` again.
fn build(manifest: &Path, key: &Path, out: &Path) -> Command {
    let mut c = harness::bundler_build(manifest, key, out);
    c.arg("--force");
    c
}

/// The fixture release (`registry.gostoa.dev/stoa/{api,gateway,portal}:2.3.0`
/// carried), with `deploy` as an extra template of the stoa-api chart.
fn release_with_template(dir: &Path, deploy: &str) -> PathBuf {
    let m = write_release(dir, "2.3.0");
    fs::write(dir.join("charts/stoa-api/templates/deploy.yaml"), deploy).unwrap();
    m
}

fn deployment(images: &[&str]) -> String {
    let mut s = String::from(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  template:\n    spec:\n      containers:\n",
    );
    for (i, img) in images.iter().enumerate() {
        s.push_str(&format!("      - name: c{i}\n        image: \"{img}\"\n"));
    }
    s
}

#[test]
fn vendor_values_files_are_bundled_signed_and_given_to_helm_beneath_the_site_file() {
    let s = Site::start();
    let v1 = s.path().join("vendor-base.yaml");
    let v2 = s.path().join("vendor-prod.yaml");
    fs::write(&v1, "replicas: 1\nvendor: base\n").unwrap();
    fs::write(&v2, "replicas: 2\n").unwrap();
    let (a, b) = (v1.display().to_string(), v2.display().to_string());
    let bundle = s.bundle_with("2.3.0", None, &|t| {
        t.replacen(
            "release = \"stoa-api\"\n",
            &format!("release = \"stoa-api\"\nvalues = [\"{a}\", \"{b}\"]\n"),
            1,
        )
    });
    // inspect lists both, in order, with their digests
    let inspect = json(&ok(harness::bundler()
        .arg("inspect")
        .arg("--json")
        .arg(&bundle)));
    let api = inspect["charts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["release"] == "stoa-api")
        .unwrap()
        .clone();
    let values = api["values"].as_array().unwrap();
    assert_eq!(values.len(), 2, "{api}");
    for (v, file) in values.iter().zip([&v1, &v2]) {
        let want = format!("sha256:{}", hex(&Sha256::digest(fs::read(file).unwrap())));
        assert_eq!(v["sha256"], want.as_str(), "{v}");
        assert!(
            v["path"]
                .as_str()
                .unwrap()
                .starts_with("values/stoa-system/stoa-api/"),
            "{v}"
        );
    }
    let text = ok(harness::bundler().arg("inspect").arg(&bundle));
    assert!(text.contains("values vendor-base.yaml"), "{text}");

    // the site's own file goes last: Helm gets -f vendor1 -f vendor2 -f site
    let site_values = s.path().join("site-values");
    fs::create_dir(&site_values).unwrap();
    let site_file = site_values.join("stoa-api.yaml");
    fs::write(&site_file, "replicas: 3\n").unwrap();
    s.write_config(&format!("values_dir = \"{}\"\n", site_values.display()));
    let plan = json(&ok(s.updater().arg("plan").arg(&bundle).arg("--json")));
    let pc = plan["charts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["release"] == "stoa-api")
        .unwrap()
        .clone();
    let files: Vec<&str> = pc["values_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 3, "{pc}");
    assert!(
        files[0].starts_with("bundle:values/stoa-system/stoa-api/00-"),
        "{pc}"
    );
    assert_eq!(files[2], site_file.display().to_string(), "{pc}");

    ok(s.updater().arg("apply").arg(&bundle));
    let calls = fs::read_to_string(s.helm_state.join("calls.log")).unwrap();
    let line = calls
        .lines()
        .find(|l| l.contains("upgrade") && l.contains(" stoa-api "))
        .unwrap_or_else(|| panic!("{calls}"));
    let f: Vec<&str> = line
        .split(' ')
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "-f")
        .map(|w| w[1])
        .collect();
    assert_eq!(f.len(), 3, "{line}");
    assert_eq!(fs::read(f[0]).unwrap(), fs::read(&v1).unwrap(), "{line}");
    assert_eq!(fs::read(f[1]).unwrap(), fs::read(&v2).unwrap(), "{line}");
    assert_eq!(f[2], site_file.display().to_string(), "{line}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The upstream Vault and OpenSearch charts rendered with real Helm 3: every
/// pod image, with its template, plus Vault's injector agent image (an env
/// var), and the vendor values file of the release is used.
#[test]
fn images_lists_every_image_of_upstream_charts_with_template_and_carried() {
    let d = tempfile::tempdir().unwrap();
    let up = upstream_charts();
    fs::write(
        d.path().join("vault.yaml"),
        "server:\n  image:\n    tag: 9.9.9\n",
    )
    .unwrap();
    let up = up.display();
    let m = Release::new("stack", "1.0.0")
        .image("docker.io/hashicorp/vault:9.9.9", Some("oci:unused"))
        .image("opensearchproject/opensearch:3.6.0", Some("oci:unused"))
        .table(Table::image_exception(
            "busybox",
            "the site's policy admits busybox from its own mirror",
        ))
        .table(
            Table::chart(&format!("{up}/vault"), "vault", "vault").list("values", &["vault.yaml"]),
        )
        .chart(&format!("{up}/opensearch"), "opensearch", "search")
        .write(d.path());
    let out = json(&ok(harness::bundler()
        .arg("images")
        .arg(&m)
        .arg("--json")
        .arg("--helm")
        .arg(real_helm(3))));
    let uses = out["images"].as_array().unwrap();
    let find = |image: &str, template: &str| {
        uses.iter()
            .find(|u| u["image"] == image && u["template"] == template)
            .unwrap_or_else(|| panic!("no {image} in {template}: {out}"))
            .clone()
    };
    let server = find(
        "hashicorp/vault:9.9.9",
        "vault/templates/server-statefulset.yaml",
    );
    assert_eq!(server["kind"], "StatefulSet");
    assert_eq!(server["field"], "containers");
    assert_eq!(server["carried"]["status"], "yes");
    let injector = find(
        "hashicorp/vault-k8s:1.7.6",
        "vault/templates/injector-deployment.yaml",
    );
    assert_eq!(injector["carried"]["status"], "missing");
    let agent = uses
        .iter()
        .find(|u| u["field"] == "env")
        .unwrap_or_else(|| panic!("no injector agent image: {out}"));
    assert_eq!(
        agent["template"],
        "vault/templates/injector-deployment.yaml"
    );
    let os = find(
        "opensearchproject/opensearch:3.6.0",
        "opensearch/templates/statefulset.yaml",
    );
    assert_eq!(os["carried"]["status"], "yes");
    let bb = find("busybox:latest", "opensearch/templates/statefulset.yaml");
    assert_eq!(bb["field"], "initContainers");
    assert_eq!(bb["carried"]["status"], "exception");
    assert!(out["refused"].as_u64().unwrap() >= 2, "{out}");

    // the text form names the same, one line each
    let text = ok(harness::bundler().arg("images").arg(&m));
    assert!(
        text.lines().any(|l| l.contains("hashicorp/vault-k8s:1.7.6")
            && l.contains("vault/templates/injector-deployment.yaml")
            && l.contains("NOT CARRIED")),
        "{text}"
    );
}

#[test]
fn build_refuses_an_uncarried_chart_image_unless_excepted_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let key = keygen(d.path());
    let m = release_with_template(
        d.path(),
        &deployment(&[
            "registry.gostoa.dev/stoa/api:2.3.0",
            "docker.io/library/busybox:1.36",
        ]),
    );
    let out = d.path().join("b.stoa");
    let e = fails(&mut build(&m, &key, &out), 2);
    assert!(
        e.contains("chart stoa-api: stoa-api/templates/deploy.yaml: image docker.io/library/busybox:1.36 is not carried"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!out.exists());

    let text = fs::read_to_string(&m).unwrap();
    fs::write(
        &m,
        format!("{text}\n[[image_exceptions]]\nimage = \"busybox:1.36\"\nreason = \"pulled on site from the cluster's mirror\"\n"),
    )
    .unwrap();
    ok(&mut build(&m, &key, &out));
    assert!(out.exists());

    // an exception without a reason: a parse error naming its line
    fs::write(
        &m,
        format!("{text}\n[[image_exceptions]]\nimage = \"busybox:1.36\"\n"),
    )
    .unwrap();
    let header = text.lines().count() + 2;
    let e = fails(&mut build(&m, &key, &out), 2);
    assert!(
        (e.contains(&format!("line {header}:")) || e.contains(&format!("line {}:", header + 1)))
            && e.contains("reason"),
        "{e}"
    );
}

#[test]
fn build_refuses_a_chart_pinning_a_digest_the_bundle_image_does_not_have() {
    let d = tempfile::tempdir().unwrap();
    let key = keygen(d.path());
    let out = d.path().join("b.stoa");
    // first, the digest the bundle really holds
    let m = write_release(&d.path().join("plain"), "2.3.0");
    ok(&mut build(&m, &key, &out));
    let inspect = json(&ok(harness::bundler()
        .arg("inspect")
        .arg("--json")
        .arg(&out)));
    let have = inspect["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "registry.gostoa.dev/stoa/api:2.3.0")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();

    let wrong = format!(
        "registry.gostoa.dev/stoa/api:2.3.0@sha256:{}",
        "0".repeat(64)
    );
    let m = release_with_template(&d.path().join("wrong"), &deployment(&[&wrong]));
    let e = fails(&mut build(&m, &key, &out), 2);
    assert!(
        e.contains(&format!(
            "image {wrong} pins a digest the bundle does not have"
        )) && e.contains(&have),
        "{e}"
    );

    let right = format!("registry.gostoa.dev/stoa/api:2.3.0@{have}");
    let m = release_with_template(&d.path().join("right"), &deployment(&[&right]));
    ok(&mut build(&m, &key, &out));
}

#[test]
fn a_chart_image_that_is_not_an_oci_reference_is_one_line() {
    let d = tempfile::tempdir().unwrap();
    let key = keygen(d.path());
    let m = release_with_template(d.path(), &deployment(&["Registry.Example/UPPER::x"]));
    let e = fails(&mut build(&m, &key, &d.path().join("b.stoa")), 2);
    assert!(
        e.contains("image \"Registry.Example/UPPER::x\" is not a valid OCI reference"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

#[test]
fn a_chart_that_fails_to_render_names_the_chart_and_helms_message() {
    let d = tempfile::tempdir().unwrap();
    let key = keygen(d.path());
    let m = release_with_template(d.path(), "{{ fail \"the vendor forgot a value\" }}\n");
    let e = fails(&mut build(&m, &key, &d.path().join("b.stoa")), 2);
    assert!(
        e.contains("render chart stoa-api 2.3.0 (release stoa-api)")
            && e.contains("the vendor forgot a value"),
        "{e}"
    );
    let e = fails(harness::bundler().arg("images").arg(&m), 2);
    assert!(e.contains("the vendor forgot a value"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

#[test]
fn helm_absent_is_one_clear_line() {
    let d = tempfile::tempdir().unwrap();
    let m = write_release(d.path(), "2.3.0");
    let e = fails(
        harness::bundler()
            .arg("images")
            .arg(&m)
            .env("STOA_HELM", d.path().join("no-helm")),
        3,
    );
    assert!(
        e.contains(&format!(
            "helm: STOA_HELM {}: not an executable file",
            d.path().join("no-helm").display()
        )),
        "{e}"
    );
    let e = fails(
        harness::bundler()
            .arg("images")
            .arg(&m)
            .env_remove("STOA_HELM")
            .env("PATH", d.path()),
        3,
    );
    assert!(e.contains("no helm on PATH"), "{e}");
    let e = fails(
        harness::bundler()
            .arg("images")
            .arg(&m)
            .arg("--helm")
            .arg("/nonexistent/helm"),
        3,
    );
    assert!(
        e.contains("--helm /nonexistent/helm: not an executable file"),
        "{e}"
    );
}

/// A copy of the upstream `common` chart relabelled `version`, pushed with
/// real `helm3 push` to `oci://<registry>/bitnamicharts`.
fn push_common(helm: &Path, reg: &Registry, work: &Path, version: &str) {
    let dir = work.join(format!("common-{version}"));
    copy_dir(&upstream_charts().join("common"), &dir);
    let cy = fs::read_to_string(dir.join("Chart.yaml")).unwrap();
    let cy: String = cy
        .lines()
        .map(|l| {
            if l.starts_with("version:") {
                format!("version: {version}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(dir.join("Chart.yaml"), cy + "\n").unwrap();
    let pkgs = work.join("pkgs");
    fs::create_dir_all(&pkgs).unwrap();
    ok(Command::new(helm)
        .arg("package")
        .arg(&dir)
        .arg("-d")
        .arg(&pkgs)
        .env("HELM_CONFIG_HOME", work.join("helm-config"))
        .env("HELM_CACHE_HOME", work.join("helm-cache")));
    ok(Command::new(helm)
        .arg("push")
        .arg(pkgs.join(format!("common-{version}.tgz")))
        .arg(format!("oci://{}/bitnamicharts", reg.host))
        .arg("--plain-http")
        .env("HELM_CONFIG_HOME", work.join("helm-config"))
        .env("HELM_CACHE_HOME", work.join("helm-cache")));
}

/// A registries.conf (v2) sending Docker Hub's `bitnamicharts` to the
/// harness registry (plain HTTP), as a build host behind a mirror has.
fn hub_charts_mirror(work: &Path, reg: &Registry) -> PathBuf {
    let conf = work.join("registries.conf");
    fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"docker.io/bitnamicharts\"\n\n[[registry.mirror]]\nlocation = \"{}/bitnamicharts\"\ninsecure = true\n",
            reg.host
        ),
    )
    .unwrap();
    conf
}

/// postgresql-ha's images, excepted so these builds check only the
/// dependency (the image check has its own tests).
const PG_EXCEPTIONS: [&str; 4] = [
    "docker.io/bitnami/pgpool",
    "docker.io/bitnami/postgresql-repmgr",
    "docker.io/bitnami/os-shell",
    "docker.io/bitnami/postgres-exporter",
];

fn pg_release(path: &Path, chart: &Path) -> PathBuf {
    let mut r = Release::new("pg", "1.0.0").chart(&chart.display().to_string(), "pg", "data");
    for image in PG_EXCEPTIONS {
        r = r.table(Table::image_exception(image, "dependency test"));
    }
    r.write_to(&path.join(format!(
        "release-{}.toml",
        chart.file_name().unwrap().to_string_lossy()
    )))
}

fn bundled_chart(bundle: &Path, entry: &str, to: &Path) -> PathBuf {
    let bytes = Command::new("tar")
        .arg("--zstd")
        .arg("-xOf")
        .arg(bundle)
        .arg(entry)
        .output()
        .unwrap();
    assert!(
        bytes.status.success(),
        "{entry} not in {}",
        bundle.display()
    );
    fs::write(to, &bytes.stdout).unwrap();
    to.to_owned()
}

fn tar_list(tgz: &Path) -> String {
    ok(Command::new("tar").arg("-tzf").arg(tgz))
}

/// The upstream postgresql-ha (its `common` dependency not vendored, from
/// oci://registry-1.docker.io/bitnamicharts, `2.x.x`, Chart.lock pinning
/// 2.31.4): built through a registries.conf mirroring Docker Hub's
/// `bitnamicharts` at the harness registry (the one mirror mechanism),
/// `common` is fetched, vendored, and `helm3 template` renders the bundled
/// archive. Without Chart.lock the highest `2.x.x` is taken (not 3.0.0).
#[test]
fn postgresql_ha_dependency_is_fetched_from_the_registry_and_vendored() {
    let d = tempfile::tempdir().unwrap();
    let helm = real_helm(3);
    let reg = Registry::start(d.path(), Default::default());
    for v in ["2.31.4", "2.31.10", "3.0.0"] {
        push_common(&helm, &reg, d.path(), v);
    }
    let key = keygen(d.path());
    let conf = hub_charts_mirror(d.path(), &reg);
    let build_pg = |m: &Path, out: &Path| {
        let mut c = build(m, &key, out);
        c.arg("--registries-conf")
            .arg(&conf)
            .arg("--cache")
            .arg(d.path().join("cache"))
            .env("SOURCE_DATE_EPOCH", "1700000000");
        c
    };

    // upstream, unchanged: Chart.lock says 2.31.4
    let m = pg_release(d.path(), &upstream_charts().join("postgresql-ha"));
    let out = d.path().join("pg.stoa");
    ok(&mut build_pg(&m, &out));
    let tgz = bundled_chart(
        &out,
        "charts/postgresql-ha-16.3.4.tgz",
        &d.path().join("pg.tgz"),
    );
    let list = tar_list(&tgz);
    assert!(
        list.contains("postgresql-ha/charts/common-2.31.4.tgz"),
        "{list}"
    );
    let rendered = ok(Command::new(&helm)
        .args(["template", "pg"])
        .arg(&tgz)
        .args(["--namespace", "data"])
        .env("HELM_CONFIG_HOME", d.path().join("helm-config"))
        .env("HELM_CACHE_HOME", d.path().join("helm-cache")));
    assert!(rendered.contains("kind: StatefulSet"), "{rendered}");
    // deterministic: a second build (same SOURCE_DATE_EPOCH) gives the
    // same archive
    let out2 = d.path().join("pg2.stoa");
    ok(&mut build_pg(&m, &out2));
    let tgz2 = bundled_chart(
        &out2,
        "charts/postgresql-ha-16.3.4.tgz",
        &d.path().join("pg2.tgz"),
    );
    let sha = |p: &Path| hex(&Sha256::digest(fs::read(p).unwrap()));
    assert_eq!(sha(&tgz), sha(&tgz2));

    // no Chart.lock: the highest 2.x.x
    let copy = d.path().join("nolock/postgresql-ha");
    copy_dir(&upstream_charts().join("postgresql-ha"), &copy);
    fs::remove_file(copy.join("Chart.lock")).unwrap();
    let m = pg_release(&d.path().join("nolock"), &copy);
    ok(&mut build_pg(&m, &out));
    let tgz = bundled_chart(
        &out,
        "charts/postgresql-ha-16.3.4.tgz",
        &d.path().join("nolock.tgz"),
    );
    let list = tar_list(&tgz);
    assert!(
        list.contains("postgresql-ha/charts/common-2.31.10.tgz"),
        "{list}"
    );
    assert!(!list.contains("common-3.0.0"), "{list}");
}

#[test]
fn a_dependency_with_no_matching_version_fails_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let helm = real_helm(3);
    let reg = Registry::start(d.path(), Default::default());
    push_common(&helm, &reg, d.path(), "2.31.10");
    let key = keygen(d.path());
    let copy = d.path().join("c/postgresql-ha");
    copy_dir(&upstream_charts().join("postgresql-ha"), &copy);
    fs::remove_file(copy.join("Chart.lock")).unwrap();
    let cy = fs::read_to_string(copy.join("Chart.yaml")).unwrap();
    fs::write(
        copy.join("Chart.yaml"),
        cy.replace("version: 2.x.x", "version: 9.x.x"),
    )
    .unwrap();
    let m = pg_release(&d.path().join("c"), &copy);
    let out = d.path().join("b.stoa");
    let e = fails(
        build(&m, &key, &out)
            .arg("--registries-conf")
            .arg(hub_charts_mirror(d.path(), &reg))
            .arg("--cache")
            .arg(d.path().join("cache")),
        2,
    );
    assert!(
        e.contains("chart postgresql-ha: dependency common \"9.x.x\" from oci://registry-1.docker.io/bitnamicharts: no version matches (the repository has: 2.31.10)"),
        "{e}"
    );
    assert!(!out.exists());
}

/// A `file://` dependency beside a chart folder (a library chart, `~1.0.0`)
/// is packaged and vendored; the bundled archive renders with real Helm,
/// using the library's template.
#[test]
fn a_file_dependency_beside_a_chart_folder_is_vendored() {
    let d = tempfile::tempdir().unwrap();
    let key = keygen(d.path());
    let lib = d.path().join("charts/lib");
    fs::create_dir_all(lib.join("templates")).unwrap();
    fs::write(
        lib.join("Chart.yaml"),
        "apiVersion: v2\nname: lib\nversion: 1.0.3\ntype: library\n",
    )
    .unwrap();
    fs::write(
        lib.join("templates/_name.tpl"),
        "{{- define \"lib.name\" -}}from-the-library{{- end -}}\n",
    )
    .unwrap();
    let app = d.path().join("charts/app");
    fs::create_dir_all(app.join("templates")).unwrap();
    fs::write(
        app.join("Chart.yaml"),
        "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: lib\n  version: ~1.0.0\n  repository: file://../lib\n",
    )
    .unwrap();
    fs::write(
        app.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ include \"lib.name\" . }}\n",
    )
    .unwrap();
    let m = Release::new("app", "1.0.0")
        .table(Table::chart("charts/app", "app", "app").list("allow_paths", &["charts/lib"]))
        .write(d.path());
    let out = d.path().join("b.stoa");
    ok(&mut build(&m, &key, &out));
    let tgz = bundled_chart(&out, "charts/app-0.1.0.tgz", &d.path().join("app.tgz"));
    assert!(tar_list(&tgz).contains("app/charts/lib-1.0.3.tgz"));
    let rendered = ok(Command::new(real_helm(3))
        .args(["template", "app"])
        .arg(&tgz)
        .env("HELM_CONFIG_HOME", d.path().join("helm-config"))
        .env("HELM_CACHE_HOME", d.path().join("helm-cache")));
    assert!(rendered.contains("name: from-the-library"), "{rendered}");

    // a constraint the folder's version does not meet names it
    let cy = fs::read_to_string(app.join("Chart.yaml")).unwrap();
    fs::write(app.join("Chart.yaml"), cy.replace("~1.0.0", "^2.0.0")).unwrap();
    let e = fails(&mut build(&m, &key, &out), 2);
    assert!(
        e.contains("chart app: dependency lib \"^2.0.0\" from file://../lib: no version matches"),
        "{e}"
    );
}

/// Issue 17 weak spot (fixture tests/fixtures/chart-file-dependency-outside):
/// a `file://` dependency that leaves the chart's folder (`..`, an absolute
/// path, a symbolic link) stops the build unless the release manifest lists
/// the folder under the chart's `allow_paths`; `/etc` never gets in.
#[test]
fn file_dependency_outside_the_chart_is_refused_unless_allowed() {
    let d = tempfile::tempdir().unwrap();
    let key = keygen(d.path());
    let fx = stoa_e2e::harness::repo_root().join("tests/fixtures/chart-file-dependency-outside");
    let w = d.path().join("w");
    ok(Command::new("cp").arg("-a").arg(&fx).arg(&w));
    let manifest = |chart: &str, allow: &[&str]| {
        let mut t = Table::chart(chart, "app", "app");
        if !allow.is_empty() {
            t = t.list("allow_paths", allow);
        }
        Release::new("app", "1.0.0")
            .table(t)
            .write_to(&w.join(format!("release-{chart}.toml")))
    };
    let out = d.path().join("b.stoa");
    for chart in ["dotdot", "absolute", "symlink"] {
        let e = fails(&mut build(&manifest(chart, &[]), &key, &out), 2);
        assert!(
            e.contains(&format!("chart {chart}")) || e.contains(chart),
            "{chart}: {e}"
        );
        assert!(e.contains("not allowed"), "{chart}: {e}");
        assert!(!out.exists(), "{chart}");
    }
    let e = fails(&mut build(&manifest("dotdot", &[]), &key, &out), 2);
    assert!(e.contains("file://../outside-lib is not allowed"), "{e}");
    assert!(e.contains("allow_paths"), "{e}");
    let allow = &["outside-lib"][..];
    let e = fails(&mut build(&manifest("absolute", allow), &key, &out), 2);
    assert!(e.contains("file:///etc is not allowed"), "{e}");
    fails(&mut build(&manifest("symlink", allow), &key, &out), 2);
    // allowed: built and vendored
    ok(&mut build(&manifest("dotdot", allow), &key, &out));
    let tgz = bundled_chart(
        &out,
        "charts/dotdot-0.1.0.tgz",
        &d.path().join("dotdot.tgz"),
    );
    assert!(tar_list(&tgz).contains("dotdot/charts/lib-1.0.3.tgz"));
    // an allow_paths entry that is not a folder is a manifest error
    let e = fails(&mut build(&manifest("dotdot", &["nowhere"]), &key, &out), 2);
    assert!(
        e.contains("allow_paths[0]") && e.contains("is not a folder"),
        "{e}"
    );
}

/// A dependency from a classic Helm repository comes through
/// `--chart-repo-mirror`, the mirror setting `[[charts]] repo` uses too: the
/// upstream URL (which does not resolve) is never needed, the mirror's
/// index (made by real `helm repo index`) gives the versions (`~1.0.0`
/// takes 1.0.3, not 1.1.0), the archive is vendored, and the bundled chart
/// renders with real Helm.
#[test]
fn a_classic_repository_dependency_comes_through_the_chart_repo_mirror() {
    let d = tempfile::tempdir().unwrap();
    let helm = real_helm(3);
    let key = keygen(d.path());
    let helm_env = |c: &mut Command| {
        c.env("HELM_CONFIG_HOME", d.path().join("helm-config"))
            .env("HELM_CACHE_HOME", d.path().join("helm-cache"));
    };
    let repo = d.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    for v in ["1.0.3", "1.1.0"] {
        let lib = d.path().join(format!("lib-{v}"));
        fs::create_dir_all(lib.join("templates")).unwrap();
        fs::write(
            lib.join("Chart.yaml"),
            format!("apiVersion: v2\nname: lib\nversion: {v}\ntype: library\n"),
        )
        .unwrap();
        fs::write(
            lib.join("templates/_name.tpl"),
            format!("{{{{- define \"lib.name\" -}}}}lib-{v}{{{{- end -}}}}\n"),
        )
        .unwrap();
        let mut c = Command::new(&helm);
        c.arg("package").arg(&lib).arg("-d").arg(&repo);
        helm_env(&mut c);
        ok(&mut c);
    }
    let mut c = Command::new(&helm);
    c.args(["repo", "index"]).arg(&repo);
    helm_env(&mut c);
    ok(&mut c);
    let srv = HttpServer::start(&repo);

    let app = d.path().join("charts/app");
    fs::create_dir_all(app.join("templates")).unwrap();
    fs::write(
        app.join("Chart.yaml"),
        "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: lib\n  version: ~1.0.0\n  repository: https://charts.upstream.invalid/stable\n",
    )
    .unwrap();
    fs::write(
        app.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ include \"lib.name\" . }}\n",
    )
    .unwrap();
    let m = Release::new("app", "1.0.0")
        .chart("charts/app", "app", "app")
        .write(d.path());
    let out = d.path().join("b.stoa");
    ok(build(&m, &key, &out)
        .arg("--chart-repo-mirror")
        .arg(format!(
            "https://charts.upstream.invalid/stable=http://{}",
            srv.host()
        ))
        .arg("--insecure-registry")
        .arg(srv.host())
        .arg("--cache")
        .arg(d.path().join("cache")));
    let tgz = bundled_chart(&out, "charts/app-0.1.0.tgz", &d.path().join("app.tgz"));
    let list = tar_list(&tgz);
    assert!(list.contains("app/charts/lib-1.0.3.tgz"), "{list}");
    assert!(!list.contains("lib-1.1.0"), "{list}");
    let mut c = Command::new(&helm);
    c.args(["template", "app"]).arg(&tgz);
    helm_env(&mut c);
    let rendered = ok(&mut c);
    assert!(rendered.contains("name: lib-1.0.3"), "{rendered}");
}

/// Issue 21 item 16: a dependency whose repository cannot be reached (an
/// `oci://` registry and a classic `https://` repository on a closed
/// loopback port) stops the build as a dependency error (exit 2, kind
/// `chart-dependency`) naming the parent chart, the dependency, its
/// constraint and the repository, then the pull that failed.
#[test]
fn an_unreachable_dependency_names_the_chart_dependency_constraint_and_repository() {
    let d = tempfile::tempdir().unwrap();
    let key = keygen(d.path());
    let port = harness::free_port();
    let conf = d.path().join("registries.conf");
    fs::write(&conf, "").unwrap();
    let app = d.path().join("charts/app");
    fs::create_dir_all(app.join("templates")).unwrap();
    let m = Release::new("app", "1.0.0")
        .chart("charts/app", "app", "app")
        .write(d.path());
    let out = d.path().join("b.stoa");
    for repo in [
        format!("oci://127.0.0.1:{port}/charts"),
        format!("https://127.0.0.1:{port}/stable"),
    ] {
        fs::write(
            app.join("Chart.yaml"),
            format!("apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: lib\n  version: ~1.0.0\n  repository: {repo}\n"),
        )
        .unwrap();
        let with_flags = |c: &mut Command| {
            c.arg("--registries-conf")
                .arg(&conf)
                .arg("--insecure-registry")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--cache")
                .arg(d.path().join("cache"));
        };
        let mut c = build(&m, &key, &out);
        with_flags(&mut c);
        let e = fails(&mut c, 2);
        let lines: Vec<&str> = e.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(lines.len(), 1, "{e}");
        let want =
            format!("stoa-bundler: error: chart app: dependency lib \"~1.0.0\" from {repo}: pull ");
        assert!(lines[0].starts_with(&want), "{repo}: {e}");
        assert!(lines[0].contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!out.exists(), "{repo}");

        let mut c = build(&m, &key, &out);
        with_flags(&mut c);
        c.arg("--json");
        let o = harness::run(&mut c);
        assert_eq!(o.status.code(), Some(2), "{repo}");
        let v = json(&String::from_utf8_lossy(&o.stdout));
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"]["kind"], "chart-dependency", "{v}");
        assert_eq!(v["error"]["exit_code"], 2, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!(
                "chart app: dependency lib \"~1.0.0\" from {repo}: pull "
            )),
            "{msg}"
        );
    }
}
