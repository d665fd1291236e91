//! A tiny loopback HTTP server answering `GET /version` like a
//! kube-apiserver does (the JSON `kubectl version` reads as
//! `serverVersion`), for the updater's preflight in tests and the demo.
//! Listing Secrets answers an empty list (so real Helm's `status` and
//! `history` say "release: not found"); legacy discovery and
//! `GET`/`DELETE /api/v1/namespaces/<name>` answer for the namespaces in a
//! folder (the Helm stand-in's `--create-namespace` adds them there);
//! everything else is 404. No cluster behind it: for installs, Helm itself
//! is the stand-in.
//!
//! Pods and events, for the support bundle's collectors: the pods of
//! namespace `<ns>` are the files `<namespaces-dir>/../pods/<ns>/<pod>.json`
//! (a Pod object as the API returns it), each container's log
//! `<pod>.<container>.log` (served by `pods/<pod>/log`, `tailLines` kept),
//! the events `<ns>/events.json` (an EventList; none: empty). Every request
//! is appended to `<namespaces-dir>/../kube-requests.log` (`METHOD path`),
//! so a test can tell what was asked (never a Secret by the updater).
//!
//! Usage: `fake-kube-api <git-version> <port-file> [kubeconfig-out
//! [namespaces-dir]]`: listens on 127.0.0.1 (a free port), writes the port
//! to `<port-file>` once listening, and, when given, a kubeconfig pointing
//! at itself to `<kubeconfig-out>`. Runs until killed.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(git), Some(port_file)) = (args.first(), args.get(1)) else {
        eprintln!("usage: fake-kube-api <git-version> <port-file> [kubeconfig-out]");
        return ExitCode::from(2);
    };
    let core = git.trim_start_matches('v');
    let mut parts = core.split(['.', '+', '-']);
    let major = parts.next().unwrap_or("1").to_owned();
    let minor = parts.next().unwrap_or("0").to_owned();
    let body = serde_json::json!({
        "major": major, "minor": minor, "gitVersion": git,
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
        "platform": "linux/amd64",
    })
    .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    if let Some(kc) = args.get(2) {
        std::fs::write(kc, kubeconfig(port)).unwrap();
    }
    let tmp = format!("{port_file}.tmp");
    std::fs::write(&tmp, port.to_string()).unwrap();
    std::fs::rename(&tmp, port_file).unwrap();
    let ns_dir = args.get(3).map(std::path::PathBuf::from);
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        if r.read_line(&mut line).is_err() {
            continue;
        }
        // the headers, up to the blank line; then the body, unread by us
        let mut len = 0usize;
        let mut h = String::new();
        while r.read_line(&mut h).is_ok_and(|n| n > 2) {
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            h.clear();
        }
        let mut body_in = vec![0u8; len];
        let _ = r.read_exact(&mut body_in);
        let method = line.split_whitespace().next().unwrap_or("GET");
        let full = line.split_whitespace().nth(1).unwrap_or("/");
        let path = full.split('?').next().unwrap_or("/");
        if let Some(d) = ns_dir.as_deref().and_then(|d| d.parent()) {
            if let Ok(mut log) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(d.join("kube-requests.log"))
            {
                let _ = writeln!(log, "{method} {full}");
            }
        }
        let query = full.split_once('?').map_or("", |(_, q)| q);
        let pods = ns_dir
            .as_deref()
            .and_then(|d| d.parent())
            .map(|d| d.join("pods"));
        let (status, text, kind) = match pods
            .as_deref()
            .and_then(|p| pod_answer(method, path, query, p))
        {
            Some((st, t, k)) => (st, t, k),
            None => {
                let (st, t) = answer(method, path, &body, ns_dir.as_deref());
                (st, t, "application/json")
            }
        };
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
    }
    ExitCode::SUCCESS
}

fn not_found(what: &str, name: &str) -> (&'static str, String) {
    (
        "404 Not Found",
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{what} \"{name}\" not found"), "reason": "NotFound",
            "details": {"name": name, "kind": what}, "code": 404})
        .to_string(),
    )
}

