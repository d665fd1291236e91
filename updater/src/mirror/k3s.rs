//! k3s and RKE2 `registries.yaml` (/etc/rancher/k3s/ or
//! /etc/rancher/rke2/): a `mirrors` entry per source registry whose
//! endpoint is the site, with a `rewrite` (k3s 1.21+) that puts the site's
//! namespace before each repository (`^(.*)$` → `<prefix>/docker.io/$1`);
//! k3s writes containerd's hosts.toml from it. An https site with its own
//! CA gets `configs.<site>.tls.ca_file`, the node path where the CA
//! written next to it is copied (`/etc/rancher/k3s/stoa-site-ca.crt`).

use super::{q, File, Target};

/// Where the CA is expected on a k3s node.
pub const NODE_CA: &str = "/etc/rancher/k3s/stoa-site-ca.crt";

/// `registries.yaml` (and `stoa-site-ca.crt`).
pub fn render(t: &Target) -> Vec<File> {
    let mut text = String::from(
        "# stoa-updater mirror-config: pulls of these registries go to the STOA site\nmirrors:\n",
    );
    let endpoint = format!("{}://{}", t.scheme, t.host);
    for source in &t.sources {
        text.push_str(&format!(
            "  {}:\n    endpoint:\n      - {}\n    rewrite:\n      \"^(.*)$\": {}\n",
            q(source),
            q(&endpoint),
            q(&format!("{}/$1", t.namespace(source))),
        ));
    }
    let mut files = Vec::new();
    if let Some(ca) = &t.ca {
        text.push_str(&format!(
            "configs:\n  {}:\n    tls:\n      ca_file: {}\n",
            q(&t.host),
            q(NODE_CA)
        ));
        files.push(File {
            path: "stoa-site-ca.crt".into(),
            bytes: ca.clone(),
        });
    }
    files.insert(0, File::text("registries.yaml", text));
    files
}

#[cfg(test)]
mod tests {
    use super::super::tests::{target, text};
    use super::*;

    #[test]
    fn each_source_is_rewritten_under_its_namespace() {
        let files = render(&target("http", "stoa", false));
        assert_eq!(files.len(), 1);
        let t = text(&files, "registries.yaml");
        assert!(
            t.contains("  \"docker.io\":\n    endpoint:\n      - \"http://site.example:5000\"\n    rewrite:\n      \"^(.*)$\": \"stoa/docker.io/$1\"\n"),
            "{t}"
        );
        assert!(t.contains("  \"localhost:5001\":\n"), "{t}");
        assert!(t.contains("\"stoa/localhost:5001/$1\""), "{t}");
        assert!(!t.contains("configs:"), "{t}");
    }

    #[test]
    fn an_https_site_ca_is_named_by_its_node_path() {
        let files = render(&target("https", "", true));
        let t = text(&files, "registries.yaml");
        assert!(t.contains("\"^(.*)$\": \"docker.io/$1\""), "{t}");
        assert!(
            t.ends_with("configs:\n  \"site.example:5000\":\n    tls:\n      ca_file: \"/etc/rancher/k3s/stoa-site-ca.crt\"\n"),
            "{t}"
        );
        assert!(text(&files, "stoa-site-ca.crt").starts_with("-----BEGIN"));
    }
}
