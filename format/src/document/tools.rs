//! The tools a bundle carries (docs/FORMAT.md, "tools" and *Versioning*):
//! `stoa-updater`, `helm` and `kubectl` binaries as signed content entries
//! `tools/<os>/<arch>/<name>`, each described by a [`ToolRecord`]; the
//! platform table and the ELF header rule both programs check
//! ([`check_elf`]); how a tool's version output is read
//! ([`reported_version`]); and the frozen *bootstrap* reading of a manifest
//! ([`bootstrap_view`]): the subset every format version keeps with the same
//! meaning, which an updater reads from a bundle of a format version newer
//! than it knows, so that an updater of today can verify and install the
//! updater of tomorrow. Pure: no I/O, no processes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::document::limits::Limits;
use crate::error::FormatError;
use crate::fields::{FileMode, Timestamp};

use super::manifest::{BundleManifest, Entry, Release};
use super::{DELTA_FORMAT_VERSION, FORMAT_NAME, FORMAT_VERSION};

/// The folder of tool entries: `tools/<os>/<arch>/<name>`. A delta never
/// omits them (they are what an old updater reads without a base).
pub const TOOLS_DIR: &str = "tools/";

/// The updater itself: what `stoa-updater self-update` installs.
pub const UPDATER: &str = "stoa-updater";

/// Every tool name a bundle may carry.
pub const TOOL_NAMES: [&str; 3] = [UPDATER, "helm", "kubectl"];

/// A carried tool binary (docs/FORMAT.md, "tools").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolRecord {
    /// `stoa-updater`, `helm` or `kubectl`.
    pub name: String,
    /// `os/arch` from [`PLATFORMS`], e.g. `linux/amd64`.
    pub platform: String,
    /// What the binary reports (`--version`; `helm version --short`;
    /// `kubectl version --client`), checked at build.
    pub version: semver::Version,
    /// The entry: [`tool_entry_path`] of the platform and name.
    pub path: String,
    /// The installed file's permission bits (the bundler writes `0755`).
    pub mode: FileMode,
}

/// The entry path of tool `name` for `platform`: `tools/<platform>/<name>`.
pub fn tool_entry_path(platform: &str, name: &str) -> String {
    format!("{TOOLS_DIR}{platform}/{name}")
}

/// A platform a tool may be carried for, and what its ELF header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// `os/arch`, as in [`ToolRecord::platform`].
    pub name: &'static str,
    /// ELFCLASS64 (else ELFCLASS32).
    pub class64: bool,
    /// ELFDATA2LSB (else big endian).
    pub little_endian: bool,
    /// `e_machine`.
    pub machine: u16,
}

/// The platforms a tool may be carried for.
pub const PLATFORMS: [Platform; 7] = [
    plat("linux/amd64", true, true, 62),
    plat("linux/arm64", true, true, 183),
    plat("linux/386", false, true, 3),
    plat("linux/arm", false, true, 40),
    plat("linux/ppc64le", true, true, 21),
    plat("linux/s390x", true, false, 22),
    plat("linux/riscv64", true, true, 243),
];

const fn plat(name: &'static str, class64: bool, little_endian: bool, machine: u16) -> Platform {
    Platform {
        name,
        class64,
        little_endian,
        machine,
    }
}

/// The platform named `name` (`linux/amd64`), if a tool may be carried for it.
pub fn platform(name: &str) -> Option<Platform> {
    PLATFORMS.iter().copied().find(|p| p.name == name)
}

/// The platform this program was built for, when it is one of [`PLATFORMS`].
pub fn host_platform() -> Option<Platform> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => return None,
    };
    if std::env::consts::OS != "linux" {
        return None;
    }
    platform(&format!("linux/{arch}"))
}

/// How many leading bytes [`check_elf`] reads.
pub const ELF_HEADER_LEN: usize = 20;

