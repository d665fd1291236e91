//! Tests of the upstream signature verifier: each refusal a named test with
//! its fixture (built here with the p256 and ed25519 crates; the e2e tests
//! sign with openssl).

use super::*;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;

fn p256_key() -> (p256::ecdsa::SigningKey, UpstreamKey) {
    let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let pem = sk
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    (sk, UpstreamKey::from_pem(pem.as_bytes()).unwrap())
}

fn image() -> ImageRef {
    ImageRef::parse("docker.io/bitnami/redis:7.2").unwrap()
}

fn digest() -> Sha256Digest {
    Sha256Digest::of(b"the image manifest")
}

fn payload(identity: &str, d: &str) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"critical": {"identity": {"docker-reference": identity},
        "image": {"docker-manifest-digest": d}, "type": PAYLOAD_TYPE}, "optional": null}),
    )
    .unwrap()
}

fn layer(p: &[u8], sig: Vec<u8>) -> SigLayer {
    SigLayer {
        payload: Sha256Digest::of(p),
        size: p.len() as u64,
        signature: sig,
    }
}

fn der_sig(sk: &p256::ecdsa::SigningKey, p: &[u8]) -> Vec<u8> {
    let s: p256::ecdsa::Signature = sk.sign(p);
    s.to_der().as_bytes().to_vec()
}

#[test]
fn a_good_p256_signature_verifies() {
    let (sk, key) = p256_key();
    let p = payload("docker.io/bitnami/redis", &digest().oci());
    verify_layer(&layer(&p, der_sig(&sk, &p)), &p, &key, &image(), &digest()).unwrap();
    // the short name and the exact tag name the same image
    let p = payload("bitnami/redis:7.2", &digest().oci());
    verify_layer(&layer(&p, der_sig(&sk, &p)), &p, &key, &image(), &digest()).unwrap();
}

#[test]
fn a_good_ed25519_signature_verifies() {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    use ed25519_dalek::Signer as _;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let pem = sk
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let key = UpstreamKey::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(key.algorithm(), "ed25519");
    let p = payload("docker.io/bitnami/redis", &digest().oci());
    let sig = sk.sign(&p).to_bytes().to_vec();
    verify_layer(&layer(&p, sig), &p, &key, &image(), &digest()).unwrap();
}

#[test]
fn another_key_is_a_bad_signature() {
    let (_, key) = p256_key();
    let other = p256::ecdsa::SigningKey::from_slice(&[8u8; 32]).unwrap();
    let p = payload("docker.io/bitnami/redis", &digest().oci());
    let e = verify_layer(
        &layer(&p, der_sig(&other, &p)),
        &p,
        &key,
        &image(),
        &digest(),
    );
    assert!(
        matches!(e, Err(SignatureProblem::BadSignature { .. })),
        "{e:?}"
    );
}

#[test]
fn another_digest_is_refused() {
    let (sk, key) = p256_key();
    let p = payload("docker.io/bitnami/redis", &Sha256Digest::of(b"x").oci());
    let e = verify_layer(&layer(&p, der_sig(&sk, &p)), &p, &key, &image(), &digest());
    assert!(
        matches!(e, Err(SignatureProblem::DigestMismatch { .. })),
        "{e:?}"
    );
}

#[test]
fn another_identity_is_refused() {
    let (sk, key) = p256_key();
    for id in [
        "docker.io/bitnami/postgresql",
        "quay.io/bitnami/redis",
        "docker.io/bitnami/redis:7.4",
        "not a reference",
    ] {
        let p = payload(id, &digest().oci());
        let e = verify_layer(&layer(&p, der_sig(&sk, &p)), &p, &key, &image(), &digest());
        assert!(
            matches!(e, Err(SignatureProblem::IdentityMismatch { .. })),
            "{id}: {e:?}"
        );
    }
}

#[test]
fn a_truncated_signature_is_malformed() {
    let (sk, key) = p256_key();
    let p = payload("docker.io/bitnami/redis", &digest().oci());
    let mut s = der_sig(&sk, &p);
    s.truncate(s.len() / 2);
    let e = verify_layer(&layer(&p, s), &p, &key, &image(), &digest());
    assert!(
        matches!(e, Err(SignatureProblem::MalformedSignature(_))),
        "{e:?}"
    );
}

#[test]
fn payloads_are_parsed_strictly_and_bounded() {
    assert!(matches!(
        parse_payload(&vec![b' '; MAX_SIGNATURE_PAYLOAD as usize + 1]),
        Err(SignatureProblem::PayloadTooLarge { .. })
    ));
    for bad in [
        &b"{}"[..],
        br#"{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"d"},"type":"other"}}"#,
        br#"{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"d"},"type":"cosign container image signature","extra":1}}"#,
        b"\xff",
    ] {
        assert!(
            matches!(parse_payload(bad), Err(SignatureProblem::BadPayload(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn sig_manifests_are_bounded_and_typed() {
    let d = digest().oci();
    let good = serde_json::json!({"schemaVersion": 2, "mediaType": oci::MT_OCI_MANIFEST,
        "config": {"mediaType": oci::MT_OCI_IMAGE_CONFIG, "digest": d, "size": 10},
        "layers": [{"mediaType": MT_SIMPLESIGNING, "digest": d, "size": 10,
                    "annotations": {ANNOTATION_SIGNATURE: "AAAA"}}]});
    let m = parse_sig_manifest(&serde_json::to_vec(&good).unwrap()).unwrap();
    assert_eq!(m.layers.len(), 1);
    assert_eq!(m.blobs().len(), 2);
    // too large
    let e = parse_sig_manifest(&vec![b' '; MAX_SIGNATURE_MANIFEST as usize + 1]);
    assert!(
        matches!(e, Err(SignatureProblem::ManifestTooLarge { .. })),
        "{e:?}"
    );
    // an ordinary image layer; an index; a huge payload; no annotation
    let mut v = good.clone();
    v["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
    assert!(matches!(
        parse_sig_manifest(&serde_json::to_vec(&v).unwrap()),
        Err(SignatureProblem::NotASignatureManifest(_))
    ));
    let idx =
        serde_json::json!({"schemaVersion": 2, "mediaType": oci::MT_OCI_INDEX, "manifests": []});
    assert!(matches!(
        parse_sig_manifest(&serde_json::to_vec(&idx).unwrap()),
        Err(SignatureProblem::NotASignatureManifest(_))
    ));
    let mut v = good.clone();
    v["layers"][0]["size"] = (1u64 << 30).into();
    assert!(matches!(
        parse_sig_manifest(&serde_json::to_vec(&v).unwrap()),
        Err(SignatureProblem::PayloadTooLarge { .. })
    ));
    let mut v = good;
    v["layers"][0]["annotations"] = serde_json::json!({});
    assert!(matches!(
        parse_sig_manifest(&serde_json::to_vec(&v).unwrap()),
        Err(SignatureProblem::NotASignatureManifest(_))
    ));
}

#[test]
fn a_signer_key_must_be_p256_or_ed25519_pem() {
    assert!(UpstreamKey::from_pem(b"not pem").is_err());
    let (_, key) = p256_key();
    assert_eq!(key.algorithm(), "ecdsa-p256");
}
