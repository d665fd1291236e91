//! The support bundle (issue 22): `stoa-updater support-bundle` after a
//! failed apply, against a real docker-registry (with credentials), a real
//! PostgreSQL, the Helm stand-in and real kubectl talking to the API
//! stand-in (pods, events, logs). The age archive is decrypted by the `age`
//! CLI as an independent reader, and `stoa-bundler support open` reads it.
//! Planted secrets never appear in the decrypted archive (every byte is
//! searched); bad input each has its named test.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stoa_e2e::harness::{self, bundler, fails, json, ok, run, RegistryOptions};
use stoa_e2e::site::Site;

const DB_PASS: &str = "Db-pa55-URL-7731";
const PGPASS_PASS: &str = "Pgpass-file-4410";
const REG_PASS: &str = "Reg-cred-9925";
const ADMIN_PASS: &str = "Adm1n-chart-5512";
/// Known to no one: only its key name (`API_TOKEN`) gives it away.
const TOKEN: &str = "tok-unknown-8841";

/// An age identity made now (age-keygen); returns (identity file, recipient).
fn age_identity(dir: &Path) -> (PathBuf, String) {
    harness::require("age-keygen", "age");
    let id = dir.join("vendor-identity.txt");
    ok(std::process::Command::new("age-keygen").arg("-o").arg(&id));
    let r = ok(std::process::Command::new("age-keygen").arg("-y").arg(&id));
    (id, r.trim().to_owned())
}

/// Every file under `dir`: its bytes and modification time.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p.clone());
            }
            let bytes = if m.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.insert(p, (bytes, m.modified().unwrap()));
        }
    }
    out
}

/// The members of a tar.zst stream: name → bytes.
fn members(tar_zst: impl Read) -> BTreeMap<String, Vec<u8>> {
    let mut t = tar::Archive::new(zstd::Decoder::new(tar_zst).unwrap());
    let mut out = BTreeMap::new();
    for e in t.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        out.insert(name, b);
    }
    out
}

fn plain_members(file: &Path) -> BTreeMap<String, Vec<u8>> {
    members(fs::File::open(file).unwrap())
}

fn text(m: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
    String::from_utf8_lossy(
        m.get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", m.keys())),
    )
    .into_owned()
}

/// A pod of namespace `ns` as the API returns it; `ready` or waiting in
/// CrashLoopBackOff, with `env` in its one container `c`.
fn plant_pod(s: &Site, ns: &str, name: &str, ready: bool, env: &[(&str, &str)], log: &str) {
    let dir = s.helm_state.join("pods").join(ns);
    fs::create_dir_all(&dir).unwrap();
    let env: Vec<serde_json::Value> = env
        .iter()
        .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
        .collect();
    let state = if ready {
        serde_json::json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    } else {
        serde_json::json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}})
    };
    let pod = serde_json::json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "uid": "0000-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c", "image": "site/stoa:1", "env": env}]},
        "status": {"phase": if ready { "Running" } else { "Pending" },
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{"name": "c", "ready": ready, "restartCount": 7, "image": "site/stoa:1",
                "imageID": "", "state": state}]},
    });
    fs::write(dir.join(format!("{name}.json")), pod.to_string()).unwrap();
    fs::write(dir.join(format!("{name}.c.log")), log).unwrap();
}

/// A site at 2.0.0, then 2.1.0 failed at helm:stoa-gateway and left;
/// `before` runs before the first apply.
fn failed_site(opts: RegistryOptions, before: &dyn Fn(&Site)) -> Site {
    let mut s = Site::start_with(opts);
    before(&s);
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    s.env
        .push(("FAKE_HELM_FAIL_RELEASE".into(), "stoa-gateway".into()));
    fails(
        s.updater()
            .arg("apply")
            .arg(&b210)
            .arg("--no-auto-rollback"),
        6,
    );
    s.env.clear();
    s
}

