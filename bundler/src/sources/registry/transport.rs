//! Why a request failed and whether it is tried again: reqwest and OCI
//! client errors classified into the format's typed [`TransportError`]
//! (TLS failures with what usually helps), the one [`RETRY`] policy applied
//! to a request, and a failure turned into the error the build reports.

use std::future::Future;
use std::sync::atomic::Ordering;

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use stoa_format::retry::TransportError;

use super::{Counters, Puller, RETRY};
use crate::error::BundlerError;

/// Why a request failed (typed: whether it is retried is the policy's call).
pub(super) type Failure = TransportError;

pub(super) fn fatal(m: impl Into<String>) -> Failure {
    TransportError::Other(m.into())
}

/// reqwest's error with its source chain (the useful part: connection
/// refused, TLS…).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut m = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        m.push_str(": ");
        m.push_str(&s.to_string());
        src = s.source();
    }
    m
}

/// A reqwest failure, classified.
pub(crate) fn classify_reqwest(r: &reqwest::Error) -> TransportError {
    let message = error_chain(r);
    if let Some(tls) = tls_failure(&message) {
        return tls;
    }
    if r.is_timeout() {
        TransportError::Timeout(message)
    } else if r.is_connect() {
        TransportError::Connect(message)
    } else if r.is_request() || r.is_body() || r.is_decode() {
        TransportError::Body(message)
    } else {
        TransportError::Other(message)
    }
}

/// TLS failures do not go away by trying again; say what usually helps.
/// (reqwest does not type them: its error chain is read once, here.)
fn tls_failure(message: &str) -> Option<TransportError> {
    let lower = message.to_ascii_lowercase();
    if lower.contains("invalidcontenttype") {
        return Some(TransportError::Tls(format!(
            "{message} (the server does not speak TLS: for a plain-HTTP registry use --insecure-registry <host:port>)"
        )));
    }
    if lower.contains("certificate")
        || lower.contains("unknownissuer")
        || lower.contains("handshake")
    {
        return Some(TransportError::Tls(format!(
            "{message} (for a registry with a private CA use --ca-cert <pem>)"
        )));
    }
    None
}

pub(super) fn classify(e: OciDistributionError) -> Failure {
    use OciDistributionError as E;
    match &e {
        E::RequestError(r) => classify_reqwest(r),
        E::IoError(_) => TransportError::Body(e.to_string()),
        E::ServerError { code, .. } => TransportError::status(*code, None, e.to_string()),
        E::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|x| x.code == OciErrorCode::Toomanyrequests) =>
        {
            TransportError::status(429, None, e.to_string())
        }
        _ => {
            let message = e.to_string();
            tls_failure(&message).unwrap_or(TransportError::Other(message))
        }
    }
}

/// "… (after N attempts)" on a failure that was retried.
pub(super) fn after(e: Failure, attempt: u32) -> Failure {
    if e.is_retryable() {
        e.map_message(|m| format!("{m} (after {attempt} attempts)"))
    } else {
        e
    }
}

pub(super) async fn with_retries<T, F, Fut>(
    counters: &Counters,
    mut f: F,
) -> std::result::Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, Failure>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => match RETRY.delay(attempt, &e) {
                Some(delay) => {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => return Err(after(e, attempt)),
            },
        }
    }
}

impl Puller {
    /// Logs in for a pull of `reference` when there are credentials
    /// (an anonymous pull needs none), under the one retry policy.
    pub(super) async fn login_for_pull(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> std::result::Result<(), Failure> {
        if !matches!(auth, RegistryAuth::Anonymous) {
            with_retries(&self.counters, || async {
                self.client
                    .auth(reference, auth, RegistryOperation::Pull)
                    .await
                    .map_err(classify)
            })
            .await?;
        }
        Ok(())
    }

    pub(super) fn pull_error(
        &self,
        image: &str,
        reference: &Reference,
        f: Failure,
    ) -> BundlerError {
        let mut message = f.message().to_owned();
        if message.contains("Not authorized") || message.contains("Authentication failure") {
            message.push_str(&self.auth_hint(reference));
        }
        let lower = message.to_ascii_lowercase();
        if [
            "manifest unknown",
            "name unknown",
            "not known to registry",
            "manifest_unknown",
            "name_unknown",
        ]
        .iter()
        .any(|p| lower.contains(p))
        {
            message = format!("not found in the registry: {message}");
        }
        BundlerError::RegistryPull {
            image: image.to_owned(),
            reference: reference.whole(),
            message,
        }
    }
}
