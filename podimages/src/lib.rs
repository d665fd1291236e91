//! The one reader of rendered Kubernetes manifests (`helm template` output, a
//! Helm post-renderer's input): which images a chart's pods run ([`list`],
//! the bundler's `images` and build's completeness check) and their rewrite
//! to the site registry ([`rewrite`], the updater's post-renderer;
//! docs/OPERATIONS.md, *Images from the site registry*). Build and site
//! agree because both call this crate; `stoa-format` does not depend on it.
//!
//! **Documents.** Input is split at `---` lines (as Helm's
//! `releaseutil.SplitManifests` does). *Every* document is parsed, pod or
//! not, and must be one Kubernetes object (a mapping) whose `kind` is a
//! valid kind: an ASCII capital letter, then letters and digits, at most
//! [`MAX_KIND`] bytes (so `deployment`, `Deploy-ment`, `""` or `kind: [x]`
//! are refused, never passed through). A comment-only or empty document is
//! kept as it is.
//!
//! **Refused anywhere in any document**, each a named test in
//! `tests/rules.rs` with a fixture under `tests/fixtures/<rule>/`:
//! - duplicate mapping keys (Helm's and Kubernetes' readers take the last
//!   one, a first-key reader the first);
//! - YAML merge keys (`<<`, `!!merge`), which would hide a pod's containers;
//! - a document over [`MAX_DOCUMENT_BYTES`], nested deeper than
//!   [`MAX_DEPTH`], or making over [`MAX_NODES`] nodes or
//!   [`MAX_EXPANDED_BYTES`] scalar bytes with its aliases expanded (an alias
//!   bomb stops there, before memory grows; Go yaml.v3 refuses such input as
//!   "excessive aliasing");
//! - an invalid `kind`, and YAML that does not parse.
//!
//! **Objects read as pods.** [`POD_SPECS`] names where each pod-bearing
//! kind holds its pod spec. Any other kind (a custom resource such as an
//! Argo `Rollout`) whose `spec.template.spec` or
//! `spec.jobTemplate.spec.template.spec` holds a container list is read as
//! a pod too. `kind: List` and every `*List` kind: each of `items` is read
//! as an object of its own (Helm flattens them into real objects).
//!
//! **Image origins** ([`Origin`]), in this order for each container of
//! `containers`, `initContainers`, `ephemeralContainers`: its `image`, then
//! the `value` of each `env` variable whose name ends in `_IMAGE` (an image
//! a controller or injector starts later, e.g. Vault's
//! `AGENT_INJECT_VAULT_IMAGE`; an empty value names none).
//!
//! **Images named elsewhere** ([`Origin::Referenced`], [`referenced`]):
//! then every other string value of the object that is under a key naming
//! an image, or is a full image reference (registry host, path, tag or
//! digest), or is `--flag=<full reference>`. An operator hands such names
//! to the pods it creates; [`rewrite`] rewrites them as it rewrites pod
//! images, so the operator is given site names and nothing is mutated
//! after the fact.
//!
//! **What [`rewrite`] emits.** A document with no image passes through byte
//! for byte. A document with one (a `List` counts as one document) is
//! emitted again from its parsed events: the comment lines before it
//! (Helm's `# Source: …`) are kept, comments inside it are not. Plain
//! scalars are written back with their exact text (so `0755`, `yes` or
//! `1e3` mean what they meant to the YAML 1.1 reader Kubernetes uses),
//! quoted and block scalars as double-quoted strings, aliases expanded,
//! each rewritten image as a double-quoted string: the document is
//! equivalent, not byte-identical. Every image that cannot be served is
//! named in one error.
//!
//! [`SiteImages`] decides where an image comes from: the image the bundle
//! verified under the same name (Docker Hub's short forms normalised), as
//! `<site registry>/<prefix>/<path>:<tag>@<digest>`. An image the bundle does
//! not carry, or a pinned digest it does not have, is an error naming the
//! document's kind and name, the container and the image.

mod error;
pub mod referenced;
mod rule;
mod site;
mod yaml;

pub use error::PodImagesError;
pub use site::{mirror_namespace, site_repository, Layout, SiteImage, SiteImages};

pub use rule::valid_kind;

#[cfg(test)]
use rule::at;
use rule::visit_doc;
use yaml::{build, clean, emit_block, Node};

