//! Images named outside pod specs: the rule that finds the images an
//! operator or controller will start pods from later, in env values, args,
//! ConfigMap data and custom resources (docs/OPERATIONS.md, *Images outside
//! pod specs*). One rule, called by [`crate::list`] (the bundler's `images`
//! and build's completeness check) and [`crate::rewrite`] (the site's
//! post-renderer), so build and site cannot disagree.
//!
//! After the pod images of an object are visited, every string scalar of
//! the object is read, each once (the pod images already visited are
//! skipped). A value is an image when it is, whole:
//! - **under a key that names an image**: the key, lower-cased, ends in
//!   `image`, `images` (each item of a list under it) or `imagename`
//!   (`agentImage`, `AGENT_INJECT_IMAGE`, CloudNativePG's `imageName`), or
//!   it is the `value` of a `{name: *_IMAGE, value: …}` pair; and the value
//!   parses as an image reference (short forms such as `busybox:1.36`
//!   count) and is not a YAML 1.1 boolean, number or null written plain;
//! - **a full image reference** anywhere: it parses, names its registry host
//!   (`quay.io/…`, `registry.local:5000/…`, `localhost/…`), a path and a tag
//!   or digest (`quay.io/prometheus-operator/prometheus-config-reloader:v0.75.0`);
//! - or **`--flag=<full image reference>`**, an argument naming one.
//!
//! A value inside a multi-line string (a config file held in a ConfigMap)
//! is not read: only whole values are.

use std::collections::HashSet;

use stoa_format::names::ImageRef;

use crate::yaml::Node;

/// Where the image starts in `value`, when `value` names one under `key`
/// (the mapping key it is the value of; for a list item, the list's key):
/// 0 for the whole value, after the `=` for `--flag=<reference>`.
pub fn image_in_value(key: Option<&str>, value: &str, plain: bool) -> Option<usize> {
    if value.is_empty() || value.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    if key.is_some_and(key_names_image)
        && !(plain && yaml11_non_string(value))
        && ImageRef::parse(value).is_ok()
    {
        return Some(0);
    }
    if full_reference(value) {
        return Some(0);
    }
    let (flag, rhs) = value.split_once('=')?;
    let name = flag.strip_prefix("--").or_else(|| flag.strip_prefix('-'))?;
    let is_flag = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (is_flag && full_reference(rhs)).then_some(flag.len() + 1)
}

/// A key naming an image (see the module header).
pub fn key_names_image(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("image") || k.ends_with("images") || k.ends_with("imagename")
}

/// A reference with its registry host, a path, and a tag or digest.
pub fn full_reference(value: &str) -> bool {
    ImageRef::parse(value)
        .is_ok_and(|r| r.domain().is_some() && (r.tag().is_some() || r.digest().is_some()))
}

/// A plain scalar a YAML 1.1 reader takes for a boolean, a number or null.
fn yaml11_non_string(v: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL",
    ];
    WORDS.contains(&v) || v.parse::<f64>().is_ok() || v.parse::<i64>().is_ok()
}

/// One image found by the walk: the field path (`spec.imageName`,
/// `spec.args[2]`) and the reference (the end of the value).
pub(crate) struct Hit {
    pub path: String,
    pub image: String,
}

/// Calls `found` with every image of `obj` named outside the nodes in
/// `skip` (the pod images already visited), in document order.
pub(crate) fn visit(
    obj: &mut Node,
    skip: &HashSet<*const Node>,
    found: &mut dyn FnMut(Hit, &mut Node),
) {
    walk(obj, None, &mut String::new(), skip, found);
}

fn walk(
    n: &mut Node,
    key: Option<&str>,
    path: &mut String,
    skip: &HashSet<*const Node>,
    found: &mut dyn FnMut(Hit, &mut Node),
) {
    if skip.contains(&(n as *const Node)) {
        return;
    }
    match n {
        Node::Scalar { text, plain, tag } => {
            // an explicit non-string tag (`!!int`) is not a name
            if tag.as_deref().is_some_and(|t| t != "!!str") {
                return;
            }
            if let Some(start) = image_in_value(key, text, *plain) {
                let image = text[start..].to_owned();
                found(
                    Hit {
                        path: path.clone(),
                        image,
                    },
                    n,
                );
            }
        }
        Node::Seq(items, _) => {
            let len = path.len();
            for (i, item) in items.iter_mut().enumerate() {
                path.push_str(&format!("[{i}]"));
                walk(item, key, path, skip, found);
                path.truncate(len);
            }
        }
        Node::Map(kv, _) => {
            let env_name = kv
                .iter()
                .find(|(k, _)| k.as_str() == Some("name"))
                .and_then(|(_, v)| v.as_str())
                .filter(|v| v.ends_with("_IMAGE"))
                .map(str::to_owned);
            let len = path.len();
            for (k, v) in kv.iter_mut() {
                let Some(k) = k.as_str().map(str::to_owned) else {
                    continue;
                };
                push_key(path, &k);
                let key = match &env_name {
                    Some(name) if k == "value" => name.as_str(),
                    _ => k.as_str(),
                };
                walk(v, Some(key), path, skip, found);
                path.truncate(len);
            }
        }
    }
}

/// `a.b`, or `a["b.c"]` for a key that is not a plain name.
fn push_key(path: &mut String, k: &str) {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k);
    } else {
        path.push_str(&format!("[{:?}]", crate::yaml::clean(k)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_on_values() {
        let full = "quay.io/prometheus-operator/prometheus-config-reloader:v0.75.0";
        assert_eq!(image_in_value(None, full, true), Some(0));
        assert_eq!(
            image_in_value(None, &format!("--prometheus-config-reloader={full}"), true),
            Some("--prometheus-config-reloader=".len())
        );
        assert_eq!(
            image_in_value(Some("imageName"), "postgres:17", true),
            Some(0)
        );
        assert_eq!(
            image_in_value(Some("AGENT_IMAGE"), "busybox", true),
            Some(0)
        );
        // not images
        for (k, v) in [
            (None, "busybox:1.36"),              // short, under no image key
            (None, "quay.io/x/y"),               // no tag
            (None, "minio.svc.local:9000"),      // host:port
            (None, "http://quay.io/x/y:1"),      // a URL
            (None, "a quay.io/x:1"),             // text
            (Some("image"), "true"),             // YAML 1.1 boolean
            (Some("image"), "1.5"),              // a number
            (Some("imagePullPolicy"), "Always"), // key does not name an image
            (None, "--x=busybox:1"),             // a flag with a short name
            (None, "x=quay.io/x/y:1"),           // not a flag
        ] {
            assert_eq!(image_in_value(k, v, true), None, "{k:?} {v}");
        }
        // a quoted `true` under an image key is a string: a name to check
        assert_eq!(image_in_value(Some("image"), "true", false), Some(0));
    }
}
