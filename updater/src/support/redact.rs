//! Redaction for the support bundle: the ONE function ([`Redactor::redact`])
//! every collected text passes through before it is written, logs included.
//!
//! Three rules, applied in this order:
//!
//! 1. **Known secrets.** Every exact secret string the updater knows (the
//!    passwords of `[databases.*] url`, the `.pgpass`/`passfile` entries it
//!    would use, the registry `password_file`) is replaced wherever it
//!    appears, also percent-encoded as a URL would hold it.
//! 2. **URL userinfo.** `scheme://user:password@host`: the password goes
//!    (the user name stays: it is not a secret and it helps the vendor).
//! 3. **Secret keys.** A value under a key whose name holds a secret word
//!    ([`SECRET_WORDS`]: password, passwd, secret, token, key, credential,
//!    auth, dsn, pgpass, …) in any of the shapes the collected texts use:
//!    `KEY=value` (env files, logs, conninfo), `key: value` (YAML, HTTP
//!    headers, `kubectl describe`), `"key": "value"` (JSON), a YAML block
//!    scalar (`key: |` and the lines under it), and a Kubernetes env pair
//!    (`name: DB_PASSWORD` then `value: …`).
//!
//! Each replacement is `[REDACTED]` and is recorded ([`Redaction`]: the
//! file, the line, the kind of value; never the value) for `REDACTIONS.txt`.

use std::fmt;

/// What replaces a secret.
pub const MARK: &str = "[REDACTED]";

/// Words that make a key name a secret's (compared in lower case, as parts
/// of the name: `DB_PASSWORD`, `adminPassword`, `apiKey`, `X-Auth-Token`).
pub const SECRET_WORDS: [&str; 14] = [
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "key",
    "credential",
    "creds",
    "auth",
    "dsn",
    "pgpass",
    "cookie",
    "private",
];

/// Key names that hold a secret word but never a secret (the audit log's
/// key ids, the state's counters).
const SAFE_KEYS: [&str; 5] = [
    "signing_key_ids",
    "key_ids",
    "keyid",
    "key_id",
    "secretkeyref",
];

/// Known secrets shorter than this are not searched for (a one-letter
/// password would blank the whole text); the other rules still apply.
pub const MIN_KNOWN_LEN: usize = 3;

/// One replacement made: where and what kind of value (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub file: String,
    pub line: usize,
    pub kind: String,
}

impl fmt::Display for Redaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.kind)
    }
}

/// The secrets the updater knows, and what each one is.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// (secret, what it is), longest first.
    known: Vec<(String, String)>,
}

/// Whether `name` is a key whose value is a secret.
pub fn is_secret_key(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let lower = lower.trim_matches(|c| c == '"' || c == '\'');
    !SAFE_KEYS.contains(&lower) && SECRET_WORDS.iter().any(|w| lower.contains(w))
}

impl Redactor {
    /// Adds a secret the updater knows; `what` says what it is (e.g. "the
    /// password of [databases.stoa] url"), for REDACTIONS.txt.
    pub fn know(&mut self, secret: &str, what: &str) {
        let s = secret.trim_end_matches(['\n', '\r']);
        if s.len() < MIN_KNOWN_LEN {
            return;
        }
        let enc = url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        for v in [s.to_owned(), enc, s.replace(' ', "%20")] {
            if !self.known.iter().any(|(k, _)| *k == v) {
                self.known.push((v, what.to_owned()));
            }
        }
        self.known.sort_by_key(|k| std::cmp::Reverse(k.0.len()));
    }

    /// How many secret strings are known.
    pub fn known_count(&self) -> usize {
        self.known.len()
    }

