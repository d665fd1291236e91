//! The Debian packages (issue 24, item 4): `scripts/package.sh OUT_DIR`
//! with `STOA_BIN_DIR` at the built debug binaries writes
//! `stoa-updater_<v>_<arch>.deb` and `stoa-bundler_<v>_<arch>.deb`; their
//! control fields, file lists, modes and owners are what
//! docs/OPERATIONS.md (*Install on the offline admin host*) says; real
//! `dpkg -i` installs both into a scratch root (`--root`, its own admindir
//! and log, nothing of the host touched, root or not) where the installed
//! binaries run, `dpkg -V` finds every file as packaged, and the systemd
//! unit is not enabled; two builds with one `SOURCE_DATE_EPOCH` are
//! byte-identical (sha256); a `STOA_BIN_DIR` missing a binary is refused
//! in one line. The unit and example config shipped are the very text
//! OPERATIONS.md shows.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use stoa_e2e::harness::{bin_dir, ok, repo_root, require, run};

const EPOCH: &str = "1767225600"; // 2026-01-01 00:00:00 UTC
const VERSION: &str = env!("CARGO_PKG_VERSION"); // the workspace version

fn arch() -> String {
    ok(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_owned()
}

/// `scripts/package.sh <out>` with the debug binaries and a fixed epoch.
fn package_sh(out: &Path, bin_dir: &Path) -> Command {
    let mut c = Command::new("bash");
    c.arg(repo_root().join("scripts/package.sh"))
        .arg(out)
        .env("STOA_BIN_DIR", bin_dir)
        .env("SOURCE_DATE_EPOCH", EPOCH);
    c
}

fn build(out: &Path, tmpdir: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(tmpdir).unwrap();
    let printed = ok(package_sh(out, &bin_dir()).env("TMPDIR", tmpdir));
    let a = arch();
    let updater = out.join(format!("stoa-updater_{VERSION}_{a}.deb"));
    let bundler = out.join(format!("stoa-bundler_{VERSION}_{a}.deb"));
    for deb in [&updater, &bundler] {
        assert!(deb.is_file(), "{} not written: {printed}", deb.display());
        assert!(printed.contains(&deb.display().to_string()), "{printed}");
    }
    (updater, bundler)
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .trim()
        .to_owned()
}

/// One line of `dpkg-deb --contents`: mode, owner, mtime, path.
#[derive(Debug)]
struct Member {
    mode: String,
    owner: String,
    mtime: String,
    path: String,
}

fn contents(deb: &Path) -> Vec<Member> {
    let text = ok(Command::new("dpkg-deb")
        .arg("--contents")
        .arg(deb)
        .env("TZ", "UTC"));
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() == 6, "unexpected dpkg-deb --contents line: {l}");
            Member {
                mode: f[0].to_owned(),
                owner: f[1].to_owned(),
                mtime: format!("{} {}", f[3], f[4]),
                path: f[5].trim_start_matches("./").to_owned(),
            }
        })
        .collect()
}

/// The files (not folders) a package of `program` must hold: its man pages
/// as the binary writes them, completions, doc, plus `extra`.
fn expected_files(program: &str, tmp: &Path, extra: &[&str]) -> BTreeSet<String> {
    let man = tmp.join(format!("man-{program}"));
    fs::create_dir_all(&man).unwrap();
    ok(Command::new(bin_dir().join(program))
        .args(["man", "--out"])
        .arg(&man));
    let mut want: BTreeSet<String> = fs::read_dir(&man)
        .unwrap()
        .map(|e| {
            format!(
                "usr/share/man/man1/{}.gz",
                e.unwrap().file_name().to_string_lossy()
            )
        })
        .collect();
    assert!(want.len() > 5, "{program} man wrote {want:?}");
    for f in [
        format!("usr/bin/{program}"),
        format!("usr/share/bash-completion/completions/{program}"),
        format!("usr/share/zsh/vendor-completions/_{program}"),
        format!("usr/share/fish/vendor_completions.d/{program}.fish"),
        format!("usr/share/doc/{program}/copyright"),
        format!("usr/share/doc/{program}/changelog.gz"),
    ] {
        want.insert(f);
    }
    want.extend(extra.iter().map(|s| s.to_string()));
    want
}

