//! `stoa-updater self-update` (issue 24): a bundle carries the next updater
//! as a signed `[[tools]]` entry; the running updater verifies the bundle
//! against the site's trust, checks the carried binary (newer, an ELF for
//! this platform, `--version` as a smoke test) and renames it over itself,
//! keeping the previous one for `--revert`. Also from a bundle of a format
//! version newer than this updater reads (docs/FORMAT.md *Versioning*),
//! made here: signed with the test key, with fields no updater knows.
//!
//! The updater under test is a copy of target/debug/stoa-updater in the
//! test's folder (never the built binary itself). "Tomorrow's updater" is
//! a real one too: the same binary with its version text patched to the
//! same length (every digit of the workspace version made `9`), so it is
//! an ELF for this platform that reports a newer version and runs every
//! command. Each bad input is a named test; after each, the running
//! updater is byte for byte what it was, and runs.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use stoa_e2e::harness::{self, bundler, fails, json, ok, run};
use stoa_e2e::release::{Release, Table};
use stoa_e2e::tamper::{compress, decompress, read_tar, write_tar, Base};

/// The workspace version: what the updater under test reports.
const VERSION: &str = env!("CARGO_PKG_VERSION");
const TOOL_ENTRY: &str = "tools/linux/amd64/stoa-updater";

/// The version with every digit replaced by `d` (same length).
fn with_digits(d: char) -> String {
    VERSION
        .chars()
        .map(|c| if c.is_ascii_digit() { d } else { c })
        .collect()
}

/// A folder with a key, a trust folder, a site config (state_dir and trust
/// only: self-update needs nothing else) and a copy of the updater.
struct Desk {
    dir: tempfile::TempDir,
    key: PathBuf,
    config: PathBuf,
    state: PathBuf,
    /// The updater under test: `<dir>/bin/stoa-updater`.
    bin: PathBuf,
    original: Vec<u8>,
}

