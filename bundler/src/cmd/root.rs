//! `stoa-bundler root init|rotate|show`: the signed trust root sites use to
//! learn which release keys to trust (docs/FORMAT.md, "Trust roots";
//! keys/README.md, rotation procedure).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use stoa_format::cli::Output;

use stoa_format::keys::load_public_key;
use stoa_format::root::{sign_root, RootBody, RootKey, SignedRoot, ROOT_TYPE};
use stoa_format::SigningKeyPair;

use crate::error::{BundlerError, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RootCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RootCommand {
    /// Make a first root (version 1), signed by the root keys given.
    Init(InitArgs),
    /// Make the next version of a root, signed by keys that meet both the
    /// current root's threshold and the new one's.
    Rotate(RotateArgs),
    /// Print a root and check its own signatures.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// A root private key (PKCS#8 PEM); repeat. Each signs the root.
    #[arg(long = "root-key", value_name = "KEY", required = true)]
    pub root_keys: Vec<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub root_threshold: usize,
    /// A release public key (SPKI PEM); repeat.
    #[arg(long = "release-key", value_name = "PUB", required = true)]
    pub release_keys: Vec<PathBuf>,
    /// How many distinct release keys must sign a bundle.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// RFC 3339 time or YYYY-MM-DD (UTC midnight).
    #[arg(long, value_name = "DATE")]
    pub expires: String,
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The current root.
    pub root: PathBuf,
    #[arg(long = "add-release-key", value_name = "PUB")]
    pub add_release: Vec<PathBuf>,
    /// A key id (or a unique prefix of one) or a .pub file.
    #[arg(long = "remove-release-key", value_name = "ID|PUB")]
    pub remove_release: Vec<String>,
    #[arg(long = "add-root-key", value_name = "PUB")]
    pub add_root: Vec<PathBuf>,
    #[arg(long = "remove-root-key", value_name = "ID|PUB")]
    pub remove_root: Vec<String>,
    /// New release threshold (default: unchanged).
    #[arg(long)]
    pub threshold: Option<usize>,
    /// New root threshold (default: unchanged).
    #[arg(long)]
    pub root_threshold: Option<usize>,
    /// New expiry (default: unchanged).
    #[arg(long, value_name = "DATE")]
    pub expires: Option<String>,
    /// A root private key that signs the new version; repeat.
    #[arg(long = "sign-key", value_name = "KEY", required = true)]
    pub sign_keys: Vec<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    pub root: PathBuf,
}

fn bad(path: &Path, message: impl Into<String>) -> BundlerError {
    BundlerError::RootFile {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// RFC 3339, or a plain date taken as UTC midnight.
fn parse_date(s: &str) -> Option<String> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    humantime::parse_rfc3339(&full)
        .ok()
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

/// SOURCE_DATE_EPOCH, or now.
fn created() -> Result<String> {
    let t = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            let secs: u64 = s
                .trim()
                .parse()
                .map_err(|_| BundlerError::SourceDateEpoch(s.clone()))?;
            UNIX_EPOCH + std::time::Duration::from_secs(secs)
        }
        Err(_) => SystemTime::now(),
    };
    Ok(humantime::format_rfc3339_seconds(t).to_string())
}

fn read_root(path: &Path) -> Result<SignedRoot> {
    let b = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
    Ok(SignedRoot::parse(&b)?)
}

fn write_out(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    if std::fs::symlink_metadata(path).is_ok() {
        let e = std::io::Error::from_raw_os_error(rustix::io::Errno::EXIST.raw_os_error());
        return Err(bad(path, format!("write: {e} (refusing to overwrite)")));
    }
    let mut f = stoa_format::durable::AtomicFile::create(path)
        .map_err(|e| bad(path, format!("write: {e}")))?;
    f.write_all(bytes)
        .map_err(|e| bad(path, format!("write: {e}")))?;
    f.commit_new().map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
            " (refusing to overwrite)"
        } else {
            ""
        };
        bad(path, format!("write: {e}{hint}"))
    })
}

/// Removes the key named by an id (or unique id prefix) or a .pub file.
fn remove_key(keys: &mut Vec<RootKey>, what: &str, sel: &str, root: &Path) -> Result<()> {
    let p = Path::new(sel);
    let id = if p.is_file() {
        RootKey::of(&load_public_key(p)?).id
    } else {
        let m: Vec<&RootKey> = keys
            .iter()
            .filter(|k| k.id.to_string().starts_with(sel))
            .collect();
        match (sel.len() >= 8, m.as_slice()) {
            (true, [one]) => one.id,
            _ => {
                return Err(bad(
                    root,
                    format!("--remove-{what}-key {sel}: not a .pub file nor the id (or a unique prefix of 8+ digits) of one listed {what} key"),
                ))
            }
        }
    };
    let before = keys.len();
    keys.retain(|k| k.id != id);
    if keys.len() == before {
        return Err(bad(
            root,
            format!("--remove-{what}-key {sel}: key {id} is not a {what} key of this root"),
        ));
    }
    Ok(())
}

