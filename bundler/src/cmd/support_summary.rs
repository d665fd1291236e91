//! The summary `stoa-bundler support open` prints from a support bundle's
//! files: what a support engineer reads first. Built from the site's own
//! records (journal, history, audit log, state), the preflight run at
//! collection, `helm status` and the pods of each namespace. Every field is
//! read leniently: a missing or unreadable file leaves its part empty, it
//! never fails the summary.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// The summary, for text (Display) and `--json`.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub ok: bool,
    pub created_at: String,
    pub updater_version: String,
    pub encryption: String,
    pub versions: BTreeMap<String, String>,
    /// `time  source  what`, oldest first.
    pub timeline: Vec<String>,
    pub last_failure: Option<Failure>,
    pub failed_preflight: Vec<String>,
    pub pods_not_ready: Vec<String>,
    pub version_mismatches: Vec<String>,
    /// Collectors that failed or ran past their limit.
    pub collectors_not_ok: Vec<String>,
    pub cut: Vec<String>,
    pub redactions: u64,
}

/// The last failed operation.
#[derive(Debug, Default, Serialize)]
pub struct Failure {
    pub operation: String,
    pub step: String,
    pub error: String,
    /// Helm and pod evidence matching the step.
    pub evidence: Vec<String>,
}

fn json(files: &BTreeMap<String, String>, name: &str) -> Value {
    files
        .get(name)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

fn lines(files: &BTreeMap<String, String>, name: &str) -> Vec<Value> {
    files
        .get(name)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Summary {
    pub fn of(files: &BTreeMap<String, String>) -> Self {
        let meta = json(files, "SUMMARY.json");
        let mut sum = Self {
            ok: true,
            created_at: s(&meta["created_at"]),
            updater_version: s(&meta["updater_version"]),
            encryption: s(&meta["encryption"]),
            redactions: meta["redactions"].as_u64().unwrap_or(0),
            ..Self::default()
        };
        for c in meta["collectors"].as_array().into_iter().flatten() {
            if c["outcome"] != "ok" {
                sum.collectors_not_ok.push(format!(
                    "{}: {}: {}",
                    s(&c["name"]),
                    s(&c["outcome"]),
                    s(&c["error"])
                ));
            }
        }
        sum.cut = meta["cut"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        sum.versions(files);
        sum.timeline = timeline(files);
        sum.failed_preflight = failed_preflight(files);
        sum.pods_not_ready = pods_not_ready(files);
        sum.last_failure = last_failure(files);
        sum
    }

    fn versions(&mut self, files: &BTreeMap<String, String>) {
        let v = json(files, "versions.json");
        for k in [
            "updater",
            "helm",
            "kubectl",
            "kubernetes_server",
            "psql",
            "pg_dump",
            "os",
        ] {
            if !v[k].is_null() {
                self.versions.insert(k.into(), s(&v[k]));
            }
        }
        let want = s(&v["requires"]["kubernetes"]);
        let server = s(&v["kubernetes_server"]);
        if let (false, false) = (want.is_empty(), server.is_empty()) {
            let req = semver::VersionReq::parse(&want).ok();
            let ver = semver::Version::parse(
                server
                    .trim_start_matches('v')
                    .split('+')
                    .next()
                    .unwrap_or(""),
            )
            .ok();
            if let (Some(r), Some(v)) = (req, ver) {
                if !r.matches(&v) {
                    self.version_mismatches.push(format!(
                        "kubernetes server {server}: the site requires {want}"
                    ));
                }
            }
        }
        self.chart_mismatches(files, &v["release"]);
        let pf = json(files, "preflight.json");
        for c in pf["checks"].as_array().into_iter().flatten() {
            let name = s(&c["name"]);
            if ["helm", "kubernetes", "kube-version"].contains(&name.as_str())
                && c["outcome"] == "failed"
            {
                self.version_mismatches
                    .push(format!("{name}: {}", s(&c["detail"])));
            }
        }
    }
}

impl Summary {
    /// Each Helm release running another chart than the release needs.
    fn chart_mismatches(&mut self, files: &BTreeMap<String, String>, release: &Value) {
        for c in release["charts"].as_array().into_iter().flatten() {
            let (rel, ns) = (s(&c["release"]), s(&c["namespace"]));
            let st = json(files, &format!("helm/{ns}/{rel}/status.json"));
            // Helm's own answer has an object; the stand-in's a `name-version`
            let running = match &st["chart"] {
                Value::Null => continue,
                Value::String(x) => x.clone(),
                o => format!(
                    "{}-{}",
                    s(&o["metadata"]["name"]),
                    s(&o["metadata"]["version"])
                ),
            };
            let want = format!("{}-{}", s(&c["chart"]), s(&c["version"]));
            if running != want {
                self.version_mismatches.push(format!(
                    "helm {ns}/{rel} runs chart {running}; release {} needs {want}",
                    s(&release["version"])
                ));
            }
        }
    }
}

/// Journal, history and audit lines in one list, oldest first.
fn timeline(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut t: Vec<(String, String)> = Vec::new();
    for l in lines(files, "state/history.jsonl") {
        let what = match s(&l["op"]).as_str() {
            "apply" => format!(
                "apply {} -> {}: {}{}",
                if l["from"].is_null() {
                    "nothing".into()
                } else {
                    s(&l["from"])
                },
                s(&l["to"]),
                s(&l["outcome"]),
                if l["step"].is_null() {
                    String::new()
                } else {
                    format!(" at step {}", s(&l["step"]))
                }
            ),
            op => format!("{op}: {}", s(&l["outcome"])),
        };
        t.push((s(&l["time"]), format!("history  {what}")));
    }
    for l in lines(files, "state/journal.jsonl") {
        if l["event"] == "child" {
            continue;
        }
        let err = if l["error"].is_null() {
            String::new()
        } else {
            format!(": {}", s(&l["error"]))
        };
        t.push((
            s(&l["time"]),
            format!(
                "journal  {} {} {}{err}",
                s(&l["op"]),
                s(&l["step"]),
                s(&l["event"])
            ),
        ));
    }
    for l in lines(files, "state/audit.log") {
        if l["result"] == "started" {
            continue;
        }
        let kind = if l["error_kind"].is_null() {
            String::new()
        } else {
            format!(" ({})", s(&l["error_kind"]))
        };
        t.push((
            s(&l["time"]),
            format!(
                "audit    {} {}{kind} exit {}",
                s(&l["command"]),
                s(&l["result"]),
                s(&l["exit_code"])
            ),
        ));
    }
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t.into_iter()
        .map(|(time, what)| format!("{time}  {what}"))
        .collect()
}

fn failed_preflight(files: &BTreeMap<String, String>) -> Vec<String> {
    let pf = json(files, "preflight.json");
    pf["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["outcome"] == "failed")
        .map(|c| format!("{}: {}", s(&c["name"]), s(&c["detail"])))
        .collect()
}

/// Why a pod is not ready: its containers' waiting/terminated reasons.
fn pod_reason(pod: &Value) -> String {
    let mut r: Vec<String> = Vec::new();
    for c in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let st = &c["state"];
        let why = st["waiting"]["reason"]
            .as_str()
            .or(st["terminated"]["reason"].as_str());
        if let Some(w) = why {
            r.push(format!("{}: {w}", s(&c["name"])));
        }
    }
    if r.is_empty() {
        s(&pod["status"]["phase"])
    } else {
        r.join(", ")
    }
}

fn ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Succeeded"
        || pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// `ns/pod (reasons); last log line: …` for every pod not Ready.
fn pods_not_ready(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in files.iter().filter(|(n, _)| n.ends_with("/pods.json")) {
        let ns = name
            .trim_start_matches("cluster/")
            .trim_end_matches("/pods.json");
        let v: Value = serde_json::from_str(text).unwrap_or_default();
        for pod in v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| !ready(p))
        {
            let pname = s(&pod["metadata"]["name"]);
            let prefix = format!("cluster/{ns}/pods/{pname}/");
            let last = files
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix) && n.ends_with(".log"))
                .filter_map(|(n, t)| {
                    t.lines().rev().find(|l| !l.trim().is_empty()).map(|l| {
                        format!(
                            "{}: {l}",
                            n.trim_start_matches(&prefix).trim_end_matches(".log")
                        )
                    })
                })
                .collect::<Vec<_>>();
            let logs = if last.is_empty() {
                String::new()
            } else {
                format!("; last log line {}", last.join("; "))
            };
            out.push(format!("{ns}/{pname} ({}){logs}", pod_reason(pod)));
        }
    }
    out
}

