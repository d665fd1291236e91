//! The mirror layout and the nodes' mirror configuration (issue 19 items
//! 3, 4) against real clients: a site in `[registry] layout = "mirror"`
//! applies a bundle with Docker Hub images named in their short forms
//! (`bitnami/pgpool`, `nginx` as a two-platform index) to a real
//! docker-registry; `mirror-config` writes the node files; a real
//! containerd (on a private socket and root, started here) pulls the images
//! by their ORIGINAL names (`docker.io/...:tag`, `...@sha256:` of the index
//! and of a platform) through the written hosts.toml, from the registry
//! and from `serve`; skopeo does the same through the written
//! registries.conf. The Docker Hub itself is never reached (nothing here
//! has internet): a pull that succeeds came from the site. And the
//! post-renderer in the mirror layout keeps an upstream chart's image names,
//! pinned (real Helm 3).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stoa_e2e::harness::{self, fails, json, ok, real_helm, upstream_charts};
use stoa_e2e::serve::Serve;
use stoa_e2e::site::Site;

const PGPOOL: &str = "docker.io/bitnami/pgpool:4.6.3-debian-12-r0";
const NGINX: &str = "docker.io/library/nginx:1.27";

/// Fails (never skips) when a program is missing, naming install-deps.sh.
#[track_caller]
fn need(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is required: run scripts/install-deps.sh (apt-get install -y {package})"
    );
}

