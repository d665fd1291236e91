//! An operator's day (issue 12): what docs/OPERATIONS.md promises the site
//! operator, checked against a real docker-registry, a real PostgreSQL and
//! the Helm stand-in. A running apply is told from an interrupted one; the
//! hints name the command that works, with the `--config` in use; snapshots
//! of failed and rolled-back applies do not pile up; config paths are
//! checked at load; messages are one line, JSON under `--json`; the bundler
//! refuses what it must and records local sources relative to the release
//! manifest.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use stoa_e2e::harness::{self, bundler, copy_dir, fails, json, ok, run, updater};
use stoa_e2e::release_fixture::write_release;
use stoa_e2e::site::Site;

fn snapshot_names(s: &Site) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(s.state_dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn status_and_plan_tell_a_running_apply_from_an_interrupted_one() {
    let mut s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    let (code, text) = s.status_with_code(&[]);
    assert_eq!(code, 0, "idle: {text}");
    assert!(text.contains("no operation in progress"), "{text}");

    s.env.push(("FAKE_HELM_SLEEP_MS".into(), "6000".into()));
    let marker = "upgrade --install stoa-api";
    let before = s.helm_calls(marker);
    let mut child = s
        .updater()
        .arg("apply")
        .arg(&b210)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    s.wait_for_helm_call(marker, before);
    let pid = child.id();

    // running: the lock is held, by this pid, at this step
    let (code, out) = s.status_with_code(&["--json"]);
    assert_eq!(code, 4, "status exits 4 while an operation runs: {out}");
    let st = json(&out);
    assert_eq!(st["operation"], "running", "{st}");
    assert_eq!(st["running"]["pid"], pid, "{st}");
    assert_eq!(st["running"]["op"], "apply", "{st}");
    assert_eq!(st["running"]["step"], "helm:stoa-api", "{st}");
    assert!(st["running"]["since"].is_string(), "{st}");
    let (code, text) = s.status_with_code(&[]);
    assert_eq!(code, 4);
    assert!(
        text.contains(&format!("RUNNING: apply to 2.1.0 by pid {pid} since "))
            && text.contains("at step helm:stoa-api"),
        "{text}"
    );
    assert!(
        !text.contains("INTERRUPTED") && !text.contains("to resume"),
        "{text}"
    );
    let e = fails(s.updater().arg("plan").arg(&b210), 4);
    assert!(
        e.contains(&format!("apply (pid {pid}, since "))
            && e.contains("is running, at step helm:stoa-api"),
        "{e}"
    );
    assert!(!e.contains("resumes"), "{e}");

    // killed: the lock is free, the operation pending = interrupted
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, out) = s.status_with_code(&["--json"]);
    assert_eq!(code, 8, "status exits 8 when an operation was interrupted");
    let st = json(&out);
    assert_eq!(st["operation"], "interrupted", "{st}");
    assert!(st["running"].is_null(), "{st}");
    assert_eq!(st["pending"]["stopped_at_step"], "helm:stoa-api", "{st}");
    let text = s.status_text();
    assert!(
        text.contains("INTERRUPTED: Apply from 2.0.0 to 2.1.0") && !text.contains("RUNNING"),
        "{text}"
    );
    let p = ok(s.updater().arg("plan").arg(&b210));
    assert!(p.contains("(resumes the interrupted apply)"), "{p}");

    // the orphaned stand-in finishes; then resume, and the site is idle
    std::thread::sleep(std::time::Duration::from_millis(6500));
    s.env.clear();
    ok(s.updater().arg("apply").arg(&b210));
    let (code, _) = s.status_with_code(&[]);
    assert_eq!(code, 0);
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
}

