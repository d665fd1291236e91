//! Helm's version constraints (the Masterminds semver forms Chart.yaml
//! uses for `dependencies[].version` and `kubeVersion`) read as Rust
//! `semver` requirements: `x`/`*` wildcards, `~`, `^`, comparisons joined by
//! `,` or space (AND), `||` (OR), `a - b` ranges. The bundler resolves chart
//! dependencies with it; the updater's preflight checks each chart's
//! `kubeVersion` against the server with it.

use semver::VersionReq;

/// A Helm (Masterminds semver) constraint as Rust `semver` requirements,
/// one per `||` alternative.
pub fn helm_constraint(s: &str) -> std::result::Result<Vec<VersionReq>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(vec![VersionReq::STAR]);
    }
    let mut out = Vec::new();
    for alt in s.split("||") {
        let alt = alt.trim();
        // `a - b`
        if let Some((lo, hi)) = alt.split_once(" - ") {
            let r = format!(">={}, <={}", fill(lo.trim()), fill(hi.trim()));
            out.push(VersionReq::parse(&r).map_err(|e| format!("{alt:?}: {e}"))?);
            continue;
        }
        let mut parts = Vec::new();
        let mut rest = alt.replace(',', " ");
        rest = rest.trim().to_owned();
        let toks: Vec<&str> = rest.split_whitespace().collect();
        let mut i = 0;
        while i < toks.len() {
            let mut t = toks[i].to_owned();
            // `>= 1.2`: the operator apart from its version
            if t.bytes().all(|b| b"<>=!~^".contains(&b)) && i + 1 < toks.len() {
                t.push_str(toks[i + 1]);
                i += 1;
            }
            i += 1;
            let op_len = t.bytes().take_while(|b| b"<>=!~^".contains(b)).count();
            let (op, ver) = t.split_at(op_len);
            let ver = ver.trim_start_matches('v');
            let op = match op {
                "" | "=" | "==" => "=",
                "~>" => "~",
                "!=" => return Err(format!("{alt:?}: != is not supported")),
                o => o,
            };
            let ver = strip_wildcards(ver);
            if ver.is_empty() {
                continue; // `*`, `x`: anything
            }
            parts.push(format!("{op}{ver}"));
        }
        let r = if parts.is_empty() {
            "*".to_owned()
        } else {
            parts.join(", ")
        };
        out.push(VersionReq::parse(&r).map_err(|e| format!("{alt:?}: {e}"))?);
    }
    Ok(out)
}

/// `2.x.x` → `2`, `1.2.*` → `1.2`, `*` → `` (what `=` then means in Rust's
/// semver: any version with those leading parts, as in Helm).
fn strip_wildcards(v: &str) -> String {
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let kept: Vec<&str> = core
        .split('.')
        .take_while(|p| !matches!(*p, "x" | "X" | "*"))
        .collect();
    let mut s = kept.join(".");
    if let (Some(p), 3) = (pre, kept.len()) {
        s.push('-');
        s.push_str(p);
    }
    s
}

/// `1.2` → `1.2.0` (for `a - b` ranges).
fn fill(v: &str) -> String {
    let v = strip_wildcards(v.trim_start_matches('v'));
    match v.split('.').count() {
        1 => format!("{v}.0.0"),
        2 => format!("{v}.0"),
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admits(c: &str, v: &str) -> bool {
        let v = semver::Version::parse(v).unwrap();
        helm_constraint(c).unwrap().iter().any(|r| r.matches(&v))
    }

    /// Chart.yaml `kubeVersion` forms as upstream charts write them (vault:
    /// `>= 1.20.0-0`), against plain server versions.
    #[test]
    fn kube_version_constraints_read_like_helm() {
        assert!(admits(">= 1.20.0-0", "1.30.4"));
        assert!(admits(">=1.28.0-0 <1.30.0-0", "1.29.9"));
        assert!(!admits(">=1.28.0-0 <1.30.0-0", "1.30.4"));
        assert!(!admits(">=1.31.0-0", "1.30.4"));
        assert!(admits("1.27.x || >=1.29", "1.27.3"));
        assert!(!admits("1.27.x || >=1.29", "1.28.0"));
        assert!(helm_constraint("not a version").is_err());
    }
}
