//! Validated field values of the bundle manifest: OCI digests, file modes,
//! migration ids and timestamps, and the text forms they parse from
//! ([`parse_mode`], [`parse_rfc3339`], [`format_rfc3339`]).
//!
//! Each type keeps the exact text it was parsed from (so a parsed manifest
//! re-serialises to the signed bytes) next to the parsed value, and its only
//! constructor validates, so a bad value cannot be held. Serde goes through
//! `FromStr`, so a bad value fails at parse with the field's name.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;

macro_rules! text_field {
    ($t:ident) => {
        impl $t {
            /// The text as written in the manifest.
            pub fn as_str(&self) -> &str {
                &self.text
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.text
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.text
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, o: &str) -> bool {
                self.text == o
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, o: &&str) -> bool {
                self.text == *o
            }
        }
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.text
            }
        }
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.text)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

/// An OCI digest `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciDigest {
    text: String,
    digest: Sha256Digest,
}

impl OciDigest {
    /// The digest's bytes.
    pub fn digest(&self) -> Sha256Digest {
        self.digest
    }
}

impl From<Sha256Digest> for OciDigest {
    fn from(d: Sha256Digest) -> Self {
        Self {
            text: d.oci(),
            digest: d,
        }
    }
}

impl FromStr for OciDigest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digest = Sha256Digest::from_oci(s)
            .ok_or_else(|| format!("digest {s:?} is not sha256:<64 lowercase hex>"))?;
        Ok(Self {
            text: s.to_owned(),
            digest,
        })
    }
}
text_field!(OciDigest);

/// Octal permission bits as written (`0755`, `644`): 1-4 octal digits, at
/// most `0777` (no setuid, setgid or sticky bit).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileMode {
    text: String,
    bits: u32,
}

impl FileMode {
    /// The permission bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// `0644`, a file's mode when none is given.
    pub fn default_file() -> Self {
        Self {
            text: "0644".into(),
            bits: 0o644,
        }
    }
}

impl FromStr for FileMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bits = parse_mode(s).ok_or_else(|| format!("mode {s:?} is not octal 0000-0777"))?;
        Ok(Self {
            text: s.to_owned(),
            bits,
        })
    }
}
text_field!(FileMode);

/// A migration id: 1-10 digits as written (`0001`), with its number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MigrationId {
    text: String,
    number: u64,
}

impl MigrationId {
    /// The id's numeric value (`0001` is 1).
    pub fn number(&self) -> u64 {
        self.number
    }
}

impl FromStr for MigrationId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::check_migration_id(s)?;
        let number = s
            .parse()
            .map_err(|_| format!("migration id {s:?} is not a number"))?;
        Ok(Self {
            text: s.to_owned(),
            number,
        })
    }
}
text_field!(MigrationId);

/// An RFC 3339 UTC time as written (`2026-01-01T00:00:00Z`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Timestamp {
    text: String,
    time: SystemTime,
}

impl Timestamp {
    /// The instant.
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// The time formatted as RFC 3339 UTC, seconds precision.
    pub fn from_time(t: SystemTime) -> Self {
        Self {
            text: format_rfc3339(t),
            time: t,
        }
    }
}

impl FromStr for Timestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let time = humantime::parse_rfc3339(s)
            .map_err(|_| format!("time {s:?} is not an RFC 3339 UTC time"))?;
        Ok(Self {
            text: s.to_owned(),
            time,
        })
    }
}
text_field!(Timestamp);

/// Parses an RFC 3339 time (as used by `created` and `expires`).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

/// Formats a time as RFC 3339 UTC, seconds precision.
pub fn format_rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses an octal permission string (`0644`, `755`); no setuid, setgid or
/// sticky bits.
pub fn parse_mode(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let m = u32::from_str_radix(s, 8).ok()?;
    (m <= 0o777).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_field_keeps_its_text_and_refuses_bad_values() {
        let d = Sha256Digest::of(b"x");
        let o: OciDigest = d.oci().parse().unwrap();
        assert_eq!((o.digest(), o.as_str()), (d, d.oci().as_str()));
        assert!("sha256:ABC".parse::<OciDigest>().is_err());
        assert_eq!("644".parse::<FileMode>().unwrap().bits(), 0o644);
        assert_eq!("644".parse::<FileMode>().unwrap().as_str(), "644");
        assert!("4755".parse::<FileMode>().is_err());
        assert_eq!("0012".parse::<MigrationId>().unwrap().number(), 12);
        assert!("1a".parse::<MigrationId>().is_err());
        assert!("2026-01-01T00:00:00Z".parse::<Timestamp>().is_ok());
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0755"), Some(0o755));
        assert_eq!(parse_mode("644"), Some(0o644));
        for bad in ["", "4755", "0788", "12345", "rwx"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }
}
