//! A tiny loopback HTTP server answering `GET /version` like a
//! kube-apiserver does (the JSON `kubectl version` reads as
//! `serverVersion`), for the updater's preflight in tests and the demo.
//! Listing Secrets answers an empty list (so real Helm's `status` and
//! `history` say "release: not found"); everything else is 404. No cluster
//! behind it: for installs, Helm itself is the stand-in.
//!
//! Usage: `fake-kube-api <git-version> <port-file> [kubeconfig-out]`:
//! listens on 127.0.0.1 (a free port), writes the port to `<port-file>`
//! once listening, and, when given, a kubeconfig pointing at itself to
//! `<kubeconfig-out>`. Runs until killed.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
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
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        if r.read_line(&mut line).is_err() {
            continue;
        }
        // the headers, up to the blank line
        let mut h = String::new();
        while r.read_line(&mut h).is_ok_and(|n| n > 2) {
            h.clear();
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/");
        let (status, text) = if path == "/version" || path.starts_with("/version?") {
            ("200 OK", body.as_str())
        } else if line.starts_with("GET ") && path.contains("/secrets") {
            (
                "200 OK",
                "{\"kind\":\"SecretList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"1\"},\"items\":[]}",
            )
        } else {
            (
                "404 Not Found",
                "{\"kind\":\"Status\",\"status\":\"Failure\",\"code\":404}",
            )
        };
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
    }
    ExitCode::SUCCESS
}

/// A kubeconfig whose one cluster is this server (plain http, loopback).
pub fn kubeconfig(port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: site\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: stoa\n  user: {{}}\ncontexts:\n- name: site\n  context:\n    cluster: site\n    user: stoa\ncurrent-context: site\n"
    )
}