impl Desk {
    fn new() -> Self {
        assert_eq!(
            stoa_format::tools::host_platform().map(|p| p.name),
            Some("linux/amd64"),
            "these tests carry linux/amd64 binaries"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = harness::keygen(&d.join("release"));
        fs::create_dir_all(d.join("trust")).unwrap();
        fs::copy(d.join("release.pub"), d.join("trust/release.pub")).unwrap();
        let state = d.join("state");
        let config = d.join("updater.toml");
        fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\ntrust = \"{}\"\n",
                state.display(),
                d.join("trust").display()
            ),
        )
        .unwrap();
        fs::create_dir_all(d.join("bin")).unwrap();
        let bin = d.join("bin/stoa-updater");
        fs::copy(harness::bin_dir().join("stoa-updater"), &bin).unwrap();
        let original = fs::read(&bin).unwrap();
        Self {
            dir,
            key,
            config,
            state,
            bin,
            original,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The updater under test, with the site config.
    fn updater(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config").arg(&self.config);
        c
    }

    /// A bundle `stoa-platform <release>` carrying `tool` as the
    /// linux/amd64 stoa-updater at `version` (built by the real bundler,
    /// which checks the ELF header and runs `--version`).
    fn bundle(&self, release: &str, tool: &Path, version: &str) -> PathBuf {
        let dir = self.path().join(format!("rel-{release}"));
        let manifest = Release::stoa(release)
            .table(
                Table::new("tools")
                    .str("name", "stoa-updater")
                    .str("source", &tool.display().to_string())
                    .str("platform", "linux/amd64")
                    .str("version", version),
            )
            .write(&dir);
        let out = self.path().join(format!("stoa-platform-{release}.tar.zst"));
        ok(&mut harness::bundler_build(&manifest, &self.key, &out));
        out
    }

    /// Tomorrow's updater: a real updater reporting `version` (see the
    /// module comment), written at `<dir>/<name>`.
    fn updater_reporting(&self, version: &str, name: &str) -> PathBuf {
        assert_eq!(version.len(), VERSION.len());
        let mut bytes = self.original.clone();
        let (from, to) = (VERSION.as_bytes(), version.as_bytes());
        let mut n = 0;
        let mut i = 0;
        while i + from.len() <= bytes.len() {
            if &bytes[i..i + from.len()] == from {
                bytes[i..i + from.len()].copy_from_slice(to);
                n += 1;
                i += from.len();
            } else {
                i += 1;
            }
        }
        assert!(n > 0, "the version text {VERSION} is not in the binary");
        let p = self.path().join(name);
        fs::write(&p, &bytes).unwrap();
        set_mode(&p, 0o755);
        let out = ok(Command::new(&p).arg("--version"));
        assert!(
            out.starts_with(&format!("stoa-updater {version} ")),
            "{out}"
        );
        p
    }

    /// The running updater is the one it was, runs, and nothing was left
    /// beside it.
    #[track_caller]
    fn assert_unchanged(&self) {
        assert!(
            fs::read(&self.bin).unwrap() == self.original,
            "the running updater was changed"
        );
        let v = ok(Command::new(&self.bin).arg("--version"));
        assert!(v.starts_with(&format!("stoa-updater {VERSION} ")), "{v}");
        assert_eq!(self.leftovers(), Vec::<String>::new());
    }

    /// Names in the binary's folder other than the binary (and `.previous`).
    fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.bin.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "stoa-updater" && n != "stoa-updater.previous")
            .collect();
        v.sort();
        v
    }

    /// `history --audit --json`'s runs of self-update.
    fn audited(&self) -> Vec<serde_json::Value> {
        let h = json(&ok(self.updater().args(["history", "--audit", "--json"])));
        h["audit"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["command"] == "self-update")
            .cloned()
            .collect()
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// The bundle with its tool entry's bytes replaced by `data` and the
/// manifest re-signed with the test key: what a holder of the key could
/// ship; the updater's own checks must refuse what it must not run.
fn signed_with_tool(d: &Desk, bundle: &Path, data: &[u8], name: &str) -> PathBuf {
    let b = Base::from_file(bundle, &d.key);
    let out = d.path().join(name);
    fs::write(&out, b.content_signed(TOOL_ENTRY, data)).unwrap();
    out
}

/// The bundle with its manifest edited by `edit` and re-signed.
fn resigned(
    d: &Desk,
    bundle: &Path,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let b = Base::from_file(bundle, &d.key);
    let mut entries = read_tar(&decompress(&b.bundle));
    let mut m: serde_json::Value = serde_json::from_slice(&entries[0].data).unwrap();
    edit(&mut m);
    let mut bytes = serde_json::to_vec_pretty(&m).unwrap();
    bytes.push(b'\n');
    let sig = b.key.sign(&bytes);
    entries[0].data = bytes;
    let si = entries
        .iter()
        .position(|e| e.name.starts_with("signatures/"))
        .unwrap();
    entries[si] = stoa_e2e::tamper::RawEntry::file(&format!("signatures/{}.sig", b.key.id()), &sig);
    let out = d.path().join(name);
    fs::write(&out, compress(&write_tar(&entries))).unwrap();
    out
}

#[test]
fn self_update_installs_a_newer_updater_keeps_the_previous_and_reverts() {
    let d = Desk::new();
    let newer = with_digits('9');
    let tool = d.updater_reporting(&newer, "next-updater");
    let bundle = d.bundle("2.4.0", &tool, &newer);

    // inspect lists the tool, in both programs
    for out in [
        ok(bundler().arg("inspect").arg(&bundle).arg("--json")),
        ok(harness::updater().arg("inspect").arg(&bundle).arg("--json")),
    ] {
        let t = &json(&out)["tools"][0];
        assert_eq!(t["name"], "stoa-updater");
        assert_eq!(t["platform"], "linux/amd64");
        assert_eq!(t["version"], newer.as_str());
        assert_eq!(t["path"], TOOL_ENTRY);
        assert_eq!(t["mode"], "0755");
    }
    let text = ok(harness::updater().arg("inspect").arg(&bundle));
    assert!(
        text.contains(&format!(
            "tools (1)\n  stoa-updater {newer}  linux/amd64  mode 0755"
        )),
        "{text}"
    );

    let r = json(&ok(d
        .updater()
        .arg("self-update")
        .arg(&bundle)
        .arg("--json")));
    assert_eq!(r["action"], "installed", "{r}");
    assert_eq!(r["version"], newer.as_str());
    assert_eq!(r["replaced_version"], VERSION);
    assert_eq!(r["newer_format"], false);
    assert_eq!(fs::read(&d.bin).unwrap(), fs::read(&tool).unwrap());
    assert_eq!(
        fs::read(d.bin.with_file_name("stoa-updater.previous")).unwrap(),
        d.original
    );
    let v = ok(Command::new(&d.bin).arg("--version"));
    assert!(v.starts_with(&format!("stoa-updater {newer} ")), "{v}");
    assert_eq!(d.leftovers(), Vec::<String>::new());

    // the same bundle again: not newer than what runs now
    let e = fails(d.updater().arg("self-update").arg(&bundle), 5);
    assert!(e.contains("is not newer than the running"), "{e}");

    // the new updater reverts to the previous one (and could go forward again)
    let r = json(&ok(d.updater().args(["self-update", "--revert", "--json"])));
    assert_eq!(r["action"], "reverted", "{r}");
    assert_eq!(r["version"], VERSION);
    assert_eq!(r["replaced_version"], newer.as_str());
    d.assert_unchanged();
    assert_eq!(
        fs::read(d.bin.with_file_name("stoa-updater.previous")).unwrap(),
        fs::read(&tool).unwrap()
    );

    // audited: the install, the refusal and the revert
    let runs = d.audited();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[0]["result"], "ok");
    assert_eq!(runs[0]["release"], "stoa-platform 2.4.0");
    assert!(
        runs[0]["notes"][0]
            .as_str()
            .unwrap()
            .contains(&format!("is stoa-updater {newer} (was {VERSION}")),
        "{runs:?}"
    );
    assert_eq!(runs[1]["result"], "failed");
    assert_eq!(runs[2]["result"], "ok");
}

