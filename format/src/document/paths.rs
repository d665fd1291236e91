//! Safe entry names. Every name in a bundle, and every name a site writes
//! from it, passes through [`check_entry_path`].

use crate::error::FormatError;

/// Why a name is unsafe, or `Ok` when it is a plain relative path made of
/// conservative characters.
///
/// Rules: 1 to `max_len` bytes; `/`-separated components, none empty, `.` or
/// `..`; no leading `/`; each component of `A-Z a-z 0-9 . _ - + @ = , ~` and
/// not longer than 100 bytes. No backslash, colon, NUL, control or non-ASCII
/// character, so a name means the same on every filesystem.
pub fn check_entry_path(path: &str, max_len: usize) -> Result<(), FormatError> {
    let fail = |reason: &str| FormatError::UnsafePath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.is_empty() {
        return Err(fail("empty name"));
    }
    if path.len() > max_len {
        return Err(fail(&format!(
            "{} bytes is longer than the limit of {max_len}",
            path.len()
        )));
    }
    if path.starts_with('/') {
        return Err(fail("absolute path"));
    }
    for comp in path.split('/') {
        match comp {
            "" => return Err(fail("empty path component")),
            "." | ".." => return Err(fail("'.' or '..' component")),
            _ => {}
        }
        if comp.len() > 100 {
            return Err(fail("a component is longer than 100 bytes"));
        }
        if let Some(c) = comp.chars().find(|c| !is_safe_char(*c)) {
            return Err(fail(&format!("character {c:?} is not allowed")));
        }
    }
    Ok(())
}

fn is_safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@' | '=' | ',' | '~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for p in [
            "manifest.json",
            "oci/blobs/sha256/ab",
            "files/bin/stoactl",
            "charts/a-1.0.0+b.tgz",
        ] {
            check_entry_path(p, 240).unwrap();
        }
    }

    #[test]
    fn refuses_unsafe_names() {
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "C:x",
            "a\0b",
            "é",
            "a b",
            "a\nb",
        ] {
            assert!(check_entry_path(p, 240).is_err(), "{p:?} accepted");
        }
        assert!(check_entry_path(&"a".repeat(241), 240).is_err());
        assert!(check_entry_path(&"a".repeat(101), 240).is_err());
    }
}
