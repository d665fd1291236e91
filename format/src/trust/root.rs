//! The signed trust root: which release keys a site trusts, how many must
//! sign a bundle, and which root keys may change that — a small TUF-like
//! document that rotates itself.
//!
//! A root file is a JSON envelope `{"signed": "<canonical JSON>",
//! "signatures": [{"key_id": "<hex>", "sig": "<base64>"}]}`. The `signed`
//! string holds the exact bytes that are signed (compact JSON, fields in a
//! fixed order, keys sorted by id); a reader checks that they are canonical
//! and never re-serialises before checking. Each signature is a raw Ed25519
//! signature over those bytes, so `jq -j .signed root.json` and
//! `openssl pkeyutl -verify -rawin` check it independently (docs/FORMAT.md).
//!
//! Rules: version N+1 is accepted only when signed by a threshold of N's root
//! keys *and* a threshold of its own; chains are walked one version at a
//! time; an expired root is refused; thresholds are at least 1 and at most
//! the number of keys; a key id appears once; a key that signed twice counts
//! once; a root created after its own expiry, or more than
//! [`MAX_CLOCK_SKEW`] after the reader's clock, is refused; key ids are
//! [`KeyId`]s, validated while parsing. Every refusal is a [`FormatError::Root`] naming the version and the
//! rule.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::FormatError;
use crate::keys::{KeyId, SigningKeyPair, TrustStore};

pub use crate::document::limits::{MAX_CLOCK_SKEW, MAX_ROOT_ITEMS, MAX_ROOT_SIZE};
pub use crate::document::ANCHORS_DIR;

pub use super::base::{carried_roots, TrustBase};

/// The value of the signed document's `type` field.
pub const ROOT_TYPE: &str = "stoa-root";

/// The bundle entry name of a root.
pub fn anchor_path(version: u64) -> String {
    format!("{ANCHORS_DIR}root-{version}.json")
}

/// A listed key: its id and its SPKI DER, base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootKey {
    /// Validated while the root is parsed (64 lowercase hex digits).
    pub id: KeyId,
    pub public_key: String,
}

impl RootKey {
    pub fn of(key: &VerifyingKey) -> Self {
        let der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        Self {
            id: KeyId::of(key),
            public_key: base64::engine::general_purpose::STANDARD.encode(der),
        }
    }
}

/// The signed document. Field order here is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u64,
    /// RFC 3339 UTC; feeds the site's clock floor.
    pub created: String,
    /// RFC 3339 UTC; at or after it the root is refused.
    pub expires: String,
    pub release_threshold: usize,
    pub release_keys: Vec<RootKey>,
    pub root_threshold: usize,
    pub root_keys: Vec<RootKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSignatureRecord {
    /// Validated while the root is parsed (64 lowercase hex digits).
    pub key_id: KeyId,
    pub sig: String,
}

/// The file: the signed bytes as a string, and detached signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootEnvelope {
    pub signed: String,
    pub signatures: Vec<RootSignatureRecord>,
}

/// A parsed, structurally valid root (signatures not yet counted).
#[derive(Debug, Clone)]
pub struct SignedRoot {
    pub body: RootBody,
    /// The exact signed bytes.
    pub signed_bytes: Vec<u8>,
    /// The whole file as read (what a site persists).
    pub file_bytes: Vec<u8>,
    pub created: SystemTime,
    pub expires: SystemTime,
    release_keys: BTreeMap<KeyId, VerifyingKey>,
    root_keys: BTreeMap<KeyId, VerifyingKey>,
    signatures: Vec<(KeyId, [u8; 64])>,
}

fn err(version: impl ToString, rule: &'static str, detail: impl Into<String>) -> FormatError {
    FormatError::Root {
        version: version.to_string(),
        rule,
        detail: detail.into(),
    }
}

