//! The checked-in protocol schema must match the one generated from the Rust types.

#[test]
fn checked_in_schema_matches_the_protocol_types() {
    let path = format!("{}/proto/schema.json", env!("CARGO_MANIFEST_DIR"));
    let checked_in = std::fs::read_to_string(&path).expect("proto/schema.json exists");
    let generated = haven::protocol::schema::protocol_schema_text();
    assert!(
        checked_in == generated,
        "proto/schema.json is stale: run `cargo run -q -- schema > proto/schema.json` and review the diff"
    );
}
