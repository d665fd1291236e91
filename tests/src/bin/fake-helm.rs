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
//!   `FAKE_HELM_FAIL_HOOK=<release>`: the first pre-install/pre-upgrade hook
//!   of that release never completes: Helm 3 says only "pre-upgrade hooks
//!   failed: 1 error occurred: * timed out waiting for the condition", Helm 4
//!   names the Job (transcript hook.txt); the hook's `last_run.phase` is
//!   `Failed` in the failed revision, as Helm records it.
//! - Like Helm, a revision keeps the rendered hooks apart from its
//!   `manifest` (`"hooks": [{name, kind, path, manifest, events, last_run}]`
//!   in `status -o json`), and a failed `--wait` names (Helm 4) the first
//!   workload of the rendered manifest.
//!
//! - `--create-namespace` creates the namespace as a file in
//!   `$FAKE_HELM_STATE/namespaces/`, where `fake-kube-api` answers for it.
//!
//! Rendering is real Helm's: `template` is passed to real Helm (no cluster
//! needed, no `--kubeconfig` asked), and `upgrade --install` first runs real
//! `helm template` with the same chart, namespace, values, `--set` and
//! post-renderer arguments (the updater's post-renderer runs, as it would on
//! a cluster), and records the rendered manifests in the revision
//! (`"manifest"`, also in `status -o json`), so tests can assert what "the
//! cluster" got. Real Helm is `$STOA_REAL_HELM`, else
//! `target/helm-bin/helm<FAKE_HELM_VERSION>` beside this binary's folder
//! (scripts/install-deps.sh puts it there); missing, it fails saying so.
//!
//! Commands: version, template, upgrade --install, rollback, history -o json,
//! status -o json, get values|manifest (`stoa_e2e::fake_helm_get`), uninstall.

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

/// What a failed `--wait` says: Helm 4 names the resource (the first
/// workload of the rendered manifest), Helm 3 only "context deadline
/// exceeded" (transcripts with-kcm.txt).
fn wait_failure(ns: &str, rel: &str, manifest: &str) -> String {
    if major() >= 4 {
        let w = docs(manifest)
            .iter()
            .filter_map(|d| doc_kind_name(d))
            .find(|(k, _)| {
                ["Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"].contains(&k.as_str())
            })
            .map(|(k, n)| format!("{k}/{ns}/{n}"))
            .unwrap_or_else(|| format!("Deployment/{ns}/{rel}-app"));
        format!("resource {w} not ready. status: InProgress, message: Available: 0/1\ncontext deadline exceeded")
    } else {
        "context deadline exceeded".into()
    }
}

/// What a hook that never completed says (transcript hook.txt).
fn hook_failure(ns: &str, phase: &str, kind: &str, name: &str) -> String {
    if major() >= 4 {
        format!("{phase} hooks failed: resource {kind}/{ns}/{name} not ready. status: InProgress, message: Job in progress\ncontext deadline exceeded")
    } else {
        format!(
            "{phase} hooks failed: 1 error occurred:\n\t* timed out waiting for the condition\n\n"
        )
    }
}

/// The documents of rendered manifests (split at `---` lines), empty ones
/// left out.
fn docs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        if l.trim_end() == "---" {
            if !cur.trim().is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
            continue;
        }
        cur.push_str(l);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// `kind:` and `metadata.name` of a document (line-based: enough for
/// Helm's rendered output).
fn doc_kind_name(doc: &str) -> Option<(String, String)> {
    let kind = doc
        .lines()
        .find_map(|l| l.strip_prefix("kind:"))?
        .trim()
        .to_owned();
    let mut in_meta = false;
    for l in doc.lines() {
        if !l.starts_with(' ') {
            in_meta = l.trim_end() == "metadata:";
            continue;
        }
        if in_meta {
            if let Some(n) = l.strip_prefix("  name:") {
                return Some((kind, n.trim().trim_matches('"').to_owned()));
            }
        }
    }
    None
}

