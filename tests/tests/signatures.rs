//! Upstream image signatures (issue 20 items 1 and 2): a release's
//! `[[signers]]` verified at build against cosign `.sig` manifests in a
//! real loopback docker-registry (made by `stoa_e2e::cosign` with openssl,
//! in cosign's documented format), carried in the bundle, pushed beside the
//! image on site, and checked there by an independent reader (skopeo and
//! `openssl dgst -sha256 -verify`). Each refusal has a named test and
//! fixture.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use stoa_e2e::cosign::{self, CosignKey};
use stoa_e2e::harness::{fails, json, ok, Registry, RegistryOptions};
use stoa_e2e::oci_fixture::{write_layout, FixtureImage};
use stoa_e2e::registry_fixture::*;
use stoa_e2e::release::Table;

/// The image as the release names it, and the identity upstream signs.
const NAME: &str = "docker.io/bitnami/redis:7.2";
const IDENTITY: &str = "docker.io/bitnami/redis";
const REPO: &str = "bitnami/redis";

/// An upstream registry holding `bitnami/redis:7.2` (and `portal`, an
/// unrelated image, in the layout); the image's digest.
struct Upstream {
    reg: Registry,
    digest: String,
    layout: PathBuf,
}

fn upstream(dir: &Path) -> Upstream {
    let reg = Registry::start(dir, RegistryOptions::default());
    let layout = dir.join("layout");
    let layer = |n: &str| stoa_e2e::oci_fixture::layer_tgz(&[(&format!("opt/{n}"), n.as_bytes())]);
    write_layout(
        &layout,
        &[
            FixtureImage {
                ref_name: "redis".into(),
                platforms: vec![("linux".into(), "amd64".into())],
                layers: vec![layer("redis")],
            },
            FixtureImage {
                ref_name: "portal".into(),
                platforms: vec![("linux".into(), "amd64".into())],
                layers: vec![layer("portal")],
            },
        ],
    )
    .unwrap();
    push(&reg, &layout, "redis", &format!("{REPO}:7.2"));
    let digest = registry_digest(&reg, &format!("{REPO}:7.2"));
    Upstream {
        reg,
        digest,
        layout,
    }
}

/// The release: the image pulled from the upstream registry, and a
/// `bitnami` signer with `key` over `docker.io/bitnami/*`.
fn release_manifest(dir: &Path, up: &Upstream, key: &Path, required: bool) -> PathBuf {
    release()
        .image(NAME, Some(&format!("docker://{}/{REPO}:7.2", up.reg.host)))
        .table(
            Table::new("signers")
                .str("name", "bitnami")
                .str("key", &key.display().to_string())
                .list("images", &["docker.io/bitnami/*"])
                .raw("required", if required { "true" } else { "false" }),
        )
        .write(dir)
}

fn insecure(reg: &Registry) -> Vec<String> {
    vec!["--insecure-registry".into(), reg.host.clone()]
}

/// A build that must be refused with exit 1, naming image, signer and
/// `reason`.
#[track_caller]
fn refused(dir: &Path, up: &Upstream, key: &Path, reason: &str) {
    let m = release_manifest(dir, up, key, true);
    let bk = keygen(dir);
    let err = fails(
        &mut build_cmd(
            &m,
            &bk,
            &dir.join("b.stoa"),
            &dir.join("cache"),
            &insecure(&up.reg),
        ),
        1,
    );
    assert!(
        err.contains(&format!("image {NAME}")) && err.contains("\"bitnami\""),
        "{err}"
    );
    assert!(err.contains(reason), "wanted {reason:?}: {err}");
    assert!(!dir.join("b.stoa").exists());
}

fn signed_build(dir: &Path, up: &Upstream, key: &CosignKey) -> (PathBuf, PathBuf) {
    let bk = keygen(dir);
    let (out, _) = signed_build_with(dir, up, key, &bk);
    (out, dir.join("release.pub"))
}

/// `up` signed by `key` (pushed as its `.sig`), built with a required
/// signer and the release key `release_key`: the bundle and the `.sig`
/// manifest's bytes.
fn signed_build_with(
    dir: &Path,
    up: &Upstream,
    key: &CosignKey,
    release_key: &Path,
) -> (PathBuf, Vec<u8>) {
    let sig = cosign::sign_and_push(dir, &up.reg, REPO, &up.digest, IDENTITY, key);
    let m = release_manifest(dir, up, &key.public, true);
    let out = dir.join("b.stoa");
    build_ok(
        &m,
        release_key,
        &out,
        &dir.join("cache"),
        &insecure(&up.reg),
    );
    (out, sig)
}

