//! Browser origins: cross-site WebSocket hijacking is refused, and the client routes answer
//! CORS (preflight, echoed origin, credentials, `Last-Event-ID`) for allowed origins only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // black-box tests fail loudly

mod common;

use common::{TestServer, ws_handshake};
use serde_json::{Value, json};

#[tokio::test]
async fn a_websocket_from_a_foreign_origin_is_refused_unless_allowed() {
    let server = TestServer::start(&["allowed_origins=[\"https://app.test\"]"]);
    let own = server.base.clone();
    let refused = ws_handshake(&server.ws_url(), &[("origin", "https://evil.test")]).await.err().expect("refused");
    assert_eq!((refused.0, refused.1["error"]["code"].clone()), (403, json!("origin_not_allowed")));
    for origin in [own.as_str(), "https://app.test"] {
        let mut ws = ws_handshake(&server.ws_url(), &[("origin", origin)]).await.expect("accepted");
        ws.subscribe("news", None).await;
    }
    // Clients that are not browsers send no Origin.
    ws_handshake(&server.ws_url(), &[]).await.expect("accepted");
    let info = server.api_get("/api/info").await;
    assert_eq!(info["limits"]["origin"], 1, "{info}");
}

#[tokio::test]
async fn the_default_allows_only_the_servers_own_pages() {
    let server = TestServer::start(&["anonymous_publish=true"]);
    let refused = ws_handshake(&server.ws_url(), &[("origin", "https://evil.test")]).await.err().expect("refused");
    assert_eq!(refused.0, 403);
    // A cross-site form post cannot publish either.
    let forged = server
        .http
        .post(format!("{}/publish", server.base))
        .header("origin", "https://evil.test")
        .header("content-type", "text/plain")
        .body(r#"{"channel":"news","data":"forged"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let history: Value = server.api_get("/api/channels/news/history").await;
    assert_eq!(history["messages"], json!([]), "nothing was published");
}

#[tokio::test]
async fn allowed_origins_get_cors_answers_on_the_client_routes() {
    let server = TestServer::start(&["allowed_origins=[\"https://app.test\"]", "anonymous_publish=true"]);
    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/publish", server.base))
        .header("origin", "https://app.test")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.test");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed_headers = h["access-control-allow-headers"].to_str().unwrap();
    for name in ["authorization", "content-type", "last-event-id"] {
        assert!(allowed_headers.contains(name), "{allowed_headers}");
    }
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));

    let from_app = |path: &str| server.http.get(format!("{}{path}", server.base)).header("origin", "https://app.test");
    for path in ["/poll?channel=news&timeout=0", "/history/news"] {
        let response = from_app(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["access-control-allow-origin"], "https://app.test", "{path}");
    }
    let sse = from_app("/sse?channel=news").send().await.unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(sse.headers()["access-control-allow-origin"], "https://app.test");
    assert_eq!(sse.headers()["content-type"], "text/event-stream");

    let publish = server
        .http
        .post(format!("{}/publish", server.base))
        .header("origin", "https://app.test")
        .json(&json!({"channel":"news","data":"from the app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(publish.status(), 200);
    assert_eq!(publish.headers()["access-control-allow-origin"], "https://app.test");

    let evil =
        server.http.get(format!("{}/poll?channel=news&timeout=0", server.base)).header("origin", "https://evil.test");
    let evil = evil.send().await.unwrap();
    assert_eq!(evil.status(), 403);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
}
