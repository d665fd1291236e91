//! Helm charts: a chart folder packaged deterministically (like `helm
//! package`, but with fixed mtimes, owners and order), or a ready `.tgz`
//! kept byte-exact.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use serde::Deserialize;

use crate::error::{BundlerError, Result};

/// Charts are read into memory; this bounds it.
pub const MAX_CHART_SIZE: u64 = 64 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChartYaml {
    name: String,
    version: String,
    #[serde(default)]
    app_version: Option<serde_yaml::Value>,
    #[serde(default)]
    kube_version: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    dependencies: Vec<Dependency>,
}

/// A `dependencies` item of Chart.yaml (what `helm dependency build` reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Dependency {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub repository: String,
}

/// A chart archive ready for the bundle.
#[derive(Debug)]
pub struct PackagedChart {
    pub name: String,
    pub version: String,
    pub app_version: Option<String>,
    /// Chart.yaml `kubeVersion` (checked to be a Helm constraint).
    pub kube_version: Option<String>,
    /// Chart.yaml `annotations` whose values are strings.
    pub annotations: BTreeMap<String, String>,
    /// Chart.yaml `dependencies`.
    pub dependencies: Vec<Dependency>,
    pub bytes: Vec<u8>,
}

/// What Chart.yaml says, checked.
struct ChartMeta {
    name: String,
    version: String,
    app_version: Option<String>,
    kube_version: Option<String>,
    annotations: BTreeMap<String, String>,
    dependencies: Vec<Dependency>,
}

fn err(path: &Path, message: impl Into<String>) -> BundlerError {
    BundlerError::Chart {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn parse_chart_yaml(path: &Path, text: &[u8]) -> Result<ChartMeta> {
    let c: ChartYaml =
        serde_yaml::from_slice(text).map_err(|e| err(path, format!("Chart.yaml: {e}")))?;
    if semver::Version::parse(&c.version).is_err() {
        return Err(err(
            path,
            format!(
                "Chart.yaml: version {:?} is not SemVer 2 (Helm requires it)",
                c.version
            ),
        ));
    }
    if c.name.is_empty()
        || !c
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(err(
            path,
            format!("Chart.yaml: name {:?} is not a valid chart name", c.name),
        ));
    }
    let app = c.app_version.map(|v| match v {
        serde_yaml::Value::String(s) => s,
        other => serde_yaml::to_string(&other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    });
    if let Some(k) = &c.kube_version {
        stoa_format::constraint::helm_constraint(k).map_err(|m| {
            err(
                path,
                format!("Chart.yaml: kubeVersion {k:?} is not a version constraint: {m}"),
            )
        })?;
    }
    let annotations = c
        .annotations
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_yaml::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect();
    Ok(ChartMeta {
        name: c.name,
        version: c.version,
        app_version: app,
        kube_version: c.kube_version.filter(|k| !k.trim().is_empty()),
        annotations,
        dependencies: c.dependencies,
    })
}

impl ChartMeta {
    fn with(self, bytes: Vec<u8>) -> PackagedChart {
        PackagedChart {
            name: self.name,
            version: self.version,
            app_version: self.app_version,
            kube_version: self.kube_version,
            annotations: self.annotations,
            dependencies: self.dependencies,
            bytes,
        }
    }
}

/// The gzip level `build` packages chart folders with (its bytes are the
/// bundle's; `images` packs a throwaway archive for Helm with none).
pub const BUNDLE_GZIP: Compression = Compression::new(6);

/// The mtime of every file in a chart archive the bundler packs (from a
/// folder, or completed with its dependencies): 1980-01-01, a constant, so
/// an archive's bytes depend on the chart's content only. Two builds of an
/// unchanged chart, whenever made, give the same archive, and a delta
/// leaves it out. (Helm ignores the mtimes.)
pub const CHART_MTIME: u64 = 315_532_800;

/// Loads a chart from a folder (packaged with gzip `level`) or a `.tgz`
/// (kept as it is).
pub fn load(path: &Path, level: Compression) -> Result<PackagedChart> {
    let meta = fs::metadata(path).map_err(|e| err(path, e.to_string()))?;
    if meta.is_dir() {
        package_dir(path, level)
    } else {
        load_tgz(path)
    }
}

fn load_tgz(path: &Path) -> Result<PackagedChart> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_CHART_SIZE + 1).read_to_end(&mut bytes))
        .map_err(|e| err(path, e.to_string()))?;
    if bytes.len() as u64 > MAX_CHART_SIZE {
        return Err(err(path, format!("larger than {MAX_CHART_SIZE} bytes")));
    }
    let mut ar = tar::Archive::new(GzDecoder::new(&bytes[..]));
    let mut found = None;
    for e in ar
        .entries()
        .map_err(|e| err(path, format!("not a gzip tar: {e}")))?
    {
        let mut e = e.map_err(|e| err(path, format!("not a gzip tar: {e}")))?;
        let p = e.path().map_err(|e| err(path, e.to_string()))?.into_owned();
        let comps: Vec<_> = p.components().collect();
        if comps.len() == 2 && p.file_name().is_some_and(|n| n == "Chart.yaml") {
            let mut text = Vec::new();
            (&mut e)
                .take(1 << 20)
                .read_to_end(&mut text)
                .map_err(|e| err(path, e.to_string()))?;
            found = Some(text);
            break;
        }
    }
    let text = found.ok_or_else(|| {
        err(
            path,
            "no <chart>/Chart.yaml inside: not a Helm chart archive",
        )
    })?;
    Ok(parse_chart_yaml(path, &text)?.with(bytes))
}

