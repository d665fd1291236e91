//! Builds OCI image layouts in code: small sample images for the example
//! release and the tests, and large incompressible ones for benchmarks.
//! Everything is deterministic (fixed mtimes, sorted, seeded data).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;
use sha2::{Digest, Sha256};

/// One image of a fixture layout.
#[derive(Debug, Clone)]
pub struct FixtureImage {
    /// `org.opencontainers.image.ref.name` in the layout's index.json.
    pub ref_name: String,
    /// `(os, arch)`; more than one makes a multi-platform index.
    pub platforms: Vec<(String, String)>,
    /// Layer blobs (gzip tars), shared layers are simply the same bytes.
    pub layers: Vec<Vec<u8>>,
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A deterministic gzip tar layer holding the given files.
pub fn layer_tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = GzEncoder::new(Vec::new(), Compression::new(6));
    let mut tb = tar::Builder::new(gz);
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tb.append_data(&mut h, path, *data).expect("in-memory tar");
    }
    tb.into_inner()
        .and_then(|g| g.finish())
        .expect("in-memory gzip")
}

/// Writes a blob into `<layout>/blobs/sha256/` and returns its descriptor.
pub fn put_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> io::Result<serde_json::Value> {
    let d = sha(bytes);
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(&d), bytes)?;
    Ok(json!({"mediaType": media_type, "digest": format!("sha256:{d}"), "size": bytes.len()}))
}

/// A layer's diff id: the digest of its uncompressed content, as a
/// runtime checks it when it unpacks the layer (containerd refuses "wrong
/// diff id calculated on extraction" otherwise).
fn diff_id(layout: &Path, layer: &serde_json::Value) -> io::Result<String> {
    let d = layer["digest"].as_str().unwrap_or("");
    let f = fs::File::open(
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:")),
    )?;
    let mut h = Sha256::new();
    io::copy(
        &mut flate2::read::GzDecoder::new(io::BufReader::new(f)),
        &mut HashWriter(&mut h),
    )?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Hashes what is written to it.
struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn image_manifest(
    layout: &Path,
    os: &str,
    arch: &str,
    layers: &[serde_json::Value],
    tag: &str,
) -> io::Result<serde_json::Value> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| diff_id(layout, l))
        .collect::<io::Result<_>>()?;
    let config = json!({
        "architecture": arch, "os": os,
        "config": {"Labels": {"org.opencontainers.image.title": tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_desc = put_blob(
        layout,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config)?,
    )?;
    let m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layers,
    });
    put_blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&m)?,
    )
}

/// Writes (or adds to) an OCI image layout at `layout`.
pub fn write_layout(layout: &Path, images: &[FixtureImage]) -> io::Result<()> {
    fs::create_dir_all(layout.join("blobs/sha256"))?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index_path = layout.join("index.json");
    let mut index: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    if let Ok(b) = fs::read(&index_path) {
        let v: serde_json::Value = serde_json::from_slice(&b)?;
        for m in v["manifests"].as_array().cloned().unwrap_or_default() {
            let name = m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            index.insert(name, m);
        }
    }
    for img in images {
        let layers: Vec<serde_json::Value> = img
            .layers
            .iter()
            .map(|l| put_blob(layout, "application/vnd.oci.image.layer.v1.tar+gzip", l))
            .collect::<io::Result<_>>()?;
        let mut desc = if img.platforms.len() == 1 {
            let (os, arch) = &img.platforms[0];
            image_manifest(layout, os, arch, &layers, &img.ref_name)?
        } else {
            let mut children = Vec::new();
            for (os, arch) in &img.platforms {
                // each platform gets its own marker layer on top of the shared ones
                let mut ls = layers.clone();
                let marker = layer_tgz(&[("etc/platform", format!("{os}/{arch}\n").as_bytes())]);
                ls.push(put_blob(
                    layout,
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    &marker,
                )?);
                let mut d = image_manifest(layout, os, arch, &ls, &img.ref_name)?;
                d["platform"] = json!({"os": os, "architecture": arch});
                children.push(d);
            }
            let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children});
            put_blob(
                layout,
                "application/vnd.oci.image.index.v1+json",
                &serde_json::to_vec(&idx)?,
            )?
        };
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": img.ref_name});
        index.insert(img.ref_name.clone(), desc);
    }
    let idx = json!({"schemaVersion": 2, "manifests": index.into_values().collect::<Vec<_>>()});
    fs::write(index_path, serde_json::to_vec_pretty(&idx)?)
}

