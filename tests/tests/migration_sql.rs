//! Issue 7, defect 1, revisited by issue 17: the format's migration SQL
//! lint (`stoa_format::sql`) against REAL psql. The updater no longer pipes
//! migrations to psql (it speaks the wire protocol, see
//! `migration_wire.rs`), so the lint is a help for authors, not the
//! boundary; this still checks that whatever it accepts, piped to
//! `psql -X -f -`, runs no meta-command in UTF8 or SJIS, with or without
//! ON_ERROR_STOP — checked with canaries (`\! touch <file>`, `\o <file>`)
//! that would create a file. Every attack text is refused by the lint, and
//! psql really runs its meta-command (so the corpus tests something).
//! Texts that attacked psql only with `standard_conforming_strings` off are
//! accepted now (plain strings ending in a backslash are valid SQL): they
//! are sent through the updater's own client and create nothing.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use stoa_e2e::harness::Postgres;
use stoa_format::sql::check_sql;

/// psql modes: extra environment for each run.
const MODES: [(&str, &[(&str, &str)]); 2] =
    [("default", &[]), ("SJIS", &[("PGCLIENTENCODING", "SJIS")])];

/// Runs `text` through psql; true when the canary file appeared.
fn psql_runs_meta(
    pg: &Postgres,
    text: &[u8],
    canary: &Path,
    env: &[(&str, &str)],
    stop: bool,
) -> bool {
    let _ = std::fs::remove_file(canary);
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-q", "-v"])
        .arg(if stop {
            "ON_ERROR_STOP=1"
        } else {
            "ON_ERROR_STOP=0"
        })
        .args(["-f", "-"])
        .arg(pg.url("sqltest"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("psql");
    child.stdin.take().unwrap().write_all(text).unwrap();
    let _ = child.wait().unwrap();
    let hit = canary.exists();
    let _ = std::fs::remove_file(canary);
    hit
}

/// Puts the canary path in, and turns U+0083 into the raw byte 0x83 (a
/// Shift-JIS lead byte; not UTF-8 on purpose).
fn fill(template: &str, canary: &Path) -> Vec<u8> {
    let s = template.replace("{C}", &canary.display().to_string());
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{83}' {
            out.push(0x83);
        } else {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }
    out
}

type Env = &'static [(&'static str, &'static str)];

/// (name, text, environment in which psql runs the meta-command)
const ATTACKS: &[(&str, &str, Env)] = &[
    ("line-start", "\\! touch {C}\n", &[]),
    ("mid-line", "SELECT 1; \\! touch {C}\n", &[]),
    ("after-string", "SELECT 'a' \\o {C}\n", &[]),
    ("after-e-string", "SELECT E'\\'' \\! touch {C}\n", &[]),
    (
        "e-string-escaped-backslash",
        "SELECT e'\\\\' \\! touch {C}\n",
        &[],
    ),
    (
        "plain-string-ending-in-backslash",
        "SELECT '\\' \\! touch {C}\n",
        &[],
    ),
    ("u-amp-string", "SELECT U&'\\' \\! touch {C}\n", &[]),
    (
        "after-quoted-identifier",
        "SELECT \"a\\\" \\! touch {C}\n",
        &[],
    ),
    ("after-dollar-body", "SELECT $a$ x $a$ \\! touch {C}\n", &[]),
    ("dollar-in-identifier", "SELECT x$a$ \\! touch {C}\n", &[]),
    (
        "after-block-comment",
        "/* a /* b */ */ \\! touch {C}\n",
        &[],
    ),
    ("after-line-comment", "-- c\n\\! touch {C}\n", &[]),
    ("semicolon-glued", "SELECT 1;\\! touch {C}\n", &[]),
    ("o-after-select", "SELECT 1 \\o {C}\n", &[]),
    // SJIS: 0x83 0x5C is one character, so the quote after it ends the string
    (
        "sjis-trail-backslash",
        "SELECT E'\u{83}\\' \\! touch {C}\n';\n",
        &[("PGCLIENTENCODING", "SJIS")],
    ),
];

/// Attacks on psql with standard_conforming_strings off: valid SQL the lint
/// accepts now; over the wire they are strings and run nothing.
const PSQL_ONLY: &[(&str, &str, Env)] = &[
    (
        "std-strings-off-by-session",
        "SELECT '\\' ' \\! touch {C}\n';\n",
        &[("PGOPTIONS", "-c standard_conforming_strings=off")],
    ),
    (
        "std-strings-off-by-set",
        "SET standard_conforming_strings = off;\nSELECT '\\' ' \\! touch {C}\n';\n",
        &[],
    ),
];

/// Texts the lexer should accept although they look alarming.
const BENIGN: &[&str] = &[
    "SELECT $$ \\! touch {C} $$;\n",
    "SELECT $a$ $b$ \\! touch {C} $b$ $a$;\n",
    "/* /* */ \\! touch {C} */ SELECT 1;\n",
    "-- \\! touch {C}\nSELECT 1;\n",
    "SELECT \"\\! touch {C}\";\n",
    "SELECT 'it''s \\! touch {C}';\n",
    "SELECT 1$a$ \\! touch {C} $a$;\n",
    "SELECT E'\\\\! touch {C}';\n",
    "CREATE TABLE IF NOT EXISTS t (x text DEFAULT '\\d');\n",
    "DO $body$ BEGIN RAISE NOTICE '\\! touch {C}'; END $body$;\n",
    "SELECT 'a'\n'\\o {C}';\n",
];

/// A small deterministic generator of tricky texts.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const PIECES: &[&str] = &[
    // unbalanced, dangerous
    "'",
    "\"",
    "E'",
    "U&'",
    "$$",
    "$a$",
    "x$a$",
    "1$a$",
    "\\\\",
    "\\'",
    "--",
    "/*",
    "*/",
    "\\! touch {C}\n",
    "\\o {C}\n",
    "\u{83}",
    // balanced units that hide a canary or a backslash
    "'x'",
    "''",
    "'\\'",
    "E'\\''",
    "E'\u{83}\\''",
    "\"\\\"",
    "$$ \\! touch {C}\n $$",
    "$a$ $$ \\o {C}\n $a$",
    "/* /* \\o {C}\n */ */",
    "-- \\! touch {C}\n",
    "'\\! touch {C}'",
    "E'\\\\! touch {C}'",
    "\"\\o {C}\"",
    // plain tokens
    "\n",
    ";",
    " ",
    "x",
    "SELECT ",
    "$1",
    "1",
    ",",
];