/// `.helmignore`: one glob per line (`*`, `?`), `#` comments; a pattern with
/// a `/` matches the relative path, otherwise any path component; a trailing
/// `/` matches folders only. Negation (`!`) is not supported and refused.
#[derive(Debug, Default)]
struct HelmIgnore {
    patterns: Vec<(String, bool)>,
}

impl HelmIgnore {
    fn load(dir: &Path) -> Result<Self> {
        let p = dir.join(".helmignore");
        let Ok(text) = fs::read_to_string(&p) else {
            return Ok(Self::default());
        };
        let mut patterns = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            if line.starts_with('!') {
                return Err(err(
                    &p,
                    format!("negated pattern {line:?} is not supported"),
                ));
            }
            let dir_only = line.ends_with('/');
            patterns.push((
                line.trim_end_matches('/')
                    .trim_start_matches('/')
                    .to_owned(),
                dir_only,
            ));
        }
        Ok(Self { patterns })
    }

    fn ignored(&self, rel: &str, is_dir: bool) -> bool {
        self.patterns.iter().any(|(pat, dir_only)| {
            if *dir_only && !is_dir {
                return false;
            }
            if pat.contains('/') {
                glob(pat, rel)
            } else {
                rel.rsplit('/').next().is_some_and(|base| glob(pat, base))
            }
        })
    }
}

fn glob(pat: &str, s: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && m(p, &s[1..])),
            (Some(b'?'), Some(c)) if *c != b'/' => m(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(pat.as_bytes(), s.as_bytes())
}

