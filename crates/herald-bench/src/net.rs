//! Sockets for the load: connections spread over several `127.0.0.x` source addresses, and
//! byte counters on every one of them so the report can state bytes on the wire.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpSocket, TcpStream},
};

/// Bytes read and written by every counted connection.
#[derive(Debug, Default)]
pub struct WireCounters {
    /// Bytes received from the server.
    pub rx: AtomicU64,
    /// Bytes sent to the server.
    pub tx: AtomicU64,
}

/// Opens connections to one server address from a rotating set of loopback sources.
pub struct Connector {
    /// The server's nodes; connections go to each in turn.
    servers: Vec<SocketAddr>,
    sources: Vec<IpAddr>,
    next: AtomicUsize,
    /// What the connections read and wrote.
    pub wire: Arc<WireCounters>,
}

/// A TCP stream whose traffic is added to [`WireCounters`].
pub struct Counted {
    inner: TcpStream,
    wire: Arc<WireCounters>,
}

// === impl Connector ===

impl Connector {
    /// Connections to `server` from `sources` loopback addresses (`127.0.0.1`, `127.0.0.2` …)
    /// when the server is on loopback, else from the default source.
    pub fn new(server: SocketAddr, sources: u8) -> Self {
        Self::to(&[server], sources)
    }

    /// Connections to every node of `servers` in turn (a cluster), from `sources` loopback
    /// addresses as [`Connector::new`].
    pub fn to(servers: &[SocketAddr], sources: u8) -> Self {
        let loopback_v4 = servers.iter().all(|s| s.ip().is_loopback() && s.is_ipv4());
        let sources = if loopback_v4 {
            (1..=sources.max(1)).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect()
        } else {
            Vec::new()
        };
        Self { servers: servers.to_vec(), sources, next: AtomicUsize::new(0), wire: Arc::default() }
    }

    /// The (first) server's address.
    pub fn server(&self) -> SocketAddr {
        self.servers[0]
    }

    /// A new counted connection.
    pub async fn connect(&self) -> io::Result<Counted> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let server = self.servers[n % self.servers.len()];
        let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if !self.sources.is_empty() {
            socket.bind(SocketAddr::new(self.sources[n % self.sources.len()], 0))?;
        }
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        Ok(Counted { inner: stream, wire: self.wire.clone() })
    }

    /// A new keep-alive HTTP/1.1 client connection; its driver runs on a task of its own.
    pub async fn http1(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = self.connect().await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

// === impl Counted ===

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.wire.rx.fetch_add(read as u64, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            self.wire.tx.fetch_add(*n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The current wall clock in µs since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
