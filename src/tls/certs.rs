//! Certificates and keys: loading PEM files (the whole chain, RSA / ECDSA / Ed25519 keys),
//! the SNI resolver the server config asks at every handshake, and reload (SIGHUP, or a
//! change of a file's modification time, looked at most once a second).
//!
//! The resolver holds the current set behind an [`ArcSwap`]: a handshake takes a reference
//! without a lock (a forked child can never inherit a lock held by a reload), and a reload
//! swaps the whole set at once, so open connections keep the certificate they were given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often the files' modification times are looked at.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Where a certificate and its key come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// PEM files (reloadable).
    Files { cert: PathBuf, key: PathBuf },
    /// Made at start-up (`--tls-self-signed`); never reloaded.
    Fixed(Arc<CertifiedKey>),
}

/// One certificate of the server: for the SNI names it is chosen for (none: the default).
#[derive(Debug, Clone)]
pub struct Pair {
    pub names: Vec<String>,
    pub source: Source,
}

/// What a loaded set looks like: the default certificate and the ones chosen by name.
#[derive(Debug)]
struct Set {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// The modification times (and sizes) a set was loaded from.
type Stamps = Vec<Option<(SystemTime, u64)>>;

/// The server's certificates, reloadable.
#[derive(Debug)]
pub struct Store {
    pairs: Vec<Pair>,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Set>,
    stamps: Mutex<Stamps>,
    last_check: Mutex<Instant>,
    /// Set by SIGHUP: reload at the next look even if no file changed.
    forced: Arc<AtomicBool>,
}

/// Reads a PEM certificate chain: every certificate in the file, leaf first.
///
/// # Errors
/// A one-line description: unreadable file, no certificate in it, bad PEM.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, &e))?;
    let chain = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, &e))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(chain)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
///
/// # Errors
/// A one-line description.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, &e))
}

fn pem_error(path: &Path, e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::Io(io) => format!("{}: {}", path.display(), crate::net::words(io)),
        E::NoItemsFound => format!("{}: no PEM item of the expected kind in it", path.display()),
        other => format!("{}: bad PEM: {other:?}", path.display()),
    }
}

/// Loads a certificate chain and its key, and checks that they belong together.
///
/// # Errors
/// A one-line description naming the file.
pub fn load_pair(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, String> {
    let chain = load_chain(cert)?;
    let der = load_key(key)?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("{}: unusable key: {e}", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| {
        format!(
            "{} and {} do not belong together: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Arc::new(ck))
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Store {
    /// Loads every pair; the first without names is the default (else the first pair).
    ///
    /// # Errors
    /// The first file that cannot be used, in one line.
    pub fn load(pairs: Vec<Pair>, provider: Arc<CryptoProvider>) -> Result<Store, String> {
        if pairs.is_empty() {
            return Err("no certificate given".into());
        }
        let stamps = Self::stamps_of(&pairs);
        let set = Self::build(&pairs, &provider)?;
        Ok(Store {
            pairs,
            provider,
            current: ArcSwap::from_pointee(set),
            stamps: Mutex::new(stamps),
            last_check: Mutex::new(Instant::now()),
            forced: Arc::new(AtomicBool::new(false)),
        })
    }

    fn stamps_of(pairs: &[Pair]) -> Stamps {
        pairs
            .iter()
            .flat_map(|p| match &p.source {
                Source::Files { cert, key } => vec![stamp(cert), stamp(key)],
                Source::Fixed(_) => vec![],
            })
            .collect()
    }

    fn build(pairs: &[Pair], provider: &CryptoProvider) -> Result<Set, String> {
        let mut default = None;
        let mut by_name = HashMap::new();
        for p in pairs {
            let ck = match &p.source {
                Source::Files { cert, key } => load_pair(provider, cert, key)?,
                Source::Fixed(ck) => Arc::clone(ck),
            };
            if p.names.is_empty() {
                default.get_or_insert_with(|| Arc::clone(&ck));
            }
            for n in &p.names {
                by_name
                    .entry(n.to_ascii_lowercase())
                    .or_insert_with(|| Arc::clone(&ck));
            }
        }
        let default = match default {
            Some(d) => d,
            None => match pairs.first().map(|p| &p.source) {
                Some(Source::Fixed(ck)) => Arc::clone(ck),
                Some(Source::Files { cert, key }) => load_pair(provider, cert, key)?,
                None => return Err("no certificate given".into()),
            },
        };
        Ok(Set { default, by_name })
    }

    /// The flag SIGHUP sets.
    pub fn force_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.forced)
    }

    /// Reloads if SIGHUP asked or a file changed since the last load, at most once per
    /// [`RELOAD_CHECK`] (unless forced). A file that cannot be used is one log line and the
    /// certificates in use stay. True when a new set was installed.
    pub fn maybe_reload(&self) -> bool {
        let forced = self.forced.load(Ordering::Relaxed);
        {
            let mut last = lock(&self.last_check);
            if !forced && last.elapsed() < RELOAD_CHECK {
                return false;
            }
            *last = Instant::now();
        }
        self.forced.store(false, Ordering::Relaxed);
        let now_stamps = Self::stamps_of(&self.pairs);
        let mut stamps = lock(&self.stamps);
        if !forced && *stamps == now_stamps {
            return false;
        }
        match Self::build(&self.pairs, &self.provider) {
            Ok(set) => {
                self.current.store(Arc::new(set));
                *stamps = now_stamps;
                eprintln!("plumb: TLS certificates reloaded");
                true
            }
            Err(e) => {
                // Remember the stamps so one bad file is one line, not one per second.
                *stamps = now_stamps;
                eprintln!("plumb: TLS reload failed, keeping the certificates in use: {e}");
                false
            }
        }
    }

    /// The default certificate (its leaf), for the start-up line.
    pub fn default_leaf(&self) -> Option<CertificateDer<'static>> {
        self.current.load().default.cert.first().cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server config's view of the store: the certificate for a ClientHello's name (exact,
/// then one `*.` wildcard level), or the default.
#[derive(Debug)]
pub struct Resolver(pub Arc<Store>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.0.current.load();
        if let Some(name) = hello.server_name() {
            let name = name.to_ascii_lowercase();
            if let Some(ck) = set.by_name.get(&name) {
                return Some(Arc::clone(ck));
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(ck) = set.by_name.get(&format!("*.{parent}"))
            {
                return Some(Arc::clone(ck));
            }
        }
        Some(Arc::clone(&set.default))
    }
}

/// The SHA-256 fingerprint of a DER certificate, as `AB:CD:...` (what browsers and
/// `openssl x509 -fingerprint -sha256` show).
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
