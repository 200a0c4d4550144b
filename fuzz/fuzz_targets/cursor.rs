//! Cursor parsing (SSE `Last-Event-ID`, `last_event_id`, long-poll `cursor`): never a panic,
//! and whatever parses prints back to a cursor that parses to the same positions.
#![no_main]

use herald_core::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cursor) = Cursor::parse(text) {
        let printed = cursor.to_string();
        assert_eq!(Cursor::parse(&printed).as_ref(), Ok(&cursor), "{printed}");
    }
});
