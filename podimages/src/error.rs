//! The one error type of stoa-podimages. Every message is one line; the
//! untrusted parts in it (names, paths, keys) have control characters
//! escaped.

/// Why rendered manifests were refused.
#[derive(Debug, thiserror::Error)]
pub enum PodImagesError {
    /// A Helm post-renderer's or `helm template`'s output that the rule
    /// refuses: `template` is the document's `# Source:` line; `reason`
    /// starts with the object's `Kind/name` when it is known.
    #[error("read rendered manifests: document {document} ({template}): {reason}")]
    RenderedYaml {
        document: usize,
        template: String,
        reason: String,
    },
    /// Pod images the site registry cannot serve: each names the kind,
    /// name, container and image.
    #[error("rewrite images: {count} image(s) cannot be served from the site registry: {images}")]
    ImagesNotServed { count: usize, images: String },
}

impl PodImagesError {
    /// A short stable name for `--json` error output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RenderedYaml { .. } => "rendered-yaml",
            Self::ImagesNotServed { .. } => "image-not-served",
        }
    }
}