/// The failure the state still holds (an operation left), else the last
/// failed apply or rollback of the history, with the evidence of its step.
fn last_failure(files: &BTreeMap<String, String>) -> Option<Failure> {
    let st = json(files, "state/state.json");
    let p = &st["pending"];
    let mut f = if let Some(failed) = p["failed"].as_str() {
        let (step, error) = failed
            .strip_prefix("step ")
            .and_then(|r| r.split_once(": "))
            .map_or((String::new(), failed.to_owned()), |(a, b)| {
                (a.to_owned(), b.to_owned())
            });
        Failure {
            operation: format!(
                "{} {} -> {} (left for inspection)",
                s(&p["op"]),
                s(&p["from"]),
                s(&p["to"])
            ),
            step,
            error,
            evidence: Vec::new(),
        }
    } else {
        let hist = lines(files, "state/history.jsonl");
        let l = hist.iter().rev().find(|l| !l["error"].is_null())?;
        Failure {
            operation: format!(
                "{} {} -> {}: {}",
                s(&l["op"]),
                s(&l["from"]),
                s(&l["to"]),
                s(&l["outcome"])
            ),
            step: s(&l["step"]),
            error: s(&l["error"]),
            evidence: Vec::new(),
        }
    };
    f.evidence = evidence(files, &f.step);
    Some(f)
}

