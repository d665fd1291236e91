//! `stoa-updater --config F history [--json]`: every finished operation.
//! Like every other command it reads the state first and fails closed when
//! it is corrupt (exit 3).

use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config: &std::path::Path, args: &Args) -> Result<()> {
    let site = super::site(config)?;
    // fail closed like every other command: a corrupt state is not hidden
    site.sd.load()?;
    let h = site.sd.read_history()?;
    if args.json {
        println!("{}", serde_json::json!({"ok": true, "history": h}));
        return Ok(());
    }
    let s = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_owned()
    };
    for e in &h {
        if s(e, "op") == "prune" {
            let names: Vec<String> = e
                .get("releases")
                .and_then(|r| r.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "{}  prune    releases {}  {}",
                s(e, "time"),
                if names.is_empty() {
                    "-".to_owned()
                } else {
                    names.join(", ")
                },
                s(e, "outcome")
            );
            continue;
        }
        if let Some(raw) = e.get("unreadable").and_then(|x| x.as_str()) {
            println!("(unreadable line: {raw})");
            continue;
        }
        let mut line = format!(
            "{}  {:<8} {} -> {}  {}",
            s(e, "time"),
            s(e, "op"),
            s(e, "from"),
            s(e, "to"),
            s(e, "outcome")
        );
        if e.get("resumed").and_then(|x| x.as_bool()) == Some(true) {
            line.push_str("  [resumed]");
        }
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
