//! Pushing staged images to the site registry through the OCI distribution
//! API: blobs first, several at once (HEAD, skip when present;
//! cross-repository mount when another repository has it; otherwise an
//! upload streamed from the staged file, monolithic or in chunks), then
//! manifests byte-exact with their media type, checking the registry's
//! `Docker-Content-Digest`. Basic auth and the
//! bearer-token flow; TLS with the site's CA; plain http only for loopback.
//!
//! `mod.rs` holds the client (TLS, the one request path with its retry
//! policy and auth retry) and the site names; `auth.rs` the challenge
//! negotiation (Basic, the bearer-token flow); `push.rs` the push of a
//! release and the preflight push check; `early.rs` the blobs pushed while
//! the bundle is still being staged; `listing.rs` the catalog, tag
//! lists, manifest digests and deletes of `prune --registry`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use stoa_format::names::ImageRef;
use stoa_format::oci::{is_index, ImageIndex, ImageManifest};
use stoa_format::retry::{parse_retry_after, RetryPolicy, TransportError};
use stoa_format::{BundleManifest, Sha256Digest};
pub use stoa_podimages::Layout;

use crate::config::RegistryConfig;
use crate::error::{Result, UpdaterError};
use crate::state::StateDir;

const DEFAULT_CHUNK: u64 = 64 << 20;

type Sent = std::result::Result<ureq::Response, Box<ureq::Error>>;
/// Builds and sends one request, given the agent and the Authorization value.
type MakeRequest<'a> = dyn FnMut(&ureq::Agent, Option<&str>) -> Sent + 'a;

/// What a push did (the history's vocabulary, `crate::records`).
pub use crate::records::PushStats;

mod auth;
mod early;
mod listing;
mod push;

pub use early::{EarlyPush, Stored};

pub use listing::{check_repo, check_tag, Deleted};

/// Where an image goes on site.
#[derive(Debug, Clone, PartialEq, Eq)]

pub struct Target {
    pub repo: String,
    /// Tag, or None when the name carries only a digest.
    pub tag: Option<String>,
}

