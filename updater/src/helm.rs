//! The Helm driver: the `helm` CLI, version 3 or 4 (told apart by
//! `helm version --short`, e.g. `v3.18.0+gcc58e3f`), each with its own flags
//! (`--atomic` in 3, `--rollback-on-failure` in 4). Started through
//! [`crate::tool`], always with `--kubeconfig` and never with `KUBECONFIG`
//! from the environment (a mistyped path there silently sends Helm to
//! localhost:8080).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::HelmConfig;
use crate::error::{Result, UpdaterError};
use crate::tool;

/// One `helm upgrade --install`, as the engine asks for it (one value, so
/// the `Charts` driver trait, the real driver and the fake share
/// one signature).
#[derive(Debug, Clone, Copy)]
pub struct ChartUpgrade<'a> {
    pub release: &'a str,
    pub namespace: &'a str,
    /// The staged chart archive.
    pub chart: &'a Path,
    /// The bundle's vendor values files, given before the site's own file.
    pub values: &'a [PathBuf],
    /// `name=value` for `--set`, when the site config asks for one.
    pub registry_value: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct Helm {
    cfg: HelmConfig,
    pub major: u32,
    pub version: String,
    /// `--history-max` for upgrade and rollback (see [`history_max`]).
    history_max: usize,
}

/// The Helm versions the updater drives: 3.8 or later (OCI charts, the
/// flags used here) and 4.x.
pub const SUPPORTED: &str = "3.8 or later 3.x, or 4.x";

/// `helm version --short` output (`v3.18.0+gcc58e3f`, `v4.2.3+g43e8b7f`)
/// as a version, checked against [`SUPPORTED`].
pub fn parse_version(out: &str) -> std::result::Result<semver::Version, String> {
    let v = out.trim();
    let text = v.lines().next().unwrap_or("").trim();
    let parsed = semver::Version::parse(text.trim_start_matches('v'))
        .map_err(|e| format!("cannot read helm version {text:?}: {e}"))?;
    let ok = (parsed.major == 3 && parsed.minor >= 8) || parsed.major == 4;
    if !ok {
        return Err(format!(
            "helm {text} is not supported (supported: {SUPPORTED})"
        ));
    }
    Ok(parsed)
}

/// `--history-max` passed to every upgrade and rollback: 10 revisions per
/// retained release (`keep_releases`), at least 10 (Helm's default). One
/// apply uses at most 3 of a release's revisions (upgrade; Helm's own
/// atomic rollback; the resume's recovery rollback), an operator rollback
/// 1, so the revision a retained release's rollback goes back to stays in
/// Helm's history (docs/OPERATIONS.md, "Helm").
pub fn history_max(keep_releases: usize) -> usize {
    (keep_releases.max(1) * 10).max(10)
}

fn herr(release: &str, step: &str, reason: impl Into<String>) -> UpdaterError {
    UpdaterError::Helm {
        release: release.to_owned(),
        step: step.to_owned(),
        reason: reason.into(),
    }
}

/// The workloads Helm's `--wait` waits for in a rendered manifest, as
/// `Kind/namespace/name` (documents split on `---`; `kind:` and the first
/// `  name:` under `metadata:`).
pub fn workloads(manifest: &str, ns: &str) -> Vec<String> {
    const KINDS: [&str; 6] = [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "Pod",
    ];
    let mut out = Vec::new();
    for doc in manifest.split("\n---") {
        let mut kind = None;
        let mut name = None;
        let mut in_meta = false;
        for l in doc.lines() {
            if let Some(k) = l.strip_prefix("kind:") {
                kind = Some(k.trim().to_owned());
            }
            if !l.starts_with(' ') {
                in_meta = l.trim_end() == "metadata:";
                continue;
            }
            if in_meta && name.is_none() {
                if let Some(n) = l.strip_prefix("  name:") {
                    name = Some(n.trim().trim_matches('"').to_owned());
                }
            }
        }
        if let (Some(k), Some(n)) = (kind, name) {
            if KINDS.contains(&k.as_str()) {
                out.push(format!("{k}/{ns}/{n}"));
            }
        }
    }
    out
}

