//! Issue 11: signed trust roots, revocation by rotation, the clock floor and
//! the audit log, driven through both programs on a files-only site (no
//! registry, database or Helm needed).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use stoa_e2e::harness::{bundler, fails, ok, updater};
use stoa_e2e::release::Release;
use stoa_e2e::root_fixture::{self, RootFixture};

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let s = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        for k in ["r1", "r2", "k1", "k2"] {
            ok(bundler().args(["keygen", "--out"]).arg(s.p(k)));
        }
        fs::create_dir_all(s.p("folder")).unwrap();
        fs::copy(s.p("k1.pub"), s.p("folder/k1.pub")).unwrap();
        s
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A site config trusting `trust`; a database URL with a password that
    /// must never reach the audit log.
    fn config(&self, trust: &Path) -> PathBuf {
        let c = self.p("updater.toml");
        fs::write(
            &c,
            format!(
                "state_dir = \"{}\"\ntrust = \"{}\"\n\n[databases.other]\nurl = \"postgres://stoa:s3cret-pw@127.0.0.1:1/x\"\n",
                self.p("state").display(),
                trust.display()
            ),
        )
        .unwrap();
        // it holds a password: the operator's own (0600), as OPERATIONS.md asks
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&c, fs::Permissions::from_mode(0o600)).unwrap();
        c
    }
    fn updater(&self) -> Command {
        let mut c = updater();
        c.arg("--config").arg(self.p("updater.toml"));
        c
    }
    /// A files-only bundle of `version`, signed by `keys`, carrying `roots`.
    fn bundle(&self, version: &str, keys: &[&str], roots: &[&Path], epoch: Option<u64>) -> PathBuf {
        let (mut b, out) = self.bundle_cmd(version, keys, roots, epoch);
        ok(&mut b);
        out
    }

    fn bundle_cmd(
        &self,
        version: &str,
        keys: &[&str],
        roots: &[&Path],
        epoch: Option<u64>,
    ) -> (Command, PathBuf) {
        let src = self.p(&format!("src-{version}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("motd"), format!("release {version}\n")).unwrap();
        Release::stoa(version)
            .file("motd", "etc/motd", None)
            .write(&src);
        let out = self.p(&format!("b-{version}-{}.tar.zst", keys.join("+")));
        let mut b = bundler();
        b.arg("build").arg(src.join("release.toml"));
        for k in keys {
            b.arg("--key").arg(self.p(&format!("{k}.key")));
        }
        for r in roots {
            b.arg("--root").arg(r);
        }
        if let Some(e) = epoch {
            b.env("SOURCE_DATE_EPOCH", e.to_string());
        }
        b.arg("--out").arg(&out);
        (b, out)
    }
    fn root_v1(&self) -> PathBuf {
        let out = self.p("root-1.json");
        ok(bundler()
            .args(["root", "init", "--root-key"])
            .arg(self.p("r1.key"))
            .arg("--release-key")
            .arg(self.p("k1.pub"))
            .args(["--expires", "2099-01-01", "--out"])
            .arg(&out));
        out
    }
    /// Root version 2 of `v1`: release key k1 retired for k2, signed by r1.
    fn root_v2_k2(&self, v1: &Path) -> PathBuf {
        let v2 = self.p("root-2.json");
        ok(bundler()
            .args(["root", "rotate"])
            .arg(v1)
            .arg("--add-release-key")
            .arg(self.p("k2.pub"))
            .arg("--remove-release-key")
            .arg(self.p("k1.pub"))
            .arg("--sign-key")
            .arg(self.p("r1.key"))
            .arg("--out")
            .arg(&v2));
        v2
    }
    /// The key id of `<name>.pub` (hex).
    fn key_id(&self, name: &str) -> String {
        stoa_format::KeyId::of(
            &stoa_format::keys::load_public_key(&self.p(&format!("{name}.pub"))).unwrap(),
        )
        .to_string()
    }
    fn show(&self) -> serde_json::Value {
        serde_json::from_str(&ok(self.updater().args(["trust", "show", "--json"]))).unwrap()
    }
    fn audit(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&ok(self.updater().args(["history", "--audit", "--json"])))
                .unwrap();
        v["audit"].as_array().unwrap().clone()
    }
}

