//! Issue 10, sneakernet: split parts with a signed index, every reader
//! taking parts, Reed–Solomon parity and repair. One named test per bad part
//! set (tests/src/parts_fixture.rs): refused with exit 1 by verify, naming
//! the part, no panic, and extract leaves nothing behind.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use stoa_e2e::harness::{bundler, fails, ok, run, updater};
use stoa_e2e::parts_fixture::{self as pf, PartsCtx, PartsFixture, V};

const PAYLOAD: usize = 5 * (1 << 20) + 300_000;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ctx: PartsCtx,
    fixtures: Vec<PartsFixture>,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        ok(bundler().args(["keygen", "--out"]).arg(root.join("signer")));
        ok(bundler()
            .args(["keygen", "--out"])
            .arg(root.join("stranger")));
        let key = root.join("signer.key");
        let rel = pf::write_big_release(&root.join("src-2.3.0"), V, PAYLOAD);
        pf::build_split(&rel, &key, &root.join("good"), V, 1);
        let rel = pf::write_big_release(&root.join("src-2.1.0"), "2.1.0", PAYLOAD);
        pf::build_split(&rel, &key, &root.join("good-2.1.0"), "2.1.0", 0);
        let ctx = PartsCtx {
            good: root.join("good"),
            good_210: root.join("good-2.1.0"),
            signer: key,
            stranger: root.join("stranger.key"),
            root: root.join("negative"),
        };
        let fixtures = pf::all(&ctx);
        Setup {
            _dir: dir,
            root,
            ctx,
            fixtures,
        }
    })
}

fn trust() -> PathBuf {
    setup().root.join("signer.pub")
}

