//! OpenShift's cluster-wide mirror rules (config.openshift.io/v1):
//! `ImageDigestMirrorSet` for pulls by digest and `ImageTagMirrorSet` for
//! pulls by tag, each with one entry per source registry mirrored at
//! `<site>/<prefix>/<source host>`, `mirrorSourcePolicy: NeverContactSource`
//! (an air-gapped site: the source is never tried). The Machine Config
//! Operator writes them into every node's registries.conf. A plain-http
//! site must also be listed in `image.config.openshift.io/cluster`
//! `spec.registrySources.insecureRegistries`; an https site's CA goes to a
//! ConfigMap named by `spec.additionalTrustedCA` (the CA is written as
//! `stoa-site-ca.crt`).

use super::{q, File, Target};

/// The objects' name.
pub const NAME: &str = "stoa-site";

fn mirror_set(t: &Target, kind: &str, list: &str) -> String {
    let mut text = format!(
        "# stoa-updater mirror-config: pulls of these registries go to the STOA site\n\
         apiVersion: config.openshift.io/v1\nkind: {kind}\nmetadata:\n  name: {NAME}\nspec:\n  {list}:\n"
    );
    for source in &t.sources {
        text.push_str(&format!(
            "  - source: {}\n    mirrors:\n    - {}\n    mirrorSourcePolicy: NeverContactSource\n",
            q(source),
            q(&format!("{}/{}", t.host, t.namespace(source))),
        ));
    }
    text
}

/// `imagedigestmirrorset.yaml`, `imagetagmirrorset.yaml` (and the CA).
pub fn render(t: &Target) -> Vec<File> {
    let mut files = vec![
        File::text(
            "imagedigestmirrorset.yaml",
            mirror_set(t, "ImageDigestMirrorSet", "imageDigestMirrors"),
        ),
        File::text(
            "imagetagmirrorset.yaml",
            mirror_set(t, "ImageTagMirrorSet", "imageTagMirrors"),
        ),
    ];
    if let Some(ca) = &t.ca {
        files.push(File {
            path: "stoa-site-ca.crt".into(),
            bytes: ca.clone(),
        });
    }
    files
}

#[cfg(test)]
mod tests {
    use super::super::tests::{target, text};
    use super::*;

    #[test]
    fn digest_and_tag_mirror_sets_name_every_source() {
        let files = render(&target("http", "stoa", false));
        assert_eq!(files.len(), 2);
        let d = text(&files, "imagedigestmirrorset.yaml");
        assert!(d.contains("kind: ImageDigestMirrorSet\nmetadata:\n  name: stoa-site\nspec:\n  imageDigestMirrors:\n  - source: \"docker.io\"\n    mirrors:\n    - \"site.example:5000/stoa/docker.io\"\n    mirrorSourcePolicy: NeverContactSource\n"), "{d}");
        assert!(d.contains("  - source: \"localhost:5001\"\n    mirrors:\n    - \"site.example:5000/stoa/localhost:5001\"\n"), "{d}");
        let t = text(&files, "imagetagmirrorset.yaml");
        assert!(
            t.contains("kind: ImageTagMirrorSet\n") && t.contains("  imageTagMirrors:\n"),
            "{t}"
        );
        assert_eq!(t.matches("- source:").count(), 3);
        assert_eq!(render(&target("https", "", true)).len(), 3);
    }
}
