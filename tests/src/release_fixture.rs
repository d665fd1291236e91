//! A small but complete release in a temp folder: a release manifest with
//! images (one multi-platform, layers shared), two charts, migrations with
//! down steps, and a file. Versions differ in content, so bundles of two
//! versions share some blobs and not others.

use std::fs;
use std::path::{Path, PathBuf};

use crate::oci_fixture::{sample_images, write_layout};
use crate::release::Release;

/// Writes the release for `version` under `dir` and returns the manifest path.
pub fn write_release(dir: &Path, version: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    write_layout(&dir.join("images"), &sample_images(version)).unwrap();
    for chart in ["stoa-api", "stoa-gateway"] {
        let c = dir.join("charts").join(chart);
        fs::create_dir_all(c.join("templates")).unwrap();
        fs::write(
            c.join("Chart.yaml"),
            format!(
                "apiVersion: v2\nname: {chart}\nversion: {version}\nappVersion: \"{version}\"\n"
            ),
        )
        .unwrap();
        fs::write(
            c.join("values.yaml"),
            format!("image:\n  tag: \"{version}\"\n"),
        )
        .unwrap();
        fs::write(
            c.join("templates/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n",
        )
        .unwrap();
    }
    let m = dir.join("migrations");
    fs::create_dir_all(&m).unwrap();
    fs::write(
        m.join("0001_init.sql"),
        "CREATE TABLE tenants (id bigserial PRIMARY KEY, name text NOT NULL);\n",
    )
    .unwrap();
    fs::write(m.join("0001_init.down.sql"), "DROP TABLE tenants;\n").unwrap();
    fs::write(
        m.join("0002_apis.sql"),
        "CREATE TABLE apis (id bigserial PRIMARY KEY, tenant_id bigint REFERENCES tenants(id));\n",
    )
    .unwrap();
    fs::write(m.join("0002_apis.down.sql"), "DROP TABLE apis;\n").unwrap();
    fs::create_dir_all(dir.join("tools")).unwrap();
    fs::write(
        dir.join("tools/stoactl"),
        format!("#!/bin/sh\necho stoactl {version}\n"),
    )
    .unwrap();
    let mut r = Release::stoa(version);
    for image in ["api", "gateway", "portal"] {
        r = r.image(
            &format!("registry.gostoa.dev/stoa/{image}:{version}"),
            Some(&format!("oci:images:{image}-{version}")),
        );
    }
    r.chart("charts/stoa-api", "stoa-api", "stoa-system")
        .chart("charts/stoa-gateway", "stoa-gateway", "stoa-system")
        .migration("stoa", "migrations")
        .file("tools/stoactl", "bin/stoactl", Some("0755"))
        .write(dir)
}
