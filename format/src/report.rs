//! What `inspect` and `verify` print, shared by both programs: one JSON
//! document (`--json`) and its plain-text rendering.

use serde_json::{json, Value};

use crate::keys::KeyId;
use crate::manifest::BundleManifest;
use crate::reader::{Inspection, VerifiedBundle};

/// The inspect document. `trusted` is `None` when no trust was given (the
/// signatures were not checked), else the trusted keys that verified.
pub fn inspection(i: &Inspection, trusted: Option<&[KeyId]>, bundle_size: Option<u64>) -> Value {
    let m = &i.manifest;
    let signers: Vec<Value> = i
        .signers
        .iter()
        .map(|k| json!({ "key_id": k.to_string(), "trusted": trusted.map(|t| t.contains(k)) }))
        .collect();
    json!({
        "name": m.release.name,
        "version": m.release.version.to_string(),
        "upgrade_from": m.release.upgrade_from,
        "created": m.release.created,
        "expires": m.release.expires,
        "format_version": m.format_version,
        "manifest_sha256": i.manifest_sha256.hex(),
        "signatures_checked": trusted.is_some(),
        "signers": signers,
        "images": m.images.iter().map(|x| json!({
            "name": x.name, "digest": x.digest, "media_type": x.media_type,
            "platforms": x.platforms, "size": x.size, "source_digest": x.source_digest,
        })).collect::<Vec<_>>(),
        "charts": m.charts.iter().map(|c| json!({
            "name": c.name, "version": c.version, "app_version": c.app_version,
            "release": c.release, "namespace": c.namespace, "size": entry_size(m, &c.path),
            "values": c.values.iter().map(|v| json!({
                "source": v.source, "path": v.path, "sha256": v.sha256.oci(),
                "size": entry_size(m, &v.path),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "migrations": m.migrations.iter().map(|s| json!({
            "database": s.database,
            "steps": s.steps.iter().map(|st| json!({"id": st.id, "name": st.name, "down": st.down.is_some()})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "files": m.files.iter().map(|f| json!({"dest": f.dest, "mode": f.mode, "size": entry_size(m, &f.path)})).collect::<Vec<_>>(),
        "sizes": m.sizes_by_kind(),
        "entries": m.entries.len(),
        "content_bytes": m.content_size(),
        "bundle_bytes": bundle_size,
        "delta": delta(m),
    })
}

/// The `delta` object of inspect and verify: the base chain and every entry
/// the bundle relies on without carrying (null for a full bundle).
pub fn delta(m: &BundleManifest) -> Value {
    let Some(d) = &m.delta else {
        return Value::Null;
    };
    json!({
        "base": d.bases.first().map(base),
        "chain": d.bases.iter().map(base).collect::<Vec<_>>(),
        "omitted_entries": d.omitted.len(),
        "omitted_bytes": d.omitted.iter().map(|e| e.size).sum::<u64>(),
        "omitted": d.omitted.iter().map(|e| json!({
            "path": e.path, "kind": kind_of(&e.path), "size": e.size, "sha256": e.sha256.hex(),
        })).collect::<Vec<_>>(),
    })
}

fn base(b: &crate::manifest::BaseRelease) -> Value {
    json!({"name": b.name, "version": b.version.to_string(), "manifest_sha256": b.manifest_sha256.hex()})
}

/// What kind of content an entry path holds.
pub fn kind_of(path: &str) -> &'static str {
    match path.split('/').next() {
        Some("oci") => "image",
        Some("charts") => "chart",
        Some("migrations") => "migration",
        Some("files") => "file",
        Some("anchors") => "root",
        _ => "other",
    }
}

/// The verify document.
pub fn verified(v: &VerifiedBundle) -> Value {
    json!({
        "ok": true,
        "name": v.manifest.release.name,
        "version": v.manifest.release.version.to_string(),
        "manifest_sha256": v.manifest_sha256.hex(),
        "trusted_signers": v.trusted_signers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "signers": v.signers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "entries": v.manifest.entries.len(),
        "content_bytes": v.content_bytes,
        "delta": delta(&v.manifest),
    })
}

fn entry_size(m: &BundleManifest, path: &str) -> u64 {
    m.listed(path).map(|e| e.size).unwrap_or(0)
}

/// Bytes as a short human figure (IEC units).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Plain-text rendering of [`inspection`].
pub fn inspection_text(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
    let n = |x: &Value| human_bytes(x.as_u64().unwrap_or(0));
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(format!("release      {} {}", s("name"), s("version")));
    line(format!(
        "upgrade_from {}",
        v["upgrade_from"].as_str().unwrap_or("(any)")
    ));
    line(format!("created      {}", s("created")));
    line(format!(
        "expires      {}",
        v["expires"].as_str().unwrap_or("(never)")
    ));
    line(format!("format       stoa-bundle v{}", v["format_version"]));
    line(format!("manifest     sha256:{}", s("manifest_sha256")));
    for sig in v["signers"].as_array().into_iter().flatten() {
        let state = match sig["trusted"].as_bool() {
            None => "not checked (no --trust given)",
            Some(true) => "trusted, verified",
            Some(false) => "unknown key",
        };
        line(format!(
            "signed by    {} ({state})",
            sig["key_id"].as_str().unwrap_or("")
        ));
    }
    line(format!(
        "content      {} in {} entries",
        n(&v["content_bytes"]),
        v["entries"]
    ));
    if let Some(b) = v["bundle_bytes"].as_u64() {
        line(format!("bundle file  {}", human_bytes(b)));
    }
    let d = &v["delta"];
    if !d.is_null() {
        let b = &d["base"];
        line(format!(
            "delta on     {} {} (manifest sha256:{})",
            b["name"].as_str().unwrap_or(""),
            b["version"].as_str().unwrap_or(""),
            b["manifest_sha256"].as_str().unwrap_or("")
        ));
        for c in d["chain"].as_array().into_iter().flatten().skip(1) {
            line(format!(
                "  which is a delta on {} {} (manifest sha256:{})",
                c["name"].as_str().unwrap_or(""),
                c["version"].as_str().unwrap_or(""),
                c["manifest_sha256"].as_str().unwrap_or("")
            ));
        }
        line(format!(
            "relies on    {} in {} entries the site must hold:",
            n(&d["omitted_bytes"]),
            d["omitted_entries"]
        ));
        for e in d["omitted"].as_array().into_iter().flatten() {
            line(format!(
                "  {}  {}  {}",
                e["kind"].as_str().unwrap_or(""),
                e["path"].as_str().unwrap_or(""),
                n(&e["size"])
            ));
        }
    }
    let images = v["images"].as_array().cloned().unwrap_or_default();
    line(format!("images ({})", images.len()));
    for i in &images {
        let plats: Vec<&str> = i["platforms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        line(format!(
            "  {}  {}  [{}]  {}",
            i["name"].as_str().unwrap_or(""),
            i["digest"].as_str().unwrap_or(""),
            plats.join(", "),
            n(&i["size"])
        ));
    }
    let charts = v["charts"].as_array().cloned().unwrap_or_default();
    line(format!("charts ({})", charts.len()));
    for c in &charts {
        line(format!(
            "  {} {}  release {}/{}  {}",
            c["name"].as_str().unwrap_or(""),
            c["version"].as_str().unwrap_or(""),
            c["namespace"].as_str().unwrap_or(""),
            c["release"].as_str().unwrap_or(""),
            n(&c["size"])
        ));
        for v in c["values"].as_array().into_iter().flatten() {
            line(format!(
                "    values {} ({})  {}",
                v["source"].as_str().unwrap_or(""),
                v["path"].as_str().unwrap_or(""),
                v["sha256"].as_str().unwrap_or("")
            ));
        }
    }
    let migs = v["migrations"].as_array().cloned().unwrap_or_default();
    line(format!("migrations ({})", migs.len()));
    for m in &migs {
        let steps: Vec<String> = m["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let down = if s["down"].as_bool() == Some(true) {
                    " (+down)"
                } else {
                    ""
                };
                format!(
                    "{}_{}{down}",
                    s["id"].as_str().unwrap_or(""),
                    s["name"].as_str().unwrap_or("")
                )
            })
            .collect();
        line(format!(
            "  {}: {}",
            m["database"].as_str().unwrap_or(""),
            steps.join(", ")
        ));
    }
    let files = v["files"].as_array().cloned().unwrap_or_default();
    line(format!("files ({})", files.len()));
    for f in &files {
        line(format!(
            "  {}  mode {}  {}",
            f["dest"].as_str().unwrap_or(""),
            f["mode"].as_str().unwrap_or(""),
            n(&f["size"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
