//! Delta fixtures (issue 10): a delta whose signed manifest lists an
//! omitted entry with a digest that does not match its blob path, and the
//! site-side damage a delta must notice: a store blob pruned (removed) or
//! damaged (one byte flipped). Each is made from a good delta or site, so
//! the test can compare "before" and "after".

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use stoa_format::SigningKeyPair;

use crate::tamper::{compress, decompress, read_tar, write_tar, RawEntry};

/// The omitted entries of a delta bundle, as `inspect --json` lists them.
pub fn omitted(bundle: &Path) -> Vec<serde_json::Value> {
    let out = crate::harness::ok(
        crate::harness::updater()
            .arg("inspect")
            .arg(bundle)
            .arg("--json"),
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
    v["delta"]["omitted"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The first omitted OCI blob of a delta (path, sha256 hex), preferring a
/// large one (a layer).
pub fn omitted_blob(bundle: &Path) -> (String, String) {
    let mut v: Vec<_> = omitted(bundle)
        .into_iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("oci/blobs/"))
        })
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e["size"].as_u64().unwrap_or(0)));
    let e = v.first().expect("the delta omits an OCI blob");
    (
        e["path"].as_str().unwrap_or_default().to_owned(),
        e["sha256"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `delta-omitted-bad-digest`: the delta's manifest lists the omitted blob
/// `path` with a sha256 that is not the one its path names, re-signed with
/// the release key (what a holder of the key could ship). Written to `out`.
pub fn omitted_bad_digest(delta: &Path, path: &str, key: &Path, out: &Path) -> PathBuf {
    let key = SigningKeyPair::load(key).expect("key");
    let mut entries: Vec<RawEntry> = read_tar(&decompress(&fs::read(delta).expect("delta")));
    let mut m: serde_json::Value = serde_json::from_slice(&entries[0].data).expect("manifest");
    let list = m["delta"]["omitted"].as_array_mut().expect("a delta");
    let e = list
        .iter_mut()
        .find(|e| e["path"] == path)
        .expect("the omitted blob");
    e["sha256"] = "0".repeat(64).into();
    let mut bytes = serde_json::to_vec_pretty(&m).expect("json");
    bytes.push(b'\n');
    let sig = key.sign(&bytes);
    entries[0].data = bytes;
    let si = entries
        .iter()
        .position(|e| e.name.starts_with("signatures/"))
        .expect("a signature");
    entries[si] = RawEntry::file(&format!("signatures/{}.sig", key.id()), &sig);
    fs::write(out, compress(&write_tar(&entries))).expect("write fixture");
    out.to_owned()
}

/// Removes a blob from a site's store, as a prune (or an operator) would.
pub fn prune_blob(state_dir: &Path, hex: &str) {
    fs::remove_file(state_dir.join("store/sha256").join(hex)).expect("stored blob");
}

/// Flips one byte of a stored blob (bit rot).
pub fn damage_blob(state_dir: &Path, hex: &str) {
    let p = state_dir.join("store/sha256").join(hex);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut b = fs::read(&p).expect("stored blob");
    let i = b.len() / 2;
    b[i] ^= 0x01;
    fs::write(&p, b).expect("write");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).expect("chmod");
}

/// Every file under the state folder with its size and content hash, minus
/// the lock and the audit log (which record the refused attempt itself):
/// "nothing on site changed" is this before and after.
pub fn state_snapshot(state_dir: &Path) -> Vec<(String, u64, String)> {
    use sha2::Digest;
    let mut out = Vec::new();
    let mut stack = vec![state_dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(state_dir)
                .unwrap_or(&p)
                .display()
                .to_string();
            if rel.contains("lock") || rel.starts_with("audit") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let b = fs::read(&p).unwrap_or_default();
                out.push((rel, b.len() as u64, hex::encode(sha2::Sha256::digest(&b))));
            }
        }
    }
    out.sort();
    out
}