fn machine_name(m: u16) -> String {
    match m {
        3 => "i386".into(),
        21 => "PowerPC64".into(),
        22 => "S/390".into(),
        40 => "ARM".into(),
        62 => "x86-64".into(),
        183 => "AArch64".into(),
        243 => "RISC-V".into(),
        other => format!("e_machine {other}"),
    }
}

/// The ELF rule: `head` (the file's first bytes) must be an ELF executable
/// or shared object (`ET_EXEC`, `ET_DYN`) of the platform's class, byte
/// order and machine. The error says what the file is instead.
pub fn check_elf(head: &[u8], p: Platform) -> Result<(), String> {
    if head.len() < ELF_HEADER_LEN || &head[..4] != b"\x7fELF" {
        let shown: String = head
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(format!(
            "not an ELF executable (it starts with {})",
            if shown.is_empty() { "nothing" } else { &shown }
        ));
    }
    let class64 = match head[4] {
        1 => false,
        2 => true,
        c => return Err(format!("an ELF of unknown class {c}")),
    };
    let le = match head[5] {
        1 => true,
        2 => false,
        d => return Err(format!("an ELF of unknown byte order {d}")),
    };
    let half = |at: usize| {
        let b = [head[at], head[at + 1]];
        if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let (kind, machine) = (half(16), half(18));
    let found = format!(
        "a {}-bit {} ELF for {}",
        if class64 { 64 } else { 32 },
        if le { "little-endian" } else { "big-endian" },
        machine_name(machine)
    );
    if class64 != p.class64 || le != p.little_endian || machine != p.machine {
        return Err(format!(
            "{found}, not for {} (a {}-bit ELF for {})",
            p.name,
            if p.class64 { 64 } else { 32 },
            machine_name(p.machine)
        ));
    }
    if kind != 2 && kind != 3 {
        return Err(format!(
            "{found}, but not an executable (e_type {kind}, not ET_EXEC or ET_DYN)"
        ));
    }
    Ok(())
}

/// The arguments that make tool `name` print its version.
pub fn version_args(name: &str) -> &'static [&'static str] {
    match name {
        "helm" => &["version", "--short"],
        "kubectl" => &["version", "--client"],
        _ => &["--version"],
    }
}

/// The first SemVer in a tool's version output (a leading `v` allowed):
/// `stoa-updater 0.2.0 (reads …)`, `v3.14.0+g3fc9f4b`, `Client Version:
/// v1.30.4`.
pub fn reported_version(output: &str) -> Option<semver::Version> {
    output.split_whitespace().find_map(|t| {
        let t = t.trim_end_matches([',', ';', ')']).trim_start_matches('(');
        semver::Version::parse(t.strip_prefix('v').unwrap_or(t)).ok()
    })
}

/// Whether a reported version is the record's: the same version and
/// pre-release; build metadata counts only when the record has some
/// (`3.14.0` is what `v3.14.0+g3fc9f4b` reports).
pub fn version_matches(record: &semver::Version, reported: &semver::Version) -> bool {
    record.major == reported.major
        && record.minor == reported.minor
        && record.patch == reported.patch
        && record.pre == reported.pre
        && (record.build.is_empty() || record.build == reported.build)
}

