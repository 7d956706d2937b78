//! Client-side TLS: the config `plumb connect --tls`, `plumb bench https://` and the relay's
//! `--to-tls` use. Certificates are verified against `--tls-ca FILE` (PEM, any number of CA
//! certificates) or else the system's roots; `--insecure` verifies nothing (for a
//! self-signed test server), and says so.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{VERSIONS, provider};

/// How a client checks the server's certificate.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// CA certificates to trust (instead of the system's).
    pub ca: Option<std::path::PathBuf>,
    /// Verify nothing.
    pub insecure: bool,
    /// ALPN protocols to offer.
    pub alpn: Vec<Vec<u8>>,
}

/// Builds a client config.
///
/// # Errors
/// One line: an unreadable CA file, a CA file without certificates, no system roots.
pub fn config(opts: &ClientOptions) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(VERSIONS)
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut config = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let roots = match &opts.ca {
            Some(path) => roots_from(path)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = opts.alpn.clone();
    Ok(Arc::new(config))
}

fn roots_from(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in super::certs::load_chain(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(
            "no system CA certificates found: give --tls-ca FILE (or --insecure to verify nothing)"
                .into(),
        );
    }
    Ok(roots)
}

/// The server name to verify and send as SNI: `--sni`, else the host of the address.
///
/// # Errors
/// A name that is neither a DNS name nor an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host}: not a valid TLS server name"))
}

/// A TLS error as one line for people: what is wrong with the certificate, in words.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::Expired) | E::InvalidCertificate(C::ExpiredContext { .. }) => {
            "the server's certificate has expired".into()
        }
        E::InvalidCertificate(C::NotValidYet) | E::InvalidCertificate(C::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet".into()
        }
        E::InvalidCertificate(C::NotValidForName)
        | E::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "the server's certificate is not for this name (give --sni NAME, or check the address)"
                .into()
        }
        // A CA of the same name that did not sign it: the same mistake for the user.
        E::InvalidCertificate(C::UnknownIssuer) | E::InvalidCertificate(C::BadSignature) => {
            "the server's certificate is not signed by a trusted CA (give --tls-ca FILE, or --insecure)"
                .into()
        }
        E::InvalidCertificate(other) => format!("the server's certificate is not acceptable: {other:?}"),
        other => format!("TLS: {other}"),
    }
}

/// `--insecure`: accepts any certificate, still checks the handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
