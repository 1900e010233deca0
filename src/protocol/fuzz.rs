//! Fuzzing `ClientMessage::parse` on stable: seeds from `fuzz/corpus/parse/`, then mutated
//! frames (byte flips, splices, insertions, deletions) and structured frames built from the
//! protocol's own keys and types, with a fixed seed and a fixed case budget (raise it with
//! `HAVEN_FUZZ_CASES`). Each frame must parse or be refused with a frame-level code, never panic;
//! a parsed frame must round-trip; fieldless types with another key must be `unknown_field`.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| std::fs::read(e.path()).ok()).collect())
        .unwrap_or_default();
    seeds.sort();
    assert!(seeds.len() >= 20, "the seed corpus is in {}", dir.display());
    seeds
}

fn cases(default: u32) -> u32 {
    std::env::var("HAVEN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]))
}

/// The checks every input gets.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(text) = std::str::from_utf8(bytes) else { return Ok(()) }; // text frames are UTF-8
    match ClientMessage::parse(text) {
        Ok(m) => {
            // What the server understood is what a client would send for it.
            let again = serde_json::to_string(&m).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = ClientMessage::parse(&again).map_err(|e| TestCaseError::fail(format!("{again}: {e:?}")))?;
            prop_assert_eq!(back, m);
        }
        Err(r) => {
            prop_assert!(matches!(
                r.error.code,
                ErrorCode::InvalidJson | ErrorCode::UnknownType | ErrorCode::UnknownField | ErrorCode::InvalidMessage
            ));
            if let Some(id) = &r.id {
                prop_assert!(id.chars().count() <= MAX_REQUEST_ID_LEN);
            }
            prop_assert!(!r.error.message.is_empty());
        }
    }
    Ok(())
}

fn mutate(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (0..n, 0..n, proptest::collection::vec((0u8..5, any::<usize>(), any::<u8>()), 1..8)).prop_map(
        move |(a, b, edits)| {
            let mut v = seeds[a].clone();
            for (kind, at, byte) in edits {
                let i = if v.is_empty() { 0 } else { at % (v.len() + 1) };
                match kind {
                    0 if i < v.len() => v[i] ^= byte | 1,
                    1 => v.insert(i, byte),
                    2 if i < v.len() => {
                        v.remove(i);
                    }
                    3 => {
                        let other = &seeds[b];
                        let j = at % (other.len() + 1);
                        v.splice(i..i, other[j..].iter().copied().take(64));
                    }
                    // Structural bytes where they confuse parsers most.
                    _ => v.insert(i, b"{}[]\":,\\"[byte as usize % 8]),
                }
            }
            v
        },
    )
}

/// JSON objects made of the protocol's keys and values of every JSON type.
fn structured() -> impl Strategy<Value = String> {
    let keys = prop_oneof![
        proptest::sample::select(vec![
            "type",
            "id",
            "display_name",
            "resume_token",
            "last_seq",
            "participant_id",
            "muted",
            "text",
            "message",
            "reason",
            "enabled",
            "message_id",
            "role",
            "request_id",
            "seconds",
            "position",
            "sdp",
            "candidate",
            "waiting_room",
            "floor_control",
            "share_seconds",
            "share_end",
            "video",
            "zz",
        ])
        .prop_map(String::from),
        "[a-z_]{0,12}",
    ];
    let value = prop_oneof![
        proptest::sample::select(Command::TYPES.to_vec()).prop_map(|t| format!("\"{t}\"")),
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| if n.is_finite() { n.to_string() } else { "1e999".into() }),
        "\\PC{0,70}".prop_map(|s| serde_json::Value::String(s).to_string()),
        Just("\"p0123456789ab\"".to_string()),
        Just("{\"a\":1}".to_string()),
        Just("[1,\"x\"]".to_string()),
    ];
    proptest::collection::vec((keys, value), 0..6).prop_map(|kv| {
        let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k))).collect();
        format!("{{{}}}", body.join(","))
    })
}

#[test]
fn parse_fuzz_never_panics_and_round_trips() {
    let seeds = corpus();
    let started = std::time::Instant::now();
    for s in &seeds {
        check(s).unwrap_or_else(|e| panic!("seed {}: {e}", String::from_utf8_lossy(s)));
    }
    let budget = cases(30_000);
    runner(budget).run(&mutate(seeds), |v| check(&v)).unwrap();
    runner(budget).run(&structured(), |s| check(s.as_bytes())).unwrap();
    runner(budget / 10).run(&"\\PC{0,200}", |s| check(s.as_bytes())).unwrap();
    eprintln!("parse fuzz: {} executions in {:?}", 2 * budget + budget / 10, started.elapsed());
}

#[test]
fn parse_fuzz_fieldless_types_refuse_every_extra_key() {
    runner(cases(2_000))
        .run(
            &(proptest::sample::select(Command::FIELDLESS.to_vec()), "[a-zA-Z_]{1,10}", any::<i32>()),
            |(ty, key, n)| {
                if key == "type" || key == "id" {
                    return Ok(());
                }
                let frame = format!(r#"{{"type":"{ty}","{key}":{n}}}"#);
                let r = ClientMessage::parse(&frame);
                prop_assert_eq!(r.map_err(|e| e.error.code).err(), Some(ErrorCode::UnknownField), "{}", frame);
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn parse_fuzz_a_repeated_key_is_always_refused() {
    let seeds: Vec<serde_json::Map<String, serde_json::Value>> = corpus()
        .iter()
        .filter_map(|s| serde_json::from_slice::<serde_json::Value>(s).ok())
        .filter_map(|v| v.as_object().cloned())
        .filter(|o| !o.is_empty())
        .collect();
    let n = seeds.len();
    runner(cases(2_000))
        .run(&(0..n, any::<usize>(), any::<bool>()), |(i, k, same_value)| {
            let obj = &seeds[i];
            let (key, value) = obj.iter().nth(k % obj.len()).map(|(k, v)| (k.clone(), v.clone())).unwrap();
            let mut parts: Vec<String> =
                obj.iter().map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k.clone()))).collect();
            let again = if same_value { value } else { serde_json::Value::Bool(true) };
            parts.push(format!("{}:{again}", serde_json::Value::String(key)));
            let frame = format!("{{{}}}", parts.join(","));
            prop_assert!(ClientMessage::parse(&frame).is_err(), "{}", frame);
            Ok(())
        })
        .unwrap();
}