fn check(name: &str) {
    let s = setup();
    let f = s
        .fixtures
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"));
    let out = run(updater()
        .arg("verify")
        .args(&f.args)
        .arg("--trust")
        .arg(trust())
        .arg("--json"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("stoa-updater: error:"))
        .unwrap_or_else(|| panic!("{name}: no error line: {stderr}"));
    for e in &f.expect {
        assert!(line.contains(e.as_str()), "{name}: {line:?} lacks {e:?}");
    }
    let doc: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(doc["error"]["kind"], f.kind, "{name}: {doc}");
    // extract of it: exit 1 and no target folder
    let to = s.root.join(format!("x-{name}"));
    fails(
        updater()
            .arg("extract")
            .args(&f.args)
            .arg("--trust")
            .arg(trust())
            .arg("--to")
            .arg(&to),
        1,
    );
    assert!(!to.exists(), "{name}: extract left {to:?}");
}

#[test]
fn truncated_part() {
    check("truncated_part");
}
#[test]
fn zero_length_part() {
    check("zero_length_part");
}
#[test]
fn reordered_parts() {
    check("reordered_parts");
}
#[test]
fn renamed_part() {
    check("renamed_part");
}
#[test]
fn damaged_part() {
    check("damaged_part");
}
#[test]
fn duplicated_part() {
    check("duplicated_part");
}
#[test]
fn foreign_part() {
    check("foreign_part");
}
#[test]
fn foreign_part_same_name() {
    check("foreign_part_same_name");
}
#[test]
fn unlisted_extra_part() {
    check("unlisted_extra_part");
}
#[test]
fn unknown_key_index() {
    check("unknown_key_index");
}
#[test]
fn part_size_overflow() {
    check("part_size_overflow");
    // plan on a site: the verification code (1), never a panic (101), and
    // the refusal is in the audit log
    let s = setup();
    let f = s
        .fixtures
        .iter()
        .find(|f| f.name == "part_size_overflow")
        .unwrap();
    let site = s.root.join("site-part-size-overflow");
    fs::create_dir_all(&site).unwrap();
    let cfg = site.join("updater.toml");
    fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\ntrust = \"{}\"\n",
            site.join("state").display(),
            trust().display()
        ),
    )
    .unwrap();
    let out = run(updater()
        .arg("--config")
        .arg(&cfg)
        .arg("plan")
        .args(&f.args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let log = fs::read_to_string(site.join("state/audit.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["command"], "plan", "{last}");
    assert_eq!(last["result"], "failed", "{last}");
    assert_eq!(last["exit_code"], 1, "{last}");
    assert_eq!(last["error_kind"], "parts-index", "{last}");
}

#[test]
fn parts_do_not_add_up() {
    check("parts_do_not_add_up");
}
#[test]
fn parity_damaged_as_well() {
    check("parity_damaged_as_well");
    // and repair refuses, naming both
    let s = setup();
    let d = s.ctx.root.join("parity_damaged_as_well");
    let e = fails(
        updater()
            .arg("repair")
            .arg(&d)
            .arg("--trust")
            .arg(trust())
            .arg("--out")
            .arg(s.root.join("rep-pdaw")),
        1,
    );
    assert!(
        e.contains("parity part 1 of 1")
            && e.contains("part 2 of 6")
            && e.contains("not repairable"),
        "{e}"
    );
}
#[test]
fn two_lost_one_parity() {
    check("two_lost_one_parity");
    let s = setup();
    let e = fails(
        updater()
            .arg("repair")
            .arg(s.ctx.root.join("two_lost_one_parity"))
            .arg("--trust")
            .arg(trust())
            .arg("--out")
            .arg(s.root.join("rep-tlop")),
        1,
    );
    assert!(
        e.contains("part 1 of 6") && e.contains("part 6 of 6") && e.contains("not repairable"),
        "{e}"
    );
}

fn cat_parts(dir: &Path, version: &str, n: usize) -> Vec<u8> {
    let mut all = Vec::new();
    for i in 1..=n {
        all.extend(fs::read(pf::part(dir, version, i)).unwrap());
    }
    all
}

#[test]
fn split_parts_concatenate_to_the_unsplit_build_and_split_command_agrees() {
    let s = setup();
    let d = s.root.join("same");
    fs::create_dir_all(&d).unwrap();
    let rel = s.root.join("src-2.3.0/release.toml");
    let single = d.join("single.tar.zst");
    let mut c = bundler();
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    ok(c.arg("build")
        .arg(&rel)
        .arg("--key")
        .arg(&s.ctx.signer)
        .arg("--out")
        .arg(&single)
        .arg("-q"));
    let mut c = bundler();
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    let split_out = d.join("split").join("stoa-platform-2.3.0.tar.zst");
    ok(c.arg("build")
        .arg(&rel)
        .arg("--key")
        .arg(&s.ctx.signer)
        .arg("--out")
        .arg(&split_out)
        .args(["--split", "1MiB", "-q"]));
    assert_eq!(
        cat_parts(&d.join("split"), V, 6),
        fs::read(&single).unwrap()
    );
    assert!(!pf::part(&d.join("split"), V, 7).exists());
    // split of the existing file: same parts, same index bytes
    let again = d.join("again");
    fs::create_dir_all(&again).unwrap();
    let named = again.join("stoa-platform-2.3.0.tar.zst");
    fs::copy(&single, &named).unwrap();
    ok(bundler()
        .arg("split")
        .arg(&named)
        .args(["--size", "1MiB", "--key"])
        .arg(&s.ctx.signer));
    assert_eq!(
        fs::read(pf::index(&again, V)).unwrap(),
        fs::read(pf::index(&d.join("split"), V)).unwrap()
    );
    // the index and its detached signature check with openssl
    let sig_line =
        fs::read_to_string(d.join("split/stoa-platform-2.3.0.tar.zst.parts.sig")).unwrap();
    let sig_hex = sig_line.split_whitespace().nth(1).unwrap();
    let sig = d.join("index.sig");
    fs::write(&sig, hex::decode(sig_hex).unwrap()).unwrap();
    let out = ok(std::process::Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(trust())
        .arg("-rawin")
        .arg("-in")
        .arg(pf::index(&d.join("split"), V))
        .arg("-sigfile")
        .arg(&sig));
    assert!(out.contains("Signature Verified Successfully"), "{out}");
    // sha256sum of the concatenation is the index's bundle sha256
    let idx: serde_json::Value =
        serde_json::from_slice(&fs::read(pf::index(&d.join("split"), V)).unwrap()).unwrap();
    let whole = stoa_format::Sha256Digest::of(&fs::read(&single).unwrap());
    assert_eq!(idx["bundle"]["sha256"], whole.hex());
}

#[test]
fn part_size_under_one_mib_is_a_usage_error() {
    let s = setup();
    let e = fails(
        bundler()
            .arg("build")
            .arg(s.root.join("src-2.3.0/release.toml"))
            .arg("--key")
            .arg(&s.ctx.signer)
            .arg("--out")
            .arg(s.root.join("tiny/x.tar.zst"))
            .args(["--split", "1000KiB"]),
        2,
    );
    assert!(e.contains("at least 1 MiB"), "{e}");
    fails(
        bundler()
            .arg("build")
            .arg(s.root.join("src-2.3.0/release.toml"))
            .arg("--key")
            .arg(&s.ctx.signer)
            .arg("--out")
            .arg(s.root.join("tiny/x.tar.zst"))
            .args(["--parity", "1"]),
        2,
    );
}

#[test]
fn every_reader_takes_the_index_the_folder_or_the_part_list() {
    let s = setup();
    let g = &s.ctx.good;
    let list: Vec<PathBuf> = (1..=6).rev().map(|n| pf::part(g, V, n)).collect();
    for args in [vec![g.clone()], vec![pf::index(g, V)], list.clone()] {
        let out = ok(updater()
            .arg("verify")
            .args(&args)
            .arg("--trust")
            .arg(trust())
            .arg("--json"));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["parts"]["parts"], 6, "{v}");
        assert_eq!(v["version"], V);
        let out = ok(bundler().arg("inspect").args(&args).arg("--json"));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["parts"]["parity"], 1, "{v}");
    }
    let to = s.root.join("extracted");
    ok(updater()
        .arg("extract")
        .args(&list)
        .arg("--trust")
        .arg(trust())
        .arg("--to")
        .arg(&to));
    assert_eq!(
        fs::read(to.join("files/data/payload.bin")).unwrap(),
        fs::read(s.root.join("src-2.3.0/payload.bin")).unwrap()
    );
}

#[test]
fn repair_rebuilds_a_damaged_and_a_missing_part_with_parity_2() {
    let s = setup();
    let d = s.root.join("rep2");
    fs::create_dir_all(&d).unwrap();
    pf::build_split(
        &s.root.join("src-2.3.0/release.toml"),
        &s.ctx.signer,
        &d,
        V,
        2,
    );
    let want = cat_parts(&d, V, 6);
    pf::flip(&pf::part(&d, V, 3), 77);
    fs::remove_file(pf::part(&d, V, 5)).unwrap();
    let e = fails(
        updater().arg("verify").arg(&d).arg("--trust").arg(trust()),
        1,
    );
    assert!(
        e.contains("2 parts bad")
            && e.contains("part 3 of 6 (stoa-platform-2.3.0.tar.zst.part003): sha256 mismatch")
            && e.contains("part 5 of 6 (stoa-platform-2.3.0.tar.zst.part005): missing")
            && e.contains("repairable: parity can rebuild up to 2"),
        "{e}"
    );
    // into another folder: only the rebuilt parts (and the index)
    let out = d.join("rebuilt");
    ok(updater()
        .arg("repair")
        .arg(&d)
        .arg("--trust")
        .arg(trust())
        .arg("--out")
        .arg(&out));
    assert!(pf::part(&out, V, 3).exists() && pf::part(&out, V, 5).exists());
    assert!(!pf::part(&out, V, 1).exists());
    let mut list: Vec<PathBuf> = [1, 2, 4, 6].iter().map(|&n| pf::part(&d, V, n)).collect();
    list.push(pf::part(&out, V, 3));
    list.push(pf::part(&out, V, 5));
    ok(updater()
        .arg("verify")
        .args(&list)
        .arg("--trust")
        .arg(trust()));
    // in place
    ok(updater()
        .arg("repair")
        .arg(&d)
        .arg("--trust")
        .arg(trust())
        .arg("--out")
        .arg(&d));
    assert_eq!(cat_parts(&d, V, 6), want);
    ok(updater().arg("verify").arg(&d).arg("--trust").arg(trust()));
}

#[test]
fn missing_parity_part_alone_is_a_warning() {
    let s = setup();
    let d = s.root.join("nopar");
    pf::copy_dir(&s.ctx.good, &d);
    fs::remove_file(pf::parity(&d, V, 1)).unwrap();
    let out = run(updater().arg("verify").arg(&d).arg("--trust").arg(trust()));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: parity part 1 of 1"));
}

/// A site bundle (`Site::bundle`) rebuilt with a 3 MiB payload file and split
/// into 1 MiB parts with one parity part, in `dir`.
fn site_split(s: &stoa_e2e::site::Site, version: &str, dir: &Path) -> PathBuf {
    let b = s.bundle(version, None);
    // the release manifest Site::bundle wrote for it
    let n = b
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches(&format!("stoa-platform-{version}-"))
        .trim_end_matches(".tar.zst")
        .to_owned();
    let mf = s.path().join(format!("release-{version}-{n}.toml"));
    let payload = s.path().join(format!("payload-{version}.bin"));
    fs::write(&payload, pf::noise(3 << 20, version)).unwrap();
    let mut text = fs::read_to_string(&mf).unwrap();
    text.push_str(&format!(
        "\n[[files]]\nsource = \"{}\"\ndest = \"share/payload.bin\"\n",
        payload.display()
    ));
    let mf2 = s.path().join(format!("release-{version}-big.toml"));
    fs::write(&mf2, text).unwrap();
    pf::build_split(&mf2, &s.key, dir, version, 1)
}

#[test]
fn apply_from_parts_refuses_a_bad_part_before_any_change_then_applies_after_repair() {
    let s = stoa_e2e::site::Site::start();
    let d = s.path().join("medium");
    site_split(&s, "2.0.0", &d);
    let v = "2.0.0";
    pf::flip(&pf::part(&d, v, 2), 5000);
    let e = fails(s.updater().arg("plan").arg(&d), 1);
    assert!(
        e.contains("(stoa-platform-2.0.0.tar.zst.part002): sha256 mismatch"),
        "{e}"
    );
    let e = fails(s.updater().arg("apply").arg(&d), 1);
    assert!(e.contains("part 2 of ") && e.contains("repairable"), "{e}");
    assert_eq!(s.installed(), None);
    assert!(s.tables().is_empty(), "{:?}", s.tables());
    assert_eq!(s.helm_revision("stoa-api"), None);
    let trust = s.path().join("trust");
    ok(updater()
        .arg("repair")
        .arg(&d)
        .arg("--trust")
        .arg(&trust)
        .arg("--out")
        .arg(&d));
    ok(s.updater().arg("plan").arg(&d));
    let list: Vec<PathBuf> = (1..)
        .map(|n| pf::part(&d, v, n))
        .take_while(|p| p.exists())
        .collect();
    assert!(list.len() >= 4, "{list:?}");
    ok(s.updater().arg("apply").args(&list));
    assert_eq!(s.installed().as_deref(), Some("2.0.0"));
    assert_eq!(
        fs::read(s.state_dir.join("files/share/payload.bin")).unwrap(),
        fs::read(s.path().join("payload-2.0.0.bin")).unwrap()
    );
    assert_eq!(s.migration_ids(), ["0001"]);
}

/// Repair with one parity part rebuilds a lost part as the XOR of the others
/// (no input hashed first). A part damaged in place beside the lost one makes
/// the rebuilt part miss the signed SHA-256: repair then hashes every part,
/// names both, and leaves nothing behind.
#[test]
fn repair_with_one_parity_part_rebuilds_a_lost_part_and_names_a_hidden_damaged_one() {
    let s = setup();
    let want = cat_parts(&s.ctx.good, V, 6);
    let d = s.root.join("xor-one-lost");
    pf::copy_dir(&s.ctx.good, &d);
    fs::remove_file(pf::part(&d, V, 4)).unwrap();
    ok(updater()
        .arg("repair")
        .arg(&d)
        .arg("--trust")
        .arg(trust())
        .arg("--out")
        .arg(&d));
    assert_eq!(cat_parts(&d, V, 6), want);

    let d = s.root.join("xor-lost-and-damaged");
    pf::copy_dir(&s.ctx.good, &d);
    fs::remove_file(pf::part(&d, V, 4)).unwrap();
    pf::flip(&pf::part(&d, V, 2), 4242);
    let e = fails(
        updater()
            .arg("repair")
            .arg(&d)
            .arg("--trust")
            .arg(trust())
            .arg("--out")
            .arg(&d),
        1,
    );
    assert!(
        e.contains("part 2 of 6 (stoa-platform-2.3.0.tar.zst.part002): sha256 mismatch")
            && e.contains("part 4 of 6 (stoa-platform-2.3.0.tar.zst.part004): missing")
            && e.contains("not repairable"),
        "{e}"
    );
    assert!(!pf::part(&d, V, 4).exists());
    let left: Vec<String> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// With two parity parts, a lost part plus a part damaged in place: the
/// first pass (inputs not hashed) yields a part that misses the signed
/// SHA-256, so repair hashes every part, finds the damaged one and rebuilds
/// both through the decoder.
#[test]
fn repair_finds_a_damaged_input_beside_a_lost_part_and_rebuilds_both() {
    let s = setup();
    let d = s.root.join("rep2-hidden");
    fs::create_dir_all(&d).unwrap();
    pf::build_split(
        &s.root.join("src-2.3.0/release.toml"),
        &s.ctx.signer,
        &d,
        V,
        2,
    );
    let want = cat_parts(&d, V, 6);
    fs::remove_file(pf::part(&d, V, 5)).unwrap();
    pf::flip(&pf::part(&d, V, 2), 999);
    ok(updater()
        .arg("repair")
        .arg(&d)
        .arg("--trust")
        .arg(trust())
        .arg("--out")
        .arg(&d));
    assert_eq!(cat_parts(&d, V, 6), want);
    ok(updater().arg("verify").arg(&d).arg("--trust").arg(trust()));
}

/// Issue 21 item 14: `build --split` is a new build (its manifest's
/// `created` differs from the bundle QA tested) and says so, naming the
/// bundle it made (path, sha256, manifest digest); `split` of the tested
/// file keeps its manifest, as the courier's checklist asks.
#[test]
fn build_split_names_the_new_bundle_and_split_keeps_the_tested_one() {
    let s = setup();
    let d = s.root.join("courier");
    fs::create_dir_all(&d).unwrap();
    let rel = s.root.join("src-2.3.0/release.toml");
    // the bundle QA tested
    let tested = d.join("tested").join("stoa-platform-2.3.0.tar.zst");
    let mut c = bundler();
    c.env("SOURCE_DATE_EPOCH", "1700000000");
    let out = ok(c
        .arg("build")
        .arg(&rel)
        .arg("--key")
        .arg(&s.ctx.signer)
        .arg("--out")
        .arg(&tested)
        .arg("-q"));
    let tested_manifest = out
        .lines()
        .find_map(|l| l.strip_prefix("manifest sha256:"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    // a rebuild with --split a little later: a new manifest, and it says so
    let rebuilt = d.join("rebuilt").join("stoa-platform-2.3.0.tar.zst");
    let mut c = bundler();
    c.env("SOURCE_DATE_EPOCH", "1700000060");
    let out = ok(c
        .arg("build")
        .arg(&rel)
        .arg("--key")
        .arg(&s.ctx.signer)
        .arg("--out")
        .arg(&rebuilt)
        .args(["--split", "1MiB", "-q"]));
    let idx: serde_json::Value =
        serde_json::from_slice(&fs::read(pf::index(&d.join("rebuilt"), V)).unwrap()).unwrap();
    let new_manifest = idx["manifest_sha256"].as_str().unwrap();
    assert_ne!(new_manifest, tested_manifest, "created differs");
    let line = format!(
        "built a new bundle {} (stoa-platform {V}, created 2023-11-14T22:14:20Z): sha256:{}, manifest sha256:{new_manifest} (to carry a bundle already tested, split that file with `stoa-bundler split`)",
        rebuilt.display(),
        idx["bundle"]["sha256"].as_str().unwrap()
    );
    assert_eq!(out.lines().next(), Some(line.as_str()), "{out}");
    assert!(
        out.contains(&format!("manifest sha256:{new_manifest}\n")),
        "{out}"
    );
    let mut c = bundler();
    c.env("SOURCE_DATE_EPOCH", "1700000060");
    let doc: serde_json::Value = serde_json::from_str(&ok(c
        .arg("build")
        .arg(&rel)
        .arg("--key")
        .arg(&s.ctx.signer)
        .arg("--out")
        .arg(d.join("rebuilt-json").join("stoa-platform-2.3.0.tar.zst"))
        .args(["--split", "1MiB", "--json"])))
    .unwrap();
    assert_eq!(doc["built"], true, "{doc}");
    assert_eq!(doc["created"], "2023-11-14T22:14:20Z", "{doc}");
    assert_eq!(doc["manifest_sha256"], new_manifest, "{doc}");

    // split of the tested file: its own manifest, no "built" line
    let out = ok(bundler()
        .arg("split")
        .arg(&tested)
        .args(["--size", "1MiB", "--key"])
        .arg(&s.ctx.signer));
    assert!(!out.contains("built a new bundle"), "{out}");
    assert!(
        out.contains(&format!("manifest sha256:{tested_manifest}\n")),
        "{out}"
    );
    let idx: serde_json::Value =
        serde_json::from_slice(&fs::read(pf::index(&d.join("tested"), V)).unwrap()).unwrap();
    assert_eq!(idx["manifest_sha256"], tested_manifest.as_str());
    let doc: serde_json::Value = serde_json::from_str(&ok(bundler()
        .arg("split")
        .arg(&tested)
        .args(["--size", "1MiB", "--json", "--key"])
        .arg(&s.ctx.signer)
        .arg("--out-dir")
        .arg(d.join("tested-json"))))
    .unwrap();
    assert_eq!(doc["built"], false, "{doc}");
    assert_eq!(doc["manifest_sha256"], tested_manifest.as_str(), "{doc}");
}