    /// `text` (the content of `file` in the bundle) with every secret
    /// replaced by [`MARK`]; each replacement is pushed to `log`.
    pub fn redact(&self, file: &str, text: &str, log: &mut Vec<Redaction>) -> String {
        let mut out = String::with_capacity(text.len());
        let mut state = LineState::default();
        for (i, raw) in text.split_inclusive('\n').enumerate() {
            let (line, nl) = match raw.strip_suffix('\n') {
                Some(l) => (l, "\n"),
                None => (raw, ""),
            };
            let mut kinds = Vec::new();
            let line = self.known_in(line, &mut kinds);
            let line = userinfo(&line, &mut kinds);
            let line = keyed(&line, &mut state, &mut kinds);
            for kind in kinds {
                log.push(Redaction {
                    file: file.to_owned(),
                    line: i + 1,
                    kind,
                });
            }
            out.push_str(&line);
            out.push_str(nl);
        }
        out
    }

    /// Rule 1: every known secret in `line`.
    fn known_in(&self, line: &str, kinds: &mut Vec<String>) -> String {
        let mut line = line.to_owned();
        for (secret, what) in &self.known {
            if line.contains(secret.as_str()) {
                let n = line.matches(secret.as_str()).count();
                line = line.replace(secret.as_str(), MARK);
                for _ in 0..n {
                    kinds.push(format!("known secret: {what}"));
                }
            }
        }
        line
    }
}

/// Rule 2: the password of each `scheme://user:password@host` in `line`.
fn userinfo(line: &str, kinds: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after
            .find(|c: char| c == '/' || c.is_whitespace() || "\"'<>`,;)]}".contains(c))
            .unwrap_or(after.len());
        let auth = &after[..end];
        match (auth.rfind('@'), auth.find(':')) {
            (Some(at), Some(colon)) if colon < at && &auth[colon + 1..at] != MARK => {
                out.push_str(&auth[..=colon]);
                out.push_str(MARK);
                out.push_str(&auth[at..]);
                kinds.push("URL userinfo password".into());
            }
            _ => out.push_str(auth),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// What rule 3 carries from one line to the next.
#[derive(Debug, Default)]
struct LineState {
    /// Inside a YAML block scalar of a secret key: lines indented deeper
    /// than this are secret.
    block: Option<usize>,
    /// A `name:` naming a secret was seen on this or the line before: the
    /// next `value` key is secret.
    named: u8,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '-']).len()
}

/// A key found in a line: where its value is and how it ends.
struct Found {
    key: String,
    value_start: usize,
    value_end: usize,
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.'
}

/// The key starting at `i` in `b` (optionally quoted) and its value after
/// `=` or `:`, if there is one.
fn key_at(b: &[u8], i: usize) -> Option<Found> {
    let mut j = i;
    let quote = match b.get(j) {
        Some(q @ (b'"' | b'\'')) => {
            j += 1;
            Some(*q)
        }
        _ => None,
    };
    let ks = j;
    while j < b.len() && is_key_char(b[j]) {
        j += 1;
    }
    if j == ks {
        return None;
    }
    let key = String::from_utf8_lossy(&b[ks..j]).into_owned();
    if let Some(q) = quote {
        if b.get(j) != Some(&q) {
            return None;
        }
        j += 1;
    }
    while b.get(j) == Some(&b' ') {
        j += 1;
    }
    let sep = *b.get(j)?;
    match sep {
        b'=' if b.get(j + 1) != Some(&b'=') => {}
        b':' if quote.is_some() || matches!(b.get(j + 1), None | Some(b' ' | b'\t')) => {}
        _ => return None,
    }
    j += 1;
    while matches!(b.get(j), Some(b' ' | b'\t')) {
        j += 1;
    }
    let (vs, ve) = value_span(b, j, sep, quote.is_some());
    Some(Found {
        key,
        value_start: vs,
        value_end: ve,
    })
}

