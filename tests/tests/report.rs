//! The change report (issue 20 item 4) on a site with a real
//! docker-registry, a real PostgreSQL and real Helm rendering (the stand-in
//! passes `template` to real Helm 3): 2.0.0 applied, then `plan --report
//! --sign-key` of 2.1.0. The page names every image, migration and chart
//! change, the chart diff has a changed line, `openssl pkeyutl -verify
//! -rawin` (as for a bundle's signature) accepts the `.sig` and refuses a
//! copy with one byte changed, and real headless Chromium renders it
//! (screenshot, DOM with the release name) without one network request:
//! its proxy, a loopback listener, sees no connection.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use stoa_e2e::harness::{self, json, ok, run};
use stoa_e2e::site::Site;

/// `openssl pkeyutl -verify -pubin -inkey PUB -rawin -in F -sigfile S`,
/// the command docs/FORMAT.md gives for a bundle's signature.
fn openssl_verifies(public: &Path, file: &Path, sig: &Path) -> bool {
    let out = run(Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(public)
        .arg("-rawin")
        .arg("-in")
        .arg(file)
        .arg("-sigfile")
        .arg(sig));
    out.status.success()
}

/// A loopback listener recording the target host of every request made
/// through it (Chromium's proxy: any request the page made reaches it).
fn recording_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(500)));
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            log.lock().unwrap().push(target_host(&text));
        }
    });
    (port, seen)
}

/// The host a proxied request goes to: `CONNECT host:port`, or
/// `GET http://host/…`; the whole first line when it is neither.
fn target_host(request: &str) -> String {
    let line = request.lines().next().unwrap_or("");
    let target = line.split(' ').nth(1).unwrap_or(line);
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .unwrap_or(target);
    let host = rest.split(['/', ':']).next().unwrap_or(rest);
    if host.is_empty() {
        line.to_owned()
    } else {
        host.to_owned()
    }
}

/// Chromium 156 itself (not a page) calls Google's update and account
/// services even with every background switch given here: these hosts are
/// the browser's own, the page names no host at all (its tags carry no
/// `src` or `href`, asserted above).
fn browser_own(host: &str) -> bool {
    host == "google.com"
        || host.ends_with(".google.com")
        || host == "googleapis.com"
        || host.ends_with(".googleapis.com")
}

