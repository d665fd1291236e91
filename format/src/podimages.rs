//! The images of rendered Kubernetes manifests, and their rewrite to the
//! site registry (the updater's Helm post-renderer; docs/OPERATIONS.md,
//! *Images from the site registry*).
//!
//! Input is what `helm template` / a Helm post-renderer gets: YAML documents
//! separated by `---` lines (Helm splits them the same way). A document whose
//! `kind` is pod-bearing (Pod, Deployment, StatefulSet, DaemonSet,
//! ReplicaSet, ReplicationController, Job, CronJob, PodTemplate) has every
//! `containers`, `initContainers` and `ephemeralContainers` image of its pod
//! spec read ([`list`]) or rewritten ([`rewrite`]); every other document
//! passes through byte for byte.
//!
//! A rewritten document is emitted again from its parsed events: the comment
//! lines before it (Helm's `# Source: …`) are kept, comments inside it are
//! not. Plain scalars are written back with their exact text (so `0755`,
//! `yes` or `1e3` mean what they meant to the YAML 1.1 reader Kubernetes
//! uses), quoted and block scalars as double-quoted strings, aliases
//! expanded: the document is equivalent, not byte-identical.
//!
//! [`SiteImages`] decides where an image comes from: the image the bundle
//! verified under the same name (Docker Hub's short forms normalised), as
//! `<site registry>/<prefix>/<path>:<tag>@<digest>`. An image the bundle does
//! not carry, or a pinned digest it does not have, is an error naming the
//! document's kind and name, the container and the image.

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

use crate::error::FormatError;
use crate::names::ImageRef;

/// The kinds whose documents hold a pod spec, and where it is.
const POD_SPECS: &[(&str, &[&str])] = &[
    ("Pod", &["spec"]),
    ("Deployment", &["spec", "template", "spec"]),
    ("StatefulSet", &["spec", "template", "spec"]),
    ("DaemonSet", &["spec", "template", "spec"]),
    ("ReplicaSet", &["spec", "template", "spec"]),
    ("ReplicationController", &["spec", "template", "spec"]),
    ("Job", &["spec", "template", "spec"]),
    (
        "CronJob",
        &["spec", "jobTemplate", "spec", "template", "spec"],
    ),
    ("PodTemplate", &["template", "spec"]),
];

/// The container lists of a pod spec.
const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// One image of one container of a rendered document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PodImage {
    /// The document's `# Source:` path (Helm's template name), when it has one.
    pub template: Option<String>,
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `containers/<name>`, `initContainers/<name>` or `ephemeralContainers/<name>`.
    pub container: String,
    /// The image as rendered.
    pub image: String,
    /// A Helm hook: its `metadata.annotations."helm.sh/hook"` value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
}

impl PodImage {
    /// `Deployment/vault-injector container containers/sidecar-injector`.
    pub fn describe(&self) -> String {
        format!(
            "{}/{} container {}{}",
            self.kind,
            self.name,
            self.container,
            self.template
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        )
    }
}

/// The result of [`rewrite`]: the new text and each image with its new name.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub text: String,
    pub images: Vec<(PodImage, String)>,
}

/// Lists every image of every pod-bearing document.
pub fn list(manifests: &str) -> Result<Vec<PodImage>, FormatError> {
    let mut out = Vec::new();
    let docs = split(manifests).into_iter().filter_map(|s| match s {
        Segment::Doc(t) => Some(t),
        Segment::Separator(_) => None,
    });
    for (i, text) in docs.enumerate() {
        {
            if let Some(d) = parse_doc(text, i + 1)? {
                out.extend(d.images);
            }
        }
    }
    Ok(out)
}

