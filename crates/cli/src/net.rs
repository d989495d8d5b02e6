//! Which transport a command uses, and what it trusts.
//!
//! TLS whenever this peer has an identity (a `p2p.ron`), or a peer it
//! talks to has a pinned fingerprint; plain TCP otherwise, or when asked
//! with `--transport tcp` (trusted networks, benchmarks).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use futures_io::{AsyncRead, AsyncWrite};
use futures_rustls::TlsStream;
use p2p_core::server::{ClientInfo, Gate, Standing};
use p2p_core::transport::{Connected, Fingerprint, Incoming, Listener, Transport};
use p2p_transport_tcp::{TcpAcceptor, TcpIncoming, TcpTransport};
use p2p_transport_tls::{KnownPeers, Seen, Sniff, TlsIncoming, TlsListener, TlsTransport, Trust, TrustError};

use crate::config::Loaded;
use crate::peers::Target;
use crate::settings::PeerList;

/// The transport asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    Auto,
    Tcp,
    Tls,
}

impl std::str::FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Choice::Tcp),
            "tls" => Ok(Choice::Tls),
            "auto" => Ok(Choice::Auto),
            _ => Err(format!("{s:?} is not a transport: tcp or tls")),
        }
    }
}

/// TCP or TLS over TCP, as one concrete transport.
#[derive(Clone, Debug)]
pub(crate) enum Net {
    Tcp(TcpTransport),
    Tls(TlsTransport<TcpTransport>),
}

/// Sets up the transport for the one-shot commands.
pub(crate) fn for_client(
    choice: Choice,
    config: Option<&Loaded>,
    ca: Option<&PathBuf>,
    targets: &[Result<Target, String>],
) -> anyhow::Result<Net> {
    let pinned = targets.iter().flatten().any(|t| t.pin.is_some());
    let tls = match choice {
        Choice::Tcp => return Ok(Net::Tcp(TcpTransport)),
        Choice::Tls => true,
        Choice::Auto => config.is_some() || pinned || ca.is_some(),
    };
    if !tls {
        return Ok(Net::Tcp(TcpTransport));
    }
    let identity = config.map(Loaded::identity).transpose()?;
    let mut trust = Trust::new();
    let config_pins = config.map(Loaded::pins).unwrap_or_default();
    for t in targets.iter().flatten() {
        if let Some(pin) = t.pin.or_else(|| config_pins.get(&t.label).copied()) {
            trust.pin(&t.addr, pin);
        }
    }
    if let Some(c) = config {
        let known = KnownPeers::open(&c.known_peers())?;
        trust.remember_in(Arc::new(known));
    }
    let ca = ca.cloned().or_else(|| config.and_then(|c| c.config.ca.as_ref().map(|p| c.resolve(p))));
    if let Some(ca) = ca {
        trust.with_ca(&ca)?;
    }
    Ok(Net::Tls(TlsTransport::new(TcpTransport, identity, trust)?))
}

/// Sets up the transport for `serve`, and the gate that tells known
/// clients from strangers.
pub(crate) fn for_server(
    choice: Choice,
    config: Option<&Loaded>,
    ca: Option<&PathBuf>,
    settings: Option<&Path>,
) -> anyhow::Result<(Net, Option<Arc<dyn Gate>>)> {
    let tls = match (choice, config) {
        (Choice::Tcp, _) if ca.is_some() => anyhow::bail!("--ca needs TLS, not --transport tcp"),
        (Choice::Tcp, _) => false,
        (_, None) if ca.is_some() => anyhow::bail!("--ca needs TLS, and TLS an identity: run `p2p init` first"),
        (Choice::Tls, None) => anyhow::bail!("TLS needs an identity: run `p2p init` in this folder first"),
        (_, Some(_)) => true,
        (Choice::Auto, None) => false,
    };
    let Some(config) = config.filter(|_| tls) else {
        return Ok((Net::Tcp(TcpTransport), None));
    };
    let identity = config.identity()?;
    let mut trust = Trust::new();
    let ca = ca.cloned().or_else(|| config.config.ca.as_ref().map(|p| config.resolve(p)));
    if let Some(ca) = &ca {
        trust.with_ca(ca)?;
    }
    let known = Arc::new(KnownPeers::open(&config.known_peers())?);
    let gate = PeerGate {
        me: config.config.id.clone(),
        settings: settings.map(Path::to_owned),
        config_pins: config.pins(),
        known,
        ca: ca.is_some(),
    };
    Ok((Net::Tls(TlsTransport::new(TcpTransport, Some(identity), trust)?), Some(Arc::new(gate))))
}

/// Knows a client if its fingerprint is pinned for the id it claims (peer
/// list or config), or, for an id in the peer list without a pin, the one
/// it showed the first time (remembered in known_peers.txt). A client whose
/// fingerprint contradicts either is refused. The peer list is looked up
/// again for each client (`--settings`, else `.` then `..`), so edits take
/// effect without a restart.
#[derive(Debug)]
struct PeerGate {
    /// This peer's id, for messages.
    me: String,
    settings: Option<PathBuf>,
    config_pins: std::collections::BTreeMap<String, Fingerprint>,
    known: Arc<KnownPeers>,
    ca: bool,
}