/// Headless Chromium on `page` with `extra` arguments, every network
/// request sent through the proxy on `port`.
fn chromium(page: &Path, profile: &Path, port: u16, extra: &[String]) -> std::process::Output {
    let url = format!("file://{}", page.display());
    let out = run(Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--proxy-server=http://127.0.0.1:{port}"))
        .arg("--proxy-bypass-list=<-loopback>")
        .args(extra)
        .arg(url));
    assert!(
        out.status.success(),
        "chromium: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn plan_report_names_every_change_is_signed_and_renders_offline_in_chromium() {
    // a missing chromium fails the test (scripts/install-deps.sh installs it)
    harness::require("chromium", "chromium");
    harness::require("openssl", "openssl");
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));

    let report = s.path().join("report.html");
    let out = json(&ok(s
        .updater()
        .arg("plan")
        .arg(&b210)
        .arg("--report")
        .arg(&report)
        .arg("--sign-key")
        .arg(&s.key)
        .arg("--json")));
    assert_eq!(out["version"], "2.1.0");
    assert_eq!(
        out["render"][0].get("manifests"),
        None,
        "the manifests stay out of plan's output without --render"
    );
    let sig = s.path().join("report.html.sig");
    assert_eq!(out["report"]["signature"], sig.display().to_string());
    let page = fs::read_to_string(&report).unwrap();
    let mode = fs::metadata(&report).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o644
    );

    // every image, with its change, digest and signature column
    for img in ["api", "gateway", "portal"] {
        let new = format!("registry.gostoa.dev/stoa/{img}:2.1.0");
        let old = format!("registry.gostoa.dev/stoa/{img}:2.0.0");
        assert!(page.contains(&new), "{new}");
        assert!(page.contains(&format!("was {old}")), "{old}");
        let d = Site::bundle_image_digest(&b210, &new);
        assert!(page.contains(&d), "{d}");
        let d0 = Site::bundle_image_digest(&b200, &old);
        assert!(page.contains(&d0), "{d0}");
    }
    assert_eq!(
        page.matches("<span class=\"changed\">changed</span>")
            .count(),
        3
    );
    assert!(page.contains("none carried"));
    // every chart's version change, and a changed line in its diff
    for c in ["stoa-api", "stoa-gateway"] {
        assert!(
            page.contains(&format!("stoa-system/{c}: {c}-2.0.0 → {c}-2.1.0")),
            "{c}"
        );
    }
    assert!(page.contains("<span class=\"d-del\">-"), "a removed line");
    assert!(page.contains("<span class=\"d-add\">+"), "an added line");
    let api210 = Site::bundle_image_digest(&b210, "registry.gostoa.dev/stoa/api:2.1.0");
    let api200 = Site::bundle_image_digest(&b200, "registry.gostoa.dev/stoa/api:2.0.0");
    let changed_line = page
        .lines()
        .flat_map(|l| l.split("<span class=\"d-add\">").skip(1))
        .any(|l| l.contains(&format!("stoa/api:2.1.0@{api210}")));
    assert!(changed_line, "the api image line is added in the diff");
    let removed_line = page
        .lines()
        .flat_map(|l| l.split("<span class=\"d-del\">").skip(1))
        .any(|l| l.contains(&format!("stoa/api:2.0.0@{api200}")));
    assert!(
        removed_line,
        "the old api image line is removed in the diff"
    );
    // every migration with its SQL: 0001 applied, 0002 pending
    let sql = fs::read_to_string(
        stoa_e2e::site::manifests_dir().join("migrations/stoa-2.1.0/0002_api_keys.sql"),
    )
    .unwrap();
    assert!(page.contains("stoa 0001_init: already applied"));
    assert!(page.contains("stoa 0002_api_keys: pending, apply runs it"));
    let first = sql.lines().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        page.contains(
            &first
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;")
        ),
        "{first}"
    );
    // files, preflight, snapshot, rollback path
    assert!(page.contains("bin/stoactl"));
    assert!(page.contains("<h2>Preflight ("));
    assert!(page.contains("yes (pg_dump -Fc"));
    assert!(page.contains("returns the site to 2.0.0"));
    assert!(page.contains("Helm release stoa-system/stoa-api: back to revision 1"));
    // signer key id and trust root version
    let pubkey = s.path().join("release.pub");
    let kid = ok(Command::new("sh").arg("-c").arg(format!(
        "openssl pkey -pubin -in '{}' -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1",
        pubkey.display()
    )));
    assert!(page.contains(kid.trim()), "key id {kid}");
    assert_eq!(out["report"]["key_id"], kid.trim());
    // no script, nothing loaded from anywhere
    let lower = page.to_ascii_lowercase();
    assert!(!lower.contains("<script"));
    for tag in lower.split('<').skip(1) {
        let t = tag.split('>').next().unwrap();
        assert!(!t.contains("src=") && !t.contains("href="), "tag {t}");
    }
    assert!(lower.contains("content-security-policy"));

    // the signature: openssl accepts it, and refuses a one-byte change
    assert_eq!(fs::read(&sig).unwrap().len(), 64, "raw Ed25519");
    assert!(openssl_verifies(&pubkey, &report, &sig));
    let mut bytes = fs::read(&report).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 0x01;
    let tampered = s.path().join("report-tampered.html");
    fs::write(&tampered, &bytes).unwrap();
    assert!(!openssl_verifies(&pubkey, &tampered, &sig));

    // real headless Chromium: a screenshot, the DOM, and no request from
    // the page
    let (port, seen) = recording_proxy();
    let png = s.path().join("report.png");
    chromium(
        &report,
        &s.path().join("chromium-1"),
        port,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,3000".into(),
        ],
    );
    let shot = fs::read(&png).unwrap();
    assert!(shot.len() > 1000, "screenshot of {} bytes", shot.len());
    assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n");
    let dom = chromium(
        &report,
        &s.path().join("chromium-2"),
        port,
        &["--dump-dom".into()],
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("Change report: stoa-platform 2.1.0"), "{dom}");
    assert!(dom.contains("0002_api_keys"));
    // give a late request time to arrive
    std::thread::sleep(std::time::Duration::from_millis(500));
    let hosts = seen.lock().unwrap().clone();
    let from_page: Vec<&String> = hosts.iter().filter(|h| !browser_own(h)).collect();
    assert!(
        from_page.is_empty(),
        "the page made network requests: {from_page:?} (all: {hosts:?})"
    );

    // the proxy does see what a page loads: a canary page with one image
    // from elsewhere, opened the same way, is caught
    let canary = s.path().join("canary.html");
    fs::write(
        &canary,
        "<!DOCTYPE html><html><body><img src=\"http://canary.invalid/x.png\"></body></html>",
    )
    .unwrap();
    let (cport, cseen) = recording_proxy();
    chromium(
        &canary,
        &s.path().join("chromium-3"),
        cport,
        &["--dump-dom".into()],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let chosts = cseen.lock().unwrap().clone();
    assert!(
        chosts.iter().any(|h| h == "canary.invalid"),
        "the proxy saw the canary's request: {chosts:?}"
    );
}

