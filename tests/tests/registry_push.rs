//! The push-images step at the registry's speed (issue 23 item 1): blobs
//! are pushed `[registry] parallel` at a time, and a blob the site registry
//! already holds in another repository, pushed by a release the store still
//! holds, is mounted from there (`POST …/blobs/uploads/?mount=…&from=…`)
//! instead of uploaded. Real docker-registry and PostgreSQL, the Helm
//! stand-in.

#![allow(clippy::unwrap_used)]

use stoa_e2e::harness::{fails, json, ok};
use stoa_e2e::site::Site;
use stoa_e2e::tamper::Base;

/// 2.1.0 plus `registry.gostoa.dev/stoa/api-copy:2.0.0`: the very image
/// 2.0.0 pushed to `site/stoa/api`, under a new repository.
fn with_api_copy(t: String) -> String {
    let api200 = "oci:";
    assert!(t.contains(api200));
    let src = t
        .lines()
        .find(|l| l.starts_with("source = \"oci:") && l.ends_with(":api-2.1.0\""))
        .unwrap()
        .replace(":api-2.1.0\"", ":api-2.0.0\"");
    format!("{t}\n[[images]]\nname = \"registry.gostoa.dev/stoa/api-copy:2.0.0\"\n{src}\n")
}

/// The site registry serves each STOA image of `bundle` under its tag, with
/// the manifest digest the bundle records (the image is whole).
fn images_whole(s: &Site, bundle: &std::path::Path, version: &str) {
    for img in ["api", "gateway", "portal"] {
        let name = format!("registry.gostoa.dev/stoa/{img}:{version}");
        let want = Site::bundle_image_digest(bundle, &name);
        assert_eq!(
            s.registry_digest(&format!("site/stoa/{img}:{version}"))
                .as_deref(),
            Some(want.as_str()),
            "{img}"
        );
    }
}

#[test]
fn blobs_an_earlier_release_pushed_to_another_repository_are_mounted_not_uploaded() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle_with("2.1.0", None, &with_api_copy);
    ok(s.updater().arg("apply").arg(&b200));
    let r = json(&ok(s.updater().arg("apply").arg(&b210).arg("--json")));
    let push = &r["apply"]["push"];
    // the copy's config and 2.0.0 layer are only in site/stoa/api, put
    // there by the earlier apply: known from the store's 2.0.0 release
    assert!(push["blobs_mounted"].as_u64().unwrap() >= 2, "{push}");
    let want = Site::bundle_image_digest(&b210, "registry.gostoa.dev/stoa/api-copy:2.0.0");
    assert_eq!(
        s.registry_digest("site/stoa/api-copy:2.0.0").as_deref(),
        Some(want.as_str()),
        "the mounted image is whole: the registry serves its manifest"
    );
    images_whole(&s, &b210, "2.1.0");
}

#[test]
fn one_blob_at_a_time_pushes_the_same_and_parallel_out_of_range_is_a_config_error() {
    let s = Site::start();
    s.write_config("");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let with = |n: &str| {
        text.replace(
            "prefix = \"site\"\n",
            &format!("prefix = \"site\"\nparallel = {n}\n"),
        )
    };
    for bad in ["0", "17"] {
        std::fs::write(&s.config, with(bad)).unwrap();
        let err = fails(s.updater().arg("status"), 2);
        assert!(
            err.contains(&format!("[registry] parallel = {bad}: from 1 to 16")),
            "{err}"
        );
    }
    std::fs::write(&s.config, with("1")).unwrap();
    let b = s.bundle("2.0.0", None);
    let r = json(&ok(s.updater().arg("apply").arg(&b).arg("--json")));
    assert!(r["apply"]["push"]["blobs_uploaded"].as_u64().unwrap() > 0);
    images_whole(&s, &b, "2.0.0");
}

/// Blobs are pushed while the bundle is still being verified and staged:
/// a bundle that fails its digest check after its image blobs (its
/// `oci/index.json` altered) puts no manifest and no tag in the registry;
/// the good bundle then pushes every blob before the push step, which
/// uploads nothing more and puts the manifests.
#[test]
fn blobs_are_pushed_while_staging_and_a_bundle_failing_late_leaves_no_tag() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    let bad = s.dir.path().join("index-altered.tar.zst");
    std::fs::write(
        &bad,
        Base::from_file(&b, &s.key).entry_corrupted("oci/index.json"),
    )
    .unwrap();
    let err = fails(s.updater().arg("apply").arg(&bad), 1);
    assert!(err.contains("oci/index.json"), "{err}");
    for img in ["api", "gateway", "portal"] {
        assert_eq!(
            s.registry_digest(&format!("site/stoa/{img}:2.0.0")),
            None,
            "{img}: no tag before the whole bundle verified"
        );
    }

    let r = json(&ok(s.updater().arg("apply").arg(&b).arg("--json")));
    let (all, early) = (&r["apply"]["push"], &r["apply"]["pushed_while_staging"]);
    assert!(early["blobs_uploaded"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(all["bytes_uploaded"], early["bytes_uploaded"], "{r}");
    assert_eq!(early["manifests_put"], 0, "{r}");
    assert!(all["manifests_put"].as_u64().unwrap() >= 3, "{r}");
    images_whole(&s, &b, "2.0.0");
}
