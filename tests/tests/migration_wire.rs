//! Issue 17 item 1: a migration's text never reaches a client-side script
//! interpreter. Each fixture under `tests/fixtures/migration-client-encoding-*`
//! is a migration that switches the client encoding (JOHAB by `SET`, by
//! `set_config`, SJIS) so that psql mis-lexes a quote and runs a following
//! `\! touch <marker>`. Each test shows the fixture is a real attack (real
//! psql creates the marker), then sends it the way the updater does (its
//! own wire-protocol client: one `Query` message, parsed by the server
//! alone): the server answers an error naming the file's line, the marker
//! is never created and the database is unchanged. The JOHAB fixtures pass
//! the format's lint (the bypass issue 17 found), so a signed bundle
//! carrying them reaches `apply`, which exits 6.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use stoa_e2e::harness::{fails, ok, repo_root, Postgres};
use stoa_e2e::site::{migrations, Site};
use stoa_e2e::tamper::Base;
use stoa_updater::db::{self, MigrationUp};

fn fixture(name: &str, marker: &Path) -> Vec<u8> {
    let f = repo_root()
        .join("tests/fixtures")
        .join(name)
        .join("0002_enc.sql");
    let text = fs::read(&f).unwrap();
    let mut out = Vec::new();
    let m = marker.to_string_lossy();
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(b"MARKER") {
            out.extend_from_slice(m.as_bytes());
            i += 6;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// Real psql, as the updater used to run migrations: true when it ran the
/// fixture's shell command.
fn psql_runs_it(pg: &Postgres, db: &str, text: &[u8], marker: &Path) -> bool {
    let _ = fs::remove_file(marker);
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-d", &pg.url(db), "-f", "-"])
        .env("PGCLIENTENCODING", "UTF8")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text).unwrap();
    child.wait().unwrap();
    let ran = marker.exists();
    let _ = fs::remove_file(marker);
    ran
}

fn tables(pg: &Postgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
    )
}

/// The updater's own path, on the fixture's exact bytes.
fn wire_refuses(name: &str, lint_refuses: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    pg.create_db("victim");
    let marker = dir.path().join("pwned");
    let text = fixture(name, &marker);
    assert!(
        psql_runs_it(&pg, "victim", &text, &marker),
        "{name}: psql did not run the shell command, the fixture proves nothing"
    );
    pg.psql("victim", "DROP TABLE IF EXISTS enc_marker");
    // the lint sees the SJIS trick (wave 2) but not JOHAB's 3-byte one: it
    // is no boundary, the wire protocol is
    assert_eq!(
        stoa_format::sql::check_sql(&text).is_err(),
        lint_refuses,
        "{name}: lint"
    );
    let before = tables(&pg, "victim");
    let sql = String::from_utf8_lossy(&text).into_owned();
    let url = pg.url("victim");
    let e = db::migrate_up(&MigrationUp {
        database: "victim",
        url: &url,
        id: "0002",
        name: "enc",
        sql: &sql,
        checksum: "x",
        down: None,
        release: "9.9.9",
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("0002_enc.sql line ") && e.contains("syntax error"),
        "{name}: {e}"
    );
    assert!(!marker.exists(), "{name}: the shell command ran");
    assert_eq!(tables(&pg, "victim"), before, "{name}: database changed");
    assert!(db::applied("victim", &url).unwrap().is_empty());
}

#[test]
fn client_encoding_johab_migration_never_reaches_a_shell() {
    wire_refuses("migration-client-encoding-johab", false);
}

#[test]
fn client_encoding_set_config_migration_never_reaches_a_shell() {
    wire_refuses("migration-client-encoding-set-config", false);
}

#[test]
fn client_encoding_sjis_migration_never_reaches_a_shell() {
    wire_refuses("migration-client-encoding-sjis", true);
}

/// A signed bundle carrying the JOHAB fixtures reaches `apply` (the lint
/// does not see the bypass), which fails with the server's syntax error.
#[test]
fn apply_of_signed_client_encoding_bypass_exits_6_and_runs_nothing() {
    let s = Site::start();
    ok(s.updater().arg("apply").arg(s.bundle("2.0.0", None)));
    let before = s.tables();
    for name in [
        "migration-client-encoding-johab",
        "migration-client-encoding-set-config",
    ] {
        let marker = s.path().join(format!("{name}.pwned"));
        let mig = migrations(
            &s.path().join(format!("mig-{name}")),
            1,
            &[
                ("0002_enc.sql", "SELECT 1;\n"),
                ("0002_enc.down.sql", "SELECT 1;\n"),
            ],
        );
        let plain = s.bundle("2.1.0", Some(&mig));
        let base = Base::from_file(&plain, &s.key);
        let entry = base
            .entries
            .iter()
            .find(|e| e.name.ends_with("/0002_enc.sql"))
            .unwrap()
            .name
            .clone();
        let crafted: PathBuf = s.path().join(format!("{name}.stoa"));
        fs::write(
            &crafted,
            base.content_signed(&entry, &fixture(name, &marker)),
        )
        .unwrap();
        let err = fails(s.updater().arg("apply").arg(&crafted), 6);
        assert!(
            err.contains("0002_enc.sql line ") && err.contains("syntax error"),
            "{name}: {err}"
        );
        assert!(!marker.exists(), "{name}: the shell command ran");
        assert_eq!(s.migration_ids(), ["0001"], "{name}");
        assert_eq!(s.tables(), before, "{name}");
        assert_eq!(s.installed().as_deref(), Some("2.0.0"), "{name}");
    }
}

/// A migration that leaves the session in another client encoding cannot
/// change how the updater's next statement (its history row) is read.
#[test]
fn session_encoding_is_reset_before_the_history_row() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    pg.create_db("enc");
    let url = pg.url("enc");
    let down = "DROP TABLE latin; -- café ünïcödé\n";
    db::migrate_up(&MigrationUp {
        database: "enc",
        url: &url,
        id: "0001",
        name: "latin",
        sql: "SET client_encoding = 'LATIN1';\nCREATE TABLE latin (x text);\n",
        checksum: "c1",
        down: Some(down),
        release: "1.0.0",
    })
    .unwrap();
    assert_eq!(
        pg.psql(
            "enc",
            "SELECT down_sql = 'DROP TABLE latin; -- café ünïcödé' || chr(10) FROM stoa_schema_migrations"
        ),
        "t"
    );
    // the next step reads UTF-8 too
    db::migrate_up(&MigrationUp {
        database: "enc",
        url: &url,
        id: "0002",
        name: "utf8",
        sql: "INSERT INTO latin VALUES ('é');\n",
        checksum: "c2",
        down: None,
        release: "1.0.0",
    })
    .unwrap();
    assert_eq!(pg.psql("enc", "SELECT x FROM latin"), "é");
    let got = db::migrate_down("enc", &url, "0001", "c1", down, "-").unwrap();
    assert!(got.is_some());
}

/// The server's error position points at the migration's own line.
#[test]
fn server_error_names_the_migration_line() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    pg.create_db("lines");
    let url = pg.url("lines");
    let e = db::migrate_up(&MigrationUp {
        database: "lines",
        url: &url,
        id: "0003",
        name: "broken",
        sql: "CREATE TABLE a (x int);\n\n-- a comment\nSELEC 1;\n",
        checksum: "c",
        down: None,
        release: "1.0.0",
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("database lines: migration 0003_broken: 0003_broken.sql line 4: ERROR: syntax error at or near \"SELEC\""),
        "{e}"
    );
    assert_eq!(tables(&pg, "lines"), "", "rolled back");
}
