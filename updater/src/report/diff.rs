//! A minimal line diff for the change report: the common prefix and suffix
//! are set aside, the middle is matched by longest common subsequence
//! (bounded: past [`MAX_CELLS`] the middle is shown as removed then added,
//! said in the result), and the edit script is cut into unified hunks with
//! [`CONTEXT`] lines of context, at most [`Limits::max_lines`] lines.

/// Lines of context around each change, as `diff -u`.
pub const CONTEXT: usize = 3;

/// The largest LCS table (lines before × lines after, after the common
/// prefix and suffix are removed): 4 Mi cells of u16, 8 MiB.
pub const MAX_CELLS: usize = 4 << 20;

/// How much of one diff the page shows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Lines of the unified diff (hunk headers included).
    pub max_lines: usize,
    /// Bytes of the unified diff.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_lines: 4000,
            max_bytes: 512 << 10,
        }
    }
}

/// One line of the edit script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Same,
    Del,
    Add,
}

/// A unified diff as shown in the page.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Unified {
    /// The diff's lines: `@@ … @@` headers, then ` `, `-` or `+` lines.
    pub lines: Vec<String>,
    pub added: usize,
    pub removed: usize,
    /// Why the page shows less than the whole diff (a cut, or a middle too
    /// large to match line by line).
    pub notes: Vec<String>,
}

impl Unified {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.removed == 0
    }
}

/// The edit script from `a` to `b` (every line of both, in order), and
/// whether the middle was too large to match.
pub fn script<'x>(a: &[&'x str], b: &[&'x str]) -> (Vec<(Op, &'x str)>, bool) {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut out: Vec<(Op, &str)> = a[..pre].iter().map(|l| (Op::Same, *l)).collect();
    let too_large = am.len().saturating_mul(bm.len()) > MAX_CELLS;
    if too_large {
        out.extend(am.iter().map(|l| (Op::Del, *l)));
        out.extend(bm.iter().map(|l| (Op::Add, *l)));
    } else {
        lcs(am, bm, &mut out);
    }
    out.extend(a[a.len() - suf..].iter().map(|l| (Op::Same, *l)));
    (out, too_large)
}