/// The versioning rule (docs/FORMAT.md *Versioning*): a bundle of the
/// format version after the newest this updater reads, with an unknown
/// top-level field, is refused by every command, and self-update installs
/// its updater from the frozen subset.
#[test]
fn an_updater_of_today_installs_the_updater_of_a_newer_format() {
    let d = Desk::new();
    let newer = with_digits('9');
    let tool = d.updater_reporting(&newer, "next-updater");
    let good = d.bundle("3.0.0", &tool, &newer);
    let future = resigned(&d, &good, "future.tar.zst", |m| {
        m["format_version"] = (stoa_format::DELTA_FORMAT_VERSION + 1).into();
        m["workloads"] = serde_json::json!([{"kind": "something new"}]);
        m["release"]["channel"] = "stable".into();
    });
    let e = fails(
        harness::updater()
            .arg("verify")
            .arg(&future)
            .arg("--trust")
            .arg(d.path().join("trust")),
        1,
    );
    assert!(
        e.contains(&format!(
            "format version {} is newer than this tool reads",
            stoa_format::DELTA_FORMAT_VERSION + 1
        )),
        "{e}"
    );
    fails(harness::updater().arg("inspect").arg(&future), 1);
    let e = fails(d.updater().arg("plan").arg(&future), 1);
    assert!(e.contains("newer than this tool reads"), "{e}");

    let r = json(&ok(d
        .updater()
        .arg("self-update")
        .arg(&future)
        .arg("--json")));
    assert_eq!(r["action"], "installed", "{r}");
    assert_eq!(r["newer_format"], true);
    assert_eq!(r["format_version"], stoa_format::DELTA_FORMAT_VERSION + 1);
    assert_eq!(fs::read(&d.bin).unwrap(), fs::read(&tool).unwrap());
    // the site's state is untouched but the audit log
    assert!(!d.state.join("state.json").exists());

    // the frozen subset is still signed content: an edit breaks the signature
    let b = Base::from_file(&future, &d.key);
    let mut entries = read_tar(&decompress(&b.bundle));
    let text = String::from_utf8(entries[0].data.clone()).unwrap();
    entries[0].data = text.replacen("3.0.0", "3.0.1", 1).into_bytes();
    let forged = d.path().join("forged.tar.zst");
    fs::write(&forged, compress(&write_tar(&entries))).unwrap();
    let e = fails(
        d.updater()
            .arg("self-update")
            .arg(&forged)
            .arg("--allow-downgrade"),
        1,
    );
    assert!(e.contains("signature"), "{e}");
}

