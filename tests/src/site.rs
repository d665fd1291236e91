//! A whole site for apply/rollback tests: a real docker-registry and a real
//! PostgreSQL on loopback, the Helm stand-in (`fake-helm`) with its own state
//! folder, a `fake-kube-api` answering `/version` (v1.30.4) with a kubeconfig
//! pointing at it and real kubectl for the preflight, a signing key, the
//! example releases built as bundles, and a site config. Everything lives in
//! a temp dir dropped with the test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{self, KubeApi, Postgres, Registry, RegistryOptions};

pub struct Site {
    pub dir: tempfile::TempDir,
    pub registry: Registry,
    pub pg: Postgres,
    /// The API server stand-in the site's kubeconfig points at.
    pub kube: KubeApi,
    pub key: PathBuf,
    pub images: PathBuf,
    pub config: PathBuf,
    pub helm_state: PathBuf,
    pub state_dir: PathBuf,
    /// Extra env for the updater (e.g. the Helm stand-in's failure switch).
    pub env: Vec<(String, String)>,
}

/// The repository's `manifests/` folder.
pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .join("manifests")
}

/// The STOA-only releases (tests/fixtures/stoa-only): the STOA part of the
/// example releases in manifests/, without the upstream stack, so that the
/// site tests need no local mirror. Their relative paths are manifests/'s.
pub fn stoa_only_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/stoa-only")
}

impl Site {
    /// How many times the Helm stand-in has logged a call containing `marker`.
    pub fn helm_calls(&self, marker: &str) -> usize {
        fs::read_to_string(self.helm_state.join("calls.log"))
            .unwrap_or_default()
            .matches(marker)
            .count()
    }