#[test]
fn hints_say_what_works_and_carry_the_config() {
    let mut s = Site::start();
    let cfg = s.config.display().to_string();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    let b230 = s.bundle("2.3.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    ok(s.updater().arg("apply").arg(&b210));

    // an interrupted rollback: only `rollback` finishes it
    s.crash_after(&["rollback".as_ref()], "rollback:helm:stoa-api");
    let want = format!(
        "stoa-updater: error: refused: an interrupted rollback to 2.0.0 is pending (stopped at rollback:helm:stoa-api): finish it first with `stoa-updater --config {cfg} rollback`"
    );
    let e = fails(s.updater().arg("apply").arg(&b230), 5);
    assert_eq!(e.trim(), want);
    let e = fails(s.updater().arg("plan").arg(&b230), 5);
    assert_eq!(e.trim(), want);
    let (code, text) = s.status_with_code(&[]);
    assert_eq!(code, 8);
    assert!(
        text.contains(&format!(
            "to finish it: stoa-updater --config {cfg} rollback\n"
        )),
        "{text}"
    );
    assert!(!text.contains("apply <the same bundle>"), "{text}");
    ok(s.updater().arg("rollback"));
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));

    // an interrupted apply: resume with the same bundle, or revert; the
    // hint is the command to paste, with the bundle's path as it was given
    // (issue 21 item 10), and status names the bundle's manifest digest
    let b = b210.display().to_string();
    s.crash_after(&["apply".as_ref(), b210.as_os_str()], "migrate:stoa");
    let e = fails(s.updater().arg("apply").arg(&b230), 5);
    assert_eq!(
        e.trim(),
        format!(
            "stoa-updater: error: refused: an interrupted apply to 2.1.0 is pending (stopped at migrate:stoa): to resume it, apply that same bundle (`stoa-updater --config {cfg} apply {b}`); to revert it, `stoa-updater --config {cfg} rollback`"
        )
    );
    let text = s.status_text();
    assert!(
        text.contains(&format!(
            "to resume: stoa-updater --config {cfg} apply {b}; to revert: stoa-updater --config {cfg} rollback\n"
        )),
        "{text}"
    );
    assert!(text.contains("bundle: manifest sha256:"), "{text}");
    let doc = s.status_json();
    assert!(
        doc["pending"]["manifest_sha256"]
            .as_str()
            .is_some_and(|d| d.len() == 64),
        "{doc}"
    );
    assert_eq!(doc["pending"]["bundle"][0], b.as_str(), "{doc}");
    ok(s.updater().arg("rollback"));

    // a failed apply left for inspection
    s.env
        .push(("FAKE_HELM_FAIL_RELEASE".into(), "stoa-gateway".into()));
    let e = fails(
        s.updater()
            .arg("apply")
            .arg(&b210)
            .arg("--no-auto-rollback"),
        6,
    );
    assert!(
        e.contains(&format!(
            "left for inspection (--no-auto-rollback): to resume, `stoa-updater --config {cfg} apply {b}`; to revert, `stoa-updater --config {cfg} rollback`"
        )),
        "{e}"
    );
    s.env.clear();
    ok(s.updater().arg("rollback"));
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
}

