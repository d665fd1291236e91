//! `stoa-updater --config F history [--audit] [--json]`: every finished
//! operation, or (`--audit`) every audited command. Like every other command
//! it reads the state first and fails closed when it is corrupt (exit 3).

use crate::error::Result;
use stoa_format::cli::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show the audit log (every verify, plan, apply, rollback and trust
    /// change, with its user, bundle, keys, root version and result).
    #[arg(long)]
    pub audit: bool,
}

pub fn run(site: &crate::engine::Site, args: &Args, out: Output) -> Result<()> {
    // fail closed like every other command: a corrupt state is not hidden
    site.sd.load()?;
    if args.audit {
        return audit(&site.cfg.state_dir, out.json);
    }
    let h = site.sd.read_history()?;
    if out.json {
        println!("{}", serde_json::json!({"ok": true, "history": h}));
        return Ok(());
    }
    for e in &h {
        println!("{e}");
    }
    if h.is_empty() {
        println!("no history");
    }
    Ok(())
}

fn audit(state_dir: &std::path::Path, json: bool) -> Result<()> {
    let lines = crate::audit::runs(crate::audit::read(state_dir)?);
    if json {
        println!("{}", serde_json::json!({"ok": true, "audit": lines}));
        return Ok(());
    }
    for l in &lines {
        let exit = l.exit_code.map_or("-".to_owned(), |c| c.to_string());
        let mut s = format!(
            "{}  {:<12} {:<7} exit {exit}  user {} (uid {})",
            l.time, l.command, l.result, l.user, l.uid
        );
        if l.before_clock_floor {
            s.push_str(&format!(
                "  BEFORE CLOCK FLOOR {}",
                l.clock_floor.as_deref().unwrap_or("-")
            ));
        }
        if let Some(r) = &l.facts.release {
            s.push_str(&format!("  {r}"));
        }
        if let Some(b) = &l.facts.manifest_sha256 {
            s.push_str(&format!("  manifest sha256:{}", &b[..b.len().min(16)]));
        }
        if let Some(b) = &l.facts.bundle_sha256 {
            s.push_str(&format!("  bundle sha256:{}", &b[..b.len().min(16)]));
        }
        if let Some(v) = l.facts.root_version {
            s.push_str(&format!("  root v{v}"));
        }
        if !l.facts.signing_key_ids.is_empty() {
            let k: Vec<&str> = l
                .facts
                .signing_key_ids
                .iter()
                .map(|k| &k[..k.len().min(16)])
                .collect();
            s.push_str(&format!("  keys {}", k.join(",")));
        }
        if let Some(e) = l.error.as_ref().or(l.error_kind.as_ref()) {
            s.push_str(&format!("  error: {e}"));
        }
        for n in &l.facts.notes {
            s.push_str(&format!("  [{n}]"));
        }
        // the log is local, but its text came from bundles and roots
        println!("{}", stoa_format::text::escape(&s));
    }
    if lines.is_empty() {
        println!("no audit entries");
    }
    Ok(())
}
