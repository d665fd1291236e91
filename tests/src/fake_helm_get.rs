//! The Helm stand-in's `get values -o yaml` and `get manifest` (used by
//! `fake-helm`): the latest revision's values file and `--set`s (`null`
//! when none, as Helm prints user-supplied values), and its rendered
//! manifests, as real Helm prints them for the support bundle's collector.

use serde_json::Value;

/// Prints the answer to `get <what> <release>` for the release's revisions
/// `h` (oldest first); the error is Helm's message.
pub fn answer(pos: &[String], h: &[Value]) -> Result<(), String> {
    let (Some(what), Some(_)) = (pos.first(), pos.get(1)) else {
        return Err("\"helm get\" requires a subcommand and 1 argument".into());
    };
    let Some(last) = h.last() else {
        return Err("release: not found".into());
    };
    match what.as_str() {
        "values" => {
            let mut text = last["values"].as_str().unwrap_or_default().to_owned();
            for set in last["set"].as_array().into_iter().flatten() {
                if let Some((k, v)) = set.as_str().and_then(|s| s.split_once('=')) {
                    text.push_str(&format!("{k}: {v}\n"));
                }
            }
            if text.trim().is_empty() {
                println!("null");
            } else {
                print!("{text}");
            }
            Ok(())
        }
        "manifest" => {
            print!("{}", last["manifest"].as_str().unwrap_or_default());
            Ok(())
        }
        other => Err(format!("unknown command \"{other}\" for \"helm get\"")),
    }
}
