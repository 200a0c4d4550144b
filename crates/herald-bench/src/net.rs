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
    server: SocketAddr,
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
        let sources = if server.ip().is_loopback() && server.is_ipv4() {
            (1..=sources.max(1)).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect()
        } else {
            Vec::new()
        };
        Self { server, sources, next: AtomicUsize::new(0), wire: Arc::default() }
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// A new counted connection.
    pub async fn connect(&self) -> io::Result<Counted> {
        let socket = if self.server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if !self.sources.is_empty() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sources.len();
            socket.bind(SocketAddr::new(self.sources[i], 0))?;
        }
        let stream = socket.connect(self.server).await?;
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
