//! The Helm driver: the `helm` CLI, version 3 or 4 (told apart by
//! `helm version --short`), each with its own flags (`--atomic` in 3,
//! `--rollback-on-failure` in 4). Started through [`crate::tool`].

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::config::HelmConfig;
use crate::error::{Result, UpdaterError};
use crate::postrender::PostRender;
use crate::tool;

#[derive(Debug, Clone)]
pub struct Helm {
    cfg: HelmConfig,
    pub major: u32,
    pub version: String,
}

fn herr(release: &str, step: &str, reason: impl Into<String>) -> UpdaterError {
    UpdaterError::Helm {
        release: release.to_owned(),
        step: step.to_owned(),
        reason: reason.into(),
    }
}

/// Helm 3 and 4 say `Error: release: not found` (status) and
/// `… release: not found` (uninstall) for a release that does not exist.
fn is_release_not_found(stderr: &str) -> bool {
    stderr.to_ascii_lowercase().contains("release: not found")
}

impl Helm {
    pub fn new(cfg: &HelmConfig) -> Result<Self> {
        let mut h = Self {
            cfg: cfg.clone(),
            major: 0,
            version: String::new(),
        };
        let out = h.run("-", "version", &["version", "--short"])?;
        let v = out.trim().to_owned();
        let major = v
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .ok_or_else(|| herr("-", "version", format!("cannot read helm version {v:?}")))?;
        if !(3..=4).contains(&major) {
            return Err(herr(
                "-",
                "version",
                format!("helm {v} is not supported (3 or 4)"),
            ));
        }
        h.major = major;
        h.version = v;
        Ok(h)
    }

    fn command(&self) -> Command {
        // under setpriv: helm dies with the updater
        let mut c = tool::command(&self.cfg.bin);
        if let Some(k) = &self.cfg.kubeconfig {
            c.env("KUBECONFIG", k);
        }
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, release: &str, step: &str, args: &[&str]) -> Result<String> {
        self.run_with(release, step, args, None)
    }

    /// Runs helm with `args`, then the post-renderer's arguments and
    /// environment when one is given.
    fn run_with(
        &self,
        release: &str,
        step: &str,
        args: &[&str],
        pr: Option<&PostRender>,
    ) -> Result<String> {
        let mut cmd = self.command();
        cmd.args(args);
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
            return Err(herr(release, step, one_line(&msg)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The release's current revision, None when it is not installed.
    pub fn revision(&self, release: &str, ns: &str) -> Result<Option<u64>> {
        let out = tool::output(
            self.command()
                .args(["status", release, "-n", ns, "-o", "json"]),
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
            return Err(herr(release, "status", one_line(&msg)));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| herr(release, "status", format!("unreadable output: {e}")))?;
        Ok(v.get("version").and_then(|x| x.as_u64()))
    }

    /// `helm template` of `chart` as `upgrade` would install it (same values,
    /// namespace and post-renderer), tests left out: the final manifests.
    pub fn template(
        &self,
        release: &str,
        ns: &str,
        chart: &Path,
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

    /// `registry_value`: `name=value` for `--set`, when the site config asks
    /// for one; `pr`: the post-renderer that serves every image from the
    /// site registry.
    pub fn upgrade(
        &self,
        release: &str,
        ns: &str,
        chart: &Path,
        registry_value: Option<&str>,
        pr: Option<&PostRender>,
    ) -> Result<()> {
        let timeout = format!("{}s", self.cfg.timeout().as_secs());
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
        ];
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
        self.run_with(release, "upgrade", &refs, pr).map(|_| ())
    }

    pub fn rollback(&self, release: &str, ns: &str, revision: u64) -> Result<()> {
        let rev = revision.to_string();
        let timeout = format!("{}s", self.cfg.timeout().as_secs());
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
            ],
        )
        .map(|_| ())
    }

    pub fn uninstall(&self, release: &str, ns: &str) -> Result<()> {
        match self.run(release, "uninstall", &["uninstall", release, "-n", ns]) {
            Ok(_) => Ok(()),
            Err(UpdaterError::Helm { reason, .. }) if is_release_not_found(&reason) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A tool's stderr as one line (error messages are one line).
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
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
}