/// A file of a chart archive the bundler writes.
#[derive(Debug)]
pub struct ArchiveFile {
    /// `<chart>/<path inside the chart>`.
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// The one writer of chart archives (a folder packaged, a chart completed
/// with its dependencies): files sorted by path, owner 0, every mtime
/// [`CHART_MTIME`], gzip at `level` without a timestamp, so the bytes
/// depend on the files only.
pub fn pack_archive(mut files: Vec<ArchiveFile>, level: Compression) -> std::io::Result<Vec<u8>> {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let gz = GzBuilder::new().mtime(0).write(Vec::new(), level);
    let mut tb = tar::Builder::new(gz);
    tb.mode(tar::HeaderMode::Deterministic);
    for f in &files {
        let mut h = tar::Header::new_ustar();
        h.set_size(f.data.len() as u64);
        h.set_mode(f.mode);
        h.set_mtime(CHART_MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tb.append_data(&mut h, &f.path, &f.data[..])?;
    }
    let mut bytes = tb.into_inner()?.finish()?;
    bytes.flush()?;
    Ok(bytes)
}

fn package_dir(dir: &Path, level: Compression) -> Result<PackagedChart> {
    let chart_yaml =
        fs::read(dir.join("Chart.yaml")).map_err(|e| err(dir, format!("Chart.yaml: {e}")))?;
    let meta = parse_chart_yaml(dir, &chart_yaml)?;
    let name = meta.name.clone();
    let ignore = HelmIgnore::load(dir)?;
    let mut files: Vec<(String, PathBuf, u32)> = Vec::new();
    walk(dir, "", &ignore, &mut files)?;
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let mut archive = Vec::with_capacity(files.len());
    let mut total = 0u64;
    for (rel, full, mode) in &files {
        let data = fs::read(full).map_err(|e| err(full, e.to_string()))?;
        total += data.len() as u64;
        if total > MAX_CHART_SIZE {
            return Err(err(
                dir,
                format!("chart content is larger than {MAX_CHART_SIZE} bytes"),
            ));
        }
        archive.push(ArchiveFile {
            path: format!("{name}/{rel}"),
            mode: *mode,
            data,
        });
    }
    let bytes = pack_archive(archive, level).map_err(|e| err(dir, e.to_string()))?;
    Ok(meta.with(bytes))
}

fn walk(
    root: &Path,
    rel: &str,
    ignore: &HelmIgnore,
    out: &mut Vec<(String, PathBuf, u32)>,
) -> Result<()> {
    let dir = if rel.is_empty() {
        root.to_owned()
    } else {
        root.join(rel)
    };
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| err(&dir, e.to_string()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| err(&dir, e.to_string()))?;
    names.sort();
    for n in names {
        let n = n
            .to_str()
            .ok_or_else(|| err(&dir, "a file name is not UTF-8"))?
            .to_owned();
        let child_rel = if rel.is_empty() {
            n.clone()
        } else {
            format!("{rel}/{n}")
        };
        let full = root.join(&child_rel);
        let meta = fs::symlink_metadata(&full).map_err(|e| err(&full, e.to_string()))?;
        if ignore.ignored(&child_rel, meta.is_dir()) {
            continue;
        }
        if meta.file_type().is_symlink() {
            return Err(err(&full, "symlinks are not allowed in a chart"));
        }
        if meta.is_dir() {
            walk(root, &child_rel, ignore, out)?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            out.push((child_rel, full, mode));
        } else {
            return Err(err(&full, "not a regular file"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob("*.tmp", "a.tmp"));
        assert!(!glob("*.tmp", "a/b.tmp"));
        assert!(glob("templates/*.bak", "templates/x.bak"));
        assert!(glob("?.txt", "a.txt"));
    }

    #[test]
    fn packaging_is_deterministic_and_readable() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("Chart.yaml"),
            "apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: \"2.0\"\n",
        )
        .unwrap();
        fs::create_dir(d.path().join("templates")).unwrap();
        fs::write(d.path().join("templates/cm.yaml"), "kind: ConfigMap\n").unwrap();
        fs::write(d.path().join("notes.bak"), "x").unwrap();
        fs::write(d.path().join(".helmignore"), "*.bak\n").unwrap();
        let a = load(d.path(), BUNDLE_GZIP).unwrap();
        let b = load(d.path(), BUNDLE_GZIP).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(
            (
                a.name.as_str(),
                a.version.as_str(),
                a.app_version.as_deref()
            ),
            ("demo", "1.2.3", Some("2.0"))
        );
        let tgz = d.path().join("demo.tgz");
        fs::write(&tgz, &a.bytes).unwrap();
        let c = load(&tgz, BUNDLE_GZIP).unwrap();
        assert_eq!(c.bytes, a.bytes);
        let mut names: Vec<String> = tar::Archive::new(GzDecoder::new(&a.bytes[..]))
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".helmignore", "Chart.yaml", "templates/cm.yaml"].map(|n| format!("demo/{n}"))
        );
    }
}
