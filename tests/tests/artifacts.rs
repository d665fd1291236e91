//! Non-image OCI artifacts (issue 19 item 6), against the real
//! docker-registry, skopeo and real Helm 3: `[[artifacts]]` carries a
//! scanner's vulnerability database (an OCI 1.1 artifact: `artifactType`,
//! the empty config, one layer) by reference like an image, digest-pinned
//! and verified; `inspect` lists it with its artifact type; apply pushes it
//! to the site registry (skopeo reads it back, same digest, same
//! `artifactType`); a chart's reference to it is rewritten to its site name
//! as any referenced image is; `serve` serves it; a container image listed
//! as an artifact is refused at build.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::process::Command;

use stoa_e2e::harness::{self, fails, json, ok};
use stoa_e2e::oci_fixture::{sample_images, write_artifact, write_layout};
use stoa_e2e::serve::Serve;
use stoa_e2e::site::{manifests_dir, Site};

const NAME: &str = "registry.gostoa.dev/stoa/vulndb:2026.12";
const TYPE: &str = "application/vnd.example.vulndb.v1";

#[test]
fn an_artifact_is_carried_listed_pushed_and_its_references_rewritten() {
    let s = Site::start();
    let layout = s.path().join("artifacts");
    let digest = write_artifact(
        &layout,
        "vulndb",
        TYPE,
        "application/vnd.example.vulndb.layer.v1.tar+gzip",
        b"CVE-2026-0001 critical\n",
    )
    .unwrap();
    // a chart that tells its scanner where the database is
    let chart = s.path().join("stoa-api-scanner");
    ok(Command::new("cp")
        .arg("-r")
        .arg(manifests_dir().join("charts/stoa-api"))
        .arg(&chart));
    fs::write(
        chart.join("templates/scanner.yaml"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: scanner\ndata:\n  db_repository: {NAME}\n"),
    )
    .unwrap();
    let charts = manifests_dir().join("charts");
    let artifact = format!(
        "\n[[artifacts]]\nname = \"{NAME}\"\nsource = \"oci:{}:vulndb\"\n",
        layout.display()
    );
    let b = s.bundle_with("2.3.0", None, &|t| {
        t.replace(
            &format!("path = \"{}/stoa-api\"", charts.display()),
            &format!("path = \"{}\"", chart.display()),
        ) + &artifact
    });

    // inspect: listed with its artifact type, no platforms
    let inspect = json(&ok(harness::bundler().args(["inspect", "--json"]).arg(&b)));
    let rec = inspect["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == NAME)
        .unwrap_or_else(|| panic!("{inspect}"))
        .clone();
    assert_eq!(rec["artifact_type"], TYPE, "{rec}");
    assert_eq!(rec["digest"], digest.as_str(), "{rec}");
    assert_eq!(rec["platforms"].as_array().unwrap().len(), 0, "{rec}");
    let text = ok(harness::bundler().arg("inspect").arg(&b));
    assert!(
        text.lines()
            .any(|l| l.contains(NAME) && l.contains(&format!("artifact {TYPE}"))),
        "{text}"
    );
    // the bundle's own OCI index names its artifact type too
    let x = s.path().join("extracted");
    ok(harness::updater()
        .args(["extract", "--quiet", "--trust"])
        .arg(s.path().join("trust"))
        .arg("--to")
        .arg(&x)
        .arg(&b));
    let idx = json(&fs::read_to_string(x.join("oci/index.json")).unwrap());
    let d = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == NAME)
        .unwrap()
        .clone();
    assert_eq!(d["artifactType"], TYPE, "{d}");

    // the SBOM lists it as data, with its artifact type
    let bom = json(&ok(harness::bundler()
        .args(["sbom", "--quiet", "--trust"])
        .arg(s.path().join("trust"))
        .arg(&b)));
    let c = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["bom-ref"] == format!("image:{NAME}"))
        .unwrap_or_else(|| panic!("no {NAME} in the SBOM"))
        .clone();
    assert_eq!(c["type"], "data", "{c}");
    assert!(
        c["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "stoa:artifact:type" && p["value"] == TYPE),
        "{c}"
    );

    // apply: pushed beside the images, and read back by skopeo
    ok(s.updater().arg("apply").arg(&b));
    assert_eq!(
        s.registry_digest("site/stoa/vulndb:2026.12").as_deref(),
        Some(digest.as_str())
    );
    let raw = ok(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(
            s.registry
                .skopeo_flags(false)
                .iter()
                .map(|f| f.replace("--src-", "--")),
        )
        .arg(s.registry.docker_ref("site/stoa/vulndb:2026.12")));
    let m = json(&raw);
    assert_eq!(m["artifactType"], TYPE, "{raw}");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    // `serve` serves it from the store too, same bytes
    let srv = Serve::start(&s.config, s.path());
    let served = ok(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!(
            "docker://127.0.0.1:{}/site/stoa/vulndb:2026.12",
            srv.port
        )));
    assert_eq!(served, raw);
    drop(srv);
    // the chart's reference names the site copy, pinned
    let manifest = s.helm_manifest("stoa-api");
    let want = format!(
        "db_repository: \"{}/site/stoa/vulndb:2026.12@{digest}\"",
        s.registry.host
    );
    assert!(manifest.contains(&want), "{want} not in {manifest}");
}

#[test]
fn a_container_image_listed_as_an_artifact_is_refused_at_build() {
    let d = tempfile::tempdir().unwrap();
    let images = d.path().join("images");
    write_layout(&images, &sample_images("9.9.9")).unwrap();
    let mf = d.path().join("release.toml");
    fs::write(
        &mf,
        format!(
            "[release]\nname = \"stoa-platform\"\nversion = \"9.9.9\"\n\n[[artifacts]]\nname = \"registry.gostoa.dev/stoa/api:9.9.9\"\nsource = \"oci:{}:api-9.9.9\"\n",
            images.display()
        ),
    )
    .unwrap();
    let key = harness::keygen(&d.path().join("k"));
    let out = d.path().join("x.tar.zst");
    // exit 3, kind `image`: what the source holds is not what was declared
    let e = fails(&mut harness::bundler_build(&mf, &key, &out), 3);
    assert!(
        e.contains("registry.gostoa.dev/stoa/api:9.9.9")
            && e.contains("not an artifact")
            && e.contains("list it under [[images]]"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!out.exists());
    // and an artifact lists no platforms: a release manifest error
    fs::write(
        &mf,
        format!(
            "[release]\nname = \"stoa-platform\"\nversion = \"9.9.9\"\n\n[[artifacts]]\nname = \"{NAME}\"\nplatforms = [\"linux/amd64\"]\n"
        ),
    )
    .unwrap();
    let e = fails(&mut harness::bundler_build(&mf, &key, &out), 2);
    assert!(e.contains("platforms") && e.contains("line 7"), "{e}");
}
