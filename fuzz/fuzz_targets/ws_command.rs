//! The WebSocket command parser: any frame text gets a command or an error reply, never a
//! panic; an error reply is valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = herald_core::Request::parse(text) {
        let reply = e.to_reply();
        assert!(serde_json_is_object(&reply), "error replies are JSON objects");
    }
});

fn serde_json_is_object(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'{') && bytes.last() == Some(&b'}')
}
