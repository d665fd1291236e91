//! The site-side holes of issue 7 and orphaned workers of issue 12, each as
//! a named negative test on a real site (docker-registry, PostgreSQL, the
//! Helm stand-in): down SQL edited in the history table, one chart for two
//! Helm releases, the database password in argv, build metadata, a first
//! install with `upgrade_from`, a FIFO bundle, state folder modes, a loose
//! config holding a password, a symlink inside `files_dir`, and `kill -9`
//! of the updater during a slow migration and a slow Helm step.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stoa_e2e::harness::{fails, json, ok, run};
use stoa_e2e::site::{manifests_dir, migrations, Site};

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A process that runs (not gone, not a zombie).
fn running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("X");
            !matches!(state, "Z" | "X")
        }
        Err(_) => false,
    }
}

/// Waits up to `secs` for `cond`.
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_quiet(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn rollback_never_runs_down_sql_edited_in_history_table() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    ok(s.updater().arg("apply").arg(&b210));
    // a database user with UPDATE on the history table plants commands
    let marker = s.path().join("pwned");
    s.pg.psql(
        "stoa",
        &format!(
            "UPDATE stoa_schema_migrations SET down_sql = $x$DROP TABLE tenants CASCADE;\n\\! touch {}\n$x$ WHERE id = '0002'",
            marker.display()
        ),
    );
    let out = run(s.updater().args(["rollback", "--json"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rollback failed: {stderr}");
    let r = json(&String::from_utf8_lossy(&out.stdout));
    assert!(!marker.exists(), "the planted shell command ran");
    // the verified down step ran (api_keys dropped), not the planted one
    assert_eq!(s.tables(), ["apis", "stoa_schema_migrations", "tenants"]);
    assert_eq!(s.migration_ids(), ["0001"]);
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    let rows = &r["rollback"]["edited_history_rows"];
    assert_eq!(rows[0]["id"], "0002", "{r}");
    assert_eq!(rows[0]["down_sql_edited"], true, "{r}");
    assert!(
        stderr.contains("migration 0002 was edited") && stderr.contains("NOT executed"),
        "{stderr}"
    );
    let journal = fs::read_to_string(s.state_dir.join("journal.jsonl")).unwrap();
    assert!(journal.contains("edited_history_row"), "{journal}");
}

#[test]
fn rollback_refuses_store_content_that_no_longer_matches() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    ok(s.updater().arg("apply").arg(&b210));
    // the stored down step of 0002 is edited on disk (root on the admin host
    // or bit rot): it is re-hashed before use and refused
    let down = manifests_dir().join("migrations/stoa-2.1.0/0002_api_keys.down.sql");
    let text = fs::read(&down).unwrap();
    use sha2::Digest;
    let blob = s
        .state_dir
        .join("store/sha256")
        .join(hex::encode(sha2::Sha256::digest(&text)));
    let mut p = fs::metadata(&blob).unwrap().permissions();
    p.set_mode(0o644);
    fs::set_permissions(&blob, p).unwrap();
    fs::write(&blob, b"DROP TABLE tenants CASCADE;\n").unwrap();
    let e = fails(s.updater().arg("rollback"), 3);
    assert!(e.contains("no longer matches its verified digest"), "{e}");
    assert!(s.tables().contains(&"tenants".to_owned()));
    assert_eq!(s.migration_ids(), ["0001", "0002"]);
}

#[test]
fn one_chart_archive_for_two_helm_releases_applies() {
    let s = Site::start();
    let api = manifests_dir().join("charts-2.0.0/stoa-api");
    let b = s.bundle_with("2.0.0", None, &|t| {
        format!(
            "{t}\n[[charts]]\npath = \"{}\"\nrelease = \"stoa-api-canary\"\nnamespace = \"stoa-system\"\n",
            api.display()
        )
    });
    ok(s.updater().arg("apply").arg(&b));
    assert_eq!(s.helm_revision("stoa-api"), Some(1));
    assert_eq!(s.helm_revision("stoa-api-canary"), Some(1));
    // the chart Helm got is the archive, not an emptied copy
    let charts = s.state_dir.join("releases/2.0.0/charts");
    for e in fs::read_dir(&charts).unwrap().flatten() {
        assert!(e.metadata().unwrap().len() > 0, "{}", e.path().display());
    }
    // stored blobs are read-only and none is empty
    for e in fs::read_dir(s.state_dir.join("store/sha256"))
        .unwrap()
        .flatten()
    {
        let m = mode(&e.path());
        assert_eq!(m & 0o222, 0, "{} is writable ({m:o})", e.path().display());
    }
    // staging the same release again (a re-apply) keeps working
    ok(s.updater().arg("apply").arg(&b).arg("--allow-downgrade"));
    assert_eq!(s.helm_revision("stoa-api-canary"), Some(2));
}

/// Writes `psql`, `pg_dump`, `pg_restore` shims into `dir` that record
/// their argv (and whether PGPASSWORD is set) in `log`, then exec the real
/// tool.
fn tool_shims(dir: &Path, log: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    for tool in ["psql", "pg_dump", "pg_restore"] {
        let real = String::from_utf8(
            run(Command::new("sh").args(["-c", &format!("command -v {tool}")])).stdout,
        )
        .unwrap()
        .trim()
        .to_owned();
        assert!(!real.is_empty(), "{tool} not found");
        let shim = dir.join(tool);
        fs::write(
            &shim,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"{tool} $*\" >> '{log}'\n[ -n \"$PGPASSWORD\" ] && echo \"{tool} env PGPASSWORD set\" >> '{log}'\nexec '{real}' \"$@\"\n",
                log = log.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir.to_owned()
}

const PASSWORD: &str = "S3cr3t-pw";

fn with_db_password(s: &Site) {
    let text = fs::read_to_string(&s.config).unwrap();
    let text = text.replace(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}%21@"),
    );
    assert!(text.contains(PASSWORD));
    fs::write(&s.config, text).unwrap();
}

#[test]
fn database_password_is_never_in_tool_argv() {
    let mut s = Site::start();
    with_db_password(&s);
    fs::set_permissions(&s.config, fs::Permissions::from_mode(0o600)).unwrap();
    let log = s.path().join("argv.log");
    let shims = tool_shims(&s.path().join("shims"), &log);
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    s.env.push(("PATH".into(), path));
    let b200 = s.bundle("2.0.0", None);
    // 0002 without a down step: going back restores the snapshot (pg_restore)
    let mig = migrations(
        &s.path().join("mig-nodown"),
        1,
        &[(
            "0002_api_keys.sql",
            "CREATE TABLE api_keys (id bigserial PRIMARY KEY);\n",
        )],
    );
    let b210 = s.bundle("2.1.0", Some(&mig));
    ok(s.updater().arg("apply").arg(&b200));
    ok(s.updater().arg("apply").arg(&b210));
    ok(s.updater().args(["rollback", "--restore-snapshot"]));
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert_eq!(s.migration_ids(), ["0001"]);
    let argv = fs::read_to_string(&log).unwrap();
    for tool in ["psql", "pg_dump", "pg_restore"] {
        assert!(
            argv.lines().any(|l| l.starts_with(&format!("{tool} "))),
            "{tool} never ran through the shim: {argv}"
        );
    }
    assert!(
        argv.contains("psql env PGPASSWORD set") && argv.contains("pg_dump env PGPASSWORD set"),
        "the password reaches the tools through the environment: {argv}"
    );
    assert!(!argv.contains(PASSWORD), "password in argv: {argv}");
    assert!(argv.contains("postgres://postgres@127.0.0.1"), "{argv}");
    // nor in anything the updater writes
    for f in ["state.json", "journal.jsonl", "history.jsonl"] {
        let t = fs::read_to_string(s.state_dir.join(f)).unwrap();
        assert!(!t.contains(PASSWORD), "password in {f}");
    }
}

#[test]
fn loose_config_holding_a_password_is_warned() {
    let s = Site::start();
    fs::set_permissions(&s.config, fs::Permissions::from_mode(0o644)).unwrap();
    // no password in it: no warning
    let out = run(s.updater().arg("status"));
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    with_db_password(&s);
    fs::set_permissions(&s.config, fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(s.updater().arg("status"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("holds a password") && warnings[0].contains("0644"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    fs::set_permissions(&s.config, fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(s.updater().arg("status"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

#[test]
fn build_metadata_is_not_newer() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b200b2 = s.bundle_with("2.0.0", None, &|t| {
        t.replace("version = \"2.0.0\"", "version = \"2.0.0+b2\"")
    });
    ok(s.updater().arg("apply").arg(&b200));
    let e = fails(s.updater().arg("apply").arg(&b200b2), 5);
    assert!(e.contains("not newer"), "{e}");
    let e = fails(s.updater().arg("plan").arg(&b200b2), 5);
    assert!(e.contains("not newer"), "{e}");
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
}

/// Issue 21 item 18: a bundle of another release is refused as such, naming
/// both releases, even at a newer version; the installed one stays.
#[test]
fn a_bundle_of_another_release_is_refused_naming_both() {
    let s = Site::start();
    let a200 = s.bundle("2.0.0", None);
    let b210 = s.bundle_with("2.1.0", None, &|t| {
        t.replacen("name = \"stoa-platform\"", "name = \"other-product\"", 1)
    });
    ok(s.updater().arg("apply").arg(&a200));
    for cmd in ["plan", "apply"] {
        let e = fails(s.updater().arg(cmd).arg(&b210), 5);
        assert!(
            e.contains("release other-product 2.1.0")
                && e.contains("runs release stoa-platform 2.0.0"),
            "{cmd}: {e}"
        );
    }
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
}

#[test]
fn upgrade_from_does_not_block_a_first_install() {
    let s = Site::start();
    // 2.3.0 upgrades only from >=2.1.0, <2.3.0; nothing is installed
    let b230 = s.bundle("2.3.0", None);
    ok(s.updater().arg("plan").arg(&b230));
    ok(s.updater().arg("apply").arg(&b230));
    assert_eq!(s.installed().as_deref(), Some("2.3.0"));
}

#[test]
fn bundle_from_a_fifo_is_refused_not_hung() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    let fifo = s.path().join("bundle.fifo");
    ok(Command::new("mkfifo").arg(&fifo));
    // no writer at all: stat, not open, so no hang
    let mut c = s.updater();
    c.arg("apply").arg(&fifo);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("apply of a FIFO hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a regular file (a pipe)"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // /dev/stdin fed by a pipe: refused too
    let mut c = s.updater();
    c.args(["apply", "/dev/stdin"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(s.status_json()["installed"].is_null());
    // plan reads the bundle once: from a pipe it works
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(format!("cat '{}' > '{}'", b.display(), fifo.display()))
        .spawn()
        .unwrap();
    let out = run(Command::new("timeout")
        .arg("60")
        .arg(stoa_e2e::harness::bin_dir().join("stoa-updater"))
        .arg("--config")
        .arg(&s.config)
        .args(["plan", "--quiet"])
        .arg(&fifo)
        .env("FAKE_HELM_STATE", &s.helm_state));
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(
        out.status.success(),
        "plan from a pipe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // verify reads it once too
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(format!("cat '{}' > '{}'", b.display(), fifo.display()))
        .spawn()
        .unwrap();
    let out = run(Command::new("timeout")
        .arg("60")
        .arg(stoa_e2e::harness::bin_dir().join("stoa-updater"))
        .arg("verify")
        .arg(&fifo)
        .arg("--trust")
        .arg(s.path().join("trust")));
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(
        out.status.success(),
        "verify from a pipe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn loose_state_dir_is_tightened_and_its_files_are_0600() {
    let s = Site::start();
    fs::create_dir_all(&s.state_dir).unwrap();
    fs::set_permissions(&s.state_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let b = s.bundle("2.0.0", None);
    let out = run(s.updater().arg("apply").arg(&b));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("tightened to 0700"), "{stderr}");
    assert_eq!(mode(&s.state_dir), 0o700);
    for f in ["state.json", "journal.jsonl", "history.jsonl"] {
        assert_eq!(mode(&s.state_dir.join(f)), 0o600, "{f}");
    }
    let snaps: Vec<_> = fs::read_dir(s.state_dir.join("snapshots"))
        .unwrap()
        .flatten()
        .collect();
    assert!(!snaps.is_empty(), "a snapshot was taken");
    for e in snaps {
        assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
    }
    // an existing looser file is tightened on the next run
    let h = s.state_dir.join("history.jsonl");
    fs::set_permissions(&h, fs::Permissions::from_mode(0o644)).unwrap();
    let e = fails(s.updater().arg("apply").arg(&b), 5);
    assert!(e.contains("not newer"), "{e}");
    assert_eq!(mode(&h), 0o600);
}

#[test]
fn symlinked_folder_in_files_dir_is_not_followed() {
    let s = Site::start();
    let outside = s.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let files = s.state_dir.join("files");
    fs::create_dir_all(&files).unwrap();
    fs::set_permissions(&s.state_dir, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&outside, files.join("bin")).unwrap();
    let b = s.bundle("2.0.0", None);
    // install: refused, nothing written through the link
    let e = fails(s.updater().arg("apply").arg(&b), 6);
    assert!(e.contains("is a symlink"), "{e}");
    assert!(
        !outside.join("stoactl").exists(),
        "written through the link"
    );
    // removal (undo of the first install): refused, the outside file stays
    fs::write(outside.join("stoactl"), b"not ours").unwrap();
    let e = fails(s.updater().arg("rollback"), 6);
    assert!(e.contains("is a symlink"), "{e}");
    assert_eq!(fs::read(outside.join("stoactl")).unwrap(), b"not ours");
    // the operator removes the link: the revert finishes
    fs::remove_file(files.join("bin")).unwrap();
    ok(s.updater().arg("rollback"));
    assert!(s.status_json()["pending"].is_null());
    assert_eq!(fs::read(outside.join("stoactl")).unwrap(), b"not ours");
}

/// The last `tool` child the journal recorded.
fn recorded_child(s: &Site, tool: &str) -> Option<u32> {
    let j = fs::read_to_string(s.state_dir.join("journal.jsonl")).ok()?;
    j.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "child" && v["tool"] == tool)
        .find_map(|v| v["pid"].as_u64())
        .map(|p| p as u32)
}

#[test]
fn kill_during_slow_migration_leaves_no_worker() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let mig = migrations(
        &s.path().join("mig-slow"),
        1,
        &[
            (
                "0002_slow.sql",
                "CREATE TABLE slow_marker (x int);\nSELECT pg_sleep(8);\n",
            ),
            ("0002_slow.down.sql", "DROP TABLE slow_marker;\n"),
        ],
    );
    let b210 = s.bundle("2.1.0", Some(&mig));
    ok(s.updater().arg("apply").arg(&b200));
    let mut updater = spawn_quiet(s.updater().arg("apply").arg(&b210));
    let busy = || {
        s.pg.psql(
            "stoa",
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(8)%' AND pid <> pg_backend_pid()",
        ) != "0"
    };
    wait_for(60, "the slow migration to run", busy);
    // the updater speaks the wire protocol itself: no psql child to record
    assert_eq!(recorded_child(&s, "psql"), None, "no psql runs a migration");
    updater.kill().unwrap(); // SIGKILL
    updater.wait().unwrap();
    // the backend notices the closed socket (client_connection_check_interval)
    // and ends the statement long before its 8 s sleep is over
    wait_for(4, "the backend to end the killed migration", || !busy());
    let r = ok(s.updater().args(["rollback", "--json"]));
    assert!(r.contains("\"reverted_interrupted_apply\":true"), "{r}");
    // past the migration's sleep: nothing committed behind our back
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(s.migration_ids(), ["0001"]);
    assert!(!s.tables().contains(&"slow_marker".to_owned()));
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert!(s.status_json()["pending"].is_null());
}

#[test]
fn kill_during_slow_helm_step_leaves_no_worker() {
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    assert_eq!(s.helm_revision("stoa-api"), Some(1));
    let mut updater = spawn_quiet(
        s.updater()
            .arg("apply")
            .arg(&b210)
            .env("FAKE_HELM_SLEEP_MS", "8000"),
    );
    // the journal names the worker: wait until it is the running upgrade
    let mut helm = 0;
    wait_for(60, "the slow helm upgrade", || {
        helm = recorded_child(&s, "helm").unwrap_or(0);
        helm != 0
            && running(helm)
            && fs::read(format!("/proc/{helm}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("upgrade"))
    });
    // and Helm has recorded the new revision, pending while it waits
    wait_for(60, "the pending revision", || {
        s.helm_status("stoa-api")["info"]["status"] == "pending-upgrade"
    });
    updater.kill().unwrap();
    updater.wait().unwrap();
    wait_for(5, "helm to die with the updater", || !running(helm));
    let r = ok(s.updater().args(["rollback", "--json"]));
    assert!(r.contains("\"reverted_interrupted_apply\":true"), "{r}");
    // past the upgrade's sleep: no orphaned upgrade lands. The killed
    // upgrade left revision 2 pending-upgrade (as real Helm does); the
    // revert rolled it back to 1, and nothing came after
    std::thread::sleep(Duration::from_secs(9));
    let h = s.helm_history("stoa-api");
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!(h[1].1, "superseded", "{h:?}");
    assert_eq!(
        (h[2].1.as_str(), h[2].2.as_str()),
        ("deployed", "Rollback to 1"),
        "{h:?}"
    );
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert_eq!(s.migration_ids(), ["0001"]);
}

/// Issue 21 item 3: a lost state folder does not let an older bundle
/// downgrade the site "over nothing installed": plan and apply read what
/// the site itself records (the migration table's `release` values, the
/// Helm releases' charts) and refuse (exit 5, `site-ahead`) naming it;
/// nothing changes. `--allow-downgrade` is the knowing override.
#[test]
fn a_lost_state_folder_does_not_downgrade_the_site_silently() {
    let s = Site::start();
    let b20 = s.bundle("2.0.0", None);
    let b21 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b20));
    ok(s.updater().arg("apply").arg(&b21));
    let rev = s.helm_revision("stoa-api");
    // the admin host is lost: a fresh state folder on the same site
    fs::remove_dir_all(&s.state_dir).unwrap();
    assert_eq!(s.installed(), None);
    for cmd in ["plan", "apply"] {
        let e = fails(s.updater().arg(cmd).arg(&b20), 5);
        assert!(
            e.contains("the site is ahead of stoa-platform 2.0.0"),
            "{e}"
        );
        assert!(
            e.contains("database stoa: migration 0002_") && e.contains("applied by release 2.1.0"),
            "{e}"
        );
        assert!(e.contains("state rebuild"), "{e}");
        assert!(e.contains("helm stoa-system/stoa-api: chart stoa-api-2.1.0 is deployed, newer than the bundle's stoa-api-2.0.0"), "{e}");
        let out = run(s.updater().args([cmd, "--json"]).arg(&b20));
        let doc = json(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(doc["error"]["kind"], "site-ahead", "{doc}");
        assert_eq!(doc["error"]["exit_code"], 5, "{doc}");
    }
    // nothing changed on the site
    assert_eq!(s.migration_ids(), ["0001", "0002"]);
    assert_eq!(s.helm_revision("stoa-api"), rev);
    assert_eq!(s.installed(), None);

    // the procedure for a lost admin host: rebuild from the site and the
    // bundles installed on it, every inference printed
    let out = ok(s.updater().args(["state", "rebuild"]).arg(&b21).arg(&b20));
    for want in [
        "database stoa: 2 migration(s) applied: 0001 (by 2.0.0), 0002 (by 2.1.0)",
        "helm stoa-system/stoa-api: revision 2, chart stoa-api-2.1.0",
        "2.1.0: the site matches it (every migration and chart)",
        "2.1.0: helm stoa-system/stoa-api revision 2 (before it: 1)",
        "state rebuilt: 2.1.0 installed; retained releases 2.0.0, 2.1.0",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
    // a second rebuild needs --force, and keeps the file it replaces
    let e = fails(s.updater().args(["state", "rebuild"]).arg(&b21), 5);
    assert!(e.contains("--force"), "{e}");
    let out = ok(s
        .updater()
        .args(["state", "rebuild", "--force"])
        .arg(&b21)
        .arg(&b20));
    assert!(out.contains("the previous state file is kept as"), "{out}");
    // the site works from the rebuilt state: the older bundle is refused
    // as a downgrade, and rollback goes back to 2.0.0 with its down steps
    let e = fails(s.updater().arg("plan").arg(&b20), 5);
    assert!(e.contains("not newer"), "{e}");
    let out = ok(s.updater().arg("rollback"));
    assert!(out.contains("rolled back from 2.1.0 to 2.0.0"), "{out}");
    assert_eq!(s.migration_ids(), ["0001"]);
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
}