/// The span of the value starting at `j`: inside its quotes, else up to
/// the end of the token (`=`, JSON) or of the line (YAML, headers).
fn value_span(b: &[u8], j: usize, sep: u8, quoted_key: bool) -> (usize, usize) {
    match b.get(j) {
        Some(q @ (b'"' | b'\'')) => {
            let mut k = j + 1;
            while k < b.len() && b[k] != *q {
                k += if b[k] == b'\\' { 2 } else { 1 };
            }
            (j + 1, k.min(b.len()))
        }
        Some(b'{' | b'[') | None => (j, j),
        Some(_) => {
            let stop: &[u8] = if sep == b'=' {
                b" \t&;,\"')"
            } else if quoted_key {
                b",}]"
            } else {
                b""
            };
            let mut k = j;
            while k < b.len() && !stop.contains(&b[k]) {
                k += 1;
            }
            let mut e = k;
            while e > j && b[e - 1] == b' ' {
                e -= 1;
            }
            (j, e)
        }
    }
}

/// The values under secret keys in `text` (a site's Helm values file):
/// `(key, value)`, for [`Redactor::know`], so that they are found anywhere
/// (a pod's log), not only under their key.
pub fn secret_values(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let boundary =
                i == 0 || !is_key_char(b[i - 1]) && b[i - 1] != b'"' && b[i - 1] != b'\'';
            let Some(f) = boundary.then(|| key_at(b, i)).flatten() else {
                i += 1;
                continue;
            };
            let v = &line[f.value_start..f.value_end];
            let block = matches!(v, "|" | "|-" | ">" | ">-" | "|+" | ">+");
            if is_secret_key(&f.key) && !v.is_empty() && !block {
                out.push((f.key.clone(), v.to_owned()));
            }
            i = f.value_end.max(i + 1);
        }
    }
    out
}

