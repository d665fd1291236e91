//! PostgreSQL for the updater. Every query — migrations (up and down
//! steps), the history table, the preflight's privilege check — goes over
//! the wire protocol through our own client ([`wire`]): a migration's text
//! is ONE simple `Query` message, parsed by the server alone, so no
//! client-side script interpreter (psql) ever reads it and nothing in it (a
//! backslash meta-command, a switch of the client encoding) can act on this
//! host. Snapshots stay with PostgreSQL's own tools: `pg_dump -Fc` to take
//! them, and `pg_restore -f -` piped into `psql` to restore them (that input
//! is our own pg_dump's output, never a release's text).
//!
//! One step, one session: each migration opens its own connection
//! (`client_encoding=UTF8` pinned at startup), runs `BEGIN`, the history
//! table's `CREATE TABLE IF NOT EXISTS`, the migration's text, then — after
//! putting `client_encoding` back to UTF8 if the migration changed it, and
//! checking the transaction is still open — the history row, and `COMMIT`,
//! each its own message. A killed updater never sends the `COMMIT`; the
//! backend notices the closed socket within a second
//! (`client_connection_check_interval`, PostgreSQL 14+) and rolls back.
//!
//! History table, created when missing:
//! `stoa_schema_migrations(id text primary key, name text, checksum text
//! (sha256 of the up step), applied_at timestamptz, down_sql text null,
//! release text)`. `down_sql` is kept for information only: a down step is
//! always taken from the release's verified content in the site's store,
//! never from this table (anyone with UPDATE on it could otherwise have the
//! updater run their SQL). A row whose `down_sql` or `checksum` disagrees is
//! reported, not executed.
//!
//! The external tools are started through [`crate::tool`]: the password is
//! in the child's environment (`PGPASSWORD`), never in argv.

pub mod conninfo;
pub mod tls;
pub mod wire;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use crate::error::{Result, UpdaterError};
use crate::tool::{self, PgConn};
use conninfo::ConnInfo;
use wire::{Conn, PgError};

pub const TABLE: &str = "stoa_schema_migrations";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub name: String,
    pub checksum: String,
    /// The release version that ran it (the history row's `release`;
    /// None in rows written without it).
    pub release: Option<String>,
}

fn dberr(db: &str, step: &str, reason: impl Into<String>) -> UpdaterError {
    UpdaterError::Database {
        database: db.to_owned(),
        step: step.to_owned(),
        reason: reason.into(),
    }
}

/// The connection of `url` for the external tools; the error names the
/// database, never the password.
fn conn(db: &str, url: &str, step: &str) -> Result<PgConn> {
    PgConn::parse(url).map_err(|e| dberr(db, step, format!("database url: {e}")))
}

/// A session on `url`'s database, with the kill check on.
fn open(db: &str, url: &str, step: &str) -> Result<Conn> {
    let ci = ConnInfo::parse(url).map_err(|e| dberr(db, step, format!("database url: {e}")))?;
    let mut c = Conn::connect(&ci).map_err(|e| dberr(db, step, format!("connect: {e}")))?;
    // the backend ends a running statement within a second of this process
    // dying (PostgreSQL 14+; older servers refuse the name, which is fine:
    // they finish the statement, find the socket closed and roll back)
    let _ = c.query("SET client_connection_check_interval = 1000");
    Ok(c)
}

/// Runs one statement of ours (never a release's text) and returns its rows.
fn run(c: &mut Conn, db: &str, step: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    c.query(sql)
        .map(|r| r.rows)
        .map_err(|e| dberr(db, step, e.to_string()))
}

/// The 1-based line of character position `pos` (1-based) in `text`.
pub fn line_of(text: &str, pos: usize) -> usize {
    1 + text
        .chars()
        .take(pos.saturating_sub(1))
        .filter(|&c| c == '\n')
        .count()
}

/// Runs a release's migration text (`file` names it) as one message in the
/// open transaction of `c`, then makes sure the session reads our next
/// statements as UTF-8 again and the transaction is still open. The error
/// names the file's line the server's position points at.
fn run_release_text(c: &mut Conn, db: &str, step: &str, file: &str, text: &str) -> Result<()> {
    match c.query(text) {
        Ok(_) => {}
        Err(PgError::Server(e)) => {
            let at = e
                .position
                .map(|p| format!("{file} line {}: ", line_of(text, p)))
                .unwrap_or_else(|| format!("{file}: "));
            return Err(dberr(db, step, format!("{at}{e}")));
        }
        Err(e) => return Err(dberr(db, step, format!("{file}: {e}"))),
    }
    if c.tx_status != b'T' {
        return Err(dberr(
            db,
            step,
            format!(
                "{file} ended the updater's transaction (it must not hold BEGIN/COMMIT/ROLLBACK)"
            ),
        ));
    }
    if c.client_encoding() != "UTF8" {
        // ASCII only: read the same in every client encoding PostgreSQL has
        run(c, db, step, "SET client_encoding = 'UTF8'")?;
        if c.client_encoding() != "UTF8" {
            return Err(dberr(
                db,
                step,
                format!(
                    "{file} left client_encoding {:?} and it could not be reset",
                    c.client_encoding()
                ),
            ));
        }
    }
    Ok(())
}

