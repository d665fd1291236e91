//! `stoa-bundler keygen --out <prefix>`: a new Ed25519 signing key pair.

use std::path::PathBuf;
use stoa_format::cli::Output;

use stoa_format::SigningKeyPair;

use crate::error::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Writes <prefix>.key (PKCS#8 PEM, mode 0600) and <prefix>.pub (SPKI PEM).
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
}

pub fn run(args: &Args, out: Output) -> Result<()> {
    let pair = SigningKeyPair::generate();
    let (key, public) = pair.write_pair(&args.out)?;
    if out.json {
        println!(
            "{}",
            serde_json::json!({"key_id": pair.id().to_string(), "private_key": key, "public_key": public})
        );
    } else {
        println!("key id {}", pair.id());
        println!("private key {} (keep it offline; mode 0600)", key.display());
        println!("public key  {} (give this to sites)", public.display());
    }
    Ok(())
}