/// The tools rules of [`BundleManifest::validate`]: a known name and
/// platform, the entry path [`tool_entry_path`] gives, carried (never only
/// omitted), each (name, platform) once, a mode that lets the owner run it
/// and nobody else write it.
pub(super) fn check_tools(m: &BundleManifest) -> Result<(), FormatError> {
    let bad = |s: String| Err(FormatError::InvalidManifest(s));
    let mut seen = BTreeSet::new();
    for t in &m.tools {
        if !TOOL_NAMES.contains(&t.name.as_str()) {
            return bad(format!(
                "tool name {:?} is not one of {}",
                t.name,
                TOOL_NAMES.join(", ")
            ));
        }
        if platform(&t.platform).is_none() {
            let known: Vec<&str> = PLATFORMS.iter().map(|p| p.name).collect();
            return bad(format!(
                "tool {} platform {:?} is not one of {}",
                t.name,
                t.platform,
                known.join(", ")
            ));
        }
        let want = tool_entry_path(&t.platform, &t.name);
        if t.path != want {
            return bad(format!(
                "tool {} {}: entry {:?} is not {want:?}",
                t.name, t.platform, t.path
            ));
        }
        if !seen.insert(want) {
            return bad(format!(
                "tool {} for {} is listed twice",
                t.name, t.platform
            ));
        }
        if m.entry(&t.path).is_none() {
            return bad(format!(
                "tool {} {} refers to {:?}, which is not a carried entry",
                t.name, t.platform, t.path
            ));
        }
        let bits = t.mode.bits();
        if bits & 0o100 == 0 || bits & 0o022 != 0 {
            return bad(format!(
                "tool {} {}: mode {} must let its owner run it and nobody else write it",
                t.name, t.platform, t.mode
            ));
        }
    }
    Ok(())
}

/// The frozen subset of every manifest (docs/FORMAT.md, *Versioning*): the
/// fields an updater reads from a bundle of a format version newer than
/// its own. Unknown fields are ignored here, and only here.
#[derive(Deserialize)]
struct Bootstrap {
    format: Option<String>,
    release: BootstrapRelease,
    #[serde(default)]
    tools: Vec<BootstrapTool>,
    entries: Vec<BootstrapEntry>,
}

#[derive(Deserialize)]
struct BootstrapRelease {
    name: String,
    version: semver::Version,
    created: Timestamp,
    #[serde(default)]
    expires: Option<Timestamp>,
}

/// A tool record as the subset reads it: names and platforms it does not
/// know are skipped, not refused (a later format may carry more tools).
#[derive(Deserialize)]
struct BootstrapTool {
    name: String,
    platform: String,
    version: semver::Version,
    path: String,
    mode: FileMode,
}

#[derive(Deserialize)]
struct BootstrapEntry {
    path: String,
    size: u64,
    sha256: Sha256Digest,
}

