//! A stand-in for the `helm` CLI (Kubernetes cannot run here). It keeps each
//! release's revision history the way Helm does, in `$FAKE_HELM_STATE`
//! (`<namespace>/<release>.json`), and logs every call to
//! `$FAKE_HELM_STATE/calls.log`.
//!
//! It answers as real Helm 3.18.0 and 4.2.3 did against a real API server
//! (../shared/helm-transcripts/): the same version strings, error wording
//! (multi-line errors, Helm 4's `level=WARN` line, "Kubernetes cluster
//! unreachable" in 3 / "kubernetes cluster unreachable" in 4), history
//! descriptions and pending states.
//!
//! - `FAKE_HELM_VERSION=3|4` (default 3): `version --short` answers
//!   `v3.18.0+gcc58e3f` or `v4.2.3+g43e8b7f`; any other value is answered
//!   as is (an unsupported version, e.g. `v2.17.0+ga690bad`). `upgrade`
//!   rejects `--rollback-on-failure` in 3 ("unknown flag") and takes
//!   `--atomic` in 4 with its deprecation warning, like the real CLI.
//! - The cluster: every command but `version` needs `--kubeconfig <file>`
//!   naming an existing file. A missing file fails as Helm does ("…cluster
//!   unreachable: stat <file>: no such file or directory"); without the
//!   flag (whatever `KUBECONFIG` says) it fails as Helm falling back to
//!   localhost:8080 does.
//! - `FAKE_HELM_SLEEP_MS=<ms>`: an upgrade takes that long (a slow
//!   `--wait`); meanwhile the release is `pending-install`/`pending-upgrade`,
//!   and stays so when the process is killed, so the next upgrade gets
//!   "another operation (install/upgrade/rollback) is in progress".
//! - `FAKE_HELM_FAIL_RELEASE=<release>`: an upgrade of that release fails
//!   with a Deployment that never became ready (with --atomic /
//!   --rollback-on-failure it is rolled back, like Helm does).
//!   `FAKE_HELM_FAIL_ROLLBACK=<release>`: a rollback of it fails the same way.
//!
//! - `--create-namespace` creates the namespace as a file in
//!   `$FAKE_HELM_STATE/namespaces/`, where `fake-kube-api` answers for it.
//!
//! Commands: version, upgrade --install, rollback, history -o json,
//! status -o json, uninstall.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Value};

fn state_dir() -> PathBuf {
    PathBuf::from(std::env::var("FAKE_HELM_STATE").unwrap_or_else(|_| "/tmp/fake-helm".into()))
}

/// `version --short` as the real binaries print it.
fn version() -> String {
    match std::env::var("FAKE_HELM_VERSION").ok().as_deref() {
        None | Some("3") => "v3.18.0+gcc58e3f".into(),
        Some("4") => "v4.2.3+g43e8b7f".into(),
        Some(other) => other.to_owned(),
    }
}

fn major() -> u32 {
    version()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(3)
}

/// "Kubernetes cluster unreachable" (3) / "kubernetes cluster unreachable" (4).
fn unreachable(cause: &str) -> ExitCode {
    let k = if major() >= 4 {
        "kubernetes"
    } else {
        "Kubernetes"
    };
    fail(&format!("{k} cluster unreachable: {cause}"))
}

/// The "atomic" flag's name in the messages of each major version.
fn atomic_name() -> &'static str {
    if major() >= 4 {
        "rollback-on-failure"
    } else {
        "atomic"
    }
}

/// What a failed `--wait` says: Helm 4 names the resource, Helm 3 only
/// "context deadline exceeded" (transcripts with-kcm.txt).
fn wait_failure(ns: &str, rel: &str) -> String {
    if major() >= 4 {
        format!("resource Deployment/{ns}/{rel}-app not ready. status: InProgress, message: Available: 0/1\ncontext deadline exceeded")
    } else {
        "context deadline exceeded".into()
    }
}