/// LCS by dynamic programming on the suffixes (the table holds the LCS
/// length of `a[i..]` and `b[j..]`), then walked from the start.
fn lcs<'x>(a: &[&'x str], b: &[&'x str], out: &mut Vec<(Op, &'x str)>) {
    let (n, m) = (a.len(), b.len());
    let w = m + 1;
    let mut t = vec![0u16; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i * w + j] = if a[i] == b[j] {
                t[(i + 1) * w + j + 1].saturating_add(1)
            } else {
                t[(i + 1) * w + j].max(t[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            out.push((Op::Same, a[i]));
            i += 1;
            j += 1;
        } else if t[(i + 1) * w + j] >= t[i * w + j + 1] {
            out.push((Op::Del, a[i]));
            i += 1;
        } else {
            out.push((Op::Add, b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| (Op::Del, *l)));
    out.extend(b[j..].iter().map(|l| (Op::Add, *l)));
}

/// The unified diff of `old` to `new` (by lines), cut at `limits`.
pub fn unified(old: &str, new: &str, limits: Limits) -> Unified {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (ops, too_large) = script(&a, &b);
    let mut u = Unified::default();
    if too_large {
        u.notes.push(format!(
            "the changed middle ({} lines before, {} after) is over {MAX_CELLS} line pairs: shown as removed, then added",
            a.len(),
            b.len()
        ));
    }
    u.removed = ops.iter().filter(|(o, _)| *o == Op::Del).count();
    u.added = ops.iter().filter(|(o, _)| *o == Op::Add).count();
    // hunks: runs of changes with CONTEXT lines around, merged when close
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != Op::Same).collect();
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        let lo = k.saturating_sub(CONTEXT);
        let hi = (k + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some(h) if lo <= h.1 => h.1 = hi,
            _ => hunks.push((lo, hi)),
        }
    }
    // line numbers (1-based) in old and new at each op index
    let mut pos = Vec::with_capacity(ops.len() + 1);
    let (mut oa, mut ob) = (1usize, 1usize);
    for (o, _) in &ops {
        pos.push((oa, ob));
        match o {
            Op::Same => {
                oa += 1;
                ob += 1;
            }
            Op::Del => oa += 1,
            Op::Add => ob += 1,
        }
    }
    let mut bytes = 0usize;
    'hunks: for (lo, hi) in hunks {
        let part = &ops[lo..hi];
        let na = part.iter().filter(|(o, _)| *o != Op::Add).count();
        let nb = part.iter().filter(|(o, _)| *o != Op::Del).count();
        let (sa, sb) = pos[lo];
        let start = |s: usize, n: usize| if n == 0 { s - 1 } else { s };
        let header = format!("@@ -{},{na} +{},{nb} @@", start(sa, na), start(sb, nb));
        for line in std::iter::once(header).chain(part.iter().map(|(o, l)| {
            let c = match o {
                Op::Same => ' ',
                Op::Del => '-',
                Op::Add => '+',
            };
            format!("{c}{l}")
        })) {
            if u.lines.len() >= limits.max_lines || bytes + line.len() + 1 > limits.max_bytes {
                u.notes.push(format!(
                    "cut at {} lines / {} bytes (the page's limit per diff: {} lines, {} bytes); {} lines removed and {} added in all",
                    u.lines.len(),
                    bytes,
                    limits.max_lines,
                    limits.max_bytes,
                    u.removed,
                    u.added
                ));
                break 'hunks;
            }
            bytes += line.len() + 1;
            u.lines.push(line);
        }
    }
    u
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_changed_line_is_one_hunk_with_context_as_diff_u_writes_it() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\n";
        let u = unified(old, new, Limits::default());
        assert_eq!(
            u.lines,
            [
                "@@ -2,7 +2,7 @@",
                " b",
                " c",
                " d",
                "-e",
                "+E",
                " f",
                " g",
                " h"
            ]
        );
        assert_eq!((u.removed, u.added), (1, 1));
        assert!(u.notes.is_empty());
    }

    #[test]
    fn everything_added_from_nothing_and_nothing_for_equal_texts() {
        let u = unified("", "x\ny\n", Limits::default());
        assert_eq!(u.lines, ["@@ -0,0 +1,2 @@", "+x", "+y"]);
        assert!(unified("same\n", "same\n", Limits::default()).is_empty());
        assert!(unified("same\n", "same\n", Limits::default())
            .lines
            .is_empty());
    }

    #[test]
    fn the_script_is_a_longest_common_subsequence() {
        let a = ["x", "a", "b", "c", "y"];
        let b = ["z", "a", "c", "b", "w"];
        let (ops, big) = script(&a, &b);
        assert!(!big);
        let same = ops.iter().filter(|(o, _)| *o == Op::Same).count();
        assert_eq!(same, 2, "{ops:?}");
        // replaying the script gives both texts back
        let back_a: Vec<&str> = ops
            .iter()
            .filter(|(o, _)| *o != Op::Add)
            .map(|(_, l)| *l)
            .collect();
        let back_b: Vec<&str> = ops
            .iter()
            .filter(|(o, _)| *o != Op::Del)
            .map(|(_, l)| *l)
            .collect();
        assert_eq!(back_a, a);
        assert_eq!(back_b, b);
    }

    #[test]
    fn two_distant_changes_are_two_hunks() {
        let old: String = (0..30).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l2\n", "L2\n").replace("l25\n", "L25\n");
        let u = unified(&old, &new, Limits::default());
        let headers: Vec<&String> = u.lines.iter().filter(|l| l.starts_with("@@")).collect();
        assert_eq!(headers, ["@@ -1,6 +1,6 @@", "@@ -23,7 +23,7 @@"]);
    }

    #[test]
    fn a_diff_over_the_limit_is_cut_and_says_so() {
        let new: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let u = unified(
            "",
            &new,
            Limits {
                max_lines: 10,
                max_bytes: 1 << 20,
            },
        );
        assert_eq!(u.lines.len(), 10);
        assert_eq!(u.added, 100);
        assert!(u.notes[0].contains("cut at 10 lines"), "{:?}", u.notes);
    }

    #[test]
    fn a_middle_too_large_to_match_is_removed_then_added() {
        let old: String = (0..2100).map(|i| format!("a{i}\n")).collect();
        let new: String = (0..2100).map(|i| format!("b{i}\n")).collect();
        let u = unified(&old, &new, Limits::default());
        assert_eq!((u.removed, u.added), (2100, 2100));
        assert!(u.notes[0].contains("shown as removed, then added"));
    }
}
