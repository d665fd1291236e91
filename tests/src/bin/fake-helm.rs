//! A stand-in for the `helm` CLI (Kubernetes cannot run here). It keeps each
//! release's revision history the way Helm does, in `$FAKE_HELM_STATE`
//! (`<namespace>/<release>.json`), and logs every call to
//! `$FAKE_HELM_STATE/calls.log`.
//!
//! - `FAKE_HELM_VERSION=3|4` (default 3): `version --short` answers
//!   `v3.15.4+g…` or `v4.0.0+g…`; `upgrade` accepts `--atomic` only in 3 and
//!   `--rollback-on-failure` only in 4, rejecting the other like the real CLI.
//! - `FAKE_HELM_SLEEP_MS=<ms>`: an upgrade takes that long (a slow `--wait`).
//! - `FAKE_HELM_FAIL_RELEASE=<release>`: an upgrade of that release fails
//!   (with --atomic/--rollback-on-failure it is rolled back, like Helm does).
//!
//! Rendering is real Helm's: `template` is passed to real Helm, and
//! `upgrade --install` first runs real `helm template` with the same chart,
//! namespace, values, `--set` and post-renderer arguments (the updater's
//! post-renderer runs, as it would on a cluster), and records the rendered
//! manifests in the revision (`"manifest"`), so tests can assert what "the
//! cluster" got. Real Helm is `$STOA_REAL_HELM`, else
//! `target/helm-bin/helm<FAKE_HELM_VERSION>` beside this binary's folder
//! (scripts/install-deps.sh puts it there); missing, it fails saying so.
//!
//! Commands: version, template, upgrade --install, rollback, history -o json,
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

fn major() -> u32 {
    std::env::var("FAKE_HELM_VERSION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
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

/// Real Helm of the emulated major version.
fn real_helm() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("STOA_REAL_HELM") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/fake-helm -> target/helm-bin/helm<major>
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("helm-bin").join(format!("helm{}", major())))
        .ok_or("no target folder")?;
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "fake-helm renders with real Helm, not found at {} (set STOA_REAL_HELM or run scripts/get-helm.sh)",
            p.display()
        ))
    }
}

/// Runs real `helm template <rel> <chart>` with the rendering arguments of
/// `rest` (namespace, values, --set, post-renderer); the rendered text, or
/// real Helm's stderr.
fn render(rel: &str, chart: &str, rest: &[String]) -> Result<String, String> {
    let helm = real_helm()?;
    let mut args: Vec<String> = vec!["template".into(), rel.into(), chart.into()];
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        let takes_value = [
            "-n",
            "--namespace",
            "-f",
            "--values",
            "--set",
            "--post-renderer",
            "--post-renderer-args",
        ];
        if takes_value.contains(&a.as_str()) {
            if let Some(v) = rest.get(i + 1) {
                args.push(a.clone());
                args.push(v.clone());
            }
            i += 2;
            continue;
        }
        if a.starts_with("--post-renderer-args=") || a.starts_with("--post-renderer=") {
            args.push(a.clone());
        }
        i += 1;
    }
    let out = std::process::Command::new(&helm)
        .args(&args)
        .output()
        .map_err(|e| format!("run {}: {e}", helm.display()))?;
    if !out.status.success() {
        let e = String::from_utf8_lossy(&out.stderr);
        return Err(e.trim().trim_start_matches("Error: ").to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
    match cmd.as_str() {
        "version" => {
            if major() >= 4 {
                println!("v4.0.0+g1234567");
            } else {
                println!("v3.15.4+gfa9efb0");
            }
            ExitCode::SUCCESS
        }
        "template" => {
            let (Some(rel), Some(chart)) = (pos.first(), pos.get(1)) else {
                return fail("\"helm template\" requires at least 1 argument");
            };
            // the whole command line goes to real Helm
            let helm = match real_helm() {
                Ok(h) => h,
                Err(e) => return fail(&e),
            };
            let _ = (rel, chart);
            match std::process::Command::new(helm).args(&args).status() {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                Ok(s) => ExitCode::from(s.code().unwrap_or(1) as u8),
                Err(e) => fail(&format!("run real helm: {e}")),
            }
        }
        "upgrade" => {
            let atomic = rest.iter().any(|a| a == "--atomic");
            let rof = rest.iter().any(|a| a == "--rollback-on-failure");
            if major() >= 4 && atomic {
                return fail("unknown flag: --atomic");
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
            let chart_path = Path::new(chart);
            if !chart_path.is_file() {
                return fail(&format!("path \"{chart}\" not found"));
            }
            let (cname, cver) = chart_meta(chart_path);
            // what would be applied to the cluster: real Helm's rendering,
            // through the post-renderer the updater gave
            let manifest = match render(rel, chart, rest) {
                Ok(m) => m,
                Err(e) => return fail(&e),
            };
            let values = flag(rest, &["-f", "--values"])
                .and_then(|f| fs::read_to_string(f).ok())
                .unwrap_or_default();
            let sets: Vec<String> = rest
                .iter()
                .enumerate()
                .filter(|(_, a)| a.as_str() == "--set")
                .filter_map(|(i, _)| rest.get(i + 1).cloned())
                .collect();
            if let Some(ms) = std::env::var("FAKE_HELM_SLEEP_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                // like --wait on a slow rollout
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            let rev = h.len() as u64 + 1;
            let failing =
                std::env::var("FAKE_HELM_FAIL_RELEASE").ok().as_deref() == Some(rel.as_str());
            set_deployed(&mut h);
            h.push(json!({
                "revision": rev, "updated": now(), "status": if failing { "failed" } else { "deployed" },
                "chart": format!("{cname}-{cver}"), "app_version": cver,
                "description": if rev == 1 { "Install complete" } else { "Upgrade complete" },
                "values": values, "set": sets, "manifest": manifest,
            }));
            if failing {
                if atomic || rof {
                    if rev == 1 {
                        // a failed first install is uninstalled
                        let _ = fs::remove_file(release_file(&ns, rel));
                        return fail(&format!("INSTALLATION FAILED: release {rel} failed, and has been uninstalled due to atomic being set: context deadline exceeded"));
                    }
                    let prev = h[(rev - 2) as usize].clone();
                    let mut rb = prev;
                    rb["revision"] = json!(rev + 1);
                    rb["status"] = json!("deployed");
                    rb["description"] = json!(format!("Rollback to {}", rev - 1));
                    for r in h.iter_mut() {
                        if r["status"] == "deployed" {
                            r["status"] = json!("superseded");
                        }
                    }
                    h.push(rb);
                    save(&ns, rel, &h);
                    return fail(&format!("UPGRADE FAILED: release {rel} failed, and has been rolled back due to atomic being set: context deadline exceeded"));
                }
                save(&ns, rel, &h);
                return fail(&format!(
                    "UPGRADE FAILED: release {rel} failed: context deadline exceeded"
                ));
            }
            save(&ns, rel, &h);
            println!("Release \"{rel}\" has been upgraded. Happy Helming!\nNAME: {rel}\nNAMESPACE: {ns}\nSTATUS: deployed\nREVISION: {rev}");
            ExitCode::SUCCESS
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
            set_deployed(&mut h);
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
            let Some(last) = h.last() else {
                return fail("release: not found");
            };
            println!(
                "{}",
                json!({"name": rel, "namespace": ns, "version": last["revision"], "info": {"status": last["status"], "description": last["description"]}, "chart": last["chart"], "config": {"set": last["set"]}, "manifest": last["manifest"]})
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
