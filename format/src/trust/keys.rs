//! Ed25519 keys as PEM (PKCS#8 private, SPKI public), key ids, the trust
//! store a reader checks signatures against, and the upstream signers'
//! public keys ([`UpstreamKey`]: cosign keys, ECDSA P-256 or Ed25519, SPKI
//! PEM). Every public key the crate reads is parsed here.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::digest::Sha256Digest;
use crate::error::{FormatError, SignatureProblem};

/// A key id: SHA-256 of the public key's SPKI DER encoding, so that
/// `openssl pkey -pubin -in k.pub -outform DER | openssl dgst -sha256`
/// computes it independently. Written and read as exactly 64 lowercase hex
/// digits; it cannot hold anything else, so an id read from a root, a parts
/// signature file or a bundle is validated where it is parsed and is safe to
/// print (docs/FORMAT.md, "Key ids").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub Sha256Digest);

impl std::str::FromStr for KeyId {
    type Err = String;
    /// Parses 64 lowercase hex digits; the refusal never repeats the input
    /// (it is untrusted and may hold control characters).
    fn from_str(s: &str) -> Result<Self, String> {
        Sha256Digest::from_hex(s).map(KeyId).ok_or_else(|| {
            format!(
                "key id \"{}\" is not 64 lowercase hex digits",
                crate::text::escape(&s.chars().take(80).collect::<String>())
            )
        })
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.hex())
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl KeyId {
    pub fn of(key: &VerifyingKey) -> Self {
        let der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        Self(Sha256Digest::of(&der))
    }
    /// The first 16 hex digits, for messages.
    pub fn short(&self) -> String {
        self.0.hex()[..16].to_owned()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.short())
    }
}

/// A private signing key and its id.
pub struct SigningKeyPair {
    key: SigningKey,
    id: KeyId,
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeyPair({})", self.id.short())
    }
}

impl SigningKeyPair {
    pub fn generate() -> Self {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let id = KeyId::of(&key.verifying_key());
        Self { key, id }
    }

    /// Loads a PKCS#8 PEM private key (as written by `keygen` or
    /// `openssl genpkey -algorithm ed25519`).
    pub fn load(path: &Path) -> Result<Self, FormatError> {
        let pem = fs::read_to_string(path).map_err(|e| FormatError::LoadKey {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| FormatError::LoadKey {
            path: path.to_owned(),
            reason: format!("not an Ed25519 PKCS#8 PEM private key ({e})"),
        })?;
        let id = KeyId::of(&key.verifying_key());
        Ok(Self { key, id })
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    pub fn private_pem(&self) -> Result<String, FormatError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|z| z.to_string())
            .map_err(|e| FormatError::LoadKey {
                path: PathBuf::new(),
                reason: e.to_string(),
            })
    }

    pub fn public_pem(&self) -> Result<String, FormatError> {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| FormatError::LoadKey {
                path: PathBuf::new(),
                reason: e.to_string(),
            })
    }

    /// Writes `<prefix>.key` (mode 0600) and `<prefix>.pub`; refuses to
    /// overwrite either.
    pub fn write_pair(&self, prefix: &Path) -> Result<(PathBuf, PathBuf), FormatError> {
        let key_path = with_suffix(prefix, "key");
        let pub_path = with_suffix(prefix, "pub");
        for p in [&key_path, &pub_path] {
            if p.exists() {
                return Err(FormatError::KeyExists { path: p.clone() });
            }
        }
        write_new(&key_path, self.private_pem()?.as_bytes(), 0o600)?;
        write_new(&pub_path, self.public_pem()?.as_bytes(), 0o644)?;
        Ok((key_path, pub_path))
    }
}

fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FormatError> {
    crate::durable::write_new(path, bytes, mode).map_err(|e| FormatError::WriteKey {
        path: path.to_owned(),
        source: e,
    })
}

