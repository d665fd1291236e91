//! Image references as the OCI client takes them: `docker://<ref>` or a
//! bare name, built directly from the format's [`ImageRef`] when it accepts
//! the name (no regular expression), else by the client's own parser.

use oci_client::Reference;
use stoa_format::names::ImageRef;
use stoa_format::Sha256Digest;

/// `docker://<ref>` or a bare reference (the image name).
pub fn parse_reference(s: &str) -> std::result::Result<Reference, String> {
    let r = s.strip_prefix("docker://").unwrap_or(s);
    reference(r).map_err(|e| format!("{r:?} is not an image reference: {e}"))
}

/// `s` as the OCI client's reference, as `Reference::try_from` reads it. A
/// name the format's [`ImageRef`] accepts (every name a release manifest
/// may give) is built directly: the client's parser compiles a large
/// regular expression on first use, tens of milliseconds (measured: a
/// third of `images`' own CPU on the stack). Anything else goes through
/// that parser, for its answer and its error.
pub fn reference(s: &str) -> std::result::Result<Reference, oci_client::ParseError> {
    let Ok(r) = ImageRef::parse(s) else {
        return Reference::try_from(s);
    };
    // Docker's defaults, as the client's split_domain applies them
    let registry = match r.domain() {
        None | Some("index.docker.io") => "docker.io",
        Some(d) => d,
    }
    .to_owned();
    let repository = if registry == "docker.io" && !r.path().contains('/') {
        format!("library/{}", r.path())
    } else {
        r.path().to_owned()
    };
    let tag = r.tag().map(str::to_owned);
    Ok(match (tag, r.digest().map(Sha256Digest::oci)) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t, d),
        (Some(t), None) => Reference::with_tag(registry, repository, t),
        (None, Some(d)) => Reference::with_digest(registry, repository, d),
        (None, None) => Reference::with_tag(registry, repository, "latest".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = parse_reference("docker://127.0.0.1:5000/stoa/api:2.3.0")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "stoa/api");
        assert_eq!(r.tag(), Some("2.3.0"));
        assert!(parse_reference("docker://UPPER/x::y").is_err());
    }

    /// The regex-free path gives what the client's parser gives.
    #[test]
    fn references_built_without_the_regex_equal_the_clients() {
        let d = format!("sha256:{}", "ab".repeat(32));
        for s in [
            "busybox".to_owned(),
            "busybox:1.36".to_owned(),
            "library/busybox:latest".to_owned(),
            "docker.io/busybox".to_owned(),
            "index.docker.io/bitnami/pgpool:4.6.3-debian-12-r0".to_owned(),
            "registry-1.docker.io/bitnamicharts/common:2.31.4".to_owned(),
            "127.0.0.1:5000/docker.io/bitnamicharts/common:latest".to_owned(),
            "localhost/x/y:1".to_owned(),
            "quay.io/org/app".to_owned(),
            format!("registry.gostoa.dev/stoa/api@{d}"),
            format!("registry.gostoa.dev/stoa/api:2.3.0@{d}"),
            format!("nginx@{d}"),
        ] {
            let ours = reference(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
            let theirs = Reference::try_from(s.as_str()).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(ours.whole(), theirs.whole(), "{s}");
            assert_eq!(ours.registry(), theirs.registry(), "{s}");
            assert_eq!(ours.repository(), theirs.repository(), "{s}");
            assert_eq!(ours.tag(), theirs.tag(), "{s}");
            assert_eq!(ours.digest(), theirs.digest(), "{s}");
        }
        // not a name the format accepts: the client's parser and error
        assert!(reference("UPPER/x::y").is_err());
    }
}
