//! Tests of the SBOM rules (`sbom.rs`). The security rules each have a
//! named fixture under the repository's tests/fixtures/.

use super::*;
use crate::document::limits::Limits;
use crate::manifest::tests::sample;
use crate::manifest::{
    ChartRecord, FileRecord, MigrationSet, MigrationStep, ValuesRecord, OCI_BLOBS_PREFIX,
};

fn entry(path: &str, data: &[u8]) -> Entry {
    Entry {
        path: path.into(),
        size: data.len() as u64,
        sha256: Sha256Digest::of(data),
    }
}

/// The sample (one image) with a chart and its values file, a migration
/// with a down step and a file: every kind of component.
pub(crate) fn rich() -> BundleManifest {
    let mut m = sample();
    let vals = b"replicas: 2\n";
    m.entries.extend([
        entry("charts/stoa-api-2.3.0.tgz", b"chart"),
        entry("values/stoa-system/stoa-api/00-prod.yaml", vals),
        entry(
            "migrations/stoa/0001_init.sql",
            b"CREATE TABLE t (id int);\n",
        ),
        entry("migrations/stoa/0001_init.down.sql", b"DROP TABLE t;\n"),
        entry("files/bin/stoactl", b"#!/bin/sh\n"),
    ]);
    m.entries.sort_by(|a, b| a.path.cmp(&b.path));
    m.charts.push(ChartRecord {
        name: "stoa-api".into(),
        version: "2.3.0".into(),
        app_version: Some("2.3.0".into()),
        kube_version: None,
        release: "stoa-api".into(),
        namespace: "stoa-system".into(),
        path: "charts/stoa-api-2.3.0.tgz".into(),
        values: vec![ValuesRecord {
            source: "values/prod.yaml".into(),
            path: "values/stoa-system/stoa-api/00-prod.yaml".into(),
            sha256: Sha256Digest::of(vals),
        }],
    });
    m.migrations.push(MigrationSet {
        database: "stoa".into(),
        steps: vec![MigrationStep {
            id: "0001".parse().unwrap(),
            name: "init".into(),
            up: "migrations/stoa/0001_init.sql".into(),
            down: Some("migrations/stoa/0001_init.down.sql".into()),
        }],
    });
    m.files.push(FileRecord {
        dest: "bin/stoactl".into(),
        mode: "0755".parse().unwrap(),
        path: "files/bin/stoactl".into(),
    });
    m.validate(&Limits::default()).unwrap();
    m
}

fn extras() -> SbomExtras {
    SbomExtras {
        tool: Some(("stoa-bundler".into(), "0.0.0-test".into())),
        subcharts: BTreeMap::from([(
            "stoa-system/stoa-api".into(),
            vec![SubChart {
                name: "redis".into(),
                version: "1.2.3".into(),
                vendored_as: "stoa-api/charts/redis-1.2.3.tgz".into(),
                sha256: Some(Sha256Digest::of(b"redis")),
                repository: Some("https://charts.example/".into()),
            }],
        )]),
        attestations: BTreeMap::new(),
    }
}

/// `m` with its SBOM entry added and named, and the SBOM's bytes.
fn with_sbom(mut m: BundleManifest) -> (BundleManifest, Vec<u8>) {
    let bytes = generate(&m, &extras());
    m.entries.push(entry(SBOM_PATH, &bytes));
    m.entries.sort_by(|a, b| a.path.cmp(&b.path));
    m.sbom = Some(SBOM_PATH.into());
    m.validate(&Limits::default()).unwrap();
    (m, bytes)
}

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

#[test]
fn generated_sbom_passes_the_readers_check_and_lists_every_record() {
    let (m, bytes) = with_sbom(rich());
    let bom = check(&bytes, &m).unwrap();
    assert_eq!(bom.spec_version, "1.6");
    assert_eq!(bom.metadata.timestamp, "2026-01-01T00:00:00Z");
    let refs: Vec<&str> = bom
        .components
        .iter()
        .flat_map(Component::walk)
        .filter_map(|c| c.bom_ref.as_deref())
        .collect();
    assert_eq!(
        refs,
        [
            "chart:stoa-system/stoa-api",
            "chart:stoa-system/stoa-api/stoa-api/charts/redis-1.2.3.tgz",
            "file:bin/stoactl",
            "image:registry.gostoa.dev/stoa/api:2.3.0",
            "migration:migrations/stoa/0001_init.down.sql",
            "migration:migrations/stoa/0001_init.sql",
            "values:values/stoa-system/stoa-api/00-prod.yaml",
        ]
    );
    let img = &bom.components[2];
    let hex = m.images[0].digest.digest().hex();
    assert_eq!(
        img.purl.as_deref(),
        Some(
            format!(
                "pkg:oci/api@sha256%3A{hex}?repository_url=registry.gostoa.dev/stoa/api&tag=2.3.0"
            )
            .as_str()
        )
    );
    assert_eq!(img.sha256(), Some(hex.as_str()));
    assert_eq!(
        img.property(ENTRY_PROPERTY),
        Some(format!("{OCI_BLOBS_PREFIX}{hex}").as_str())
    );
    // deterministic: the same manifest, the same bytes
    assert_eq!(generate(&rich(), &extras()), bytes);
    let serial = serial_number(&m);
    assert!(
        serial.starts_with("urn:uuid:") && serial.len() == 45,
        "{serial}"
    );
    assert_eq!(&serial[23..24], "5");
}