/// Loads an SPKI PEM public key.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, FormatError> {
    let pem = fs::read_to_string(path).map_err(|e| FormatError::LoadTrust {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|e| FormatError::LoadTrust {
        path: path.to_owned(),
        reason: format!("not an Ed25519 SPKI PEM public key ({e})"),
    })
}

/// An upstream image signer's public key (`[[signers]]` of the release
/// manifest, `signers/<name>.pub` in a bundle): the key cosign makes
/// (`cosign generate-key-pair`, ECDSA P-256) or an Ed25519 one, as SPKI PEM
/// (`-----BEGIN PUBLIC KEY-----`).
#[derive(Clone, PartialEq, Eq)]
pub enum UpstreamKey {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(VerifyingKey),
}

impl fmt::Debug for UpstreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamKey({} {})", self.algorithm(), self.id().short())
    }
}

impl UpstreamKey {
    /// Parses one SPKI PEM public key, P-256 or Ed25519; the reason names
    /// what was found otherwise.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let text =
            std::str::from_utf8(pem).map_err(|_| "the key file is not PEM text".to_owned())?;
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
            return Ok(Self::P256(k));
        }
        VerifyingKey::from_public_key_pem(text)
            .map(Self::Ed25519)
            .map_err(|e| format!("not an ECDSA P-256 or Ed25519 SPKI PEM public key ({e})"))
    }

    /// `ecdsa-p256` or `ed25519`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::P256(_) => "ecdsa-p256",
            Self::Ed25519(_) => "ed25519",
        }
    }

    /// The key id: SHA-256 of the SPKI DER encoding, as for release keys.
    pub fn id(&self) -> KeyId {
        let der = match self {
            Self::P256(k) => k.to_public_key_der().map(|d| d.as_bytes().to_vec()),
            Self::Ed25519(k) => k.to_public_key_der().map(|d| d.as_bytes().to_vec()),
        };
        KeyId(Sha256Digest::of(&der.unwrap_or_default()))
    }

    /// Checks `sig` over `msg`: for P-256 an ASN.1 DER ECDSA signature over
    /// SHA-256 of `msg` (what cosign and `openssl dgst -sha256 -sign`
    /// write), for Ed25519 the 64-byte signature of `msg` (strict form).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), SignatureProblem> {
        let bad = || SignatureProblem::BadSignature {
            key_id: self.id().to_string(),
        };
        match self {
            Self::P256(k) => {
                use p256::ecdsa::signature::Verifier;
                let s = p256::ecdsa::Signature::from_der(sig).map_err(|_| {
                    SignatureProblem::MalformedSignature(format!(
                        "{} bytes, not an ASN.1 DER ECDSA signature",
                        sig.len()
                    ))
                })?;
                k.verify(msg, &s).map_err(|_| bad())
            }
            Self::Ed25519(k) => {
                let bytes: [u8; 64] = sig.try_into().map_err(|_| {
                    SignatureProblem::MalformedSignature(format!(
                        "{} bytes, an Ed25519 signature is 64",
                        sig.len()
                    ))
                })?;
                k.verify_strict(msg, &Signature::from_bytes(&bytes))
                    .map_err(|_| bad())
            }
        }
    }
}

