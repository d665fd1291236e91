//! The few questions the updater asks the Kubernetes API directly, through
//! `kubectl --kubeconfig <[helm] kubeconfig>` (never `KUBECONFIG` from the
//! environment): whether a namespace exists before a first install (Helm's
//! `--create-namespace` creates it silently), and deleting one the undo of
//! that first install must take away again.

use std::process::Stdio;

use crate::config::HelmConfig;
use crate::error::{Result, UpdaterError};
use crate::tool;

fn kerr(ns: &str, step: &str, reason: impl Into<String>) -> UpdaterError {
    UpdaterError::Helm {
        release: format!("namespace {ns}"),
        step: step.to_owned(),
        reason: reason.into(),
    }
}

fn kubectl(h: &HelmConfig, ns: &str, step: &str, args: &[&str]) -> Result<std::process::Output> {
    let bin = h.kubectl_program().map_err(|e| kerr(ns, step, e))?;
    let mut c = tool::command(&bin);
    c.env_remove("KUBECONFIG")
        .args(args)
        .args(["--request-timeout", "30s", "--kubeconfig"])
        .arg(h.kubeconfig_path())
        .stdin(Stdio::null());
    tool::output(&mut c, "kubectl").map_err(|e| kerr(ns, step, format!("run kubectl: {e}")))
}

fn first_error(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("Warning:"))
        .unwrap_or("kubectl failed")
        .to_owned()
}

/// Whether namespace `ns` exists (`kubectl get namespace`; NotFound is
/// false, any other failure an error).
pub fn namespace_exists(h: &HelmConfig, ns: &str) -> Result<bool> {
    let out = kubectl(h, ns, "get", &["get", "namespace", ns, "-o", "name"])?;
    if out.status.success() {
        return Ok(true);
    }
    let err = first_error(&out.stderr);
    if err.contains("(NotFound)") || err.contains("not found") {
        return Ok(false);
    }
    Err(kerr(ns, "get", err))
}

/// Deletes namespace `ns` (without waiting for its finalizers); gone
/// already is fine.
pub fn delete_namespace(h: &HelmConfig, ns: &str) -> Result<()> {
    let out = kubectl(
        h,
        ns,
        "delete",
        &[
            "delete",
            "namespace",
            ns,
            "--wait=false",
            "--ignore-not-found",
        ],
    )?;
    if out.status.success() {
        return Ok(());
    }
    Err(kerr(ns, "delete", first_error(&out.stderr)))
}
