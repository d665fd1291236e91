//! The migration SQL lint: a streaming lexer that refuses psql
//! meta-commands and transaction control in a migration, at build and at
//! verify.
//!
//! It is a lint, not the security boundary (issue 17): the updater sends
//! each migration over the PostgreSQL wire protocol as one `Query` message
//! that only the server parses (`updater/src/db/`), so no client-side script
//! interpreter ever reads a release's SQL, whatever this lexer misses (as
//! the JOHAB client-encoding bypass showed it can). It still refuses, early
//! and with the file's line:
//!
//! - a backslash in the lexer's top-level state (a psql meta-command such as
//!   `\!`, `\o`, `\copy`, `\i`: never SQL, and a sign the migration was
//!   written for psql);
//! - transaction control at the start of a statement (`BEGIN`, `START`,
//!   `COMMIT`, `END`, `ROLLBACK`, `ABORT`, `SAVEPOINT`, `RELEASE`,
//!   `PREPARE TRANSACTION`; `COMMIT/ROLLBACK PREPARED` are covered by their
//!   first word): the updater runs each migration and its history row in one
//!   transaction. A SQL-standard `BEGIN ATOMIC … END` body is fine: its
//!   inner statements and its `END` are not transaction control;
//! - a NUL byte, and text that ends inside a string, a quoted identifier, a
//!   block comment or a dollar-quoted body.
//!
//! Valid SQL it used to refuse for psql's sake is accepted: array slices
//! `a[1:n]` (psql variables are no more), and plain strings ending in a
//! backslash (the server parses the whole text with its
//! `standard_conforming_strings`, on by default; a `SET` inside the text
//! cannot change how the text itself was parsed).
//!
//! For `E'…'` strings the lexer still follows the client encodings psql
//! would lex by character (in SJIS, BIG5, GBK, UHC or GB18030 a backslash byte
//! can be the second half of a character, so `\'` in an `E'…'` string does
//! not escape the quote). The lexer does not guess: it follows *every*
//! reading at once — each backslash after a non-ASCII byte in an escaped
//! string both as an escape and as part of a character — and refuses the
//! text if any reading reaches a meta-command. (It knows no JOHAB/EUC 3-byte
//! reading: the lint is a help for authors, the wire protocol the boundary.)
//!
//! It is fed bytes in chunks ([`SqlChecker::feed`]) and keeps only a few
//! small lexer states, never the text.

use std::fmt;

/// Most readings followed at once before the text is refused as too
/// ambiguous (ASCII migrations need two or three; long non-ASCII texts a
/// hundred or so).
const MAX_BRANCHES: usize = 1024;
/// Longest dollar-quote tag accepted.
const MAX_TAG: usize = 256;
/// Bytes of a statement's first word kept for the transaction-control check.
const WORD: usize = 12;

/// Why a migration's text is refused, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlViolation {
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for SqlViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for SqlViolation {}

/// Checks the exact bytes of a migration entry (what the updater calls right
/// before it runs them); the error names the entry and the line.
pub fn check_migration(path: &str, text: &[u8]) -> Result<(), crate::FormatError> {
    check_sql(text).map_err(|v| violation(path, v))
}

/// The format error for a refused migration entry.
pub fn violation(path: &str, v: SqlViolation) -> crate::FormatError {
    crate::FormatError::UnsafeMigration {
        path: path.to_owned(),
        line: v.line,
        reason: v.reason,
    }
}

/// Checks a whole text at once.
pub fn check_sql(text: &[u8]) -> Result<(), SqlViolation> {
    let mut c = SqlChecker::new();
    c.feed(text)?;
    c.finish()
}

/// Where a statement is, for the transaction-control rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stmt {
    /// nothing but whitespace and comments since the last `;`
    Start,
    /// the statement began with `PREPARE`
    Prepare,
    Mid,
    /// inside a statement, right after the word `BEGIN`
    MidBegin,
    /// at the start of a statement inside a `BEGIN ATOMIC … END` body
    AtomicStart,
    /// inside a statement inside a `BEGIN ATOMIC … END` body
    AtomicMid,
}

