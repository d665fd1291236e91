//! containerd's registry host configuration (docs/hosts.md of containerd
//! 1.5+): `<config_path>/<source host>/hosts.toml` for each source
//! registry. The mirror URL carries the site's namespace
//! (`http://site:5000/v2/<prefix>/docker.io`), so `override_path = true`:
//! containerd then appends only `/<path>/manifests/…` to it, never
//! `/v2`. `capabilities = ["pull", "resolve"]`: the site answers tags and
//! digests. The site's CA, when it has one, goes next to each hosts.toml
//! as `ca.crt` (a relative `ca` is read from the hosts.toml's folder).

use super::{q, File, Target};

/// `<host>/hosts.toml` (and `<host>/ca.crt`) for each source.
pub fn render(t: &Target) -> Vec<File> {
    let mut files = Vec::new();
    for source in &t.sources {
        let mirror = format!("{}://{}/v2/{}", t.scheme, t.host, t.namespace(source));
        let mut text = format!(
            "# stoa-updater mirror-config: pulls of {source}/... go to the STOA site\n\
             server = {}\n\n\
             [host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
            q(&Target::upstream(source)),
            q(&mirror),
        );
        if t.ca.is_some() {
            text.push_str("  ca = \"ca.crt\"\n");
        }
        files.push(File::text(format!("{source}/hosts.toml"), text));
        if let Some(ca) = &t.ca {
            files.push(File {
                path: format!("{source}/ca.crt").into(),
                bytes: ca.clone(),
            });
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::super::tests::{target, text};
    use super::*;

    #[test]
    fn docker_hub_a_port_and_a_prefix_get_override_path_mirrors() {
        let files = render(&target("http", "stoa", false));
        assert_eq!(files.len(), 3);
        assert_eq!(
            text(&files, "docker.io/hosts.toml"),
            "# stoa-updater mirror-config: pulls of docker.io/... go to the STOA site\n\
             server = \"https://registry-1.docker.io\"\n\n\
             [host.\"http://site.example:5000/v2/stoa/docker.io\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n"
        );
        let port = text(&files, "localhost:5001/hosts.toml");
        assert!(
            port.contains("server = \"https://localhost:5001\"\n"),
            "{port}"
        );
        assert!(
            port.contains("[host.\"http://site.example:5000/v2/stoa/localhost:5001\"]"),
            "{port}"
        );
        // TOML that reads back with the same meaning
        let v: toml::Value = toml::from_str(port).unwrap_or_else(|e| panic!("{e}"));
        let h = &v["host"]["http://site.example:5000/v2/stoa/localhost:5001"];
        assert_eq!(h["override_path"].as_bool(), Some(true));
        assert_eq!(h["capabilities"].as_array().map(Vec::len), Some(2));
        // no prefix: the source host is the first path component
        let files = render(&target("http", "", false));
        assert!(text(&files, "registry.gostoa.dev/hosts.toml")
            .contains("[host.\"http://site.example:5000/v2/registry.gostoa.dev\"]"));
    }

    #[test]
    fn a_site_ca_goes_next_to_each_hosts_toml() {
        let files = render(&target("https", "stoa", true));
        assert_eq!(files.len(), 6);
        let t = text(&files, "docker.io/hosts.toml");
        assert!(
            t.contains("[host.\"https://site.example:5000/v2/stoa/docker.io\"]"),
            "{t}"
        );
        assert!(t.ends_with("  ca = \"ca.crt\"\n"), "{t}");
        assert!(text(&files, "docker.io/ca.crt").starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