#[test]
fn a_first_install_report_shows_the_whole_render_as_added_and_a_bad_key_fails_first() {
    harness::require("chromium", "chromium");
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let report = s.path().join("first.html");
    // a key that is no key: refused before anything is written (exit 2)
    let bad = s.path().join("bad.key");
    fs::write(&bad, "not a key\n").unwrap();
    let err = harness::fails(
        s.updater()
            .arg("plan")
            .arg(&b200)
            .arg("--report")
            .arg(&report)
            .arg("--sign-key")
            .arg(&bad),
        2,
    );
    assert!(err.contains("bad.key"), "{err}");
    assert!(
        !err.contains("not a key"),
        "the key's content is never shown: {err}"
    );
    assert!(!report.exists());

    let text = ok(s
        .updater()
        .arg("plan")
        .arg(&b200)
        .arg("--report")
        .arg(&report));
    assert!(
        text.contains(&format!("report: {}", report.display())),
        "{text}"
    );
    assert!(!s.path().join("first.html.sig").exists());
    let page = fs::read_to_string(&report).unwrap();
    assert!(page.contains("stoa-system/stoa-api: not installed → stoa-api-2.0.0"));
    assert!(page.contains("<span class=\"added\">added</span>"));
    // no line removed, the rendered manifests added in whole
    assert!(!page.contains("<span class=\"d-del\">"));
    assert!(page.contains("<span class=\"d-add\">+kind: Deployment"));
    assert!(page.contains("stoa 0001_init: pending, apply runs it"));
    assert!(page.contains("nothing is installed before"));
}

#[test]
fn a_delta_report_reads_what_the_delta_omits_from_the_store() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    let delta = s.delta_bundle("2.1.0", &b200);
    let report = s.path().join("delta.html");
    ok(s.updater()
        .arg("plan")
        .arg(&delta)
        .arg("--report")
        .arg(&report));
    let page = fs::read_to_string(&report).unwrap();
    assert!(
        page.contains("<tr><th>Delta on</th><td>stoa-platform 2.0.0</td></tr>"),
        "{page}"
    );
    // 0001_init is the same in both releases: the delta omits it, the
    // page shows it from the store
    assert!(page.contains("stoa 0001_init: already applied"));
    assert!(page.contains("CREATE TABLE tenants ("), "{page}");
    assert!(!page.contains("SQL not shown"), "{page}");
    assert!(!page.contains("was not rendered"), "{page}");
    assert!(page.contains("stoa-system/stoa-api: stoa-api-2.0.0 → stoa-api-2.1.0"));
}