/// The control members of a package (`control`, `md5sums`, …).
fn control_members(deb: &Path, tmp: &Path) -> BTreeSet<String> {
    let dir = tmp.join(format!(
        "control-{}",
        deb.file_name().unwrap().to_string_lossy()
    ));
    ok(Command::new("dpkg-deb").arg("--control").arg(deb).arg(&dir));
    fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn check_package(deb: &Path, program: &str, tmp: &Path, extra: &[&str]) {
    assert_eq!(field(deb, "Package"), program);
    assert_eq!(field(deb, "Version"), VERSION);
    assert_eq!(field(deb, "Architecture"), arch());
    assert_eq!(field(deb, "Section"), "admin");
    assert!(!field(deb, "Maintainer").is_empty());
    assert!(
        field(deb, "Description").lines().count() > 1,
        "a synopsis and an extended description"
    );
    let size: u64 = field(deb, "Installed-Size").parse().unwrap();
    assert!(size > 1, "Installed-Size {size}");
    let depends = field(deb, "Depends");
    assert!(depends.contains("libc6 (>= 2."), "{program}: {depends}");

    let members = contents(deb);
    let mut files = BTreeSet::new();
    for m in &members {
        assert_eq!(m.owner, "root/root", "{program}: {m:?}");
        assert_eq!(
            m.mtime, "2026-01-01 00:00",
            "{program}: every mtime is SOURCE_DATE_EPOCH: {m:?}"
        );
        let want_mode = if m.mode.starts_with('d') {
            "drwxr-xr-x"
        } else if m.path == format!("usr/bin/{program}") {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(m.mode, want_mode, "{program}: {m:?}");
        if !m.mode.starts_with('d') {
            files.insert(m.path.clone());
        }
    }
    assert_eq!(
        files,
        expected_files(program, tmp, extra),
        "{program}: file list"
    );
    let mut want_control: BTreeSet<String> = ["control", "md5sums"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if extra.iter().any(|f| f.starts_with("etc/")) {
        want_control.insert("conffiles".into());
    }
    assert_eq!(
        control_members(deb, tmp),
        want_control,
        "{program}: no maintainer scripts (nothing enabled or started at install)"
    );
}

/// `dpkg` on the scratch root `root` with its own admindir and log: never
/// the host's database, root or not.
fn dpkg(root: &Path) -> Command {
    let mut c = Command::new("dpkg");
    let path = std::env::var("PATH").unwrap_or_default();
    // dpkg wants ldconfig and start-stop-daemon on PATH (sbin for non-root)
    c.env("PATH", format!("{path}:/usr/sbin:/sbin"))
        .arg(format!("--root={}", root.display()))
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .arg(format!("--log={}", root.join("var/log/dpkg.log").display()));
    c
}

fn gunzip(path: &Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text
}

#[test]
fn package_sh_builds_debs_that_dpkg_installs_into_a_scratch_root_and_that_run() {
    require("dpkg-deb", "dpkg");
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (updater_deb, bundler_deb) = build(&t.join("out"), &t.join("tmp1"));

    check_package(
        &updater_deb,
        "stoa-updater",
        t,
        &[
            "etc/stoa/updater.toml.example",
            "usr/lib/systemd/system/stoa-updater-serve.service",
        ],
    );
    check_package(&bundler_deb, "stoa-bundler", t, &[]);
    let depends = field(&updater_deb, "Depends");
    for dep in ["postgresql-client", "util-linux (>= 2.33)"] {
        assert!(depends.contains(dep), "updater Depends: {depends}");
    }
    let ctl = t.join("control-".to_owned() + &updater_deb.file_name().unwrap().to_string_lossy());
    assert_eq!(
        fs::read_to_string(ctl.join("conffiles")).unwrap(),
        "/etc/stoa/updater.toml.example\n"
    );

    // install both with real dpkg into a scratch root
    let root = t.join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    ok(dpkg(&root)
        .args([
            "--force-not-root",
            "--force-depends",
            "--force-script-chrootless",
            // a host dpkg.cfg.d may exclude /usr/share/{man,doc} (slim images)
            "--path-include=*",
            "-i",
        ])
        .arg(&updater_deb)
        .arg(&bundler_deb));
    for p in ["stoa-updater", "stoa-bundler"] {
        let status = ok(dpkg(&root).args(["--status", p]));
        assert!(
            status.contains("Status: install ok installed"),
            "{p}: {status}"
        );
        // every file as packaged (md5sums right)
        let verify = run(dpkg(&root).args(["--verify", p]));
        assert!(
            verify.status.success() && verify.stdout.is_empty(),
            "dpkg --verify {p}: {verify:?}"
        );
        let version = ok(Command::new(root.join("usr/bin").join(p)).arg("--version"));
        assert!(
            version.starts_with(&format!("{p} {VERSION} (reads ")),
            "installed {p} --version: {version}"
        );
        let page = gunzip(&root.join(format!("usr/share/man/man1/{p}.1.gz")));
        assert!(page.contains(".TH") && page.contains(p), "{p}.1: {page}");
        for c in [
            format!("usr/share/bash-completion/completions/{p}"),
            format!("usr/share/zsh/vendor-completions/_{p}"),
            format!("usr/share/fish/vendor_completions.d/{p}.fish"),
        ] {
            let text = fs::read_to_string(root.join(&c)).unwrap();
            assert!(text.contains(p), "{c} is empty or not {p}'s: {text}");
        }
        let changelog = gunzip(&root.join(format!("usr/share/doc/{p}/changelog.gz")));
        assert!(
            changelog.starts_with(&format!("{p} ({VERSION}) ")),
            "{changelog}"
        );
    }
    let deb_src = repo_root().join("scripts/deb");
    assert_eq!(
        fs::read(root.join("etc/stoa/updater.toml.example")).unwrap(),
        fs::read(deb_src.join("updater.toml.example")).unwrap()
    );
    assert_eq!(
        fs::read(root.join("usr/lib/systemd/system/stoa-updater-serve.service")).unwrap(),
        fs::read(deb_src.join("stoa-updater-serve.service")).unwrap()
    );
    assert!(
        !root.join("etc/stoa/updater.toml").exists(),
        "the package configures nothing by itself"
    );
    assert!(
        !root
            .join("etc/systemd/system/multi-user.target.wants")
            .exists(),
        "the serve unit is installed, never enabled"
    );

    // reproducible: a second build (another staging folder) is byte-identical
    let first = [sha256(&updater_deb), sha256(&bundler_deb)];
    let (u2, b2) = build(&t.join("out2"), &t.join("tmp2"));
    let second = [sha256(&u2), sha256(&b2)];
    eprintln!(
        "SOURCE_DATE_EPOCH={EPOCH}: sha256 {} {} (first build), {} {} (second)",
        first[0], first[1], second[0], second[1]
    );
    assert_eq!(first, second, "two builds differ");
}

#[test]
fn package_sh_refuses_a_bin_dir_without_both_programs_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = tmp.path().join("bins");
    fs::create_dir_all(&bins).unwrap();
    fs::copy(bin_dir().join("stoa-updater"), bins.join("stoa-updater")).unwrap();
    let out = tmp.path().join("out");
    let r = run(&mut package_sh(&out, &bins));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{r:?}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("package.sh: error: ") && stderr.contains("stoa-bundler"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}

/// The text between the first fence opening with `fence` after `heading`
/// in docs/OPERATIONS.md and its closing fence.
fn docs_block(heading: &str, fence: &str, after: &str) -> String {
    let docs = fs::read_to_string(repo_root().join("docs/OPERATIONS.md")).unwrap();
    let from = docs.find(heading).unwrap_or_else(|| panic!("no {heading}"));
    let from = from
        + docs[from..]
            .find(after)
            .unwrap_or_else(|| panic!("no {after}"));
    let open = from + docs[from..].find(fence).unwrap() + fence.len() + 1;
    let close = open + docs[open..].find("\n```\n").unwrap() + 1;
    docs[open..close].to_owned()
}

#[test]
fn the_shipped_unit_and_example_config_are_the_ones_operations_md_shows() {
    let deb_src = repo_root().join("scripts/deb");
    assert_eq!(
        docs_block("## Site configuration", "```toml", "## Site configuration"),
        fs::read_to_string(deb_src.join("updater.toml.example")).unwrap(),
        "docs/OPERATIONS.md *Site configuration* and scripts/deb/updater.toml.example differ"
    );
    assert_eq!(
        docs_block("## Serving the store", "```ini", "A systemd unit"),
        fs::read_to_string(deb_src.join("stoa-updater-serve.service")).unwrap(),
        "docs/OPERATIONS.md *Serving the store* and scripts/deb/stoa-updater-serve.service differ"
    );
}
