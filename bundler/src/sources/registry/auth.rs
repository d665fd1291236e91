//! Registry credentials, found the way container tools find them: the
//! `auths` of `$REGISTRY_AUTH_FILE`, then `$XDG_RUNTIME_DIR/containers/auth.json`,
//! then `$DOCKER_CONFIG/config.json`, then `~/.docker/config.json`; the first
//! file with an entry for the registry wins. Entries hold `auth`
//! (base64 `user:password`) or `username` + `password`, or an
//! `identitytoken` (used as a bearer token; OAuth refresh-token exchange is
//! not done). Credential helpers (`credsStore`, `credHelpers`) are not run.
//!
//! Credentials never leave this module except into the HTTP client: they are
//! not printed, logged, or written anywhere (`Debug` hides them). The
//! [`Puller`] looks each registry's credential up here once per build, and
//! asks the registry for its token realm before any credential is sent.

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;

use super::Puller;
use crate::error::BundlerError;

/// A credential for one registry.
#[derive(Clone)]
pub struct Credential {
    /// The file it came from, to name in errors.
    pub file: PathBuf,
    pub auth: RegistryAuth,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("file", &self.file)
            .field("auth", &"<hidden>")
            .finish()
    }
}

/// The URL rule for a token realm credentials may be sent to (the same as
/// the updater's): parsed with a real URL parser, no user name or password
/// in it (`http://localhost:1@evil:80/token` is a URL for host `evil`), and
/// https, or plain http only to a loopback address.
pub fn check_realm(realm: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(realm)
        .map_err(|e| format!("token realm {realm:?} is not a URL: {e}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "token realm {realm:?} has a user name or password in it; refusing to send credentials"
        ));
    }
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match u.scheme() {
        "https" if u.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "token realm {realm:?} is not https (plain http only to loopback); refusing to send credentials"
        )),
    }
}

/// The `realm` of a `Bearer` challenge, if the header is one.
pub fn bearer_realm(challenge: &str) -> Option<String> {
    let (scheme, params) = challenge.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut rest = params;
    while let Some(i) = rest.find('=') {
        let key = rest[..i].trim().trim_start_matches(',').trim();
        let after = rest[i + 1..].trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if key.eq_ignore_ascii_case("realm") {
            return Some(val.to_owned());
        }
        rest = next;
    }
    None
}

/// The auth files to look in, in order.
pub fn auth_files() -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let mut v = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        v.push(PathBuf::from(f));
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        v.push(PathBuf::from(d).join("containers/auth.json"));
    }
    if let Some(d) = env("DOCKER_CONFIG") {
        v.push(PathBuf::from(d).join("config.json"));
    }
    if let Some(h) = env("HOME") {
        v.push(PathBuf::from(h).join(".docker/config.json"));
    }
    v
}

/// The keys an `auths` entry for `registry` may have.
fn keys_for(registry: &str) -> Vec<String> {
    let mut v = vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ];
    if registry == "docker.io"
        || registry == "index.docker.io"
        || registry == "registry-1.docker.io"
    {
        v.push("https://index.docker.io/v1/".into());
        v.push("docker.io".into());
    }
    v
}

/// Parses one `auths` entry. `Err` is a message naming what is wrong,
/// never the secret.
fn parse_entry(e: &serde_json::Value) -> Result<Option<RegistryAuth>, String> {
    if let Some(a) = e
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|_| "its \"auth\" is not base64".to_owned())?;
        let s = String::from_utf8(raw).map_err(|_| "its \"auth\" is not UTF-8".to_owned())?;
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| "its \"auth\" is not user:password".to_owned())?;
        return Ok(Some(RegistryAuth::Basic(u.to_owned(), p.to_owned())));
    }
    let user = e.get("username").and_then(|u| u.as_str());
    let pass = e.get("password").and_then(|u| u.as_str());
    if let (Some(u), Some(p)) = (user, pass) {
        return Ok(Some(RegistryAuth::Basic(u.to_owned(), p.to_owned())));
    }
    if let Some(t) = e
        .get("identitytoken")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(RegistryAuth::Bearer(t.to_owned())));
    }
    Ok(None)
}