/// The keys a reader trusts, and how many distinct ones must have signed.
#[derive(Clone)]
pub struct TrustStore {
    keys: BTreeMap<KeyId, (VerifyingKey, PathBuf)>,
    threshold: usize,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustStore")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl TrustStore {
    /// Loads one `.pub` file, or every `*.pub` file of a folder. The same key
    /// in two files counts once.
    pub fn load(path: &Path) -> Result<Self, FormatError> {
        let meta = fs::metadata(path).map_err(|e| FormatError::LoadTrust {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut files = Vec::new();
        if meta.is_dir() {
            let rd = fs::read_dir(path).map_err(|e| FormatError::LoadTrust {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            for ent in rd {
                let ent = ent.map_err(|e| FormatError::LoadTrust {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
                let p = ent.path();
                if p.extension().is_some_and(|x| x == "pub") {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.to_owned());
        }
        let mut keys = BTreeMap::new();
        for f in files {
            let k = load_public_key(&f)?;
            keys.entry(KeyId::of(&k)).or_insert((k, f));
        }
        if keys.is_empty() {
            return Err(FormatError::LoadTrust {
                path: path.to_owned(),
                reason: "no *.pub key found".into(),
            });
        }
        Ok(Self { keys, threshold: 1 })
    }

    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let keys = keys
            .into_iter()
            .map(|k| (KeyId::of(&k), (k, PathBuf::new())))
            .collect();
        Self { keys, threshold: 1 }
    }

    /// How many distinct trusted keys must sign (at least 1).
    pub fn with_threshold(mut self, n: usize) -> Self {
        self.threshold = n.max(1);
        self
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    pub fn get(&self, id: &KeyId) -> Option<&VerifyingKey> {
        self.keys.get(id).map(|(k, _)| k)
    }

    /// Checks signatures (key id → raw 64 bytes) over `msg`. A signature by a
    /// trusted key that does not verify is an error on its own: the manifest
    /// or the signature was altered. Unknown keys' signatures are ignored.
    /// Returns the distinct trusted keys whose signatures verified.
    pub fn check(
        &self,
        msg: &[u8],
        sigs: &BTreeMap<KeyId, [u8; 64]>,
    ) -> Result<Vec<KeyId>, FormatError> {
        let mut good = Vec::new();
        for (id, raw) in sigs {
            let Some(key) = self.get(id) else { continue };
            let sig = Signature::from_bytes(raw);
            key.verify_strict(msg, &sig)
                .map_err(|_| FormatError::BadSignature {
                    key_id: id.to_string(),
                })?;
            good.push(*id);
        }
        if good.is_empty() {
            let list = |it: &mut dyn Iterator<Item = &KeyId>| {
                let v: Vec<String> = it.map(KeyId::short).collect();
                if v.is_empty() {
                    "none".to_owned()
                } else {
                    v.join(", ")
                }
            };
            return Err(FormatError::NoTrustedSignature {
                signers: list(&mut sigs.keys()),
                trusted: list(&mut self.keys.keys()),
            });
        }
        if good.len() < self.threshold {
            return Err(FormatError::ThresholdNotMet {
                valid: good.len(),
                required: self.threshold,
            });
        }
        Ok(good)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_roundtrip_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let k = SigningKeyPair::generate();
        let prefix = dir.path().join("release");
        let (kp, pp) = k.write_pair(&prefix).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&kp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(
            k.write_pair(&prefix),
            Err(FormatError::KeyExists { .. })
        ));
        let back = SigningKeyPair::load(&kp).unwrap();
        assert_eq!(back.id(), k.id());
        let t = TrustStore::load(&pp).unwrap();
        let mut sigs = BTreeMap::new();
        sigs.insert(k.id(), k.sign(b"m"));
        assert_eq!(t.check(b"m", &sigs).unwrap(), vec![k.id()]);
        assert!(matches!(
            t.check(b"n", &sigs),
            Err(FormatError::BadSignature { .. })
        ));
    }

    #[test]
    fn threshold_counts_distinct_keys() {
        let a = SigningKeyPair::generate();
        let b = SigningKeyPair::generate();
        let t = TrustStore::from_keys([a.verifying_key(), a.verifying_key(), b.verifying_key()])
            .with_threshold(2);
        let mut sigs = BTreeMap::new();
        sigs.insert(a.id(), a.sign(b"m"));
        assert!(matches!(
            t.check(b"m", &sigs),
            Err(FormatError::ThresholdNotMet {
                valid: 1,
                required: 2
            })
        ));
        sigs.insert(b.id(), b.sign(b"m"));
        assert_eq!(t.check(b"m", &sigs).unwrap().len(), 2);
    }
}