#[test]
fn rotation_shipped_in_a_bundle_trusts_the_new_key_and_revokes_the_old() {
    let s = Site::new();
    let v1 = s.root_v1();
    s.config(&s.p("folder"));
    // moving from the key folder: same keys
    ok(s.updater().args(["trust", "init"]).arg(&v1));
    assert_eq!(s.show()["trust"]["version"], 1);
    ok(s.updater()
        .arg("apply")
        .arg(s.bundle("1.0.0", &["k1"], &[], None)));

    // the release key k1 is retired: v2 names k2, signed by old and new root keys
    let v2 = s.p("root-2.json");
    let out = ok(bundler()
        .args(["root", "rotate"])
        .arg(&v1)
        .arg("--add-release-key")
        .arg(s.p("k2.pub"))
        .arg("--remove-release-key")
        .arg(s.p("k1.pub"))
        .arg("--add-root-key")
        .arg(s.p("r2.pub"))
        .arg("--remove-root-key")
        .arg(s.p("r1.pub"))
        .arg("--sign-key")
        .arg(s.p("r1.key"))
        .arg("--sign-key")
        .arg(s.p("r2.key"))
        .arg("--out")
        .arg(&v2));
    assert!(out.contains("version 2"), "{out}");
    // a rotation signed by the new root key alone is refused by the bundler too
    let e = fails(
        bundler()
            .args(["root", "rotate"])
            .arg(&v1)
            .arg("--add-root-key")
            .arg(s.p("r2.pub"))
            .arg("--remove-root-key")
            .arg(s.p("r1.pub"))
            .arg("--sign-key")
            .arg(s.p("r2.key"))
            .arg("--out")
            .arg(s.p("never.json")),
        1,
    );
    assert!(e.contains("root version 2: too-few-signatures"), "{e}");
    assert!(!s.p("never.json").exists());

    // a bundle signed by k2 only, carrying v2: the chain is walked first
    let b11 = s.bundle("1.1.0", &["k2"], &[&v2], None);
    let out = ok(s.updater().arg("plan").arg(&b11));
    // issue 21 item 5: plan says apply will accept the root and revoke k1
    let (k1, k2) = (s.key_id("k1"), s.key_id("k2"));
    assert!(
        out.contains(&format!(
            "trust: apply will accept root version 1 -> 2: release keys added {}; revoked {}",
            &k2[..16],
            &k1[..16]
        )),
        "{out}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&ok(s.updater().args(["plan", "--json"]).arg(&b11))).unwrap();
    assert_eq!(doc["trust_change"]["from_version"], 1, "{doc}");
    assert_eq!(doc["trust_change"]["to_version"], 2, "{doc}");
    assert_eq!(doc["trust_change"]["release_keys_added"][0], k2.as_str());
    assert_eq!(doc["trust_change"]["release_keys_revoked"][0], k1.as_str());
    assert_eq!(s.show()["trust"]["version"], 1, "plan changes nothing");
    ok(s.updater().arg("apply").arg(&b11));
    let t = s.show();
    assert_eq!(t["trust"]["version"], 2);
    assert_eq!(t["trust"]["source"], "state");

    // a newer release signed only by the removed key: refused from now on
    let b12 = s.bundle("1.2.0", &["k1"], &[], None);
    let e = fails(s.updater().arg("apply").arg(&b12), 1);
    assert!(e.contains("no signature by a trusted key"), "{e}");
    // issue 21 item 5: it says the key was revoked, and in which version
    assert!(
        e.contains(&format!("{} was revoked in root version 2", &k1[..16])),
        "{e}"
    );
    // and so is a bundle signed by k1 before the rotation
    let old = s.bundle("1.0.5", &["k1"], &[], None);
    fails(s.updater().args(["plan", "--allow-downgrade"]).arg(&old), 1);
    // standalone verify with the new root agrees; with v1 it walks the chain
    ok(updater().arg("verify").arg(&b11).arg("--trust").arg(&v2));
    let out = ok(updater().arg("verify").arg(&b11).arg("--trust").arg(&v1));
    assert!(out.contains("trusted through root version 2"), "{out}");
    fails(updater().arg("verify").arg(&b12).arg("--trust").arg(&v2), 1);

    // the audit log saw all of it, with keys and root versions
    let a = s.audit();
    let cmds: Vec<&str> = a.iter().map(|l| l["command"].as_str().unwrap()).collect();
    assert_eq!(
        cmds,
        [
            "trust init",
            "apply",
            "plan",
            "plan",
            "apply",
            "apply",
            "plan"
        ],
        "{a:?}"
    );
    assert_eq!(a[4]["root_version"], 2);
    assert_eq!(a[4]["result"], "ok");
    assert_eq!(a[4]["release"], "stoa-platform 1.1.0");
    let shown = ok(bundler().args(["root", "show", "--json"]).arg(&v2));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(a[4]["signing_key_ids"], shown["release_keys"]);
    assert_eq!(a[5]["result"], "failed");
    assert_eq!(a[5]["exit_code"], 1);
    assert_eq!(a[5]["error_kind"], "untrusted");
    let text = fs::read_to_string(s.p("state/audit.log")).unwrap();
    assert!(!text.contains("s3cret"), "secret in the audit log");
    let human = ok(s.updater().args(["history", "--audit"]));
    assert!(human.contains("root v2"), "{human}");
    // issue 21 item 2: the trust change has its own line, written before
    // the root was persisted (before the run's end line), naming the
    // revoked key; history folds it into the run
    let raw: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let i = raw
        .iter()
        .position(|l| l["result"] == "trust-change" && l["command"] == "apply")
        .unwrap_or_else(|| panic!("no trust-change line: {raw:?}"));
    let note = raw[i]["notes"][0].as_str().unwrap();
    assert_eq!(
        note,
        format!(
            "root version 1 -> 2: release keys added {}; revoked {}",
            &k2[..16],
            &k1[..16]
        )
    );
    let end = raw[i + 1..]
        .iter()
        .find(|l| l["run"] == raw[i]["run"])
        .unwrap();
    assert_eq!(end["result"], "ok", "{end}");
    assert_eq!(a[4]["notes"][0], note, "{}", a[4]);
}

/// Issue 21 item 4: after a rotation the config's own trust (the key folder
/// given at install) refuses a bundle signed by the new key; `verify
/// --config` (and `verify` with `$STOA_UPDATER_CONFIG`) checks against the
/// root in force, as apply does; `--trust` and `--config` together are a
/// usage error.
#[test]
fn verify_with_the_site_config_uses_the_root_in_force() {
    let s = Site::new();
    let v1 = s.root_v1();
    let config = s.config(&s.p("folder"));
    ok(s.updater().args(["trust", "init"]).arg(&v1));
    let v2 = s.root_v2_k2(&v1);
    ok(s.updater()
        .arg("apply")
        .arg(s.bundle("1.0.0", &["k2"], &[&v2], None)));
    assert_eq!(s.show()["trust"]["version"], 2);
    // a later bundle signed by k2 that carries no root
    let b11 = s.bundle("1.1.0", &["k2"], &[], None);
    // the desk check with the install-time trust refuses it ...
    let e = fails(
        updater()
            .arg("verify")
            .arg(&b11)
            .arg("--trust")
            .arg(s.p("folder")),
        1,
    );
    assert!(e.contains("no signature by a trusted key"), "{e}");
    // ... the site's trust in force accepts it, the flag before or after
    for argv in [
        vec![
            "--config".into(),
            config.clone(),
            "verify".into(),
            b11.clone(),
        ],
        vec![
            "verify".into(),
            b11.clone(),
            "--config".into(),
            config.clone(),
        ],
    ] {
        let out = ok(updater().args(&argv));
        assert!(out.contains("OK stoa-platform 1.1.0"), "{out}");
        assert!(out.contains("trusted through root version 2"), "{out}");
    }
    let out = ok(updater()
        .env(stoa_updater::config::CONFIG_ENV, &config)
        .args(["verify", "--json"])
        .arg(&b11));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], true, "{doc}");
    // it is audited in the site's log
    assert!(
        s.audit()
            .iter()
            .any(|l| l["command"] == "verify" && l["root_version"] == 2),
        "{:?}",
        s.audit()
    );
    // both ways at once: which one? a usage error
    let e = fails(
        s.updater()
            .arg("verify")
            .arg(&b11)
            .arg("--trust")
            .arg(s.p("folder")),
        2,
    );
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn bad_roots_are_refused_naming_version_and_rule_state_unchanged() {
    let s = Site::new();
    let v1 = s.root_v1();
    // the config names the first root directly
    s.config(&v1);
    ok(s.updater().args(["trust", "init"]).arg(&v1));
    let before = fs::read(s.p("state/trust/root.json")).unwrap();
    for f in root_fixture::ALL {
        let path = s.p(&format!("{f:?}.json"));
        f.write(&path, &v1, &s.p("r1.key"), &s.p("k1.pub"));
        let e = fails(s.updater().args(["trust", "update"]).arg(&path), 1);
        let (v, rule) = f.expected();
        assert!(
            e.contains(&format!("root version {v}: {rule}:")),
            "{f:?}: {e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{f:?}: one line: {e}");
        assert_eq!(
            fs::read(s.p("state/trust/root.json")).unwrap(),
            before,
            "{f:?} changed the state"
        );
        // carried in a bundle: a root broken on its own is refused by the
        // bundler already; one that breaks the chain is refused by the site
        // (a lower or equal one is ignored there: a bundle may carry old roots)
        let version = format!("1.0.{}", *f as u8);
        match f {
            RootFixture::EqualVersion | RootFixture::LowerVersion => {}
            RootFixture::Expired | RootFixture::ChainGap => {
                let b = s.bundle(&version, &["k1"], &[&path], None);
                let e = fails(s.updater().arg("plan").arg(&b), 1);
                assert!(
                    e.contains(&format!("root version {v}: {rule}")),
                    "{f:?}: {e}"
                );
                fails(s.updater().arg("apply").arg(&b), 1);
            }
            _ => {
                let (mut b, _) = s.bundle_cmd(&version, &["k1"], &[&path], None);
                let e = fails(&mut b, 1);
                assert!(
                    e.contains(&format!("root version {v}: {rule}")),
                    "{f:?}: {e}"
                );
            }
        }
    }
    assert_eq!(s.show()["trust"]["version"], 1);
    // a second init is refused too
    let e = fails(s.updater().args(["trust", "init"]).arg(&v1), 1);
    assert!(e.contains("already-initialised"), "{e}");
}