/// True when `bytes` look like a root file rather than a PEM key.
pub fn looks_like_root(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

fn parse_time(v: u64, field: &str, s: &str) -> Result<SystemTime, FormatError> {
    humantime::parse_rfc3339(s).map_err(|_| {
        err(
            v,
            "time",
            format!("{field} {s:?} is not an RFC 3339 UTC time"),
        )
    })
}

fn parse_keys(
    v: u64,
    what: &str,
    keys: &[RootKey],
) -> Result<BTreeMap<KeyId, VerifyingKey>, FormatError> {
    if keys.len() > MAX_ROOT_ITEMS {
        return Err(err(
            v,
            "too-many-keys",
            format!("{} {what} keys, at most {MAX_ROOT_ITEMS}", keys.len()),
        ));
    }
    let mut out = BTreeMap::new();
    for k in keys {
        let der = base64::engine::general_purpose::STANDARD
            .decode(&k.public_key)
            .map_err(|_| {
                err(
                    v,
                    "key",
                    format!("{what} key {}: public_key is not base64", k.id),
                )
            })?;
        let key = VerifyingKey::from_public_key_der(&der).map_err(|_| {
            err(
                v,
                "key",
                format!("{what} key {}: not an Ed25519 SPKI DER key", k.id),
            )
        })?;
        let id = KeyId::of(&key);
        if id != k.id {
            return Err(err(
                v,
                "key-id",
                format!(
                    "{what} key listed as {} has id {} (SHA-256 of its SPKI DER)",
                    k.id, id
                ),
            ));
        }
        if out.insert(id, key).is_some() {
            return Err(err(
                v,
                "duplicate-key-id",
                format!("{what} key {} is listed twice", id.short()),
            ));
        }
    }
    // canonical order: sorted by id (checked after duplicates, so a repeat
    // gets its own message)
    if keys.windows(2).any(|w| w[0].id >= w[1].id) {
        return Err(err(
            v,
            "canonical",
            format!("{what} keys are not sorted by id"),
        ));
    }
    Ok(out)
}

impl SignedRoot {
    /// Parses a root file and checks its structure: canonical signed bytes,
    /// known type, times, keys (ids match, none twice), thresholds between 1
    /// and the key count, signature records well formed. Signatures are
    /// counted by [`Self::check_self`] and [`Self::check_successor`].
    pub fn parse(file_bytes: &[u8]) -> Result<Self, FormatError> {
        if file_bytes.len() as u64 > MAX_ROOT_SIZE {
            return Err(err(
                "?",
                "size",
                format!("{} bytes, at most {MAX_ROOT_SIZE}", file_bytes.len()),
            ));
        }
        let env: RootEnvelope = serde_json::from_slice(file_bytes)
            .map_err(|e| err("?", "parse", format!("not a root file: {e}")))?;
        let signed_bytes = env.signed.into_bytes();
        let body: RootBody = serde_json::from_slice(&signed_bytes)
            .map_err(|e| err("?", "parse", format!("signed document: {e}")))?;
        let v = body.version;
        if body.kind != ROOT_TYPE {
            return Err(err(
                v,
                "type",
                format!("type {:?}, expected {ROOT_TYPE:?}", body.kind),
            ));
        }
        let created = parse_time(v, "created", &body.created)?;
        let expires = parse_time(v, "expires", &body.expires)?;
        if created > expires {
            return Err(err(
                v,
                "created-after-expires",
                format!(
                    "created {} is after its own expires {}",
                    body.created, body.expires
                ),
            ));
        }
        let release_keys = parse_keys(v, "release", &body.release_keys)?;
        let root_keys = parse_keys(v, "root", &body.root_keys)?;
        for (what, t, n) in [
            (
                "release_threshold",
                body.release_threshold,
                release_keys.len(),
            ),
            ("root_threshold", body.root_threshold, root_keys.len()),
        ] {
            if t == 0 || t > n {
                return Err(err(
                    v,
                    "threshold",
                    format!("{what} {t} must be between 1 and the key count {n}"),
                ));
            }
        }
        if serde_json::to_vec(&body).ok().as_deref() != Some(&signed_bytes[..]) {
            return Err(err(
                v,
                "canonical",
                "the signed bytes are not the canonical form (compact JSON, fields in order, no extra space)",
            ));
        }
        if env.signatures.len() > MAX_ROOT_ITEMS {
            return Err(err(
                v,
                "signature-entry",
                format!("more than {MAX_ROOT_ITEMS} signatures"),
            ));
        }
        let mut signatures = Vec::new();
        for s in &env.signatures {
            let id = s.key_id;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&s.sig)
                .ok()
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .ok_or_else(|| {
                    err(
                        v,
                        "signature-entry",
                        format!("signature by {} is not 64 bytes of base64", id.short()),
                    )
                })?;
            signatures.push((id, raw));
        }
        Ok(Self {
            body,
            signed_bytes,
            file_bytes: file_bytes.to_vec(),
            created,
            expires,
            release_keys,
            root_keys,
            signatures,
        })
    }

    pub fn version(&self) -> u64 {
        self.body.version
    }

    pub fn release_key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.release_keys.keys()
    }

    pub fn root_key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.root_keys.keys()
    }

    /// Key ids of the signature records (a key listed twice appears twice).
    pub fn signer_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.signatures.iter().map(|(k, _)| k)
    }

    /// Distinct keys of `keys` whose signature verifies. A signature by one
    /// of `keys` that does not verify is an error (tampering); signatures by
    /// other keys are ignored; a key that signed twice counts once.
    fn valid_signers(
        &self,
        keys: &BTreeMap<KeyId, VerifyingKey>,
    ) -> Result<Vec<KeyId>, FormatError> {
        let mut good: Vec<KeyId> = Vec::new();
        for (id, raw) in &self.signatures {
            let Some(k) = keys.get(id) else { continue };
            k.verify_strict(&self.signed_bytes, &Signature::from_bytes(raw))
                .map_err(|_| {
                    err(
                        self.version(),
                        "bad-signature",
                        format!(
                            "signature by root key {} does not verify (root or signature altered)",
                            id.short()
                        ),
                    )
                })?;
            if !good.contains(id) {
                good.push(*id);
            }
        }
        Ok(good)
    }

    /// Not created more than [`MAX_CLOCK_SKEW`] after `now` (its `created`
    /// raises the site's clock floor), not expired.
    fn check_expiry(&self, now: SystemTime) -> Result<(), FormatError> {
        if self.created > now + MAX_CLOCK_SKEW {
            return Err(err(
                self.version(),
                "created-in-future",
                format!(
                    "created {}, more than {} after the clock ({})",
                    self.body.created,
                    humantime::format_duration(MAX_CLOCK_SKEW),
                    humantime::format_rfc3339_seconds(now)
                ),
            ));
        }
        if now >= self.expires {
            return Err(err(
                self.version(),
                "expired",
                format!(
                    "expired at {} (now {})",
                    self.body.expires,
                    humantime::format_rfc3339_seconds(now)
                ),
            ));
        }
        Ok(())
    }

    /// A first root: signed by a threshold of its own root keys, not expired.
    pub fn check_self(&self, now: SystemTime) -> Result<Vec<KeyId>, FormatError> {
        let own = self.check_own_threshold()?;
        self.check_expiry(now)?;
        Ok(own)
    }

    /// Signed by a threshold of its own root keys (expiry not checked: used
    /// when a site re-reads the root it already accepted).
    pub fn check_own_threshold(&self) -> Result<Vec<KeyId>, FormatError> {
        let own = self.valid_signers(&self.root_keys)?;
        if own.len() < self.body.root_threshold {
            return Err(err(
                self.version(),
                "too-few-signatures",
                format!(
                    "{} valid signature(s) by its own root keys, its root_threshold is {}",
                    own.len(),
                    self.body.root_threshold
                ),
            ));
        }
        Ok(own)
    }

    /// `next` may replace `self`: exactly the next version, signed by a
    /// threshold of this root's root keys and a threshold of its own, not
    /// expired.
    pub fn check_successor(&self, next: &SignedRoot, now: SystemTime) -> Result<(), FormatError> {
        let (cur, v) = (self.version(), next.version());
        if v <= cur {
            return Err(err(
                v,
                "not-newer",
                format!("version {v} is not newer than the accepted version {cur}"),
            ));
        }
        if v != cur + 1 {
            return Err(err(
                v,
                "chain-gap",
                format!(
                    "the accepted root is version {cur}; version {} is missing (roots are accepted one version at a time)",
                    cur + 1
                ),
            ));
        }
        let by_old = next.valid_signers(&self.root_keys)?;
        if by_old.len() < self.body.root_threshold {
            return Err(err(
                v,
                "too-few-signatures",
                format!(
                    "{} valid signature(s) by the root keys of version {cur}, which needs {}",
                    by_old.len(),
                    self.body.root_threshold
                ),
            ));
        }
        next.check_own_threshold()?;
        next.check_expiry(now)
    }

    /// Walks from `self` through `candidates` one version at a time and
    /// returns the roots accepted, in order (empty when none is newer).
    /// With `skip_old`, candidates not newer than `self` are ignored (a
    /// bundle may carry roots the site already has); without it they are
    /// refused.
    pub fn walk_chain(
        &self,
        mut candidates: Vec<SignedRoot>,
        now: SystemTime,
        skip_old: bool,
    ) -> Result<Vec<SignedRoot>, FormatError> {
        candidates.sort_by_key(SignedRoot::version);
        let mut accepted: Vec<SignedRoot> = Vec::new();
        for c in candidates {
            let cur = accepted.last().unwrap_or(self);
            let old = c.version() <= cur.version();
            if old && (skip_old || accepted.iter().any(|a| a.version() == c.version())) {
                if c.version() == cur.version() && c.signed_bytes != cur.signed_bytes {
                    return Err(err(
                        c.version(),
                        "conflict",
                        "two different roots carry the same version",
                    ));
                }
                continue;
            }
            cur.check_successor(&c, now)?;
            accepted.push(c);
        }
        Ok(accepted)
    }

    /// Would a bundle signed by `keys` be trusted by a site whose root in
    /// force is this one? The reader's own check ([`TrustStore::check`] over
    /// this root's release keys and threshold), run over a probe message
    /// each key signs, so the builder and every reader apply one rule.
    /// Returns the keys that count.
    pub fn check_bundle_signers(&self, keys: &[SigningKeyPair]) -> Result<Vec<KeyId>, FormatError> {
        const PROBE: &[u8] = b"stoa: would this root trust a bundle signed by these keys";
        let sigs = keys.iter().map(|k| (k.id(), k.sign(PROBE))).collect();
        self.trust_store().check(PROBE, &sigs)
    }

    /// The release keys and threshold, as a bundle reader uses them.
    pub fn trust_store(&self) -> TrustStore {
        TrustStore::from_keys(self.release_keys.values().copied())
            .with_threshold(self.body.release_threshold)
    }
}

