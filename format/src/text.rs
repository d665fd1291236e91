//! The one escaping function for untrusted text on its way to a terminal or
//! a log (docs/THREAT-MODEL.md, issue 17 item 6): every control character
//! (C0, DEL, C1: newlines, ANSI escapes) and every invisible formatting or
//! bidirectional-override character is written as `\u{..}`, so a string
//! read from a bundle, a root or a parts index before (or after) its
//! signature is checked can neither start a new line, forge an audit or
//! error line, nor drive the terminal. Everything else passes unchanged.

use std::borrow::Cow;

/// True for a character [`escape`] rewrites.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `s` with every unsafe character written as `\u{hex}` (borrowed when
/// there is none).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_control_and_bidi_characters() {
        assert_eq!(escape("plain text, ümlaut"), "plain text, ümlaut");
        assert!(matches!(escape("ok"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb\x1b[2J\r\t"), "a\\u{a}b\\u{1b}[2J\\u{d}\\u{9}");
        assert_eq!(
            escape("x\u{200F}\u{202E}\u{7f}\u{9b}"),
            "x\\u{200f}\\u{202e}\\u{7f}\\u{9b}"
        );
        assert!(!escape("\u{2066}evil\u{2069}").chars().any(is_unsafe));
    }
}
