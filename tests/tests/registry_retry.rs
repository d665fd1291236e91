//! Retries: a flaky front (a TCP proxy on loopback) answers the first
//! connections with 503 and 429, or cuts a connection mid-blob, then
//! forwards to a real docker-registry. The build succeeds, counting its
//! retries; a registry that only fails is reported after the last attempt.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use stoa_e2e::harness::{fails, Registry, RegistryOptions};
use stoa_e2e::oci_fixture::{write_layout, write_random_layer, FixtureImage};
use stoa_e2e::registry_fixture::*;

/// What the proxy does with connection number `n` (0-based).
#[derive(Clone, Copy)]
enum Mode {
    /// The first connections get these statuses, the rest are forwarded.
    Statuses(&'static [u16]),
    /// Every connection gets 503.
    Always503,
    /// Forward, but cut the first connection that carries more than
    /// `bytes` from the registry.
    CutAfter(usize),
}

fn forward(mut from: TcpStream, mut to: TcpStream, limit: Option<(Arc<AtomicUsize>, usize)>) {
    let mut buf = [0u8; 16 << 10];
    let mut sent = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        sent += n;
        if let Some((cuts, after)) = &limit {
            if sent > *after && cuts.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = to.write_all(&buf[..n / 2]);
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Starts the proxy; returns its `127.0.0.1:<port>`.
fn flaky_proxy(upstream: u16, mode: Mode) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let cuts = Arc::new(AtomicUsize::new(0));
    thread::spawn(move || {
        for (n, c) in l.incoming().enumerate() {
            let Ok(mut c) = c else { continue };
            let status = match mode {
                Mode::Statuses(s) => s.get(n).copied(),
                Mode::Always503 => Some(503),
                Mode::CutAfter(_) => None,
            };
            if let Some(code) = status {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
                continue;
            }
            let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (c2, up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
            let limit = match mode {
                Mode::CutAfter(b) => Some((cuts.clone(), b)),
                _ => None,
            };
            thread::spawn(move || forward(c, up, None));
            thread::spawn(move || forward(up2, c2, limit));
        }
    });
    addr
}

fn setup(t: &std::path::Path) -> (Registry, String) {
    let reg = Registry::start(t, RegistryOptions::default());
    let layout = t.join("layout");
    let big = write_random_layer(&layout, 4 << 20, 5).unwrap();
    let bytes = std::fs::read(
        layout.join("blobs/sha256").join(
            big["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        ),
    )
    .unwrap();
    write_layout(
        &layout,
        &[FixtureImage {
            ref_name: "app".into(),
            platforms: vec![("linux".into(), "amd64".into())],
            layers: vec![bytes],
        }],
    )
    .unwrap();
    push(&reg, &layout, "app", "stoa/app:1");
    let digest = registry_digest(&reg, "stoa/app:1");
    (reg, digest)
}

fn build_through(t: &std::path::Path, proxy: &str) -> std::process::Command {
    let key = keygen(t);
    let manifest = release()
        .image(&format!("{proxy}/stoa/app:1"), None)
        .write(t);
    build_cmd(
        &manifest,
        &key,
        &t.join("b.stoa"),
        &t.join("cache"),
        &[
            "--insecure-registry".to_owned(),
            proxy.to_owned(),
            "--jobs".into(),
            "1".into(),
        ],
    )
}

#[test]
fn registry_retries_5xx_and_429() {
    let t = tempfile::tempdir().unwrap();
    let (reg, digest) = setup(t.path());
    // oci-client pings /v2/ before each anonymous request and ignores a
    // failed ping, so about half of these reach a manifest or blob request
    let proxy = flaky_proxy(reg.port, Mode::Statuses(&[503, 429, 502, 503, 503, 429]));
    let out = stoa_e2e::harness::ok(&mut build_through(t.path(), &proxy));
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(s["pulled"]["retries"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(
        image_of(&t.path().join("b.stoa"), &format!("{proxy}/stoa/app:1"))["digest"],
        digest.as_str()
    );
}

#[test]
fn registry_resumes_a_cut_blob_download() {
    let t = tempfile::tempdir().unwrap();
    let (reg, digest) = setup(t.path());
    let proxy = flaky_proxy(reg.port, Mode::CutAfter(1 << 20));
    let out = stoa_e2e::harness::ok(&mut build_through(t.path(), &proxy));
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(s["pulled"]["retries"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(
        image_of(&t.path().join("b.stoa"), &format!("{proxy}/stoa/app:1"))["digest"],
        digest.as_str()
    );
}

#[test]
fn registry_that_keeps_failing_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let (reg, _) = setup(t.path());
    let proxy = flaky_proxy(reg.port, Mode::Always503);
    let err = fails(&mut build_through(t.path(), &proxy), 3);
    assert!(err.contains("stoa/app:1") && err.contains("503"), "{err}");
    assert!(err.contains("after 6 attempts"), "{err}");
}