/// Security rule: the carried updater must be an ELF executable for this
/// platform. Fixtures: a shell script that prints a newer version, and the
/// real updater with its ELF machine changed to AArch64; both signed.
#[test]
fn a_carried_updater_that_is_not_an_elf_for_this_platform_is_refused() {
    let d = Desk::new();
    let newer = with_digits('9');
    let tool = d.updater_reporting(&newer, "next-updater");
    let good = d.bundle("2.4.0", &tool, &newer);
    let script = format!("#!/bin/sh\necho stoa-updater {newer}\n");
    let mut arm = fs::read(&tool).unwrap();
    arm[18..20].copy_from_slice(&183u16.to_le_bytes());
    for (name, data, says) in [
        (
            "script.tar.zst",
            script.into_bytes(),
            "not an ELF executable",
        ),
        (
            "aarch64.tar.zst",
            arm,
            "ELF for AArch64, not for linux/amd64",
        ),
    ] {
        let b = signed_with_tool(&d, &good, &data, name);
        let e = fails(d.updater().arg("self-update").arg(&b), 5);
        assert!(
            e.contains("failed the elf check") && e.contains(says),
            "{name}: {e}"
        );
        d.assert_unchanged();
    }
    // and the bundler refuses to carry either
    let dir = d.path().join("rel-bad");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("script"), "#!/bin/sh\necho stoa-updater 9.9.9\n").unwrap();
    let m = Release::stoa("2.4.1")
        .table(
            Table::new("tools")
                .str("name", "stoa-updater")
                .str("source", "script")
                .str("platform", "linux/amd64")
                .str("version", "9.9.9"),
        )
        .write(&dir);
    let e = fails(
        &mut harness::bundler_build(&m, &d.key, &dir.join("b.tar.zst")),
        2,
    );
    assert!(e.contains("not an ELF executable"), "{e}");
}

/// Security rule: the new binary runs (`--version`) before it replaces the
/// running one and must exit 0 reporting its signed version. Fixtures:
/// /bin/true (exit 0, prints nothing), /bin/false (exit 1), and a real
/// updater whose record claims another version than it reports.
#[test]
fn a_carried_updater_that_fails_its_smoke_test_is_refused() {
    let d = Desk::new();
    let newer = with_digits('9');
    let tool = d.updater_reporting(&newer, "next-updater");
    let good = d.bundle("2.4.0", &tool, &newer);
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "true.tar.zst",
            fs::read("/bin/true").unwrap(),
            "printed no version".into(),
        ),
        (
            "false.tar.zst",
            fs::read("/bin/false").unwrap(),
            "exit status: 1".into(),
        ),
        (
            "liar.tar.zst",
            d.original.clone(),
            format!("the new updater reports {VERSION}, its signed record says {newer}"),
        ),
    ];
    for (name, data, says) in cases {
        let b = signed_with_tool(&d, &good, &data, name);
        let e = fails(d.updater().arg("self-update").arg(&b), 5);
        assert!(
            e.contains("failed the smoke-test check") && e.contains(&says),
            "{name}: {e}"
        );
        d.assert_unchanged();
    }
    // the bundler runs it too (this host's platform) and refuses a lie
    let dir = d.path().join("rel-liar");
    fs::create_dir_all(&dir).unwrap();
    let m = Release::stoa("2.4.1")
        .table(
            Table::new("tools")
                .str("name", "stoa-updater")
                .str("source", &d.bin.display().to_string())
                .str("platform", "linux/amd64")
                .str("version", &newer),
        )
        .write(&dir);
    let e = fails(
        &mut harness::bundler_build(&m, &d.key, &dir.join("b.tar.zst")),
        2,
    );
    assert!(
        e.contains(&format!(
            "reports {VERSION}, the release manifest says {newer}"
        )),
        "{e}"
    );
}

