//! Upstream image signatures in cosign's documented format, made with
//! openssl (Debian's skopeo is built without sigstore and cosign is not
//! packaged): a simple-signing payload layer
//! (`application/vnd.dev.cosign.simplesigning.v1+json`), its signature
//! (ECDSA P-256 over SHA-256, ASN.1 DER, `openssl dgst -sha256 -sign`; or
//! Ed25519, `openssl pkeyutl -sign -rawin`) base64 in the layer annotation
//! `dev.cosignproject.cosign/signature`, in an OCI image manifest pushed
//! with skopeo as `<repo>:sha256-<hex>.sig` into a registry.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::harness::{ok, Registry};
use crate::oci_fixture::put_blob;

/// A signer's key pair made by openssl in `dir`: `<name>.key` and
/// `<name>.pub` (SPKI PEM).
#[derive(Debug, Clone)]
pub struct CosignKey {
    pub key: PathBuf,
    pub public: PathBuf,
    pub ed25519: bool,
}

impl CosignKey {
    /// A P-256 key: `openssl ecparam -name prime256v1 -genkey`.
    pub fn p256(dir: &Path, name: &str) -> Self {
        let key = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        ok(Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(&key));
        ok(Command::new("openssl")
            .args(["ec", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public));
        Self {
            key,
            public,
            ed25519: false,
        }
    }

    /// An Ed25519 key: `openssl genpkey -algorithm ed25519`.
    pub fn ed25519(dir: &Path, name: &str) -> Self {
        let key = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        ok(Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key));
        ok(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public));
        Self {
            key,
            public,
            ed25519: true,
        }
    }

    /// The raw signature of `data` (written to a temp file in `dir`).
    pub fn sign(&self, dir: &Path, data: &[u8]) -> Vec<u8> {
        let input = dir.join("to-sign.bin");
        let sig = dir.join("sig.bin");
        fs::write(&input, data).unwrap();
        if self.ed25519 {
            ok(Command::new("openssl")
                .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
                .arg(&self.key)
                .arg("-in")
                .arg(&input)
                .arg("-out")
                .arg(&sig));
        } else {
            ok(Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&self.key)
                .arg("-out")
                .arg(&sig)
                .arg(&input));
        }
        fs::read(&sig).unwrap()
    }
}

/// cosign's simple-signing payload for `identity` at `digest`.
pub fn payload(identity: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap()
}

/// Standard base64 (the annotation's encoding).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Writes a cosign `.sig` manifest into an OCI layout at `layout` under
/// `ref_name`: one simple-signing layer per `(payload, signature)`, a
/// config as cosign writes it; returns the manifest's bytes.
pub fn sig_layout(layout: &Path, ref_name: &str, layers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (p, sig) in layers {
        let mut d = put_blob(
            layout,
            "application/vnd.dev.cosign.simplesigning.v1+json",
            p,
        )
        .unwrap();
        diff_ids.push(d["digest"].clone());
        d["annotations"] = json!({"dev.cosignproject.cosign/signature": base64(sig)});
        descs.push(d);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "", "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}
    }))
    .unwrap();
    let cfg = put_blob(layout, "application/vnd.oci.image.config.v1+json", &config).unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg,
        "layers": descs,
    });
    write_manifest(layout, ref_name, &serde_json::to_vec(&manifest).unwrap())
}

/// Puts manifest bytes into a layout under `ref_name` (replacing the
/// layout's index); returns them.
pub fn write_manifest(layout: &Path, ref_name: &str, bytes: &[u8]) -> Vec<u8> {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut d = put_blob(layout, "application/vnd.oci.image.manifest.v1+json", bytes).unwrap();
    d["annotations"] = json!({"org.opencontainers.image.ref.name": ref_name});
    let idx = json!({"schemaVersion": 2, "manifests": [d]});
    fs::write(layout.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    bytes.to_vec()
}

/// The tag of an image's signatures: `sha256-<hex>.sig`.
pub fn sig_tag(digest: &str) -> String {
    format!("sha256-{}.sig", digest.trim_start_matches("sha256:"))
}

/// Pushes the layout's `ref_name` to `<reg>/<repo>:<sha256-hex>.sig`
/// (skopeo, digests kept).
pub fn push_sig(reg: &Registry, layout: &Path, ref_name: &str, repo: &str, digest: &str) {
    crate::registry_fixture::push(
        reg,
        layout,
        ref_name,
        &format!("{repo}:{}", sig_tag(digest)),
    );
}

/// Signs `repo`'s image at `digest` in `reg` for `identity` with `key`:
/// the normal case, one layer.
pub fn sign_and_push(
    dir: &Path,
    reg: &Registry,
    repo: &str,
    digest: &str,
    identity: &str,
    key: &CosignKey,
) -> Vec<u8> {
    let p = payload(identity, digest);
    let sig = key.sign(dir, &p);
    let layout = dir.join(format!("sig-{}", digest.trim_start_matches("sha256:")));
    let m = sig_layout(&layout, "sig", &[(p, sig)]);
    push_sig(reg, &layout, "sig", repo, digest);
    m
}
