//! The YAML of rendered manifests, read once: a tree that keeps plain
//! scalars' text ([`build`]) and writes it back ([`emit_block`]).
//!
//! Reading is bounded: nesting depth ([`MAX_DEPTH`]), nodes made with
//! aliases expanded ([`MAX_NODES`], Go yaml.v3's "excessive aliasing" as a
//! flat cap) and scalar bytes with aliases expanded
//! ([`MAX_EXPANDED_BYTES`]); an anchored node's stored copy is counted too.
//! Duplicate keys and merge keys (`<<`, `!!merge`) anywhere are reported
//! with their path; a NEL, LS or PS anywhere is refused (go-yaml ends a
//! line there, YAML 1.2 does not).

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

use crate::{MAX_DEPTH, MAX_EXPANDED_BYTES, MAX_NODES};

// ---- a YAML tree that keeps plain scalars' text -----------------------------

#[derive(Debug, Clone)]
pub(crate) enum Node {
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
    pub(crate) fn quoted(s: &str) -> Self {
        Node::Scalar {
            text: s.to_owned(),
            plain: false,
            tag: None,
        }
    }
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(kv, _) => kv
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match self {
            Node::Map(kv, _) => kv
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

fn tag_text(t: Option<Tag>) -> Option<String> {
    t.map(|t| match t.handle.as_str() {
        "!" | "!!" => format!("{}{}", t.handle, t.suffix),
        "tag:yaml.org,2002:" => format!("!!{}", t.suffix),
        h => format!("!<{h}{}>", t.suffix),
    })
}

/// What a built node costs: nodes and scalar bytes (aliases expanded), and
/// its height (a scalar is 0).
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    nodes: usize,
    bytes: usize,
    height: usize,
}

/// One open collection.
struct Frame {
    node: Node,
    anchor: usize,
    /// A map's key waiting for its value.
    key: Option<Node>,
    /// A map's keys so far (their text), to refuse a duplicate.
    keys: HashSet<String>,
    cost: Cost,
}

/// The documents of a text, and the first problem that does not stop the
/// parse (a duplicate or merge key, with its path), so the error can name
/// the object it is in.
pub(crate) struct Built {
    pub docs: Vec<Node>,
    pub problem: Option<String>,
}

/// Where in the tree the innermost open collection is: `spec.template[0]`.
fn path(stack: &[Frame]) -> String {
    let mut p = String::new();
    for f in stack {
        match &f.node {
            Node::Map(..) => {
                if let Some(k) = &f.key {
                    if !p.is_empty() {
                        p.push('.');
                    }
                    p.push_str(&key_text(k));
                }
            }
            Node::Seq(items, _) => p.push_str(&format!("[{}]", items.len())),
            Node::Scalar { .. } => {}
        }
    }
    p
}

/// A key as text: a scalar's text, a complex key in flow form.
fn key_text(k: &Node) -> String {
    match k {
        Node::Scalar { text, .. } => text.clone(),
        other => {
            let mut s = String::new();
            emit_flow(other, &mut s);
            s
        }
    }
}

/// Parses `text` into its documents, within [`MAX_DEPTH`],
/// [`MAX_NODES`] and [`MAX_EXPANDED_BYTES`] (aliases counted at their
/// expanded size, so an alias bomb stops early). Syntax errors and caps are
/// an `Err`; a duplicate or merge key is [`Built::problem`].
pub(crate) fn build(text: &str) -> Result<Built, String> {
    if let Some((at, c)) = text.char_indices().find(|(_, c)| is_disputed_break(*c)) {
        return Err(format!(
            "U+{:04X} at line {}: a line break to Kubernetes' YAML 1.1 reader and not to a YAML 1.2 one (refused: readers disagree on where a line ends)",
            c as u32,
            text[..at].matches('\n').count() + 1
        ));
    }
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut problem: Option<String> = None;
    let mut anchors: HashMap<usize, (Node, Cost)> = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    // per document: nodes and scalar bytes made so far, aliases expanded
    let mut total = Cost::default();
    let charge = |total: &mut Cost, c: Cost| -> Result<(), String> {
        total.nodes = total.nodes.saturating_add(c.nodes);
        total.bytes = total.bytes.saturating_add(c.bytes);
        if total.nodes > MAX_NODES {
            return Err(format!(
                "over {MAX_NODES} nodes (excessive aliasing or a too large document)"
            ));
        }
        if total.bytes > MAX_EXPANDED_BYTES {
            return Err(format!(
                "over {MAX_EXPANDED_BYTES} bytes of scalars with aliases expanded (excessive aliasing)"
            ));
        }
        Ok(())
    };
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| e.to_string())?;
        let is_seq = matches!(ev, Event::SequenceStart(..));
        let done: Option<(Node, usize, Cost)> = match ev {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                total = Cost::default();
                None
            }
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => None,
            Event::Alias(id) => {
                let (n, c) = anchors
                    .get(&id)
                    .ok_or_else(|| format!("alias to unknown anchor {id}"))?;
                charge(&mut total, *c)?;
                Some((n.clone(), 0, *c))
            }
            Event::Scalar(text, style, id, tag) => {
                let c = Cost {
                    nodes: 1,
                    bytes: text.len(),
                    height: 0,
                };
                charge(&mut total, c)?;
                Some((
                    Node::Scalar {
                        text,
                        plain: style == TScalarStyle::Plain,
                        tag: tag_text(tag),
                    },
                    id,
                    c,
                ))
            }
            Event::SequenceStart(id, tag) | Event::MappingStart(id, tag) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!(
                        "nested deeper than {MAX_DEPTH} at line {}",
                        mark.line()
                    ));
                }
                charge(
                    &mut total,
                    Cost {
                        nodes: 1,
                        ..Cost::default()
                    },
                )?;
                let node = if is_seq {
                    Node::Seq(Vec::new(), tag_text(tag))
                } else {
                    Node::Map(Vec::new(), tag_text(tag))
                };
                stack.push(Frame {
                    node,
                    anchor: id,
                    key: None,
                    keys: HashSet::new(),
                    cost: Cost {
                        nodes: 1,
                        bytes: 0,
                        height: 1,
                    },
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let f = stack.pop().ok_or("unbalanced collection")?;
                Some((f.node, f.anchor, f.cost))
            }
        };
        let Some((node, id, cost)) = done else {
            continue;
        };
        if stack.len() + cost.height > MAX_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_DEPTH} (through an alias) at line {}",
                mark.line()
            ));
        }
        if id != 0 {
            // the stored copy costs as much again
            charge(&mut total, cost)?;
            anchors.insert(id, (node.clone(), cost));
        }
        if let Some(doc) = attach(&mut stack, node, cost, &mut problem)? {
            docs.push(doc);
        }
    }
    Ok(Built { docs, problem })
}

