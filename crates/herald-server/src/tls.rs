//! TLS with HTTP/2 by ALPN, and HTTP/1.1 alongside (`tls_listen`, `tls_cert`, `tls_key`).
//!
//! The TLS front terminates TLS with rustls and speaks HTTP/2 or HTTP/1.1 (hyper) to the
//! client. Each request goes on, as plain HTTP/1.1 over loopback, to an internal listener
//! served by the same connection engine as the plain port ([`crate::http::conn`]), so every
//! route, transport, limit and guarantee is the same on both; the client's address travels in
//! a header vouched for by a per-process secret. SSE responses stream through as HTTP/2 DATA
//! frames — a browser then opens any number of SSE streams on one connection instead of ~6 per
//! origin — and WebSocket upgrades over HTTP/1.1 are spliced through once both sides switch.
//!
//! The cost is a loopback hop per request or stream; the plain port is the measured path
//! (BENCHMARKS.md), and deployments with large fan-out terminate TLS in front of it.

use std::{convert::Infallible, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header},
};
use herald_core::{ErrorCode, ProtocolError};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};

use crate::{
    config::ConfigError,
    http::conn::{BRIDGE_HEADER, PEER_HEADER},
    registry::Registry,
    reply::ApiError,
};

/// Why a request could not be forwarded (the internal listener is gone, a header is not
/// representable): the client gets a `500`.
type ForwardError = Box<dyn std::error::Error + Send + Sync>;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS front: the acceptor, and where the internal listener is.
pub struct TlsFront {
    acceptor: TlsAcceptor,
    inner: SocketAddr,
    secret: Arc<str>,
}

/// A rustls server configuration from PEM files, offering `h2` then `http/1.1` by ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ConfigError> {
    let invalid = |what: &Path, e: &dyn std::fmt::Display| ConfigError::Invalid(format!("{}: {e}", what.display()));
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(cert, &e))?;
    if certs.is_empty() {
        return Err(invalid(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| invalid(key, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

// === impl TlsFront ===

impl TlsFront {
    /// A front for `config` forwarding to the internal listener at `inner`, vouching with
    /// `secret`.
    pub fn new(config: rustls::ServerConfig, inner: SocketAddr, secret: Arc<str>) -> Self {
        Self { acceptor: TlsAcceptor::from(Arc::new(config)), inner, secret }
    }

    /// Serves one client connection: the TLS handshake, then HTTP/2 or HTTP/1.1 until the
    /// client goes or the shutdown has let its requests finish.
    pub async fn serve(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr, registry: Arc<Registry>) {
        let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await else { return };
        let front = self.clone();
        let service = hyper::service::service_fn(move |request| {
            let front = front.clone();
            async move { Ok::<_, Infallible>(front.forward(request, peer).await) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // A client that opens a connection and sends no request head is dropped (30 s).
        builder.http1().timer(hyper_util::rt::TokioTimer::new());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            () = registry.shutdown_started() => connection.as_mut().graceful_shutdown(),
        }
        let _ = connection.await;
    }

    async fn forward(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        match self.try_forward(request, peer).await {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(error = %e, "TLS front could not reach the internal listener");
                let error = ProtocolError::new(ErrorCode::Internal, "the request could not be served");
                axum::response::IntoResponse::into_response(ApiError(error))
            }
        }
    }

    async fn try_forward(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, ForwardError> {
        let client_upgrade = request.headers().contains_key(header::UPGRADE).then(|| hyper::upgrade::on(&mut request));
        let stream = TcpStream::connect(self.inner).await?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection.with_upgrades());

        let (mut parts, body) = request.into_parts();
        if !parts.headers.contains_key(header::HOST)
            && let Some(authority) = parts.uri.authority()
        {
            // HTTP/2 names the host in `:authority`; the origin checks compare against `Host`.
            parts.headers.insert(header::HOST, HeaderValue::from_str(authority.as_str())?);
        }
        parts.uri = parts.uri.path_and_query().map_or("/", |p| p.as_str()).parse::<Uri>()?;
        parts.version = Version::HTTP_11;
        parts.headers.insert(PEER_HEADER, HeaderValue::from_str(&peer.to_string())?);
        parts.headers.insert(BRIDGE_HEADER, HeaderValue::from_str(&self.secret)?);
        let mut response = sender.send_request(Request::from_parts(parts, body)).await?;

        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let inner_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                if let (Ok(client), Ok(inner)) = tokio::join!(client_upgrade, inner_upgrade) {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(inner)).await;
                }
            });
        } else {
            // Hop-by-hop headers of the inner HTTP/1.1 response are not the client's.
            for name in [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE] {
                response.headers_mut().remove(name);
            }
            response.headers_mut().remove("keep-alive");
        }
        Ok(response.map(Body::new))
    }
}