#[test]
fn whatever_the_lexer_accepts_psql_runs_no_meta_command() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    pg.create_db("sqltest");
    let canary = dir.path().join("canary");

    // 1. every attack is refused, and psql really runs it
    for (name, t, env) in ATTACKS {
        let text = fill(t, &canary);
        assert!(
            check_sql(&text).is_err(),
            "{name}: the lexer accepted an attack"
        );
        assert!(
            psql_runs_meta(&pg, &text, &canary, env, false),
            "{name}: psql did not run the meta-command, the fixture proves nothing"
        );
    }

    // 1b. psql-only attacks: psql runs them, the updater's client does not
    for (i, (name, t, env)) in PSQL_ONLY.iter().enumerate() {
        let text = fill(t, &canary);
        check_sql(&text).unwrap_or_else(|e| panic!("{name} refused: {e}"));
        assert!(
            psql_runs_meta(&pg, &text, &canary, env, false),
            "{name}: psql did not run the meta-command, the fixture proves nothing"
        );
        let sql = String::from_utf8(text).unwrap();
        let url = pg.url("sqltest");
        let _ = stoa_updater::db::migrate_up(&stoa_updater::db::MigrationUp {
            database: "sqltest",
            url: &url,
            id: &format!("{:04}", i + 1),
            name: "psql_only",
            sql: &sql,
            checksum: "x",
            down: None,
            release: "1.0.0",
        });
        assert!(!canary.exists(), "{name}: ran over the wire");
    }

    // 2. benign texts are accepted and run nothing
    for t in BENIGN {
        let text = fill(t, &canary);
        check_sql(&text).unwrap_or_else(|e| panic!("{t:?} refused: {e}"));
        for (mode, env) in MODES {
            assert!(
                !psql_runs_meta(&pg, &text, &canary, env, false),
                "{t:?}: psql ran a meta-command ({mode})"
            );
        }
    }

    // 3. random tricky texts: whenever accepted, psql runs nothing, in any mode
    let seed = 0x5eed_7a7a_u64;
    let mut rng = Rng(seed);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..500 {
        let n = 2 + (rng.next() % 10) as usize;
        let mut t = String::new();
        for _ in 0..n {
            t.push_str(PIECES[(rng.next() % PIECES.len() as u64) as usize]);
        }
        let text = fill(&t, &canary);
        if check_sql(&text).is_err() {
            refused += 1;
            continue;
        }
        accepted += 1;
        for (mode, env) in MODES {
            for stop in [false, true] {
                assert!(
                    !psql_runs_meta(&pg, &text, &canary, env, stop),
                    "seed {seed:#x} case {case}: lexer accepted {:?} but psql ran a meta-command ({mode}, ON_ERROR_STOP={stop})",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }
    assert!(
        accepted >= 60 && refused >= 60,
        "accepted {accepted}, refused {refused}: corpus too one-sided"
    );
    eprintln!(
        "random corpus: {accepted} accepted (psql ran nothing in 2 modes x 2), {refused} refused"
    );
}
