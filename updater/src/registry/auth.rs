//! Registry auth: the answer to a `WWW-Authenticate` challenge, Basic or
//! the bearer-token flow (the token realm gets credentials only over https
//! or on loopback, never with userinfo).

use std::collections::BTreeMap;

use super::{check_credential_url, Client};

impl Client {
    pub(super) fn negotiate(
        &self,
        challenge: &str,
        scope: &str,
    ) -> std::result::Result<String, String> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => self.basic(),
            "bearer" => {
                let p = parse_params(params);
                let realm = p.get("realm").ok_or("bearer challenge without realm")?;
                // the credentials go to the realm: never in clear text off the host
                let realm = check_credential_url(realm)
                    .map_err(|e| format!("token realm {e}; refusing to send credentials"))?;
                let mut req = self.agent.get(realm.as_str());
                if let Some(s) = p.get("service") {
                    req = req.query("service", s);
                }
                if !scope.is_empty() {
                    req = req.query("scope", scope);
                } else if let Some(s) = p.get("scope") {
                    req = req.query("scope", s);
                }
                if self.creds.is_some() {
                    req = req.set("Authorization", &self.basic()?);
                }
                let resp = req.call().map_err(|e| format!("token request: {e}"))?;
                let body = resp
                    .into_string()
                    .map_err(|e| format!("token response: {e}"))?;
                let v: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| format!("token response: {e}"))?;
                let tok = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or("token response has no token")?;
                Ok(format!("Bearer {tok}"))
            }
            _ => Err(format!("unsupported auth challenge {challenge:?}")),
        }
    }
}

pub(super) fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, after) = if let Some(stripped) = v.strip_prefix('"') {
            match stripped.find('"') {
                Some(i) => (&stripped[..i], &stripped[i + 1..]),
                None => (stripped, ""),
            }
        } else {
            match v.find(',') {
                Some(i) => (&v[..i], &v[i..]),
                None => (v, ""),
            }
        };
        out.insert(k, val.to_owned());
        rest = after.trim_start_matches(',').trim();
    }
    out
}