/// The hook phase of Helm's "<phase> hooks failed" (`pre-upgrade`, …).
fn hook_phase(reason: &str) -> Option<&str> {
    let i = reason.find(" hooks failed")?;
    let head = &reason[..i];
    let start = head
        .rfind(|c: char| !(c.is_ascii_lowercase() || c == '-'))
        .map_or(0, |j| j + 1);
    let phase = &head[start..];
    (!phase.is_empty()).then_some(phase)
}

/// The hooks of `phase` in a revision (`helm status --revision -o json`)
/// Helm recorded as failed (`last_run.phase`), as `Kind/namespace/name`;
/// every hook of the phase when none is recorded as failed.
pub fn failed_hooks(status: &serde_json::Value, phase: &str, ns: &str) -> Vec<String> {
    let of_phase: Vec<&serde_json::Value> = status["hooks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| {
            h["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e == phase))
        })
        .collect();
    let name = |h: &&serde_json::Value| {
        format!(
            "{}/{ns}/{}",
            h["kind"].as_str().unwrap_or("?"),
            h["name"].as_str().unwrap_or("?")
        )
    };
    let failed: Vec<String> = of_phase
        .iter()
        .filter(|h| h["last_run"]["phase"] == "Failed")
        .map(name)
        .collect();
    if failed.is_empty() {
        of_phase.iter().map(name).collect()
    } else {
        failed
    }
}

/// A release's latest revision (`helm status -o json`).
#[derive(Debug, Clone)]
pub struct ReleaseStatus {
    pub revision: u64,
    /// `deployed`, `failed`, `pending-upgrade`, …
    pub status: String,
    pub description: String,
}

impl ReleaseStatus {
    pub fn is_pending(&self) -> bool {
        self.status.starts_with("pending-")
    }

    /// Helm's own rollback to `rev` is the latest revision.
    pub fn is_rollback_to(&self, rev: u64) -> bool {
        self.status == "deployed" && self.description == format!("Rollback to {rev}")
    }
}

/// The refusal for a release left pending by an operation the updater did
/// not start.
pub fn pending_not_ours(release: &str, ns: &str, s: &ReleaseStatus) -> String {
    format!(
        "release {ns}/{release} is {} (revision {}), left by a Helm operation this updater did not start; refusing to touch it: let it finish, or roll it back with helm (`helm rollback {release} -n {ns}`), then apply again",
        s.status, s.revision
    )
}

/// Helm 3 and 4 say `Error: release: not found` (status) and
/// `… release: not found` (uninstall) for a release that does not exist.
fn is_release_not_found(stderr: &str) -> bool {
    stderr.to_ascii_lowercase().contains("release: not found")
}

impl Helm {
    pub fn new(cfg: &HelmConfig) -> Result<Self> {
        // a `"bundled"` Helm: its runnable copy, re-hashed (crate::bundled)
        cfg.bundled
            .ready("helm")
            .map_err(|reason| UpdaterError::BundledTool {
                tool: "bin",
                reason,
            })?;
        let mut h = Self {
            cfg: cfg.clone(),
            major: 0,
            version: String::new(),
            history_max: history_max(cfg.keep_releases),
        };
        let out = h.run("-", "version", &["version", "--short"])?;
        let v = parse_version(&out).map_err(|e| herr("-", "version", e))?;
        h.major = u32::try_from(v.major).unwrap_or(0);
        h.version = out.trim().to_owned();
        Ok(h)
    }

    fn command(&self) -> Command {
        // under setpriv: helm dies with the updater
        let mut c = tool::command(&self.cfg.bin);
        c.env_remove("KUBECONFIG");
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, release: &str, step: &str, args: &[&str]) -> Result<String> {
        self.run_with(release, step, args, None)
    }