/// Helm status and pods of the release a `helm:<release>` step names; the
/// migration table of the database a `migrate:<db>` step names.
fn evidence(files: &BTreeMap<String, String>, step: &str) -> Vec<String> {
    let mut ev = Vec::new();
    let target = step.rsplit(':').next().unwrap_or_default();
    if step.contains("helm:") {
        for (name, text) in files
            .iter()
            .filter(|(n, _)| n.starts_with("helm/") && n.ends_with("/status.json"))
        {
            let parts: Vec<&str> = name.split('/').collect();
            if parts.get(2) != Some(&target) {
                continue;
            }
            let v: Value = serde_json::from_str(text).unwrap_or_default();
            ev.push(format!(
                "helm {}/{target}: revision {} {}: {}",
                parts[1],
                s(&v["version"]),
                s(&v["info"]["status"]),
                s(&v["info"]["description"])
            ));
            let hist: Value = files
                .get(&name.replace("/status.json", "/history.json"))
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default();
            if let Some(r) = hist
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .find(|r| r["status"] == "failed")
            {
                ev.push(format!(
                    "helm {}/{target}: revision {} failed: {}",
                    parts[1],
                    s(&r["revision"]),
                    s(&r["description"])
                ));
            }
            let ns = parts[1];
            ev.extend(
                pods_not_ready(files)
                    .into_iter()
                    .filter(|p| p.starts_with(&format!("{ns}/")))
                    .map(|p| format!("pod {p}")),
            );
        }
    }
    if step.contains("migrate:") {
        let rows = json(files, &format!("databases/{target}.json"));
        let ids: Vec<String> = rows
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| s(&r["id"]))
            .collect();
        ev.push(format!(
            "database {target}: migrations applied: {}",
            if ids.is_empty() {
                "none".into()
            } else {
                ids.join(", ")
            }
        ));
    }
    ev
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "support bundle made {} by stoa-updater {} (encryption: {})",
            self.created_at, self.updater_version, self.encryption
        )?;
        let v: Vec<String> = self
            .versions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(f, "versions: {}", v.join("; "))?;
        match &self.last_failure {
            Some(x) => {
                writeln!(f, "LAST FAILURE: {}", x.operation)?;
                writeln!(
                    f,
                    "  step: {}",
                    if x.step.is_empty() { "?" } else { &x.step }
                )?;
                writeln!(f, "  error: {}", x.error)?;
                for e in &x.evidence {
                    writeln!(f, "  evidence: {e}")?;
                }
            }
            None => writeln!(f, "last failure: none recorded")?,
        }
        let list = |f: &mut fmt::Formatter<'_>, title: &str, items: &[String]| -> fmt::Result {
            if items.is_empty() {
                return writeln!(f, "{title}: none");
            }
            writeln!(f, "{title}:")?;
            items.iter().try_for_each(|i| writeln!(f, "  {i}"))
        };
        list(f, "failed preflight checks", &self.failed_preflight)?;
        list(f, "pods not ready", &self.pods_not_ready)?;
        list(f, "version mismatches", &self.version_mismatches)?;
        list(f, "collectors not ok", &self.collectors_not_ok)?;
        if !self.cut.is_empty() {
            list(f, "cut to fit --max-size", &self.cut)?;
        }
        list(f, "timeline (oldest first)", &self.timeline)?;
        writeln!(f, "redactions: {} (see REDACTIONS.txt)", self.redactions)
    }
}
