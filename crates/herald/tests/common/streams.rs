//! Token-stream calls for the black-box tests (docs/protocol.md §3).

use serde_json::{Value, json};

use super::{API_KEY, TestServer};

/// `POST <path>` on the API with a JSON body: (status, answer).
pub async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response =
        server.http.post(format!("{}{path}", server.base)).bearer_auth(API_KEY).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Opens a stream for `answer` events in `channel`; its id.
pub async fn start(server: &TestServer, channel: &str) -> String {
    let (status, answer) =
        post(server, &format!("/api/channels/{channel}/streams"), json!({ "event": "answer" })).await;
    assert_eq!(status, 200, "{answer}");
    answer["stream"].as_str().unwrap().to_string()
}

/// An operation on a stream that must succeed; its answer.
pub async fn operate(server: &TestServer, channel: &str, stream: &str, body: Value) -> Value {
    let (status, answer) = post(server, &format!("/api/channels/{channel}/streams/{stream}"), body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// (type, text, seq) of a stream push.
pub fn piece(push: &Value) -> (&str, &str, u64) {
    (push["type"].as_str().unwrap(), push["text"].as_str().unwrap_or(""), push["seq"].as_u64().unwrap())
}
