//! TLS with rustls (the *ring* provider): server configs built from the command line
//! (certificate files, SNI pairs, a self-signed certificate), the per-listener table that says
//! which accepted connections speak TLS, and client configs for `connect`, `bench` and the
//! relay's `--to-tls`. The record layer itself is a Surface in the drive layer (drive/tls.rs),
//! driven by the same pump as a plain socket under every model.
//!
//! Only TLS 1.3 and 1.2 are offered, with rustls's default cipher suites (AEAD only, forward
//! secrecy only).

pub mod certs;
pub mod client;
pub mod reload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;

use crate::net::{Listener, Stream};
use certs::{Pair, Resolver, Source, Store};

/// The crypto provider every config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol versions plumb speaks.
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// What the command line asked for on the server side.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `NAME=CERT,KEY` pairs (already split).
    pub sni: Vec<(String, PathBuf, PathBuf)>,
    /// Names (besides localhost, 127.0.0.1 and ::1) for `--tls-self-signed`.
    pub self_signed: Option<Vec<String>>,
    /// ALPN protocols offered (`http/1.1` for serve, none for the byte services).
    pub alpn: Vec<Vec<u8>>,
    pub handshake_timeout: Duration,
    /// Hand the keys to the kernel after the handshake (`--ktls`).
    pub ktls: bool,
}

/// Splits one `--tls-sni NAME=CERT,KEY`.
///
/// # Errors
/// A one-line usage message.
pub fn parse_sni(s: &str) -> Result<(String, PathBuf, PathBuf), String> {
    let bad =
        || format!("--tls-sni {s}: expected NAME=CERT,KEY (e.g. example.com=cert.pem,key.pem)");
    let (name, files) = s.split_once('=').ok_or_else(bad)?;
    let (cert, key) = files.split_once(',').ok_or_else(bad)?;
    if name.is_empty() || cert.is_empty() || key.is_empty() || name.contains(',') {
        return Err(bad());
    }
    Ok((name.to_string(), cert.into(), key.into()))
}

/// A server's TLS: its config (through which every handshake asks the reloadable store) and
/// the per-connection settings.
#[derive(Debug)]
pub struct Acceptor {
    pub config: Arc<ServerConfig>,
    pub store: Arc<Store>,
    pub handshake_timeout: Duration,
    pub ktls: bool,
    /// Answer a plain-HTTP request on this port with a plain-text 400 (serve).
    pub http: bool,
}

impl Acceptor {
    /// Loads the certificates and builds the config.
    ///
    /// # Errors
    /// A one-line description of the first thing that cannot be used.
    pub fn new(opts: &ServerOptions) -> Result<Acceptor, String> {
        let provider = provider();
        let mut pairs = Vec::new();
        match (&opts.cert, &opts.key) {
            (Some(c), Some(k)) => pairs.push(Pair {
                names: vec![],
                source: Source::Files {
                    cert: c.clone(),
                    key: k.clone(),
                },
            }),
            (Some(_), None) => return Err("--tls-cert needs --tls-key".into()),
            (None, Some(_)) => return Err("--tls-key needs --tls-cert".into()),
            (None, None) => {}
        }
        if let Some(names) = &opts.self_signed {
            if !pairs.is_empty() {
                return Err("--tls-self-signed and --tls-cert exclude each other".into());
            }
            let ck = self_signed(&provider, names)?;
            pairs.push(Pair {
                names: vec![],
                source: Source::Fixed(ck),
            });
        }
        for (name, cert, key) in &opts.sni {
            pairs.push(Pair {
                names: vec![name.clone()],
                source: Source::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                },
            });
        }
        if pairs.is_empty() {
            return Err(
                "a TLS listener needs a certificate: --tls-cert FILE --tls-key FILE, \
                 --tls-sni NAME=CERT,KEY or --tls-self-signed"
                    .into(),
            );
        }
        let store = Arc::new(Store::load(pairs, Arc::clone(&provider))?);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(&store))));
        config.alpn_protocols = opts.alpn.clone();
        // kTLS takes the keys at the end of the handshake; rustls only lets them go when
        // asked for beforehand.
        config.enable_secret_extraction = opts.ktls;
        let http = opts.alpn.iter().any(|p| p == b"http/1.1");
        Ok(Acceptor {
            config: Arc::new(config),
            store,
            handshake_timeout: opts.handshake_timeout,
            ktls: opts.ktls,
            http,
        })
    }

    /// A server connection for a new client (and a look at whether the files changed).
    ///
    /// # Errors
    /// rustls refuses (not expected with a valid config).
    pub fn connection(&self) -> Result<rustls::ServerConnection, rustls::Error> {
        self.store.maybe_reload();
        rustls::ServerConnection::new(Arc::clone(&self.config))
    }
}

