//! A temp dir per test, the two programs as a user runs them, and real
//! services (docker-registry, PostgreSQL) started on loopback for a test and
//! stopped when it ends. Services are required: a missing one fails the
//! test with what to install, it never skips.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The folder holding the workspace's built binaries (target/<profile>).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test binary>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned();
    for b in ["stoa-bundler", "stoa-updater"] {
        assert!(
            dir.join(b).exists(),
            "{} is not built; run `cargo build --workspace --bins` first (scripts/test.sh does)",
            dir.join(b).display()
        );
    }
    dir
}

/// The bundler, with no registries.conf from the machine
/// (`$CONTAINERS_REGISTRIES_CONF` set to an empty file: the build host's
/// /etc/containers/registries.conf must not send test pulls elsewhere; a
/// test that wants one passes `--registries-conf` or sets the variable), and
/// rendering charts (`images`, build's image check) with real Helm 3 unless
/// the test environment names another in `STOA_HELM`.
pub fn bundler() -> Command {
    let mut c = Command::new(bin_dir().join("stoa-bundler"));
    c.env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
    if std::env::var_os("STOA_HELM").is_none() {
        c.env("STOA_HELM", real_helm(3));
    }
    c
}

pub fn updater() -> Command {
    Command::new(bin_dir().join("stoa-updater"))
}

pub fn fixtures_bin() -> PathBuf {
    bin_dir().join("stoa-fixtures")
}

/// Runs a command to completion, capturing output, with no stdin.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

/// Runs and asserts success, returning stdout.
#[track_caller]
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The progress lines a piped apply writes on stderr as it goes
/// (`stoa-updater: apply: …`; docs/OPERATIONS.md), which are not its error.
pub const PROGRESS_PREFIX: &str = "stoa-updater: apply: ";

/// `stderr` without the progress lines: what the command said went wrong.
pub fn without_progress(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with(PROGRESS_PREFIX))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs and asserts failure with exit `code`, returning stderr without its
/// progress lines.
#[track_caller]
pub fn fails(cmd: &mut Command, code: i32) -> String {
    let out = run(cmd);
    let stderr = without_progress(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}: expected exit {code}, got {}:\nstdout: {}\nstderr: {stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{cmd:?} panicked: {stderr}");
    stderr
}

/// Parses a program's `--json` output, failing the test with the text when
/// it is not JSON.
#[track_caller]
pub fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `stoa-bundler keygen --out <prefix>`; returns `<prefix>.key` (the public
/// half is `<prefix>.pub`).
pub fn keygen(prefix: &Path) -> PathBuf {
    ok(bundler().args(["keygen", "--out"]).arg(prefix));
    let mut key = prefix.as_os_str().to_owned();
    key.push(".key");
    PathBuf::from(key)
}

/// `stoa-bundler build <manifest> --key <key> --out <out> --quiet`; callers
/// add what their tests need (`--force`, `SOURCE_DATE_EPOCH`, …).
pub fn bundler_build(manifest: &Path, key: &Path, out: &Path) -> Command {
    let mut c = bundler();
    c.arg("build")
        .arg(manifest)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out)
        .arg("--quiet");
    c
}

/// Copies the tree `from` to `to` (created; merged into when it exists):
/// folders, files with their modes, symbolic links as links.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&src, &dst);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else {
            fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        }
    }
}

/// Requires an external program; fails (never skips) when it is missing.
#[track_caller]
pub fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is required (apt-get install {package}; scripts/test.sh installs it)"
    );
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early ({status})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 30 s");
}

/// `python3 -m http.server` on loopback serving `dir` (a classic Helm chart
/// repository in tests); stopped on drop.
#[derive(Debug)]
pub struct HttpServer {
    child: Child,
    pub port: u16,
}