#[test]
fn key_folder_works_as_root_v0_and_a_disagreeing_root_is_refused() {
    let s = Site::new();
    s.config(&s.p("folder"));
    let t = s.show();
    assert_eq!(t["trust"]["version"], 0);
    assert_eq!(t["trust"]["source"], "key-folder");
    ok(s.updater()
        .arg("apply")
        .arg(s.bundle("1.0.0", &["k1"], &[], None)));
    // a root naming k2 while the folder holds k1
    let other = s.p("other-root.json");
    ok(bundler()
        .args(["root", "init", "--root-key"])
        .arg(s.p("r1.key"))
        .arg("--release-key")
        .arg(s.p("k2.pub"))
        .args(["--expires", "2099-01-01", "--out"])
        .arg(&other));
    let e = fails(s.updater().args(["trust", "init"]).arg(&other), 1);
    assert!(e.contains("root version 1: folder-disagrees"), "{e}");
    assert!(!s.p("state/trust/root.json").exists());
    // roots carried by a bundle cannot extend a key folder: still v0 (signed
    // by k2 too, since build refuses a root that would not trust its keys)
    let b = s.bundle("1.1.0", &["k1", "k2"], &[&other], None);
    ok(s.updater().arg("apply").arg(&b));
    assert_eq!(s.show()["trust"]["version"], 0);
    let v1 = s.root_v1();
    ok(s.updater().args(["trust", "init"]).arg(&v1));
    assert_eq!(s.show()["trust"]["version"], 1);
    // trust update on a v0 site is refused with a hint (exercised before init elsewhere)
}