/// Plants every secret (database URL, a .pgpass passfile, registry
/// credentials, a chart value, env vars, log lines) and writes the config.
fn plant_secrets(s: &Site, recipient: &str) {
    let d = s.path();
    let values = d.join("site-values");
    fs::create_dir_all(&values).unwrap();
    fs::write(
        values.join("stoa-gateway.yaml"),
        format!("ui:\n  adminPassword: \"{ADMIN_PASS}\"\n"),
    )
    .unwrap();
    let pgpass = d.join("pgpass");
    fs::write(
        &pgpass,
        format!("127.0.0.1:*:other:postgres:{PGPASS_PASS}\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&pgpass, fs::Permissions::from_mode(0o600)).unwrap();
    s.pg.create_db("other");
    s.write_config(&format!(
        "values_dir = \"{}\"\n\n[databases.other]\nurl = \"postgres://postgres@127.0.0.1:{}/other?passfile={}\"\nsnapshot = false\n\n[support]\nrecipient = \"{recipient}\"\n",
        values.display(),
        s.pg.port,
        pgpass.display()
    ));
    // the password in [databases.stoa] url only ([databases.other] uses its passfile)
    let cfg = fs::read_to_string(&s.config).unwrap().replacen(
        "url = \"postgres://postgres@127.0.0.1",
        &format!("url = \"postgres://postgres:{DB_PASS}@127.0.0.1"),
        1,
    );
    fs::write(&s.config, cfg).unwrap();
    let env = [
        ("DB_PASSWORD", DB_PASS),
        ("ADMIN_PASSWORD", ADMIN_PASS),
        (
            "DB_URL",
            &format!("postgres://app:{DB_PASS}@db/stoa") as &str,
        ),
        ("API_TOKEN", TOKEN),
        ("MODE", "fast"),
    ];
    let log = format!(
        "starting gateway\nconnecting to db with {DB_PASS}\nlogin to registry as stoa/{REG_PASS}\npgpass gave {PGPASS_PASS}\nadmin is {ADMIN_PASS}\npanic: upstream stoa-api not reachable\n"
    );
    plant_pod(
        s,
        "stoa-system",
        "stoa-gateway-5d9f-abcde",
        false,
        &env,
        &log,
    );
    plant_pod(
        s,
        "stoa-system",
        "stoa-api-7c4b-fghij",
        true,
        &[("MODE", "fast")],
        "ok\n",
    );
}

#[test]
fn a_failed_apply_gives_a_bundle_age_decrypts_and_support_open_names_the_step() {
    harness::require("age", "age");
    let keys = tempfile::tempdir().unwrap();
    let (id, recipient) = age_identity(keys.path());
    let opts = RegistryOptions {
        tls: false,
        auth: Some(("stoa".into(), REG_PASS.into())),
    };
    let s = failed_site(opts, &|s| plant_secrets(s, &recipient));
    let before = tree(&s.state_dir);
    let out = s.path().join("out/support.age");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let t = Instant::now();
    let rep = json(&ok(s
        .updater()
        .args(["support-bundle", "--json", "--out"])
        .arg(&out)));
    let took = t.elapsed();
    assert_eq!(rep["encryption"], "age", "{rep}");
    for c in rep["collectors"].as_array().unwrap() {
        assert_eq!(c["outcome"], "ok", "{c}");
    }
    assert_eq!(tree(&s.state_dir), before, "the state folder changed");
    // nothing left beside the bundle (the work folder is gone)
    let left: Vec<_> = fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");

    // the age CLI, an independent reader, decrypts it
    let plain = s.path().join("support.tar.zst");
    ok(std::process::Command::new("age")
        .args(["-d", "-i"])
        .arg(&id)
        .arg("-o")
        .arg(&plain)
        .arg(&out));
    let raw = fs::read(&plain).unwrap();
    let mut all = Vec::new();
    zstd::Decoder::new(&raw[..])
        .unwrap()
        .read_to_end(&mut all)
        .unwrap();
    let m = members(&raw[..]);
    for secret in [DB_PASS, PGPASS_PASS, REG_PASS, ADMIN_PASS, TOKEN] {
        let has = |b: &[u8]| b.windows(secret.len()).any(|w| w == secret.as_bytes());
        let files: Vec<&String> = m.iter().filter(|(_, b)| has(b)).map(|(n, _)| n).collect();
        assert!(
            !has(&all),
            "{secret} is in the decrypted archive: {files:?}"
        );
    }
    assert_members(&m);
    assert_redactions(&s, &m);
    assert_vendor_summary(&s, &out, &id);
    eprintln!(
        "support-bundle took {took:?}, {} bytes",
        fs::metadata(&out).unwrap().len()
    );
}

/// The files a support bundle of the failed site holds.
fn assert_members(m: &BTreeMap<String, Vec<u8>>) {
    for name in [
        "SUMMARY.json",
        "REDACTIONS.txt",
        "versions.json",
        "config/updater.toml",
        "state/state.json",
        "state/journal.jsonl",
        "status.json",
        "preflight.json",
        "store.json",
        "databases/stoa.json",
        "databases/other.json",
        "helm/stoa-system/stoa-gateway/status.json",
        "helm/stoa-system/stoa-gateway/values.yaml",
        "helm/stoa-system/stoa-gateway/manifest.yaml",
        "cluster/stoa-system/pods.json",
        "cluster/stoa-system/events.json",
        "cluster/stoa-system/pods/stoa-gateway-5d9f-abcde/describe.txt",
        "cluster/stoa-system/pods/stoa-gateway-5d9f-abcde/c.log",
    ] {
        assert!(m.contains_key(name), "no {name} in {:?}", m.keys());
    }
    // a Ready pod is not described
    assert!(
        !m.keys().any(|k| k.contains("stoa-api-7c4b")),
        "{:?}",
        m.keys()
    );
}

/// REDACTIONS.txt names each planted place; what was redacted and what the cluster was asked.
fn assert_redactions(s: &Site, m: &BTreeMap<String, Vec<u8>>) {
    let red = text(m, "REDACTIONS.txt");
    // (file, kind): a line of REDACTIONS.txt names each place
    let stoa_url = "known secret: the password in [databases.stoa] url";
    let gw = "cluster/stoa-system/pods/stoa-gateway-5d9f-abcde/";
    for (file, kind) in [
        ("config/updater.toml", stoa_url),
        (
            "helm/stoa-system/stoa-gateway/values.yaml",
            "known secret: `adminPassword` in the site's values file stoa-gateway.yaml",
        ),
        (&format!("{gw}c.log: line 2:") as &str, stoa_url),
        (
            &format!("{gw}c.log: line 3:"),
            "known secret: the registry password ([registry] password_file)",
        ),
        (
            &format!("{gw}c.log: line 4:"),
            "known secret: the password [databases.other] connects with",
        ),
        (
            &format!("{gw}c.log: line 5:"),
            "known secret: `adminPassword` in the site's values file",
        ),
        ("cluster/stoa-system/pods.json", stoa_url),
        (
            "cluster/stoa-system/pods.json",
            "value of an env var named as a secret",
        ),
        (&format!("{gw}describe.txt"), stoa_url),
        (&format!("{gw}describe.txt"), "value of key `API_TOKEN`"),
    ] {
        assert!(
            red.lines().any(|l| l.starts_with(file) && l.contains(kind)),
            "REDACTIONS.txt does not name {file} {kind:?}:\n{red}"
        );
    }
    assert!(!red.contains("tok-unknown"), "{red}");
    let values = text(m, "helm/stoa-system/stoa-gateway/values.yaml");
    assert!(values.contains("adminPassword: \"[REDACTED]\""), "{values}");
    let cfg = text(m, "config/updater.toml");
    assert!(
        cfg.contains("postgres://postgres:[REDACTED]@127.0.0.1"),
        "{cfg}"
    );
    let mig = json(&text(m, "databases/stoa.json"));
    assert!(mig.as_array().is_some_and(|a| !a.is_empty()), "{mig}");
    // the cluster was asked for pods, events, logs; never a Secret
    let asked = fs::read_to_string(s.helm_state.join("kube-requests.log")).unwrap();
    assert!(
        asked.contains("/pods/stoa-gateway-5d9f-abcde/log"),
        "{asked}"
    );
    assert!(!asked.contains("/secrets"), "{asked}");
}

/// The vendor's side: `support open` names the failing step and its evidence.
fn assert_vendor_summary(s: &Site, out: &Path, id: &Path) {
    // the vendor's side: the summary names the failing step and its evidence
    let sum = ok(bundler()
        .args(["support", "open"])
        .arg(out)
        .arg("--identity")
        .arg(id));
    for want in [
        "LAST FAILURE: apply 2.0.0 -> 2.1.0 (left for inspection)",
        "  step: helm:stoa-gateway",
        "evidence: helm stoa-system/stoa-gateway: revision 3 deployed: Rollback to 1",
        "evidence: helm stoa-system/stoa-gateway: revision 2 failed: ",
        "evidence: pod stoa-system/stoa-gateway-5d9f-abcde (c: CrashLoopBackOff); last log line c: panic: upstream stoa-api not reachable",
        "history  apply nothing -> 2.0.0: applied",
        "journal  apply helm:stoa-gateway failed",
        "version mismatches:\n  helm stoa-system/stoa-gateway runs chart stoa-gateway-2.0.0; release 2.1.0 needs stoa-gateway-2.1.0\n",
    ] {
        assert!(sum.contains(want), "support open lacks {want:?}:\n{sum}");
    }
    let ex = s.path().join("extracted");
    let j = json(&ok(bundler()
        .args(["support", "open", "--json"])
        .arg(out)
        .arg("--identity")
        .arg(id)
        .arg("--extract")
        .arg(&ex)));
    assert_eq!(j["last_failure"]["step"], "helm:stoa-gateway", "{j}");
    assert!(ex.join("cluster/stoa-system/pods.json").is_file());
}

#[test]
fn a_hanging_kubectl_is_cut_at_its_time_limit_and_the_bundle_still_written() {
    let s = failed_site(RegistryOptions::default(), &|_| {});
    // an API server that takes the connection and never answers
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    let kc = fs::read_to_string(&s.kube.kubeconfig).unwrap();
    let kc = kc.replace(&format!(":{}", s.kube.port), &format!(":{port}"));
    fs::write(&s.kube.kubeconfig, kc).unwrap();
    let out = s.path().join("support.tar.zst");
    let t = Instant::now();
    let rep = json(&ok(s
        .updater()
        .args([
            "support-bundle",
            "--no-encrypt",
            "--json",
            "--collector-timeout",
            "3s",
            "--out",
        ])
        .arg(&out)));
    let took = t.elapsed();
    assert!(took < Duration::from_secs(60), "took {took:?}");
    let cs = rep["collectors"].as_array().unwrap();
    let k = cs
        .iter()
        .find(|c| c["name"] == "kubernetes stoa-system")
        .unwrap();
    assert_eq!(k["outcome"], "timed-out", "{k}");
    assert!(k["seconds"].as_f64().unwrap() < 10.0, "{k}");
    let v = cs.iter().find(|c| c["name"] == "versions").unwrap();
    assert_eq!(v["outcome"], "timed-out", "kubectl version hangs too: {v}");
    // the rest was collected and the bundle written
    let m = plain_members(&out);
    assert!(m.contains_key("state/state.json"), "{:?}", m.keys());
    let sum = text(&m, "SUMMARY.json");
    assert!(sum.contains("timed-out"), "{sum}");
    let o = ok(bundler().args(["support", "open"]).arg(&out));
    assert!(o.contains("collectors not ok:\n"), "{o}");
    assert!(o.contains("\n  kubernetes stoa-system: timed-out: "), "{o}");
    assert!(o.contains("\n  versions: timed-out: kubectl: "), "{o}");
    drop(dead);
}

#[test]
fn a_huge_log_is_bounded_and_the_cut_is_in_the_summary() {
    let s = failed_site(RegistryOptions::default(), &|_| {});
    // 200 lines of 40 KiB: 8 MiB of log for one container
    let line = "x".repeat(40 * 1024);
    let mut log = String::new();
    for i in 0..400 {
        log.push_str(&format!("{i:04} {line}\n"));
    }
    plant_pod(&s, "stoa-system", "stoa-gateway-big", false, &[], &log);
    let out = s.path().join("support.tar.zst");
    let rep = json(&ok(s
        .updater()
        .args([
            "support-bundle",
            "--no-encrypt",
            "--json",
            "--max-size",
            "1MiB",
            "--out",
        ])
        .arg(&out)));
    assert!(
        rep["bytes"].as_u64().unwrap() <= 1 << 20,
        "{}",
        rep["bytes"]
    );
    let cut = rep["cut"].as_array().unwrap();
    assert!(
        cut[0]
            .as_str()
            .unwrap()
            .starts_with("cluster/stoa-system/pods/stoa-gateway-big/c.log: cut from"),
        "{cut:?}"
    );
    let m = plain_members(&out);
    let kept = text(&m, "cluster/stoa-system/pods/stoa-gateway-big/c.log");
    assert!(kept.len() < 1 << 20, "{}", kept.len());
    assert!(kept.starts_with("[stoa: the first "), "{}", &kept[..80]);
    // the end of the log is what is kept: the last of the 200 lines
    assert!(kept.trim_end().ends_with(&line), "the end is kept");
    assert!(kept.contains("\n0399 "), "the last line is kept");
    let o = ok(bundler().args(["support", "open"]).arg(&out));
    assert!(o.contains("cut to fit --max-size:"), "{o}");
}

#[test]
fn a_missing_state_folder_is_recorded_and_not_created() {
    let s = Site::start();
    assert!(!s.state_dir.exists());
    let out = s.path().join("support.tar.zst");
    let rep = json(&ok(s
        .updater()
        .args(["support-bundle", "--no-encrypt", "--json", "--out"])
        .arg(&out)));
    let cs = rep["collectors"].as_array().unwrap();
    let st = cs.iter().find(|c| c["name"] == "state folder").unwrap();
    assert_eq!(st["outcome"], "failed", "{st}");
    assert!(st["error"].as_str().unwrap().contains("is missing"), "{st}");
    assert!(
        !s.state_dir.exists(),
        "support-bundle created the state folder"
    );
    let m = plain_members(&out);
    assert!(m.contains_key("versions.json") && m.contains_key("config/updater.toml"));
    let o = ok(bundler().args(["support", "open"]).arg(&out));
    assert!(o.contains("last failure: none recorded"), "{o}");
}

#[test]
fn an_interrupted_operation_is_left_as_it_is_and_the_lock_is_not_taken() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    s.crash_after(&["apply".as_ref(), b210.as_os_str()], "helm:stoa-api");
    let (code, _) = s.status_with_code(&[]);
    assert_eq!(code, 8);
    // another process holds the site lock the whole time
    let mut holder = std::process::Command::new("flock")
        .args(["--exclusive", "--no-fork"])
        .arg(s.state_dir.join("lock"))
        .args(["sleep", "120"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = tree(&s.state_dir);
    let out = s.path().join("support.tar.zst");
    let t = Instant::now();
    let rep = json(&ok(s
        .updater()
        .args(["support-bundle", "--no-encrypt", "--json", "--out"])
        .arg(&out)));
    assert!(t.elapsed() < Duration::from_secs(60));
    let after = tree(&s.state_dir);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(after, before, "support-bundle changed the state folder");
    assert!(
        rep["collectors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"] == "ok"),
        "{rep}"
    );
    let m = plain_members(&out);
    let st = json(&text(&m, "state/state.json"));
    assert_eq!(st["pending"]["op"], "apply", "{st}");
    let (code, _) = s.status_with_code(&[]);
    assert_eq!(code, 8, "still interrupted");
}

#[test]
fn a_recipient_that_is_not_an_age_key_is_a_usage_error() {
    let s = Site::start();
    let out = s.path().join("support.age");
    let e = fails(
        s.updater()
            .args([
                "support-bundle",
                "--recipient",
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
                "--out",
            ])
            .arg(&out),
        2,
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("is not an age X25519 recipient"), "{e}");
    assert!(!out.exists());
    // none at all, without --no-encrypt: the same exit, saying what to do
    let o = run(s
        .updater()
        .args(["support-bundle", "--json", "--out"])
        .arg(&out));
    assert_eq!(o.status.code(), Some(2));
    let j = json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(j["error"]["kind"], "support-recipient", "{j}");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-encrypt"),
        "{j}"
    );
    assert!(!out.exists());
    // an --out that exists, or inside state_dir: refused, nothing written
    fs::write(&out, "keep me").unwrap();
    let e = fails(
        s.updater()
            .args(["support-bundle", "--no-encrypt", "--out"])
            .arg(&out),
        2,
    );
    assert!(e.contains("exists"), "{e}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "keep me");
    let inside = s.state_dir.join("support.tar.zst");
    let e = fails(
        s.updater()
            .args(["support-bundle", "--no-encrypt", "--out"])
            .arg(&inside),
        2,
    );
    assert!(e.contains("inside state_dir"), "{e}");
    assert!(!s.state_dir.exists());
    // --dry-run lists what would go, and writes nothing
    let l = ok(s.updater().args(["support-bundle", "--dry-run"]));
    assert!(
        l.contains("config/updater.toml") && l.contains("versions.json"),
        "{l}"
    );
}

#[test]
fn support_open_refuses_a_truncated_or_tampered_bundle_with_one_line() {
    let s = Site::start();
    let (id, recipient) = age_identity(s.path());
    let out = s.path().join("support.age");
    ok(s.updater()
        .args(["support-bundle", "--recipient", &recipient, "--out"])
        .arg(&out));
    let bytes = fs::read(&out).unwrap();
    let open = |f: &Path, id: &Path| {
        let e = fails(
            bundler()
                .args(["support", "open"])
                .arg(f)
                .arg("--identity")
                .arg(id),
            3,
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    };
    let cut = s.path().join("cut.age");
    fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = open(&cut, &id);
    assert!(e.contains("support bundle"), "{e}");
    let mut t = bytes.clone();
    let at = t.len() / 2;
    t[at] ^= 0x55;
    let bad = s.path().join("tampered.age");
    fs::write(&bad, &t).unwrap();
    open(&bad, &id);
    let x = s.path().join("x");
    fs::create_dir_all(&x).unwrap();
    let (other, _) = age_identity(&x);
    let e = open(&out, &other);
    assert!(e.contains("cannot decrypt"), "{e}");
    let e = open(&s.config, &id);
    assert!(e.contains("not a support bundle"), "{e}");
    // an identity file that is not one: exit 2, one line
    let e = fails(
        bundler()
            .args(["support", "open"])
            .arg(&out)
            .arg("--identity")
            .arg(&s.config),
        2,
    );
    assert!(e.contains("not an age X25519 identity"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // the right identity opens it
    ok(bundler()
        .args(["support", "open"])
        .arg(&out)
        .arg("--identity")
        .arg(&id));
}
