//! p2p-transport-tls: TLS 1.3 over any p2p transport, with identities.
//!
//! [`TlsTransport`] wraps another [`Transport`] (TCP, or simnet's links)
//! with rustls, ring provider, TLS 1.3 only. Both sides present
//! certificates (mutual TLS); a peer is known by the SHA-256 fingerprint of
//! its certificate, as Syncthing's devices are.
//!
//! * [`Identity`]: a certificate and key, made by `p2p init` or by openssl.
//! * [`Trust`]: what a client accepts from a server: a pinned fingerprint
//!   per address, else one remembered on first use in [`KnownPeers`]
//!   (refused loudly if it changes later), or a certificate authority.
//! * Servers accept clients with or without a certificate; each connection
//!   reports the client's fingerprint, and the server's policy decides what
//!   that client may do.
//!
//! ```no_run
//! # smol::block_on(async {
//! use p2p_core::transport::{Listener, Transport};
//! use p2p_transport_tcp::TcpTransport;
//! use p2p_transport_tls::{Identity, TlsTransport, Trust};
//!
//! let server = TlsTransport::new(TcpTransport, Some(Identity::generate("peer1")?), Trust::new())?;
//! let listener = server.bind("127.0.0.1:0").await?;
//! let mut trust = Trust::new();
//! trust.pin(&listener.local_addr()?, server.fingerprint().expect("it has an identity"));
//! let client = TlsTransport::new(TcpTransport, None, trust)?;
//! let connection = client.connect(&listener.local_addr()?).await?;
//! # Ok::<(), Box<dyn std::error::Error>>(()) });
//! ```
#![warn(missing_docs)]

mod identity;
mod sniff;
mod trust;
mod verify;

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use futures_io::AsyncWrite;
use futures_lite::AsyncWriteExt;
use futures_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use p2p_core::protocol::{ErrorCode, MAGIC, Message, VERSION, codec};
use p2p_core::transport::{Connected, Fingerprint, Incoming, Listener, Transport};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;

pub use identity::{Identity, IdentityError, fingerprint, fingerprint_of_pem};
pub use sniff::Sniff;
pub use trust::{KnownPeers, Seen, Trust, TrustError};
use verify::{ClientVerifier, ServerVerifier};

/// The application protocol announced in the handshake.
const ALPN: &[u8] = b"p2p";

/// TLS 1.3 over the transport `T`. Cheap to clone.
#[derive(Clone)]
pub struct TlsTransport<T> {
    inner: T,
    identity: Option<Arc<Identity>>,
    trust: Arc<Trust>,
    provider: Arc<CryptoProvider>,
    server: Option<Arc<ServerConfig>>,
}

impl<T> std::fmt::Debug for TlsTransport<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let identity = self.identity.as_ref().map(|i| i.fingerprint());
        f.debug_struct("TlsTransport").field("identity", &identity).finish_non_exhaustive()
    }
}

/// Why a TLS transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// rustls refused the configuration (a key it cannot use...).
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The CA could not be used.
    #[error("cannot use the CA: {0}")]
    Ca(String),
}

impl<T: Transport> TlsTransport<T> {
    /// TLS over `inner`. With an identity, this side presents it and can
    /// listen; without one it can only connect, as an anonymous client.
    pub fn new(inner: T, identity: Option<Identity>, trust: Trust) -> Result<Self, SetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let identity = identity.map(Arc::new);
        let server = match &identity {
            Some(id) => {
                let ca = match &trust.roots {
                    Some(roots) => Some(
                        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                            .allow_unauthenticated()
                            .build()
                            .map_err(|e| SetupError::Ca(e.to_string()))?,
                    ),
                    None => None,
                };
                let verifier = ClientVerifier { provider: provider.clone(), ca };
                let mut config = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(&[&rustls::version::TLS13])?
                    .with_client_cert_verifier(Arc::new(verifier))
                    .with_single_cert(id.chain.clone(), id.key.clone_key())?;
                config.alpn_protocols = vec![ALPN.to_vec()];
                Some(Arc::new(config))
            }
            None => None,
        };
        Ok(Self { inner, identity, trust: Arc::new(trust), provider, server })
    }

    /// This side's fingerprint, if it has an identity.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.identity.as_ref().map(|i| i.fingerprint())
    }

    fn client_config(&self, verifier: ServerVerifier) -> Result<ClientConfig, rustls::Error> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match &self.identity {
            Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

impl<T: Transport> Transport for TlsTransport<T> {
    type Stream = TlsStream<Sniff<T::Stream>>;
    type Listener = TlsListener<T::Listener>;

    fn name(&self) -> &'static str {
        "tls"
    }

    async fn connect(&self, addr: &str) -> io::Result<Connected<Self::Stream>> {
        let refusal = Arc::new(Mutex::new(None));
        let to_remember = Arc::new(Mutex::new(None));
        let ca = match &self.trust.roots {
            Some(roots) => Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), self.provider.clone())
                    .build()
                    .map_err(io::Error::other)? as Arc<dyn rustls::client::danger::ServerCertVerifier>,
            ),
            None => None,
        };
        let verifier = ServerVerifier {
            addr: addr.to_owned(),
            trust: (*self.trust).clone(),
            provider: self.provider.clone(),
            ca,
            refusal: refusal.clone(),
            to_remember: to_remember.clone(),
        };
        let config = self.client_config(verifier).map_err(io::Error::other)?;
        let name = server_name(addr)?;
        let inner = self.inner.connect(addr).await?;
        let sniff = Sniff::new(inner.stream);
        let first = sniff.first_bytes();
        let tls = TlsConnector::from(Arc::new(config)).connect(name, sniff).await.map_err(|e| {
            if let Some(why) = refusal.lock().unwrap_or_else(PoisonError::into_inner).take() {
                return io::Error::new(io::ErrorKind::PermissionDenied, why);
            }
            explain(e, &first.get(), Side::Client)
        })?;
        let presented = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(fingerprint);
        if let (Some(fp), Some(known)) =
            (to_remember.lock().unwrap_or_else(PoisonError::into_inner).take(), &self.trust.known)
        {
            // Recorded only now that the peer proved it holds the key.
            let seen = known
                .remember(&format!("server {addr}"), fp)
                .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
            if seen == Seen::New {
                tracing::warn!(
                    "{addr}: trusting its certificate {fp} on first use (remembered in {}; a pin in the peer list \
                     is safer)",
                    known.path().display()
                );
            }
        }
        Ok(Connected { stream: TlsStream::Client(tls), peer: presented })
    }

    async fn bind(&self, addr: &str) -> io::Result<TlsListener<T::Listener>> {
        let Some(config) = &self.server else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TLS peer needs an identity to listen: run `p2p init` first",
            ));
        };
        let inner = self.inner.bind(addr).await?;
        Ok(TlsListener { inner, acceptor: TlsAcceptor::from(config.clone()) })
    }
}