/// Policy: an older (or the same) updater is refused with exit 5 before
/// the bundle's content is read; `--allow-downgrade` installs it.
#[test]
fn an_older_carried_updater_is_refused_unless_allowed() {
    let d = Desk::new();
    let older = with_digits('0');
    assert_ne!(older, VERSION, "the workspace version has no older one");
    let tool = d.updater_reporting(&older, "old-updater");
    let bundle = d.bundle("2.4.0", &tool, &older);
    let e = fails(d.updater().arg("self-update").arg(&bundle).arg("--json"), 5);
    assert!(
        e.contains(&format!(
            "stoa-updater {older} is not newer than the running {VERSION}"
        )),
        "{e}"
    );
    d.assert_unchanged();
    let r = json(&ok(d
        .updater()
        .arg("self-update")
        .arg(&bundle)
        .args(["--allow-downgrade", "--json"])));
    assert_eq!(r["version"], older.as_str(), "{r}");
    assert_eq!(fs::read(&d.bin).unwrap(), fs::read(&tool).unwrap());
}

/// Security rule: the carried binary is signed content. Fixture: one byte
/// of the tool entry flipped in the tar, not re-signed: the digest check
/// refuses it (exit 1) and nothing is installed.
#[test]
fn altered_updater_bytes_are_refused_by_the_digest_check() {
    let d = Desk::new();
    let newer = with_digits('9');
    let tool = d.updater_reporting(&newer, "next-updater");
    let good = d.bundle("2.4.0", &tool, &newer);
    let b = Base::from_file(&good, &d.key);
    let mut entries = read_tar(&decompress(&b.bundle));
    let t = entries.iter_mut().find(|e| e.name == TOOL_ENTRY).unwrap();
    let mid = t.data.len() / 2;
    t.data[mid] ^= 0x01;
    let altered = d.path().join("altered.tar.zst");
    fs::write(&altered, compress(&write_tar(&entries))).unwrap();
    let out = run(d.updater().arg("self-update").arg(&altered).arg("--json"));
    assert_eq!(out.status.code(), Some(1));
    let j = json(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(j["error"]["kind"], "digest", "{j}");
    assert!(
        j["error"]["message"].as_str().unwrap().contains(TOOL_ENTRY),
        "{j}"
    );
    d.assert_unchanged();
}

/// A disk that fills while the new binary is written (a tmpfs just large
/// enough for the running updater, in a private mount namespace): the
/// write fails with ENOSPC, the temp file goes, the running updater stays
/// and runs.
#[test]
fn a_disk_full_during_the_swap_leaves_the_running_updater() {
    harness::require("unshare", "util-linux");
    let d = Desk::new();
    let newer = with_digits('9');
    let tool = d.updater_reporting(&newer, "next-updater");
    let bundle = d.bundle("2.4.0", &tool, &newer);
    let small = d.path().join("small");
    fs::create_dir_all(&small).unwrap();
    let kib = d.original.len() / 1024 + 256;
    let script = r#"set -e
mount -t tmpfs -o size="$5"k tmpfs "$1"
cp "$2" "$1/stoa-updater"
set +e
"$1/stoa-updater" --config "$3" self-update "$4" --json
echo "exit=$?"
"$1/stoa-updater" --version
cmp -s "$2" "$1/stoa-updater" && echo unchanged
ls -A "$1"
"#;
    let is_root = ok(Command::new("id").arg("-u")).trim() == "0";
    let mut c = Command::new("unshare");
    c.arg("--mount");
    if !is_root {
        c.arg("--map-root-user");
    }
    c.args(["sh", "-c", script, "sh"])
        .arg(&small)
        .arg(&d.bin)
        .arg(&d.config)
        .arg(&bundle)
        .arg(kib.to_string())
        .stdin(Stdio::null());
    let out = ok(&mut c);
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.contains("\nexit=3\n"), "{out}");
    assert!(out.contains(&format!("stoa-updater {VERSION} ")), "{out}");
    assert!(
        out.contains("\nunchanged\nstoa-updater\n"),
        "nothing left beside it: {out}"
    );
}

