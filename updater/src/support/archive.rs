//! The support bundle's file: a tar of the collected (redacted) files,
//! zstd-compressed, then age-encrypted to the vendor's X25519 recipient
//! (`age1…`), or left plain with `--no-encrypt`. Written streaming from the
//! files on disk (memory does not grow with their size) into `FILE.part`,
//! fsynced and renamed, so a half-written bundle never has the final name.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// How the archive leaves the site.
#[derive(Debug, Clone)]
pub enum Seal {
    /// Encrypted to this recipient.
    Age(age::x25519::Recipient),
    /// Not encrypted (`--no-encrypt`).
    Plain,
}

/// An age X25519 recipient (`age1…`), or why the text is not one.
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, String> {
    let t = text.trim();
    age::x25519::Recipient::from_str(t).map_err(|e| {
        let shown: String = t.chars().take(12).collect();
        format!("{shown:?}… is not an age X25519 recipient (age1…, as age-keygen prints it): {e}")
    })
}

/// One file of the archive: its name inside, and where its bytes are.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub src: PathBuf,
}

/// Writes the tar of `members` through zstd into `w`, returning `w`.
fn pack<W: Write>(w: W, members: &[Member], mtime: u64) -> io::Result<W> {
    let z = zstd::Encoder::new(w, 3)?;
    let mut t = tar::Builder::new(z);
    for m in members {
        let f = File::open(&m.src)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(f.metadata()?.len());
        h.set_mode(0o600);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, &m.name, f)?;
    }
    t.into_inner()?.finish()
}

/// Writes the bundle at `out` (mode 0600); its size.
pub fn write(out: &Path, seal: &Seal, members: &[Member]) -> io::Result<u64> {
    if out.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists; give another --out",
        ));
    }
    let mut part = out.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&part)?
    };
    let result = (|| {
        let w = BufWriter::new(file);
        let w = match seal {
            Seal::Plain => pack(w, members, mtime)?,
            Seal::Age(r) => {
                let enc =
                    age::Encryptor::with_recipients(std::iter::once(r as &dyn age::Recipient))
                        .map_err(|e| io::Error::other(e.to_string()))?;
                let sw = enc.wrap_output(w)?;
                pack(sw, members, mtime)?.finish()?
            }
        };
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&part, out)?;
        Ok(fs::metadata(out)?.len())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&part);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipient_must_be_an_age_x25519_key() {
        let id = age::x25519::Identity::generate();
        let r = id.to_public().to_string();
        assert!(parse_recipient(&r).is_ok());
        let e = parse_recipient("ssh-ed25519 AAAAC3Nza secret-ish").unwrap_err();
        assert!(e.contains("not an age X25519 recipient"), "{e}");
        assert!(parse_recipient("age1notakey").is_err());
    }

    #[test]
    fn the_archive_decrypts_with_the_identity() {
        let d = std::env::temp_dir().join(format!("stoa-support-archive-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("a"), b"hello").unwrap();
        let id = age::x25519::Identity::generate();
        let out = d.join("b.age");
        let members = [Member {
            name: "x/a.txt".into(),
            src: d.join("a"),
        }];
        write(&out, &Seal::Age(id.to_public()), &members).unwrap();
        let f = File::open(&out).unwrap();
        let dec = age::Decryptor::new(f).unwrap();
        let r = dec
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .unwrap();
        let mut t = tar::Archive::new(zstd::Decoder::new(r).unwrap());
        let mut e = t.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_string_lossy(), "x/a.txt");
        let mut s = String::new();
        io::Read::read_to_string(&mut e, &mut s).unwrap();
        assert_eq!(s, "hello");
        // an existing file is never overwritten
        assert!(write(&out, &Seal::Plain, &members).is_err());
        let _ = fs::remove_dir_all(&d);
    }
}
