//! Issue 17 item 1: the updater's own PostgreSQL client (`stoa_updater::db`)
//! against a REAL server: SCRAM-SHA-256, md5, a password from a passfile
//! (`.pgpass` format, `passfile=` and `PGPASSFILE`), unix sockets (`%2F`
//! host and `?host=`), TLS with `sslmode=verify-full` / `verify-ca` against
//! a server certificate from the test CA, and the refusals: a wrong CA, a
//! wrong password, a cleartext password over plain TCP, TLS demanded from a
//! server that has none.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use stoa_e2e::harness::{run, Postgres, TestCa};
use stoa_updater::db::conninfo::ConnInfo;
use stoa_updater::db::wire::Conn;

struct Server {
    pg: Postgres,
    ca: TestCa,
    dir: tempfile::TempDir,
}

fn sh(cmd: &str) {
    let out = run(Command::new("sh").arg("-c").arg(cmd));
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server with TLS on (the test CA's certificate for 127.0.0.1), roles
/// for each method, and a pg_hba.conf that demands them.
fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let ca = TestCa::create(&dir.path().join("ca"));
    let data = pg.root.join("data");
    fs::copy(&ca.server_cert, data.join("server.crt")).unwrap();
    fs::copy(&ca.server_key, data.join("server.key")).unwrap();
    sh(&format!(
        "chown postgres {d}/server.crt {d}/server.key && chmod 600 {d}/server.key",
        d = data.display()
    ));
    fs::write(
        data.join("pg_hba.conf"),
        "local all postgres trust\n\
         local all all scram-sha-256\n\
         hostssl all tls_u 127.0.0.1/32 scram-sha-256\n\
         host all scram_u 127.0.0.1/32 scram-sha-256\n\
         host all md5_u 127.0.0.1/32 md5\n\
         host all clear_u 127.0.0.1/32 password\n\
         host all postgres 127.0.0.1/32 trust\n",
    )
    .unwrap();
    pg.psql("postgres", "ALTER SYSTEM SET ssl = on");
    pg.psql("postgres", "CREATE ROLE scram_u LOGIN PASSWORD 'pw-scram'");
    pg.psql("postgres", "CREATE ROLE tls_u LOGIN PASSWORD 'pw-tls'");
    pg.psql("postgres", "CREATE ROLE clear_u LOGIN PASSWORD 'pw-clear'");
    pg.psql(
        "postgres",
        "SET password_encryption = 'md5'; CREATE ROLE md5_u LOGIN PASSWORD 'pw-md5'",
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    std::thread::sleep(std::time::Duration::from_millis(500));
    Server { pg, ca, dir }
}

fn connect(url: &str) -> Result<Conn, String> {
    let ci = ConnInfo::parse(url)?;
    Conn::connect(&ci).map_err(|e| e.to_string())
}

fn one(c: &mut Conn, sql: &str) -> String {
    c.query(sql).unwrap().rows[0][0].clone().unwrap_or_default()
}

fn tcp(s: &Server, userinfo: &str, q: &str) -> String {
    format!("postgres://{userinfo}@127.0.0.1:{}/postgres?{q}", s.pg.port)
}

#[test]
fn scram_and_md5_passwords_authenticate_and_wrong_ones_are_refused() {
    let s = server();
    let mut c = connect(&tcp(&s, "scram_u:pw-scram", "sslmode=disable")).unwrap();
    assert_eq!(one(&mut c, "SELECT current_user"), "scram_u");
    // the roles really hold a SCRAM verifier and an md5 hash
    assert_eq!(
        s.pg.psql(
            "postgres",
            "SELECT string_agg(rolname || '=' || CASE WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram' WHEN rolpassword LIKE 'md5%' THEN 'md5' END, ',' ORDER BY rolname) FROM pg_authid WHERE rolname IN ('scram_u', 'md5_u')"
        ),
        "md5_u=md5,scram_u=scram"
    );
    let mut c = connect(&tcp(&s, "md5_u:pw-md5", "sslmode=disable")).unwrap();
    assert_eq!(one(&mut c, "SELECT current_user"), "md5_u");
    for bad in ["scram_u:nope", "md5_u:nope"] {
        let e = connect(&tcp(&s, bad, "sslmode=disable")).unwrap_err();
        assert!(e.contains("password authentication failed"), "{bad}: {e}");
        assert!(
            !e.contains("nope"),
            "the password is never in the error: {e}"
        );
    }
    // the stoa_updater::db API on top of it
    let (user, _, _, _) =
        stoa_updater::db::privileges("stoa", &tcp(&s, "scram_u:pw-scram", "sslmode=disable"))
            .unwrap();
    assert_eq!(user, "scram_u");
}

#[test]
fn a_cleartext_password_is_never_sent_over_plain_tcp() {
    let s = server();
    let e = connect(&tcp(&s, "clear_u:pw-clear", "sslmode=disable")).unwrap_err();
    assert!(
        e.contains("cleartext password") && e.contains("refused"),
        "{e}"
    );
    // over TLS it is fine
    let url = tcp(&s, "clear_u:pw-clear", "sslmode=require");
    let mut c = connect(&url).unwrap();
    assert_eq!(one(&mut c, "SELECT current_user"), "clear_u");
}

#[test]
fn passwords_come_from_a_passfile_and_pgpassfile() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pgpass");
    fs::write(
        &pass,
        format!(
            "# the site's password file\n*:*:*:md5_u:wrong\n127.0.0.1:{}:postgres:scram_u:pw-scram\n",
            s.pg.port
        ),
    )
    .unwrap();
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
    let url = tcp(
        &s,
        "scram_u",
        &format!("sslmode=disable&passfile={}", pass.display()),
    );
    let mut c = connect(&url).unwrap();
    assert_eq!(one(&mut c, "SELECT current_user"), "scram_u");
    // PGPASSFILE, as libpq reads it (~/.pgpass is the same code with $HOME)
    std::env::set_var("PGPASSFILE", &pass);
    let mut c = connect(&tcp(&s, "scram_u", "sslmode=disable")).unwrap();
    assert_eq!(one(&mut c, "SELECT current_user"), "scram_u");
    // a password file others can read is ignored, as libpq does
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o644)).unwrap();
    let e = connect(&tcp(&s, "scram_u", "sslmode=disable")).unwrap_err();
    std::env::remove_var("PGPASSFILE");
    assert!(e.contains("none is set"), "{e}");
}

