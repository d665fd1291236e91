//! The bearer-token flow: a real `docker-registry` configured for token
//! auth, and a small token service (python3 + openssl, written by the test)
//! that checks basic credentials and issues RS256 JWTs the registry trusts
//! (its certificate is the registry's `rootcertbundle`).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stoa_e2e::harness::{fails, free_port, ok, require, run};
use stoa_e2e::oci_fixture::{layer_tgz, write_layout, FixtureImage};
use stoa_e2e::registry_fixture::*;
use stoa_e2e::release::Release;

const TOKEN_SERVER: &str = r#"
import base64, json, os, subprocess, sys, time, http.server
from urllib.parse import urlparse, parse_qs
port, key, cert, user, pw, issuer, service = sys.argv[1:8]
der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], capture_output=True, check=True).stdout
x5c = base64.b64encode(der).decode()
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        want = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        if self.headers.get("Authorization", "") != want:
            self.send_response(401); self.send_header("Content-Length", "0"); self.end_headers(); return
        q = parse_qs(urlparse(self.path).query)
        access = []
        for s in q.get("scope", []):
            for one in s.split(" "):
                typ, name, actions = one.split(":")
                access.append({"type": typ, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": issuer, "sub": user, "aud": service, "exp": now + 600, "nbf": now - 10,
                  "iat": now, "jti": "%d-%d" % (now, os.getpid()), "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
        signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing.encode(),
                             capture_output=True, check=True).stdout
        token = signing + "." + b64(sig)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 600}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(port)), H).serve_forever()
"#;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "{what} exited");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let f = fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap()
}

#[test]
fn registry_bearer_token_flow() {
    require("docker-registry", "docker-registry");
    require("python3", "python3");
    require("openssl", "openssl");
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let out = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=stoa-token",
        ])
        .arg("-keyout")
        .arg(d.join("token.key"))
        .arg("-out")
        .arg(d.join("token.pem")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (user, password) = ("stoa", "t0ken-Pa55");
    let tport = free_port();
    fs::write(d.join("token.py"), TOKEN_SERVER).unwrap();
    let mut tc = spawn(
        Command::new("python3")
            .arg(d.join("token.py"))
            .arg(tport.to_string())
            .arg(d.join("token.key"))
            .arg(d.join("token.pem"))
            .args([user, password, "stoa-issuer", "stoa-registry"]),
        &d.join("token.log"),
    );
    wait_port(tport, &mut tc, "token service");
    let _token = Proc(tc);

    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    fs::create_dir_all(d.join("data")).unwrap();
    fs::write(
        d.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\nauth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: stoa-registry\n    issuer: stoa-issuer\n    rootcertbundle: {}\n",
            d.join("data").display(),
            d.join("token.pem").display()
        ),
    )
    .unwrap();
    let mut rc = spawn(
        Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml")),
        &d.join("registry.log"),
    );
    wait_port(port, &mut rc, "docker-registry");
    let _reg = Proc(rc);

    let layout = d.join("layout");
    write_layout(
        &layout,
        &[FixtureImage {
            ref_name: "app".into(),
            platforms: vec![("linux".into(), "amd64".into())],
            layers: vec![layer_tgz(&[("opt/app", b"bearer\n")])],
        }],
    )
    .unwrap();
    ok(Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("--dest-creds={user}:{password}"))
        .arg(format!("oci:{}:app", layout.display()))
        .arg(format!("docker://{host}/stoa/app:1")));
    let want = layout_digest(&layout, "app");

    let key = keygen(d);
    let manifest = release()
        .image(&format!("{host}/stoa/app:1"), None)
        .write(d);
    let flags = vec!["--insecure-registry".to_owned(), host.clone()];
    let home = d.join("home");
    fs::create_dir_all(&home).unwrap();

    // anonymous: the token service refuses, the build says so
    let mut c = build_cmd(&manifest, &key, &d.join("b.stoa"), &d.join("c"), &flags);
    c.env("HOME", &home)
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    let err = fails(&mut c, 3);
    assert!(
        err.contains("stoa/app:1") && err.contains("no credentials"),
        "{err}"
    );

    // credentials from $REGISTRY_AUTH_FILE (username/password form)
    let auth = d.join("auth.json");
    fs::write(
        &auth,
        format!(
            "{{\"auths\":{{\"{host}\":{{\"username\":\"{user}\",\"password\":\"{password}\"}}}}}}"
        ),
    )
    .unwrap();
    let out = d.join("b.stoa");
    let mut c = build_cmd(&manifest, &key, &out, &d.join("c"), &flags);
    c.env("HOME", &home)
        .env("REGISTRY_AUTH_FILE", &auth)
        .env_remove("DOCKER_CONFIG")
        .env_remove("XDG_RUNTIME_DIR");
    let s = ok(&mut c);
    assert!(!s.contains(password));
    assert_eq!(
        image_of(&out, &format!("{host}/stoa/app:1"))["digest"],
        want.as_str()
    );
}

/// Issue 7, defect 6, the bundler's side: a registry whose bearer challenge
/// names a realm with userinfo (`http://localhost:1@<trap>/token`: the HTTP
/// client would connect to the trap, which is loopback, so only the
/// userinfo rule stops it) gets no credentials: the build fails naming the
/// realm and nothing ever connects to the trap.
#[test]
fn bundler_refuses_a_token_realm_with_userinfo() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    let t = tempfile::tempdir().unwrap();
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    trap.set_nonblocking(true).unwrap();
    let reg = TcpListener::bind("127.0.0.1:0").unwrap();
    let reg_port = reg.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in reg.incoming() {
            let Ok(mut s) = s else { break };
            let mut r = BufReader::new(s.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\
                 WWW-Authenticate: Bearer realm=\"http://localhost:1@127.0.0.1:{trap_port}/token\",service=\"reg\"\r\n\r\n"
            );
        }
    });
    let host = format!("127.0.0.1:{reg_port}");
    let authfile = t.path().join("auth.json");
    fs::write(
        &authfile,
        format!("{{\"auths\":{{\"{host}\":{{\"username\":\"stoa\",\"password\":\"s3cret\"}}}}}}"),
    )
    .unwrap();
    let manifest = t.path().join("release.toml");
    Release::new("x", "1.0.0")
        .image(
            "registry.gostoa.dev/stoa/api:1.0.0",
            Some(&format!("docker://{host}/stoa/api:1.0.0")),
        )
        .write_to(&manifest);
    ok(stoa_e2e::harness::bundler()
        .args(["keygen", "--out"])
        .arg(t.path().join("k")));
    let mut c = build_cmd(
        &manifest,
        &t.path().join("k.key"),
        &t.path().join("o.tar.zst"),
        &t.path().join("cache"),
        &["--insecure-registry".into(), host.clone()],
    );
    c.env("REGISTRY_AUTH_FILE", &authfile);
    let err = fails(&mut c, 3);
    assert!(
        err.contains("user name or password") && err.contains("realm"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert!(
        trap.accept().is_err(),
        "something connected to the realm's real host"
    );
}