    /// Waits (at most 60 s) until the Helm stand-in has logged `marker`
    /// more than `before` times.
    #[track_caller]
    pub fn wait_for_helm_call(&self, marker: &str, before: usize) {
        let t = std::time::Instant::now();
        while self.helm_calls(marker) == before {
            assert!(t.elapsed().as_secs() < 60, "apply never reached {marker}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Runs the updater with the debug-build test hook that aborts right
    /// after `step` is recorded as done (as a kill -9 would).
    #[track_caller]
    pub fn crash_after(&self, args: &[&std::ffi::OsStr], step: &str) {
        let out = harness::run(
            self.updater()
                .args(args)
                .env("STOA_UPDATER_TEST_CRASH_AFTER", step),
        );
        assert!(
            out.status.code().is_none(),
            "expected the test hook to abort after {step}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start() -> Self {
        Self::start_with(RegistryOptions::default())
    }

    pub fn start_with(opts: RegistryOptions) -> Self {
        Self::start_registry(opts, true)
    }

    /// A site whose registry refuses deletes (405), as docker-registry
    /// does unless `storage.delete.enabled` is set.
    pub fn start_without_registry_deletes() -> Self {
        Self::start_registry(RegistryOptions::default(), false)
    }

    fn start_registry(opts: RegistryOptions, deletes: bool) -> Self {
        harness::require("psql", "postgresql-client");
        harness::require("pg_dump", "postgresql-client");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_owned();
        let registry = Registry::start_deletes(&d, opts, deletes);
        let pg = Postgres::start(&d);
        pg.create_db("stoa");
        let kube =
            KubeApi::start_with_namespaces(&d.join("kube"), "v1.30.4", &d.join("helm/namespaces"));
        let images = d.join("images");
        let all: Vec<_> = ["2.0.0", "2.1.0", "2.3.0"]
            .iter()
            .flat_map(|v| crate::oci_fixture::sample_images(v))
            .collect();
        crate::oci_fixture::write_layout(&images, &all).expect("sample images");
        harness::ok(
            harness::bundler()
                .args(["keygen", "--out"])
                .arg(d.join("release")),
        );
        fs::create_dir_all(d.join("trust")).expect("trust dir");
        fs::copy(d.join("release.pub"), d.join("trust/release.pub")).expect("trust");
        let s = Self {
            key: d.join("release.key"),
            images,
            config: d.join("updater.toml"),
            helm_state: d.join("helm"),
            state_dir: d.join("state"),
            registry,
            pg,
            kube,
            dir,
            env: Vec::new(),
        };
        s.write_config("");
        s
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the site config; `extra` is appended (more sections).
    pub fn write_config(&self, extra: &str) {
        let d = self.path();
        let (scheme, ca) = match &self.registry.tls {
            Some(ca) => ("https", format!("ca_cert = \"{}\"\n", ca.ca_cert.display())),
            None => ("http", String::new()),
        };
        let auth = match &self.registry.auth {
            Some((u, p)) => {
                fs::write(d.join("registry.pass"), format!("{p}\n")).expect("pass");
                format!(
                    "username = \"{u}\"\npassword_file = \"{}\"\n",
                    d.join("registry.pass").display()
                )
            }
            None => String::new(),
        };
        let text = format!(
            "state_dir = \"{state}\"\ntrust = \"{trust}\"\nkeep_releases = 3\n\n\
             [registry]\nurl = \"{scheme}://{host}\"\nprefix = \"site\"\n{ca}{auth}\n\
             [databases.stoa]\nurl = \"{db}\"\nsnapshot = true\n\n\
             [helm]\nbin = \"{helm}\"\ntimeout = \"1m\"\nkubeconfig = \"{kc}\"\nkubectl = \"{kubectl}\"\n{extra}",
            state = self.state_dir.display(),
            trust = d.join("trust").display(),
            host = self.registry.host,
            db = self.pg.url("stoa"),
            helm = harness::bin_dir().join("fake-helm").display(),
            kc = self.kube.kubeconfig.display(),
            kubectl = harness::real_kubectl().display(),
        );
        fs::write(&self.config, text).expect("config");
    }

    /// Turns the site config into a site with no registry (`[registry]
    /// mode = "serve"`, `url` on a free loopback port): the port, for
    /// `stoa_e2e::serve::Serve::start_on`.
    pub fn use_serve_mode(&self) -> u16 {
        let port = harness::free_port();
        let cfg = fs::read_to_string(&self.config).expect("config");
        let reg = format!("url = \"http://{}\"", self.registry.host);
        assert!(cfg.contains(&reg), "{cfg}");
        fs::write(
            &self.config,
            cfg.replace(
                &reg,
                &format!("url = \"http://127.0.0.1:{port}\"\nmode = \"serve\""),
            ),
        )
        .expect("config");
        port
    }

    /// Builds a bundle from the STOA-only release manifest for `version`
    /// ([`stoa_only_dir`]: `stoa-platform-<v>.toml`, or `stoa-platform.toml`
    /// for 2.3.0), with paths made absolute; `migrations` replaces the
    /// migrations folder.
    pub fn bundle(&self, version: &str, migrations: Option<&Path>) -> PathBuf {
        self.bundle_with(version, migrations, &|t| t)
    }

    /// As [`Site::bundle`], with the release manifest's text passed through
    /// `edit` (after its paths were made absolute) before the build.
    pub fn bundle_with(
        &self,
        version: &str,
        migrations: Option<&Path>,
        edit: &dyn Fn(String) -> String,
    ) -> PathBuf {
        self.build(version, migrations, edit, None)
    }

    /// A delta bundle of the example release `version` on `base` (a
    /// bundle, parts or manifest): `build --base <base>`.
    pub fn delta_bundle(&self, version: &str, base: &Path) -> PathBuf {
        self.build(version, None, &|t| t, Some(base))
    }

    /// As [`Site::delta_bundle`], with the release manifest's text passed
    /// through `edit` as in [`Site::bundle_with`].
    pub fn delta_bundle_with(
        &self,
        version: &str,
        base: &Path,
        edit: &dyn Fn(String) -> String,
    ) -> PathBuf {
        self.build(version, None, edit, Some(base))
    }

    fn build(
        &self,
        version: &str,
        migrations: Option<&Path>,
        edit: &dyn Fn(String) -> String,
        base: Option<&Path>,
    ) -> PathBuf {
        let m = manifests_dir();
        let file = stoa_only_dir().join(if version == "2.3.0" {
            "stoa-platform.toml".to_owned()
        } else {
            format!("stoa-platform-{version}.toml")
        });
        let mut text = fs::read_to_string(&file).expect("release manifest");
        text = text
            .replace(
                "\"oci:vendor/images:",
                &format!("\"oci:{}:", self.images.display()),
            )
            .replace(
                "path = \"charts",
                &format!("path = \"{}/charts", m.display()),
            )
            .replace(
                "source = \"tools/",
                &format!("source = \"{}/tools/", m.display()),
            );
        let mig_line = text
            .lines()
            .find(|l| l.starts_with("dir = \"migrations/"))
            .expect("migrations dir line")
            .to_owned();
        let mig_dir = match migrations {
            Some(p) => p.to_owned(),
            None => m.join(
                mig_line
                    .trim_start_matches("dir = \"")
                    .trim_end_matches('"'),
            ),
        };
        text = text.replace(&mig_line, &format!("dir = \"{}\"", mig_dir.display()));
        let text = edit(text);
        let tag = match (migrations, base) {
            (_, Some(_)) => "-delta",
            (Some(_), None) => "-custom",
            (None, None) => "",
        };
        let n = fs::read_dir(self.path()).map(|r| r.count()).unwrap_or(0);
        let mf = self.path().join(format!("release-{version}{tag}-{n}.toml"));
        fs::write(&mf, text).expect("write manifest");
        let out = self
            .path()
            .join(format!("stoa-platform-{version}{tag}-{n}.tar.zst"));
        let mut c = harness::bundler();
        c.arg("build")
            .arg(&mf)
            .arg("--key")
            .arg(&self.key)
            .arg("--out")
            .arg(&out)
            .arg("--quiet");
        if let Some(b) = base {
            c.arg("--base").arg(b);
        }
        harness::ok(&mut c);
        out
    }

    /// The updater with `--config` and the Helm stand-in's state.
    pub fn updater(&self) -> Command {
        let mut c = harness::updater();
        c.arg("--config").arg(&self.config);
        c.env("FAKE_HELM_STATE", &self.helm_state);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// `status --json`; it exits 0 when idle, 4 while an operation runs and
    /// 8 when one was interrupted (all three are fine here).
    pub fn status_json(&self) -> serde_json::Value {
        let (_, out) = self.status_with_code(&["--json"]);
        serde_json::from_str(&out).expect("status json")
    }

    /// `status` as text (exit 0, 4 or 8).
    pub fn status_text(&self) -> String {
        self.status_with_code(&[]).1
    }

    /// `status [args]`: its exit code (0, 4 or 8) and stdout.
    pub fn status_with_code(&self, args: &[&str]) -> (i32, String) {
        let out = harness::run(self.updater().arg("status").args(args));
        let code = out.status.code().unwrap_or(-1);
        assert!(
            matches!(code, 0 | 4 | 8),
            "status exited {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (code, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn installed(&self) -> Option<String> {
        self.status_json()["installed"].as_str().map(str::to_owned)
    }

    /// Tables of the public schema, sorted.
    pub fn tables(&self) -> Vec<String> {
        let out = self.pg.psql(
            "stoa",
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        );
        out.lines().map(str::to_owned).collect()
    }

    pub fn migration_ids(&self) -> Vec<String> {
        let exists = self.pg.psql(
            "stoa",
            "SELECT to_regclass('stoa_schema_migrations') IS NOT NULL",
        );
        if exists != "t" {
            return Vec::new();
        }
        self.pg
            .psql("stoa", "SELECT id FROM stoa_schema_migrations ORDER BY id")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The Helm stand-in's `status -o json` of a release (Null when it is
    /// not installed).
    pub fn helm_status(&self, release: &str) -> serde_json::Value {
        let out = harness::run(
            Command::new(harness::bin_dir().join("fake-helm"))
                .env("FAKE_HELM_STATE", &self.helm_state)
                .args(["status", release, "-n", "stoa-system", "-o", "json"])
                .arg("--kubeconfig")
                .arg(&self.kube.kubeconfig),
        );
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The Helm stand-in's history of a release: (revision, status,
    /// description) per revision.
    pub fn helm_history(&self, release: &str) -> Vec<(u64, String, String)> {
        let out = harness::run(
            Command::new(harness::bin_dir().join("fake-helm"))
                .env("FAKE_HELM_STATE", &self.helm_state)
                .args(["history", release, "-n", "stoa-system", "-o", "json"])
                .arg("--kubeconfig")
                .arg(&self.kube.kubeconfig),
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        (
                            r["revision"].as_u64().unwrap_or(0),
                            r["status"].as_str().unwrap_or("").to_owned(),
                            r["description"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The Helm stand-in's current revision of a release.
    pub fn helm_revision(&self, release: &str) -> Option<u64> {
        let out = harness::run(
            Command::new(harness::bin_dir().join("fake-helm"))
                .env("FAKE_HELM_STATE", &self.helm_state)
                .args(["status", release, "-n", "stoa-system", "-o", "json"])
                .arg("--kubeconfig")
                .arg(&self.kube.kubeconfig),
        );
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["version"].as_u64()
    }

    /// The manifests "the cluster" got for a release's current revision:
    /// what the Helm stand-in rendered with real Helm, through the
    /// updater's post-renderer; the release's manifest, then its hooks'
    /// (Helm keeps them apart).
    pub fn helm_manifest(&self, release: &str) -> String {
        let out = harness::ok(
            Command::new(harness::bin_dir().join("fake-helm"))
                .env("FAKE_HELM_STATE", &self.helm_state)
                .args(["status", release, "-n", "stoa-system", "-o", "json"])
                .arg("--kubeconfig")
                .arg(&self.kube.kubeconfig),
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("status json");
        let mut text = v["manifest"].as_str().unwrap_or_default().to_owned();
        for h in v["hooks"].as_array().into_iter().flatten() {
            text.push_str("\n---\n");
            text.push_str(h["manifest"].as_str().unwrap_or_default());
        }
        text
    }

    /// Every `image:` value of rendered manifests.
    pub fn images_of(manifest: &str) -> Vec<String> {
        manifest
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image:"))
            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
            .collect()
    }

    /// `skopeo inspect --raw` of `repo:tag` on the site registry: the
    /// manifest's sha256, or None.
    pub fn registry_digest(&self, repo_tag: &str) -> Option<String> {
        let mut c = Command::new("skopeo");
        c.args(["inspect", "--raw"]);
        for f in self.registry.skopeo_flags(false) {
            c.arg(f.replace("--src-", "--"));
        }
        c.arg(self.registry.docker_ref(repo_tag));
        let out = harness::run(&mut c);
        if !out.status.success() {
            return None;
        }
        use sha2::Digest;
        Some(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(&out.stdout))
        ))
    }

    /// The digest the bundle's manifest records for an image.
    pub fn bundle_image_digest(bundle: &Path, name: &str) -> String {
        let out = harness::ok(harness::updater().arg("inspect").arg(bundle).arg("--json"));
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
        v["images"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name))
            .and_then(|i| i["digest"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

/// A migrations folder: the first `n` of the example's, plus `extra`
/// (file name, SQL) files.
pub fn migrations(dir: &Path, n: usize, extra: &[(&str, &str)]) -> PathBuf {
    fs::create_dir_all(dir).expect("migrations dir");
    let src = manifests_dir().join("migrations/stoa");
    let mut names: Vec<String> = fs::read_dir(&src)
        .expect("example migrations")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    for name in names {
        let id: usize = name[..4].parse().unwrap_or(0);
        if id <= n {
            fs::copy(src.join(&name), dir.join(&name)).expect("copy migration");
        }
    }
    for (name, sql) in extra {
        fs::write(dir.join(name), sql).expect("write migration");
    }
    dir.to_owned()
}
