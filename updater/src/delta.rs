//! Delta bundles on site: before any change, every entry a delta omits
//! must be in the site's store with the size and SHA-256 the signed
//! manifest gives it (each stored file is re-hashed, as staging does);
//! otherwise `plan` and `apply` refuse, naming the missing or damaged blobs
//! and the releases that would provide them. Once the check passes, a delta
//! is applied exactly as its full bundle would be: every later step finds
//! content in the store by digest ([`stoa_format::BundleManifest::listed`]).
//! The base chain goes into history.

use std::fs::File;
use std::io::{self, BufReader};
use stoa_format::manifest::Entry;
use stoa_format::report::human_bytes;
use stoa_format::{BundleManifest, Sha256Digest};

use crate::error::{Result, UpdaterError};
use crate::state::{State, StateDir};

/// What is wrong with one omitted entry in the store.
fn store_problem(sd: &StateDir, e: &Entry) -> Option<String> {
    let p = sd.blob(&e.sha256.hex());
    let f = match File::open(&p) {
        Ok(f) => f,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Some("not in the store".into())
        }
        Err(err) => return Some(format!("unreadable in the store: {err}")),
    };
    match Sha256Digest::of_reader(BufReader::with_capacity(1 << 20, f)) {
        Ok((d, n)) if d == e.sha256 && n == e.size => None,
        Ok((d, n)) => Some(format!(
            "damaged in the store ({n} bytes with sha256:{}, expected {} bytes)",
            d.hex(),
            e.size
        )),
        Err(err) => Some(format!("unreadable in the store: {err}")),
    }
}

/// Checks that the store holds every entry a delta omits; a full bundle
/// passes. Reads only, changes nothing. `progress` gets bytes re-hashed.
pub fn check_store(
    sd: &StateDir,
    state: &State,
    m: &BundleManifest,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let Some(d) = &m.delta else {
        return Ok(());
    };
    let mut missing = Vec::new();
    for e in &d.omitted {
        if let Some(why) = store_problem(sd, e) {
            missing.push(format!(
                "{} (sha256:{}, {}): {why}",
                e.path,
                e.sha256.hex(),
                human_bytes(e.size)
            ));
        }
        progress(e.size);
    }
    if missing.is_empty() {
        return Ok(());
    }
    let base = &d.bases[0];
    let on_site = state
        .releases
        .iter()
        .find(|r| r.manifest_sha256 == base.manifest_sha256.hex());
    let base_state = match on_site {
        Some(r) => format!(
            "which this site applied ({}) but whose content its store no longer holds whole",
            r.applied_at
        ),
        None => "which is not among this site's retained releases".into(),
    };
    let chain = if d.bases.len() > 1 {
        let rest: Vec<String> = d.bases[1..]
            .iter()
            .map(|b| format!("{} {}", b.name, b.version))
            .collect();
        format!(" (itself a delta on {})", rest.join(", then "))
    } else {
        String::new()
    };
    Err(UpdaterError::DeltaIncomplete(Box::new(Incomplete {
        release: format!("{} {}", m.release.name, m.release.version),
        missing,
        base: format!("{base}{chain}, {base_state}"),
        remedy: format!(
            "apply the full bundle of {} {}, or the full bundle of {} {} first",
            m.release.name, m.release.version, base.name, base.version
        ),
    })))
}

/// Why a delta cannot be applied here, and the history's `delta` field
/// (the vocabulary, in `crate::records`).
pub use crate::records::delta::{BaseHistory, DeltaHistory, Incomplete};

/// The delta record of a manifest (None for a full bundle).
pub fn history_field(m: &BundleManifest) -> Option<DeltaHistory> {
    let d = m.delta.as_ref()?;
    let chain: Vec<BaseHistory> = d
        .bases
        .iter()
        .map(|b| BaseHistory {
            name: b.name.clone(),
            version: b.version.to_string(),
            manifest_sha256: b.manifest_sha256.hex(),
        })
        .collect();
    Some(DeltaHistory {
        base: chain.first()?.clone(),
        chain,
        omitted_entries: d.omitted.len(),
        omitted_bytes: d.omitted.iter().map(|e| e.size).sum(),
    })
}
