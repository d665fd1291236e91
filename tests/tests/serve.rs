//! `stoa-updater serve` against real clients: a site applies a bundle with
//! the harness (real docker-registry, PostgreSQL, the Helm stand-in), then
//! `serve` answers skopeo and raw HTTP/1.1 requests from the site's store
//! on a loopback port. One site is set up, and each rule is a named
//! function run against it; the tampering rules run on a copy of the
//! state folder, with their own `serve`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use stoa_e2e::harness::{self, ok};
use stoa_e2e::serve::Serve;
use stoa_e2e::site::Site;

/// One response: status, headers (lower-case names), body, and whether
/// the body was as long as `Content-Length` said.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    whole: bool,
}

impl Resp {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Sends `method target` with `extra` header lines, `Connection: close`,
/// and reads the whole answer.
fn http(port: u16, method: &str, target: &str, extra: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    read_resp(&mut BufReader::new(s), method)
}

/// Reads one response from `r`: the head, then `Content-Length` bytes of
/// body (fewer when the server cut it: `whole` is false), so the next
/// response on a kept-alive connection can be read after it.
fn read_resp(r: &mut impl BufRead, method: &str) -> Resp {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).unwrap_or(0);
        if n == 0 {
            panic!("no head: {head:?}");
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
        whole: true,
    };
    if method != "HEAD" {
        let len: u64 = resp.header("content-length").unwrap().parse().unwrap();
        let mut body = Vec::new();
        let _ = r.take(len).read_to_end(&mut body);
        resp.whole = body.len() as u64 == len;
        resp.body = body;
    }
    resp
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

fn skopeo_copy(port: u16, reference: &str, dest: &Path) -> std::process::Output {
    skopeo_copy_with(port, reference, dest, &["--src-tls-verify=false", "--all"])
}

/// `skopeo copy ARGS docker://127.0.0.1:PORT/REFERENCE oci:DEST`.
fn skopeo_copy_with(
    port: u16,
    reference: &str,
    dest: &Path,
    args: &[&str],
) -> std::process::Output {
    harness::run(
        Command::new("skopeo")
            .arg("copy")
            .args(args)
            .arg(format!("docker://127.0.0.1:{port}/{reference}"))
            .arg(format!("oci:{}", dest.display())),
    )
}

#[track_caller]
fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The manifest digest skopeo wrote into an OCI layout's index.json.
fn layout_digest(dir: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    v["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

#[test]
fn serve_answers_as_a_read_only_oci_registry_and_never_serves_wrong_bytes() {
    harness::require("skopeo", "skopeo");
    let s = Site::start();
    // one image big enough (24 MiB) that a client leaving mid-blob leaves
    // for real, beyond any socket buffer
    let big_layout = s.path().join("big-images");
    stoa_e2e::oci_fixture::write_bench_layout(&big_layout, 1, 24 << 20).unwrap();
    // the gateway carried with both of its platforms: a two-platform index
    let b200 = s.bundle_with("2.0.0", None, &|t| {
        let at = t
            .find("name = \"registry.gostoa.dev/stoa/gateway:2.0.0\"")
            .expect("the example release's gateway");
        let one = "platforms = [\"linux/amd64\"]";
        let p = at + t[at..].find(one).expect("the gateway's platforms");
        let t = format!(
            "{}platforms = [\"linux/amd64\", \"linux/arm64\"]{}",
            &t[..p],
            &t[p + one.len()..]
        );
        format!(
            "{t}\n[[images]]\nname = \"registry.gostoa.dev/stoa/big:1.0\"\nsource = \"oci:{}:bench-0\"\n",
            big_layout.display()
        )
    });
    ok(s.updater().arg("apply").arg(&b200));
    let srv = Serve::start(&s.config, s.path());
    let api = Site::bundle_image_digest(&b200, "registry.gostoa.dev/stoa/api:2.0.0");
    let gateway = Site::bundle_image_digest(&b200, "registry.gostoa.dev/stoa/gateway:2.0.0");

    skopeo_pulls_an_image_under_the_name_apply_pushed_it_to(&srv, &s, &api);
    a_client_trying_tls_first_is_answered_at_once(&srv);
    skopeo_pulls_a_multi_platform_index_whole(&srv, &s, &gateway);
    each_platform_of_the_index_resolves_by_tag_index_digest_and_its_own(&srv, &s, &gateway);
    two_requests_on_one_kept_alive_connection_are_both_answered(&srv, &api);
    idle_kept_alive_clients_do_not_starve_a_new_one(&srv);
    manifests_by_tag_and_digest_have_type_and_digest_headers(&srv, &api);
    catalog_tags_and_referrers_list_what_is_served(&srv);
    writes_are_405_unsupported(&srv, &api);
    path_tricks_and_over_long_names_are_400(&srv);
    unknown_digests_are_404(&srv);
    bad_ranges_are_416_and_good_ranges_206(&srv, &api);
    let big = Site::bundle_image_digest(&b200, "registry.gostoa.dev/stoa/big:1.0");
    a_client_gone_mid_blob_frees_its_worker(&srv, &big);
    a_tampered_store_blob_is_never_served_as_good(&s, &api);
    serve_over_tls_is_pulled_with_the_site_ca_and_refuses_plain_http(&s, &gateway);
}

/// The blob of the api image's biggest layer.
fn a_layer(srv: &Serve, api: &str) -> (String, u64) {
    let m = http(
        srv.port,
        "GET",
        &format!("/v2/site/stoa/api/manifests/{api}"),
        "",
    )
    .json();
    let l = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64())
        .unwrap();
    (
        l["digest"].as_str().unwrap().to_owned(),
        l["size"].as_u64().unwrap(),
    )
}

fn skopeo_pulls_an_image_under_the_name_apply_pushed_it_to(srv: &Serve, s: &Site, api: &str) {
    let dest = s.path().join("pulled-api");
    let t = Instant::now();
    let out = skopeo_copy(srv.port, "site/stoa/api:2.0.0", &dest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("skopeo copy from serve: {:?}", t.elapsed());
    // a few small blobs from loopback: the old 10 s wait (skopeo's TLS
    // handshake timeout, a_client_trying_tls_first_is_answered_at_once) is
    // gone
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "skopeo copy of a tiny image took {:?}",
        t.elapsed()
    );
    assert_eq!(
        layout_digest(&dest),
        api,
        "the bundle's manifest, byte for byte"
    );
    // the same name and digest on the site registry apply pushed to
    assert_eq!(
        s.registry_digest("site/stoa/api:2.0.0").as_deref(),
        Some(api)
    );
}

fn skopeo_pulls_a_multi_platform_index_whole(srv: &Serve, s: &Site, gateway: &str) {
    let dest = s.path().join("pulled-gateway");
    let out = skopeo_copy(srv.port, "site/stoa/gateway:2.0.0", &dest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(layout_digest(&dest), gateway);
    let idx = http(
        srv.port,
        "GET",
        &format!("/v2/site/stoa/gateway/manifests/{gateway}"),
        "",
    );
    assert_eq!(
        idx.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    for child in idx.json()["manifests"].as_array().unwrap() {
        let d = child["digest"].as_str().unwrap();
        let r = http(
            srv.port,
            "GET",
            &format!("/v2/site/stoa/gateway/manifests/{d}"),
            "",
        );
        assert_eq!(r.status, 200, "platform manifest {d}");
        assert_eq!(sha(&r.body), d);
    }
}

fn manifests_by_tag_and_digest_have_type_and_digest_headers(srv: &Serve, api: &str) {
    for target in [
        "/v2/site/stoa/api/manifests/2.0.0".to_owned(),
        format!("/v2/site/stoa/api/manifests/{api}"),
    ] {
        for method in ["GET", "HEAD"] {
            let r = http(srv.port, method, &target, "");
            assert_eq!(r.status, 200, "{method} {target}");
            assert_eq!(r.header("docker-content-digest"), Some(api));
            assert_eq!(
                r.header("content-type"),
                Some("application/vnd.oci.image.manifest.v1+json")
            );
            if method == "GET" {
                assert_eq!(sha(&r.body), api);
            } else {
                assert!(r.body.is_empty());
                assert!(r.header("content-length").unwrap().parse::<u64>().unwrap() > 0);
            }
        }
    }
    let base = http(srv.port, "GET", "/v2/", "");
    assert_eq!(base.status, 200);
    assert_eq!(
        base.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
}

fn catalog_tags_and_referrers_list_what_is_served(srv: &Serve) {
    let c = http(srv.port, "GET", "/v2/_catalog", "").json();
    assert_eq!(
        c["repositories"],
        serde_json::json!([
            "site/stoa/api",
            "site/stoa/big",
            "site/stoa/gateway",
            "site/stoa/portal"
        ])
    );
    let p = http(srv.port, "GET", "/v2/_catalog?n=1", "");
    assert_eq!(
        p.json()["repositories"],
        serde_json::json!(["site/stoa/api"])
    );
    assert!(p.header("link").unwrap().contains("last=site/stoa/api"));
    let t = http(srv.port, "GET", "/v2/site/stoa/api/tags/list", "").json();
    assert_eq!(
        t,
        serde_json::json!({"name": "site/stoa/api", "tags": ["2.0.0"]})
    );
    let api = http(srv.port, "HEAD", "/v2/site/stoa/api/manifests/2.0.0", "");
    let d = api.header("docker-content-digest").unwrap();
    let r = http(
        srv.port,
        "GET",
        &format!("/v2/site/stoa/api/referrers/{d}"),
        "",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
}

fn writes_are_405_unsupported(srv: &Serve, api: &str) {
    for (m, t) in [
        ("PUT", "/v2/site/stoa/api/manifests/evil".to_owned()),
        ("POST", "/v2/site/stoa/api/blobs/uploads/".to_owned()),
        ("DELETE", format!("/v2/site/stoa/api/manifests/{api}")),
        ("PATCH", "/v2/site/stoa/api/blobs/uploads/x".to_owned()),
    ] {
        let r = http(srv.port, m, &t, "Content-Length: 0\r\n");
        assert_eq!(r.status, 405, "{m} {t}");
        assert_eq!(r.error_code(), "UNSUPPORTED");
    }
    // and the image is unchanged
    let r = http(srv.port, "HEAD", "/v2/site/stoa/api/manifests/2.0.0", "");
    assert_eq!(r.header("docker-content-digest"), Some(api));
}

fn path_tricks_and_over_long_names_are_400(srv: &Serve) {
    let long = format!("/v2/{}/manifests/2.0.0", "a".repeat(300));
    for t in [
        "/v2/site/stoa/../stoa/api/manifests/2.0.0",
        "/v2/site/stoa/%2e%2e/api/manifests/2.0.0",
        "/v2/site%2Fstoa%2Fapi/manifests/2.0.0",
        "/v2/site/stoa/api%2f..%2f/manifests/2.0.0",
        "/v2/site//stoa/api/manifests/2.0.0",
        long.as_str(),
        "/v2/site/stoa/api/manifests/sha256:xyz",
    ] {
        let r = http(srv.port, "GET", t, "");
        assert_eq!(r.status, 400, "{t}");
        assert!(!r.error_code().is_empty());
    }
}

fn unknown_digests_are_404(srv: &Serve) {
    let zero = format!("sha256:{}", "0".repeat(64));
    for (t, code) in [
        (format!("/v2/site/stoa/api/blobs/{zero}"), "BLOB_UNKNOWN"),
        (
            format!("/v2/site/stoa/api/manifests/{zero}"),
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/site/stoa/api/manifests/9.9.9".to_owned(),
            "MANIFEST_UNKNOWN",
        ),
        ("/v2/site/stoa/nope/tags/list".to_owned(), "NAME_UNKNOWN"),
    ] {
        let r = http(srv.port, "GET", &t, "");
        assert_eq!((r.status, r.error_code().as_str()), (404, code), "{t}");
    }
}

fn bad_ranges_are_416_and_good_ranges_206(srv: &Serve, api: &str) {
    let (layer, size) = a_layer(srv, api);
    let t = format!("/v2/site/stoa/api/blobs/{layer}");
    let full = http(srv.port, "GET", &t, "");
    assert_eq!((full.status, full.body.len() as u64), (200, size));
    assert_eq!(sha(&full.body), layer);
    assert_eq!(full.header("docker-content-digest"), Some(layer.as_str()));
    let r = http(srv.port, "GET", &t, "Range: bytes=10-19\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, full.body[10..20]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 10-19/{size}").as_str())
    );
    for bad in [
        format!("bytes={size}-"),
        "bytes=5-2".into(),
        "bytes=0-1,4-5".into(),
        "lines=1-2".into(),
    ] {
        let r = http(srv.port, "GET", &t, &format!("Range: {bad}\r\n"));
        assert_eq!(r.status, 416, "{bad}");
        assert_eq!(r.error_code(), "SIZE_INVALID");
    }
}

fn a_client_gone_mid_blob_frees_its_worker(srv: &Serve, big: &str) {
    let m = http(
        srv.port,
        "GET",
        &format!("/v2/site/stoa/big/manifests/{big}"),
        "",
    )
    .json();
    let layer = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // more clients than the 4 workers, each reading a few bytes and leaving
    for _ in 0..12 {
        let mut c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        write!(
            c,
            "GET /v2/site/stoa/api/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let mut b = [0u8; 64];
        let _ = c.read(&mut b);
        drop(c);
    }
    // every worker is free again: others are served
    for _ in 0..8 {
        let r = http(
            srv.port,
            "GET",
            &format!("/v2/site/stoa/big/blobs/{layer}"),
            "",
        );
        assert_eq!(r.status, 200);
        assert_eq!(sha(&r.body), layer);
    }
}

fn a_tampered_store_blob_is_never_served_as_good(s: &Site, api: &str) {
    // a copy of the state folder, so the site's own stays good
    let state = s.path().join("state-tampered");
    ok(Command::new("cp").arg("-a").arg(&s.state_dir).arg(&state));
    let config = s.path().join("tampered.toml");
    let text = fs::read_to_string(&s.config).unwrap().replace(
        &format!("\"{}\"", s.state_dir.display()),
        &format!("\"{}\"", state.display()),
    );
    fs::write(&config, text).unwrap();
    let good = Serve::start(&s.config, s.path());
    let (layer, size) = a_layer(&good, api);
    let blob = state
        .join("store/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).unwrap();
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    fs::write(&blob, &bytes).unwrap();

    let srv = Serve::start(&config, s.path());
    let t = format!("/v2/site/stoa/api/blobs/{layer}");
    // bit flip: the response is cut, the digest logged
    let r = http(srv.port, "GET", &t, "");
    assert_eq!(r.status, 200);
    assert!(!r.whole, "a bit-flipped blob was sent whole");
    assert!((r.body.len() as u64) < size);
    let r = http(srv.port, "GET", &t, "Range: bytes=0-9\r\n");
    assert!(
        !r.whole && r.body.len() < 10,
        "a range of a damaged blob was sent whole"
    );
    assert!(
        srv.log().contains(&format!("blob {layer} is damaged")),
        "{}",
        srv.log()
    );
    // and skopeo refuses to take it
    let out = skopeo_copy(
        srv.port,
        "site/stoa/api:2.0.0",
        &s.path().join("pulled-tampered"),
    );
    assert!(!out.status.success());

    // truncation: refused before any byte, logged
    fs::write(&blob, &bytes[..n - 1]).unwrap();
    let r = http(srv.port, "GET", &t, "");
    assert_eq!(r.status, 500);
    assert_eq!(r.error_code(), "UNKNOWN");
    assert!(srv
        .log()
        .contains(&format!("blob {layer} is damaged in the store")));
    // the good store still serves it whole
    let r = http(good.port, "GET", &t, "");
    assert!(r.whole && sha(&r.body) == layer);
}

/// skopeo (and containerd) try `https://` first for a registry they may
/// reach insecurely. `serve` on a plain port answers the ClientHello with a
/// 400 at once, so the client falls back to `http://` without waiting out
/// its 10 s TLS handshake timeout (what made every pull take 10 s).
fn a_client_trying_tls_first_is_answered_at_once(srv: &Serve) {
    // a ClientHello's record header, then the client waits for the server
    let mut c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    c.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ])
    .unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(
        got.starts_with(b"HTTP/1.1 400 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // skopeo's own debug log: its https:// ping fails at once, then http://
    let out = harness::run(
        Command::new("skopeo")
            .args(["--debug", "inspect", "--raw", "--tls-verify=false"])
            .arg(format!(
                "docker://127.0.0.1:{}/site/stoa/api:2.0.0",
                srv.port
            )),
    );
    assert_ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("TLS handshake timeout"), "{log}");
    assert!(
        log.contains("server gave HTTP response to HTTPS client"),
        "{log}"
    );
}

/// The index's platform manifests, `(architecture, digest)`.
fn platforms(srv: &Serve, index: &str) -> Vec<(String, String)> {
    let idx = http(
        srv.port,
        "GET",
        &format!("/v2/site/stoa/gateway/manifests/{index}"),
        "",
    )
    .json();
    idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn each_platform_of_the_index_resolves_by_tag_index_digest_and_its_own(
    srv: &Serve,
    s: &Site,
    gateway: &str,
) {
    let plats = platforms(srv, gateway);
    let archs: Vec<&str> = plats.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(archs, ["amd64", "arm64"], "a two-platform index");
    for (arch, digest) in &plats {
        for reference in [
            "site/stoa/gateway:2.0.0".to_owned(),
            format!("site/stoa/gateway@{gateway}"),
            format!("site/stoa/gateway@{digest}"),
        ] {
            let dest = s.path().join(format!(
                "pulled-{arch}-{}",
                reference.replace([':', '/', '@'], "_")
            ));
            let out = skopeo_copy_with(
                srv.port,
                &reference,
                &dest,
                &[
                    "--src-tls-verify=false",
                    "--override-os",
                    "linux",
                    "--override-arch",
                    arch,
                ],
            );
            assert_ok(&out);
            assert_eq!(&layout_digest(&dest), digest, "{arch} from {reference}");
        }
    }
}

fn two_requests_on_one_kept_alive_connection_are_both_answered(srv: &Serve, api: &str) {
    let c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    let t = Instant::now();
    // one after the other, each read before the next is sent
    write!(w, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let a = read_resp(&mut r, "GET");
    assert_eq!(
        (a.status, a.header("connection")),
        (200, Some("keep-alive"))
    );
    write!(
        w,
        "GET /v2/site/stoa/api/manifests/2.0.0 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let b = read_resp(&mut r, "GET");
    assert_eq!(b.status, 200);
    assert_eq!(sha(&b.body), api);
    // two pipelined in one write, then a last one that closes
    write!(
        w,
        "HEAD /v2/site/stoa/api/manifests/2.0.0 HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /v2/site/stoa/api/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let c3 = read_resp(&mut r, "HEAD");
    assert_eq!(c3.header("docker-content-digest"), Some(api));
    let d = read_resp(&mut r, "GET");
    assert_eq!(d.json()["tags"], serde_json::json!(["2.0.0"]));
    assert_eq!(d.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap(), 0, "closed after close");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// Twice as many clients as the 4 workers each make a request and keep
/// their connection open, idle: every one is answered (an idle connection
/// gives its worker up to a waiting one), and a new client is answered at
/// once, not after an idle timeout.
fn idle_kept_alive_clients_do_not_starve_a_new_one(srv: &Serve) {
    let t = Instant::now();
    let mut held = Vec::new();
    for _ in 0..8 {
        let c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = c.try_clone().unwrap();
        write!(w, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        held.push((w, BufReader::new(c)));
    }
    for (_, r) in &mut held {
        assert_eq!(read_resp(r, "GET").status, 200);
    }
    let fresh = Instant::now();
    let r = http(srv.port, "GET", "/v2/_catalog", "");
    assert_eq!(r.status, 200);
    assert!(
        fresh.elapsed() < Duration::from_secs(2),
        "a new client waited {:?} behind idle ones",
        fresh.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(held);
}

/// A test CA and a server certificate for 127.0.0.1 (openssl): the CA's
/// folder for `--src-cert-dir` (`ca.crt`), the server's cert and key.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    fs::create_dir_all(dir.join("ca")).unwrap();
    let p = |n: &str| dir.join(n);
    ok(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=stoa serve test CA", "-keyout"])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca/ca.crt")));
    ok(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    ok(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca/ca.crt"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.crt")));
    (p("ca"), p("server.crt"), p("server.key"))
}

fn serve_over_tls_is_pulled_with_the_site_ca_and_refuses_plain_http(s: &Site, gateway: &str) {
    harness::require("openssl", "openssl");
    let (ca_dir, cert, key) = make_certs(&s.path().join("tls"));
    let srv = Serve::start_with(&s.config, s.path(), Some((&cert, &key)));
    // verified against the test CA: the whole index, and one platform
    let dest = s.path().join("pulled-tls");
    let ca = ca_dir.display().to_string();
    let out = skopeo_copy_with(
        srv.port,
        "site/stoa/gateway:2.0.0",
        &dest,
        &["--src-tls-verify=true", "--src-cert-dir", &ca, "--all"],
    );
    assert_ok(&out);
    assert_eq!(layout_digest(&dest), gateway);
    let (arch, digest) = platforms_over_tls(&srv, &ca_dir, gateway);
    let dest = s.path().join("pulled-tls-one");
    let out = skopeo_copy_with(
        srv.port,
        &format!("site/stoa/gateway@{gateway}"),
        &dest,
        &[
            "--src-tls-verify=true",
            "--src-cert-dir",
            &ca,
            "--override-os",
            "linux",
            "--override-arch",
            &arch,
        ],
    );
    assert_ok(&out);
    assert_eq!(layout_digest(&dest), digest);
    // a client that does not trust the CA is refused by its own check
    let out = skopeo_copy_with(
        srv.port,
        "site/stoa/gateway:2.0.0",
        &s.path().join("pulled-tls-untrusted"),
        &["--src-tls-verify=true", "--all"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // plain HTTP to the TLS port: a plain 400 at once, no manifest
    let t = Instant::now();
    let r = http(srv.port, "GET", "/v2/site/stoa/gateway/manifests/2.0.0", "");
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "UNSUPPORTED");
    assert!(r.header("docker-content-digest").is_none());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // and the server still answers TLS clients after it
    let out = harness::run(
        Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(ca_dir.join("ca.crt"))
            .arg(format!("https://127.0.0.1:{}/v2/", srv.port)),
    );
    assert_ok(&out);
    assert_eq!(out.stdout, b"{}");
}

/// The first platform of the index, read over TLS with curl.
fn platforms_over_tls(srv: &Serve, ca_dir: &Path, index: &str) -> (String, String) {
    let out = harness::run(
        Command::new("curl")
            .args([
                "-sf",
                "-H",
                "Accept: application/vnd.oci.image.index.v1+json",
                "--cacert",
            ])
            .arg(ca_dir.join("ca.crt"))
            .arg(format!(
                "https://127.0.0.1:{}/v2/site/stoa/gateway/manifests/{index}",
                srv.port
            )),
    );
    assert_ok(&out);
    assert_eq!(sha(&out.stdout), index);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &v["manifests"][1];
    (
        m["platform"]["architecture"].as_str().unwrap().to_owned(),
        m["digest"].as_str().unwrap().to_owned(),
    )
}

/// Issue 19 item 2: `[registry] mode = "serve"`, a site with no registry.
/// Plan and apply push nothing (no `push-images` step; the docker-registry
/// the harness runs receives no image); preflight says what serves the
/// images; the charts name images at `serve`'s address; a running `serve`
/// answers for each release as soon as its apply commits, and after a
/// rollback for the release rolled back to, without a restart.
#[test]
fn a_site_without_a_registry_applies_in_serve_mode_and_serve_follows_each_commit() {
    let s = Site::start();
    let port = s.use_serve_mode();
    let b20 = s.bundle("2.0.0", None);
    let b21 = s.bundle("2.1.0", None);
    let plan = harness::json(&ok(s.updater().args(["plan", "--json"]).arg(&b20)));
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(!steps.contains(&"push-images"), "{steps:?}");
    let reg_check = plan["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "registry")
        .unwrap()
        .clone();
    assert_eq!(reg_check["outcome"], "ok", "{reg_check}");
    assert!(
        reg_check["detail"].as_str().unwrap().contains("mode serve"),
        "{reg_check}"
    );
    ok(s.updater().arg("apply").arg(&b20));
    assert_eq!(s.registry_digest("site/stoa/api:2.0.0"), None, "pushed");
    let manifest = s.helm_manifest("stoa-api");
    assert!(
        manifest.contains(&format!("127.0.0.1:{port}/site/stoa/api")),
        "{manifest}"
    );
    let srv = Serve::start_on(&s.config, s.path(), None, port);
    let digest = |tag: &str| {
        let r = http(
            srv.port,
            "HEAD",
            &format!("/v2/site/stoa/api/manifests/{tag}"),
            "",
        );
        (
            r.status,
            r.header("docker-content-digest").map(str::to_owned),
        )
    };
    let api20 = Site::bundle_image_digest(&b20, "registry.gostoa.dev/stoa/api:2.0.0");
    assert_eq!(digest("2.0.0"), (200, Some(api20.clone())));
    assert_eq!(digest("2.1.0").0, 404);
    // the next apply, while serve runs: answered once it commits
    ok(s.updater().arg("apply").arg(&b21));
    let api21 = Site::bundle_image_digest(&b21, "registry.gostoa.dev/stoa/api:2.1.0");
    let t = std::time::Instant::now();
    while digest("2.1.0").0 != 200 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(digest("2.1.0"), (200, Some(api21)), "{}", srv.log());
    assert_eq!(digest("2.0.0"), (200, Some(api20.clone())));
    // rolled back: what the older release needs is still served
    ok(s.updater().arg("rollback"));
    assert_eq!(digest("2.0.0"), (200, Some(api20)));
    assert_eq!(s.registry_digest("site/stoa/api:2.1.0"), None, "pushed");
}