/// The core path: signed upstream (P-256, openssl), build with a required
/// signer carries the signature; verify re-verifies and prints it; apply
/// pushes it beside the image; the site registry's copy verifies with
/// `openssl dgst -sha256 -verify` and names the manifest digest.
#[test]
fn a_required_signer_is_verified_carried_pushed_and_checked_on_site() {
    let site = stoa_e2e::site::Site::start();
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    let (out, sig_manifest) = signed_build_with(t.path(), &up, &key, &site.key);

    // the signed manifest lists the signature and the signer's key
    let (names, manifest) = entries(&out);
    let mj: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let sig = &mj["images"][0]["signatures"][0];
    assert_eq!(sig["signer"], "bitnami", "{mj}");
    let sig_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sig_manifest))
    );
    assert_eq!(sig["manifest"], sig_digest.as_str());
    assert_eq!(mj["signers"][0]["path"], "signers/bitnami.pub");
    assert!(
        names.iter().any(|n| n == "signers/bitnami.pub"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| *n
        == format!(
            "oci/blobs/sha256/{}",
            sig_digest.trim_start_matches("sha256:")
        )));

    // verify re-verifies and prints it, text and --json
    let v = ok(stoa_e2e::harness::updater()
        .arg("verify")
        .arg(&out)
        .arg("--trust")
        .arg(site.path().join("release.pub")));
    assert!(
        v.contains(&format!("image {NAME} signed by bitnami (")),
        "{v}"
    );
    let vj = json(&ok(stoa_e2e::harness::updater()
        .args(["--json", "verify"])
        .arg(&out)
        .arg("--trust")
        .arg(site.path().join("release.pub"))));
    assert_eq!(vj["image_signatures"][0]["signer"], "bitnami", "{vj}");
    assert_eq!(vj["image_signatures"][0]["manifest"], sig_digest.as_str());

    // plan prints it too, and its change report shows it per image
    let report = site.path().join("change.html");
    let p = ok(site
        .updater()
        .arg("plan")
        .arg(&out)
        .arg("--report")
        .arg(&report));
    assert!(
        p.contains(&format!("image {NAME} signed by bitnami (")),
        "{p}"
    );
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(
        page.contains("verified: signed by bitnami ("),
        "the report's signature column: {page}"
    );

    // apply pushes it beside the image
    ok(site.updater().arg("apply").arg(&out));
    let site_repo = "site/bitnami/redis";
    assert_eq!(
        site.registry_digest(&format!("{site_repo}:7.2")).as_deref(),
        Some(up.digest.as_str())
    );
    let tag = cosign::sig_tag(&up.digest);
    assert_eq!(
        site.registry_digest(&format!("{site_repo}:{tag}"))
            .as_deref(),
        Some(sig_digest.as_str())
    );
    // an independent reader: skopeo copies it out, openssl verifies it
    let got = t.path().join("from-site");
    let mut c = Command::new("skopeo");
    c.args(["copy", "-q", "--preserve-digests"]);
    for f in site.registry.skopeo_flags(false) {
        c.arg(f);
    }
    c.arg(site.registry.docker_ref(&format!("{site_repo}:{tag}")))
        .arg(format!("oci:{}:sig", got.display()));
    ok(&mut c);
    let idx: serde_json::Value =
        serde_json::from_slice(&fs::read(got.join("index.json")).unwrap()).unwrap();
    let md = idx["manifests"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(md, sig_digest);
    let blob = |d: &str| {
        got.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let sm: serde_json::Value = serde_json::from_slice(&fs::read(blob(&md)).unwrap()).unwrap();
    let layer = &sm["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload_path = blob(layer["digest"].as_str().unwrap());
    let payload: serde_json::Value =
        serde_json::from_slice(&fs::read(&payload_path).unwrap()).unwrap();
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        up.digest.as_str()
    );
    let b64 = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    fs::write(t.path().join("sig.b64"), format!("{b64}\n")).unwrap();
    ok(Command::new("openssl")
        .args(["base64", "-d", "-A", "-in"])
        .arg(t.path().join("sig.b64"))
        .arg("-out")
        .arg(t.path().join("sig.der")));
    let o = ok(Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&key.public)
        .arg("-signature")
        .arg(t.path().join("sig.der"))
        .arg(&payload_path));
    assert!(o.contains("Verified OK"), "{o}");
}

/// Ed25519 signer keys work the same (build and verify).
#[test]
fn an_ed25519_signer_is_verified_and_carried() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::ed25519(t.path(), "bitnami");
    let (out, pubkey) = signed_build(t.path(), &up, &key);
    let v = ok(stoa_e2e::harness::updater()
        .arg("verify")
        .arg(&out)
        .arg("--trust")
        .arg(&pubkey));
    assert!(
        v.contains(&format!("image {NAME} signed by bitnami (")),
        "{v}"
    );
}

