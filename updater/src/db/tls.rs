//! TLS for the wire client, as libpq's `sslmode` means it: `verify-full`
//! checks the chain against the root CA file and the host name;
//! `verify-ca` the chain only; `require`/`prefer`/`allow` encrypt without
//! checking, unless a root CA file is given (then as `verify-ca`, like
//! libpq). The root CA file is `sslrootcert` (`system`: the system bundle),
//! else `~/.postgresql/root.crt`; `verify-*` without a readable one is
//! refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};

use super::conninfo::{ConnInfo, SslMode};

const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The root CA file to use: explicit, or libpq's default when it exists.
fn root_file(ci: &ConnInfo) -> Option<PathBuf> {
    match &ci.sslrootcert {
        Some(p) if p == Path::new("system") => Some(PathBuf::from(SYSTEM_BUNDLE)),
        Some(p) => Some(p.clone()),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
            .filter(|p| p.exists()),
    }
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let f = std::fs::File::open(path)
        .map_err(|e| format!("read root CA file {}: {e}", path.display()))?;
    let mut store = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::io::BufReader::new(f)) {
        let c = c.map_err(|e| format!("read root CA file {}: {e}", path.display()))?;
        store
            .add(c)
            .map_err(|e| format!("root CA file {}: {e}", path.display()))?;
    }
    if store.is_empty() {
        return Err(format!(
            "root CA file {} holds no certificate",
            path.display()
        ));
    }
    Ok(store)
}

/// The client config for `ci` (whose `sslmode` is not `disable`).
pub fn client_config(ci: &ConnInfo) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let root = root_file(ci);
    let verifier: Arc<dyn ServerCertVerifier> = match (ci.sslmode, root) {
        (SslMode::VerifyFull | SslMode::VerifyCa, None) => {
            return Err(format!(
                "sslmode {:?} needs a root CA file (sslrootcert, or ~/.postgresql/root.crt)",
                ci.sslmode
            ))
        }
        (m, Some(path)) => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(&path)?), provider())
                    .build()
                    .map_err(|e| format!("TLS setup: {e}"))?;
            if m == SslMode::VerifyFull {
                inner
            } else {
                Arc::new(ChainOnly(inner))
            }
        }
        (_, None) => Arc::new(Unchecked(provider())),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The name the server's certificate is checked against.
pub fn server_name(ci: &ConnInfo) -> Result<ServerName<'static>, String> {
    ServerName::try_from(ci.host_name())
        .map_err(|e| format!("host {:?} is not a TLS server name: {e}", ci.host_name()))
}

/// `verify-ca`: the chain must lead to the root CA; any host name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require`/`prefer` without a root CA: encryption, no identity (libpq's
/// meaning of these modes); the handshake signatures are still checked.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
