//! The change report as one HTML page made from a [`Report`] alone: inline
//! CSS, no script, no `src`/`href` at all, and a Content-Security-Policy
//! that forbids loading anything (`default-src 'none'; style-src
//! 'unsafe-inline'; img-src data:`). Every value reaches the page through
//! [`esc`], the one escape function.

use std::fmt::Write;

use super::diff::Unified;
use super::{Change, Report};

/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#111;max-width:1400px}\
h1{font-size:1.6em}h2{border-bottom:1px solid #999;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0;width:100%}td,th{border:1px solid #bbb;padding:.2em .5em;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
th{background:#eee;overflow-wrap:normal}td code{word-break:break-all}code,pre{font-family:monospace}pre{background:#f6f6f6;padding:.5em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}\
.added{color:#060}.removed{color:#a00}.changed{color:#850}.unchanged{color:#666}\
.added,.removed,.changed,.unchanged{white-space:nowrap}\
.failed{color:#a00;font-weight:bold}.ok{color:#060}.skipped{color:#666}\
.d-add{background:#e6ffe6;display:block}.d-del{background:#ffe6e6;display:block}.d-hunk{color:#05a;display:block}.d-same{display:block}\
.note{background:#fff6d0;padding:.3em .6em;border-left:4px solid #db0}";

/// `s` as HTML text or a double-quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn change(c: Change) -> String {
    format!("<span class=\"{0}\">{0}</span>", c.as_str())
}

fn row(cells: &[String]) -> String {
    let mut s = String::from("<tr>");
    for c in cells {
        let _ = write!(s, "<td>{c}</td>");
    }
    s.push_str("</tr>\n");
    s
}

fn head(cells: &[&str]) -> String {
    let mut s = String::from("<table><tr>");
    for c in cells {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("</tr>\n");
    s
}

fn code(s: &str) -> String {
    format!("<code>{}</code>", esc(s))
}

fn diff(d: &Unified) -> String {
    let mut s = String::new();
    for n in &d.notes {
        let _ = writeln!(s, "<p class=\"note\">{}</p>", esc(n));
    }
    if d.lines.is_empty() {
        s.push_str("<p>The rendered manifests are the same.</p>\n");
        return s;
    }
    s.push_str("<pre>");
    for l in &d.lines {
        let class = match l.as_bytes().first() {
            Some(b'+') => "d-add",
            Some(b'-') => "d-del",
            Some(b'@') => "d-hunk",
            _ => "d-same",
        };
        let _ = write!(s, "<span class=\"{class}\">{}</span>", esc(l));
    }
    s.push_str("</pre>\n");
    s
}

/// The whole page.
pub fn page(r: &Report) -> String {
    let mut s = String::new();
    let title = format!("Change report: {} {}", r.release, r.version);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n\
         <title>{}</title>\n<style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(CSP),
        esc(&title),
        esc(&title)
    );
    // release and trust
    s.push_str("<h2>Release</h2>\n<table>\n");
    let kv = |s: &mut String, k: &str, v: String| {
        let _ = writeln!(s, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    };
    kv(&mut s, "Release", esc(&r.release));
    kv(&mut s, "Version", esc(&r.version));
    kv(&mut s, "Created", esc(&r.created));
    kv(
        &mut s,
        "Expires",
        esc(r.expires.as_deref().unwrap_or("never")),
    );
    kv(&mut s, "Manifest SHA-256", code(&r.manifest_sha256));
    if let Some(b) = &r.bundle_sha256 {
        kv(&mut s, "Bundle SHA-256", code(b));
    }
    kv(
        &mut s,
        "Signed by (trusted key ids)",
        r.signers
            .iter()
            .map(|k| code(k))
            .collect::<Vec<_>>()
            .join("<br>"),
    );
    kv(
        &mut s,
        "Trust root version",
        esc(&if r.root_version == 0 {
            "none (the site trusts a key folder)".to_owned()
        } else {
            r.root_version.to_string()
        }),
    );
    if let Some(t) = &r.trust_change {
        kv(&mut s, "Trust change on apply", esc(t));
    }
    kv(&mut s, "Report generated", esc(&r.generated));
    s.push_str("</table>\n");

    // upgrade path
    s.push_str("<h2>Upgrade path</h2>\n<table>\n");
    kv(
        &mut s,
        "Installed",
        esc(r.installed.as_deref().unwrap_or("nothing installed")),
    );
    kv(&mut s, "Goes to", esc(&r.version));
    kv(
        &mut s,
        "Accepted from (upgrade_from)",
        esc(r.upgrade_from.as_deref().unwrap_or("any older version")),
    );
    if !r.delta_bases.is_empty() {
        kv(&mut s, "Delta on", esc(&r.delta_bases.join(", ")));
    }
    if r.resume {
        kv(
            &mut s,
            "Resumes",
            esc("an interrupted apply of this bundle"),
        );
    }
    kv(&mut s, "Apply steps", esc(&r.steps.join(" → ")));
    s.push_str("</table>\n");

    // images
    let _ = writeln!(s, "<h2>Images ({})</h2>", r.images.len());
    s.push_str(&head(&[
        "Change",
        "Image",
        "Digest",
        "Size (bytes)",
        "Served on site as",
        "Upstream signatures",
    ]));
    for i in &r.images {
        let name = match &i.old_name {
            Some(o) if o != &i.name => format!("{}<br>was {}", esc(&i.name), esc(o)),
            _ => esc(&i.name),
        };
        let digest = match &i.old_digest {
            Some(o) if o != &i.digest => format!("{}<br>was {}", code(&i.digest), code(o)),
            _ => code(&i.digest),
        };
        s.push_str(&row(&[
            change(i.change),
            name,
            digest,
            esc(&i.size.to_string()),
            esc(&i.to),
            esc(&i.signatures.to_string()),
        ]));
    }
    s.push_str("</table>\n");

    // charts
    let _ = writeln!(s, "<h2>Charts ({})</h2>", r.charts.len());
    for c in &r.charts {
        let _ = writeln!(
            s,
            "<h3>{}/{}: {} → {}</h3>",
            esc(&c.namespace),
            esc(&c.release),
            esc(c.from.as_deref().unwrap_or("not installed")),
            esc(&c.to)
        );
        let _ = writeln!(
            s,
            "<p>Current Helm revision: {}. Values (in Helm's order): {}. Rendered offline with <code>helm template</code> and the post-renderer, both sides with today's site values; {} lines removed, {} added.</p>",
            esc(&c.revision),
            esc(&if c.values.is_empty() {
                "the chart's defaults".to_owned()
            } else {
                c.values.join(", ")
            }),
            c.diff.removed,
            c.diff.added
        );
        for e in &c.errors {
            let _ = writeln!(s, "<p class=\"note\">{}</p>", esc(e));
        }
        s.push_str(&diff(&c.diff));
    }
    if !r.charts_not_carried.is_empty() {
        let _ = writeln!(
            s,
            "<p>Installed charts this release does not carry: {}</p>",
            esc(&r.charts_not_carried.join(", "))
        );
    }

    // migrations
    let _ = writeln!(s, "<h2>Migrations ({})</h2>", r.migrations.len());
    for n in &r.migration_notes {
        let _ = writeln!(s, "<p class=\"note\">{}</p>", esc(n));
    }
    for mg in &r.migrations {
        let _ = writeln!(
            s,
            "<h3>{} {}: {}</h3>\n<p>{}</p>\n<pre>{}</pre>",
            esc(&mg.database),
            esc(&mg.step),
            if mg.pending {
                "pending, apply runs it"
            } else {
                "already applied"
            },
            code(&mg.up_path),
            esc(&mg.up_sql)
        );
        match (&mg.down_path, &mg.down_sql) {
            (Some(p), Some(sql)) => {
                let _ = writeln!(s, "<p>Down step {}</p>\n<pre>{}</pre>", code(p), esc(sql));
            }
            _ => s.push_str("<p>No down step.</p>\n"),
        }
    }

    // files
    let _ = writeln!(s, "<h2>Files ({})</h2>", r.files.len());
    s.push_str(&head(&[
        "Change",
        "Destination",
        "Mode",
        "Size (bytes)",
        "SHA-256",
    ]));
    for f in &r.files {
        s.push_str(&row(&[
            change(f.change),
            esc(&f.dest),
            esc(&f.mode),
            esc(&f.size.to_string()),
            code(&f.sha256),
        ]));
    }
    s.push_str("</table>\n");

    // preflight
    let _ = writeln!(s, "<h2>Preflight ({} checks)</h2>", r.preflight.len());
    s.push_str(&head(&["Check", "Outcome", "Detail"]));
    for c in &r.preflight {
        let o = serde_json::to_value(c.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        s.push_str(&row(&[
            esc(&c.name),
            format!("<span class=\"{0}\">{0}</span>", esc(&o)),
            esc(&c.detail),
        ]));
    }
    s.push_str("</table>\n");

    // snapshots
    s.push_str("<h2>Snapshots</h2>\n");
    if r.snapshots.is_empty() {
        s.push_str("<p>No database is migrated.</p>\n");
    } else {
        s.push_str(&head(&["Database", "Snapshot before migrating"]));
        for (db, snap) in &r.snapshots {
            s.push_str(&row(&[
                esc(db),
                esc(if *snap {
                    "yes (pg_dump -Fc into the state folder's snapshots/)"
                } else {
                    "no"
                }),
            ]));
        }
        s.push_str("</table>\n");
    }

    // rollback
    s.push_str("<h2>Rollback path</h2>\n<ul>\n");
    for l in &r.rollback {
        let _ = writeln!(s, "<li>{}</li>", esc(l));
    }
    s.push_str("</ul>\n</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::*;
    use super::*;

    /// A report whose every value is hostile: markup, quotes, ampersands.
    fn hostile_report() -> Report {
        let evil = "<script>alert(\"x\")</script>&amp;\"'<img src=x onerror=1>";
        Report {
            release: format!("rel{evil}"),
            version: "1.0.0".into(),
            signers: vec![format!("key{evil}")],
            images: vec![ImageRow {
                change: Change::Changed,
                name: format!("registry.example/img{evil}:1"),
                old_name: Some(format!("old{evil}")),
                old_digest: Some(format!("sha256:{evil}")),
                digest: format!("sha256:{evil}"),
                size: 1,
                to: format!("site/{evil}"),
                signatures: SignatureStatus::NoneCarried,
            }],
            charts: vec![ChartChange {
                release: format!("r{evil}"),
                namespace: format!("n{evil}"),
                from: Some(evil.into()),
                to: evil.into(),
                revision: evil.into(),
                values: vec![format!("values{evil}.yaml")],
                diff: diff::unified(
                    &format!("value: a{evil}\n"),
                    &format!("value: b{evil}\n"),
                    diff::Limits::default(),
                ),
                errors: vec![evil.into()],
            }],
            migrations: vec![MigrationRow {
                database: evil.into(),
                step: evil.into(),
                pending: true,
                up_path: evil.into(),
                up_sql: format!("INSERT INTO t VALUES ('{evil}');"),
                down_path: Some(evil.into()),
                down_sql: Some(evil.into()),
            }],
            files: vec![FileRow {
                change: Change::Added,
                dest: evil.into(),
                mode: "0644".into(),
                size: 0,
                sha256: evil.into(),
            }],
            preflight: vec![Check {
                name: evil.into(),
                outcome: crate::preflight::Outcome::Failed,
                detail: evil.into(),
            }],
            snapshots: vec![(evil.into(), true)],
            rollback: vec![evil.into()],
            migration_notes: vec![evil.into()],
            charts_not_carried: vec![evil.into()],
            ..Report::default()
        }
    }

    #[test]
    fn hostile_values_in_images_sql_and_values_are_escaped_never_markup() {
        let page = page(&hostile_report());
        let lower = page.to_ascii_lowercase();
        // no element but the page's own: no script, no image, no link
        assert!(!lower.contains("<script"), "{page}");
        assert!(!lower.contains("<img"), "{page}");
        assert!(!lower.contains("http://") && !lower.contains("https://"));
        // every tag (escaped text has no `<`) is one the page writes, with
        // no src, href or event attribute
        const TAGS: &[&str] = &[
            "!doctype", "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p",
            "table", "tr", "th", "td", "code", "pre", "span", "br", "ul", "li",
        ];
        for tag in lower.split('<').skip(1) {
            let t = tag.split('>').next().unwrap();
            let name = t.trim_start_matches('/').split([' ', '>']).next().unwrap();
            assert!(TAGS.contains(&name), "tag {t}");
            assert!(
                !t.contains("src=") && !t.contains("href=") && !t.contains(" on"),
                "tag {t}"
            );
        }
        // the values are there, escaped
        assert!(
            page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;&quot;&#39;")
        );
        assert!(page.contains("INSERT INTO t VALUES (&#39;&lt;script&gt;"));
        assert!(page.contains("+value: b&lt;script&gt;"));
        // every quote inside a tag is the page's own: attributes stay intact
        for tag in page.split('<').skip(1) {
            let t = tag.split('>').next().unwrap();
            assert_eq!(t.matches('"').count() % 2, 0, "{t}");
        }
        assert!(page.contains(&format!("content=\"{CSP}\"").replace('\'', "&#39;")));
    }

    #[test]
    fn esc_escapes_the_five_characters() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
