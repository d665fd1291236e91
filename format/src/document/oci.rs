//! The few OCI image-spec types both programs need (no network code).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const OCI_LAYOUT_CONTENT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";

pub const MT_OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_DOCKER_IMAGE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Longest artifact type accepted (a media type: RFC 6838 caps each half at 127).
pub const MAX_MEDIA_TYPE: usize = 255;

/// The artifact type of a manifest (OCI image spec 1.1, *Guidelines for
/// artifact usage*): its `artifactType`, else its config's media type when
/// that is not an image config. None for a container image, an index, or
/// bytes that are not a manifest.
pub fn artifact_type_of(manifest: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    if let Some(t) = v.get("artifactType").and_then(|t| t.as_str()) {
        return Some(t.to_owned());
    }
    let config = v.get("config")?.get("mediaType")?.as_str()?;
    (config != MT_OCI_IMAGE_CONFIG && config != MT_DOCKER_IMAGE_CONFIG).then(|| config.to_owned())
}

/// A media type as the OCI specs write one: `type/subtype`, each of RFC
/// 6838's restricted-name characters, at most [`MAX_MEDIA_TYPE`] bytes.
pub fn valid_media_type(t: &str) -> bool {
    let name = |s: &str| {
        !s.is_empty()
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    t.len() <= MAX_MEDIA_TYPE && t.split_once('/').is_some_and(|(a, b)| name(a) && name(b))
}

/// True for the media types of an index (manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == MT_OCI_INDEX || media_type == MT_DOCKER_LIST
}

/// True for the media types of a single-platform image manifest.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == MT_OCI_MANIFEST || media_type == MT_DOCKER_MANIFEST
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`
    pub fn id(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// Matches `os/arch` or `os/arch/variant`.
    pub fn matches(&self, want: &str) -> bool {
        let id = self.id();
        id == want
            || (self.variant.is_some() && format!("{}/{}", self.os, self.architecture) == want)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
}

/// Reads just enough of a manifest or index to learn its media type.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaTypeProbe {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<serde_json::Value>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

impl MediaTypeProbe {
    /// The declared media type, or the one implied by the fields present.
    pub fn kind(&self) -> Option<&str> {
        if let Some(m) = &self.media_type {
            return Some(m);
        }
        if self.manifests.is_some() {
            Some(MT_OCI_INDEX)
        } else if self.config.is_some() {
            Some(MT_OCI_MANIFEST)
        } else {
            None
        }
    }
}