#[test]
fn snapshots_of_failed_and_rolled_back_applies_are_pruned_needed_ones_stay() {
    let mut s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    let b230 = s.bundle("2.3.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    ok(s.updater().arg("apply").arg(&b210));
    let two = snapshot_names(&s);
    assert_eq!(two.len(), 2, "{two:?}");
    let a = two
        .iter()
        .find(|n| n.starts_with("2.0.0-"))
        .unwrap()
        .clone();
    let b = two
        .iter()
        .find(|n| n.starts_with("2.1.0-"))
        .unwrap()
        .clone();

    // a failed apply (rolled back automatically) leaves its dump for now
    s.env
        .push(("FAKE_HELM_FAIL_RELEASE".into(), "stoa-gateway".into()));
    fails(s.updater().arg("apply").arg(&b230), 6);
    s.env.clear();
    let three = snapshot_names(&s);
    assert_eq!(three.len(), 3, "{three:?}");
    let c = three
        .iter()
        .find(|n| n.starts_with("2.3.0-"))
        .unwrap()
        .clone();
    let st = s.status_json();
    let sizes: u64 = three
        .iter()
        .map(|n| {
            fs::metadata(s.state_dir.join("snapshots").join(n))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(st["snapshots"]["count"], 3, "{st}");
    assert_eq!(st["snapshots"]["bytes"], sizes, "{st}");
    let removable: Vec<String> = st["snapshots"]["removable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(removable, std::slice::from_ref(&c), "{st}");
    let text = s.status_text();
    assert!(
        text.contains("snapshots: 3 file(s), ")
            && text.contains("(1 no longer needed, removed by the next prune)"),
        "{text}"
    );

    // a rollback prunes: 2.1.0's dump (no longer retained) and the failed
    // apply's go; the retained 2.0.0's stays
    ok(s.updater().arg("rollback"));
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert_eq!(snapshot_names(&s), std::slice::from_ref(&a));
    let st = s.status_json();
    assert_eq!(st["snapshots"]["count"], 1, "{st}");
    assert_eq!(st["snapshots"]["removable"], serde_json::json!([]), "{st}");

    // applying 2.1.0 again takes a new dump; both needed ones stay
    ok(s.updater().arg("apply").arg(&b210));
    let now = snapshot_names(&s);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(
        now.contains(&a) && !now.contains(&b) && !now.contains(&c),
        "{now:?}"
    );
    // each kept dump is recorded by a retained release
    let st = s.status_json();
    for r in st["releases"].as_array().unwrap() {
        for f in r["snapshots"].as_object().unwrap().values() {
            assert!(Path::new(f.as_str().unwrap()).is_file(), "{st}");
        }
    }
}

#[test]
fn config_paths_are_checked_at_load_and_plan_shows_values_files() {
    let s = Site::start();
    let b = s.bundle("2.0.0", None);
    let values = s.path().join("values");
    s.write_config(&format!("values_dir = \"{}\"\n", values.display()));
    // a values_dir that does not exist is a config error, not silently ignored
    let e = fails(s.updater().arg("plan").arg(&b), 2);
    assert!(
        e.contains(&format!(
            "[helm] values_dir {}: no such file or folder",
            values.display()
        )),
        "{e}"
    );
    fails(s.updater().arg("apply").arg(&b), 2);

    fs::create_dir(&values).unwrap();
    let api_values = values.join("stoa-api.yaml");
    fs::write(&api_values, "replicas: 3\n").unwrap();
    let out = ok(s.updater().arg("plan").arg(&b));
    let line = |rel: &str| {
        out.lines()
            .find(|l| l.contains(&format!("stoa-system/{rel} ")))
            .unwrap_or_else(|| panic!("no {rel} in {out}"))
            .to_owned()
    };
    assert!(
        line("stoa-api").ends_with(&format!("values: {}", api_values.display())),
        "{out}"
    );
    assert!(
        line("stoa-gateway").ends_with("values: none (the chart's defaults)"),
        "{out}"
    );
    let p = json(&ok(s.updater().arg("plan").arg(&b).arg("--json")));
    let charts = p["charts"].as_array().unwrap();
    let api = charts.iter().find(|c| c["release"] == "stoa-api").unwrap();
    assert_eq!(api["values_files"], serde_json::json!([api_values]));
    ok(s.updater().arg("apply").arg(&b));
    let calls = fs::read_to_string(s.helm_state.join("calls.log")).unwrap();
    assert!(
        calls.contains(&format!("-f {}", api_values.display())),
        "{calls}"
    );

    // a missing ca_cert: a config error at load (2), not a failed apply (6)
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace(
            "prefix = \"site\"\n",
            "prefix = \"site\"\nca_cert = \"/nonexistent/ca.pem\"\n",
        ),
    )
    .unwrap();
    let e = fails(s.updater().arg("apply").arg(s.bundle("2.1.0", None)), 2);
    assert!(
        e.contains("[registry] ca_cert /nonexistent/ca.pem: no such file or folder"),
        "{e}"
    );
    fs::write(&s.config, &text).unwrap();
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert!(s.status_json()["pending"].is_null());
}

#[test]
fn history_names_pruned_releases_marks_resumed_applies_and_fails_closed() {
    let s = Site::start();
    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace("keep_releases = 3", "keep_releases = 1"),
    )
    .unwrap();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b200));
    s.crash_after(&["apply".as_ref(), b210.as_os_str()], "migrate:stoa");
    ok(s.updater().arg("apply").arg(&b210));
    let h = ok(s.updater().arg("history"));
    let lines: Vec<&str> = h.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("apply    2.0.0 -> 2.1.0  applied") && l.ends_with("[resumed]")),
        "{h}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("  prune    releases 2.0.0  pruned")),
        "{h}"
    );
    assert!(!h.contains("- -> -"), "{h}");
    let hj = json(&ok(s.updater().args(["history", "--json"])));
    let applied: Vec<_> = hj["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["op"] == "apply" && e["outcome"] == "applied")
        .collect();
    assert_eq!(applied[0]["resumed"], false);
    assert_eq!(applied[1]["resumed"], true);

    // a corrupt state: history fails closed (3) like every other command
    fs::write(s.state_dir.join("state.json"), b"{\"format\": 1, \"inst").unwrap();
    let e = fails(s.updater().arg("history"), 3);
    assert!(e.contains("state"), "{e}");
    fails(s.updater().args(["history", "--json"]), 3);
}

