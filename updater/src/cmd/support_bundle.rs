//! `stoa-updater support-bundle --out FILE`: what the vendor needs to help
//! this site, redacted and encrypted to the vendor (docs/OPERATIONS.md,
//! "Support bundle"). A thin command line over [`crate::support`]: it reads
//! only (no site lock, nothing written into `state_dir`), and works with a
//! missing state folder or a site config that does not load (recorded).
//!
//! Exit codes: 0 when written (collectors that failed are recorded inside,
//! and listed); 2 for a recipient that is not an age key, no recipient
//! without `--no-encrypt`, or an `--out` that exists or is in `state_dir`;
//! 3 when the archive cannot be written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stoa_format::cli::Output;

use crate::error::{Result, UpdaterError};
use crate::support::{self, archive::Seal};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the bundle to this file (it must not exist; not in state_dir).
    #[arg(long, value_name = "FILE", required_unless_present = "dry_run")]
    pub out: Option<PathBuf>,
    /// Journal and audit lines of this long ago and newer (humantime: 7d, 12h).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// The most the collected files may hold; the biggest logs are cut first
    /// (their end kept), and the summary says so. B, KiB, MiB, GiB.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub max_size: u64,
    /// The vendor's age X25519 public key (age1…); default `[support] recipient`.
    #[arg(long, value_name = "AGE1…")]
    pub recipient: Option<String>,
    /// Write the archive unencrypted (needed when no recipient is set).
    #[arg(long, conflicts_with = "recipient")]
    pub no_encrypt: bool,
    /// Collect and list what would be inside (files and sizes); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Each collector's time limit (a tool still running then is killed).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub collector_timeout: Duration,
}

/// `64MiB`, `512KiB`, `1GiB`, `1000` (bytes).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 64MiB)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("unit {other:?}: use B, KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too big"))
}

/// The recipient from `--recipient`, else `[support] recipient` (read from
/// the config file even when the rest of it does not load).
fn seal(a: &Args, config: &Path) -> Result<Seal> {
    // a dry run writes nothing: it needs no recipient (a given one is checked)
    if a.no_encrypt {
        return Ok(Seal::Plain);
    }
    let from_config = || {
        let text = std::fs::read_to_string(config).ok()?;
        let v: toml::Table = toml::from_str(&text).ok()?;
        v.get("support")?
            .get("recipient")?
            .as_str()
            .map(str::to_owned)
    };
    let Some(r) = a.recipient.clone().or_else(from_config) else {
        if a.dry_run {
            return Ok(Seal::Plain);
        }
        return Err(UpdaterError::SupportRecipient {
            reason: "none: set [support] recipient in the site config or give --recipient age1…; --no-encrypt writes it unencrypted".into(),
        });
    };
    support::archive::parse_recipient(&r)
        .map(Seal::Age)
        .map_err(|reason| UpdaterError::SupportRecipient { reason })
}

pub fn run(config: &Path, a: &Args, out: Output) -> Result<u8> {
    let seal = seal(a, config)?;
    if let Some(o) = a.out.as_ref().filter(|o| o.exists() && !a.dry_run) {
        return Err(UpdaterError::SupportOut {
            path: o.clone(),
            reason: "exists; give another --out".into(),
        });
    }
    let opts = support::Options {
        out: if a.dry_run { None } else { a.out.clone() },
        since: a.since,
        max_size: a.max_size,
        limit: a.collector_timeout,
        seal,
    };
    let report = support::build(config, &opts)?;
    if out.json {
        println!("{}", serde_json::to_value(&report).unwrap_or_default());
        return Ok(0);
    }
    if a.dry_run {
        println!(
            "would write these files ({} bytes, with SUMMARY.json and REDACTIONS.txt):",
            report.bytes
        );
        for f in &report.files {
            println!("{:>10}  {}", f.size, f.path);
        }
    } else if let Some(o) = &report.out {
        println!(
            "support bundle: {} ({} files, {} bytes collected, {} on disk, encryption: {})",
            o.display(),
            report.files.len() + 2,
            report.bytes,
            report.archive_bytes.unwrap_or(0),
            report.encryption
        );
    }
    for c in report.collectors.iter().filter(|c| c.outcome != "ok") {
        println!(
            "collector {}: {}: {}",
            c.name,
            c.outcome,
            c.error.as_deref().unwrap_or("")
        );
    }
    for c in &report.cut {
        println!("cut: {c}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2K").unwrap(), 2048);
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