#[test]
fn clock_before_the_floor_is_refused_unless_overridden_and_logged() {
    let s = Site::new();
    s.config(&s.p("folder"));
    ok(s.updater()
        .arg("apply")
        .arg(s.bundle("0.9.0", &["k1"], &[], None)));
    // the floor a site set while its clock was right, and a clock set back
    // since: written as the state holds it
    fs::write(
        s.p("state/clock-floor.json"),
        r#"{"floor": "2100-01-01T00:00:00Z", "source": "bundle stoa-platform 0.9.0"}"#,
    )
    .unwrap();
    let t = s.show();
    assert_eq!(t["trust"]["clock_floor"]["floor"], "2100-01-01T00:00:00Z");
    let next = s.bundle("1.1.0", &["k1"], &[], None);
    let e = fails(s.updater().arg("plan").arg(&next), 1);
    assert!(
        e.contains("before the clock floor 2100-01-01T00:00:00Z"),
        "{e}"
    );
    assert!(e.contains("--ignore-clock-floor"), "{e}");
    fails(s.updater().arg("apply").arg(&next), 1);
    ok(s.updater()
        .args(["apply", "--ignore-clock-floor"])
        .arg(&next));
    let a = s.audit();
    let last = a.last().unwrap();
    assert_eq!(last["result"], "ok");
    assert!(
        last["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("--ignore-clock-floor"),
        "{last}"
    );
    assert_eq!(a[a.len() - 2]["error_kind"], "clock-floor");
    // issue 17 weak spot: each line holds the floor; lines dated before it
    // are flagged, in JSON and in text
    assert_eq!(last["clock_floor"], "2100-01-01T00:00:00Z", "{last}");
    assert_eq!(last["before_clock_floor"], true, "{last}");
    assert!(a[0].get("before_clock_floor").is_none(), "{}", a[0]);
    let human = ok(s.updater().args(["history", "--audit"]));
    assert!(
        human.contains("BEFORE CLOCK FLOOR 2100-01-01T00:00:00Z"),
        "{human}"
    );
}

/// Issue 17 weak spot: a bundle created in 2100 is refused (it would have
/// locked the site's clock floor until 2100); one created 12 hours ahead
/// (within the 24 h skew) is accepted and the floor follows it, never
/// further than the skew past the clock.
#[test]
fn bundle_created_in_the_future_is_refused_and_the_floor_jump_is_bounded() {
    let s = Site::new();
    s.config(&s.p("folder"));
    let future = s.bundle("1.0.0", &["k1"], &[], Some(4_102_444_800));
    let e = fails(s.updater().arg("plan").arg(&future), 1);
    assert!(
        e.contains("created 2100-01-01T00:00:00Z, more than 1day"),
        "{e}"
    );
    let e = fails(s.updater().arg("apply").arg(&future), 1);
    assert!(
        e.contains("created-in-future") || e.contains("more than 1day"),
        "{e}"
    );
    fails(
        updater()
            .arg("verify")
            .arg(&future)
            .arg("--trust")
            .arg(s.p("k1.pub")),
        1,
    );
    assert!(s.show()["trust"].get("clock_floor").is_none());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let soon = s.bundle("1.1.0", &["k1"], &[], Some(now + 12 * 3600));
    ok(s.updater().arg("apply").arg(&soon));
    let floor = s.show()["trust"]["clock_floor"]["floor"]
        .as_str()
        .unwrap()
        .to_owned();
    let floor = humantime::parse_rfc3339(&floor).unwrap();
    let ahead = floor
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!(ahead > 11 * 3600 && ahead <= 24 * 3600, "{ahead}");
    let a = s.audit();
    assert_eq!(a[0]["error_kind"], "created-in-future", "{}", a[0]);
}

/// Issue 17 weak spot: an apply killed mid-way leaves its `started` line
/// and a marker; the next audited command closes it with an `interrupted`
/// line. (A panicking command ends the same way: no end line of its own.)
#[test]
fn killed_command_leaves_a_started_line_closed_by_the_next_run() {
    let s = Site::new();
    s.config(&s.p("folder"));
    // a bundle path that is a FIFO nobody writes: plan blocks reading it
    let fifo = s.p("stuck.tar.zst");
    ok(Command::new("mkfifo").arg(&fifo));
    let mut child = s.updater().arg("plan").arg(&fifo).spawn().unwrap();
    let marker = s.p(&format!("state/audit.open/{}.json", child.id()));
    let t0 = std::time::Instant::now();
    while !marker.exists() {
        assert!(t0.elapsed().as_secs() < 60, "no start marker");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = fs::read_to_string(s.p("state/audit.log")).unwrap();
    let started: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(started["result"], "started", "{started}");
    assert_eq!(started["command"], "plan", "{started}");
    assert!(started.get("exit_code").is_none(), "{started}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(marker.exists());
    // the next audited run closes it
    ok(s.updater()
        .arg("plan")
        .arg(s.bundle("1.0.0", &["k1"], &[], None)));
    assert!(!marker.exists());
    let a = s.audit();
    let r: Vec<(&str, &str)> = a
        .iter()
        .map(|l| {
            (
                l["command"].as_str().unwrap(),
                l["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(r, [("plan", "interrupted"), ("plan", "ok")], "{a:?}");
    assert_eq!(a[0]["run"], started["run"]);
    assert!(
        a[0]["notes"][0].as_str().unwrap().contains("never ended"),
        "{}",
        a[0]
    );
    // the raw log: started, interrupted, started, ok
    let raw: Vec<String> = fs::read_to_string(s.p("state/audit.log"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["result"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(raw, ["started", "interrupted", "started", "ok"]);
}

/// Issue 17 item 6 (fixture tests/fixtures/root-key-id-control-chars): a
/// root whose key ids hold a newline, a forged audit line and `ESC [2J` is
/// refused while it is parsed, by `trust update` and when carried in a
/// bundle (verify, plan, apply), and neither the terminal nor the audit log
/// gets a control character.
#[test]
fn root_key_id_with_control_characters_is_refused_and_never_printed_raw() {
    let s = Site::new();
    let v1 = s.root_v1();
    s.config(&v1);
    ok(s.updater().args(["trust", "init"]).arg(&v1));
    let fixture =
        stoa_e2e::harness::repo_root().join("tests/fixtures/root-key-id-control-chars/root-2.json");
    let bad = fs::read(&fixture).unwrap();
    let clean = |what: &str, out: &std::process::Output| {
        let err = String::from_utf8_lossy(&out.stderr);
        let so = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            !err.contains('\x1b') && !so.contains('\x1b'),
            "{what}: raw escape: {err:?}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err:?}");
        assert!(
            err.contains("is not 64 lowercase hex digits"),
            "{what}: {err}"
        );
        assert!(err.contains("abc\\u{a}"), "{what}: {err}");
    };
    let run = stoa_e2e::harness::run;
    clean(
        "trust update",
        &run(s.updater().args(["trust", "update"]).arg(&fixture)),
    );
    // carried in a bundle signed by the site's release key: a valid v2
    // carried, then swapped for the fixture and the manifest re-signed
    let v2 = s.p("root-2.json");
    ok(bundler()
        .args(["root", "rotate"])
        .arg(&v1)
        .arg("--sign-key")
        .arg(s.p("r1.key"))
        .arg("--out")
        .arg(&v2));
    let good = s.bundle("1.0.0", &["k1"], &[&v2], None);
    let b = s.p("bad-key-id.tar.zst");
    fs::write(
        &b,
        swap_entry(&good, "anchors/root-2.json", &bad, &s.p("k1.key")),
    )
    .unwrap();
    clean(
        "verify",
        &run(updater().arg("verify").arg(&b).arg("--trust").arg(&v1)),
    );
    clean("plan", &run(s.updater().arg("plan").arg(&b)));
    clean("apply", &run(s.updater().arg("apply").arg(&b)));
    clean(
        "apply --json",
        &run(s.updater().args(["apply", "--json"]).arg(&b)),
    );
    let log = fs::read(s.p("state/audit.log")).unwrap();
    assert!(!log.contains(&0x1b), "raw ESC in the audit log");
    for l in s.audit().iter().skip(1) {
        assert_eq!(l["result"], "failed", "{l}");
        let e = l["error"].as_str().unwrap();
        assert!(!e.chars().any(stoa_format::text::is_unsafe), "{e:?}");
        assert!(e.contains("abc\\u{a}"), "{e}");
    }
    let human = ok(s.updater().args(["history", "--audit"]));
    assert!(
        !human.contains('\x1b') && human.lines().count() == 5,
        "{human:?}"
    );
    assert_eq!(s.show()["trust"]["version"], 1);
}

/// `bundle` with entry `name` replaced by `data`, its manifest listing the
/// new size and digest and re-signed with `key` (what a holder of the
/// release key could ship).
fn swap_entry(bundle: &Path, name: &str, data: &[u8], key: &Path) -> Vec<u8> {
    use stoa_e2e::tamper::{compress, decompress, read_tar, write_tar, RawEntry};
    let k = stoa_format::SigningKeyPair::load(key).unwrap();
    let mut entries = read_tar(&decompress(&fs::read(bundle).unwrap()));
    let mut m: serde_json::Value = serde_json::from_slice(&entries[0].data).unwrap();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
    for e in m["entries"].as_array_mut().unwrap() {
        if e["path"] == name {
            e["size"] = data.len().into();
            e["sha256"] = digest.clone().into();
        }
    }
    let mut mb = serde_json::to_vec_pretty(&m).unwrap();
    mb.push(b'\n');
    let sig = k.sign(&mb);
    entries[0].data = mb;
    for e in entries.iter_mut() {
        if e.name.starts_with("signatures/") {
            *e = RawEntry::file(&format!("signatures/{}.sig", k.id()), &sig);
        } else if e.name == name {
            e.data = data.to_vec();
        }
    }
    compress(&write_tar(&entries))
}

#[test]
fn root_signatures_check_with_openssl_over_the_signed_string() {
    stoa_e2e::harness::require("openssl", "openssl");
    stoa_e2e::harness::require("jq", "jq");
    let s = Site::new();
    let v1 = s.root_v1();
    let d = s.dir.path();
    let sh = format!(
        "set -e; cd {d}; jq -j .signed {v1} > signed.bin; \
         jq -r '.signatures[0].sig' {v1} | base64 -d > sig.bin; \
         test \"$(jq -r '.signatures[0].key_id' {v1})\" = \"$(openssl pkey -pubin -in r1.pub -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)\"; \
         openssl pkeyutl -verify -pubin -inkey r1.pub -rawin -in signed.bin -sigfile sig.bin",
        d = d.display(),
        v1 = v1.display()
    );
    let out = ok(Command::new("sh").args(["-c", &sh]));
    assert!(out.contains("Signature Verified Successfully"), "{out}");
    // and a v0 (key folder) site cannot take a successor root: it has no root keys
    s.config(&s.p("folder"));
    let e = fails(s.updater().args(["trust", "update"]).arg(&v1), 5);
    assert!(e.contains("trust init"), "{e}");
}

#[test]
fn accepted_root_altered_on_disk_fails_closed() {
    let s = Site::new();
    let v1 = s.root_v1();
    s.config(&s.p("folder"));
    ok(s.updater().args(["trust", "init"]).arg(&v1));
    let p = s.p("state/trust/root.json");
    let text = fs::read_to_string(&p).unwrap();
    fs::write(&p, text.replace("2099-01-01", "2199-01-01")).unwrap();
    let e = fails(s.updater().args(["trust", "show"]), 3);
    assert!(e.contains("root version 1: bad-signature"), "{e}");
    fails(
        s.updater()
            .arg("plan")
            .arg(s.bundle("1.0.0", &["k1"], &[], None)),
        3,
    );
}

/// Issue 21 item 6: `build --root` refuses a bundle that the root it
/// carries would not trust (a removed release key, one the root never had,
/// too few release keys for its threshold): exit 2, one line naming the
/// key and the root version, no bundle written. The check is the readers'
/// own (the updater refuses the same bundles).
#[test]
fn build_refuses_a_carried_root_that_does_not_trust_its_signing_key() {
    let s = Site::new();
    let v1 = s.root_v1();
    let v2 = s.root_v2_k2(&v1);
    let (k1, k2) = (s.key_id("k1"), s.key_id("k2"));
    let one_line = |e: &str| {
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    };

    // v2 removes k1: a bundle signed by k1 alone would be dead at every rotated site
    let (mut b, out) = s.bundle_cmd("1.1.0", &["k1"], &[&v1, &v2], None);
    let e = fails(&mut b, 2);
    one_line(&e);
    assert!(
        e.contains(&format!(
            "signing key {} is not a release key of root version 2",
            &k1[..16]
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("its release keys: {}", &k2[..16])),
        "{e}"
    );
    assert!(!out.exists(), "no bundle is written");
    // the same with --split: nothing written either
    let (mut b, out) = s.bundle_cmd("1.1.0", &["k1"], &[&v2], None);
    b.args(["--split", "1MiB"]);
    fails(&mut b, 2);
    assert!(fs::read_dir(s.dir.path()).unwrap().all(|f| !f
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("b-1.1.0")));
    drop(out);

    // a key the root never had (v1 names k1 only)
    let (mut b, _) = s.bundle_cmd("1.0.1", &["k2"], &[&v1], None);
    let e = fails(&mut b, 2);
    one_line(&e);
    assert!(
        e.contains(&format!(
            "signing key {} is not a release key of root version 1",
            &k2[..16]
        )),
        "{e}"
    );

    // a root needing two release keys, signed by one of them
    let both = s.p("root-both.json");
    ok(bundler()
        .args(["root", "init", "--root-key"])
        .arg(s.p("r1.key"))
        .arg("--release-key")
        .arg(s.p("k1.pub"))
        .arg("--release-key")
        .arg(s.p("k2.pub"))
        .args(["--threshold", "2", "--expires", "2099-01-01", "--out"])
        .arg(&both));
    let (mut b, _) = s.bundle_cmd("1.0.2", &["k1"], &[&both], None);
    let e = fails(&mut b, 2);
    one_line(&e);
    assert!(
        e.contains(
            "1 of the signing keys are release keys of root version 1, its release_threshold is 2"
        ),
        "{e}"
    );
    ok(&mut s.bundle_cmd("1.0.2", &["k1", "k2"], &[&both], None).0);

    // signed by the new key, carrying the chain: builds, and a site on v1 takes it
    let good = s.bundle("1.1.0", &["k2"], &[&v1, &v2], None);
    let out = ok(updater().arg("verify").arg(&good).arg("--trust").arg(&v1));
    assert!(out.contains("trusted through root version 2"), "{out}");
    // and the one the builder refused is what a rotated site refuses: build it
    // without the root (which the builder cannot check) and verify with v2
    let dead = s.bundle("1.1.0", &["k1"], &[], None);
    let e = fails(
        updater().arg("verify").arg(&dead).arg("--trust").arg(&v2),
        1,
    );
    assert!(e.contains("no signature by a trusted key"), "{e}");
}

/// Issue 21 item 7: `inspect` shows the roots a bundle carries (version,
/// keys, thresholds, expiry) in text and `--json`, and `inspect --trust`
/// takes a signed root as `verify --trust` does (it walks the carried
/// roots: a bundle signed by the rotated-in key checks against root 1);
/// the key folder of the retired key does not trust it.
#[test]
fn inspect_shows_carried_roots_and_takes_a_signed_root_as_trust() {
    let s = Site::new();
    let v1 = s.root_v1();
    let v2 = s.root_v2_k2(&v1);
    let b = s.bundle("1.1.0", &["k2"], &[&v2], None);
    let (k2, r1) = (s.key_id("k2"), s.key_id("r1"));
    for prog in [bundler, updater] {
        // no --trust: the carried root is shown, signatures not checked
        let doc: serde_json::Value =
            serde_json::from_str(&ok(prog().args(["inspect", "--json"]).arg(&b))).unwrap();
        let roots = doc["roots"].as_array().unwrap();
        assert_eq!(roots.len(), 1, "{doc}");
        let r = &roots[0];
        assert_eq!(r["entry"], "anchors/root-2.json", "{doc}");
        assert_eq!(r["version"], 2, "{doc}");
        assert_eq!(r["release_threshold"], 1, "{doc}");
        assert_eq!(r["release_keys"], serde_json::json!([k2]), "{doc}");
        assert_eq!(r["root_threshold"], 1, "{doc}");
        assert_eq!(r["root_keys"], serde_json::json!([r1]), "{doc}");
        assert_eq!(r["signed_by"], serde_json::json!([r1]), "{doc}");
        assert!(
            r["expires"].as_str().unwrap().starts_with("2099-01-01"),
            "{doc}"
        );
        assert_eq!(doc["trusted_through_root"], serde_json::Value::Null);

        let text = ok(prog().arg("inspect").arg(&b));
        assert!(text.contains("trust roots  (1 carried)"), "{text}");
        assert!(
            text.contains("  root version 2 (anchors/root-2.json): created "),
            "{text}"
        );
        assert!(
            text.contains(&format!("    release keys (threshold 1): {k2}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("    root keys (threshold 1): {r1}")),
            "{text}"
        );

        // --trust root.json: the chain 1 -> 2 is walked, k2 is trusted
        let text = ok(prog().arg("inspect").arg(&b).arg("--trust").arg(&v1));
        assert!(
            text.contains(&format!("signed by    {k2} (trusted, verified)")),
            "{text}"
        );
        assert!(text.contains("trusted via  root version 2"), "{text}");
        let doc: serde_json::Value = serde_json::from_str(&ok(prog()
            .args(["inspect", "--json"])
            .arg(&b)
            .arg("--trust")
            .arg(&v1)))
        .unwrap();
        assert_eq!(doc["trusted_through_root"], 2, "{doc}");
        assert_eq!(doc["signatures_checked"], true, "{doc}");
        assert_eq!(doc["signers"][0]["trusted"], true, "{doc}");

        // the retired key's folder does not trust it (as verify)
        let e = fails(
            prog()
                .arg("inspect")
                .arg(&b)
                .arg("--trust")
                .arg(s.p("folder")),
            1,
        );
        assert!(e.contains("no signature by a trusted key"), "{e}");
    }
}

/// Issue 21 item 2: a carried root is accepted by apply's journaled
/// `trust` step, the first step after stage. An apply killed right after it
/// leaves the change in the journal (versions, the revoked key) and in the
/// audit log; the resume completes without accepting it twice; rollback
/// (and its dry run) says the root stays in force, and the revoked key
/// stays refused.
#[test]
fn an_apply_killed_after_accepting_a_root_is_journaled_resumed_and_kept_by_rollback() {
    let s = Site::new();
    let v1 = s.root_v1();
    s.config(&s.p("folder"));
    ok(s.updater().args(["trust", "init"]).arg(&v1));
    ok(s.updater()
        .arg("apply")
        .arg(s.bundle("1.0.0", &["k1"], &[], None)));
    let v2 = s.root_v2_k2(&v1);
    let b11 = s.bundle("1.1.0", &["k2"], &[&v2], None);
    // plan lists the step
    let doc: serde_json::Value =
        serde_json::from_str(&ok(s.updater().args(["plan", "--json"]).arg(&b11))).unwrap();
    assert_eq!(doc["steps"][0], "trust", "{doc}");

    let st = s
        .updater()
        .env("STOA_UPDATER_TEST_CRASH_AFTER", "trust")
        .arg("apply")
        .arg(&b11)
        .output()
        .unwrap();
    assert!(!st.status.success(), "the crash hook did not fire");
    assert_eq!(s.show()["trust"]["version"], 2);
    let (k1, k2) = (s.key_id("k1"), s.key_id("k2"));
    // the journal holds the change, before its step is done
    let journal = fs::read_to_string(s.p("state/journal.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let accept = lines
        .iter()
        .position(|l| l["step"] == "trust" && l["event"] == "accept")
        .unwrap_or_else(|| panic!("no trust accept line: {journal}"));
    let d = &lines[accept];
    assert_eq!(d["from_version"], 1, "{d}");
    assert_eq!(d["to_version"], 2, "{d}");
    assert_eq!(d["release_keys_revoked"][0], k1, "{d}");
    assert_eq!(d["release_keys_added"][0], k2, "{d}");
    let done = lines
        .iter()
        .position(|l| l["step"] == "trust" && l["event"] == "done")
        .expect("trust step done");
    assert!(accept < done);
    // ... and the audit log, from the killed run
    assert!(
        s.audit().iter().any(|l| l["result"] == "trust-change"),
        "{:?}",
        s.audit()
    );

    // the resume finishes the apply; the root is not accepted twice
    ok(s.updater().arg("apply").arg(&b11));
    let changes = fs::read_to_string(s.p("state/audit.log"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"trust-change\"") && l.contains("\"command\":\"apply\""))
        .count();
    assert_eq!(changes, 1, "the root was accepted twice");
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(s.p("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["releases"][1]["trust_root"], 2, "{state}");

    // rollback knows: the dry run and the rollback say the root stays
    let dry = ok(s.updater().args(["rollback", "--dry-run"]));
    assert!(
        dry.contains("trust: root version 2 stays in force"),
        "{dry}"
    );
    let out = ok(s.updater().arg("rollback"));
    assert!(
        out.contains("trust: root version 2 stays in force"),
        "{out}"
    );
    assert_eq!(s.show()["trust"]["version"], 2);
    // k1 is still revoked: its bundle is refused
    let e = fails(
        s.updater()
            .arg("apply")
            .arg(s.bundle("1.2.0", &["k1"], &[], None)),
        1,
    );
    assert!(e.contains("was revoked in root version 2"), "{e}");
}

/// Issue 21 item 13: the audit log records the bundle file's SHA-256 (every
/// byte, as `build` and `split` print it) beside the manifest digest, for a
/// file and for a part set; `verify` is audited through a config at any
/// path; lines written before `manifest_sha256` existed read as before.
#[test]
fn the_audit_log_records_the_bundle_files_sha256_beside_the_manifest_digest() {
    let s = Site::new();
    // a config far from the default path
    let cfg_dir = s.p("elsewhere/conf.d");
    fs::create_dir_all(&cfg_dir).unwrap();
    let c = s.config(&s.p("folder"));
    let cfg = cfg_dir.join("site-a.toml");
    fs::rename(&c, &cfg).unwrap();
    let (mut b, bundle) = s.bundle_cmd("1.0.0", &["k1"], &[], None);
    let built = ok(&mut b);
    let file_sha = stoa_format::Sha256Digest::of(&fs::read(&bundle).unwrap()).hex();
    assert!(
        built.contains(&format!("bundle sha256:{file_sha}")),
        "{built}"
    );
    let v = ok(updater()
        .arg("--config")
        .arg(&cfg)
        .arg("verify")
        .arg(&bundle));
    assert!(v.contains(&format!("bundle sha256:{file_sha}")), "{v}");
    ok(updater()
        .arg("--config")
        .arg(&cfg)
        .arg("apply")
        .arg(&bundle));
    let lines: Vec<serde_json::Value> = fs::read_to_string(s.p("state/audit.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ends: Vec<&serde_json::Value> = lines.iter().filter(|l| l["result"] == "ok").collect();
    assert_eq!(ends.len(), 2, "{lines:?}");
    assert_eq!(ends[0]["command"], "verify");
    assert_eq!(ends[1]["command"], "apply");
    let manifest = ends[1]["manifest_sha256"].as_str().unwrap().to_owned();
    assert_ne!(manifest, file_sha);
    for e in &ends {
        assert_eq!(e["bundle_sha256"], file_sha, "{e}");
        assert_eq!(e["manifest_sha256"], manifest, "{e}");
    }
    // a part set: the signed index's digest, the one split printed
    let parts = s.p("parts");
    fs::create_dir_all(&parts).unwrap();
    let split = ok(bundler()
        .args(["split", "--size", "1MiB", "--key"])
        .arg(s.p("k1.key"))
        .arg("--out-dir")
        .arg(&parts)
        .arg(&bundle));
    assert!(
        split.contains(&format!("bundle sha256:{file_sha}")),
        "{split}"
    );
    ok(updater()
        .arg("--config")
        .arg(&cfg)
        .arg("verify")
        .arg(&parts));
    let last: serde_json::Value = serde_json::from_str(
        fs::read_to_string(s.p("state/audit.log"))
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["bundle_sha256"], file_sha, "{last}");
    // an old line: its bundle_sha256 was the manifest's digest
    let mut log = fs::OpenOptions::new()
        .append(true)
        .open(s.p("state/audit.log"))
        .unwrap();
    use std::io::Write;
    writeln!(log, "{{\"time\":\"2026-11-01T00:00:00Z\",\"run\":\"1-1\",\"user\":\"-\",\"uid\":0,\"command\":\"apply\",\"bundle_sha256\":\"{manifest}\",\"signing_key_ids\":[],\"result\":\"ok\",\"exit_code\":0}}").unwrap();
    let doc: serde_json::Value = serde_json::from_str(&ok(updater()
        .arg("--config")
        .arg(&cfg)
        .args(["history", "--audit", "--json"])))
    .unwrap();
    let old = doc["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["run"] == "1-1")
        .unwrap();
    assert_eq!(old["manifest_sha256"], manifest, "{old}");
    assert!(old.get("bundle_sha256").is_none(), "{old}");
}