#[test]
fn site_config_and_usage_errors_are_one_clean_line_and_json_under_json() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir(t.path().join("trust")).unwrap();
    let cfg = t.path().join("updater.toml");
    fs::write(
        &cfg,
        "state_dir = \"state\"\ntrust = \"trust\"\nkeep_releases = 3\nkeep_release = 2\n",
    )
    .unwrap();
    let e = fails(updater().arg("--config").arg(&cfg).arg("status"), 2);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with(&format!(
            "stoa-updater: error: site config {}: line 4: unknown field `keep_release`, expected one of `state_dir`, `trust`",
            cfg.display()
        )),
        "{e}"
    );
    assert!(!e.contains('|'), "{e}");
    let out = run(updater()
        .arg("--config")
        .arg(&cfg)
        .args(["status", "--json"]));
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(doc["error"]["kind"], "config");
    assert_eq!(doc["error"]["exit_code"], 2);

    // clap's usage errors: JSON under --json, exit 2, one line on stderr
    for (prog, args) in [
        (updater(), vec!["status", "--json", "--bogus"]),
        (updater(), vec!["plan", "--json"]),
        (bundler(), vec!["build", "--json", "--bogus"]),
    ] {
        let mut c = prog;
        let out = run(c.args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let doc = json(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(doc["ok"], false, "{args:?}");
        assert_eq!(doc["error"]["kind"], "usage", "{args:?}");
        assert_eq!(doc["error"]["exit_code"], 2, "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    }
    // without --json, clap's own message
    let e = fails(updater().args(["status", "--bogus"]), 2);
    assert!(e.contains("--bogus"), "{e}");

    // --config is neither offered nor accepted where it is ignored
    for sc in ["inspect", "extract"] {
        let help = ok(updater().args([sc, "--help"]));
        assert!(!help.contains("--config"), "{sc}: {help}");
    }
    assert!(ok(updater().arg("--help")).contains("--config"));
    let e = fails(
        updater()
            .arg("--config")
            .arg(&cfg)
            .args(["inspect", "b.tar.zst", "--trust", "t.pub"]),
        2,
    );
    assert!(e.contains("--config is not used by inspect"), "{e}");
    // verify reads it without --trust (the root in force), and refuses both
    let e = fails(
        updater()
            .arg("--config")
            .arg(&cfg)
            .args(["verify", "b.tar.zst", "--trust", "t.pub"]),
        2,
    );
    assert!(e.contains("not both"), "{e}");
}

/// Builds `manifest` to `out` with a fixed time (reproducible).
/// `build --quiet` at a fixed `SOURCE_DATE_EPOCH`.
fn build(manifest: &Path, key: &Path, out: &Path) -> Command {
    let mut c = harness::bundler_build(manifest, key, out);
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    c
}

#[test]
fn bundler_refuses_overwrite_bad_migration_names_and_bad_charts_with_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(bundler().args(["keygen", "--out"]).arg(d.join("k")));
    let key = d.join("k.key");
    let rel = write_release(&d.join("src"), "2.0.0");
    let out = d.join("b.tar.zst");
    ok(&mut build(&rel, &key, &out));
    let before = fs::read(&out).unwrap();

    // --out exists: refused before any work, unless --force
    let e = fails(&mut build(&rel, &key, &out), 2);
    assert!(
        e.contains(&format!(
            "build --out {}: the file exists; pass --force",
            out.display()
        )),
        "{e}"
    );
    assert_eq!(fs::read(&out).unwrap(), before);
    ok(build(&rel, &key, &out).arg("--force"));

    // 2_x.sql is not NNNN_name.sql: a usage/input error (2)
    let mig = d.join("src/migrations");
    fs::write(mig.join("2_x.sql"), "SELECT 1;\n").unwrap();
    let e = fails(&mut build(&rel, &key, &d.join("m.tar.zst")), 2);
    assert!(e.contains("2_x.sql") && e.contains("NNNN_name.sql"), "{e}");
    fs::remove_file(mig.join("2_x.sql")).unwrap();
    // a migrations folder that is not there: 2
    let text = fs::read_to_string(&rel).unwrap();
    fs::write(
        &rel,
        text.replace("dir = \"migrations\"", "dir = \"no-such\""),
    )
    .unwrap();
    let e = fails(&mut build(&rel, &key, &d.join("m.tar.zst")), 2);
    assert!(e.contains("no-such"), "{e}");
    fs::write(&rel, &text).unwrap();
    // a broken Chart.yaml: 2
    fs::write(
        d.join("src/charts/stoa-api/Chart.yaml"),
        "name: [unclosed\n",
    )
    .unwrap();
    let e = fails(&mut build(&rel, &key, &d.join("c.tar.zst")), 2);
    assert!(e.contains("Chart.yaml") || e.contains("stoa-api"), "{e}");
    assert!(!d.join("c.tar.zst").exists() && !d.join("m.tar.zst").exists());
}

#[test]
fn absolute_local_sources_are_recorded_relative_so_two_checkouts_give_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(bundler().args(["keygen", "--out"]).arg(d.join("k")));
    let key = d.join("k.key");
    let a = d.join("checkout-a");
    let rel_a = write_release(&a, "2.0.0");
    let b = d.join("elsewhere/checkout-b");
    fs::create_dir_all(b.parent().unwrap()).unwrap();
    copy_dir(&a, &b);
    let absolute = |dir: &Path| -> PathBuf {
        let p = dir.join("release.toml");
        let text = fs::read_to_string(&p).unwrap();
        let abs = text.replace("\"oci:images:", &format!("\"oci:{}/images:", dir.display()));
        assert_ne!(abs, text);
        let q = dir.join("release-abs.toml");
        fs::write(&q, abs).unwrap();
        q
    };
    let (out_a, out_b, out_rel) = (
        d.join("a.tar.zst"),
        d.join("b.tar.zst"),
        d.join("r.tar.zst"),
    );
    ok(&mut build(&absolute(&a), &key, &out_a));
    ok(&mut build(&absolute(&b), &key, &out_b));
    ok(&mut build(&rel_a, &key, &out_rel));
    // cmp(1): the same bytes from both checkouts, and as from relative paths
    for other in [&out_b, &out_rel] {
        let st = Command::new("cmp").arg(&out_a).arg(other).status().unwrap();
        assert!(
            st.success(),
            "{} differs from {}",
            out_a.display(),
            other.display()
        );
    }
    // the signed manifest, read with zstd and tar
    let m = json(&ok(Command::new("sh").arg("-c").arg(format!(
        "zstd -dc '{}' | tar -xOf - manifest.json",
        out_a.display()
    ))));
    let sources: Vec<&str> = m["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["source"].as_str().unwrap())
        .collect();
    assert!(!sources.is_empty());
    for s in sources {
        assert!(s.starts_with("oci:images:"), "{s}");
        assert!(
            !s.contains(&d.display().to_string()),
            "leaks the build host: {s}"
        );
    }
}

#[test]
fn a_flipped_byte_inside_a_compressed_frame_names_the_entry() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(bundler().args(["keygen", "--out"]).arg(d.join("k")));
    let rel = write_release(&d.join("src"), "2.0.0");
    // a large, compressible file: most of the bundle is its compressed frame
    let text: String = (0..400_000)
        .map(|i| format!("line {i} of stoactl\n"))
        .collect();
    fs::write(d.join("src/tools/stoactl"), text).unwrap();
    let out = d.join("b.tar.zst");
    ok(&mut build(&rel, &d.join("k.key"), &out));
    let bytes = fs::read(&out).unwrap();
    // flip a byte at several places in the bundle's middle; each one that
    // the decompressor catches must name the entry being read
    let mut named_the_file = 0;
    for tenth in 3..8 {
        let at = bytes.len() * tenth / 10;
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let tampered = d.join(format!("flipped-{tenth}.tar.zst"));
        fs::write(&tampered, &bad).unwrap();
        let out = run(updater()
            .arg("verify")
            .arg(&tampered)
            .arg("--trust")
            .arg(d.join("k.pub")));
        if out.status.success() {
            // documented (FORMAT.md): a flip in zstd framing that decodes to
            // the very same tar stream changes no signed byte and is accepted
            let decoded = |f: &Path| run(Command::new("zstd").arg("-dc").arg(f)).stdout;
            assert!(
                decoded(&tampered) == decoded(&d.join("b.tar.zst")),
                "flip at {at} was accepted but changes the decoded stream"
            );
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "flip at {at}: {:?}", out.status);
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!e.contains("panicked"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.contains("\"files/bin/stoactl\""), "flip at {at}: {e}");
        if e.contains("cannot decompress") || e.contains("stream ends early") {
            assert!(
                e.contains("while reading entry \"files/bin/stoactl\""),
                "{e}"
            );
            named_the_file += 1;
        }
    }
    assert!(named_the_file > 0, "no flip hit a compressed block");
}

/// Runs `cmd` with stdout the write end of a pipe whose read end is already
/// closed (`| head` after head exited): exit 141, no panic, no backtrace.
fn exits_141_on_a_closed_stdout(what: &str, cmd: &mut Command) {
    // the write end of a pipe whose only reader (a `true` that has exited)
    // is gone: std::io::pipe() is newer than the MSRV
    let mut gone = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let writer = gone.stdin.take().unwrap();
    assert!(gone.wait().unwrap().success());
    let out = cmd
        .stdout(writer)
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(141),
        "{what}: {:?} {err}",
        out.status
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(!err.contains("backtrace"), "{what}: {err}");
}

/// Issue 21 item 15: `… --json | head` where head has gone: every command
/// of both programs exits 141 quietly (README exit codes).
#[test]
fn a_closed_stdout_ends_every_command_quietly_with_exit_141() {
    let s = Site::start();
    let b = s.bundle("2.1.0", None);
    let release = fs::read_dir(s.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("release-2.1.0"))
        })
        .unwrap();
    exits_141_on_a_closed_stdout(
        "stoa-bundler inspect",
        bundler().arg("inspect").arg(&b).arg("--json"),
    );
    exits_141_on_a_closed_stdout(
        "stoa-bundler inspect (text)",
        bundler().arg("inspect").arg(&b),
    );
    exits_141_on_a_closed_stdout(
        "stoa-updater inspect",
        updater().arg("inspect").arg(&b).arg("--json"),
    );
    exits_141_on_a_closed_stdout(
        "stoa-bundler images",
        bundler().arg("images").arg(&release).arg("--json"),
    );
    exits_141_on_a_closed_stdout(
        "stoa-bundler images (text)",
        bundler().arg("images").arg(&release),
    );
    exits_141_on_a_closed_stdout(
        "stoa-updater plan",
        s.updater().arg("plan").arg(&b).arg("--json"),
    );
    exits_141_on_a_closed_stdout("stoa-updater status", s.updater().arg("status"));
    // nothing was changed by the plan that could not print
    assert_eq!(s.installed(), None);
}