/// Splits rendered manifests as Helm stores a release: the manifest (every
/// document without a `helm.sh/hook` annotation) and the hooks.
fn split_hooks(text: &str) -> (String, Vec<Value>) {
    let mut manifest = String::new();
    let mut hooks = Vec::new();
    for d in docs(text) {
        let events = d.lines().find_map(|l| {
            let t = l.trim();
            t.strip_prefix("\"helm.sh/hook\":")
                .or_else(|| t.strip_prefix("helm.sh/hook:"))
                .map(|v| {
                    v.trim()
                        .trim_matches('"')
                        .split(',')
                        .map(|e| e.trim().to_owned())
                        .collect::<Vec<_>>()
                })
        });
        match (events, doc_kind_name(&d)) {
            (Some(events), Some((kind, name))) => {
                let path = d
                    .lines()
                    .find_map(|l| l.strip_prefix("# Source: "))
                    .unwrap_or("")
                    .to_owned();
                hooks.push(json!({
                    "name": name, "kind": kind, "path": path, "manifest": d,
                    "events": events, "last_run": {"phase": ""},
                }));
            }
            _ => {
                manifest.push_str("---\n");
                manifest.push_str(&d);
            }
        }
    }
    (manifest, hooks)
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
    if cmd == "template" {
        let (Some(rel), Some(chart)) = (pos.first(), pos.get(1)) else {
            return fail("\"helm template\" requires at least 1 argument");
        };
        // the whole command line goes to real Helm
        let helm = match real_helm() {
            Ok(h) => h,
            Err(e) => return fail(&e),
        };
        let _ = (rel, chart);
        return match std::process::Command::new(helm).args(&args).status() {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(s) => ExitCode::from(s.code().unwrap_or(1) as u8),
            Err(e) => fail(&format!("run real helm: {e}")),
        };
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
            // what would be applied to the cluster: real Helm's rendering,
            // through the post-renderer the updater gave
            let (manifest, mut hooks) = match render(rel, chart, rest) {
                Ok(m) => split_hooks(&m),
                Err(e) => return fail(&e),
            };
            let rev = h.len() as u64 + 1;
            let first = rev == 1;
            // the new revision is pending while Helm waits; a kill leaves it so
            let prev_deployed = h.iter().rposition(|r| r["status"] == "deployed");
            h.push(json!({
                "revision": rev, "updated": now(),
                "status": if first { "pending-install" } else { "pending-upgrade" },
                "chart": format!("{cname}-{cver}"), "app_version": cver,
                "description": if first { "Initial install underway" } else { "Preparing upgrade" },
                "values": values, "set": sets, "manifest": manifest, "hooks": hooks.clone(),
            }));
            save(&ns, rel, &h);
            if let Some(ms) = std::env::var("FAKE_HELM_SLEEP_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                // like --wait on a slow rollout
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            let mut failing =
                std::env::var("FAKE_HELM_FAIL_RELEASE").ok().as_deref() == Some(rel.as_str());
            let mut cause = wait_failure(&ns, rel, &manifest);
            let last = h.len() - 1;
            // the hooks of this phase run first; with FAKE_HELM_FAIL_HOOK
            // the first never completes
            let phase = if first { "pre-install" } else { "pre-upgrade" };
            let hook_fails =
                std::env::var("FAKE_HELM_FAIL_HOOK").ok().as_deref() == Some(rel.as_str());
            for hk in hooks.iter_mut() {
                if !hk["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e == phase))
                {
                    continue;
                }
                if hook_fails && !failing {
                    hk["last_run"]["phase"] = json!("Failed");
                    failing = true;
                    cause = hook_failure(
                        &ns,
                        phase,
                        hk["kind"].as_str().unwrap_or(""),
                        hk["name"].as_str().unwrap_or(""),
                    );
                } else if !failing {
                    hk["last_run"]["phase"] = json!("Succeeded");
                }
            }
            h[last]["hooks"] = json!(hooks);
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
                let cause = wait_failure(&ns, rel, t["manifest"].as_str().unwrap_or(""));
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
                json!({"name": rel, "namespace": ns, "version": last["revision"], "info": {"status": last["status"], "description": last["description"]}, "chart": last["chart"], "config": {"set": last["set"]}, "manifest": last["manifest"], "hooks": last["hooks"]})
            );
            ExitCode::SUCCESS
        }
        "get" => {
            let h = pos.get(1).map(|r| load(&ns, r)).unwrap_or_default();
            stoa_e2e::fake_helm_get::answer(&pos, &h)
                .map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
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