/// The state inside a statement, keeping whether it is in a `BEGIN ATOMIC`
/// body.
fn in_stmt(s: Stmt) -> Stmt {
    match s {
        Stmt::AtomicStart | Stmt::AtomicMid => Stmt::AtomicMid,
        _ => Stmt::Mid,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Lex {
    Init,
    /// an identifier or keyword; `word` holds its first bytes, upper-cased
    Ident {
        word: [u8; WORD],
        len: usize,
        /// glued to a number (`1e`): not a token start for psql
        junk: bool,
    },
    /// digits (and dots) of a number or a `$1` parameter
    Number,
    /// a `-` that may start a `--` comment
    Dash,
    /// a `/` that may start a `/*` comment
    Slash,
    /// a `:` that may start a variable reference
    Colon,
    LineComment,
    Block {
        depth: u32,
        prev: u8,
    },
    /// a string literal; `esc`: backslash escapes (E'…', or a plain string
    /// with standard_conforming_strings off)
    Str {
        esc: bool,
        /// the previous byte was an escaping backslash
        backslash: bool,
        /// the previous byte was a quote that may end the string
        quote: bool,
        start: u64,
    },
    /// a double-quoted identifier
    QIdent {
        quote: bool,
        start: u64,
    },
    /// after a `$` at a token start: reading a dollar-quote tag
    Dollar {
        tag: Vec<u8>,
    },
    /// inside `$tag$ … $tag$`; `cand`: bytes of a possible closing tag
    /// after a `$` (length, still a prefix of the tag)
    Body {
        tag: Vec<u8>,
        cand: Option<(usize, bool)>,
        start: u64,
    },
}

/// Where a reading is inside a multi-byte character of a client encoding
/// that psql lexes by character (SJIS, BIG5, GBK, UHC, GB18030): there a
/// byte >= 0x80 takes the next byte (GB18030: the next three when the
/// second is a digit) into one character, whatever that byte is — a quote,
/// a backslash, a `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mb {
    /// not inside a character
    No,
    /// the next byte is the second byte of a 2-byte character
    Trail,
    /// the next byte is a GB18030 second byte (a digit makes it 4 bytes)
    GbSecond,
    /// this many more bytes of a 4-byte GB18030 character
    GbRest(u8),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Branch {
    lex: Lex,
    stmt: Stmt,
    mb: Mb,
    /// this reading took a multi-byte character somewhere: it is checked for
    /// meta-commands but not for literals left open at the end (UTF-8 text
    /// with a 3-byte character before a closing quote would always be)
    multibyte: bool,
}

impl Branch {
    /// Multi-byte readings never report an open literal's start line, so
    /// they drop it: readings that differ only there are one reading (this
    /// keeps their number small on long non-ASCII texts).
    fn forget_lines(&mut self) {
        match &mut self.lex {
            Lex::Str { start, .. } | Lex::QIdent { start, .. } | Lex::Body { start, .. } => {
                *start = 0
            }
            _ => {}
        }
    }
}

/// The streaming checker. Feed it the text in chunks of any size, then call
/// [`SqlChecker::finish`].
#[derive(Debug, Clone)]
pub struct SqlChecker {
    branches: Vec<Branch>,
    line: u64,
    failed: Option<SqlViolation>,
}

impl Default for SqlChecker {
    fn default() -> Self {
        Self::new()
    }
}

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn ident_cont(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn dolq_cont(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit()
}

const TRANSACTION_WORDS: [&str; 8] = [
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
];

impl SqlChecker {
    pub fn new() -> Self {
        Self {
            branches: vec![Branch {
                lex: Lex::Init,
                stmt: Stmt::Start,
                mb: Mb::No,
                multibyte: false,
            }],
            line: 1,
            failed: None,
        }
    }

    /// Checks the next bytes. After an error, every later call returns it.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), SqlViolation> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut next = Vec::with_capacity(4);
        for &b in chunk {
            if b == 0 {
                return self.fail("NUL byte (psql drops the rest of the line)".into());
            }
            next.clear();
            for br in std::mem::take(&mut self.branches) {
                // a byte inside a multi-byte character: psql's lexer sees a
                // non-ASCII byte there, whatever the byte is
                let (byte, after) = match br.mb {
                    Mb::No => (b, Mb::No),
                    Mb::Trail => (0xFF, Mb::No),
                    Mb::GbSecond if b.is_ascii_digit() => (0xFF, Mb::GbRest(2)),
                    Mb::GbSecond => (0xFF, Mb::No),
                    Mb::GbRest(n) if n > 1 => (0xFF, Mb::GbRest(n - 1)),
                    Mb::GbRest(_) => (0xFF, Mb::No),
                };
                let lead = br.mb == Mb::No && b >= 0x80;
                let multibyte = br.multibyte;
                let from = next.len();
                if let Err(reason) = step(br, byte, self.line, &mut next) {
                    if multibyte || lead {
                        return self.fail(format!(
                            "{reason}, when the client encoding is a multi-byte one (SJIS, BIG5, \
                             GBK, UHC, GB18030: a migration can switch to it) that joins a \
                             non-ASCII byte with the byte after it; keep backslashes out of \
                             migrations with non-ASCII text before them (write chr(92), chr(10))"
                        ));
                    }
                    return self.fail(reason);
                }
                for i in from..next.len() {
                    next[i].mb = after;
                    next[i].multibyte = multibyte;
                    if multibyte {
                        next[i].forget_lines();
                    }
                    if lead {
                        // follow the byte-wise reading (UTF8 and other safe
                        // encodings) and the multi-byte ones
                        for mb in [Mb::Trail, Mb::GbSecond] {
                            let mut other = next[i].clone();
                            other.mb = mb;
                            other.multibyte = true;
                            other.forget_lines();
                            next.push(other);
                        }
                    }
                }
            }
            // readings that agree are one reading
            next.sort_unstable();
            next.dedup();
            std::mem::swap(&mut self.branches, &mut next);
            if self.branches.len() > MAX_BRANCHES {
                return self.fail(
                    "too many possible readings of backslashes in strings (simplify the quoting)"
                        .into(),
                );
            }
            if b == b'\n' {
                self.line += 1;
            }
        }
        Ok(())
    }

    /// Ends the text: refused when it ends inside a string, a quoted
    /// identifier, a block comment or a dollar-quoted body.
    pub fn finish(mut self) -> Result<(), SqlViolation> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        for br in self.branches.iter().filter(|b| !b.multibyte) {
            let open = match &br.lex {
                Lex::Str {
                    esc: true, start, ..
                } => Some(format!(
                    "string literal from line {start} is not closed when backslash escapes \
                     apply (E'…', or standard_conforming_strings off; a plain string must not \
                     end in a backslash)"
                )),
                Lex::Str { start, .. } => {
                    Some(format!("string literal from line {start} is not closed"))
                }
                Lex::QIdent { start, .. } => {
                    Some(format!("quoted identifier from line {start} is not closed"))
                }
                Lex::Block { .. } => Some("block comment is not closed".into()),
                Lex::Body { start, .. } => Some(format!(
                    "dollar-quoted body from line {start} is not closed"
                )),
                _ => None,
            };
            if let Some(reason) = open {
                return Err(SqlViolation {
                    line: self.line,
                    reason: format!("{reason} at the end of the text"),
                });
            }
        }
        // the last word may be a transaction keyword without anything after it
        let mut sink = Vec::new();
        for br in std::mem::take(&mut self.branches) {
            step(br, b'\n', self.line, &mut sink).map_err(|reason| SqlViolation {
                line: self.line,
                reason,
            })?;
        }
        Ok(())
    }

    fn fail(&mut self, reason: String) -> Result<(), SqlViolation> {
        let e = SqlViolation {
            line: self.line,
            reason,
        };
        self.failed = Some(e.clone());
        Err(e)
    }
}

/// Advances one reading by one byte, pushing the resulting readings.
fn step(br: Branch, b: u8, line: u64, out: &mut Vec<Branch>) -> Result<(), String> {
    let Branch { lex, mut stmt, .. } = br;
    let lex = match lex {
        Lex::Init => return init(stmt, b, line, out),
        Lex::Ident { word, len, junk } => {
            if ident_cont(b) {
                let mut word = word;
                if len < WORD {
                    word[len] = b.to_ascii_uppercase();
                }
                Lex::Ident {
                    word,
                    len: len + 1,
                    junk,
                }
            } else {
                let w = &word[..len.min(WORD)];
                let exact = |s: &str| len <= WORD && w == s.as_bytes();
                match stmt {
                    Stmt::Start => {
                        if let Some(k) = TRANSACTION_WORDS.iter().find(|k| exact(k)) {
                            return Err(transaction(k));
                        }
                        stmt = if exact("PREPARE") {
                            Stmt::Prepare
                        } else {
                            Stmt::Mid
                        };
                    }
                    Stmt::Prepare => {
                        if exact("TRANSACTION") {
                            return Err(transaction("PREPARE TRANSACTION"));
                        }
                        stmt = Stmt::Mid;
                    }
                    Stmt::Mid | Stmt::MidBegin => {
                        stmt = if exact("BEGIN") {
                            Stmt::MidBegin
                        } else if stmt == Stmt::MidBegin && exact("ATOMIC") {
                            // a SQL-standard function body: its statements
                            // end in `;`, the body in `END`
                            Stmt::AtomicMid
                        } else {
                            Stmt::Mid
                        };
                    }
                    Stmt::AtomicStart => {
                        stmt = if exact("END") {
                            Stmt::Mid
                        } else {
                            Stmt::AtomicMid
                        };
                    }
                    Stmt::AtomicMid => {}
                }
                if b == b'\'' && !junk && (exact("E")) {
                    // E'…': backslash escapes
                    out.push(Branch {
                        lex: string(true, line),
                        stmt,
                        mb: Mb::No,
                        multibyte: false,
                    });
                    return Ok(());
                }
                return init(stmt, b, line, out);
            }
        }
        Lex::Number => {
            if b.is_ascii_digit() || b == b'.' || b == b'_' {
                Lex::Number
            } else if ident_start(b) {
                // `1e`, `0x1F`, `1abc`: psql versions split these differently;
                // glued letters never start an E'' string or a dollar quote here
                let mut word = [0u8; WORD];
                word[0] = b.to_ascii_uppercase();
                Lex::Ident {
                    word,
                    len: 1,
                    junk: true,
                }
            } else {
                return init(in_stmt(stmt), b, line, out);
            }
        }
        Lex::Dash => {
            if b == b'-' {
                Lex::LineComment
            } else {
                return init(in_stmt(stmt), b, line, out);
            }
        }
        Lex::Slash => {
            if b == b'*' {
                Lex::Block { depth: 0, prev: 0 }
            } else {
                return init(in_stmt(stmt), b, line, out);
            }
        }
        Lex::Colon => {
            if b == b':' || b == b'=' {
                stmt = in_stmt(stmt);
                Lex::Init
            } else {
                return init(in_stmt(stmt), b, line, out);
            }
        }
        Lex::LineComment => {
            if b == b'\n' || b == b'\r' {
                Lex::Init
            } else {
                Lex::LineComment
            }
        }
        Lex::Block { depth, prev } => {
            if prev == b'/' && b == b'*' {
                Lex::Block {
                    depth: depth + 1,
                    prev: 0,
                }
            } else if prev == b'*' && b == b'/' {
                if depth == 0 {
                    Lex::Init
                } else {
                    Lex::Block {
                        depth: depth - 1,
                        prev: 0,
                    }
                }
            } else {
                Lex::Block { depth, prev: b }
            }
        }
        Lex::Str {
            esc,
            backslash,
            quote,
            start,
        } => {
            if quote {
                if b == b'\'' {
                    // '' is a quote inside the string
                    Lex::Str {
                        esc,
                        backslash: false,
                        quote: false,
                        start,
                    }
                } else {
                    return init(in_stmt(stmt), b, line, out);
                }
            } else if backslash {
                Lex::Str {
                    esc,
                    backslash: false,
                    quote: false,
                    start,
                }
            } else if b == b'\'' {
                Lex::Str {
                    esc,
                    backslash: false,
                    quote: true,
                    start,
                }
            } else if b == b'\\' && esc {
                Lex::Str {
                    esc,
                    backslash: true,
                    quote: false,
                    start,
                }
            } else {
                Lex::Str {
                    esc,
                    backslash: false,
                    quote: false,
                    start,
                }
            }
        }
        Lex::QIdent { quote, start } => {
            if quote {
                if b == b'"' {
                    Lex::QIdent {
                        quote: false,
                        start,
                    }
                } else {
                    return init(in_stmt(stmt), b, line, out);
                }
            } else {
                Lex::QIdent {
                    quote: b == b'"',
                    start,
                }
            }
        }
        Lex::Dollar { mut tag } => {
            if tag.is_empty() && b.is_ascii_digit() {
                // $1: a parameter
                Lex::Number
            } else if b == b'$' {
                Lex::Body {
                    tag,
                    cand: None,
                    start: line,
                }
            } else if (tag.is_empty() && ident_start(b)) || (!tag.is_empty() && dolq_cont(b)) {
                if tag.len() >= MAX_TAG {
                    return Err(format!("dollar-quote tag over {MAX_TAG} bytes"));
                }
                tag.push(b);
                Lex::Dollar { tag }
            } else if tag.is_empty() {
                return init(in_stmt(stmt), b, line, out);
            } else {
                // `$abc` without a closing `$`: psql reads `$`, then the
                // identifier `abc`
                let mut word = [0u8; WORD];
                for (i, c) in tag.iter().take(WORD).enumerate() {
                    word[i] = c.to_ascii_uppercase();
                }
                return step(
                    Branch {
                        lex: Lex::Ident {
                            word,
                            len: tag.len(),
                            junk: true,
                        },
                        stmt: in_stmt(stmt),
                        mb: Mb::No,
                        multibyte: false,
                    },
                    b,
                    line,
                    out,
                );
            }
        }
        Lex::Body { tag, cand, start } => {
            let cand = match (cand, b) {
                (Some((n, ok)), b'$') if ok && n == tag.len() => {
                    out.push(Branch {
                        lex: Lex::Init,
                        stmt,
                        mb: Mb::No,
                        multibyte: false,
                    });
                    return Ok(());
                }
                // a `$` ends a failed candidate and may start the next one
                (_, b'$') => Some((0, true)),
                (Some((0, _)), c) if !ident_start(c) => None,
                (Some((n, ok)), c) if dolq_cont(c) => {
                    Some((n + 1, ok && n < tag.len() && tag[n] == c))
                }
                _ => None,
            };
            Lex::Body { tag, cand, start }
        }
    };
    out.push(Branch {
        lex,
        stmt,
        mb: Mb::No,
        multibyte: false,
    });
    Ok(())
}

fn transaction(k: &str) -> String {
    format!(
        "transaction control '{k}' at the start of a statement (the updater runs each migration \
         and its history row in one transaction)"
    )
}

fn string(esc: bool, line: u64) -> Lex {
    Lex::Str {
        esc,
        backslash: false,
        quote: false,
        start: line,
    }
}

/// The lexer's top-level state: where psql looks for meta-commands.
fn init(stmt: Stmt, b: u8, line: u64, out: &mut Vec<Branch>) -> Result<(), String> {
    let mid = |lex| Branch {
        lex,
        stmt: in_stmt(stmt),
        mb: Mb::No,
        multibyte: false,
    };
    let keep = |lex| Branch {
        lex,
        stmt,
        mb: Mb::No,
        multibyte: false,
    };
    let br = match b {
        b'\\' => {
            return Err(
                "backslash outside a string, quoted identifier, dollar-quoted body or comment \
                 (psql would run it as a meta-command)"
                    .into(),
            )
        }
        // a plain string: no backslash escapes (the server reads the whole
        // text with standard_conforming_strings on, its default; a `SET`
        // in the text cannot change how the text itself was parsed)
        b'\'' => mid(string(false, line)),
        b'"' => mid(Lex::QIdent {
            quote: false,
            start: line,
        }),
        b'$' => mid(Lex::Dollar { tag: Vec::new() }),
        b'-' => keep(Lex::Dash),
        b'/' => keep(Lex::Slash),
        b':' => mid(Lex::Colon),
        b';' => Branch {
            lex: Lex::Init,
            stmt: if in_stmt(stmt) == Stmt::AtomicMid {
                Stmt::AtomicStart
            } else {
                Stmt::Start
            },
            mb: Mb::No,
            multibyte: false,
        },
        c if c.is_ascii_whitespace() || c == 0x0b => keep(Lex::Init),
        c if c.is_ascii_digit() => mid(Lex::Number),
        c if ident_start(c) => {
            let mut word = [0u8; WORD];
            word[0] = c.to_ascii_uppercase();
            keep(Lex::Ident {
                word,
                len: 1,
                junk: false,
            })
        }
        _ => mid(Lex::Init),
    };
    out.push(br);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) {
        if let Err(e) = check_sql(s.as_bytes()) {
            panic!("refused {s:?}: {e}");
        }
        // the same in 1-byte chunks
        let mut c = SqlChecker::new();
        for b in s.as_bytes() {
            c.feed(std::slice::from_ref(b)).unwrap();
        }
        c.finish().unwrap();
    }

    fn bad(s: &str, line: u64, needle: &str) {
        let e = check_sql(s.as_bytes()).expect_err(s);
        assert_eq!(e.line, line, "{s:?}: {e}");
        assert!(e.reason.contains(needle), "{s:?}: {e}");
    }

    #[test]
    fn accepts_ordinary_migrations() {
        ok("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL);\n");
        ok("INSERT INTO t VALUES (1, 'it''s'), (2, E'tab\\there\\'s');\n");
        ok("SELECT '^\\d+$' ~ 'x'; -- \\! in a comment\n/* \\o /* nested \\i */ \\x */ SELECT 1;");
        ok("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 \\! $$ LANGUAGE sql;");
        ok("DO $body$ BEGIN RAISE NOTICE '\\'; COMMIT; END $body$;");
        ok("SELECT \"we\\ird\"\"\\\" FROM t; SELECT a::text, b[1:2] FROM t;");
        ok("SELECT $1, x$y, 1$$ a $ b $$;");
        ok("PREPARE q AS SELECT 1; EXECUTE q;");
        ok("CREATE TABLE commits (ending int); SELECT begin_x FROM t; -- COMMIT\n");
        ok("SELECT 1 -- trailing comment without newline");
    }

    #[test]
    fn refuses_meta_commands_anywhere_outside_literals() {
        bad("\\! id\n", 1, "meta-command");
        bad("SELECT 1;\nSELECT 2; \\! id\n", 2, "meta-command");
        bad("SELECT 'a' \\o /tmp/x\n", 1, "meta-command");
        bad("SELECT E'\\'' \\! id\n", 1, "meta-command");
        bad("SELECT \"a\" \\copy t to x\n", 1, "meta-command");
        bad("SELECT $a$ x $a$ \\i f\n", 1, "meta-command");
        ok("/* a /* b */ \\! id */");
        bad("/* a /* b */ */ \\! id", 1, "meta-command");
        bad("SELECT x\\gexec", 1, "meta-command");
        bad("SELECT $ab x $ab \\! id", 1, "meta-command");
        bad("SELECT $ab x $ab$ $ab \\! id", 1, "dollar-quoted body");
    }

    #[test]
    fn plain_strings_may_end_in_a_backslash() {
        // the server reads plain strings with standard_conforming_strings
        // on (psql no longer reads the text at all)
        ok("SELECT 'C:\\';\nINSERT INTO paths VALUES ('a\\', 'b\\\\');\n");
        bad("SELECT 'C:\\' \\! id", 1, "meta-command");
    }

    #[test]
    fn accepts_begin_atomic_bodies() {
        ok(
            "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql\n\
            BEGIN ATOMIC\n  SELECT a + b;\n  SELECT CASE WHEN a > 0 THEN 1 END;\nEND;\n\
            CREATE PROCEDURE p() LANGUAGE sql begin atomic INSERT INTO t VALUES (1); end;\n",
        );
        // after the body, transaction control is refused again
        bad(
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\nCOMMIT;",
            2,
            "'COMMIT'",
        );
        // BEGIN alone at a statement start is still a transaction
        bad("BEGIN; SELECT 1;", 1, "'BEGIN'");
    }

    #[test]
    fn accepts_array_slices_and_colons() {
        ok("SELECT a[1:n], a[lo:hi], b[:2], (x)[1:2], a::text FROM t;");
        ok("SELECT :foo, :'foo';");
    }

    #[test]
    fn follows_both_readings_after_non_ascii_in_escaped_strings() {
        // in SJIS, 0x81 0x5C is one character: the quote after it ends the string
        let mut s = b"SELECT E'\xd0\x81\\' \\! id '".to_vec();
        s.push(b';');
        assert!(check_sql(&s).is_err());
    }

    #[test]
    fn follows_multi_byte_readings_everywhere() {
        // found by the differential test against psql: in SJIS, 0x83 takes
        // the '-' after it, so "--" is no comment and the backslash is outside
        let s = b"\x83-- \\! touch x\n";
        assert!(check_sql(s).is_err());
        // GB18030: a lead byte and a digit start a 4-byte character
        let s = b"SELECT '\x81\x30\x81' \\! x '";
        assert!(check_sql(s).is_err());
        // plain UTF-8 text is fine
        ok("SELECT 'héllo ünïcödé — ✓';");
        ok("-- commentaire en français: été\nSELECT 1;");
    }

    #[test]
    fn long_non_ascii_text_stays_within_the_reading_limit() {
        let mut t = String::from("CREATE TABLE t (a text, b text, c text);\n");
        for i in 0..3000 {
            t.push_str(&format!(
                "INSERT INTO t VALUES ('東京都 {i} — ✓ café', 'x{i}', $$Zürich ‘q’$$); -- ñ\n"
            ));
        }
        ok(&t);
        // a backslash after such text is exposed in a multi-byte reading
        t.push_str("SELECT E'a\\nb';\n");
        let e = check_sql(t.as_bytes()).unwrap_err();
        assert!(e.reason.contains("multi-byte"), "{e}");
    }

    #[test]
    fn refuses_transaction_control() {
        for s in [
            "BEGIN;",
            "begin transaction;",
            "START TRANSACTION;",
            "CREATE TABLE a (x int);\nCOMMIT;",
            "END",
            "rollback",
            "ABORT;",
            "SAVEPOINT s;",
            "RELEASE SAVEPOINT s;",
            "PREPARE TRANSACTION 'x';",
            "COMMIT PREPARED 'x';",
            "ROLLBACK PREPARED 'x';",
            "SELECT 1; /* c */ -- d\n  Commit;",
        ] {
            assert!(
                check_sql(s.as_bytes())
                    .unwrap_err()
                    .reason
                    .contains("transaction control"),
                "{s}"
            );
        }
        bad("SELECT 1;\n\nCOMMIT;", 3, "'COMMIT'");
    }

    #[test]
    fn refuses_nul_and_open_literals_at_the_end() {
        bad("SELECT 'a\0'; \\! id", 1, "NUL");
        bad("SELECT 'abc", 1, "not closed");
        bad("SELECT 1; /* abc", 1, "block comment");
        bad("SELECT $$ abc", 1, "dollar-quoted");
        bad("SELECT \"abc", 1, "quoted identifier");
    }

    #[test]
    fn chunking_does_not_change_the_answer() {
        let texts = [
            "SELECT E'\\'' \\! id\n",
            "SELECT $tag$ $ta $tag \\ $tag$; SELECT 1;",
            "CREATE TABLE t (x text DEFAULT 'a''b');\nCOMMIT;",
        ];
        for t in texts {
            let whole = check_sql(t.as_bytes());
            for size in 1..t.len() {
                let mut c = SqlChecker::new();
                let mut r = Ok(());
                for ch in t.as_bytes().chunks(size) {
                    r = c.feed(ch);
                    if r.is_err() {
                        break;
                    }
                }
                let r = r.and_then(|()| c.finish());
                assert_eq!(r, whole, "{t:?} in chunks of {size}");
            }
        }
    }
}