/// Issue 21 item 22: both programs print completion scripts that their
/// shell loads, man pages that render, a `--version` naming the bundle
/// format versions read; the updater's `-v` shows every child command and
/// its time and never a password (database URL, registry).
#[test]
fn completions_man_pages_version_and_verbose_children_without_secrets() {
    let t = tempfile::tempdir().unwrap();
    for (name, prog) in [
        ("stoa-bundler", bundler as fn() -> Command),
        ("stoa-updater", updater),
    ] {
        let bash = ok(prog().args(["completions", "bash"]));
        let f = t.path().join(format!("{name}.bash"));
        fs::write(&f, &bash).unwrap();
        let loaded = ok(Command::new("bash")
            .arg("-c")
            .arg(format!("source {} && complete -p {name}", f.display())));
        assert!(loaded.contains(name), "{name}: {loaded}");
        let zsh = ok(prog().args(["completions", "zsh"]));
        assert!(
            zsh.starts_with(&format!("#compdef {name}")),
            "{name}: {zsh}"
        );
        let fish = ok(prog().args(["completions", "fish"]));
        assert!(fish.contains(&format!("complete -c {name}")), "{name}");
        let e = fails(prog().args(["completions", "tcsh"]), 2);
        assert!(e.contains("tcsh"), "{e}");

        let page = ok(prog().arg("man"));
        assert!(page.contains(&format!(".TH {name} 1")), "{name}: {page}");
        let pf = t.path().join(format!("{name}.1"));
        fs::write(&pf, &page).unwrap();
        let shown = ok(Command::new("man")
            .arg("-l")
            .arg(&pf)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"));
        assert!(shown.contains("verify"), "{name}: {shown}");
        let dir = t.path().join(format!("{name}-man"));
        fs::create_dir(&dir).unwrap();
        ok(prog().arg("man").arg("--out").arg(&dir));
        assert!(dir.join(format!("{name}-verify.1")).is_file(), "{name}");

        let v = ok(prog().arg("--version"));
        assert!(
            v.contains("format_version 1 (full) and 2 (delta)"),
            "{name}: {v}"
        );
    }
    assert!(t
        .path()
        .join("stoa-updater-man/stoa-updater-apply.1")
        .is_file());

    let s = Site::start_with(stoa_e2e::harness::RegistryOptions {
        tls: false,
        auth: Some(("robot".into(), "Reg-S3cret-9".into())),
    });
    // the database URL carries a password too (PostgreSQL here trusts
    // loopback, so it is not checked, but the updater must hide it)
    let cfg = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        cfg.replace("postgres://postgres@", "postgres://postgres:Db-S3cret-7@"),
    )
    .unwrap();
    let b = s.bundle("2.1.0", None);
    let out = run(s.updater().arg("apply").arg(&b).arg("-v"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // migrations go over the wire protocol: no psql child reads them
    assert!(!err.contains("stoa-updater: run psql"), "{err}");
    assert!(err.contains("stoa-updater: run helm [at "), "{err}");
    assert!(err.contains("stoa-updater: helm ran "), "{err}");
    assert!(!err.contains("Db-S3cret-7"), "{err}");
    assert!(!err.contains("Reg-S3cret-9"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("S3cret"));
    // without -v, no child is shown
    let out = run(s.updater().arg("plan").arg(&b));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("stoa-updater: run "));
}

/// Issue 21 item 8: `--config` after the subcommand, `STOA_UPDATER_CONFIG`,
/// and JSON usage errors that name the missing flags.
#[test]
fn config_after_the_subcommand_and_from_the_environment() {
    let s = Site::start();
    let b = s.bundle("2.1.0", None);
    ok(s.updater().arg("apply").arg(&b));
    let st = json(&ok(updater()
        .arg("status")
        .arg("--config")
        .arg(&s.config)
        .arg("--json")));
    assert_eq!(st["installed"], "2.1.0", "{st}");
    let h = ok(updater()
        .arg("history")
        .arg(format!("--config={}", s.config.display())));
    assert!(h.contains("2.1.0"), "{h}");
    let st = json(&ok(updater()
        .args(["status", "--json"])
        .env("STOA_UPDATER_CONFIG", &s.config)));
    assert_eq!(st["installed"], "2.1.0", "{st}");
    // --config wins over the environment
    let e = fails(
        updater()
            .args(["status", "--config", "/nonexistent/updater.toml"])
            .env("STOA_UPDATER_CONFIG", &s.config),
        2,
    );
    assert!(e.contains("/nonexistent/updater.toml"), "{e}");
    // the environment is a default, not a --config given to verify
    let v = ok(updater()
        .arg("verify")
        .arg(&b)
        .arg("--trust")
        .arg(s.path().join("release.pub"))
        .env("STOA_UPDATER_CONFIG", &s.config));
    assert!(v.contains("OK") || v.contains("verified"), "{v}");
    // --trust and --config together are refused (which one?), after too
    let e = fails(
        updater()
            .arg("verify")
            .arg(&b)
            .args(["--trust", "t.pub", "--config"])
            .arg(&s.config),
        2,
    );
    assert!(e.contains("--config"), "{e}");
    // usage errors under --json name every missing flag
    for mut c in [updater(), bundler()] {
        let out = run(c.args(["verify", "b.tar.zst", "--json"]));
        assert_eq!(out.status.code(), Some(2));
        let doc = json(&String::from_utf8_lossy(&out.stdout));
        let msg = doc["error"]["message"].as_str().unwrap();
        assert!(msg.contains("--trust <PATH>"), "{msg}");
    }
}

/// Issue 21 item 19: `rollback --dry-run` says what the rollback would undo
/// (Helm revisions, down steps, snapshot, files) in text and `--json`, and
/// changes nothing: the state folder is byte-for-byte the same, and the
/// real rollback then undoes exactly what it said.
#[test]
fn rollback_dry_run_shows_what_it_would_undo_and_changes_nothing() {
    let s = Site::start();
    let b210 = s.bundle("2.1.0", None);
    let b230 = s.bundle("2.3.0", None);
    ok(s.updater().arg("apply").arg(&b210));
    ok(s.updater().arg("apply").arg(&b230));
    let before = stoa_e2e::delta_fixture::state_snapshot(&s.state_dir);
    let tables = s.tables();
    let p = json(&ok(s.updater().args(["rollback", "--dry-run", "--json"])));
    let text = ok(s.updater().args(["rollback", "--dry-run"]));
    assert_eq!(
        stoa_e2e::delta_fixture::state_snapshot(&s.state_dir),
        before
    );
    assert_eq!(s.tables(), tables);
    assert_eq!(s.installed().as_deref(), Some("2.3.0"));
    let r = &p["rollback"];
    assert_eq!(p["dry_run"], true, "{p}");
    assert_eq!(r["from"], "2.3.0", "{p}");
    assert_eq!(r["to"], "2.1.0", "{p}");
    assert_eq!(r["releases_undone"], serde_json::json!(["2.3.0"]), "{p}");
    assert!(!r["helm"].as_array().unwrap().is_empty(), "{p}");
    assert!(
        r["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "bin/stoactl"),
        "{p}"
    );
    assert!(
        text.contains("dry run: would roll back from 2.3.0 to 2.1.0"),
        "{text}"
    );
    assert!(text.contains("helm "), "{text}");
    // the real rollback does what the dry run said
    let done = json(&ok(s.updater().args([
        "rollback",
        "--json",
        "--restore-snapshot",
    ])));
    let undone = &done["rollback"]["migrations_undone"];
    let said = &r["down_steps"];
    assert!(
        said.as_object()
            .unwrap()
            .values()
            .any(|v| !v.as_array().unwrap().is_empty()),
        "{p}"
    );
    for (db, ids) in said.as_object().unwrap() {
        assert_eq!(&undone[db], ids, "dry run {said}, rollback {undone}");
    }
    assert_eq!(s.installed().as_deref(), Some("2.1.0"));
}

/// Issue 21 item 20 (first step): `prune --dry-run` lists what no retained
/// release needs — a staged folder of a release no longer kept, a store
/// blob nothing uses, a snapshot no release records, the post-render
/// folders — in text and `--json`, and changes nothing; `prune` removes
/// exactly those, and the installed release stays intact (status, its
/// staged folder and blobs).
#[test]
fn prune_dry_run_lists_and_prune_removes_what_no_kept_release_needs() {
    let s = Site::start();
    ok(s.updater().arg("apply").arg(s.bundle("2.0.0", None)));
    let sd = &s.state_dir;
    let stale = sd.join("releases/9.9.9");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("manifest.json"), "{}").unwrap();
    let orphan = sd.join("store/sha256").join("ab".repeat(32));
    fs::write(&orphan, b"orphan blob").unwrap();
    fs::create_dir_all(sd.join("snapshots")).unwrap();
    let snap = sd.join("snapshots/stale.dump");
    fs::write(&snap, b"old snapshot").unwrap();
    let post = sd.join("post-render");
    assert!(post.is_dir(), "apply made post-render folders");
    let kept_blobs = fs::read_dir(sd.join("store/sha256")).unwrap().count() - 1;

    let doc = json(&ok(s.updater().args(["prune", "--dry-run", "--json"])));
    let p = &doc["prune"];
    assert_eq!(p["dry_run"], true, "{doc}");
    assert_eq!(p["releases"], serde_json::json!([]), "{doc}");
    assert_eq!(p["staged"], serde_json::json!([stale]), "{doc}");
    assert_eq!(p["store_blobs"], 1, "{doc}");
    assert_eq!(p["store_bytes"], 11, "{doc}");
    assert_eq!(p["snapshots"], serde_json::json!([snap]), "{doc}");
    assert!(!p["post_render"].as_array().unwrap().is_empty(), "{doc}");
    let text = ok(s.updater().args(["prune", "--dry-run"]));
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert!(
        text.contains(&format!("staged folders to remove: {}", stale.display())),
        "{text}"
    );
    assert!(text.contains("store blobs to remove: 1 (11 B)"), "{text}");
    assert!(stale.exists() && orphan.exists() && snap.exists() && post.is_dir());

    let text = ok(s.updater().arg("prune"));
    assert!(text.contains("store blobs removed: 1 (11 B)"), "{text}");
    assert!(!stale.exists() && !orphan.exists() && !snap.exists());
    assert_eq!(fs::read_dir(&post).unwrap().count(), 0);
    assert_eq!(
        fs::read_dir(sd.join("store/sha256")).unwrap().count(),
        kept_blobs
    );
    assert!(sd.join("releases/2.0.0").is_dir());
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    // nothing left: a second prune removes nothing
    let doc = json(&ok(s.updater().args(["prune", "--json"])));
    assert_eq!(doc["prune"]["store_blobs"], 0, "{doc}");
    assert_eq!(doc["prune"]["staged"], serde_json::json!([]), "{doc}");
    // every prune is audited
    let audit = json(&ok(s.updater().args(["history", "--audit", "--json"])));
    let pruned = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.to_string().contains("\"prune\""))
        .count();
    assert!(pruned >= 4, "{audit}");
}

/// Issue 21 item 9: with stderr piped, apply writes one line as each phase
/// begins (verify+stage, push-images with its size, migrate, each Helm
/// release, files) and as it ends, as it goes: the line of a slow Helm
/// upgrade arrives while that upgrade still runs, not at the end. Under
/// `--quiet` there is none.
#[test]
fn piped_apply_prints_each_step_as_it_begins() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let s = Site::start();
    let b200 = s.bundle("2.0.0", None);
    let b210 = s.bundle("2.1.0", None);
    let mut child = s
        .updater()
        .arg("apply")
        .arg(&b200)
        .env("FAKE_HELM_SLEEP_MS", "2500")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let stderr = child.stderr.take().unwrap();
    let lines: Vec<(Duration, String)> = std::io::BufReader::new(stderr)
        .lines()
        .map(|l| (t0.elapsed(), l.unwrap()))
        .collect();
    assert!(child.wait().unwrap().success(), "{lines:?}");
    let end = t0.elapsed();
    let at = |begin: &str| {
        lines
            .iter()
            .find(|(_, l)| {
                l.starts_with(&format!("stoa-updater: apply: {begin}")) && l.ends_with("...")
            })
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no line for {begin}: {lines:?}"))
    };
    for phase in [
        "verify+stage",
        "push-images (",
        "migrate:stoa",
        "helm:stoa-api",
        "files",
    ] {
        at(phase);
    }
    // three slow upgrades follow the first one's line: it came as it began
    assert!(
        end - at("helm:stoa-api") >= Duration::from_secs(5),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|(_, l)| l.starts_with("stoa-updater: apply: helm:stoa-api done in ")),
        "{lines:?}"
    );
    // --quiet: no progress at all
    let out = run(s.updater().arg("apply").arg(&b210).arg("--quiet"));
    assert!(out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!e.contains(harness::PROGRESS_PREFIX), "{e}");
}