/// Helm 4 prints a `level=WARN` line before its `Error:` line.
fn warn4(op: &str, rel: &str, cause: &str) {
    if major() >= 4 {
        eprintln!(
            "level=WARN msg=\"{op} failed\" name={rel} error=\"{}\"",
            cause.replace('\n', "\\n")
        );
    }
}

fn is_pending(r: &Value) -> bool {
    r["status"]
        .as_str()
        .is_some_and(|s| s.starts_with("pending-"))
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("Error: {msg}");
    ExitCode::from(1)
}

fn flag(args: &[String], names: &[&str]) -> Option<String> {
    args.iter()
        .position(|a| names.contains(&a.as_str()))
        .and_then(|i| args.get(i + 1).cloned())
}

fn positionals(args: &[String]) -> Vec<String> {
    let with_value = [
        "-n",
        "--namespace",
        "-f",
        "--values",
        "--set",
        "--timeout",
        "-o",
        "--output",
        "--kubeconfig",
        "--history-max",
        "--revision",
        "--max",
    ];
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if with_value.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            out.push(a.clone());
        }
        i += 1;
    }
    out
}

fn release_file(ns: &str, rel: &str) -> PathBuf {
    state_dir().join(ns).join(format!("{rel}.json"))
}

fn load(ns: &str, rel: &str) -> Vec<Value> {
    fs::read(release_file(ns, rel))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(ns: &str, rel: &str, h: &[Value]) {
    let p = release_file(ns, rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let tmp = p.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(h).unwrap()).unwrap();
    fs::rename(tmp, p).unwrap();
}

fn now() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    )
}

fn chart_meta(path: &Path) -> (String, String) {
    // read Chart.yaml from the .tgz: name and version lines
    let out = std::process::Command::new("tar")
        .args(["-xzOf"])
        .arg(path)
        .arg("--wildcards")
        .arg("*/Chart.yaml")
        .output();
    let text = out
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    (get("name"), get("version"))
}

