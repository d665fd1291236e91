//! Named bad trust roots (issue 11, "Bad input"): each is what an attacker
//! or a careless operator could hand a site as the successor of its root
//! version 1, and each must be refused naming the version and the rule, the
//! site's trust unchanged. Made with the format's own signer, so only the
//! one rule under test is broken.

use std::path::Path;

use stoa_format::root::{sign_root, RootBody, RootEnvelope, RootKey, SignedRoot};
use stoa_format::SigningKeyPair;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFixture {
    /// v2 raises root_threshold to 2 and carries one signature.
    TooFewSignatures,
    /// v1 again, different content.
    EqualVersion,
    /// version 0.
    LowerVersion,
    /// release_threshold 3 with one release key.
    ThresholdOverKeyCount,
    /// the same release key listed twice.
    DuplicateKeyIds,
    /// two root keys, threshold 2, the same key's signature listed twice.
    KeyListedTwice,
    /// expired in 2020.
    Expired,
    /// v3 straight after v1.
    ChainGap,
}

pub const ALL: &[RootFixture] = &[
    RootFixture::TooFewSignatures,
    RootFixture::EqualVersion,
    RootFixture::LowerVersion,
    RootFixture::ThresholdOverKeyCount,
    RootFixture::DuplicateKeyIds,
    RootFixture::KeyListedTwice,
    RootFixture::Expired,
    RootFixture::ChainGap,
];

impl RootFixture {
    /// The root version and rule the refusal must name.
    pub fn expected(self) -> (u64, &'static str) {
        match self {
            Self::TooFewSignatures | Self::KeyListedTwice => (2, "too-few-signatures"),
            Self::EqualVersion => (1, "not-newer"),
            Self::LowerVersion => (0, "not-newer"),
            Self::ThresholdOverKeyCount => (2, "threshold"),
            Self::DuplicateKeyIds => (2, "duplicate-key-id"),
            Self::Expired => (2, "expired"),
            Self::ChainGap => (3, "chain-gap"),
        }
    }

    /// Writes the fixture as a successor of `current`, signed with the
    /// site's root key `root_key` and naming `release` as release key.
    pub fn write(self, out: &Path, current: &Path, root_key: &Path, release: &Path) {
        let cur = SignedRoot::parse(&std::fs::read(current).unwrap()).unwrap();
        let r1 = SigningKeyPair::load(root_key).unwrap();
        let r2 = SigningKeyPair::generate();
        let k = RootKey::of(&stoa_format::keys::load_public_key(release).unwrap());
        let mut b: RootBody = cur.body.clone();
        b.version = cur.version() + 1;
        let sign = |b: &RootBody, keys: &[&SigningKeyPair]| sign_root(b, keys).unwrap();
        let bytes = match self {
            Self::TooFewSignatures => {
                b.root_keys.push(RootKey::of(&r2.verifying_key()));
                b.root_threshold = 2;
                sign(&b, &[&r1])
            }
            Self::EqualVersion => {
                b.version = cur.version();
                b.expires = "2098-01-01T00:00:00Z".into();
                sign(&b, &[&r1])
            }
            Self::LowerVersion => {
                b.version = 0;
                sign(&b, &[&r1])
            }
            Self::ThresholdOverKeyCount => {
                b.release_keys = vec![k];
                b.release_threshold = 3;
                sign(&b, &[&r1])
            }
            Self::DuplicateKeyIds => {
                b.release_keys = vec![k.clone(), k];
                let mut bytes = sign(&b, &[&r1]);
                // sign_root keeps the list as given; make sure the duplicate
                // survived
                assert!(
                    String::from_utf8_lossy(&bytes)
                        .matches("public_key")
                        .count()
                        >= 3
                );
                bytes.shrink_to_fit();
                bytes
            }
            Self::KeyListedTwice => {
                b.root_keys.push(RootKey::of(&r2.verifying_key()));
                b.root_threshold = 2;
                let bytes = sign(&b, &[&r1]);
                let mut env: RootEnvelope = serde_json::from_slice(&bytes).unwrap();
                let again = env.signatures[0].clone();
                env.signatures.push(again);
                serde_json::to_vec_pretty(&env).unwrap()
            }
            Self::Expired => {
                // created before it expired (else created-after-expires)
                b.created = "2019-01-01T00:00:00Z".into();
                b.expires = "2020-01-01T00:00:00Z".into();
                sign(&b, &[&r1])
            }
            Self::ChainGap => {
                b.version = cur.version() + 2;
                sign(&b, &[&r1])
            }
        };
        std::fs::write(out, bytes).unwrap();
    }
}