impl HttpServer {
    pub fn start(dir: &Path) -> Self {
        require("python3", "python3");
        let port = free_port();
        let mut child = Command::new("python3")
            .args(["-m", "http.server", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        wait_for_port(port, "http.server", &mut child);
        Self { child, port }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TLS material made for a test: a CA and a server certificate for 127.0.0.1.
#[derive(Debug, Clone)]
pub struct TestCa {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    pub fn create(dir: &Path) -> Self {
        require("openssl", "openssl");
        fs::create_dir_all(dir).expect("ca dir");
        let p = |n: &str| dir.join(n);
        let sh = |script: &str| {
            let out = run(Command::new("sh").arg("-c").arg(script).current_dir(dir));
            assert!(
                out.status.success(),
                "openssl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=STOA test CA' 2>/dev/null");
        fs::write(
            p("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("san");
        sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null && \
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null");
        Self {
            ca_cert: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
        }
    }
}

/// A real `docker-registry` (Debian's distribution 2.x) on loopback.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    pub port: u16,
    /// `127.0.0.1:<port>`
    pub host: String,
    pub tls: Option<TestCa>,
    pub auth: Option<(String, String)>,
    pub root: PathBuf,
}

#[derive(Debug, Default, Clone)]
pub struct RegistryOptions {
    pub tls: bool,
    /// htpasswd user and password
    pub auth: Option<(String, String)>,
}

impl Registry {
    pub fn start(dir: &Path, opts: RegistryOptions) -> Self {
        Self::start_deletes(dir, opts, true)
    }

    /// As [`Registry::start`]; `deletes: false` refuses deletes
    /// (`storage.delete.enabled: false`, the registry's own default: a
    /// manifest DELETE answers 405 UNSUPPORTED). A separate constructor so
    /// that `RegistryOptions { tls, auth }` literals stay as they are.
    pub fn start_deletes(dir: &Path, opts: RegistryOptions, deletes: bool) -> Self {
        require("docker-registry", "docker-registry");
        let root = dir.join("registry");
        fs::create_dir_all(root.join("data")).expect("registry dir");
        let port = free_port();
        let tls = opts.tls.then(|| TestCa::create(&root.join("pki")));
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {deletes}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            root.join("data").display()
        );
        if let Some(ca) = &tls {
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                ca.server_cert.display(),
                ca.server_key.display()
            ));
        }
        if let Some((user, pass)) = &opts.auth {
            require("htpasswd", "apache2-utils");
            let out = run(Command::new("htpasswd").args(["-Bbn", user, pass]));
            assert!(out.status.success(), "htpasswd failed");
            fs::write(root.join("htpasswd"), &out.stdout).expect("htpasswd file");
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: stoa-test\n    path: {}\n",
                root.join("htpasswd").display()
            ));
        }
        fs::write(root.join("config.yml"), cfg).expect("registry config");
        let log = fs::File::create(root.join("registry.log")).expect("registry log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(root.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        wait_for_port(port, "docker-registry", &mut child);
        Self {
            child,
            port,
            host: format!("127.0.0.1:{port}"),
            tls,
            auth: opts.auth,
            root,
        }
    }

    /// `docker://127.0.0.1:<port>/<repo>` for skopeo.
    pub fn docker_ref(&self, repo_and_tag: &str) -> String {
        format!("docker://{}/{repo_and_tag}", self.host)
    }

    /// skopeo flags for this registry (TLS verification or plain HTTP, creds).
    pub fn skopeo_flags(&self, dest: bool) -> Vec<String> {
        let side = if dest { "dest" } else { "src" };
        let mut v = Vec::new();
        match &self.tls {
            Some(ca) => {
                let certs = self.root.join("skopeo-certs");
                fs::create_dir_all(&certs).expect("certs dir");
                fs::copy(&ca.ca_cert, certs.join("ca.crt")).expect("copy ca");
                v.push(format!("--{side}-cert-dir={}", certs.display()));
            }
            None => v.push(format!("--{side}-tls-verify=false")),
        }
        if let Some((u, p)) = &self.auth {
            v.push(format!("--{side}-creds={u}:{p}"));
        }
        v
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real PostgreSQL cluster in a temp folder, on a loopback port, run as
/// the `postgres` user (initdb refuses root). Trust auth on loopback.
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    pub root: PathBuf,
}

fn pg_bin() -> PathBuf {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = fs::read_dir(base)
        .unwrap_or_else(|_| {
            panic!(
                "PostgreSQL is required (apt-get install postgresql; scripts/test.sh installs it)"
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/initdb: apt-get install postgresql")
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let is_root = run(Command::new("id").arg("-u")).stdout.starts_with(b"0");
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl Postgres {
    pub fn start(dir: &Path) -> Self {
        let bin = pg_bin();
        // a folder the postgres user owns, outside the (root-only) temp dir
        let root = PathBuf::from(format!(
            "/tmp/stoa-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        fs::create_dir_all(&root).expect("pg root");
        let _ = run(Command::new("chown").args(["postgres:postgres"]).arg(&root));
        let data = root.join("data");
        let out = run(as_postgres(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data));
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            root.display()
        );
        let out = run(as_postgres(&bin, "pg_ctl")
            .args(["-D"])
            .arg(&data)
            .args(["-l"])
            .arg(root.join("pg.log"))
            .args(["-o", &opts, "-w", "start"]));
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = dir;
        Self {
            port,
            data,
            bin,
            root,
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database.
    pub fn create_db(&self, name: &str) {
        let out = run(Command::new("psql").args([
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            &self.url("postgres"),
            "-c",
            &format!("CREATE DATABASE \"{name}\""),
        ]));
        assert!(
            out.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs SQL with psql and returns its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = run(Command::new("psql").args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            &self.url(db),
            "-c",
            sql,
        ]));
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = run(as_postgres(&self.bin, "pg_ctl")
            .args(["-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "stop"]));
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The workspace root (the folder holding Cargo.lock).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Real Helm `major` (3 or 4): `$STOA_HELM_DIR/helm<major>`, by default
/// `target/helm-bin`, where scripts/install-deps.sh puts it. Missing is a
/// failure with the command that installs it, never a skip.
#[track_caller]
pub fn real_helm(major: u8) -> PathBuf {
    let dir = std::env::var_os("STOA_HELM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/helm-bin"));
    let helm = dir.join(format!("helm{major}"));
    assert!(
        helm.exists(),
        "real Helm {major} is required at {} (scripts/get-helm.sh {} installs it; scripts/test.sh does)",
        helm.display(),
        dir.display()
    );
    helm
}

/// The real, unmodified upstream charts of the Full On-Premises stack:
/// `$STOA_UPSTREAM_CHARTS`, by default `../shared/upstream-charts` next to
/// the repository. Never copied into the repository; a test that changes a
/// chart copies it into its temp dir first.
#[track_caller]
pub fn upstream_charts() -> PathBuf {
    let dir = std::env::var_os("STOA_UPSTREAM_CHARTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/upstream-charts"));
    assert!(
        dir.join("postgresql-ha/Chart.yaml").exists(),
        "the upstream charts are required at {} (set STOA_UPSTREAM_CHARTS)",
        dir.display()
    );
    dir
}

/// The local mirror of the Full On-Premises stack's upstream locations
/// (scripts/local-mirror.sh, the same the demo uses): a loopback
/// docker-registry with stand-in images under the upstream names and the
/// bitnami OCI charts pushed by real Helm, a classic chart repository for
/// opensearch and vault, and a registries.conf pointing docker.io, quay.io,
/// … at it. Stopped when dropped.
#[derive(Debug)]
pub struct Mirror {
    pub dir: PathBuf,
    /// `127.0.0.1:<port>` of the mirror registry.
    pub registry: String,
    /// `http://127.0.0.1:<port>` of the classic chart repository.
    pub chart_repo: String,
    /// The `stoa-bundler build` flags that use it (`--registries-conf …`,
    /// `--chart-repo-mirror …`, `--insecure-registry …`).
    pub build_flags: Vec<String>,
}

impl Mirror {
    pub fn start(dir: &Path) -> Self {
        require("docker-registry", "docker-registry");
        require("skopeo", "skopeo");
        require("python3", "python3");
        let dir = dir.join("mirror");
        let out = run(Command::new(repo_root().join("scripts/local-mirror.sh"))
            .arg("start")
            .arg(&dir)
            .env("STOA_HELM", real_helm(3))
            .env("STOA_FIXTURES", fixtures_bin())
            .env("STOA_UPSTREAM_CHARTS", upstream_charts()));
        assert!(
            out.status.success(),
            "scripts/local-mirror.sh start failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |f: &str| {
            fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| panic!("local mirror {f}: {e}"))
                .trim()
                .to_owned()
        };
        let build_flags = read("bundler-flags")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Self {
            registry: read("registry-host"),
            chart_repo: read("chart-repo-url"),
            build_flags,
            dir,
        }
    }

    /// The chart archive `helm package` made and the mirror serves
    /// (`packages/` for OCI charts, `repo/<repo>/` for the classic ones).
    pub fn chart_archive(&self, name: &str, version: &str) -> PathBuf {
        let file = format!("{name}-{version}.tgz");
        for d in ["packages", "repo/opensearch", "repo/hashicorp"] {
            let p = self.dir.join(d).join(&file);
            if p.exists() {
                return p;
            }
        }
        panic!("the local mirror has no {file}")
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = run(Command::new(repo_root().join("scripts/local-mirror.sh"))
            .arg("stop")
            .arg(&self.dir));
    }
}

/// Real kubectl, next to real Helm (`$STOA_HELM_DIR/kubectl`, by default
/// `target/helm-bin/kubectl`): the preflight asks the server's version with it.
#[track_caller]
pub fn real_kubectl() -> PathBuf {
    let k = real_helm(3).with_file_name("kubectl");
    assert!(
        k.exists(),
        "real kubectl is required at {} (scripts/get-helm.sh installs it)",
        k.display()
    );
    k
}

/// The `fake-kube-api` stand-in on loopback: answers `GET /version` like a
/// kube-apiserver of `git_version`; killed on drop. `kubeconfig` points at it.
pub struct KubeApi {
    child: std::process::Child,
    pub port: u16,
    pub kubeconfig: PathBuf,
}

impl KubeApi {
    #[track_caller]
    pub fn start(dir: &Path, git_version: &str) -> Self {
        Self::start_with_namespaces(dir, git_version, &dir.join("namespaces"))
    }

    /// As [`KubeApi::start`]; the namespaces that exist are the files in
    /// `namespaces` (the Helm stand-in adds `$FAKE_HELM_STATE/namespaces/<ns>`).
    #[track_caller]
    pub fn start_with_namespaces(dir: &Path, git_version: &str, namespaces: &Path) -> Self {
        fs::create_dir_all(dir).expect("kube api dir");
        let port_file = dir.join("kube-api.port");
        let kubeconfig = dir.join("kubeconfig");
        let _ = fs::remove_file(&port_file);
        let child = Command::new(bin_dir().join("fake-kube-api"))
            .arg(git_version)
            .arg(&port_file)
            .arg(&kubeconfig)
            .arg(namespaces)
            .stdout(Stdio::null())
            .spawn()
            .expect("start fake-kube-api (cargo build --workspace --bins)");
        let t = std::time::Instant::now();
        let port = loop {
            if let Some(p) = fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
            assert!(t.elapsed().as_secs() < 20, "fake-kube-api did not start");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        Self {
            child,
            port,
            kubeconfig,
        }
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `stoa-updater post-render --map MAP` (the hidden subcommand Helm runs)
/// over `input`: its whole output.
pub fn post_render(map: &Path, input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin_dir().join("stoa-updater"))
        .args(["post-render", "--map"])
        .arg(map)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stoa-updater post-render");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the manifests");
    child.wait_with_output().expect("post-render output")
}