/// Rewrites every pod image through `resolve` (image → new name, or why it
/// cannot be served). Every image that cannot be served is named in one error.
pub fn rewrite(
    manifests: &str,
    resolve: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Rewritten, FormatError> {
    let mut text = String::with_capacity(manifests.len() + manifests.len() / 8);
    let mut images = Vec::new();
    let mut refused = Vec::new();
    let mut number = 0;
    for seg in split(manifests) {
        let doc_text = match seg {
            Segment::Separator(s) => {
                text.push_str(s);
                continue;
            }
            Segment::Doc(t) => t,
        };
        number += 1;
        let Some(mut d) = parse_doc(doc_text, number)? else {
            text.push_str(doc_text);
            continue;
        };
        if d.images.is_empty() {
            text.push_str(doc_text);
            continue;
        }
        let mut new_names = Vec::new();
        for img in &d.images {
            match resolve(&img.image) {
                Ok(n) => new_names.push(n),
                Err(why) => {
                    refused.push(format!("{}: image {} {why}", img.describe(), img.image));
                    new_names.push(img.image.clone());
                }
            }
        }
        let mut k = 0;
        if let Some(spec) = d.root.pod_spec_mut(&d.spec_path) {
            for list in CONTAINER_LISTS {
                for c in spec.seq_mut(list) {
                    if let Some(node) = c.get_mut("image") {
                        if let Some(n) = new_names.get(k) {
                            *node = Node::quoted(n);
                        }
                        k += 1;
                    }
                }
            }
        }
        text.push_str(&d.head);
        let mut out = String::new();
        emit_block(&d.root, 0, &mut out);
        text.push_str(&out);
        if !out.ends_with('\n') {
            text.push('\n');
        }
        images.extend(d.images.drain(..).zip(new_names));
    }
    if !refused.is_empty() {
        return Err(FormatError::ImagesNotServed {
            count: refused.len(),
            images: refused.join("; "),
        });
    }
    Ok(Rewritten { text, images })
}

/// Where the bundle's images are served on site: `<host>[/<prefix>]`, and
/// each verified image with its manifest digest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SiteImages {
    /// `host[:port]` of the site registry.
    pub registry: String,
    /// The site's repository prefix (may be empty).
    pub prefix: String,
    /// The bundle's images: name as the manifest has it, and `sha256:…`.
    pub images: Vec<SiteImage>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SiteImage {
    pub name: ImageRef,
    pub digest: String,
}

/// `docker.io` for Docker Hub's names, and `library/` for its official
/// images, so `busybox`, `docker.io/busybox` and
/// `index.docker.io/library/busybox` are one image.
fn normalised(r: &ImageRef) -> (String, String) {
    let domain = match r.domain() {
        None | Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => "docker.io",
        Some(d) => d,
    };
    let path = if domain == "docker.io" && !r.path().contains('/') {
        format!("library/{}", r.path())
    } else {
        r.path().to_owned()
    };
    (domain.to_owned(), path)
}

impl SiteImages {
    /// The repository an image is pushed to on site (`<prefix>/<path>`, as
    /// the updater's push names it).
    fn site_repo(&self, name: &ImageRef) -> String {
        if self.prefix.is_empty() {
            name.path().to_owned()
        } else {
            format!("{}/{}", self.prefix, name.path())
        }
    }

    /// The site name for `image` as a chart rendered it:
    /// `<registry>/<prefix>/<path>:<tag>@<digest>`, or why it cannot be served.
    pub fn resolve(&self, image: &str) -> Result<String, String> {
        let r = ImageRef::parse(image).map_err(|e| format!("is not a valid OCI reference: {e}"))?;
        // already a site name (a chart given the site registry as a value)
        let on_site = r.domain() == Some(self.registry.as_str());
        let want = normalised(&r);
        let candidates: Vec<&SiteImage> = self
            .images
            .iter()
            .filter(|i| {
                normalised(&i.name) == want || (on_site && self.site_repo(&i.name) == r.path())
            })
            .collect();
        if candidates.is_empty() {
            return Err("is not carried by the bundle".into());
        }
        let hit = match r.digest() {
            Some(d) => {
                let d = format!("sha256:{}", d.hex());
                candidates.iter().find(|i| i.digest == d).ok_or_else(|| {
                    format!(
                        "pins {d}, which the bundle's {} does not have",
                        candidates
                            .iter()
                            .map(|i| format!("{} ({})", i.name, i.digest))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?
            }
            None => {
                let tag = r.tag().unwrap_or("latest");
                candidates
                    .iter()
                    .find(|i| i.name.tag() == Some(tag))
                    .ok_or_else(|| {
                        format!(
                            "is not carried by the bundle with tag {tag} (it has {})",
                            candidates
                                .iter()
                                .map(|i| i.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?
            }
        };
        let tag = r.tag().or(hit.name.tag());
        Ok(format!(
            "{}/{}{}@{}",
            self.registry,
            self.site_repo(&hit.name),
            tag.map(|t| format!(":{t}")).unwrap_or_default(),
            hit.digest
        ))
    }

    /// Whether `image` is already served by the site registry.
    pub fn is_site(&self, image: &str) -> bool {
        let head = if self.prefix.is_empty() {
            format!("{}/", self.registry)
        } else {
            format!("{}/{}/", self.registry, self.prefix)
        };
        image.starts_with(&head)
    }
}

// ---- documents -------------------------------------------------------------

enum Segment<'a> {
    Separator(&'a str),
    Doc(&'a str),
}

/// Splits at `---` lines, as Helm's `releaseutil.SplitManifests` does; the
/// separators are kept so the text can be put back together.
fn split(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end();
        let is_sep = body == "---" || (body.starts_with("--- ") && body[4..].trim().is_empty());
        if is_sep {
            if pos > start {
                out.push(Segment::Doc(&text[start..pos]));
            }
            out.push(Segment::Separator(line));
            start = pos + line.len();
        }
        pos += line.len();
    }
    if pos > start {
        out.push(Segment::Doc(&text[start..pos]));
    }
    out
}

struct Doc {
    /// The comment and blank lines before the content.
    head: String,
    root: Node,
    spec_path: Vec<&'static str>,
    images: Vec<PodImage>,
}

/// Parses document `number` (from 1); None when it is not pod-bearing (or empty).
fn parse_doc(text: &str, number: usize) -> Result<Option<Doc>, FormatError> {
    let template = text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("# Source:")
            .map(|s| s.trim().to_owned())
    });
    let bad = |reason: String| FormatError::RenderedYaml {
        document: number,
        template: template
            .clone()
            .unwrap_or_else(|| "no # Source line".into()),
        reason,
    };
    // every document is parsed, pod-bearing or not: invalid YAML fails here
    let mut docs = build(text).map_err(bad)?;
    if docs.len() > 1 {
        return Err(bad(
            "holds more than one document (a `...` end marker?)".into()
        ));
    }
    let Some(root) = docs.pop() else {
        return Ok(None);
    };
    let kind = root
        .get("kind")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some((_, path)) = POD_SPECS.iter().find(|(k, _)| *k == kind) else {
        return Ok(None);
    };
    let meta = root.get("metadata");
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
    let mut images = Vec::new();
    if let Some(spec) = root.pod_spec(path) {
        for list in CONTAINER_LISTS {
            for c in spec.seq(list) {
                let Some(img) = c.get("image") else { continue };
                let cname = c.get("name").and_then(Node::as_str).unwrap_or("?");
                let image = img.as_str().ok_or_else(|| {
                    bad(format!(
                        "{kind}/{name} container {list}/{cname}: image is not a string"
                    ))
                })?;
                images.push(PodImage {
                    template: template.clone(),
                    kind: kind.clone(),
                    name: name.clone(),
                    container: format!("{list}/{cname}"),
                    image: image.to_owned(),
                    hook: hook.clone(),
                });
            }
        }
    }
    let head: String = text
        .split_inclusive('\n')
        .take_while(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        })
        .collect();
    Ok(Some(Doc {
        head,
        root,
        spec_path: path.to_vec(),
        images,
    }))
}

// ---- a YAML tree that keeps plain scalars' text -----------------------------

#[derive(Debug, Clone)]
enum Node {
    /// `plain`: written back as is; otherwise a string, written quoted.
    Scalar {
        text: String,
        plain: bool,
        tag: Option<String>,
    },
    Seq(Vec<Node>, Option<String>),
    Map(Vec<(Node, Node)>, Option<String>),
}

impl Node {
    fn quoted(s: &str) -> Self {
        Node::Scalar {
            text: s.to_owned(),
            plain: false,
            tag: None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(kv, _) => kv
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match self {
            Node::Map(kv, _) => kv
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    fn seq(&self, key: &str) -> &[Node] {
        match self.get(key) {
            Some(Node::Seq(items, _)) => items,
            _ => &[],
        }
    }
    fn seq_mut(&mut self, key: &str) -> &mut [Node] {
        match self.get_mut(key) {
            Some(Node::Seq(items, _)) => items,
            _ => &mut [],
        }
    }
    fn pod_spec(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, k| n.get(k))
    }
    fn pod_spec_mut(&mut self, path: &[&str]) -> Option<&mut Node> {
        let mut n = self;
        for k in path {
            n = n.get_mut(k)?;
        }
        Some(n)
    }
}

fn tag_text(t: Option<Tag>) -> Option<String> {
    t.map(|t| match t.handle.as_str() {
        "!" | "!!" => format!("{}{}", t.handle, t.suffix),
        "tag:yaml.org,2002:" => format!("!!{}", t.suffix),
        h => format!("!<{h}{}>", t.suffix),
    })
}

/// Parses `text` into its documents.
fn build(text: &str) -> Result<Vec<Node>, String> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut anchors: std::collections::HashMap<usize, Node> = Default::default();
    // open collections: (node, anchor id, pending key for maps)
    let mut stack: Vec<(Node, usize, Option<Node>)> = Vec::new();
    loop {
        let (ev, _) = parser.next_token().map_err(|e| e.to_string())?;
        let done: Option<(Node, usize)> = match ev {
            Event::StreamEnd => break,
            Event::StreamStart | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => None,
            Event::Alias(id) => Some((
                anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| format!("alias to unknown anchor {id}"))?,
                0,
            )),
            Event::Scalar(text, style, id, tag) => Some((
                Node::Scalar {
                    text,
                    plain: style == TScalarStyle::Plain,
                    tag: tag_text(tag),
                },
                id,
            )),
            Event::SequenceStart(id, tag) => {
                stack.push((Node::Seq(Vec::new(), tag_text(tag)), id, None));
                None
            }
            Event::MappingStart(id, tag) => {
                stack.push((Node::Map(Vec::new(), tag_text(tag)), id, None));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (n, id, _) = stack.pop().ok_or("unbalanced collection")?;
                Some((n, id))
            }
        };
        let Some((node, id)) = done else { continue };
        if id != 0 {
            anchors.insert(id, node.clone());
        }
        match stack.last_mut() {
            None => docs.push(node),
            Some((Node::Seq(items, _), _, _)) => items.push(node),
            Some((Node::Map(kv, _), _, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => kv.push((k, node)),
            },
            Some((Node::Scalar { .. }, _, _)) => return Err("scalar holds a child".into()),
        }
    }
    Ok(docs)
}

// ---- emitting ----------------------------------------------------------------

/// A double-quoted YAML string (JSON's escapes are YAML's).
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn emit_scalar(n: &Node, out: &mut String) {
    if let Node::Scalar { text, plain, tag } = n {
        if let Some(t) = tag {
            out.push_str(t);
            out.push(' ');
        }
        if *plain && text.is_empty() {
            // an empty node (`annotations:` with nothing after it): null
            out.push_str("null");
        } else if *plain {
            out.push_str(text);
        } else {
            quote(text, out);
        }
    }
}

fn tag_of(n: &Node) -> Option<&str> {
    match n {
        Node::Seq(_, t) | Node::Map(_, t) => t.as_deref(),
        Node::Scalar { .. } => None,
    }
}

/// A flow form, for empty collections and the rare complex key.
fn emit_flow(n: &Node, out: &mut String) {
    if let Some(t) = tag_of(n) {
        out.push_str(t);
        out.push(' ');
    }
    match n {
        Node::Scalar { text, tag, .. } => {
            if let Some(t) = tag {
                out.push_str(t);
                out.push(' ');
            }
            // flow context: always quoted (a plain scalar there is limited)
            quote(text, out)
        }
        Node::Seq(items, _) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_flow(it, out);
            }
            out.push(']');
        }
        Node::Map(kv, _) => {
            out.push('{');
            for (i, (k, v)) in kv.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_flow(k, out);
                out.push_str(": ");
                emit_flow(v, out);
            }
            out.push('}');
        }
    }
}

fn is_block(n: &Node) -> bool {
    match n {
        Node::Seq(items, _) => !items.is_empty(),
        Node::Map(kv, _) => !kv.is_empty(),
        Node::Scalar { .. } => false,
    }
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Writes `n` (at the start of a line, at `ind`), block style.
fn emit_block(n: &Node, ind: usize, out: &mut String) {
    match n {
        Node::Map(kv, _) if !kv.is_empty() => {
            for (i, (k, v)) in kv.iter().enumerate() {
                if i > 0 {
                    indent(out, ind);
                }
                if matches!(k, Node::Scalar { .. }) {
                    emit_scalar(k, out);
                } else {
                    out.push_str("? ");
                    emit_flow(k, out);
                    out.push('\n');
                    indent(out, ind);
                }
                out.push(':');
                emit_value(v, ind, out);
            }
        }
        Node::Seq(items, _) if !items.is_empty() => {
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    indent(out, ind);
                }
                out.push('-');
                if is_block(it) {
                    if let Some(t) = tag_of(it) {
                        out.push(' ');
                        out.push_str(t);
                        out.push('\n');
                        indent(out, ind + 2);
                    } else {
                        out.push(' ');
                    }
                    emit_block(it, ind + 2, out);
                } else {
                    out.push(' ');
                    emit_inline(it, out);
                    out.push('\n');
                }
            }
        }
        other => {
            emit_inline(other, out);
            out.push('\n');
        }
    }
}

/// After `key:`: a scalar or empty collection on the same line, a block on
/// the next lines.
fn emit_value(v: &Node, ind: usize, out: &mut String) {
    if is_block(v) {
        if let Some(t) = tag_of(v) {
            out.push(' ');
            out.push_str(t);
        }
        out.push('\n');
        indent(out, ind + 2);
        emit_block(v, ind + 2, out);
    } else {
        out.push(' ');
        emit_inline(v, out);
        out.push('\n');
    }
}

fn emit_inline(n: &Node, out: &mut String) {
    match n {
        Node::Scalar { .. } => emit_scalar(n, out),
        other => emit_flow(other, out),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn site() -> SiteImages {
        let img = |n: &str, d: &str| SiteImage {
            name: ImageRef::parse(n).unwrap(),
            digest: d.into(),
        };
        SiteImages {
            registry: "reg.site:5000".into(),
            prefix: "stoa".into(),
            images: vec![
                img("docker.io/bitnami/postgresql:17.5.0", D1),
                img("docker.io/library/busybox:latest", D2),
                img("hashicorp/vault:1.20.4", D1),
                img("registry.k8s.io/ingress-nginx/controller:v1.13.0", D2),
            ],
        }
    }

    fn resolve(i: &str) -> Result<String, String> {
        site().resolve(i)
    }

    const ALL_KINDS: &str = r#"# Source: c/templates/cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm   # a comment that stays
data:
  image: busybox
---
# Source: c/templates/pod.yaml
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: a, image: busybox}]
  initContainers:
  - name: i
    image: "docker.io/bitnami/postgresql:17.5.0"
  ephemeralContainers:
  - name: e
    image: 'index.docker.io/library/busybox:latest'
---
kind: Deployment
metadata: {name: d}
spec: {template: {spec: {containers: [{name: a, image: hashicorp/vault:1.20.4}]}}}
---
kind: StatefulSet
metadata: {name: s}
spec: {template: {spec: {containers: [{name: a, image: busybox}]}}}
---
kind: DaemonSet
metadata: {name: ds}
spec: {template: {spec: {containers: [{name: a, image: busybox}]}}}
---
kind: ReplicaSet
metadata: {name: rs}
spec: {template: {spec: {containers: [{name: a, image: busybox}]}}}
---
kind: Job
metadata:
  name: j
  annotations:
    "helm.sh/hook": pre-install
spec: {template: {spec: {containers: [{name: a, image: busybox}]}}}
---
kind: CronJob
metadata: {name: cj}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: a
            image: registry.k8s.io/ingress-nginx/controller:v1.13.0@sha256:2222222222222222222222222222222222222222222222222222222222222222
"#;

    #[test]
    fn every_pod_bearing_kind_is_rewritten() {
        let r = rewrite(ALL_KINDS, &resolve).unwrap();
        let l = list(&r.text).unwrap();
        assert_eq!(l.len(), 9, "{}", r.text);
        for i in &l {
            assert!(
                i.image.starts_with("reg.site:5000/stoa/"),
                "{} kept {}",
                i.describe(),
                i.image
            );
        }
        let kinds: Vec<&str> = l.iter().map(|i| i.kind.as_str()).collect();
        for k in [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
        ] {
            assert!(kinds.contains(&k), "{k} missing");
        }
        assert_eq!(
            l[1].image,
            format!("reg.site:5000/stoa/bitnami/postgresql:17.5.0@{D1}")
        );
        assert_eq!(l[1].container, "initContainers/i");
        assert_eq!(l[2].container, "ephemeralContainers/e");
        assert_eq!(
            l[0].image,
            format!("reg.site:5000/stoa/library/busybox:latest@{D2}")
        );
        assert!(l
            .iter()
            .any(|i| i.kind == "Job" && i.hook.as_deref() == Some("pre-install")));
        assert_eq!(
            l[8].image,
            format!("reg.site:5000/stoa/ingress-nginx/controller:v1.13.0@{D2}")
        );
        // the ConfigMap passes through byte for byte, comment and all
        assert!(r.text.starts_with(
            "# Source: c/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm   # a comment that stays\ndata:\n  image: busybox\n---\n# Source: c/templates/pod.yaml\n"
        ));
        // rewriting again changes nothing more (already site names)
        let again = rewrite(&r.text, &resolve).unwrap();
        assert_eq!(list(&again.text).unwrap(), l);
    }

    #[test]
    fn scalars_keep_their_yaml_1_1_meaning() {
        let doc = "kind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    metadata:\n      annotations:\n    spec:\n      volumes:\n      - name: v\n        configMap: {name: c, defaultMode: 0755}\n      containers:\n      - name: a\n        image: busybox\n        args: [\"on\", yes, '1e3', 1e3, \"multi\\nline\", ~, '']\n        env:\n        - &e {name: A, value: x}\n        - *e\n        command:\n        - |\n          echo \"hi\"\n          exit 0\n";
        let r = rewrite(doc, &resolve).unwrap();
        let t = &r.text;
        assert!(t.contains("defaultMode: 0755"), "{t}");
        assert!(
            t.contains("annotations: null\n"),
            "an empty node stays null: {t}"
        );
        assert!(t.contains("- \"on\"\n"), "{t}");
        assert!(t.contains("- yes\n"), "{t}");
        assert!(t.contains("- \"1e3\"\n") && t.contains("- 1e3\n"), "{t}");
        assert!(t.contains("- \"multi\\nline\"\n"), "{t}");
        assert!(t.contains("- ~\n") && t.contains("- \"\"\n"), "{t}");
        assert!(t.contains("- \"echo \\\"hi\\\"\\nexit 0\\n\"\n"), "{t}");
        assert_eq!(t.matches("name: A").count(), 2, "alias expanded: {t}");
        // and it parses back to the same structure with the new image
        let back = build(t).unwrap();
        let orig = build(doc).unwrap();
        assert_eq!(back.len(), 1);
        let c = |n: &Node| {
            n.pod_spec(&["spec", "template", "spec"])
                .unwrap()
                .seq("containers")[0]
                .get("args")
                .cloned()
        };
        assert_eq!(format!("{:?}", c(&back[0])), format!("{:?}", c(&orig[0])));
    }

    #[test]
    fn an_image_the_bundle_lacks_is_named_with_its_container() {
        let doc = "# Source: vault/templates/injector.yaml\nkind: Deployment\nmetadata: {name: vault-agent-injector}\nspec: {template: {spec: {containers: [{name: sidecar-injector, image: hashicorp/vault-k8s:1.7.0}, {name: ok, image: busybox}]}}}\n";
        let e = rewrite(doc, &resolve).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("Deployment/vault-agent-injector container containers/sidecar-injector (vault/templates/injector.yaml): image hashicorp/vault-k8s:1.7.0 is not carried by the bundle"),
            "{m}"
        );
        assert_eq!(e.kind(), "image-not-served");
        assert!(!m.contains('\n'));
    }

    #[test]
    fn a_pinned_digest_the_bundle_lacks_is_refused() {
        let e = resolve(&format!("docker.io/bitnami/postgresql:17.5.0@{D2}")).unwrap_err();
        assert!(
            e.contains("pins sha256:2222") && e.contains("does not have"),
            "{e}"
        );
        let e = resolve("docker.io/bitnami/postgresql:16").unwrap_err();
        assert!(e.contains("with tag 16"), "{e}");
        let e = resolve("Not A Ref").unwrap_err();
        assert!(e.contains("not a valid OCI reference"), "{e}");
        // a site name already is resolved to its pinned form
        assert_eq!(
            resolve("reg.site:5000/stoa/hashicorp/vault:1.20.4").unwrap(),
            format!("reg.site:5000/stoa/hashicorp/vault:1.20.4@{D1}")
        );
    }

    #[test]
    fn invalid_yaml_is_one_clear_error() {
        for bad in [
            "kind: Pod\nspec: [unclosed\n",
            "a: b\n c: d\n  - e\n",
            "kind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: a, image: {x: 1}}]}}}\n",
            "kind: Pod\n...\nkind: Pod\n",
        ] {
            let e = rewrite(bad, &resolve).unwrap_err();
            let m = e.to_string();
            assert_eq!(e.kind(), "rendered-yaml", "{m}");
            assert!(m.starts_with("read rendered manifests: document 1"), "{m}");
            assert!(!m.contains('\n'), "{m}");
        }
    }

    #[test]
    fn documents_without_pods_pass_through_unchanged() {
        let text = "---\n# Source: x/svc.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: s # keep\n---\n\n---   \n# only a comment\n";
        let r = rewrite(text, &resolve).unwrap();
        assert_eq!(r.text, text);
        assert!(r.images.is_empty());
        assert!(rewrite("", &resolve).unwrap().text.is_empty());
    }
}