/// Legacy discovery (enough for `kubectl get/delete namespace`), empty
/// Secret lists (Helm's release storage), and namespaces: those in the
/// namespaces folder (the Helm stand-in creates one per
/// `--create-namespace`) exist.
fn answer(
    method: &str,
    path: &str,
    version: &str,
    ns_dir: Option<&std::path::Path>,
) -> (&'static str, String) {
    let ok = |v: serde_json::Value| ("200 OK", v.to_string());
    match (method, path) {
        ("GET", "/version") => ("200 OK", version.to_owned()),
        ("GET", "/api") => ok(
            serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ("GET", "/apis") => {
            ok(serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
        }
        ("GET", "/api/v1") => ok(
            serde_json::json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
             "verbs": ["create", "delete", "get", "list"], "shortNames": ["ns"]},
            {"name": "secrets", "singularName": "secret", "namespaced": true, "kind": "Secret",
             "verbs": ["create", "delete", "get", "list"]},
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
             "verbs": ["get", "list"], "shortNames": ["po"]},
            {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
            {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event",
             "verbs": ["get", "list"], "shortNames": ["ev"]}]}),
        ),
        ("GET", p) if p.ends_with("/secrets") => ok(serde_json::json!({"kind": "SecretList",
            "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})),
        (m, p)
            if p.starts_with("/api/v1/namespaces/")
                && !p["/api/v1/namespaces/".len()..].contains('/') =>
        {
            let name = &p["/api/v1/namespaces/".len()..];
            let file = ns_dir.map(|d| d.join(name));
            let exists = file.as_ref().is_some_and(|f| f.exists());
            if !exists {
                return not_found("namespaces", name);
            }
            let phase = if m == "DELETE" {
                if let Some(f) = &file {
                    let _ = std::fs::remove_file(f);
                }
                "Terminating"
            } else {
                "Active"
            };
            ok(serde_json::json!({"kind": "Namespace", "apiVersion": "v1",
                "metadata": {"name": name}, "status": {"phase": phase}}))
        }
        _ => (
            "404 Not Found",
            "{\"kind\":\"Status\",\"status\":\"Failure\",\"code\":404}".to_owned(),
        ),
    }
}

/// Pods, their logs and events of a namespace, from the pods folder; None
/// for any other path.
fn pod_answer(
    method: &str,
    path: &str,
    query: &str,
    pods: &std::path::Path,
) -> Option<(&'static str, String, &'static str)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    if method != "GET" || parts.len() < 2 {
        return None;
    }
    let (ns, what) = (parts[0], parts[1]);
    let dir = pods.join(ns);
    let json = "application/json";
    let read = |f: &std::path::Path| std::fs::read_to_string(f).ok();
    match (what, parts.get(2), parts.get(3)) {
        ("events", None, None) => {
            let list = read(&dir.join("events.json")).unwrap_or_else(|| {
                serde_json::json!({"kind": "EventList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "1"}, "items": []})
                .to_string()
            });
            Some(("200 OK", list, json))
        }
        ("pods", None, None) => {
            let mut items: Vec<serde_json::Value> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "json") && !p.ends_with("events.json")
                })
                .filter_map(|p| read(&p).and_then(|t| serde_json::from_str(&t).ok()))
                .collect();
            items.sort_by_key(|p: &serde_json::Value| {
                p["metadata"]["name"].as_str().unwrap_or("").to_owned()
            });
            let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": "1"}, "items": items});
            Some(("200 OK", list.to_string(), json))
        }
        ("pods", Some(name), None) => Some(match read(&dir.join(format!("{name}.json"))) {
            Some(t) => ("200 OK", t, json),
            None => {
                let (st, t) = not_found("pods", name);
                (st, t, json)
            }
        }),
        ("pods", Some(name), Some(&"log")) => {
            let container = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("container="))
                .unwrap_or_default();
            let tail: Option<usize> = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("tailLines="))
                .and_then(|n| n.parse().ok());
            let text = read(&dir.join(format!("{name}.{container}.log"))).unwrap_or_default();
            let text = match tail {
                Some(n) => {
                    let lines: Vec<&str> = text.lines().collect();
                    let mut t = lines[lines.len().saturating_sub(n)..].join("\n");
                    t.push('\n');
                    t
                }
                None => text,
            };
            Some(("200 OK", text, "text/plain"))
        }
        _ => None,
    }
}

/// A kubeconfig whose one cluster is this server (plain http, loopback).
pub fn kubeconfig(port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: site\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: stoa\n  user: {{}}\ncontexts:\n- name: site\n  context:\n    cluster: site\n    user: stoa\ncurrent-context: site\n"
    )
}