/// NEL, LS and PS end a line for go-yaml (Helm and Kubernetes read with
/// it, YAML 1.1) and not for this reader (YAML 1.2): text after one in a
/// comment would be content to the cluster and a comment here.
fn is_disputed_break(c: char) -> bool {
    matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// Puts a finished node into the open collection on top of `stack`
/// (checking a map key for a duplicate or a merge key), or returns it when
/// it is a whole document.
fn attach(
    stack: &mut [Frame],
    node: Node,
    cost: Cost,
    problem: &mut Option<String>,
) -> Result<Option<Node>, String> {
    let need_path = problem.is_none()
        && matches!(
            stack.last(),
            Some(Frame {
                node: Node::Map(..),
                key: None,
                ..
            })
        );
    let at = if need_path {
        path(stack)
    } else {
        String::new()
    };
    let Some(top) = stack.last_mut() else {
        return Ok(Some(node));
    };
    top.cost.nodes = top.cost.nodes.saturating_add(cost.nodes);
    top.cost.bytes = top.cost.bytes.saturating_add(cost.bytes);
    top.cost.height = top.cost.height.max(cost.height + 1);
    match &mut top.node {
        Node::Seq(items, _) => items.push(node),
        Node::Map(kv, _) => match top.key.take() {
            None => {
                let k = key_text(&node);
                let merge = matches!(&node, Node::Scalar { tag: Some(t), .. } if t == "!!merge");
                if problem.is_none() {
                    let here = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    if k == "<<" || merge {
                        *problem = Some(format!(
                            "merge key `<<` at {} (refused: it hides what a reader sees)",
                            clean(&here)
                        ));
                    } else if top.keys.contains(&k) {
                        *problem = Some(format!(
                            "duplicate key {} (refused: readers disagree on which one counts)",
                            clean(&here)
                        ));
                    }
                }
                top.keys.insert(k);
                top.key = Some(node);
            }
            Some(k) => kv.push((k, node)),
        },
        Node::Scalar { .. } => return Err("scalar holds a child".into()),
    }
    Ok(None)
}

/// Untrusted text for a one-line message: control characters escaped.
pub(crate) fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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
pub(crate) fn emit_block(n: &Node, ind: usize, out: &mut String) {
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