fn set_deployed(h: &mut [Value]) {
    for r in h.iter_mut() {
        if r["status"] == "deployed" {
            r["status"] = json!("superseded");
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = fs::create_dir_all(state_dir());
    if let Ok(mut log) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir().join("calls.log"))
    {
        let _ = writeln!(log, "helm {}", args.join(" "));
    }
    let Some(cmd) = args.first().cloned() else {
        return fail("no command");
    };
    let rest = &args[1..];
    let ns = flag(rest, &["-n", "--namespace"]).unwrap_or_else(|| "default".into());
    let pos = positionals(rest);
    if cmd == "version" {
        println!("{}", version());
        return ExitCode::SUCCESS;
    }
    match flag(rest, &["--kubeconfig"]) {
        Some(k) if !Path::new(&k).is_file() => {
            return unreachable(&format!("stat {k}: no such file or directory"));
        }
        Some(_) => {}
        None => {
            return unreachable("Get \"http://localhost:8080/version\": dial tcp 127.0.0.1:8080: connect: connection refused");
        }
    }
    match cmd.as_str() {
        "upgrade" => {
            let atomic = rest.iter().any(|a| a == "--atomic");
            let rof = rest.iter().any(|a| a == "--rollback-on-failure");
            if major() >= 4 && atomic {
                eprintln!("Flag --atomic has been deprecated, use --rollback-on-failure instead");
            }
            if major() < 4 && rof {
                return fail("unknown flag: --rollback-on-failure");
            }
            let (Some(rel), Some(chart)) = (pos.first(), pos.get(1)) else {
                return fail("\"helm upgrade\" requires 2 arguments");
            };
            let install = rest.iter().any(|a| a == "--install" || a == "-i");
            let mut h = load(&ns, rel);
            if h.is_empty() && !install {
                return fail(&format!(
                    "UPGRADE FAILED: \"{rel}\" has no deployed releases"
                ));
            }
            if h.last().is_some_and(is_pending) {
                let what = if h.len() == 1 {
                    "INSTALLATION"
                } else {
                    "UPGRADE"
                };
                return fail(&format!(
                    "{what} FAILED: another operation (install/upgrade/rollback) is in progress"
                ));
            }
            let chart_path = Path::new(chart);
            if !chart_path.is_file() {
                return fail(&format!("path \"{chart}\" not found"));
            }
            let (cname, cver) = chart_meta(chart_path);
            let values = flag(rest, &["-f", "--values"])
                .and_then(|f| fs::read_to_string(f).ok())
                .unwrap_or_default();
            let sets: Vec<String> = rest
                .iter()
                .enumerate()
                .filter(|(_, a)| a.as_str() == "--set")
                .filter_map(|(i, _)| rest.get(i + 1).cloned())
                .collect();
            if rest.iter().any(|a| a == "--create-namespace") {
                // the fake API server answers for the namespaces listed here
                let d = state_dir().join("namespaces");
                let _ = fs::create_dir_all(&d);
                let _ = fs::write(d.join(&ns), "");
            }
            let rev = h.len() as u64 + 1;
            let first = rev == 1;
            // the new revision is pending while Helm waits; a kill leaves it so
            let prev_deployed = h.iter().rposition(|r| r["status"] == "deployed");
            h.push(json!({
                "revision": rev, "updated": now(),
                "status": if first { "pending-install" } else { "pending-upgrade" },
                "chart": format!("{cname}-{cver}"), "app_version": cver,
                "description": if first { "Initial install underway" } else { "Preparing upgrade" },
                "values": values, "set": sets,
            }));
            save(&ns, rel, &h);
            if let Some(ms) = std::env::var("FAKE_HELM_SLEEP_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                // like --wait on a slow rollout
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            let failing =
                std::env::var("FAKE_HELM_FAIL_RELEASE").ok().as_deref() == Some(rel.as_str());
            let cause = wait_failure(&ns, rel);
            let last = h.len() - 1;
            if !failing {
                if let Some(i) = prev_deployed {
                    h[i]["status"] = json!("superseded");
                }
                h[last]["status"] = json!("deployed");
                h[last]["description"] = json!(if first {
                    "Install complete"
                } else {
                    "Upgrade complete"
                });
                save(&ns, rel, &h);
                if first {
                    println!("Release \"{rel}\" does not exist. Installing it now.");
                } else {
                    println!("Release \"{rel}\" has been upgraded. Happy Helming!");
                }
                println!("NAME: {rel}\nNAMESPACE: {ns}\nSTATUS: deployed\nREVISION: {rev}\nTEST SUITE: None");
                return ExitCode::SUCCESS;
            }
            h[last]["status"] = json!("failed");
            h[last]["description"] = json!(format!(
                "{} \"{rel}\" failed: {cause}",
                if first { "Release" } else { "Upgrade" }
            ));
            if atomic || rof {
                if first {
                    // a failed first install is uninstalled
                    let _ = fs::remove_file(release_file(&ns, rel));
                    warn4("install", rel, &cause);
                    return fail(&format!("INSTALLATION FAILED: release {rel} failed, and has been uninstalled due to {} being set: {cause}", atomic_name()));
                }
                let Some(i) = prev_deployed else {
                    save(&ns, rel, &h);
                    return fail(&format!("UPGRADE FAILED: release {rel} failed: {cause}"));
                };
                let mut rb = h[i].clone();
                h[i]["status"] = json!("superseded");
                let target = h[i]["revision"].clone();
                rb["revision"] = json!(rev + 1);
                rb["status"] = json!("deployed");
                rb["updated"] = json!(now());
                rb["description"] = json!(format!("Rollback to {target}"));
                h.push(rb);
                save(&ns, rel, &h);
                warn4("upgrade", rel, &cause);
                return fail(&format!("UPGRADE FAILED: release {rel} failed, and has been rolled back due to {} being set: {cause}", atomic_name()));
            }
            save(&ns, rel, &h);
            warn4("upgrade", rel, &cause);
            fail(&format!("UPGRADE FAILED: release {rel} failed: {cause}"))
        }
        "rollback" => {
            let Some(rel) = pos.first() else {
                return fail("\"helm rollback\" requires at least 1 argument");
            };
            let mut h = load(&ns, rel);
            if h.is_empty() {
                return fail("release: not found");
            }
            let target: u64 = pos
                .get(1)
                .and_then(|r| r.parse().ok())
                .unwrap_or(h.len().saturating_sub(1) as u64);
            let Some(t) = h.iter().find(|r| r["revision"] == json!(target)).cloned() else {
                return fail(&format!("release has no {target} version"));
            };
            let rev = h.len() as u64 + 1;
            if std::env::var("FAKE_HELM_FAIL_ROLLBACK").ok().as_deref() == Some(rel.as_str()) {
                // transcript helm3-basic.txt: the rollback's wait timed out
                let cause = wait_failure(&ns, rel);
                let mut rb = t;
                rb["revision"] = json!(rev);
                rb["status"] = json!("failed");
                rb["description"] = json!(format!("Release \"{rel}\" failed: {cause}"));
                rb["updated"] = json!(now());
                h.push(rb);
                save(&ns, rel, &h);
                return fail(&format!("release {rel} failed: {cause}"));
            }
            set_deployed(&mut h);
            // Helm supersedes the current (latest) revision, a pending one too
            if let Some(last) = h.last_mut().filter(|r| is_pending(r)) {
                last["status"] = json!("superseded");
            }
            let mut rb = t;
            rb["revision"] = json!(rev);
            rb["status"] = json!("deployed");
            rb["description"] = json!(format!("Rollback to {target}"));
            rb["updated"] = json!(now());
            h.push(rb);
            save(&ns, rel, &h);
            println!("Rollback was a success! Happy Helming!");
            ExitCode::SUCCESS
        }
        "history" => {
            let Some(rel) = pos.first() else {
                return fail("\"helm history\" requires 1 argument");
            };
            let h = load(&ns, rel);
            if h.is_empty() {
                return fail("release: not found");
            }
            let out: Vec<Value> = h
                .iter()
                .map(|r| json!({"revision": r["revision"], "updated": r["updated"], "status": r["status"], "chart": r["chart"], "app_version": r["app_version"], "description": r["description"]}))
                .collect();
            println!("{}", Value::Array(out));
            ExitCode::SUCCESS
        }
        "status" => {
            let Some(rel) = pos.first() else {
                return fail("\"helm status\" requires 1 argument");
            };
            let h = load(&ns, rel);
            let want = flag(rest, &["--revision"]).and_then(|r| r.parse::<u64>().ok());
            let last = match want {
                Some(r) => h.iter().find(|x| x["revision"] == json!(r)),
                None => h.last(),
            };
            let Some(last) = last else {
                return fail("release: not found");
            };
            println!(
                "{}",
                json!({"name": rel, "namespace": ns, "version": last["revision"], "info": {"status": last["status"], "description": last["description"]}, "chart": last["chart"], "config": {"set": last["set"]}, "manifest": format!("---\n# Source: {0}/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {rel}-app\n", last["chart"].as_str().unwrap_or(""))})
            );
            ExitCode::SUCCESS
        }
        "uninstall" => {
            let Some(rel) = pos.first() else {
                return fail("\"helm uninstall\" requires at least 1 argument");
            };
            let p = release_file(&ns, rel);
            if !p.exists() {
                return fail(&format!(
                    "uninstall: Release not loaded: {rel}: release: not found"
                ));
            }
            let _ = fs::remove_file(p);
            println!("release \"{rel}\" uninstalled");
            ExitCode::SUCCESS
        }
        other => fail(&format!("unknown command \"{other}\" for \"helm\"")),
    }
}
