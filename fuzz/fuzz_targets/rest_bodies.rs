//! Fuzzes the REST JSON bodies: any bytes must deserialize into a body or fail with
//! an error (a 400 or 422), and the validation of what deserializes must never panic.
#![no_main]

use eventide_hub::availability::{validate, NewSlot, SlotPatch};
use eventide_hub::rooms::routes::EmitBody;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The hub parses in two steps: JSON first (400 if not), then the shape (422).
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(new) = serde_json::from_value::<NewSlot>(value.clone()) {
        let _ = validate(new.starts_at, new.ends_at, new.note.as_deref());
    }
    if let Ok(patch) = serde_json::from_value::<SlotPatch>(value.clone()) {
        if let (Some(start), Some(end)) = (patch.starts_at, patch.ends_at) {
            let _ = validate(start, end, patch.note.as_ref().and_then(|n| n.as_deref()));
        }
    }
    let _ = serde_json::from_value::<EmitBody>(value);
});