#[test]
fn unix_sockets_in_both_spellings() {
    let s = server();
    let sock = s.pg.root.display().to_string().replace('/', "%2F");
    let url = format!("postgres://scram_u:pw-scram@{sock}:{}/postgres", s.pg.port);
    let mut c = connect(&url).unwrap();
    assert_eq!(one(&mut c, "SELECT current_user"), "scram_u");
    assert_eq!(
        one(
            &mut c,
            "SELECT coalesce(inet_client_addr()::text, 'socket')"
        ),
        "socket"
    );
    let url = format!(
        "postgres:///postgres?host={}&port={}&user=postgres",
        s.pg.root.display(),
        s.pg.port
    );
    let mut c = connect(&url).unwrap();
    assert_eq!(one(&mut c, "SELECT current_user"), "postgres");
}

#[test]
fn tls_verify_full_against_the_test_ca_and_a_wrong_ca_is_refused() {
    let s = server();
    let ca = s.ca.ca_cert.display().to_string();
    for mode in ["verify-full", "verify-ca"] {
        let url = tcp(
            &s,
            "tls_u:pw-tls",
            &format!("sslmode={mode}&sslrootcert={ca}"),
        );
        let mut c = connect(&url).unwrap();
        assert_eq!(
            one(
                &mut c,
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ),
            "t",
            "{mode}"
        );
    }
    // another CA did not sign the server's certificate
    let other = TestCa::create(&s.dir.path().join("other-ca"));
    let url = tcp(
        &s,
        "tls_u:pw-tls",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            other.ca_cert.display()
        ),
    );
    let e = connect(&url).unwrap_err();
    assert!(e.contains("TLS handshake"), "{e}");
    // verify-full without a root CA file is refused before connecting
    let e = connect(&tcp(
        &s,
        "tls_u:pw-tls",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            Path::new("/nonexistent/ca.pem").display()
        ),
    ))
    .unwrap_err();
    assert!(e.contains("root CA file"), "{e}");
    // the hostssl-only role over plain TCP: the server refuses
    let e = connect(&tcp(&s, "tls_u:pw-tls", "sslmode=disable")).unwrap_err();
    assert!(e.contains("no pg_hba.conf entry"), "{e}");
}

#[test]
fn tls_demanded_from_a_server_without_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path());
    let e = connect(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        pg.port
    ))
    .unwrap_err();
    assert!(e.contains("does not support TLS"), "{e}");
    // prefer falls back to plain TCP
    let mut c = connect(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=prefer",
        pg.port
    ))
    .unwrap();
    assert_eq!(one(&mut c, "SELECT 1"), "1");
}
