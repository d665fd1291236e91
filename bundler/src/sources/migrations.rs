//! Database migrations: a folder of `NNNN_name.sql` up steps and optional
//! `NNNN_name.down.sql` down steps.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{BundlerError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFiles {
    pub id: String,
    pub name: String,
    pub up: PathBuf,
    pub down: Option<PathBuf>,
}

fn err(dir: &Path, message: impl Into<String>) -> BundlerError {
    BundlerError::Migrations {
        dir: dir.to_owned(),
        message: message.into(),
    }
}

/// Applies the format's migration SQL rule ([`stoa_format::sql`]) to a file,
/// streaming it: the error names the file and the line.
pub fn check_sql(path: &Path) -> Result<()> {
    use std::io::Read;
    let io_err = |e: std::io::Error| BundlerError::Migrations {
        dir: path.to_owned(),
        message: e.to_string(),
    };
    let mut f = fs::File::open(path).map_err(io_err)?;
    let mut c = stoa_format::sql::SqlChecker::new();
    let mut buf = vec![0u8; 64 << 10];
    let unsafe_sql = |v: stoa_format::sql::SqlViolation| BundlerError::UnsafeMigration {
        path: path.to_owned(),
        line: v.line,
        reason: v.reason,
    };
    loop {
        let n = f.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        c.feed(&buf[..n]).map_err(unsafe_sql)?;
    }
    c.finish().map_err(unsafe_sql)
}

/// Splits `0001_create_users.sql` / `0001_create_users.down.sql`.
fn parse_name(file: &str) -> Option<(String, String, bool)> {
    let stem = file.strip_suffix(".sql")?;
    let (stem, down) = match stem.strip_suffix(".down") {
        Some(s) => (s, true),
        None => (stem, false),
    };
    let (id, name) = stem.split_once('_')?;
    // NNNN: exactly four digits, so that names sort as they apply; the
    // name by the format's rule (it is written into a history row)
    let ok = id.len() == 4
        && stoa_format::names::check_migration_id(id).is_ok()
        && stoa_format::names::check_migration_name(name).is_ok();
    ok.then(|| (id.to_owned(), name.to_owned(), down))
}

/// Scans a migrations folder. Files not ending in `.sql` are ignored (a
/// README, say); a `.sql` file that does not follow the naming rule, two
/// files with the same number, or a down step without its up step are errors.
pub fn scan(dir: &Path) -> Result<Vec<MigrationFiles>> {
    let mut by_id: BTreeMap<u64, MigrationFiles> = BTreeMap::new();
    let mut downs: Vec<(u64, String, String, PathBuf)> = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| err(dir, e.to_string()))?;
    for ent in rd {
        let ent = ent.map_err(|e| err(dir, e.to_string()))?;
        let file = ent.file_name().to_string_lossy().into_owned();
        if !file.ends_with(".sql") {
            continue;
        }
        let full = ent.path();
        if !fs::symlink_metadata(&full)
            .map_err(|e| err(dir, e.to_string()))?
            .is_file()
        {
            return Err(err(dir, format!("{file} is not a regular file")));
        }
        let (id, name, down) = parse_name(&file).ok_or_else(|| {
            err(
                dir,
                format!("{file}: migration files are named NNNN_name.sql or NNNN_name.down.sql"),
            )
        })?;
        let n: u64 = id
            .parse()
            .map_err(|_| err(dir, format!("{file}: bad number")))?;
        if down {
            downs.push((n, id, name, full));
        } else if let Some(prev) = by_id.insert(
            n,
            MigrationFiles {
                id: id.clone(),
                name,
                up: full,
                down: None,
            },
        ) {
            return Err(err(
                dir,
                format!(
                    "migration number {id} is used twice ({} and {file})",
                    prev.up.display()
                ),
            ));
        }
    }
    for (n, id, name, full) in downs {
        let m = by_id.get_mut(&n).ok_or_else(|| {
            err(
                dir,
                format!("{id}_{name}.down.sql has no up step {id}_{name}.sql"),
            )
        })?;
        if m.name != name {
            return Err(err(
                dir,
                format!(
                    "{id}_{name}.down.sql does not match its up step {id}_{}.sql",
                    m.name
                ),
            ));
        }
        m.down = Some(full);
    }
    Ok(by_id.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            parse_name("0001_init.sql"),
            Some(("0001".into(), "init".into(), false))
        );
        assert_eq!(
            parse_name("0002_add_x.down.sql"),
            Some(("0002".into(), "add_x".into(), true))
        );
        // the name by the format's rule: a-z 0-9 _
        assert_eq!(parse_name("0002_add-x.sql"), None);
        assert_eq!(parse_name("0002_Add.sql"), None);
        assert_eq!(parse_name("init.sql"), None);
        assert_eq!(parse_name("00a1_x.sql"), None);
        // NNNN_name.sql: four digits, no fewer, no more
        assert_eq!(parse_name("2_x.sql"), None);
        assert_eq!(parse_name("002_x.sql"), None);
        assert_eq!(parse_name("00002_x.sql"), None);
        assert_eq!(parse_name("_x.sql"), None);
    }

    #[test]
    fn scan_pairs_down_steps_and_refuses_orphans() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("0001_init.sql"), "create table t();").unwrap();
        fs::write(d.path().join("0001_init.down.sql"), "drop table t;").unwrap();
        fs::write(d.path().join("0002_more.sql"), "select 1;").unwrap();
        fs::write(d.path().join("README.md"), "notes").unwrap();
        let v = scan(d.path()).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[0].down.is_some() && v[1].down.is_none());
        fs::write(d.path().join("0003_x.down.sql"), "").unwrap();
        assert!(scan(d.path()).is_err());
    }
}