/// A fresh self-signed certificate (ECDSA P-256) for localhost, 127.0.0.1, ::1 and `names`.
fn self_signed(provider: &CryptoProvider, names: &[String]) -> Result<Arc<CertifiedKey>, String> {
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for n in names {
        if !n.is_empty() && !sans.contains(n) {
            sans.push(n.clone());
        }
    }
    let ck = rcgen::generate_simple_self_signed(sans.clone())
        .map_err(|e| format!("--tls-self-signed: {e}"))?;
    let der = ck.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("--tls-self-signed: {e}"))?;
    eprintln!(
        "plumb: self-signed certificate for {}; SHA-256 fingerprint {}",
        sans.join(", "),
        certs::fingerprint(&der)
    );
    Ok(Arc::new(CertifiedKey::new(vec![der], signing)))
}

use rustls::sign::CertifiedKey;

/// Which listeners speak TLS, by their index in the server's listener list.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    by_index: Vec<Option<Arc<Acceptor>>>,
    /// The listeners' own addresses, to find which one accepted a connection when the
    /// accept loop does not say (the blocking models).
    local: Vec<Local>,
}

#[derive(Debug, Clone)]
enum Local {
    Tcp(SocketAddr),
    Unix(Option<PathBuf>),
}

impl Listeners {
    /// A table for `listeners`; `tls[i]` says whether listener `i` speaks TLS.
    pub fn new(listeners: &[Listener], tls: &[bool], acceptor: Option<Arc<Acceptor>>) -> Listeners {
        let by_index = tls
            .iter()
            .map(|&t| if t { acceptor.clone() } else { None })
            .collect();
        let local = listeners
            .iter()
            .map(|l| match l.socket_addr() {
                Some(a) => Local::Tcp(a),
                None => Local::Unix(l.unix_path().map(Into::into)),
            })
            .collect();
        Listeners { by_index, local }
    }

    /// How many listeners the table has.
    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    /// Whether the table is empty (a server under test without listeners).
    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    /// Whether any listener speaks TLS.
    pub fn any(&self) -> bool {
        self.by_index.iter().any(Option::is_some)
    }

    /// The TLS of listener `i`, if it speaks TLS.
    pub fn for_index(&self, i: usize) -> Option<&Arc<Acceptor>> {
        self.by_index.get(i)?.as_ref()
    }

    /// The TLS of the listener that accepted `s`: without a look at the socket when every
    /// listener is the same, else by its local address (one `getsockname`).
    pub fn for_stream(&self, s: &Stream) -> Option<&Arc<Acceptor>> {
        let first = self.by_index.first()?;
        if self.by_index.iter().all(|a| a.is_some() == first.is_some()) {
            return first.as_ref();
        }
        let i = match s {
            Stream::Tcp(t) => {
                let own = t.local_addr().ok()?;
                // An exact match first, then a wildcard listener on the same port.
                self.local
                    .iter()
                    .position(|l| matches!(l, Local::Tcp(a) if *a == own))
                    .or_else(|| {
                        self.local.iter().position(|l| {
                            matches!(l, Local::Tcp(a) if a.port() == own.port()
                                && a.ip().is_unspecified()
                                && a.is_ipv4() == own.is_ipv4())
                        })
                    })
                    .or_else(|| {
                        // A [::] listener also takes IPv4 (mapped) connections.
                        self.local.iter().position(|l| {
                            matches!(l, Local::Tcp(a) if a.port() == own.port()
                                && a.ip().is_unspecified())
                        })
                    })?
            }
            Stream::Unix(u) => {
                let own = u.local_addr().ok()?;
                let own = own.as_pathname()?;
                self.local
                    .iter()
                    .position(|l| matches!(l, Local::Unix(Some(p)) if p == own))?
            }
        };
        self.for_index(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_pairs_parse_or_say_what_is_expected() {
        let (n, c, k) = parse_sni("a.example=c.pem,k.pem").unwrap();
        assert_eq!(
            (n.as_str(), c.to_str(), k.to_str()),
            ("a.example", Some("c.pem"), Some("k.pem"))
        );
        for bad in ["a.example", "a.example=c.pem", "=c,k", "a=,k", "a=c,"] {
            assert!(
                parse_sni(bad).unwrap_err().contains("NAME=CERT,KEY"),
                "{bad}"
            );
        }
    }

    #[test]
    fn fingerprint_is_colon_separated_sha256() {
        let f = certs::fingerprint(b"abc");
        assert!(f.starts_with("BA:78:16:BF"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }
}