/// `COMMIT`, and check it committed.
fn commit(c: &mut Conn, db: &str, step: &str) -> Result<()> {
    run(c, db, step, "COMMIT")?;
    if c.tx_status != b'I' {
        return Err(dberr(db, step, "COMMIT did not end the transaction"));
    }
    Ok(())
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// A dollar-quoted literal whose tag does not occur in the text.
pub fn quote(text: &str) -> String {
    let mut n = 0u32;
    loop {
        let tag = format!("$stoa{n}$");
        if !text.contains(&tag) {
            return format!("{tag}{text}{tag}");
        }
        n += 1;
    }
}

/// Preflight: the privileges migrations need, as the configured user:
/// `(user, schema, CREATE on the database, CREATE on the current schema)`.
pub fn privileges(db: &str, url: &str) -> Result<(String, String, bool, bool)> {
    let step = "preflight";
    let mut c = open(db, url, step)?;
    let rows = run(
        &mut c,
        db,
        step,
        "SELECT current_user, coalesce(current_schema(), ''), \
         has_database_privilege(current_database(), 'CREATE'), \
         coalesce(has_schema_privilege(current_schema(), 'CREATE'), false)",
    )?;
    match rows.as_slice() {
        [r] if r.len() == 4 => Ok((
            text(&r[0]).to_owned(),
            text(&r[1]).to_owned(),
            text(&r[2]) == "t",
            text(&r[3]) == "t",
        )),
        _ => Err(dberr(db, step, format!("unreadable answer {rows:?}"))),
    }
}

/// Whether the history table exists (the one probe of its readers).
fn history_table_exists(c: &mut Conn, db: &str, step: &str) -> Result<bool> {
    let rows = run(
        c,
        db,
        step,
        &format!("SELECT to_regclass('{TABLE}') IS NOT NULL"),
    )?;
    Ok(matches!(rows.as_slice(), [r] if r.first().is_some_and(|v| text(v) == "t")))
}

/// Migrations recorded in the database (empty when the table is missing).
pub fn applied(db: &str, url: &str) -> Result<BTreeMap<String, Applied>> {
    let step = "read migration history";
    let mut c = open(db, url, step)?;
    if !history_table_exists(&mut c, db, step)? {
        return Ok(BTreeMap::new());
    }
    let rows = run(
        &mut c,
        db,
        step,
        &format!("SELECT id, name, checksum, coalesce(release, '') FROM {TABLE} ORDER BY id"),
    )?;
    let mut m = BTreeMap::new();
    for r in rows.iter().filter(|r| r.len() == 4) {
        m.insert(
            text(&r[0]).to_owned(),
            Applied {
                name: text(&r[1]).to_owned(),
                checksum: text(&r[2]).to_owned(),
                release: Some(text(&r[3]).to_owned()).filter(|s| !s.is_empty()),
            },
        );
    }
    Ok(m)
}

/// The migration table as the support bundle shows it: per row its id,
/// name, checksum, time and release (never `down_sql`, never any data);
/// empty when the table is missing. Reads only.
pub fn migration_table(db: &str, url: &str) -> Result<Vec<serde_json::Value>> {
    let step = "read migration table";
    let mut c = open(db, url, step)?;
    if !history_table_exists(&mut c, db, step)? {
        return Ok(Vec::new());
    }
    let rows = run(
        &mut c,
        db,
        step,
        &format!(
            "SELECT id, name, checksum, applied_at::text, coalesce(release, '') FROM {TABLE} ORDER BY id"
        ),
    )?;
    Ok(rows
        .iter()
        .filter(|r| r.len() == 5)
        .map(|r| {
            serde_json::json!({"id": text(&r[0]), "name": text(&r[1]), "checksum": text(&r[2]),
                "applied_at": text(&r[3]), "release": text(&r[4])})
        })
        .collect())
}

/// One up step to run, and what its history row records: the one argument of
/// [`migrate_up`] and of `Database::migrate_up`.
#[derive(Clone, Copy)]
pub struct MigrationUp<'a> {
    /// The database's name in the site config.
    pub database: &'a str,
    /// Its connection URL (may hold a password: never printed).
    pub url: &'a str,
    pub id: &'a str,
    pub name: &'a str,
    /// The up step's SQL.
    pub sql: &'a str,
    /// SHA-256 of the up step, recorded in the history row.
    pub checksum: &'a str,
    /// The down step's SQL, recorded in the history row.
    pub down: Option<&'a str>,
    /// The release version that ran it.
    pub release: &'a str,
}