/// Reads manifest bytes the way `self-update` does. A format version this
/// library reads is parsed and validated in full, as
/// [`BundleManifest::from_bytes`] does (the answer's flag is false). A
/// newer one is read as its frozen subset (`format`, `format_version`,
/// `release.name`, `.version`, `.created`, `.expires`, `tools`, `entries`;
/// everything else ignored), held in a manifest with no images, charts,
/// migrations or files, which passes every rule of `validate` but the
/// version's (flag true). Only the updater's `self-update` may act on such
/// a manifest, and only on its `stoa-updater` tool.
pub fn bootstrap_view(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(BundleManifest, bool), FormatError> {
    #[derive(Deserialize)]
    struct Probe {
        format_version: Option<u32>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(FormatError::ParseManifest)?;
    if probe.format_version.unwrap_or(0) <= DELTA_FORMAT_VERSION {
        return BundleManifest::from_bytes(bytes, limits).map(|m| (m, false));
    }
    let b: Bootstrap = serde_json::from_slice(bytes).map_err(FormatError::ParseManifest)?;
    if b.format.as_deref() != Some(FORMAT_NAME) {
        return Err(FormatError::WrongFormat {
            found: b.format.unwrap_or_default(),
        });
    }
    let tools = b
        .tools
        .into_iter()
        .filter(|t| TOOL_NAMES.contains(&t.name.as_str()) && platform(&t.platform).is_some())
        .map(|t| ToolRecord {
            name: t.name,
            platform: t.platform,
            version: t.version,
            path: t.path,
            mode: t.mode,
        })
        .collect();
    let mut m = BundleManifest {
        format: FORMAT_NAME.into(),
        // validated as a full bundle of today's format: the subset's rules
        // are that format's rules
        format_version: FORMAT_VERSION,
        release: Release {
            name: b.release.name,
            version: b.release.version,
            upgrade_from: None,
            created: b.release.created,
            expires: b.release.expires,
        },
        images: Vec::new(),
        charts: Vec::new(),
        sbom: None,
        migrations: Vec::new(),
        files: Vec::new(),
        tools,
        signers: Vec::new(),
        delta: None,
        entries: b
            .entries
            .into_iter()
            .map(|e| Entry {
                path: e.path,
                size: e.size,
                sha256: e.sha256,
            })
            .collect(),
    };
    m.validate(limits)?;
    m.format_version = probe.format_version.unwrap_or(0);
    Ok((m, true))
}

#[cfg(test)]
mod tests {
    use super::super::manifest::tests::sample;
    use super::*;

    fn with_updater(version: &str) -> BundleManifest {
        let mut m = sample();
        let bin = b"\x7fELF binary";
        let path = tool_entry_path("linux/amd64", UPDATER);
        m.entries.push(Entry {
            path: path.clone(),
            size: bin.len() as u64,
            sha256: Sha256Digest::of(bin),
        });
        m.entries.sort_by(|a, b| a.path.cmp(&b.path));
        m.tools.push(ToolRecord {
            name: UPDATER.into(),
            platform: "linux/amd64".into(),
            version: semver::Version::parse(version).unwrap(),
            path,
            mode: "0755".parse().unwrap(),
        });
        m
    }

    #[test]
    fn tool_records_roundtrip_and_an_absent_section_changes_no_byte() {
        let m = with_updater("0.2.0");
        let b = m.to_bytes();
        let back = BundleManifest::from_bytes(&b, &Limits::default()).unwrap();
        assert_eq!(back, m);
        assert!(!String::from_utf8(sample().to_bytes())
            .unwrap()
            .contains("tools"));
    }

    /// Security rule: a tool record names exactly its fixed entry, which
    /// the bundle carries, with a mode nobody else can write. Fixture: the
    /// sample with one updater record, edited one field at a time.
    #[test]
    fn tool_records_are_checked() {
        let refused = |edit: &dyn Fn(&mut BundleManifest), what: &str| {
            let mut m = with_updater("0.2.0");
            edit(&mut m);
            let e = m.validate(&Limits::default()).unwrap_err().to_string();
            assert!(e.contains(what), "{what}: {e}");
        };
        refused(&|m| m.tools[0].name = "bash".into(), "is not one of");
        refused(&|m| m.tools[0].platform = "darwin/arm64".into(), "platform");
        refused(&|m| m.tools[0].path = "files/x".into(), "is not \"tools/");
        refused(&|m| m.tools[0].mode = "0777".parse().unwrap(), "mode 0777");
        refused(&|m| m.tools[0].mode = "0644".parse().unwrap(), "mode 0644");
        refused(
            &|m| {
                let t = m.tools[0].clone();
                m.tools.push(t);
            },
            "listed twice",
        );
        refused(
            &|m| m.entries.retain(|e| !e.path.starts_with(TOOLS_DIR)),
            "not a carried entry",
        );
    }

    #[test]
    fn elf_headers_are_read_for_the_platform() {
        let amd64 = platform("linux/amd64").unwrap();
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[16] = 3;
        h[18] = 62;
        check_elf(&h, amd64).unwrap();
        let mut arm = h;
        arm[18] = 183;
        let e = check_elf(&arm, amd64).unwrap_err();
        assert!(e.contains("AArch64, not for linux/amd64"), "{e}");
        check_elf(&arm, platform("linux/arm64").unwrap()).unwrap();
        let mut object = h;
        object[16] = 1;
        assert!(check_elf(&object, amd64)
            .unwrap_err()
            .contains("not an executable"));
        let e = check_elf(b"#!/bin/sh\necho stoa-updater 9.9.9\n", amd64).unwrap_err();
        assert!(
            e.contains("not an ELF executable (it starts with 23 21 2f 62)"),
            "{e}"
        );
        assert!(check_elf(b"", amd64).unwrap_err().contains("nothing"));
    }

    #[test]
    fn versions_are_read_from_what_each_tool_prints() {
        let v = |s: &str| reported_version(s).map(|v| v.to_string());
        assert_eq!(
            v("stoa-updater 0.2.0 (reads stoa-bundle bundles of format_version 1 (full) and 2 (delta))\n"),
            Some("0.2.0".into())
        );
        assert_eq!(v("v3.14.0+g3fc9f4b\n"), Some("3.14.0+g3fc9f4b".into()));
        assert_eq!(
            v("Client Version: v1.30.4\nKustomize Version: v5.0.4\n"),
            Some("1.30.4".into())
        );
        assert_eq!(v("usage: false"), None);
        let r = semver::Version::parse("3.14.0").unwrap();
        assert!(version_matches(
            &r,
            &semver::Version::parse("3.14.0+g3fc9f4b").unwrap()
        ));
        assert!(!version_matches(
            &r,
            &semver::Version::parse("3.14.1").unwrap()
        ));
        assert!(!version_matches(
            &r,
            &semver::Version::parse("3.14.0-rc.1").unwrap()
        ));
    }

    /// The versioning rule: a manifest of a format version newer than this
    /// library, with fields it has never heard of, is refused by every
    /// reader but the bootstrap one, which reads the frozen subset and
    /// still holds it to today's rules.
    #[test]
    fn a_newer_format_is_read_as_its_frozen_subset_only_by_the_bootstrap_reader() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&with_updater("9.9.9").to_bytes()).unwrap();
        v["format_version"] = (DELTA_FORMAT_VERSION + 1).into();
        v["something_new"] = serde_json::json!({"any": ["thing"]});
        v["release"]["channel"] = "stable".into();
        v["tools"][0]["signature_scheme"] = "future".into();
        v["tools"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "oc", "platform": "linux/amd64",
                "version": "4.0.0", "path": "tools/linux/amd64/oc", "mode": "0755"}));
        v["entries"][0]["compression"] = "none".into();
        let bytes = serde_json::to_vec_pretty(&v).unwrap();
        let limits = Limits::default();
        assert!(matches!(
            BundleManifest::from_bytes(&bytes, &limits),
            Err(FormatError::UnsupportedFormatVersion { .. })
        ));
        let (m, newer) = bootstrap_view(&bytes, &limits).unwrap();
        assert!(newer);
        assert_eq!(m.format_version, DELTA_FORMAT_VERSION + 1);
        assert_eq!(m.tools.len(), 1, "an unknown tool is skipped");
        assert_eq!(m.tools[0].version.to_string(), "9.9.9");
        assert!(m.images.is_empty() && m.entries.len() == 4);

        // today's rules still hold on the subset: an unsafe entry name
        let mut bad = v.clone();
        bad["entries"][0]["path"] = "../../etc/passwd".into();
        assert!(bootstrap_view(&serde_json::to_vec(&bad).unwrap(), &limits).is_err());
        // a tool whose entry is not carried
        let mut bad = v.clone();
        bad["tools"][0]["path"] = "tools/linux/amd64/helm".into();
        assert!(bootstrap_view(&serde_json::to_vec(&bad).unwrap(), &limits).is_err());
        // another format altogether
        let mut bad = v;
        bad["format"] = "other".into();
        assert!(matches!(
            bootstrap_view(&serde_json::to_vec(&bad).unwrap(), &limits),
            Err(FormatError::WrongFormat { .. })
        ));
        // a format this library knows: read in full, strictly
        let (m, newer) = bootstrap_view(&with_updater("9.9.9").to_bytes(), &limits).unwrap();
        assert!(!newer && m.format_version == FORMAT_VERSION);
    }
}
