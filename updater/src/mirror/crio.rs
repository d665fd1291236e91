//! CRI-O's (and podman's, skopeo's) `registries.conf` v2
//! (containers-registries.conf(5)): one `[[registry]]` per source registry
//! (`prefix` and `location` the source host) with one `[[registry.mirror]]`
//! at `<site>/<prefix>/<source host>`. `pull-from-mirror = "all"`: the site
//! holds each image by tag and by digest, so both pulls use the mirror (a
//! runtime tries the mirror first, then the source). A plain-http site is
//! `insecure = true`; an https site's CA goes to
//! `certs.d/<site host>/ca.crt` (copied to /etc/containers/certs.d/).

use super::{q, File, Target};

/// `registries.conf` (and `certs.d/<site host>/ca.crt`).
pub fn render(t: &Target) -> Vec<File> {
    let mut text = String::from(
        "# stoa-updater mirror-config: pulls of these registries go to the STOA site\n",
    );
    for source in &t.sources {
        text.push_str(&format!(
            "\n[[registry]]\nprefix = {s}\nlocation = {s}\n\n[[registry.mirror]]\nlocation = {}\ninsecure = {}\npull-from-mirror = \"all\"\n",
            q(&format!("{}/{}", t.host, t.namespace(source))),
            t.insecure(),
            s = q(source),
        ));
    }
    let mut files = vec![File::text("registries.conf", text)];
    if let Some(ca) = &t.ca {
        files.push(File {
            path: format!("certs.d/{}/ca.crt", t.host).into(),
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
    fn one_registry_with_one_mirror_per_source() {
        let files = render(&target("http", "stoa", false));
        assert_eq!(files.len(), 1);
        let t = text(&files, "registries.conf");
        assert!(
            t.contains("[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"site.example:5000/stoa/docker.io\"\ninsecure = true\npull-from-mirror = \"all\"\n"),
            "{t}"
        );
        assert!(
            t.contains("prefix = \"localhost:5001\"\nlocation = \"localhost:5001\"\n"),
            "{t}"
        );
        assert!(
            t.contains("location = \"site.example:5000/stoa/localhost:5001\"\n"),
            "{t}"
        );
        assert_eq!(t.matches("[[registry]]").count(), 3);
        // it is TOML, read back with the same meaning
        let v: toml::Value = toml::from_str(t).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            v["registry"][1]["mirror"][0]["location"].as_str(),
            Some("site.example:5000/stoa/localhost:5001")
        );
    }

    #[test]
    fn an_https_site_is_secure_and_its_ca_goes_to_certs_d() {
        let files = render(&target("https", "", true));
        let t = text(&files, "registries.conf");
        assert!(
            t.contains("location = \"site.example:5000/docker.io\"\ninsecure = false\n"),
            "{t}"
        );
        assert!(text(&files, "certs.d/site.example:5000/ca.crt").starts_with("-----BEGIN"));
    }
}