impl Gate for PeerGate {
    fn admit(&self, client: &ClientInfo) -> Result<Standing, String> {
        let Some(presented) = client.identity else {
            return Ok(Standing::Stranger);
        };
        let id = client.claimed_id.as_str();
        let list = PeerList::find(self.settings.as_deref()).map_err(|e| format!("cannot read the peer list: {e}"))?;
        let entry = list.as_ref().and_then(|l| l.get(id));
        let pin = entry.and_then(|e| e.pin).or_else(|| self.config_pins.get(id).copied());
        match pin {
            Some(pin) if pin == presented => return Ok(Standing::Known),
            Some(pin) => {
                return Err(format!("certificate fingerprint {presented} does not match the pinned {pin} for {id:?}"));
            }
            None => {}
        }
        let Some(entry) = entry.filter(|_| !id.is_empty()) else {
            return Ok(Standing::Stranger);
        };
        // A CA vouches for the certificate itself, for a listed id.
        if self.ca {
            return Ok(Standing::Known);
        }
        let key = format!("client {id}");
        match self.known.check(&key, presented) {
            Ok(Seen::Known) => return Ok(Standing::Known),
            Ok(Seen::New) => {}
            Err(e) => return Err(self.refusal(id, presented, e)),
        }
        // Ids are no secret: a certificate is trusted on first use only
        // when it comes from the address the peer list gives that id.
        let from = client.remote.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical());
        let listed = entry.host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        if from.is_none() || from != listed {
            tracing::info!(
                "{id:?} connects from {} with a certificate never seen, not from its listed address {}: a stranger \
                 until its fingerprint {presented} is pinned in the peer list",
                client.remote,
                entry.host
            );
            return Ok(Standing::Stranger);
        }
        match self.known.remember(&key, presented) {
            Ok(Seen::New) => {
                tracing::info!("trusting {id} on first use: certificate {presented}");
                Ok(Standing::Known)
            }
            Ok(Seen::Known) => Ok(Standing::Known),
            Err(e) => Err(self.refusal(id, presented, e)),
        }
    }
}

impl PeerGate {
    /// What a client is told when its certificate contradicts the one
    /// remembered (the peer's log gets it too).
    fn refusal(&self, id: &str, presented: Fingerprint, e: TrustError) -> String {
        match e {
            TrustError::Changed { expected, .. } => format!(
                "{me} remembers another certificate for {id:?}: it was {expected}, it is now {presented}. Someone \
                 may be impersonating {id:?}. If its identity really changed, delete the line \"client {id}\" from \
                 {file} on {me}",
                me = self.me,
                file = self.known.path().display(),
            ),
            e => e.to_string(),
        }
    }
}

impl Net {
    /// "tcp" or "tls".
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Net::Tcp(t) => t.name(),
            Net::Tls(t) => t.name(),
        }
    }

    /// This side's fingerprint, over TLS with an identity.
    pub(crate) fn fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Net::Tcp(_) => None,
            Net::Tls(t) => t.fingerprint(),
        }
    }
}

/// A connection over either transport.
#[derive(Debug)]
pub(crate) enum NetStream {
    Tcp(p2p_transport_tcp::TcpStream),
    Tls(Box<TlsStream<Sniff<p2p_transport_tcp::TcpStream>>>),
}

/// A listener over either transport.
#[derive(Debug)]
pub(crate) enum NetListener {
    Tcp(TcpAcceptor),
    Tls(TlsListener<TcpAcceptor>),
}

/// An accepted connection over either transport.
#[derive(Debug)]
pub(crate) enum NetIncoming {
    Tcp(TcpIncoming),
    Tls(TlsIncoming<TcpIncoming>),
}

impl Transport for Net {
    type Stream = NetStream;
    type Listener = NetListener;

    fn name(&self) -> &'static str {
        self.label()
    }

    async fn connect(&self, addr: &str) -> io::Result<Connected<NetStream>> {
        match self {
            Net::Tcp(t) => {
                let c = t.connect(addr).await?;
                Ok(Connected { stream: NetStream::Tcp(c.stream), peer: c.peer })
            }
            Net::Tls(t) => {
                let c = t.connect(addr).await?;
                Ok(Connected { stream: NetStream::Tls(Box::new(c.stream)), peer: c.peer })
            }
        }
    }

    async fn bind(&self, addr: &str) -> io::Result<NetListener> {
        match self {
            Net::Tcp(t) => t.bind(addr).await.map(NetListener::Tcp),
            Net::Tls(t) => t.bind(addr).await.map(NetListener::Tls),
        }
    }
}

impl Listener for NetListener {
    type Stream = NetStream;
    type Incoming = NetIncoming;

    async fn accept(&self) -> io::Result<NetIncoming> {
        match self {
            NetListener::Tcp(l) => l.accept().await.map(NetIncoming::Tcp),
            NetListener::Tls(l) => l.accept().await.map(NetIncoming::Tls),
        }
    }

    fn local_addr(&self) -> io::Result<String> {
        match self {
            NetListener::Tcp(l) => l.local_addr(),
            NetListener::Tls(l) => l.local_addr(),
        }
    }
}

impl Incoming for NetIncoming {
    type Stream = NetStream;

    fn remote(&self) -> String {
        match self {
            NetIncoming::Tcp(i) => i.remote(),
            NetIncoming::Tls(i) => i.remote(),
        }
    }

    async fn establish(self) -> io::Result<Connected<NetStream>> {
        match self {
            NetIncoming::Tcp(i) => {
                let c = i.establish().await?;
                Ok(Connected { stream: NetStream::Tcp(c.stream), peer: c.peer })
            }
            NetIncoming::Tls(i) => {
                let c = i.establish().await?;
                Ok(Connected { stream: NetStream::Tls(Box::new(c.stream)), peer: c.peer })
            }
        }
    }
}

impl AsyncRead for NetStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Tcp(s) => Pin::new(s).poll_close(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// Whether `--ca` was given with a path that exists (checked early, for a
/// clear error before any connection).
pub(crate) fn check_ca(ca: Option<&PathBuf>) -> anyhow::Result<()> {
    if let Some(ca) = ca {
        std::fs::metadata(ca).with_context(|| format!("cannot read the CA file {}", ca.display()))?;
    }
    Ok(())
}