/// kill -9 between the write and the rename (the debug-build hook
/// `STOA_UPDATER_TEST_CRASH_AFTER=self-update:written`, the crash tests'
/// one mechanism): the running updater stays and runs; the next
/// self-update removes the temp file the killed one left and installs.
#[test]
fn a_kill_between_write_and_rename_leaves_the_running_updater() {
    let d = Desk::new();
    let newer = with_digits('9');
    let tool = d.updater_reporting(&newer, "next-updater");
    let bundle = d.bundle("2.4.0", &tool, &newer);
    let out = run(d
        .updater()
        .arg("self-update")
        .arg(&bundle)
        .env("STOA_UPDATER_TEST_CRASH_AFTER", "self-update:written"));
    assert!(
        out.status.code().is_none(),
        "expected the hook to abort: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(&d.bin).unwrap(), d.original);
    ok(Command::new(&d.bin).arg("--version"));
    let left = d.leftovers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".stoa-updater.partial-"), "{left:?}");
    assert!(!d.bin.with_file_name("stoa-updater.previous").exists());

    let text = ok(d.updater().arg("self-update").arg(&bundle));
    assert!(
        text.contains(&format!(
            "removed {}",
            d.bin.with_file_name(&left[0]).display()
        )),
        "{text}"
    );
    assert_eq!(fs::read(&d.bin).unwrap(), fs::read(&tool).unwrap());
    assert_eq!(d.leftovers(), Vec::<String>::new());
    // the killed run is in the audit log as interrupted
    let runs = d.audited();
    assert_eq!(runs[0]["result"], "interrupted", "{runs:?}");
    assert_eq!(runs[1]["result"], "ok", "{runs:?}");
}

/// Refused (busy, exit 4) while another process holds the site lock, as an
/// apply does; the running updater stays.
#[test]
fn self_update_is_refused_while_an_operation_holds_the_site_lock() {
    harness::require("flock", "util-linux");
    let d = Desk::new();
    let newer = with_digits('9');
    let tool = d.updater_reporting(&newer, "next-updater");
    let bundle = d.bundle("2.4.0", &tool, &newer);
    fs::create_dir_all(&d.state).unwrap();
    let lock = d.state.join("lock");
    // --no-fork: the lock dies with the process killed below
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&lock)
        .args(["sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // wait until it holds the lock
    let t0 = std::time::Instant::now();
    while run(Command::new("flock").args(["-n"]).arg(&lock).arg("true"))
        .status
        .success()
    {
        assert!(t0.elapsed().as_secs() < 10, "flock did not take the lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let e = fails(d.updater().arg("self-update").arg(&bundle), 4);
    assert!(e.contains("busy"), "{e}");
    let e = fails(d.updater().args(["self-update", "--revert"]), 4);
    assert!(e.contains("busy"), "{e}");
    let _ = holder.kill();
    let _ = holder.wait();
    d.assert_unchanged();
    // free again: --revert without a previous one is refused (exit 5)
    let e = fails(d.updater().args(["self-update", "--revert"]), 5);
    assert!(e.contains("no previous updater"), "{e}");
}