/// The serial number follows the release's content: another entry digest,
/// another serial; the SBOM's own entry does not count.
#[test]
fn serial_number_is_derived_from_the_release_content() {
    let (m, _) = with_sbom(rich());
    assert_eq!(serial_number(&m), serial_number(&rich()));
    let mut other = rich();
    other.entries[0].sha256 = Sha256Digest::of(b"x");
    assert_ne!(serial_number(&other), serial_number(&rich()));
}

/// Security rule: the manifest's `sbom` must name an entry the bundle
/// carries. Fixture tests/fixtures/sbom-missing-entry/manifest.json: the
/// sample manifest with `"sbom": "sbom.cdx.json"` and no such entry.
#[test]
fn a_manifest_whose_sbom_names_a_missing_entry_is_refused() {
    let bytes = fixture("sbom-missing-entry/manifest.json");
    let e = BundleManifest::from_bytes(&bytes, &Limits::default()).unwrap_err();
    assert_eq!(e.kind(), "manifest-invalid", "{e}");
    assert!(
        e.to_string()
            .contains("sbom refers to \"sbom.cdx.json\", which is not an entry"),
        "{e}"
    );
}

/// The field names the one SBOM path, nothing else (another entry would
/// be a file that no rule parses as an SBOM).
#[test]
fn an_sbom_field_naming_another_entry_is_refused() {
    let mut m = rich();
    m.sbom = Some("files/bin/stoactl".into());
    let e = m.validate(&Limits::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("the SBOM entry is \"sbom.cdx.json\""),
        "{e}"
    );
}

/// Security rule: a bundle whose SBOM disagrees with its own manifest is
/// refused. Fixture tests/fixtures/sbom-disagrees/sbom.cdx.json: the SBOM
/// of [`rich`] whose metadata component says 2.2.0, not 2.3.0.
#[test]
fn an_sbom_that_disagrees_with_its_manifest_is_refused() {
    let (m, _) = with_sbom(rich());
    let e = check(&fixture("sbom-disagrees/sbom.cdx.json"), &m).unwrap_err();
    assert_eq!(e.kind(), "sbom");
    assert!(
        e.to_string()
            .contains("metadata.component is stoa-platform 2.2.0, the manifest's release is stoa-platform 2.3.0"),
        "{e}"
    );
}

#[test]
fn every_disagreement_is_named() {
    let (m, bytes) = with_sbom(rich());
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let refused = |edit: &dyn Fn(&mut serde_json::Value), want: &str| {
        let mut v = doc.clone();
        edit(&mut v);
        let e = check(&serde_json::to_vec(&v).unwrap(), &m).unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
    };
    refused(&|v| v["bomFormat"] = "SPDX".into(), "bomFormat is \"SPDX\"");
    refused(
        &|v| v["specVersion"] = "1.4".into(),
        "specVersion is \"1.4\"",
    );
    refused(
        &|v| v["serialNumber"] = "urn:uuid:00000000-0000-5000-8000-000000000000".into(),
        "serialNumber is",
    );
    refused(
        &|v| v["metadata"]["timestamp"] = "2026-01-02T00:00:00Z".into(),
        "metadata.timestamp",
    );
    // a file component with another digest
    refused(
        &|v| v["components"][1]["hashes"][0]["content"] = "00".repeat(32).into(),
        "gives entry \"files/bin/stoactl\" SHA-256 0000",
    );
    // a component naming an entry that is not listed
    refused(
        &|v| v["components"][1]["properties"][0]["value"] = "files/other".into(),
        "names entry \"files/other\", which the manifest does not list",
    );
    // the image left out
    refused(
        &|v| {
            v["components"].as_array_mut().unwrap().remove(2);
        },
        "no component for entry \"oci/blobs/sha256/",
    );
    let e = check(b"not json", &m).unwrap_err();
    assert!(
        e.to_string().contains("not a CycloneDX JSON document"),
        "{e}"
    );
}

/// A bundle without an SBOM keeps its bytes (no `sbom` key), and a delta
/// never leaves the SBOM out.
#[test]
fn without_an_sbom_the_manifest_is_unchanged_and_a_delta_carries_it() {
    let text = String::from_utf8(sample().to_bytes()).unwrap();
    assert!(!text.contains("sbom"));
    let (m, _) = with_sbom(rich());
    let text = String::from_utf8(m.to_bytes()).unwrap();
    assert!(text.contains("\"sbom\": \"sbom.cdx.json\""), "{text}");
    let back = BundleManifest::from_bytes(&m.to_bytes(), &Limits::default()).unwrap();
    assert_eq!(back, m);
    assert!(!crate::delta::omittable(m.entry(SBOM_PATH).unwrap()));
}
