//! The one way the tests author a release manifest (`release.toml`): a
//! [`Release`] builder with its `[release]` table and any number of
//! `[[images]]`, `[[charts]]`, `[[migrations]]`, `[[files]]` (or other)
//! tables, each a [`Table`] of fields in the order given. The text is written
//! in one layout: the `[release]` table, then each table after a blank line.
//!
//! Tests whose subject is the manifest's *text* (an error naming a line, a
//! key in a given order) keep their TOML inline and say so.

use std::fs;
use std::path::{Path, PathBuf};

/// One `[[kind]]` table: its fields as `key = value` lines, in order.
#[derive(Debug, Clone)]
pub struct Table {
    kind: String,
    fields: Vec<(String, String)>,
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Table {
    /// An empty `[[kind]]` table.
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.into(),
            fields: Vec::new(),
        }
    }

    /// An `[[images]]` table naming `name` (pulled from its registry unless
    /// a `source` is set).
    pub fn image(name: &str) -> Self {
        Self::new("images").str("name", name)
    }

    /// A `[[charts]]` table for the chart folder `path`.
    pub fn chart(path: &str, release: &str, namespace: &str) -> Self {
        Self::new("charts")
            .str("path", path)
            .str("release", release)
            .str("namespace", namespace)
    }

    /// A `[[charts]]` table for chart `name` `version` of a classic Helm
    /// repository.
    pub fn repo_chart(repo: &str, name: &str, version: &str, release: &str, ns: &str) -> Self {
        Self::new("charts")
            .str("repo", repo)
            .str("name", name)
            .str("version", version)
            .str("release", release)
            .str("namespace", ns)
    }

    /// A `[[charts]]` table for a chart reference (`oci://…`) at `version`.
    pub fn chart_ref(chart: &str, version: &str, release: &str, namespace: &str) -> Self {
        Self::new("charts")
            .str("chart", chart)
            .str("version", version)
            .str("release", release)
            .str("namespace", namespace)
    }

    /// A `[[files]]` table copying `source` to `dest` in the bundle.
    pub fn file(source: &str, dest: &str) -> Self {
        Self::new("files").str("source", source).str("dest", dest)
    }

    /// A `[[migrations]]` table: the SQL folder `dir` for `database`.
    pub fn migration(database: &str, dir: &str) -> Self {
        Self::new("migrations")
            .str("database", database)
            .str("dir", dir)
    }

    /// An `[[image_exceptions]]` table.
    pub fn image_exception(image: &str, reason: &str) -> Self {
        Self::new("image_exceptions")
            .str("image", image)
            .str("reason", reason)
    }

    /// Adds `key = "value"`.
    pub fn str(self, key: &str, value: &str) -> Self {
        self.raw(key, &quote(value))
    }

    /// Adds `key = ["a", "b"]`.
    pub fn list(self, key: &str, values: &[&str]) -> Self {
        let items: Vec<String> = values.iter().map(|v| quote(v)).collect();
        self.raw(key, &format!("[{}]", items.join(", ")))
    }

    /// Adds `key = <value>` with `value` already TOML.
    pub fn raw(mut self, key: &str, value: &str) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    fn text(&self) -> String {
        format!("[[{}]]\n{}", self.kind, self.lines())
    }

    fn lines(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.fields {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s
    }
}

/// A release manifest: `[release]` `name`/`version` (and any other
/// `[release]` keys) followed by tables.
#[derive(Debug, Clone)]
pub struct Release {
    head: Table,
    tables: Vec<Table>,
}

impl Release {
    /// `[release] name = name, version = version`, no tables yet.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            head: Table::new("release")
                .str("name", name)
                .str("version", version),
            tables: Vec::new(),
        }
    }

    /// The tests' usual release name, `stoa-platform`, at `version`.
    pub fn stoa(version: &str) -> Self {
        Self::new("stoa-platform", version)
    }

    /// Another `[release]` key (`key = "value"`).
    pub fn release_field(mut self, key: &str, value: &str) -> Self {
        self.head = self.head.str(key, value);
        self
    }

    /// Adds a table.
    pub fn table(mut self, t: Table) -> Self {
        self.tables.push(t);
        self
    }

    /// Adds an `[[images]]` table for `name`, with `source` when given.
    pub fn image(self, name: &str, source: Option<&str>) -> Self {
        let t = Table::image(name);
        self.table(match source {
            Some(s) => t.str("source", s),
            None => t,
        })
    }

    /// Adds a `[[charts]]` table for the chart folder `path`.
    pub fn chart(self, path: &str, release: &str, namespace: &str) -> Self {
        self.table(Table::chart(path, release, namespace))
    }

    /// Adds a `[[migrations]]` table.
    pub fn migration(self, database: &str, dir: &str) -> Self {
        self.table(Table::migration(database, dir))
    }

    /// Adds a `[[files]]` table, with `mode` when given.
    pub fn file(self, source: &str, dest: &str, mode: Option<&str>) -> Self {
        let t = Table::file(source, dest);
        self.table(match mode {
            Some(m) => t.str("mode", m),
            None => t,
        })
    }

    /// The manifest's text.
    pub fn text(&self) -> String {
        let mut s = format!("[release]\n{}", self.head.lines());
        for t in &self.tables {
            s.push('\n');
            s.push_str(&t.text());
        }
        s
    }

    /// Writes `<dir>/release.toml` (creating `dir`) and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        self.write_to(&dir.join("release.toml"))
    }

    /// Writes the manifest at `path` and returns it.
    pub fn write_to(&self, path: &Path) -> PathBuf {
        fs::write(path, self.text()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_release_table_then_each_table_after_a_blank_line() {
        let r = Release::stoa("2.3.0")
            .image("a:1", Some("oci:images:a"))
            .file("x", "bin/x", Some("0755"));
        assert_eq!(
            r.text(),
            "[release]\nname = \"stoa-platform\"\nversion = \"2.3.0\"\n\n[[images]]\nname = \"a:1\"\nsource = \"oci:images:a\"\n\n[[files]]\nsource = \"x\"\ndest = \"bin/x\"\nmode = \"0755\"\n"
        );
        assert_eq!(
            Table::chart("c", "r", "n")
                .list("values", &["v.yaml"])
                .text(),
            "[[charts]]\npath = \"c\"\nrelease = \"r\"\nnamespace = \"n\"\nvalues = [\"v.yaml\"]\n"
        );
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
