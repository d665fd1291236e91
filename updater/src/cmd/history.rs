//! `stoa-updater --config F history [--json]`: every finished operation.

use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn run(config: &std::path::Path, args: &Args) -> Result<()> {
    let site = super::site(config)?;
    let h = site.sd.read_history()?;
    if args.json {
        println!("{}", serde_json::json!({"ok": true, "history": h}));
        return Ok(());
    }
    let s = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_owned()
    };
    for e in &h {
        let mut line = format!(
            "{}  {:<8} {} -> {}  {}",
            s(e, "time"),
            s(e, "op"),
            s(e, "from"),
            s(e, "to"),
            s(e, "outcome")
        );
        if e.get("allow_downgrade").and_then(|x| x.as_bool()) == Some(true) {
            line.push_str("  [--allow-downgrade]");
        }
        if e.get("allow_expired").and_then(|x| x.as_bool()) == Some(true) {
            line.push_str("  [--allow-expired]");
        }
        if let Some(err) = e.get("error").and_then(|x| x.as_str()) {
            line.push_str(&format!("  at {}: {err}", s(e, "step")));
        }
        println!("{line}");
    }
    if h.is_empty() {
        println!("no history");
    }
    Ok(())
}