/// Fixture: the image signed by another P-256 key than the signer's.
#[test]
fn a_signature_by_another_key_is_refused_at_build() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let signer = CosignKey::p256(t.path(), "bitnami");
    let other = CosignKey::p256(t.path(), "intruder");
    cosign::sign_and_push(t.path(), &up.reg, REPO, &up.digest, IDENTITY, &other);
    refused(
        t.path(),
        &up,
        &signer.public,
        "does not verify with the signer's key",
    );
}

/// Fixture: a valid signature by the signer over another manifest digest
/// (the `portal` image's), pushed at this image's `.sig` tag.
#[test]
fn a_signature_over_another_digest_is_refused_at_build() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    let other = layout_digest(&up.layout, "portal");
    let p = cosign::payload(IDENTITY, &other);
    let s = key.sign(t.path(), &p);
    let l = t.path().join("sig-other-digest");
    cosign::sig_layout(&l, "sig", &[(p, s)]);
    cosign::push_sig(&up.reg, &l, "sig", REPO, &up.digest);
    refused(
        t.path(),
        &up,
        &key.public,
        &format!("the payload signs manifest {other}"),
    );
}

/// Fixture: a valid signature by the signer for another image's name.
#[test]
fn a_signature_for_another_identity_is_refused_at_build() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    cosign::sign_and_push(
        t.path(),
        &up.reg,
        REPO,
        &up.digest,
        "docker.io/bitnami/postgresql",
        &key,
    );
    refused(
        t.path(),
        &up,
        &key.public,
        "the payload names image docker.io/bitnami/postgresql, not docker.io/bitnami/redis",
    );
}

/// Fixture: the signer's signature cut to half its bytes.
#[test]
fn a_truncated_signature_is_refused_at_build() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    let p = cosign::payload(IDENTITY, &up.digest);
    let mut s = key.sign(t.path(), &p);
    s.truncate(s.len() / 2);
    let l = t.path().join("sig-truncated");
    cosign::sig_layout(&l, "sig", &[(p, s)]);
    cosign::push_sig(&up.reg, &l, "sig", REPO, &up.digest);
    refused(t.path(), &up, &key.public, "malformed signature");
}

/// Fixture: a `.sig` manifest padded past the 64 KiB cap (an annotation of
/// 100 KiB).
#[test]
fn a_huge_sig_manifest_is_refused_at_build() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    let p = cosign::payload(IDENTITY, &up.digest);
    let s = key.sign(t.path(), &p);
    let l = t.path().join("sig-huge");
    let m = cosign::sig_layout(&l, "sig", &[(p, s)]);
    let mut v: serde_json::Value = serde_json::from_slice(&m).unwrap();
    v["annotations"] = serde_json::json!({"padding": "x".repeat(100 * 1024)});
    cosign::write_manifest(&l, "sig", &serde_json::to_vec(&v).unwrap());
    cosign::push_sig(&up.reg, &l, "sig", REPO, &up.digest);
    refused(t.path(), &up, &key.public, "over the limit of 65536");
}

/// Fixture: the `.sig` tag points at an ordinary image (the `portal`
/// image, tar+gzip layers).
#[test]
fn a_sig_tag_that_is_not_a_signature_manifest_is_refused_at_build() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    push(
        &up.reg,
        &up.layout,
        "portal",
        &format!("{REPO}:{}", cosign::sig_tag(&up.digest)),
    );
    refused(t.path(), &up, &key.public, "is not a signature manifest");
}

/// Fixture: no `.sig` tag at all, for a required signer.
#[test]
fn a_missing_signature_for_a_required_signer_is_refused_at_build() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    refused(t.path(), &up, &key.public, "no signature by this signer");
}

/// An optional signer without a signature does not refuse the build, and
/// an unsigned bundle has no signature fields at all.
#[test]
fn an_optional_signer_without_a_signature_builds_unsigned() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    let m = release_manifest(t.path(), &up, &key.public, false);
    let bk = keygen(t.path());
    let out = t.path().join("b.stoa");
    build_ok(&m, &bk, &out, &t.path().join("cache"), &insecure(&up.reg));
    let (names, manifest) = entries(&out);
    let text = String::from_utf8(manifest).unwrap();
    assert!(
        !text.contains("signatures") && !text.contains("signers"),
        "{text}"
    );
    assert!(!names.iter().any(|n| n.starts_with("signers/")));
}