/// Largest document (the text between two `---` lines) read. Kubernetes
/// stores an object in at most 1.5 MiB; a large CRD fits many times over.
pub const MAX_DOCUMENT_BYTES: usize = 8 << 20;
/// Deepest nesting of collections in a document, aliases expanded (a CRD's
/// schema nests about 40 deep).
pub const MAX_DEPTH: usize = 128;
/// Most nodes (scalars and collections) one document makes, each alias
/// counted at its expanded size and each anchored node once more for its
/// stored copy.
pub const MAX_NODES: usize = 500_000;
/// Most scalar bytes one document makes with its aliases expanded (counted
/// as for [`MAX_NODES`]).
pub const MAX_EXPANDED_BYTES: usize = 4 * MAX_DOCUMENT_BYTES;
/// Longest `kind` accepted.
pub const MAX_KIND: usize = 63;

/// The kinds whose documents hold a pod spec, and where it is.
pub const POD_SPECS: &[(&str, &[&str])] = &[
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

/// Where any other kind (a custom resource) may embed a pod template.
const EMBEDDED_POD_SPECS: &[&[&str]] = &[
    &["spec", "template", "spec"],
    &["spec", "jobTemplate", "spec", "template", "spec"],
];

/// The container lists of a pod spec.
const CONTAINER_LISTS: &[(&str, Origin)] = &[
    ("containers", Origin::Containers),
    ("initContainers", Origin::InitContainers),
    ("ephemeralContainers", Origin::EphemeralContainers),
];

/// Where in a pod spec an image was named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Containers,
    InitContainers,
    EphemeralContainers,
    /// The value of a container's env variable named `*_IMAGE`.
    Env,
    /// Named outside a pod's images: a value under a key naming an image,
    /// or a full image reference anywhere in the object
    /// ([`referenced`]).
    Referenced,
}

/// One image of one container of a rendered document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PodImage {
    /// The document's `# Source:` path (Helm's template name), when it has one.
    pub template: Option<String>,
    /// The object's kind (a `List`'s item: the item's own).
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `containers/<name>`, `initContainers/<name>` or
    /// `ephemeralContainers/<name>`; an env value adds `/env/<VARIABLE>`;
    /// a [`Origin::Referenced`] image: the field path in the object
    /// (`spec.imageName`, `spec.template.spec.containers[0].args[1]`).
    pub container: String,
    /// The image as rendered.
    pub image: String,
    /// A Helm hook: its `metadata.annotations."helm.sh/hook"` value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// Where it was named: `containers`, `init-containers`,
    /// `ephemeral-containers`, `env`, or `referenced` (`container` is then
    /// the field path).
    pub origin: Origin,
}