/// `registry.gostoa.dev/stoa/api:2.3.0` → repo `<prefix>/stoa/api` (prefix
/// layout) or `<prefix>/registry.gostoa.dev/stoa/api` (mirror layout), tag
/// `2.3.0`: the repository from [`stoa_podimages::site_repository`], the
/// one rule push, `serve`, the post-renderer and `mirror-config` share.
/// Built from the parsed reference's parts (repository path, tag), which
/// the format validated: no part can carry `..`, `?`, `#` or `/` where it
/// does not belong. A name with only a digest gets no tag.
pub fn map_name(name: &ImageRef, prefix: &str, layout: Layout) -> Target {
    let repo = stoa_podimages::site_repository(name, prefix, layout);
    let tag = match (name.tag(), name.digest()) {
        (Some(t), _) => Some(t.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".into()),
    };
    Target { repo, tag }
}

/// The URL rule for where credentials go (lives with the config it checks).
pub use crate::config::check_credential_url;

/// `host[:port]/prefix`, what charts get as the image registry.
pub fn site_registry_ref(cfg: &RegistryConfig) -> String {
    let host = cfg
        .url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(&cfg.url)
        .trim_end_matches('/');
    if cfg.prefix.is_empty() {
        host.to_owned()
    } else {
        format!("{host}/{}", cfg.prefix)
    }
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// the registry's origin: the only one Authorization values go to
    origin: url::Origin,
    creds: Option<(String, String)>,
    /// scope → Authorization header value
    auth: HashMap<String, String>,
    chunk: u64,
    pub stats: PushStats,
    /// blob digest → a repo it is known to be in (for mounts)
    known: HashMap<String, String>,
}

/// Never shows the credentials or the Authorization values.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("user", &self.creds.as_ref().map(|(u, _)| u))
            .field("chunk", &self.chunk)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn err(image: &str, reason: impl Into<String>) -> UpdaterError {
    UpdaterError::Push {
        image: image.to_owned(),
        reason: reason.into(),
    }
}

fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let path = ca
        .map(Path::to_owned)
        .unwrap_or_else(|| Path::new("/etc/ssl/certs/ca-certificates.crt").to_owned());
    if let Ok(f) = File::open(&path) {
        let mut r = std::io::BufReader::new(f);
        for c in rustls_pemfile::certs(&mut r) {
            let c = c.map_err(|e| UpdaterError::io("read CA certificate", &path, e))?;
            let _ = roots.add(c);
        }
    } else if ca.is_some() {
        return Err(UpdaterError::Config {
            path,
            reason: "cannot read [registry] ca_cert".into(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("registry", format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

impl Client {
    pub fn new(cfg: &RegistryConfig) -> Result<Self> {
        let tls = tls_config(cfg.ca_cert.as_deref())?;
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::new(tls))
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(300))
            .timeout_write(Duration::from_secs(300))
            .redirects(0)
            .build();
        let creds = match (&cfg.username, &cfg.password_file) {
            (Some(u), Some(p)) => {
                let pass = std::fs::read_to_string(p).map_err(|e| UpdaterError::Config {
                    path: p.clone(),
                    reason: format!("read password_file: {e}"),
                })?;
                Some((u.clone(), pass.trim_end_matches(['\r', '\n']).to_owned()))
            }
            _ => None,
        };
        let parsed = check_credential_url(&cfg.url).map_err(|reason| UpdaterError::Config {
            path: "[registry] url".into(),
            reason,
        })?;
        Ok(Self {
            agent,
            origin: parsed.origin(),
            base: cfg.url.trim_end_matches('/').to_owned(),
            creds,
            auth: HashMap::new(),
            chunk: cfg.chunk_size.unwrap_or(DEFAULT_CHUNK).max(1),
            stats: PushStats::default(),
            known: HashMap::new(),
        })
    }

    /// A path on the registry, or an upload `Location` the registry sent:
    /// resolved against the registry's URL and refused when it points at
    /// another origin (the Authorization value would follow it).
    fn url(&self, path_or_url: &str) -> std::result::Result<String, String> {
        if path_or_url.starts_with('/') && !path_or_url.starts_with("//") {
            return Ok(format!("{}{path_or_url}", self.base));
        }
        let base = url::Url::parse(&format!("{}/", self.base)).map_err(|e| e.to_string())?;
        let u = base
            .join(path_or_url)
            .map_err(|e| format!("Location {path_or_url:?}: {e}"))?;
        if u.origin() != self.origin || !u.username().is_empty() || u.password().is_some() {
            return Err(format!(
                "Location {path_or_url:?} is not on the registry's origin; refusing to send credentials there"
            ));
        }
        Ok(u.to_string())
    }

    /// Sends a request built by `make`; on 401 negotiates auth from the
    /// challenge and sends once more (bodies are re-created by `make`).
    /// A server's 5xx or 429 is retried under the one [`RetryPolicy`]
    /// (Retry-After honoured, capped); a registry that cannot be reached
    /// fails at once, as before (apply resumes).
    fn call(
        &mut self,
        scope: &str,
        make: &mut MakeRequest<'_>,
    ) -> std::result::Result<ureq::Response, TransportError> {
        let mut attempt = 1;
        loop {
            match self.call_once(scope, make) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    let answered = matches!(
                        e,
                        TransportError::Status { .. } | TransportError::RateLimited { .. }
                    );
                    match RetryPolicy::DEFAULT.delay(attempt, &e).filter(|_| answered) {
                        Some(d) => {
                            std::thread::sleep(d);
                            attempt += 1;
                        }
                        None if attempt > 1 => {
                            return Err(e.map_message(|m| format!("{m} (after {attempt} attempts)")))
                        }
                        None => return Err(e),
                    }
                }
            }
        }
    }

    fn call_once(
        &mut self,
        scope: &str,
        make: &mut MakeRequest<'_>,
    ) -> std::result::Result<ureq::Response, TransportError> {
        for attempt in 0..2 {
            let auth = self.auth.get(scope).cloned();
            match make(&self.agent, auth.as_deref()).map_err(|e| *e) {
                Ok(r) => return Ok(r),
                Err(ureq::Error::Status(401, r)) if attempt == 0 => {
                    let challenge = r.header("www-authenticate").unwrap_or("").to_owned();
                    let h = self
                        .negotiate(&challenge, scope)
                        .map_err(TransportError::Other)?;
                    self.auth.insert(scope.to_owned(), h);
                }
                Err(ureq::Error::Status(code, r)) => {
                    let retry_after = r
                        .header("retry-after")
                        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                    let body = r.into_string().unwrap_or_default();
                    return Err(TransportError::status(
                        code,
                        retry_after,
                        format!("HTTP {code}: {}", body.trim()),
                    ));
                }
                Err(e) => return Err(classify_transport(e)),
            }
        }
        Err(TransportError::status(
            401,
            None,
            "authentication failed (HTTP 401)",
        ))
    }

    fn basic(&self) -> std::result::Result<String, String> {
        let (u, p) = self.creds.as_ref().ok_or(
            "the registry asks for credentials; set [registry] username and password_file",
        )?;
        Ok(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ))
    }
}

/// A ureq failure that is not a status answer, classified once here.
fn classify_transport(e: ureq::Error) -> TransportError {
    use std::error::Error as _;
    let message = e.to_string();
    let ureq::Error::Transport(t) = &e else {
        return TransportError::Other(message);
    };
    let mut src = t.source();
    while let Some(x) = src {
        if x.downcast_ref::<rustls::Error>().is_some() {
            return TransportError::Tls(message);
        }
        src = x.source();
    }
    match t.kind() {
        ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => {
            TransportError::Connect(message)
        }
        ureq::ErrorKind::Io => TransportError::Body(message),
        _ => TransportError::Other(message),
    }
}

#[cfg(test)]
mod tests {
    use super::auth::parse_params;
    use super::*;

    fn r(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    #[test]
    fn maps_names() {
        assert_eq!(
            map_name(
                &r("registry.gostoa.dev/stoa/api:2.3.0"),
                "stoa",
                Layout::Prefix
            ),
            Target {
                repo: "stoa/stoa/api".into(),
                tag: Some("2.3.0".into())
            }
        );
        let m = |n: &str, p: &str| map_name(&r(n), p, Layout::Prefix);
        assert_eq!(m("localhost:5000/x:1", "").repo, "x");
        assert_eq!(m("stoa/api", "p").tag.as_deref(), Some("latest"));
        let d = format!("stoa/api@sha256:{}", "a".repeat(64));
        assert_eq!(m(&d, "p").tag, None);
        let mirror = |n: &str, p: &str| map_name(&r(n), p, Layout::Mirror);
        assert_eq!(
            mirror("bitnami/pgpool:4.6.3", "site"),
            Target {
                repo: "site/docker.io/bitnami/pgpool".into(),
                tag: Some("4.6.3".into())
            }
        );
        assert_eq!(mirror("nginx", "").repo, "docker.io/library/nginx");
        assert_eq!(mirror("localhost:5000/x:1", "").repo, "localhost:5000/x");
        assert_eq!(mirror(&d, "p").tag, None);
    }

    /// The bearer-token flow against a minimal registry: 401 with a Bearer
    /// challenge, a token asked with Basic credentials and the scope, then
    /// the request again with the token.
    #[test]
    fn bearer_token_flow() {
        use std::io::{BufRead, BufReader, Write};
        use std::net::TcpListener;
        use std::sync::{Arc, Mutex};

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let log2 = log.clone();
        let server = std::thread::spawn(move || {
            for stream in listener.incoming().take(3) {
                let mut s = stream.unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                log2.lock().unwrap().push(head.clone());
                let lower = head.to_ascii_lowercase();
                let (code, extra, body) = if head.starts_with("GET /token") {
                    (200, String::new(), r#"{"token":"T0K"}"#.to_owned())
                } else if lower.contains("authorization: bearer t0k") {
                    (200, String::new(), String::new())
                } else {
                    (
                        401,
                        format!("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"reg\"\r\n"),
                        String::new(),
                    )
                };
                let len = if head.starts_with("HEAD") {
                    0
                } else {
                    body.len()
                };
                write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n{body}"
                )
                .unwrap();
            }
        });
        let dir = tempfile_dir();
        let pass = dir.join("pass");
        std::fs::write(&pass, "pw\n").unwrap();
        let cfg = RegistryConfig {
            url: format!("http://127.0.0.1:{port}"),
            prefix: "p".into(),
            layout: Layout::Prefix,
            mode: crate::config::RegistryMode::Push,
            ca_cert: None,
            username: Some("user".into()),
            password_file: Some(pass),
            chunk_size: None,
            parallel: 4,
        };
        let mut c = Client::new(&cfg).unwrap();
        let sd = StateDir::new(&dir);
        let d = Sha256Digest::of(b"blob");
        c.push_blob(&sd, "img", "p/x", &d, 4, &mut |_| {}).unwrap();
        server.join().unwrap();
        assert_eq!(c.stats.blobs_skipped, 1);
        let log = log.lock().unwrap();
        assert!(
            log[1].starts_with("GET /token?service=reg&scope=repository%3Ap%2Fx%3Apull%2Cpush")
                || log[1].starts_with("GET /token?service=reg&scope=repository:p/x:pull,push"),
            "{}",
            log[1]
        );
        assert!(
            log[1]
                .to_ascii_lowercase()
                .contains("authorization: basic dxnlcjpwdw=="),
            "{}",
            log[1]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("stoa-registry-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn token_realm_must_be_https_or_loopback() {
        let ok = |s: &str| check_credential_url(s).is_ok();
        assert!(ok("https://auth.site/token"));
        assert!(ok("http://127.0.0.1:5000/token"));
        assert!(ok("http://127.1.2.3/token"));
        assert!(ok("http://[::1]:5000/token"));
        assert!(ok("http://LOCALHOST:5000/token"));
        assert!(!ok("http://auth.site/token"));
        assert!(!ok("http://127.0.0.1.evil/token"));
        assert!(!ok("file:///etc/passwd"));
        assert!(!ok("ftp://127.0.0.1/x"));
    }

    /// The hostile review's realm: the hand-written host parser read
    /// `localhost`, the HTTP client connects to `evil`.
    #[test]
    fn token_realm_with_userinfo_is_refused() {
        for realm in [
            "http://localhost:1@evil:80/token",
            "http://localhost@evil/token",
            "https://user:pw@auth.site/token",
            "http://127.0.0.1:5000@evil.example/token",
        ] {
            let e = check_credential_url(realm).unwrap_err();
            assert!(
                e.contains("user name or password") || e.contains("not loopback"),
                "{realm}: {e}"
            );
        }
    }

    #[test]
    fn upload_location_on_another_origin_gets_no_credentials() {
        let cfg = RegistryConfig {
            url: "http://127.0.0.1:5000".into(),
            prefix: String::new(),
            layout: Layout::Prefix,
            mode: crate::config::RegistryMode::Push,
            ca_cert: None,
            username: None,
            password_file: None,
            chunk_size: None,
            parallel: 4,
        };
        let c = Client::new(&cfg).unwrap();
        assert_eq!(
            c.url("/v2/a/blobs/uploads/1").unwrap(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/1"
        );
        assert_eq!(
            c.url("http://127.0.0.1:5000/v2/a/blobs/uploads/2?state=x")
                .unwrap(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/2?state=x"
        );
        for evil in [
            "http://evil.example/upload",
            "https://127.0.0.1:5000/upload",
            "http://127.0.0.1:5001/upload",
            "//evil.example/upload",
            "http://u:p@127.0.0.1:5000/upload",
        ] {
            let e = c.url(evil).unwrap_err();
            assert!(e.contains("origin"), "{evil}: {e}");
        }
    }

    #[test]
    fn parses_challenges() {
        let p = parse_params(
            r#"realm="https://auth/token",service="registry",scope="repository:a:pull""#,
        );
        assert_eq!(p["realm"], "https://auth/token");
        assert_eq!(p["scope"], "repository:a:pull");
    }
}