impl std::fmt::Debug for MigrationUp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // no url: it may hold a password
        f.debug_struct("MigrationUp")
            .field("database", &self.database)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("checksum", &self.checksum)
            .field("release", &self.release)
            .finish_non_exhaustive()
    }
}

/// Runs one up step and records it, in one transaction.
pub fn migrate_up(up: &MigrationUp<'_>) -> Result<()> {
    let MigrationUp {
        database: db,
        url,
        id,
        name,
        sql,
        checksum,
        down,
        release,
    } = *up;
    let step = format!("migration {id}_{name}");
    let file = format!("{id}_{name}.sql");
    let mut c = open(db, url, &step)?;
    run(&mut c, db, &step, "BEGIN")?;
    run(
        &mut c,
        db,
        &step,
        &format!("CREATE TABLE IF NOT EXISTS {TABLE} (id text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), down_sql text, release text)"),
    )?;
    run_release_text(&mut c, db, &step, &file, sql)?;
    run(
        &mut c,
        db,
        &step,
        &format!(
            "INSERT INTO {TABLE} (id, name, checksum, down_sql, release) VALUES ({}, {}, {}, {}, {})",
            quote(id),
            quote(name),
            quote(checksum),
            down.map(quote).unwrap_or_else(|| "NULL".into()),
            quote(release)
        ),
    )?;
    commit(&mut c, db, &step)
}

/// What the history row of an undone migration held, when it disagreed
/// with the release's verified content (reported, never executed).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RowMismatch {
    pub database: String,
    pub id: String,
    /// The row's `down_sql` is not the verified down step.
    pub down_sql_edited: bool,
    /// The row's `checksum` is not the verified up step's sha256.
    pub checksum_edited: bool,
}

/// Runs the verified down step `down` (sha256 `down_sha256`) of `id` and
/// deletes its row, in one transaction. Returns None when the row is gone
/// already (undone before a kill), else the row's disagreements with the
/// verified content (empty when it agrees). The row's own `down_sql` is
/// never run.
pub fn migrate_down(
    db: &str,
    url: &str,
    id: &str,
    up_sha256: &str,
    down: &str,
    down_sha256: &str,
) -> Result<Option<RowMismatch>> {
    let step = format!("down migration {id}");
    let mut c = open(db, url, &step)?;
    // hashes only: the row's text never reaches our parsing
    let rows = run(
        &mut c,
        db,
        &step,
        &format!(
            "SELECT checksum, coalesce(encode(sha256(convert_to(down_sql, 'UTF8')), 'hex'), '-') FROM {TABLE} WHERE id = {}",
            quote(id)
        ),
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let (checksum, down_hash) = (
        row.first().map(text).unwrap_or(""),
        row.get(1).map(text).unwrap_or(""),
    );
    let mismatch = RowMismatch {
        database: db.to_owned(),
        id: id.to_owned(),
        down_sql_edited: down_hash != down_sha256,
        checksum_edited: checksum != up_sha256,
    };
    let name = applied_name(&mut c, db, &step, id)?;
    run(&mut c, db, &step, "BEGIN")?;
    run_release_text(&mut c, db, &step, &format!("{id}_{name}.down.sql"), down)?;
    run(
        &mut c,
        db,
        &step,
        &format!("DELETE FROM {TABLE} WHERE id = {}", quote(id)),
    )?;
    commit(&mut c, db, &step)?;
    Ok(Some(mismatch))
}

/// The recorded name of migration `id` (for naming its down file).
fn applied_name(c: &mut Conn, db: &str, step: &str, id: &str) -> Result<String> {
    let rows = run(
        c,
        db,
        step,
        &format!("SELECT name FROM {TABLE} WHERE id = {}", quote(id)),
    )?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .map(text)
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect())
}

/// `pg_dump -Fc` into `dest` (temp file, then rename).
pub fn snapshot(db: &str, url: &str, dest: &Path) -> Result<()> {
    // a dump holds the data: the operator's alone (0600 from the start)
    let file = stoa_format::durable::AtomicFile::options()
        .mode(0o600)
        .create(dest)
        .map_err(|e| UpdaterError::io("write snapshot", dest, e))?;
    let tmp = file.temp_path().to_owned();
    let conn = conn(db, url, "snapshot")?;
    let mut c = tool::command("pg_dump");
    conn.env(&mut c);
    c.args(["-Fc", "--no-owner", "-f"])
        .arg(&tmp)
        .arg(conn.url());
    let out = tool::output(&mut c, "pg_dump")
        .map_err(|e| dberr(db, "snapshot", format!("run pg_dump: {e}")))?;
    if !out.status.success() {
        return Err(dberr(db, "snapshot", first_error_line(&out.stderr)));
    }
    // pg_dump wrote through the temp's name into the same inode
    file.commit()
        .map_err(|e| UpdaterError::io("write snapshot", dest, e))
}