/// The credential for `registry` (`host[:port]`), or `None` for anonymous.
/// A file that exists but cannot be read or parsed is an error.
pub fn lookup(registry: &str) -> Result<Option<Credential>, (PathBuf, String)> {
    for file in auth_files() {
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err((file, e.to_string())),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| (file.clone(), format!("not JSON: {e}")))?;
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            continue;
        };
        for k in keys_for(registry) {
            if let Some(e) = auths.get(&k) {
                match parse_entry(e) {
                    Ok(Some(auth)) => {
                        return Ok(Some(Credential {
                            file: file.clone(),
                            auth,
                        }))
                    }
                    Ok(None) => {}
                    Err(m) => return Err((file, format!("auths[{k:?}]: {m}"))),
                }
            }
        }
    }
    Ok(None)
}

/// Per build: the credential of each registry pulled from, remembered
/// (for the hints of "not authorized" errors), after its token realm passed
/// the URL rule.
impl Puller {
    /// The credential for the reference's registry, remembered per build.
    pub(super) fn auth_for(&mut self, reference: &Reference) -> crate::error::Result<RegistryAuth> {
        let reg = reference.resolve_registry().to_owned();
        match lookup(&reg) {
            Ok(Some(c)) => {
                self.check_token_realm(&reg)?;
                self.creds.insert(reg, Some(c.file.clone()));
                Ok(c.auth)
            }
            Ok(None) => {
                self.creds.insert(reg, None);
                Ok(RegistryAuth::Anonymous)
            }
            Err((file, message)) => Err(BundlerError::AuthFile {
                path: file,
                message,
            }),
        }
    }

    /// Before credentials go anywhere: asks the registry for its challenge
    /// and refuses a bearer token realm that breaks the URL rule
    /// ([`check_realm`]: userinfo, or clear text off loopback). The
    /// HTTP client would send the credentials to the host after an `@`.
    fn check_token_realm(&self, reg: &str) -> crate::error::Result<()> {
        let scheme = if self.is_insecure(reg) {
            "http"
        } else {
            "https"
        };
        let url = format!("{scheme}://{reg}/v2/");
        let http = self.http().map_err(|message| BundlerError::RegistryPull {
            image: reg.to_owned(),
            reference: url.clone(),
            message,
        })?;
        let challenge = self.rt.block_on(async {
            let r = http.get(&url).send().await.ok()?;
            if r.status() != reqwest::StatusCode::UNAUTHORIZED {
                return None;
            }
            r.headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        // unreachable or no challenge: the pull itself reports what happens
        let Some(realm) = challenge.as_deref().and_then(bearer_realm) else {
            return Ok(());
        };
        check_realm(&realm).map_err(|message| BundlerError::RegistryPull {
            image: reg.to_owned(),
            reference: url.clone(),
            message,
        })
    }

    /// A hint added to "not authorized" errors.
    pub(super) fn auth_hint(&self, reference: &Reference) -> String {
        match self.creds.get(reference.resolve_registry()) {
            Some(Some(f)) => format!(" (credentials from {} were refused)", f.display()),
            _ => format!(
                " (no credentials for {} in $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json or ~/.docker/config.json)",
                reference.resolve_registry()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_with_userinfo_or_clear_text_is_refused() {
        assert!(check_realm("https://auth.example/token").is_ok());
        assert!(check_realm("http://127.0.0.1:5000/token").is_ok());
        for bad in [
            "http://localhost:1@evil:80/token",
            "https://u:p@auth.example/token",
            "http://auth.example/token",
            "http://127.0.0.1.evil/token",
            "file:///etc/passwd",
        ] {
            assert!(check_realm(bad).is_err(), "{bad}");
        }
        assert_eq!(
            bearer_realm(r#"Bearer realm="http://localhost:1@evil:80/token",service="r""#)
                .as_deref(),
            Some("http://localhost:1@evil:80/token")
        );
        assert_eq!(bearer_realm("Basic realm=\"x\""), None);
    }

    #[test]
    fn entries() {
        let e = serde_json::json!({"auth": "dTpw"});
        assert!(matches!(
            parse_entry(&e),
            Ok(Some(RegistryAuth::Basic(u, p))) if u == "u" && p == "p"
        ));
        let e = serde_json::json!({"username": "a", "password": "b"});
        assert!(matches!(parse_entry(&e), Ok(Some(RegistryAuth::Basic(..)))));
        let e = serde_json::json!({"auth": "!!"});
        let m = parse_entry(&e).err().unwrap_or_default();
        assert!(m.contains("base64") && !m.contains("!!"));
        assert!(matches!(parse_entry(&serde_json::json!({})), Ok(None)));
    }
}