    /// Runs helm with `args` (and `--kubeconfig`, but for `version`; real
    /// Helm 3 and 4 `template` ignore it, even naming a missing file), then
    /// the post-renderer's arguments and environment when one is given.
    fn run_with(
        &self,
        release: &str,
        step: &str,
        args: &[&str],
        pr: Option<&PostRender>,
    ) -> Result<String> {
        let mut cmd = self.command();
        cmd.args(args);
        if step != "version" {
            cmd.arg("--kubeconfig").arg(self.cfg.kubeconfig_path());
        }
        if let Some(pr) = pr {
            cmd.args(&pr.args);
            for (k, v) in &pr.env {
                cmd.env(k, v);
            }
        }
        let out = tool::output(&mut cmd, "helm").map_err(|e| {
            herr(
                release,
                step,
                format!("run {}: {e}", self.cfg.bin.display()),
            )
        })?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            return Err(herr(release, step, error_text(&msg)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The release's current revision, None when it is not installed.
    pub fn revision(&self, release: &str, ns: &str) -> Result<Option<u64>> {
        Ok(self.status(release, ns)?.map(|s| s.revision))
    }

    /// The release's latest revision as `helm status -o json` shows it
    /// (a pending one included), None when it is not installed.
    pub fn status(&self, release: &str, ns: &str) -> Result<Option<ReleaseStatus>> {
        let out = tool::output(
            self.command()
                .args(["status", release, "-n", ns, "-o", "json"])
                .arg("--kubeconfig")
                .arg(self.cfg.kubeconfig_path()),
            "helm",
        )
        .map_err(|e| herr(release, "status", e.to_string()))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            // only Helm's own "release: not found" means not installed; any
            // other failure (cluster unreachable, a missing kubeconfig, …)
            // must not be taken for it, or undo would uninstall the release
            if is_release_not_found(&msg) {
                return Ok(None);
            }
            return Err(herr(release, "status", error_text(&msg)));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| herr(release, "status", format!("unreadable output: {e}")))?;
        let Some(revision) = v.get("version").and_then(|x| x.as_u64()) else {
            return Ok(None);
        };
        let text = |k: &str| v["info"][k].as_str().unwrap_or_default().to_owned();
        Ok(Some(ReleaseStatus {
            revision,
            status: text("status"),
            description: text("description"),
        }))
    }

    /// Back to revision `rev`, once: nothing to do when the release is
    /// already there, or when Helm's own atomic rollback
    /// (`--atomic`/`--rollback-on-failure`) already went back to it (its
    /// latest revision is deployed as "Rollback to <rev>"); a second
    /// rollback would only add an identical revision.
    pub fn back_to(&self, release: &str, ns: &str, rev: u64) -> Result<()> {
        match self.status(release, ns)? {
            Some(s) if s.revision == rev => Ok(()),
            Some(s) if s.is_rollback_to(rev) => Ok(()),
            _ => self.rollback(release, ns, rev),
        }
    }

    /// Before an upgrade: a release Helm left `pending-install`,
    /// `pending-upgrade` or `pending-rollback` (its process was killed
    /// during `--wait`) blocks every later operation with "another operation
    /// (install/upgrade/rollback) is in progress". When `ours` (the journal
    /// says this apply's step of this release was running), it is recovered:
    /// rolled back to `before` (the last deployed revision before our
    /// upgrade), or uninstalled when it was our first install. A pending
    /// release we did not start is refused, untouched. Returns what was done.
    pub fn recover_interrupted(
        &self,
        release: &str,
        ns: &str,
        before: Option<u64>,
        ours: bool,
    ) -> Result<Option<String>> {
        let Some(s) = self.status(release, ns)? else {
            return Ok(None);
        };
        if !s.is_pending() {
            return Ok(None);
        }
        if !ours {
            return Err(herr(release, "upgrade", pending_not_ours(release, ns, &s)));
        }
        match before {
            Some(r) => {
                self.rollback(release, ns, r)?;
                Ok(Some(format!(
                    "revision {} was left {} by the interrupted apply: rolled back to {r}",
                    s.revision, s.status
                )))
            }
            None => {
                self.uninstall(release, ns)?;
                Ok(Some(format!(
                    "revision {} was left {} by the interrupted first install: uninstalled",
                    s.revision, s.status
                )))
            }
        }
    }

    /// `helm template` of `chart` as `upgrade` would install it (same values,
    /// namespace and post-renderer), tests left out: the final manifests.
    pub fn template(
        &self,
        release: &str,
        ns: &str,
        chart: &Path,
        vendor_values: &[PathBuf],
        pr: &PostRender,
        registry_value: Option<&str>,
    ) -> Result<String> {
        let mut args: Vec<OsString> = vec![
            "template".into(),
            release.into(),
            chart.into(),
            "-n".into(),
            ns.into(),
            "--skip-tests".into(),
        ];
        // as upgrade: the bundle's vendor values, then the site's own file
        for f in vendor_values {
            args.push("-f".into());
            args.push(f.into());
        }
        if let Some(f) = self.cfg.values_file(release) {
            args.push("-f".into());
            args.push(f.into());
        }
        if let Some(r) = registry_value {
            args.push("--set".into());
            args.push(r.into());
        }
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_with(release, "render", &refs, Some(pr))
    }

    /// `helm upgrade --install` of `up`; `pr`: the post-renderer that
    /// serves every image from the site registry.
    pub fn upgrade(&self, up: &ChartUpgrade<'_>, pr: Option<&PostRender>) -> Result<()> {
        let ChartUpgrade {
            release,
            namespace: ns,
            chart,
            values: vendor_values,
            registry_value,
        } = *up;
        let timeout = format!("{}s", self.cfg.timeout_secs());
        let chart_s = chart.to_string_lossy().into_owned();
        let mut args: Vec<String> = vec![
            "upgrade".into(),
            "--install".into(),
            release.into(),
            chart_s,
            "-n".into(),
            ns.into(),
            "--create-namespace".into(),
            "--wait".into(),
            "--timeout".into(),
            timeout,
            "--history-max".into(),
            self.history_max.to_string(),
        ];
        // the bundle's vendor values first, the site's own file last: with
        // Helm, a later -f wins
        for f in vendor_values {
            args.push("-f".into());
            args.push(f.to_string_lossy().into_owned());
        }
        if let Some(f) = self.cfg.values_file(release) {
            args.push("-f".into());
            args.push(f.to_string_lossy().into_owned());
        }
        if let Some(r) = registry_value {
            args.push("--set".into());
            args.push(r.into());
        }
        args.push(if self.major >= 4 {
            "--rollback-on-failure".into()
        } else {
            "--atomic".into()
        });
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_with(release, "upgrade", &refs, pr)
            .map(|_| ())
            .map_err(|e| self.name_unready(release, ns, "upgrade", e))
    }

    /// Helm 3 reports a `--wait` that ran out as only "context deadline
    /// exceeded", and a hook that never completed as only "<phase> hooks
    /// failed: … timed out waiting for the condition" (Helm 4 names the
    /// resource). Asks Helm for the failed revision it made (`helm history`,
    /// then `helm status --revision N -o json`, with the same
    /// `--kubeconfig`) and adds what did not become ready: for a hook, the
    /// hooks of that phase Helm recorded as failed (`last_run.phase`; all of
    /// the phase when none is); otherwise the workloads of the revision's
    /// manifest, which Helm waited for. The error is kept as it is when they
    /// cannot be read (a first install Helm uninstalled leaves no history).
    fn name_unready(&self, release: &str, ns: &str, step: &str, e: UpdaterError) -> UpdaterError {
        let UpdaterError::Helm { reason, .. } = &e else {
            return e;
        };
        let timed_out = reason.contains("context deadline exceeded")
            || reason.contains("timed out waiting for the condition");
        if self.major >= 4 || !timed_out {
            return e;
        }
        let Some(rev) = self.last_failed_revision(release, ns) else {
            return e;
        };
        let rv = rev.to_string();
        let Ok(out) = self.run(
            release,
            "status",
            &["status", release, "-n", ns, "--revision", &rv, "-o", "json"],
        ) else {
            return e;
        };
        let v = serde_json::from_str::<serde_json::Value>(&out).unwrap_or_default();
        let (what, names) = match hook_phase(reason) {
            Some(phase) => ("not complete", failed_hooks(&v, phase, ns)),
            None => (
                "not ready",
                workloads(v["manifest"].as_str().unwrap_or_default(), ns),
            ),
        };
        if names.is_empty() {
            return e;
        }
        herr(
            release,
            step,
            format!(
                "{reason} ({what} within {}s, revision {rev}: {})",
                self.cfg.timeout_secs(),
                names.join(", ")
            ),
        )
    }

    /// The chart of the release's latest revision (`<name>-<version>`, from
    /// `helm history -o json --max 1`), None when it is not installed.
    pub fn latest_chart(&self, release: &str, ns: &str) -> Result<Option<String>> {
        Ok(self.history_charts(release, ns, 1)?.pop().map(|(_, c)| c))
    }

    /// Every kept revision and its chart, oldest first (`helm history -o
    /// json`); empty when the release is not installed.
    pub fn chart_history(&self, release: &str, ns: &str) -> Result<Vec<(u64, String)>> {
        self.history_charts(release, ns, 10_000)
    }

    fn history_charts(&self, release: &str, ns: &str, max: usize) -> Result<Vec<(u64, String)>> {
        let max = max.to_string();
        let out = tool::output(
            self.command()
                .args(["history", release, "-n", ns, "-o", "json", "--max", &max])
                .arg("--kubeconfig")
                .arg(self.cfg.kubeconfig_path()),
            "helm",
        )
        .map_err(|e| herr(release, "history", e.to_string()))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            if is_release_not_found(&msg) {
                return Ok(Vec::new());
            }
            return Err(herr(release, "history", error_text(&msg)));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| herr(release, "history", format!("unreadable output: {e}")))?;
        let mut revs: Vec<(u64, String)> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["revision"].as_u64()?, r["chart"].as_str()?.to_owned())))
            .collect();
        revs.sort();
        Ok(revs)
    }

    fn last_failed_revision(&self, release: &str, ns: &str) -> Option<u64> {
        let out = self
            .run(
                release,
                "history",
                &["history", release, "-n", ns, "-o", "json", "--max", "5"],
            )
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.as_array()?
            .iter()
            .rev()
            .find(|r| r["status"] == "failed")
            .and_then(|r| r["revision"].as_u64())
    }

    pub fn rollback(&self, release: &str, ns: &str, revision: u64) -> Result<()> {
        let rev = revision.to_string();
        let timeout = format!("{}s", self.cfg.timeout_secs());
        let hmax = self.history_max.to_string();
        self.run(
            release,
            "rollback",
            &[
                "rollback",
                release,
                &rev,
                "-n",
                ns,
                "--wait",
                "--timeout",
                &timeout,
                "--history-max",
                &hmax,
            ],
        )
        .map(|_| ())
        .map_err(|e| self.name_unready(release, ns, "rollback", e))
    }

    pub fn uninstall(&self, release: &str, ns: &str) -> Result<()> {
        match self.run(release, "uninstall", &["uninstall", release, "-n", ns]) {
            Ok(_) => Ok(()),
            Err(UpdaterError::Helm { reason, .. }) if is_release_not_found(&reason) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Helm's stderr as one line, the cause once: Helm 4's `level=WARN
/// msg="upgrade failed" … error="<cause>"` line repeats the `Error:` line's
/// cause, and `Flag --atomic has been deprecated` is no error; both are
/// dropped, and so are client-go's klog lines (`E1129 00:56:29.716251 …
/// memcache.go:265] …`, repeated by the `Error:` line). An error's
/// continuation lines (Helm errors span lines) are kept.
pub fn error_text(stderr: &str) -> String {
    let klog = |l: &str| {
        let b = l.as_bytes();
        b.len() > 5
            && matches!(b[0], b'E' | b'W' | b'I')
            && b[1..5].iter().all(u8::is_ascii_digit)
            && b[5] == b' '
    };
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("level=") && !l.starts_with("Flag --") && !klog(l))
        .collect();
    if lines.is_empty() {
        return one_line(stderr);
    }
    lines.join(" | ")
}

/// A tool's stderr as one line (error messages are one line).
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// How Helm is told to use the post-renderer (`crate::postrender` writes its files): extra arguments and
/// environment for `helm template` / `helm upgrade`.
#[derive(Debug, Clone)]
pub struct PostRender {
    pub args: Vec<OsString>,
    pub env: Vec<(String, PathBuf)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_release_not_found_means_not_installed() {
        assert!(is_release_not_found("Error: release: not found\n"));
        assert!(is_release_not_found(
            "Error: uninstall: Release not loaded: x: release: not found"
        ));
        assert!(!is_release_not_found(
            "Error: Kubernetes cluster unreachable: stat /etc/stoa/kubeconfig: no such file"
        ));
        assert!(!is_release_not_found("Error: kubeconfig not found"));
        assert_eq!(one_line("a\n\n b \n"), "a | b");
    }

    /// The lines real Helm 4.2.3 printed for a failed `--wait`
    /// (../shared/helm-transcripts/with-kcm.txt): the cause once.
    #[test]
    fn helm4_warn_line_is_dropped_and_the_cause_appears_once() {
        let stderr = "level=WARN msg=\"upgrade failed\" name=rk error=\"resource Deployment/nsk-helm4/rk-app not ready. status: InProgress, message: Available: 0/1\\ncontext deadline exceeded\"\nError: UPGRADE FAILED: release rk failed, and has been rolled back due to rollback-on-failure being set: resource Deployment/nsk-helm4/rk-app not ready. status: InProgress, message: Available: 0/1\ncontext deadline exceeded\n";
        let t = error_text(stderr);
        assert_eq!(t.matches("rk-app not ready").count(), 1, "{t}");
        assert!(!t.contains("level=WARN"), "{t}");
        assert!(t.ends_with("| context deadline exceeded"), "{t}");
        let t = error_text(
            "Flag --atomic has been deprecated, use --rollback-on-failure instead\nError: x\n",
        );
        assert_eq!(t, "Error: x");
        // real Helm 3.18 against a server without API groups
        let t = error_text("E1129 00:56:29.716251   20968 memcache.go:265] \"Unhandled Error\" err=\"couldn't get current server API group list\"\nError: could not get apiVersions from Kubernetes\n");
        assert_eq!(t, "Error: could not get apiVersions from Kubernetes");
    }

    #[test]
    fn workloads_are_read_from_the_manifest() {
        // the manifest of transcript helm3-basic.txt's `status -o json`
        let m = "---\n# Source: demo/templates/configmap.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: r1-cfg\ndata:\n  message: \"v2\"\n---\n# Source: demo/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: r1-app\nspec:\n  replicas: 0\n  template:\n    metadata:\n      labels: {app: r1}\n    spec:\n      containers:\n      - name: app\n";
        assert_eq!(workloads(m, "ns1"), ["Deployment/ns1/r1-app"]);
    }

    #[test]
    fn helm_3_hook_timeouts_name_the_failed_hook() {
        // transcript hook.txt: Helm 3's whole message for a pre-upgrade Job
        // that never completed, as error_text makes it one line
        let r = error_text("Error: UPGRADE FAILED: release rh failed, and has been rolled back due to atomic being set: pre-upgrade hooks failed: 1 error occurred:\n\t* timed out waiting for the condition\n\n\n");
        assert_eq!(hook_phase(&r), Some("pre-upgrade"));
        assert_eq!(
            hook_phase("release r1 failed: context deadline exceeded"),
            None
        );
        let status = serde_json::json!({"hooks": [
            {"name": "rh-cleanup", "kind": "Job", "events": ["post-upgrade"], "last_run": {"phase": ""}},
            {"name": "rh-prehook", "kind": "Job", "events": ["pre-install", "pre-upgrade"], "last_run": {"phase": "Failed"}},
            {"name": "rh-pre-cm", "kind": "ConfigMap", "events": ["pre-upgrade"], "last_run": {"phase": "Succeeded"}},
        ]});
        assert_eq!(
            failed_hooks(&status, "pre-upgrade", "nsh3"),
            ["Job/nsh3/rh-prehook"]
        );
        // none recorded as failed: every hook of the phase
        let status = serde_json::json!({"hooks": [
            {"name": "a", "kind": "Job", "events": ["pre-upgrade"]},
            {"name": "b", "kind": "Job", "events": ["post-upgrade"]},
        ]});
        assert_eq!(failed_hooks(&status, "pre-upgrade", "n"), ["Job/n/a"]);
        assert!(failed_hooks(&serde_json::json!({}), "pre-upgrade", "n").is_empty());
    }

    #[test]
    fn versions_outside_the_supported_range_are_refused() {
        assert_eq!(parse_version("v3.18.0+gcc58e3f\n").unwrap().major, 3);
        assert_eq!(parse_version("v4.2.3+g43e8b7f").unwrap().minor, 2);
        for bad in ["v2.17.0+ga690bad", "v5.0.0+g0", "v3.7.2+g0", "garbage"] {
            let e = parse_version(bad).unwrap_err();
            assert!(e.contains(bad) && !e.contains('\n'), "{e}");
        }
        assert_eq!(history_max(3), 30);
        assert_eq!(history_max(0), 10);
    }
}