/// A listening endpoint that speaks TLS.
pub struct TlsListener<L> {
    inner: L,
    acceptor: TlsAcceptor,
}

impl<L> std::fmt::Debug for TlsListener<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener").finish_non_exhaustive()
    }
}

/// An accepted connection whose TLS handshake is still to come.
pub struct TlsIncoming<I> {
    inner: I,
    acceptor: TlsAcceptor,
}

impl<I> std::fmt::Debug for TlsIncoming<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIncoming").finish_non_exhaustive()
    }
}

impl<L: Listener> Listener for TlsListener<L> {
    type Stream = TlsStream<Sniff<L::Stream>>;
    type Incoming = TlsIncoming<L::Incoming>;

    async fn accept(&self) -> io::Result<Self::Incoming> {
        let inner = self.inner.accept().await?;
        Ok(TlsIncoming { inner, acceptor: self.acceptor.clone() })
    }

    fn local_addr(&self) -> io::Result<String> {
        self.inner.local_addr()
    }
}

impl<I: Incoming> Incoming for TlsIncoming<I> {
    type Stream = TlsStream<Sniff<I::Stream>>;

    fn remote(&self) -> String {
        self.inner.remote()
    }

    async fn establish(self) -> io::Result<Connected<Self::Stream>> {
        let inner = self.inner.establish().await?;
        let mut sniff = Sniff::new(inner.stream);
        let first = sniff.first_bytes();
        if sniff.peek().await?.first() == Some(&MAGIC[0]) {
            return Err(refuse_plain(sniff.inner).await);
        }
        let tls = self.acceptor.accept(sniff).await.map_err(|e| explain(e, &first.get(), Side::Server))?;
        let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(fingerprint);
        Ok(Connected { stream: TlsStream::Server(tls), peer })
    }
}

/// Tells a plain-TCP p2p client, in its own protocol, that this port
/// speaks TLS: without this it would only see the connection close.
async fn refuse_plain<S: AsyncWrite + Unpin>(mut stream: S) -> io::Error {
    let mut out = codec::encode_preamble(VERSION).to_vec();
    let refusal = Message::Error {
        id: 0,
        code: ErrorCode::Forbidden,
        message: "this peer speaks TLS only: give your folder an identity with `p2p init`, or pass --transport tls"
            .into(),
    };
    if codec::encode_control(&refusal, &mut out).is_ok() {
        let _ = stream.write_all(&out).await;
        let _ = stream.flush().await;
    }
    let _ = stream.close().await;
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a plain-TCP client on this TLS port (told to use `p2p init` or --transport tls)",
    )
}

#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}

/// What a `CertificateExpired` alert means: TLS has one alert for both.
pub const CERT_DATES: &str = "it found this peer's certificate expired or not valid yet (TLS says both the same \
                              way): check both machines' clocks and the certificate's dates";

/// Rewords a failed handshake when the cause is recognisable: the other
/// side speaking plain p2p (no TLS), or refusing our certificate.
fn explain(e: io::Error, first: &[u8], side: Side) -> io::Error {
    let plain_p2p = first.starts_with(&MAGIC);
    let text = match (side, plain_p2p) {
        (Side::Client, true) => "the peer speaks plain TCP, not TLS (it has no identity, or runs with \
                                 --transport tcp): use --transport tcp to reach it"
            .to_string(),
        (Side::Server, true) => "a plain-TCP client on this TLS port (it should use --transport tls)".to_string(),
        // Every TLS connection opens with a handshake record (type 22).
        (_, false) if first.first().is_some_and(|&b| b != 22) => {
            let side = match side {
                Side::Client => "the peer",
                Side::Server => "the client",
            };
            format!("not a p2p peer: {side} does not speak TLS")
        }
        _ => {
            let inner = e.get_ref().map(ToString::to_string).unwrap_or_else(|| e.to_string());
            if inner.contains("CertificateExpired") {
                format!("the peer refused the TLS handshake ({inner}): {CERT_DATES}")
            } else if inner.contains("received fatal alert") {
                format!("the peer refused the TLS handshake ({inner}); see its log for why")
            } else {
                format!("TLS handshake failed: {inner}")
            }
        }
    };
    io::Error::new(io::ErrorKind::InvalidData, text)
}

/// The server name to send: the host of `host:port`, as an IP or DNS name.
fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    ServerName::try_from(host.to_owned())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr:?} has no usable host name")))
}

#[cfg(test)]
mod tests;