/// A containerd of our own: its root, state and socket in `dir`, no CRI
/// plugin; killed on drop.
struct Containerd {
    child: Child,
    sock: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Containerd {
    fn start(dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        let sock = dir.join("c.sock");
        let config = dir.join("config.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{d}/t.sock\"\n",
                d = dir.display(),
                s = sock.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let mut child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let t = Instant::now();
        while !sock.exists() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "containerd exited ({st}): {}",
                    fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "containerd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, sock }
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.sock);
        c
    }

    /// `ctr images pull --hosts-dir DIR [args] NAME` (unpacked with the
    /// native snapshotter: no mount privileges needed).
    fn pull(&self, hosts: &Path, name: &str, args: &[&str]) {
        ok(self
            .ctr()
            .args(["images", "pull", "--snapshotter", "native", "--hosts-dir"])
            .arg(hosts)
            .args(args)
            .arg(name));
    }

    /// The target digest `ctr images ls` shows for `name`.
    fn image_digest(&self, name: &str) -> String {
        let out = ok(self.ctr().args(["images", "ls"]));
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
            .unwrap_or_else(|| panic!("{name} not in ctr images ls:\n{out}"))
            .to_owned()
    }
}

/// The site in the mirror layout, with `[serve] listen` set.
fn mirror_site(serve_listen: &str) -> Site {
    let s = Site::start();
    let text = fs::read_to_string(&s.config).unwrap();
    let text = text.replace(
        "prefix = \"site\"\n",
        "prefix = \"site\"\nlayout = \"mirror\"\n",
    );
    fs::write(
        &s.config,
        format!("{text}\n[serve]\nlisten = \"{serve_listen}\"\n"),
    )
    .unwrap();
    s
}

/// `mirror-config --for RUNTIME --out DIR [extra] --json`: the files written.
fn mirror_config(s: &Site, runtime: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let v = json(&ok(s
        .updater()
        .args(["mirror-config", "--for", runtime, "--out"])
        .arg(out)
        .args(extra)
        .arg("--json")));
    assert_eq!(v["ok"], true);
    assert_eq!(
        v["mirror_config"]["sources"],
        serde_json::json!(["docker.io", "registry.gostoa.dev"])
    );
    v["mirror_config"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

/// The index's platform manifests on the site registry: (arch, digest).
fn platforms(s: &Site, repo_tag: &str) -> Vec<(String, String)> {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false"])
        .arg(s.registry.docker_ref(repo_tag));
    let idx = json(&ok(&mut c));
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

#[test]
fn mirror_layout_nodes_pull_original_names_through_containerd_and_skopeo() {
    need("containerd", "containerd");
    need("ctr", "containerd");
    need("skopeo", "skopeo");
    let listen = format!("127.0.0.1:{}", harness::free_port());
    let s = mirror_site(&listen);
    let images = s.path().join("images");
    let b = s.bundle_with("2.0.0", None, &|t| {
        format!(
            "{t}\n[[images]]\nname = \"bitnami/pgpool:4.6.3-debian-12-r0\"\nsource = \"oci:{i}:api-2.0.0\"\n\n\
             [[images]]\nname = \"nginx:1.27\"\nsource = \"oci:{i}:gateway-2.0.0\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
            i = images.display()
        )
    });
    ok(s.updater().arg("apply").arg(&b));
    let pgpool = Site::bundle_image_digest(&b, "bitnami/pgpool:4.6.3-debian-12-r0");
    let nginx = Site::bundle_image_digest(&b, "nginx:1.27");
    // pushed under <prefix>/<source host>/<path>, short forms normalised
    assert_eq!(
        s.registry_digest("site/docker.io/bitnami/pgpool:4.6.3-debian-12-r0"),
        Some(pgpool.clone())
    );
    assert_eq!(
        s.registry_digest("site/docker.io/library/nginx:1.27"),
        Some(nginx.clone())
    );
    assert_eq!(
        s.registry_digest("site/registry.gostoa.dev/stoa/api:2.0.0"),
        Some(Site::bundle_image_digest(
            &b,
            "registry.gostoa.dev/stoa/api:2.0.0"
        ))
    );
    assert_eq!(s.registry_digest("site/stoa/api:2.0.0"), None);
    let plats = platforms(&s, "site/docker.io/library/nginx:1.27");
    assert_eq!(plats.len(), 2, "{plats:?}");
    let arm64 = plats.iter().find(|(a, _)| a == "arm64").unwrap().1.clone();

    let want = Want {
        pgpool: &pgpool,
        nginx: &nginx,
        arm64: &arm64,
    };
    containerd_pulls_from_the_registry_and_from_serve(&s, &listen, &want);
    skopeo_copies_through_registries_conf(&s, &listen, &want);
    k3s_and_openshift_files_name_the_same_mirrors(&s);
}

/// What each pull must resolve to.
struct Want<'a> {
    pgpool: &'a str,
    nginx: &'a str,
    arm64: &'a str,
}

fn containerd_pulls_from_the_registry_and_from_serve(s: &Site, listen: &str, w: &Want) {
    let hosts = s.path().join("certs.d");
    let files = mirror_config(s, "containerd", &hosts, &[]);
    assert_eq!(files.len(), 2, "{files:?}");
    let toml = fs::read_to_string(hosts.join("docker.io/hosts.toml")).unwrap();
    assert!(
        toml.contains(&format!(
            "[host.\"http://{}/v2/site/docker.io\"]",
            s.registry.host
        )) && toml.contains("override_path = true"),
        "{toml}"
    );
    let c = Containerd::start(&s.path().join("ctd-registry"));
    pulls_by_tag_index_digest_and_platform_digest(&c, &hosts, w);

    // the same names from `serve`, through its own hosts.toml
    let srv = Serve::start_verbose(&s.config, s.path(), listen);
    let hosts = s.path().join("certs.d-serve");
    mirror_config(s, "containerd", &hosts, &["--serve"]);
    let toml = fs::read_to_string(hosts.join("docker.io/hosts.toml")).unwrap();
    assert!(
        toml.contains(&format!("[host.\"http://{listen}/v2/site/docker.io\"]")),
        "{toml}"
    );
    let c = Containerd::start(&s.path().join("ctd-serve"));
    pulls_by_tag_index_digest_and_platform_digest(&c, &hosts, w);
    let log = fs::read_to_string(&srv.log).unwrap();
    assert!(
        log.contains("/v2/site/docker.io/library/nginx/manifests/1.27"),
        "serve answered the pulls: {log}"
    );
    drop(srv);
}

fn pulls_by_tag_index_digest_and_platform_digest(c: &Containerd, hosts: &Path, w: &Want) {
    c.pull(hosts, PGPOOL, &[]);
    assert_eq!(c.image_digest(PGPOOL), w.pgpool);
    let by_digest = format!("docker.io/bitnami/pgpool@{}", w.pgpool);
    c.pull(hosts, &by_digest, &[]);
    assert_eq!(c.image_digest(&by_digest), w.pgpool);
    // the two-platform index: by tag (this host's platform, then arm64),
    // by the index digest, by the arm64 manifest's own digest
    c.pull(hosts, NGINX, &[]);
    assert_eq!(c.image_digest(NGINX), w.nginx);
    c.pull(hosts, NGINX, &["--platform", "linux/arm64"]);
    let index = format!("docker.io/library/nginx@{}", w.nginx);
    c.pull(hosts, &index, &["--all-platforms"]);
    assert_eq!(c.image_digest(&index), w.nginx);
    let platform = format!("docker.io/library/nginx@{}", w.arm64);
    c.pull(hosts, &platform, &["--platform", "linux/arm64"]);
    assert_eq!(c.image_digest(&platform), w.arm64);
    // a short name is the same image (ctr wants it fully qualified; the
    // kubelet's CRI normalises `nginx:1.27` to it)
    let out = harness::run(
        c.ctr()
            .args(["images", "pull", "--snapshotter", "native", "--hosts-dir"])
            .arg(hosts)
            .arg("docker.io/library/nginx:1.26"),
    );
    assert!(!out.status.success(), "a tag the site lacks is not found");
}

fn skopeo_copies_through_registries_conf(s: &Site, listen: &str, w: &Want) {
    for (name, extra) in [("crio", &[][..]), ("crio-serve", &["--serve"][..])] {
        let dir = s.path().join(name);
        let files = mirror_config(s, "cri-o", &dir, extra);
        assert_eq!(files.len(), 1, "{files:?}");
        let conf = dir.join("registries.conf");
        let text = fs::read_to_string(&conf).unwrap();
        let host = if extra.is_empty() {
            s.registry.host.clone()
        } else {
            listen.to_owned()
        };
        assert!(
            text.contains(&format!(
                "location = \"{host}/site/docker.io\"\ninsecure = true\n"
            )),
            "{text}"
        );
        let _srv = (!extra.is_empty()).then(|| Serve::start_verbose(&s.config, s.path(), listen));
        let skopeo = |args: &[&str]| {
            let mut c = Command::new("skopeo");
            c.arg("--registries-conf").arg(&conf).args(args);
            c
        };
        let raw = ok(&mut skopeo(&[
            "inspect",
            "--raw",
            &format!("docker://{PGPOOL}"),
        ]));
        assert_eq!(sha(raw.as_bytes()), w.pgpool, "{name}");
        for (reference, args, digest) in [
            (format!("docker://{NGINX}"), vec!["--all"], w.nginx),
            (
                format!("docker://docker.io/library/nginx@{}", w.nginx),
                vec!["--all"],
                w.nginx,
            ),
            (
                "docker://nginx:1.27".to_owned(),
                vec!["--override-arch", "arm64"],
                w.arm64,
            ),
            (
                format!("docker://docker.io/library/nginx@{}", w.arm64),
                vec![],
                w.arm64,
            ),
        ] {
            let dest = s.path().join(format!("{name}-copy-{}", &digest[7..19]));
            let _ = fs::remove_dir_all(&dest);
            let mut c = skopeo(&["copy"]);
            c.args(&args)
                .arg(&reference)
                .arg(format!("oci:{}", dest.display()));
            ok(&mut c);
            let idx = json(&fs::read_to_string(dest.join("index.json")).unwrap());
            assert_eq!(idx["manifests"][0]["digest"], digest, "{name} {reference}");
        }
    }
}

fn k3s_and_openshift_files_name_the_same_mirrors(s: &Site) {
    let dir = s.path().join("k3s");
    mirror_config(s, "k3s", &dir, &[]);
    let y = fs::read_to_string(dir.join("registries.yaml")).unwrap();
    assert!(
        y.contains(&format!(
            "  \"docker.io\":\n    endpoint:\n      - \"http://{}\"\n    rewrite:\n      \"^(.*)$\": \"site/docker.io/$1\"\n",
            s.registry.host
        )),
        "{y}"
    );
    let dir = s.path().join("openshift");
    let files = mirror_config(s, "openshift", &dir, &[]);
    assert_eq!(files.len(), 2);
    for (f, kind) in [
        ("imagedigestmirrorset.yaml", "ImageDigestMirrorSet"),
        ("imagetagmirrorset.yaml", "ImageTagMirrorSet"),
    ] {
        let y = fs::read_to_string(dir.join(f)).unwrap();
        assert!(y.contains(&format!("kind: {kind}\n")), "{y}");
        assert!(
            y.contains(&format!("    - \"{}/site/docker.io\"\n", s.registry.host)),
            "{y}"
        );
    }
    // the prefix layout needs no node mirror: refused, naming the key
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(&s.config, text.replace("layout = \"mirror\"\n", "")).unwrap();
    let e = fails(
        s.updater()
            .args(["mirror-config", "--for", "containerd", "--out"])
            .arg(s.path().join("nope")),
        2,
    );
    assert!(e.contains("layout = \"mirror\""), "{e}");
    fs::write(&s.config, text).unwrap();
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// The post-renderer in the mirror layout: an upstream chart's images keep
/// their names (Docker Hub's short forms written out), pinned by digest;
/// nothing is named on the site registry (real Helm 3).
#[test]
fn mirror_layout_post_renderer_keeps_names_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let digest = format!("sha256:{}", "5a".repeat(32));
    let images: Vec<_> = [
        "docker.io/bitnami/pgpool:4.6.3-debian-12-r0",
        "docker.io/bitnami/postgresql-repmgr:17.6.0-debian-12-r2",
        "docker.io/bitnami/os-shell:12-debian-12-r50",
    ]
    .iter()
    .map(|n| serde_json::json!({"name": n, "digest": digest}))
    .collect();
    let map = dir.path().join("images.json");
    fs::write(
        &map,
        serde_json::json!({"registry": "127.0.0.1:5000", "prefix": "site", "layout": "mirror", "images": images})
            .to_string(),
    )
    .unwrap();
    let chart = dir.path().join("postgresql-ha");
    ok(Command::new("cp")
        .arg("-r")
        .arg(upstream_charts().join("postgresql-ha"))
        .arg(&chart));
    fs::create_dir_all(chart.join("charts")).unwrap();
    ok(Command::new(real_helm(3))
        .arg("package")
        .arg(upstream_charts().join("common"))
        .arg("-d")
        .arg(chart.join("charts")));
    let out = ok(Command::new(real_helm(3))
        .args(["template", "r"])
        .arg(&chart)
        .args(["-n", "data", "--skip-tests", "--post-renderer"])
        .arg(harness::bin_dir().join("stoa-updater"))
        .args([
            "--post-renderer-args=post-render",
            "--post-renderer-args=--map",
        ])
        .arg(format!("--post-renderer-args={}", map.display())));
    let all = Site::images_of(&out);
    assert!(
        all.contains(&format!(
            "docker.io/bitnami/pgpool:4.6.3-debian-12-r0@{digest}"
        )),
        "{all:?}"
    );
    for img in &all {
        assert!(
            img.starts_with("docker.io/bitnami/") && img.ends_with(&digest),
            "{img} is not its own name pinned"
        );
    }
}