fn add_key(keys: &mut Vec<RootKey>, path: &Path) -> Result<()> {
    let k = RootKey::of(&load_public_key(path)?);
    if !keys.iter().any(|x| x.id == k.id) {
        keys.push(k);
    }
    Ok(())
}

pub fn run(args: &Args, out: Output) -> Result<()> {
    match &args.command {
        RootCommand::Init(a) => {
            let expires = parse_date(&a.expires).ok_or_else(|| {
                bad(
                    &a.out,
                    format!("--expires {:?} is not RFC 3339 or YYYY-MM-DD", a.expires),
                )
            })?;
            let signers: Vec<SigningKeyPair> = a
                .root_keys
                .iter()
                .map(|k| SigningKeyPair::load(k))
                .collect::<Result<_, _>>()?;
            let mut release_keys = Vec::new();
            for p in &a.release_keys {
                add_key(&mut release_keys, p)?;
            }
            let mut root_keys = Vec::new();
            for s in &signers {
                let k = RootKey::of(&s.verifying_key());
                if !root_keys.iter().any(|x: &RootKey| x.id == k.id) {
                    root_keys.push(k);
                }
            }
            let body = RootBody {
                kind: ROOT_TYPE.into(),
                version: 1,
                created: created()?,
                expires,
                release_threshold: a.threshold,
                release_keys,
                root_threshold: a.root_threshold,
                root_keys,
            };
            let bytes = sign_root(&body, &signers.iter().collect::<Vec<_>>())?;
            let r = SignedRoot::parse(&bytes)?;
            r.check_self(SystemTime::now())?;
            write_out(&a.out, &bytes)?;
            show(&r, &a.out, out.json);
            Ok(())
        }
        RootCommand::Rotate(a) => {
            let cur = read_root(&a.root)?;
            cur.check_own_threshold()?;
            let mut body = cur.body.clone();
            body.version = cur.version() + 1;
            body.created = created()?;
            if let Some(e) = &a.expires {
                body.expires = parse_date(e).ok_or_else(|| {
                    bad(
                        &a.out,
                        format!("--expires {e:?} is not RFC 3339 or YYYY-MM-DD"),
                    )
                })?;
            }
            for s in &a.remove_release {
                remove_key(&mut body.release_keys, "release", s, &a.root)?;
            }
            for p in &a.add_release {
                add_key(&mut body.release_keys, p)?;
            }
            for s in &a.remove_root {
                remove_key(&mut body.root_keys, "root", s, &a.root)?;
            }
            for p in &a.add_root {
                add_key(&mut body.root_keys, p)?;
            }
            if let Some(t) = a.threshold {
                body.release_threshold = t;
            }
            if let Some(t) = a.root_threshold {
                body.root_threshold = t;
            }
            let signers: Vec<SigningKeyPair> = a
                .sign_keys
                .iter()
                .map(|k| SigningKeyPair::load(k))
                .collect::<Result<_, _>>()?;
            let bytes = sign_root(&body, &signers.iter().collect::<Vec<_>>())?;
            let next = SignedRoot::parse(&bytes)?;
            // the same rule a site applies: old threshold and new threshold
            cur.check_successor(&next, SystemTime::now())?;
            write_out(&a.out, &bytes)?;
            show(&next, &a.out, out.json);
            Ok(())
        }
        RootCommand::Show(a) => {
            let r = read_root(&a.root)?;
            let own = r.check_own_threshold();
            show(&r, &a.root, out.json);
            own?;
            Ok(())
        }
    }
}

fn show(r: &SignedRoot, path: &Path, json: bool) {
    let ids = |it: &mut dyn Iterator<Item = &stoa_format::KeyId>| -> Vec<String> {
        it.map(|k| k.to_string()).collect()
    };
    let signers = ids(&mut r.signer_ids());
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true, "file": path, "version": r.version(), "created": r.body.created,
                "expires": r.body.expires, "release_threshold": r.body.release_threshold,
                "release_keys": ids(&mut r.release_key_ids()), "root_threshold": r.body.root_threshold,
                "root_keys": ids(&mut r.root_key_ids()), "signed_by": signers,
            })
        );
        return;
    }
    println!(
        "root {} version {}: created {}, expires {}",
        path.display(),
        r.version(),
        r.body.created,
        r.body.expires
    );
    println!("release keys (threshold {}):", r.body.release_threshold);
    for k in r.release_key_ids() {
        println!("  {k}");
    }
    println!("root keys (threshold {}):", r.body.root_threshold);
    for k in r.root_key_ids() {
        println!("  {k}");
    }
    for k in &signers {
        println!("signed by {k}");
    }
}