/// Fixtures: a carried signature's blob altered in the bundle (unsigned
/// edit: its digest no longer holds), and the signer's key entry replaced
/// with another key and the manifest re-signed (what a holder of the
/// release key could ship): both fail verify.
#[test]
fn an_altered_carried_signature_fails_verify() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    let (out, pubkey) = signed_build(t.path(), &up, &key);
    let (_, manifest) = entries(&out);
    let mj: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let payload = mj["images"][0]["signatures"][0]["payload"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let base = stoa_e2e::tamper::Base::from_file(&out, &t.path().join("release.key"));

    // 1. the payload's bytes altered (the digest "docker-manifest-digest" changed)
    let mut entries = base.entries.clone();
    let e = entries
        .iter_mut()
        .find(|e| e.name == format!("oci/blobs/sha256/{payload}"))
        .unwrap();
    let pos = e.data.len() / 2;
    e.data[pos] ^= 1;
    let altered = t.path().join("altered-payload.stoa");
    fs::write(
        &altered,
        stoa_e2e::tamper::compress(&stoa_e2e::tamper::write_tar(&entries)),
    )
    .unwrap();
    let err = fails(
        stoa_e2e::harness::updater()
            .arg("verify")
            .arg(&altered)
            .arg("--trust")
            .arg(&pubkey),
        1,
    );
    assert!(err.contains(&payload), "{err}");

    // 2. another key in signers/bitnami.pub, re-signed
    let intruder = CosignKey::p256(t.path(), "intruder");
    let pem = fs::read(&intruder.public).unwrap();
    let resigned = t.path().join("other-key.stoa");
    fs::write(&resigned, base.content_signed("signers/bitnami.pub", &pem)).unwrap();
    let err = fails(
        stoa_e2e::harness::updater()
            .arg("verify")
            .arg(&resigned)
            .arg("--trust")
            .arg(&pubkey),
        1,
    );
    assert!(
        err.contains("check upstream signature") && err.contains("\"bitnami\""),
        "{err}"
    );
}

/// `[registry] mode = "serve"`: `serve` serves the carried signature
/// beside its image under the cosign tag, byte-exact (skopeo reads it).
#[test]
fn serve_serves_the_carried_signature_beside_its_image() {
    let s = stoa_e2e::site::Site::start();
    let port = s.use_serve_mode();
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    let (out, sig) = signed_build_with(t.path(), &up, &key, &s.key);
    ok(s.updater().arg("apply").arg(&out));
    let _srv = stoa_e2e::serve::Serve::start_on(&s.config, s.path(), None, port);
    let raw = |tag: &str| {
        let o = stoa_e2e::harness::run(
            Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!(
                    "docker://127.0.0.1:{port}/site/bitnami/redis:{tag}"
                )),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    assert_eq!(raw(&cosign::sig_tag(&up.digest)), sig);
    let image = raw("7.2");
    assert_eq!(
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&image))
        ),
        up.digest
    );
}

/// A delta on a signed release never leaves out what a reader needs to
/// re-verify the signatures (the `.sig` manifest, its payload, the signer's
/// key), although the base has them; the image's layers are left out.
#[test]
fn a_delta_carries_the_signatures_it_lists() {
    let t = tempfile::tempdir().unwrap();
    let up = upstream(t.path());
    let key = CosignKey::p256(t.path(), "bitnami");
    let (base, pubkey) = signed_build(t.path(), &up, &key);
    let m = t.path().join("release.toml");
    let text = fs::read_to_string(&m).unwrap();
    let next = t.path().join("next.toml");
    fs::write(
        &next,
        text.replace("version = \"2.3.0\"", "version = \"2.3.1\""),
    )
    .unwrap();
    let out = t.path().join("delta.stoa");
    let mut extra = insecure(&up.reg);
    extra.push("--base".into());
    extra.push(base.display().to_string());
    build_ok(
        &next,
        &t.path().join("release.key"),
        &out,
        &t.path().join("cache"),
        &extra,
    );
    let (names, manifest) = entries(&out);
    let mj: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(mj["format_version"], 2, "{mj}");
    let sig = &mj["images"][0]["signatures"][0];
    for d in [&sig["manifest"], &sig["payload"]] {
        let p = format!(
            "oci/blobs/sha256/{}",
            d.as_str().unwrap().trim_start_matches("sha256:")
        );
        assert!(names.contains(&p), "{p} not carried: {names:?}");
    }
    assert!(names.iter().any(|n| n == "signers/bitnami.pub"));
    assert!(
        !mj["delta"]["omitted"].as_array().unwrap().is_empty(),
        "{mj}"
    );
    let v = ok(stoa_e2e::harness::updater()
        .arg("verify")
        .arg(&out)
        .arg("--trust")
        .arg(&pubkey));
    assert!(
        v.contains(&format!("image {NAME} signed by bitnami (")),
        "{v}"
    );
}
