//! Herald's routes served by hyper's HTTP/1 server instead of Herald's own connection engine,
//! to measure that choice (BENCHMARKS.md, "Why Herald has its own HTTP/1 engine"): the same
//! state, the same router, the same long polls; only the HTTP/1 front differs.
//!
//! ```sh
//! cargo run --release -p herald-server --example hyper_front -- 127.0.0.1:8090 &
//! herald bench --url http://127.0.0.1:8090 --api-key bench --pid $! --scenario idle,seed --transport poll
//! ```
//!
//! Long polls and the API are served; SSE streams and WebSocket upgrades take the connection
//! over from Herald's own engine and are not (a measurement tool, not a way to run Herald).

use std::net::SocketAddr;

use axum::body::Body;
use herald_server::{Config, Server};
use hyper_util::rt::TokioIo;
use tower::ServiceExt as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::args().nth(1).as_deref().unwrap_or("127.0.0.1:8090").parse()?;
    // As `herald bench` runs Herald: the per-address limits one load generator would trip off.
    let config = Config {
        listen,
        api_key: Some("bench".into()),
        max_connections: 0,
        connection_rate_per_ip: 0,
        max_streams_per_ip: 0,
        ..Config::default()
    };
    let (listener, state) = Server::bind(config).await?.into_parts();
    herald_server::housekeeping::spawn(&state);
    let router = herald_server::http::router(state);
    println!("herald (hyper front) listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(Body::new);
                // What Herald's engine gives every routed request: the client's address.
                request.extensions_mut().insert(peer);
                router.clone().oneshot(request)
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
