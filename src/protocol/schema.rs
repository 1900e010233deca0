//! The JSON Schema of the protocol, generated from the Rust types.
//!
//! `proto/schema.json` is this output, checked in; `haven schema` prints it and a test fails when
//! the two differ, so the documented protocol cannot drift from the code.

use super::messages::{ClientMessage, ServerMessage};

/// The protocol schema: client messages and server messages as two definitions.
pub fn protocol_schema() -> serde_json::Value {
    let client = schemars::schema_for!(ClientMessage);
    let server = schemars::schema_for!(ServerMessage);
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Haven signaling protocol v1",
        "description": "JSON text frames on /v1/signal. Generated from src/protocol by `haven schema`; do not edit.",
        "$defs": {
            "ClientMessage": client,
            "ServerMessage": server,
        }
    })
}

/// The schema as the pretty-printed text that is checked in.
pub fn protocol_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&protocol_schema()).unwrap_or_default();
    s.push('\n');
    s
}