impl PodImage {
    /// `Deployment/vault-injector container containers/sidecar-injector`.
    pub fn describe(&self) -> String {
        format!(
            "{}/{} {} {}{}",
            self.kind,
            clean(&self.name),
            if self.origin == Origin::Referenced {
                "field"
            } else {
                "container"
            },
            clean(&self.container),
            self.template
                .as_deref()
                .map(|t| format!(" ({})", clean(t)))
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

/// Lists every image of every pod-bearing object.
pub fn list(manifests: &str) -> Result<Vec<PodImage>, PodImagesError> {
    let mut out = Vec::new();
    let docs = split(manifests).into_iter().filter_map(|s| match s {
        Segment::Doc(t) => Some(t),
        Segment::Separator(_) => None,
    });
    for (i, text) in docs.enumerate() {
        if let Some(mut d) = parse_doc(text, i + 1)? {
            visit_doc(&mut d, &mut |img, _| out.push(img))?;
        }
    }
    Ok(out)
}

/// Rewrites every pod image through `resolve` (image → new name, or why it
/// cannot be served). Every image that cannot be served is named in one error.
pub fn rewrite(
    manifests: &str,
    resolve: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Rewritten, PodImagesError> {
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
        let before = images.len();
        visit_doc(&mut d, &mut |img, node| match resolve(&img.image) {
            Ok(n) => {
                // a referenced image may end a value (`--flag=<image>`)
                let lead = node
                    .as_str()
                    .and_then(|t| t.strip_suffix(img.image.as_str()))
                    .unwrap_or_default();
                *node = Node::quoted(&format!("{lead}{n}"));
                images.push((img, n));
            }
            Err(why) => refused.push(format!(
                "{}: image {} {}",
                img.describe(),
                clean(&img.image),
                clean(&why)
            )),
        })?;
        if images.len() == before && refused.is_empty() {
            text.push_str(doc_text);
            continue;
        }
        text.push_str(&d.head);
        let mut out = String::new();
        emit_block(&d.root, 0, &mut out);
        text.push_str(&out);
        if !out.ends_with('\n') {
            text.push('\n');
        }
    }
    if !refused.is_empty() {
        return Err(PodImagesError::ImagesNotServed {
            count: refused.len(),
            images: refused.join("; "),
        });
    }
    Ok(Rewritten { text, images })
}

// ---- documents -------------------------------------------------------------

enum Segment<'a> {
    Separator(&'a str),
    Doc(&'a str),
}

/// Splits at `---` lines (`---` then nothing, blanks or a comment), where
/// Kubernetes' YAML reader splits what Helm applies; the separators are
/// kept so the text can be put back together.
fn split(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        // as Kubernetes' YAML reader ends a document (apimachinery's
        // `YAMLReader`): `---` then nothing, blanks or a comment
        let is_sep = line.strip_prefix("---").is_some_and(|rest| {
            let rest = rest.trim();
            rest.is_empty() || rest.starts_with('#')
        });
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

/// One parsed document.
struct Doc {
    number: usize,
    template: Option<String>,
    /// The comment and blank lines before the content.
    head: String,
    root: Node,
}

impl Doc {
    fn refuse(&self, object: &str, reason: &str) -> PodImagesError {
        refusal(self.number, self.template.as_deref(), object, reason)
    }
}

fn refusal(number: usize, template: Option<&str>, object: &str, reason: &str) -> PodImagesError {
    PodImagesError::RenderedYaml {
        document: number,
        template: template.map_or_else(|| "no # Source line".into(), clean),
        reason: if object.is_empty() {
            reason.to_owned()
        } else {
            format!("{object}: {reason}")
        },
    }
}

/// The lines of `text` as YAML ends them (`\r\n`, `\r` or `\n`), each
/// with its line break.
fn yaml_lines_inclusive(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = match rest.find(['\r', '\n']) {
            Some(i) if rest[i..].starts_with("\r\n") => i + 2,
            Some(i) => i + 1,
            None => rest.len(),
        };
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

/// The lines of `text` as YAML ends them, without their line break.
fn yaml_lines(text: &str) -> impl Iterator<Item = &str> {
    yaml_lines_inclusive(text).map(|l| l.trim_end_matches(['\r', '\n']))
}

/// `Kind/name` for an error about an object that did not parse: read from
/// its top-level `kind:` line, best effort.
fn guess_object(text: &str) -> String {
    yaml_lines(text)
        .find_map(|l| l.strip_prefix("kind:"))
        .map(|k| clean(k.trim().trim_matches(['"', '\''])))
        .unwrap_or_default()
}

/// Parses document `number` (from 1): every document, pod or not, so its
/// YAML and the refusals above apply to all. None when it holds no node.
fn parse_doc(text: &str, number: usize) -> Result<Option<Doc>, PodImagesError> {
    let template = yaml_lines(text).find_map(|l| {
        l.trim()
            .strip_prefix("# Source:")
            .map(|s| s.trim().to_owned())
    });
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(refusal(
            number,
            template.as_deref(),
            &guess_object(text),
            &format!("over {MAX_DOCUMENT_BYTES} bytes"),
        ));
    }
    let built =
        build(text).map_err(|r| refusal(number, template.as_deref(), &guess_object(text), &r))?;
    let mut docs = built.docs;
    if docs.len() > 1 {
        return Err(refusal(
            number,
            template.as_deref(),
            &guess_object(text),
            "holds more than one document (a `...` end marker?)",
        ));
    }
    let Some(root) = docs.pop() else {
        return Ok(None);
    };
    // the comment and blank lines before the content, ended where YAML ends
    // a line (a bare `\r` too: what follows it is content, not comment)
    let head_len: usize = yaml_lines_inclusive(text)
        .take_while(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        })
        .map(str::len)
        .sum();
    let head = text[..head_len].to_owned();
    let d = Doc {
        number,
        template,
        head,
        root,
    };
    if let Some(p) = built.problem {
        let object = describe_object(&d.root).unwrap_or_else(|| guess_object(text));
        return Err(d.refuse(&object, &p));
    }
    Ok(Some(d))
}

/// `Kind/name` of a parsed object, when its kind is a string.
fn describe_object(n: &Node) -> Option<String> {
    let kind = n.get("kind")?.as_str()?;
    let name = n
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("");
    Some(format!("{}/{}", clean(kind), clean(name)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stoa_format::names::ImageRef;

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
            layout: Layout::Prefix,
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
  greeting: busybox
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
            "# Source: c/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm   # a comment that stays\ndata:\n  greeting: busybox\n---\n# Source: c/templates/pod.yaml\n"
        ));
        // rewriting again changes nothing more (already site names)
        let again = rewrite(&r.text, &resolve).unwrap();
        assert_eq!(list(&again.text).unwrap(), l);
    }

    const OPERATOR: &str = r#"# Source: op/templates/op.yaml
kind: Deployment
metadata: {name: operator}
spec:
  template:
    spec:
      containers:
      - name: manager
        image: busybox
        args:
        - --leader-elect
        - --controller-image=registry.k8s.io/ingress-nginx/controller:v1.13.0
        - http://quay.io/x/y:1
---
# Source: op/templates/cm.yaml
kind: ConfigMap
metadata: {name: op-config}
data:
  AGENT_IMAGE: docker.io/bitnami/postgresql:17.5.0
  url: https://vault.example:8200/v1
  replicas: "3"
---
# Source: op/templates/cluster.yaml
kind: Cluster
metadata: {name: pg}
spec:
  instances: 3
  imageName: hashicorp/vault:1.20.4
  sidecars: [{name: X_IMAGE, value: busybox:latest}]
"#;

    #[test]
    fn images_named_outside_pod_specs_are_found_and_rewritten() {
        let l = list(OPERATOR).unwrap();
        let got: Vec<(&str, &str, Origin, &str)> = l
            .iter()
            .map(|i| {
                (
                    i.kind.as_str(),
                    i.container.as_str(),
                    i.origin,
                    i.image.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Deployment",
                    "containers/manager",
                    Origin::Containers,
                    "busybox"
                ),
                (
                    "Deployment",
                    "spec.template.spec.containers[0].args[1]",
                    Origin::Referenced,
                    "registry.k8s.io/ingress-nginx/controller:v1.13.0"
                ),
                (
                    "ConfigMap",
                    "data.AGENT_IMAGE",
                    Origin::Referenced,
                    "docker.io/bitnami/postgresql:17.5.0"
                ),
                (
                    "Cluster",
                    "spec.imageName",
                    Origin::Referenced,
                    "hashicorp/vault:1.20.4"
                ),
                (
                    "Cluster",
                    "spec.sidecars[0].value",
                    Origin::Referenced,
                    "busybox:latest"
                ),
            ]
        );
        assert_eq!(
            l[3].describe(),
            "Cluster/pg field spec.imageName (op/templates/cluster.yaml)"
        );
        // prefix layout: every one handed to the operator as a site name
        let r = rewrite(OPERATOR, &resolve).unwrap();
        assert!(
            r.text.contains(&format!(
                "- \"--controller-image=reg.site:5000/stoa/ingress-nginx/controller:v1.13.0@{D2}\"\n"
            )),
            "{}",
            r.text
        );
        assert!(r.text.contains(&format!(
            "AGENT_IMAGE: \"reg.site:5000/stoa/bitnami/postgresql:17.5.0@{D1}\"\n"
        )));
        assert!(r.text.contains(&format!(
            "imageName: \"reg.site:5000/stoa/hashicorp/vault:1.20.4@{D1}\"\n"
        )));
        assert!(r.text.contains("- http://quay.io/x/y:1\n"), "{}", r.text);
        assert!(r.text.contains("url: https://vault.example:8200/v1\n"));
        assert!(r.text.contains("instances: 3\n"));
        // once rewritten, the same names come back (site names resolve to themselves)
        let again = rewrite(&r.text, &resolve).unwrap();
        assert_eq!(again.text, r.text);
        // mirror layout: the names kept, pinned
        let mut m = site();
        m.layout = Layout::Mirror;
        let r = rewrite(OPERATOR, &|i| m.resolve(i)).unwrap();
        assert!(
            r.text.contains(&format!(
                "imageName: \"docker.io/hashicorp/vault:1.20.4@{D1}\"\n"
            )),
            "{}",
            r.text
        );
        // one the bundle lacks is refused, named with its field
        let e = rewrite(
            "kind: Cluster\nmetadata: {name: pg}\nspec: {imageName: ghcr.io/cloudnative-pg/postgresql:17.5}\n",
            &resolve,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("Cluster/pg field spec.imageName: image ghcr.io/cloudnative-pg/postgresql:17.5 is not carried"),
            "{e}"
        );
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
        let back = build(t).unwrap().docs;
        let orig = build(doc).unwrap().docs;
        assert_eq!(back.len(), 1);
        let c = |n: &Node| {
            let Some(Node::Seq(cs, _)) = at(n, &["spec", "template", "spec", "containers"]) else {
                panic!("no containers")
            };
            cs[0].get("args").cloned()
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
