//! The pod-image rule itself, on a parsed document: which objects hold a
//! pod spec (the kinds of [`POD_SPECS`], custom resources embedding a pod
//! template, the items of a `*List`), which kinds are valid, and every
//! image origin of a pod spec, in the order the crate header gives, then
//! the images named elsewhere in the object ([`crate::referenced`]). One
//! walk serves [`crate::list`] and [`crate::rewrite`], so they cannot
//! disagree.

use std::collections::HashSet;

use crate::referenced;
use crate::yaml::{clean, Node};
use crate::{
    refusal, Doc, Origin, PodImage, PodImagesError, CONTAINER_LISTS, EMBEDDED_POD_SPECS, MAX_KIND,
    POD_SPECS,
};

/// A valid Kubernetes kind: `[A-Z][A-Za-z0-9]*`, at most [`MAX_KIND`] bytes.
pub fn valid_kind(kind: &str) -> bool {
    let mut b = kind.bytes();
    kind.len() <= MAX_KIND
        && b.next().is_some_and(|c| c.is_ascii_uppercase())
        && b.all(|c| c.is_ascii_alphanumeric())
}

/// Calls `found` with every image of the document and the node that holds
/// it (for [`rewrite`] to replace), in the order the crate header gives.
pub(crate) fn visit_doc(
    d: &mut Doc,
    found: &mut dyn FnMut(PodImage, &mut Node),
) -> Result<(), PodImagesError> {
    let Doc {
        number,
        template,
        root,
        ..
    } = d;
    visit_object(root, template.as_deref(), found)
        .map_err(|(object, reason)| refusal(*number, template.as_deref(), &object, &reason))
}

/// Null as a rendered value: an empty node, `~` or `null`.
fn is_null(n: &Node) -> bool {
    matches!(n, Node::Scalar { text, plain: true, tag: None } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
}

/// One object (a document, or an item of a `List`). Err: (object, reason).
fn visit_object(
    obj: &mut Node,
    template: Option<&str>,
    found: &mut dyn FnMut(PodImage, &mut Node),
) -> Result<(), (String, String)> {
    if !matches!(obj, Node::Map(..)) {
        return Err((
            String::new(),
            "is not a Kubernetes object (a mapping)".into(),
        ));
    }
    let kind = match obj.get("kind") {
        None => return Err((String::new(), "has no kind".into())),
        Some(k) => match k.as_str() {
            Some(k) if valid_kind(k) => k.to_owned(),
            Some(k) => {
                return Err((
                    String::new(),
                    format!(
                        "kind {:?} is not a Kubernetes kind (a capital letter, then letters and digits)",
                        clean(k)
                    ),
                ))
            }
            None => return Err((String::new(), "kind is not a string".into())),
        },
    };
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_owned();
    let hook = meta
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get("helm.sh/hook"))
        .and_then(Node::as_str)
        .map(str::to_owned);
    let object = format!("{kind}/{}", clean(&name));
    let err = |reason: String| (object.clone(), reason);
    if kind.ends_with("List") {
        return match obj.get_mut("items") {
            None => Ok(()),
            Some(n) if is_null(n) => Ok(()),
            Some(Node::Seq(items, _)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    visit_object(item, template, found).map_err(|(o, r)| {
                        (
                            format!(
                                "{object} items[{i}]{}",
                                if o.is_empty() {
                                    String::new()
                                } else {
                                    format!(" {o}")
                                }
                            ),
                            r,
                        )
                    })?;
                }
                Ok(())
            }
            Some(_) => Err(err("items is not a list".into())),
        };
    }
    let path: Option<&[&str]> = match POD_SPECS.iter().find(|(k, _)| *k == kind) {
        Some((_, p)) => Some(p),
        None => EMBEDDED_POD_SPECS.iter().copied().find(|p| {
            at(obj, p).is_some_and(|s| CONTAINER_LISTS.iter().any(|(l, _)| s.get(l).is_some()))
        }),
    };
    let base = PodImage {
        template: template.map(str::to_owned),
        kind,
        name,
        container: String::new(),
        image: String::new(),
        hook,
        origin: Origin::Containers,
    };
    let mut seen: HashSet<*const Node> = HashSet::new();
    if let Some(spec) = path.and_then(|p| at_mut(obj, p)) {
        visit_pod_spec(spec, &base, &mut |img, node| {
            seen.insert(node as *const Node);
            found(img, node);
        })
        .map_err(err)?;
    }
    referenced::visit(obj, &seen, &mut |hit, node| {
        let img = PodImage {
            container: hit.path,
            image: hit.image,
            origin: Origin::Referenced,
            ..base.clone()
        };
        found(img, node);
    });
    Ok(())
}

/// The images of one pod spec; `base` carries the object's fields. Err: why.
fn visit_pod_spec(
    spec: &mut Node,
    base: &PodImage,
    found: &mut dyn FnMut(PodImage, &mut Node),
) -> Result<(), String> {
    for (list, origin) in CONTAINER_LISTS {
        let containers = match spec.get_mut(list) {
            None => continue,
            Some(n) if is_null(n) => continue,
            Some(Node::Seq(items, _)) => items,
            Some(_) => return Err(format!("{list} is not a list")),
        };
        for (i, c) in containers.iter_mut().enumerate() {
            if !matches!(c, Node::Map(..)) {
                return Err(format!("{list}[{i}] is not a mapping"));
            }
            visit_container(c, list, *origin, base, found)?;
        }
    }
    Ok(())
}

/// One container: its `image`, then its env `*_IMAGE` values.
fn visit_container(
    c: &mut Node,
    list: &str,
    origin: Origin,
    base: &PodImage,
    found: &mut dyn FnMut(PodImage, &mut Node),
) -> Result<(), String> {
    let one = |container: String, image: String, origin: Origin| PodImage {
        container,
        image,
        origin,
        ..base.clone()
    };
    let cname = c
        .get("name")
        .and_then(Node::as_str)
        .unwrap_or("?")
        .to_owned();
    let cpath = format!("{list}/{cname}");
    if let Some(img) = c.get_mut("image") {
        let Some(image) = img.as_str().map(str::to_owned) else {
            return Err(format!(
                "container {}: image is not a string",
                clean(&cpath)
            ));
        };
        found(one(cpath.clone(), image, origin), img);
    }
    let env = match c.get_mut("env") {
        None => return Ok(()),
        Some(n) if is_null(n) => return Ok(()),
        Some(Node::Seq(items, _)) => items,
        Some(_) => return Err(format!("container {}: env is not a list", clean(&cpath))),
    };
    for e in env {
        let var = e.get("name").and_then(Node::as_str).unwrap_or("");
        if !var.ends_with("_IMAGE") {
            continue;
        }
        let var = var.to_owned();
        let Some(v) = e.get_mut("value") else {
            continue;
        };
        if is_null(v) {
            continue;
        }
        let Some(image) = v.as_str().map(str::to_owned) else {
            return Err(format!(
                "container {} env {}: value is not a string",
                clean(&cpath),
                clean(&var)
            ));
        };
        if image.trim().is_empty() {
            continue;
        }
        found(one(format!("{cpath}/env/{var}"), image, Origin::Env), v);
    }
    Ok(())
}

pub(crate) fn at<'a>(n: &'a Node, path: &[&str]) -> Option<&'a Node> {
    path.iter().try_fold(n, |n, k| n.get(k))
}

fn at_mut<'a>(mut n: &'a mut Node, path: &[&str]) -> Option<&'a mut Node> {
    for k in path {
        n = n.get_mut(k)?;
    }
    Some(n)
}