/// A seeded xorshift stream: incompressible, cheap, reproducible.
pub fn pseudo_random(seed: u64, buf: &mut [u8]) {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Writes a gzip file of `size` incompressible bytes (stored deflate blocks,
/// so it is fast to make and, like a real layer, does not compress further)
/// straight into the layout's blobs, and returns its descriptor. Memory use
/// is one buffer whatever the size.
pub fn write_random_layer(layout: &Path, size: u64, seed: u64) -> io::Result<serde_json::Value> {
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".tmp-{seed}"));
    struct Tee<W: Write> {
        w: W,
        h: Sha256,
        n: u64,
    }
    impl<W: Write> Write for Tee<W> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = self.w.write(b)?;
            self.h.update(&b[..n]);
            self.n += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.w.flush()
        }
    }
    let f = io::BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?);
    let mut gz = GzEncoder::new(
        Tee {
            w: f,
            h: Sha256::new(),
            n: 0,
        },
        Compression::none(),
    );
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    let mut s = seed;
    while left > 0 {
        let n = buf.len().min(left as usize);
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        pseudo_random(s, &mut buf[..n]);
        gz.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let mut tee = gz.finish()?;
    tee.w.flush()?;
    let d = hex::encode(tee.h.finalize_reset());
    fs::rename(&tmp, dir.join(&d))?;
    Ok(
        json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{d}"), "size": tee.n}),
    )
}

/// A layout with `count` images, each holding one incompressible layer of
/// `layer_size` bytes plus a small shared base layer. For benchmarks.
pub fn write_bench_layout(layout: &Path, count: usize, layer_size: u64) -> io::Result<()> {
    fs::create_dir_all(layout)?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let base = put_blob(
        layout,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &layer_tgz(&[("etc/os-release", b"ID=bench\n")]),
    )?;
    let mut manifests = Vec::new();
    for i in 0..count {
        let big = write_random_layer(layout, layer_size, 1000 + i as u64)?;
        let tag = format!("bench-{i}");
        let mut d = image_manifest(layout, "linux", "amd64", &[base.clone(), big], &tag)?;
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        manifests.push(d);
    }
    let idx = json!({"schemaVersion": 2, "manifests": manifests});
    fs::write(layout.join("index.json"), serde_json::to_vec_pretty(&idx)?)
}

/// The sample images of the example release (manifests/): api, gateway and
/// portal sharing a base layer; the gateway is multi-platform.
pub fn sample_images(version: &str) -> Vec<FixtureImage> {
    let base = layer_tgz(&[
        ("etc/os-release", b"ID=stoa-base\nVERSION_ID=1\n"),
        ("bin/sh", b"#!stub\n"),
    ]);
    let amd = vec![("linux".to_owned(), "amd64".to_owned())];
    let multi = vec![
        ("linux".to_owned(), "amd64".to_owned()),
        ("linux".to_owned(), "arm64".to_owned()),
    ];
    let app = |name: &str| {
        layer_tgz(&[(
            &format!("opt/stoa/{name}"),
            format!("{name} {version}\n").as_bytes(),
        )])
    };
    vec![
        FixtureImage {
            ref_name: format!("api-{version}"),
            platforms: amd.clone(),
            layers: vec![base.clone(), app("api")],
        },
        FixtureImage {
            ref_name: format!("gateway-{version}"),
            platforms: multi,
            layers: vec![base.clone(), app("gateway")],
        },
        FixtureImage {
            ref_name: format!("portal-{version}"),
            platforms: amd,
            layers: vec![base, app("portal")],
        },
    ]
}

