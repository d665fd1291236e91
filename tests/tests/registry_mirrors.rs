//! Build-host mirrors (docs/RELEASE-MANIFEST.md, *Mirrors*): a containers
//! registries.conf v2 sends pulls to a mirror first, then to the location,
//! with two real docker-registries on loopback as "origin" and "mirror".
//! The bundle records the names written in the release manifest. Named
//! negative cases: a blocked prefix, a file with an unknown field, a
//! missing file, and an image neither mirror nor location has.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use stoa_e2e::harness::{fails, Registry, RegistryOptions};
use stoa_e2e::oci_fixture::{layer_tgz, write_layout, FixtureImage};
use stoa_e2e::registry_fixture::*;

fn layout(dir: &Path) -> PathBuf {
    let l = dir.join("layout");
    let img = |n: &str| FixtureImage {
        ref_name: n.into(),
        platforms: vec![("linux".into(), "amd64".into())],
        layers: vec![layer_tgz(&[(&format!("opt/{n}"), n.as_bytes())])],
    };
    write_layout(&l, &[img("a"), img("b")]).unwrap();
    l
}

/// A registries.conf: `origin`'s namespace mirrored at `<mirror>/origin`,
/// both plain HTTP through `insecure = true` (no --insecure-registry).
fn conf(dir: &Path, origin: &Registry, mirror: &Registry, extra: &str) -> PathBuf {
    let p = dir.join("registries.conf");
    fs::write(
        &p,
        format!(
            "unqualified-search-registries = [\"docker.io\"]\n\n\
             [[registry]]\nprefix = \"{o}\"\ninsecure = true\n\n\
             [[registry.mirror]]\nlocation = \"{m}/origin\"\ninsecure = true\n{extra}",
            o = origin.host,
            m = mirror.host
        ),
    )
    .unwrap();
    p
}

#[test]
fn registries_conf_mirror_first_then_location_names_as_written() {
    let t = tempfile::tempdir().unwrap();
    let origin = Registry::start(&t.path().join("o"), RegistryOptions::default());
    let mirror = Registry::start(&t.path().join("m"), RegistryOptions::default());
    let l = layout(t.path());
    // a: only the mirror has it; b: only the origin
    push(&mirror, &l, "a", "origin/stoa/a:1");
    push(&origin, &l, "b", "stoa/b:1");
    let key = keygen(t.path());
    let o = &origin.host;
    let manifest = release()
        .image(&format!("{o}/stoa/a:1"), None)
        .image(&format!("{o}/stoa/b:1"), None)
        .write(t.path());
    let c = conf(t.path(), &origin, &mirror, "");
    let out = t.path().join("b.stoa");
    build_ok(
        &manifest,
        &key,
        &out,
        &t.path().join("cache"),
        &["--registries-conf".into(), c.display().to_string()],
    );
    let a = image_of(&out, &format!("{o}/stoa/a:1"));
    assert_eq!(a["digest"], registry_digest(&mirror, "origin/stoa/a:1"));
    let b = image_of(&out, &format!("{o}/stoa/b:1"));
    assert_eq!(b["digest"], registry_digest(&origin, "stoa/b:1"));
    let (_, m) = entries(&out);
    let m = String::from_utf8(m).unwrap();
    assert!(
        !m.contains(&mirror.host),
        "the bundle names the mirror: {m}"
    );
    assert!(m.contains(&format!("\"docker://{o}/stoa/a:1\"")), "{m}");
}

#[test]
fn registries_conf_blocked_prefix_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let origin = Registry::start(&t.path().join("o"), RegistryOptions::default());
    let l = layout(t.path());
    push(&origin, &l, "a", "stoa/a:1");
    let key = keygen(t.path());
    let manifest = release()
        .image(&format!("{}/stoa/a:1", origin.host), None)
        .write(t.path());
    let c = t.path().join("blocked.conf");
    fs::write(
        &c,
        format!(
            "[[registry]]\nprefix = \"{}/stoa\"\nblocked = true\n",
            origin.host
        ),
    )
    .unwrap();
    // through $CONTAINERS_REGISTRIES_CONF, as containers tools read it
    let err = fails(
        build_cmd(
            &manifest,
            &key,
            &t.path().join("b.stoa"),
            &t.path().join("cache"),
            &["--insecure-registry".into(), origin.host.clone()],
        )
        .env("CONTAINERS_REGISTRIES_CONF", &c),
        2,
    );
    assert!(
        err.contains("blocked") && err.contains("blocked.conf"),
        "{err}"
    );
    assert!(!t.path().join("b.stoa").exists());
}

#[test]
fn registries_conf_unknown_field_or_missing_file_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let key = keygen(t.path());
    let manifest = release()
        .image("127.0.0.1:1/stoa/a:1", None)
        .write(t.path());
    let c = t.path().join("typo.conf");
    fs::write(
        &c,
        "[[registry]]\nprefix = \"docker.io\"\nlocaton = \"m:1\"\n",
    )
    .unwrap();
    let err = fails(
        &mut build_cmd(
            &manifest,
            &key,
            &t.path().join("b.stoa"),
            &t.path().join("cache"),
            &["--registries-conf".into(), c.display().to_string()],
        ),
        2,
    );
    assert!(
        err.contains("typo.conf") && err.contains("locaton"),
        "{err}"
    );
    let err = fails(
        &mut build_cmd(
            &manifest,
            &key,
            &t.path().join("b.stoa"),
            &t.path().join("cache"),
            &[
                "--registries-conf".into(),
                "/nonexistent/registries.conf".into(),
            ],
        ),
        2,
    );
    assert!(err.contains("/nonexistent/registries.conf"), "{err}");
}

#[test]
fn registries_conf_image_nowhere_names_mirror_and_location() {
    let t = tempfile::tempdir().unwrap();
    let origin = Registry::start(&t.path().join("o"), RegistryOptions::default());
    let mirror = Registry::start(&t.path().join("m"), RegistryOptions::default());
    let key = keygen(t.path());
    let manifest = release()
        .image(&format!("{}/stoa/none:1", origin.host), None)
        .write(t.path());
    let c = conf(t.path(), &origin, &mirror, "");
    let err = fails(
        &mut build_cmd(
            &manifest,
            &key,
            &t.path().join("b.stoa"),
            &t.path().join("cache"),
            &["--registries-conf".into(), c.display().to_string()],
        ),
        3,
    );
    assert!(
        err.contains("not found")
            && err.contains(&format!("mirror {}/origin/stoa/none:1", mirror.host)),
        "{err}"
    );
}