/// Reads a child's stderr to its end on a thread (so the child never blocks
/// on a full pipe).
fn drain(stderr: Option<std::process::ChildStderr>) -> Option<std::thread::JoinHandle<Vec<u8>>> {
    stderr.map(|mut e| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut e, &mut v);
            v
        })
    })
}

/// The first error line of what [`drain`] read ("" when none).
fn first_error_of(h: Option<std::thread::JoinHandle<Vec<u8>>>) -> String {
    h.and_then(|t| t.join().ok())
        .map(|v| first_error_line(&v))
        .unwrap_or_default()
}

/// Replaces the database's `public` schema with the snapshot's content, in
/// ONE transaction: the dump as SQL (`pg_restore -f -`) is streamed into
/// `psql --single-transaction` after the schema is dropped and recreated.
/// psql's input is closed (and so the transaction committed) only once
/// pg_restore has succeeded; otherwise psql is killed and the transaction
/// rolled back. A failure or a kill leaves the database as it was, so an
/// interrupted restore is simply run again. Data written since is lost.
pub fn restore(db: &str, url: &str, dump: &Path) -> Result<()> {
    let step = "restore snapshot";
    let conn = conn(db, url, step)?;
    let mut dumper = tool::command("pg_restore");
    dumper
        .args(["--no-owner", "-f", "-"])
        .arg(dump)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut dumper = tool::spawn(&mut dumper, "pg_restore")
        .map_err(|e| dberr(db, step, format!("run pg_restore: {e}")))?;
    let mut c = tool::command("psql");
    conn.env(&mut c);
    c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"])
        .args(["-d", conn.url()])
        .args([
            "-c",
            "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;",
        ])
        .args(["-f", "-"])
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut psql = match tool::spawn(&mut c, "psql") {
        Ok(c) => c,
        Err(e) => {
            let _ = dumper.kill();
            let _ = dumper.wait();
            return Err(dberr(db, step, format!("run psql: {e}")));
        }
    };
    let psql_err = drain(psql.stderr.take());
    let dump_err = drain(dumper.stderr.take());
    // a write error means psql stopped early; its own status says why
    let copied = match (dumper.stdout.take(), psql.stdin.as_mut()) {
        (Some(mut from), Some(to)) => std::io::copy(&mut from, to).map(|_| ()),
        _ => Err(std::io::Error::other("no pipe")),
    };
    let dumped = dumper.wait();
    let dump_ok = matches!(&dumped, Ok(s) if s.success()) && copied.is_ok();
    if !dump_ok {
        // never let psql see the end of a partial script: it would commit
        let _ = psql.kill();
    }
    drop(psql.stdin.take());
    let status = psql.wait();
    let (dump_msg, psql_msg) = (first_error_of(dump_err), first_error_of(psql_err));
    if !dump_ok {
        let why = match (&dumped, &copied) {
            (Err(e), _) => e.to_string(),
            (Ok(_), Err(e)) if dump_msg.is_empty() => format!("{e} ({psql_msg})"),
            _ => dump_msg,
        };
        return Err(dberr(
            db,
            step,
            format!("pg_restore: {why}; the database is unchanged"),
        ));
    }
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => Err(dberr(
            db,
            step,
            format!("{psql_msg}; the database is unchanged"),
        )),
        Err(e) => Err(dberr(db, step, format!("psql: {e}"))),
    }
}

/// The first line of a tool's stderr that names an error, else the first line.
fn first_error_line(stderr: &[u8]) -> String {
    let msg = String::from_utf8_lossy(stderr);
    msg.lines()
        .find(|l| l.contains("ERROR") || l.contains("FATAL") || l.contains("error"))
        .or_else(|| msg.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_positions_map_to_the_migration_line() {
        let t = "CREATE TABLE a (x int);\n\n-- é ü\nSELEC 1;\n";
        // characters, not bytes: the comment's non-ASCII letters count once
        let pos = t.chars().take_while(|&c| c != 'S').count() + 1;
        assert_eq!(line_of(t, pos), 4);
        assert_eq!(line_of(t, 1), 1);
        assert_eq!(line_of(t, 0), 1);
        assert_eq!(line_of(t, 10_000), 5);
    }

    #[test]
    fn dollar_quotes_never_meet_their_tag_in_the_text() {
        assert_eq!(quote("a'b"), "$stoa0$a'b$stoa0$");
        assert_eq!(quote("x $stoa0$ y"), "$stoa1$x $stoa0$ y$stoa1$");
    }
}