/// The upstream images of the Full On-Premises stack, as its charts name
/// them (the Chart.yaml `images` annotations of the bitnami charts, the
/// `image` values of opensearch and vault; ../shared/upstream-charts) and
/// as the example release (manifests/stoa-platform*.toml) lists them.
/// Nobody can download them here: the local mirror (scripts/local-mirror.sh)
/// serves stand-ins made under these names by [`stack_images`].
pub const STACK_IMAGES: &[&str] = &[
    // postgresql-ha 16.3.4
    "docker.io/bitnami/postgresql-repmgr:17.6.0-debian-12-r2",
    "docker.io/bitnami/pgpool:4.6.3-debian-12-r0",
    "docker.io/bitnami/postgres-exporter:0.17.1-debian-12-r16",
    "docker.io/bitnami/os-shell:12-debian-12-r51",
    // opensearch 3.6.0 (image.tag defaults to the appVersion; busybox for
    // the init containers)
    "docker.io/opensearchproject/opensearch:3.6.0",
    "docker.io/library/busybox:latest",
    // minio 17.0.23
    "docker.io/bitnami/minio:2025.7.23-debian-12-r3",
    "docker.io/bitnami/minio-client:2025.7.21-debian-12-r2",
    "docker.io/bitnami/minio-object-browser:2.0.2-debian-12-r3",
    "docker.io/bitnami/os-shell:12-debian-12-r50",
    // vault 0.34.1 (server and injector agent, injector, CSI provider)
    "docker.io/hashicorp/vault:2.0.4",
    "docker.io/hashicorp/vault-k8s:1.7.6",
    "docker.io/hashicorp/vault-csi-provider:1.7.4",
];

/// A layout ref name for an upstream image name (`/` and `:` become `-`).
pub fn stack_ref_name(upstream: &str) -> String {
    upstream.replace(['/', ':'], "-")
}

/// Small stand-ins for [`STACK_IMAGES`], each a two-platform index
/// (linux/amd64, linux/arm64, as the real ones are) sharing one base layer,
/// with the upstream name inside; ref names by [`stack_ref_name`].
pub fn stack_images() -> Vec<(String, FixtureImage)> {
    let base = layer_tgz(&[
        ("etc/os-release", b"ID=stoa-stand-in\nVERSION_ID=1\n"),
        ("bin/sh", b"#!stub\n"),
    ]);
    STACK_IMAGES
        .iter()
        .map(|name| {
            let own = layer_tgz(&[(
                "opt/stand-in/IMAGE",
                format!("stand-in for {name}\n").as_bytes(),
            )]);
            (
                (*name).to_owned(),
                FixtureImage {
                    ref_name: stack_ref_name(name),
                    platforms: vec![
                        ("linux".to_owned(), "amd64".to_owned()),
                        ("linux".to_owned(), "arm64".to_owned()),
                    ],
                    layers: vec![base.clone(), own],
                },
            )
        })
        .collect()
}

/// Adds a non-image OCI artifact to the layout at `layout` (OCI image spec
/// 1.1: an image manifest with `artifactType`, the empty config
/// `application/vnd.oci.empty.v1+json` and one layer of `layer_media_type`
/// holding `content`), named `ref_name` in `index.json`; returns its
/// manifest digest.
pub fn write_artifact(
    layout: &Path,
    ref_name: &str,
    artifact_type: &str,
    layer_media_type: &str,
    content: &[u8],
) -> io::Result<String> {
    write_layout(layout, &[])?;
    let config = put_blob(layout, "application/vnd.oci.empty.v1+json", b"{}")?;
    let layer = put_blob(layout, layer_media_type, content)?;
    let m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": config,
        "layers": [layer],
    });
    let mut desc = put_blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&m)?,
    )?;
    desc["artifactType"] = json!(artifact_type);
    desc["annotations"] = json!({"org.opencontainers.image.ref.name": ref_name});
    let index_path = layout.join("index.json");
    let mut idx: serde_json::Value = serde_json::from_slice(&fs::read(&index_path)?)?;
    if let Some(list) = idx["manifests"].as_array_mut() {
        list.push(desc.clone());
    }
    fs::write(index_path, serde_json::to_vec_pretty(&idx)?)?;
    Ok(desc["digest"].as_str().unwrap_or_default().to_owned())
}
