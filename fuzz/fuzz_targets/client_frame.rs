//! Fuzzes the parser of client WebSocket frames: any text must parse to a request or
//! to a `FrameError` with a message, never panic; and every reply the hub would build
//! from it must be valid JSON.
#![no_main]

use eventide_hub::ws::protocol::{self, ErrorCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let frame = protocol::parse(text);
    if let Err(error) = &frame.request {
        assert!(!error.message.is_empty());
        let reply = protocol::error_frame(frame.reference.as_ref(), error.code, &error.message);
        let value: serde_json::Value = serde_json::from_str(&reply).expect("replies are JSON");
        assert_eq!(value["event"], "error");
        if error.code == ErrorCode::BadRequest {
            assert_eq!(value["data"]["code"], "bad_request");
        }
    }
});