/// Rule 3 on one line.
fn keyed(line: &str, st: &mut LineState, kinds: &mut Vec<String>) -> String {
    if let Some(ind) = st.block {
        if line.trim().is_empty() || indent(line) > ind {
            if line.trim().is_empty() || line.trim() == MARK {
                return line.to_owned();
            }
            kinds.push("value under a secret key (YAML block)".into());
            return format!("{}{MARK}", &line[..indent(line)]);
        }
        st.block = None;
    }
    st.named = st.named.saturating_sub(1);
    let b = line.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !is_key_char(b[i - 1]) && b[i - 1] != b'"' && b[i - 1] != b'\'';
        let Some(f) = boundary.then(|| key_at(b, i)).flatten() else {
            i += 1;
            continue;
        };
        let value = &line[f.value_start..f.value_end];
        let lower = f.key.to_ascii_lowercase();
        if lower == "name" && is_secret_key(value) {
            st.named = 2;
        }
        let by_name = lower == "value" && st.named > 0;
        if (is_secret_key(&f.key) || by_name) && !value.is_empty() && value != MARK {
            if matches!(value, "|" | "|-" | ">" | ">-" | "|+" | ">+") {
                st.block = Some(indent(line));
            } else {
                spans.push((f.value_start, f.value_end));
                kinds.push(if by_name {
                    "value of an env var named as a secret".into()
                } else {
                    format!("value of key `{}`", f.key)
                });
                st.named = 0;
            }
        }
        i = f.value_end.max(i + 1);
    }
    let mut out = line.to_owned();
    for (s, e) in spans.into_iter().rev() {
        out.replace_range(s..e, MARK);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(r: &Redactor, text: &str) -> (String, Vec<Redaction>) {
        let mut log = Vec::new();
        let out = r.redact("f.txt", text, &mut log);
        (out, log)
    }

    fn plain(text: &str) -> String {
        red(&Redactor::default(), text).0
    }

    #[test]
    fn key_names_rule_env_lines() {
        let out = plain("PATH=/bin\nDB_PASSWORD=hunter2 other=1\nexport API_TOKEN=abc123\n");
        assert_eq!(
            out,
            "PATH=/bin\nDB_PASSWORD=[REDACTED] other=1\nexport API_TOKEN=[REDACTED]\n"
        );
        assert_eq!(plain("a == b, password==x"), "a == b, password==x");
    }

    #[test]
    fn key_names_rule_yaml_values_and_blocks() {
        let text = "admin:\n  adminPassword: s3cr3t\n  user: bob\ntls:\n  privateKey: |\n    LINE1\n    LINE2\n  other: ok\n";
        let (out, log) = red(&Redactor::default(), text);
        assert_eq!(
            out,
            "admin:\n  adminPassword: [REDACTED]\n  user: bob\ntls:\n  privateKey: |\n    [REDACTED]\n    [REDACTED]\n  other: ok\n"
        );
        assert_eq!(log.len(), 3);
        assert_eq!(log[0].line, 2);
        assert!(log[0].kind.contains("adminPassword"), "{:?}", log[0]);
    }

    #[test]
    fn key_names_rule_json_values() {
        let out = plain(r#"{"user":"app","password":"pw\"x","apiKey": 1234, "n": {"token":"t"}}"#);
        assert_eq!(
            out,
            r#"{"user":"app","password":"[REDACTED]","apiKey": [REDACTED], "n": {"token":"[REDACTED]"}}"#
        );
        // the audit log's key ids are not secrets
        assert_eq!(
            plain(r#"{"signing_key_ids":["ab12"]}"#),
            r#"{"signing_key_ids":["ab12"]}"#
        );
    }

    #[test]
    fn key_names_rule_kubernetes_env_pairs_and_describe() {
        let out = plain("- name: DB_PASSWORD\n  value: hunter2\n- name: MODE\n  value: fast\n");
        assert_eq!(
            out,
            "- name: DB_PASSWORD\n  value: [REDACTED]\n- name: MODE\n  value: fast\n"
        );
        let out =
            plain(r#"{"env":[{"name":"DB_PASSWORD","value":"hunter2"},{"name":"A","value":"b"}]}"#);
        assert_eq!(
            out,
            r#"{"env":[{"name":"DB_PASSWORD","value":"[REDACTED]"},{"name":"A","value":"b"}]}"#
        );
        assert_eq!(
            plain("      DB_PASSWORD:  hunter2\n      MODE:  fast"),
            "      DB_PASSWORD:  [REDACTED]\n      MODE:  fast"
        );
        assert_eq!(
            plain("Authorization: Bearer abc.def"),
            "Authorization: [REDACTED]"
        );
    }

    #[test]
    fn url_userinfo_rule() {
        let (out, log) = red(
            &Redactor::default(),
            "connect postgres://app:pa55@db:5432/stoa failed; see https://h/x and http://u@h/",
        );
        assert_eq!(
            out,
            "connect postgres://app:[REDACTED]@db:5432/stoa failed; see https://h/x and http://u@h/"
        );
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].kind, "URL userinfo password");
    }

    #[test]
    fn exact_known_strings_rule() {
        let mut r = Redactor::default();
        r.know("Zq9#weird pass", "the registry password");
        r.know("ab", "too short to search");
        let (out, log) = red(
            &r,
            "log: login with Zq9#weird pass ok\nurl: x?p=Zq9%23weird+pass\nab stays\n",
        );
        assert_eq!(
            out,
            "log: login with [REDACTED] ok\nurl: x?p=[REDACTED]\nab stays\n"
        );
        assert_eq!(log.len(), 2);
        assert_eq!(
            log[0].to_string(),
            "f.txt:1: known secret: the registry password"
        );
        assert!(log.iter().all(|l| !l.to_string().contains("Zq9")));
    }

    #[test]
    fn secret_values_of_a_values_file_become_known() {
        let v =
            secret_values("ui:\n  adminPassword: \"Adm1n!\"\n  replicas: 2\napi_token: tok-123\n");
        assert_eq!(
            v,
            vec![
                ("adminPassword".to_owned(), "Adm1n!".to_owned()),
                ("api_token".to_owned(), "tok-123".to_owned())
            ]
        );
    }

    #[test]
    fn redaction_is_idempotent_and_keeps_plain_text() {
        let text = "password=[REDACTED]\nnothing secret here: 42\nkind: Pod\n";
        let (out, log) = red(&Redactor::default(), text);
        assert_eq!(out, text);
        assert!(log.is_empty(), "{log:?}");
    }
}
