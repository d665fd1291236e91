//! The SBOM part of `stoa-bundler diff`: the components of the two
//! releases' SBOMs compared by `bom-ref`, each added, removed or changed
//! (version, purl or SHA-256). The components are made from each signed
//! manifest by the very code that writes the SBOM
//! (`stoa_format::sbom::document`), so manifests alone suffice and old
//! bundles without an SBOM compare too; the details only the build knows
//! (a chart's vendored dependencies, an image's attestations) are not
//! compared. An image whose tag changed is one component changed when its
//! repository has one image on each side.

use std::collections::BTreeMap;

use serde::Serialize;
use stoa_format::sbom::{document, Component, SbomExtras};
use stoa_format::BundleManifest;

/// What one side says of a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    pub version: Option<String>,
    pub purl: Option<String>,
    pub sha256: Option<String>,
}

/// A component on one side only.
#[derive(Debug, Clone, Serialize)]
pub struct OneSide {
    pub bom_ref: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(flatten)]
    pub side: Side,
}

/// A component on both sides, with a difference.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub bom_ref: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub old: Side,
    pub new: Side,
}

/// The SBOM section of the diff.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SbomDiff {
    pub added: Vec<OneSide>,
    pub removed: Vec<OneSide>,
    pub changed: Vec<Changed>,
    pub unchanged: usize,
}

fn components(m: &BundleManifest) -> BTreeMap<String, Component> {
    document(m, &SbomExtras::default())
        .components
        .into_iter()
        .filter_map(|c| Some((c.bom_ref.clone()?, c)))
        .collect()
}

fn side(c: &Component) -> Side {
    Side {
        version: c.version.clone(),
        purl: c.purl.clone(),
        sha256: c.sha256().map(str::to_owned),
    }
}

fn one(r: &str, c: &Component) -> OneSide {
    OneSide {
        bom_ref: r.to_owned(),
        kind: c.kind.clone(),
        name: c.name.clone(),
        side: side(c),
    }
}

/// Compares the SBOM components of two releases.
pub fn sbom_diff(old: &BundleManifest, new: &BundleManifest) -> SbomDiff {
    let (o, n) = (components(old), components(new));
    let mut d = SbomDiff::default();
    for (r, c) in &n {
        match o.get(r) {
            None => d.added.push(one(r, c)),
            Some(oc) if side(oc) != side(c) => d.changed.push(Changed {
                bom_ref: r.clone(),
                kind: c.kind.clone(),
                name: c.name.clone(),
                old: side(oc),
                new: side(c),
            }),
            Some(_) => d.unchanged += 1,
        }
    }
    d.removed = o
        .iter()
        .filter(|(r, _)| !n.contains_key(*r))
        .map(|(r, c)| one(r, c))
        .collect();
    pair_retagged_images(&mut d);
    d
}

/// An image removed and one added under the same repository (the only
/// one there on each side) is the image changed: a new tag.
fn pair_retagged_images(d: &mut SbomDiff) {
    let count = |list: &[OneSide], name: &str| {
        list.iter()
            .filter(|c| c.kind == "container" && c.name == name)
            .count()
    };
    let mut i = 0;
    while i < d.added.len() {
        let a = &d.added[i];
        let name = a.name.clone();
        let pairable =
            a.kind == "container" && count(&d.added, &name) == 1 && count(&d.removed, &name) == 1;
        let at = d
            .removed
            .iter()
            .position(|r| r.kind == "container" && r.name == name);
        match (pairable, at) {
            (true, Some(j)) => {
                let old = d.removed.remove(j);
                let new = d.added.remove(i);
                d.changed.push(Changed {
                    bom_ref: new.bom_ref,
                    kind: new.kind,
                    name: new.name,
                    old: old.side,
                    new: new.side,
                });
            }
            _ => i += 1,
        }
    }
    d.changed.sort_by(|a, b| a.bom_ref.cmp(&b.bom_ref));
}

/// The plain-text lines of the SBOM section.
pub fn text(d: &SbomDiff) -> String {
    let mut o = format!(
        "sbom: {} component{} added, {} removed, {} changed, {} unchanged\n",
        d.added.len(),
        if d.added.len() == 1 { "" } else { "s" },
        d.removed.len(),
        d.changed.len(),
        d.unchanged
    );
    let v = |s: &Side| s.version.clone().unwrap_or_else(|| "-".into());
    for c in &d.added {
        o.push_str(&format!("  + {} {}\n", c.bom_ref, v(&c.side)));
    }
    for c in &d.removed {
        o.push_str(&format!("  - {} {}\n", c.bom_ref, v(&c.side)));
    }
    for c in &d.changed {
        let what = if c.old.version == c.new.version {
            "same version, other content".to_owned()
        } else {
            format!("{} -> {}", v(&c.old), v(&c.new))
        };
        o.push_str(&format!("  ~ {} {what}\n", c.bom_ref));
    }
    o
}