/// Makes a root file: the canonical signed bytes and one signature per key.
pub fn sign_root(body: &RootBody, keys: &[&SigningKeyPair]) -> Result<Vec<u8>, FormatError> {
    let mut body = body.clone();
    body.release_keys.sort_by_key(|a| a.id);
    body.root_keys.sort_by_key(|a| a.id);
    let signed =
        serde_json::to_vec(&body).map_err(|e| err(body.version, "parse", e.to_string()))?;
    let mut sigs: Vec<RootSignatureRecord> = Vec::new();
    for k in keys {
        let id = k.id();
        if sigs.iter().any(|s| s.key_id == id) {
            continue;
        }
        sigs.push(RootSignatureRecord {
            key_id: id,
            sig: base64::engine::general_purpose::STANDARD.encode(k.sign(&signed)),
        });
    }
    sigs.sort_by_key(|a| a.key_id);
    let env = RootEnvelope {
        signed: String::from_utf8(signed).map_err(|e| err(body.version, "parse", e.to_string()))?,
        signatures: sigs,
    };
    let mut out =
        serde_json::to_vec_pretty(&env).map_err(|e| err(body.version, "parse", e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }
    const NOW: &str = "2027-06-01T00:00:00Z";

    fn body(
        v: u64,
        release: &[&SigningKeyPair],
        rt: usize,
        root: &[&SigningKeyPair],
        rrt: usize,
    ) -> RootBody {
        RootBody {
            kind: ROOT_TYPE.into(),
            version: v,
            created: "2027-01-01T00:00:00Z".into(),
            expires: "2030-01-01T00:00:00Z".into(),
            release_threshold: rt,
            release_keys: release
                .iter()
                .map(|k| RootKey::of(&k.verifying_key()))
                .collect(),
            root_threshold: rrt,
            root_keys: root
                .iter()
                .map(|k| RootKey::of(&k.verifying_key()))
                .collect(),
        }
    }

    fn rule(e: FormatError) -> (String, &'static str) {
        match e {
            FormatError::Root { version, rule, .. } => (version, rule),
            other => panic!("not a root error: {other}"),
        }
    }

    #[test]
    fn rotation_chain_one_step_at_a_time() {
        let (r1, r2, k1, k2) = (
            SigningKeyPair::generate(),
            SigningKeyPair::generate(),
            SigningKeyPair::generate(),
            SigningKeyPair::generate(),
        );
        let v1 =
            SignedRoot::parse(&sign_root(&body(1, &[&k1], 1, &[&r1], 1), &[&r1]).unwrap()).unwrap();
        v1.check_self(t(NOW)).unwrap();
        let v2 =
            SignedRoot::parse(&sign_root(&body(2, &[&k2], 1, &[&r2], 1), &[&r1, &r2]).unwrap())
                .unwrap();
        let v3 =
            SignedRoot::parse(&sign_root(&body(3, &[&k2], 1, &[&r2], 1), &[&r2]).unwrap()).unwrap();
        let got = v1
            .walk_chain(vec![v3.clone(), v2.clone(), v1.clone()], t(NOW), true)
            .unwrap();
        assert_eq!(
            got.iter().map(SignedRoot::version).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let store = got[1].trust_store();
        assert_eq!(store.key_ids().copied().collect::<Vec<_>>(), vec![k2.id()]);
        // the removed key is no longer trusted
        assert!(store.get(&k1.id()).is_none());
        // chain gap: v3 straight after v1
        assert_eq!(
            rule(v1.walk_chain(vec![v3], t(NOW), true).unwrap_err()),
            ("3".into(), "chain-gap")
        );
        // lower/equal refused when asked directly
        assert_eq!(
            rule(v2.check_successor(&v1, t(NOW)).unwrap_err()),
            ("1".into(), "not-newer")
        );
        assert_eq!(
            rule(v2.walk_chain(vec![v2.clone()], t(NOW), false).unwrap_err()),
            ("2".into(), "not-newer")
        );
        // the canonical bytes round-trip and are what openssl would check
        assert_eq!(v2.signed_bytes, serde_json::to_vec(&v2.body).unwrap());
        let _ = Duration::ZERO;
    }

    #[test]
    fn root_too_few_signatures_by_old_or_own_keys() {
        let (r1, r2, k) = (
            SigningKeyPair::generate(),
            SigningKeyPair::generate(),
            SigningKeyPair::generate(),
        );
        let v1 =
            SignedRoot::parse(&sign_root(&body(1, &[&k], 1, &[&r1], 1), &[&r1]).unwrap()).unwrap();
        // v2 signed only by its own new key, not by v1's root key
        let only_new =
            SignedRoot::parse(&sign_root(&body(2, &[&k], 1, &[&r2], 1), &[&r2]).unwrap()).unwrap();
        assert_eq!(
            rule(v1.check_successor(&only_new, t(NOW)).unwrap_err()),
            ("2".into(), "too-few-signatures")
        );
        // v2 signed only by the old key, not by its own
        let only_old =
            SignedRoot::parse(&sign_root(&body(2, &[&k], 1, &[&r2], 1), &[&r1]).unwrap()).unwrap();
        assert_eq!(
            rule(v1.check_successor(&only_old, t(NOW)).unwrap_err()),
            ("2".into(), "too-few-signatures")
        );
        // a first root below its own threshold
        let v = SignedRoot::parse(&sign_root(&body(1, &[&k], 1, &[&r1, &r2], 2), &[&r1]).unwrap())
            .unwrap();
        assert_eq!(
            rule(v.check_self(t(NOW)).unwrap_err()),
            ("1".into(), "too-few-signatures")
        );
    }

    #[test]
    fn root_key_listed_twice_in_signatures_counts_once() {
        let (r1, r2, k) = (
            SigningKeyPair::generate(),
            SigningKeyPair::generate(),
            SigningKeyPair::generate(),
        );
        let bytes = sign_root(&body(1, &[&k], 1, &[&r1, &r2], 2), &[&r1]).unwrap();
        let mut env: RootEnvelope = serde_json::from_slice(&bytes).unwrap();
        let dup = env.signatures[0].clone();
        env.signatures.push(dup);
        let v = SignedRoot::parse(&serde_json::to_vec(&env).unwrap()).unwrap();
        assert_eq!(
            rule(v.check_self(t(NOW)).unwrap_err()),
            ("1".into(), "too-few-signatures")
        );
    }

    #[test]
    fn root_threshold_over_key_count_and_duplicate_ids_refused() {
        let (r1, k) = (SigningKeyPair::generate(), SigningKeyPair::generate());
        let e = SignedRoot::parse(&sign_root(&body(4, &[&k], 2, &[&r1], 1), &[&r1]).unwrap())
            .unwrap_err();
        assert_eq!(rule(e), ("4".into(), "threshold"));
        let e = SignedRoot::parse(&sign_root(&body(4, &[&k], 1, &[&r1], 0), &[&r1]).unwrap())
            .unwrap_err();
        assert_eq!(rule(e), ("4".into(), "threshold"));
        let e = SignedRoot::parse(&sign_root(&body(4, &[&k, &k], 1, &[&r1], 1), &[&r1]).unwrap())
            .unwrap_err();
        assert_eq!(rule(e), ("4".into(), "duplicate-key-id"));
    }

    #[test]
    fn root_expired_refused() {
        let (r1, k) = (SigningKeyPair::generate(), SigningKeyPair::generate());
        let mut b = body(1, &[&k], 1, &[&r1], 1);
        b.expires = "2027-01-02T00:00:00Z".into();
        let v = SignedRoot::parse(&sign_root(&b, &[&r1]).unwrap()).unwrap();
        assert_eq!(
            rule(v.check_self(t(NOW)).unwrap_err()),
            ("1".into(), "expired")
        );
    }

    #[test]
    fn root_tampered_or_non_canonical_refused() {
        let (r1, k) = (SigningKeyPair::generate(), SigningKeyPair::generate());
        let bytes = sign_root(&body(1, &[&k], 1, &[&r1], 1), &[&r1]).unwrap();
        let mut env: RootEnvelope = serde_json::from_slice(&bytes).unwrap();
        env.signed = env.signed.replace("2030-01-01", "2099-01-01");
        let v = SignedRoot::parse(&serde_json::to_vec(&env).unwrap()).unwrap();
        assert_eq!(
            rule(v.check_self(t(NOW)).unwrap_err()),
            ("1".into(), "bad-signature")
        );
        let mut env: RootEnvelope = serde_json::from_slice(&bytes).unwrap();
        env.signed = env.signed.replacen(',', ", ", 1);
        let e = SignedRoot::parse(&serde_json::to_vec(&env).unwrap()).unwrap_err();
        assert_eq!(rule(e), ("1".into(), "canonical"));
        assert_eq!(rule(SignedRoot::parse(b"{}").unwrap_err()).1, "parse");
    }

    /// Issue 17 item 6 (fixture tests/fixtures/root-key-id-control-chars):
    /// a key id holding a newline, a forged audit line and `ESC [2J` is
    /// refused while the root is parsed, and the message holds no control
    /// character.
    #[test]
    fn root_key_id_with_control_characters_is_refused_escaped() {
        let bytes = include_bytes!("../../../tests/fixtures/root-key-id-control-chars/root-2.json");
        let e = SignedRoot::parse(bytes).unwrap_err();
        let msg = e.to_string();
        assert_eq!(rule(e).1, "parse");
        assert!(msg.contains("is not 64 lowercase hex digits"), "{msg}");
        assert!(msg.contains("abc\\u{a}"), "{msg}");
        assert!(!msg.chars().any(crate::text::is_unsafe), "{msg:?}");
        // the same id in the signed body alone (signature records good)
        let mut env: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        env["signatures"][0]["key_id"] = "0".repeat(64).into();
        let e = SignedRoot::parse(&serde_json::to_vec(&env).unwrap()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("signed document: key id"), "{msg}");
        assert!(!msg.chars().any(crate::text::is_unsafe), "{msg:?}");
    }

    /// Issue 17 weak spot: created in the future (beyond the skew) or after
    /// its own expiry.
    #[test]
    fn root_created_in_future_or_after_expires_refused() {
        let (r1, k) = (SigningKeyPair::generate(), SigningKeyPair::generate());
        let mut b = body(1, &[&k], 1, &[&r1], 1);
        b.created = "2029-01-01T00:00:00Z".into();
        b.expires = "2028-01-01T00:00:00Z".into();
        let e = SignedRoot::parse(&sign_root(&b, &[&r1]).unwrap()).unwrap_err();
        assert_eq!(rule(e), ("1".into(), "created-after-expires"));
        // two days ahead of the clock: refused; within the skew: accepted
        b.expires = "2030-01-01T00:00:00Z".into();
        b.created = "2027-06-03T00:00:00Z".into();
        let v = SignedRoot::parse(&sign_root(&b, &[&r1]).unwrap()).unwrap();
        assert_eq!(
            rule(v.check_self(t(NOW)).unwrap_err()),
            ("1".into(), "created-in-future")
        );
        b.created = "2027-06-01T12:00:00Z".into();
        let v = SignedRoot::parse(&sign_root(&b, &[&r1]).unwrap()).unwrap();
        v.check_self(t(NOW)).unwrap();
        // a successor created in the future is refused too
        let v1 =
            SignedRoot::parse(&sign_root(&body(1, &[&k], 1, &[&r1], 1), &[&r1]).unwrap()).unwrap();
        let mut b2 = body(2, &[&k], 1, &[&r1], 1);
        b2.created = "2027-07-01T00:00:00Z".into();
        let v2 = SignedRoot::parse(&sign_root(&b2, &[&r1]).unwrap()).unwrap();
        assert_eq!(
            rule(v1.check_successor(&v2, t(NOW)).unwrap_err()),
            ("2".into(), "created-in-future")
        );
    }
}
