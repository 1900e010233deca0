//! Smoke versions of every scenario, tiny and a few seconds each, so the harness cannot rot.
//! They assert that the harness produced sane results (everyone joined, histograms filled, no
//! errors), never wall-clock thresholds.

use haven_load::launch;
use haven_load::report::{self, Comparison, Machine, Output};
use haven_load::scenarios::rooms::{self, RoomsParams};
use haven_load::scenarios::storms::{self, JoinStormParams, ResumeStormParams};

fn tiny_rooms() -> RoomsParams {
    RoomsParams {
        rooms: 2,
        participants: 4,
        join_concurrency: 8,
        idle_secs: 0.2,
        duration_secs: 2.0,
        // Fast enough that a couple of seconds see every kind of event.
        events_per_min: 300.0,
        chat_per_min: 60.0,
        mute_share: 0.3,
        floor_every: 3,
        saturate: false,
        // Exercise binding several loopback source addresses.
        source_ips: Some(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_against_haven_in_process() {
    let app = launch::in_process_haven().await.unwrap();
    let r = rooms::run(&app.target, &tiny_rooms()).await.unwrap();
    assert_eq!(r.join.ok, 8, "{r:#?}");
    assert_eq!(r.join.failed, 0);
    assert_eq!(r.join.latency.count, 8);
    assert!(r.events_completed > 0, "{r:#?}");
    assert_eq!(r.events_timed_out, 0, "{r:#?}");
    assert_eq!(r.errors_total, 0, "{:?}", r.errors);
    assert!(r.fanout.count > 0 && r.fanout.p50_ms > 0.0);
    assert!(r.fanout_by_kind.contains_key("hand"), "{:?}", r.fanout_by_kind.keys());
    // Every completed event reached all four participants of its meeting.
    assert_eq!(r.per_recipient.count, r.events_completed * 4);
    let p = r.server_proc.as_ref().expect("/proc figures for our own pid");
    assert!(p.rss_idle_kib > 0);
    let text = report::human(&Machine::describe("test".into()), &Output::Rooms(Box::new(r.clone())));
    assert!(text.contains("fan-out latency"), "{text}");
    app.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_rooms_against_haven_and_reference() {
    let p = RoomsParams { saturate: true, duration_secs: 1.0, source_ips: None, ..tiny_rooms() };
    let app = launch::in_process_haven().await.unwrap();
    let haven = rooms::run(&app.target, &p).await.unwrap();
    app.server.shutdown().await;
    let (target, task) = launch::in_process_reference().await.unwrap();
    let reference = rooms::run(&target, &p).await.unwrap();
    task.abort();
    for r in [&haven, &reference] {
        assert_eq!(r.join.ok, 8, "{r:#?}");
        assert!(r.events_completed > 0, "{r:#?}");
        assert_eq!(r.events_timed_out, 0, "{r:#?}");
        assert_eq!(r.errors_total, 0, "{:?}", r.errors);
    }
    assert!(haven.fanout_by_kind.contains_key("hand"));
    assert!(reference.fanout_by_kind.contains_key("relay"));
    // The reference relays to the others only.
    assert_eq!(reference.per_recipient.count, reference.events_completed * 3);
    let c = Comparison::new(haven, reference);
    assert!(c.throughput_ratio > 0.0 && c.latency_p99_ratio > 0.0);
    let json = report::json(&Machine::describe("test".into()), &Output::Compare(Box::new(c)));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kind"], "compare");
    assert!(v["throughput_ratio"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_storm_in_process() {
    let app = launch::in_process_haven().await.unwrap();
    let p = JoinStormParams { joins: 30, per_meeting: 10, concurrency: 8, rate: 0.0, source_ips: None };
    let r = storms::join_storm(&app.target, &p).await.unwrap();
    assert_eq!(r.ok, 30, "{r:#?}");
    assert_eq!(r.latency.count, 30);
    assert!(r.joins_per_s > 0.0);
    // At a set rate too.
    let p = JoinStormParams { rate: 200.0, joins: 10, ..p };
    let r = storms::join_storm(&app.target, &p).await.unwrap();
    assert_eq!(r.ok, 10, "{r:#?}");
    app.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_storm_in_process() {
    let app = launch::in_process_haven().await.unwrap();
    let p = ResumeStormParams {
        participants: 12,
        per_meeting: 6,
        join_concurrency: 8,
        reconnect_delay_ms: 50,
        source_ips: None,
    };
    let r = storms::resume_storm(&app.target, &p).await.unwrap();
    assert_eq!(r.joined, 12, "{r:#?}");
    assert_eq!(r.dropped, 12);
    assert_eq!(r.kept_seat, 12, "{r:#?}");
    assert_eq!(r.latency.count, 12);
    app.server.shutdown().await;
}

/// The binary end to end: `--target` a running server (here in-process), JSON out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_against_a_running_target() {
    let app = launch::in_process_haven().await.unwrap();
    let t = &app.target;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_haven-load"))
        .args(["--target", &format!("http://{}", t.addr), "--api-key", &t.api_key])
        .args(["--program-secret", &t.secret, "--program-id", &t.program_id, "--json"])
        .args(["rooms", "--rooms", "1", "--participants", "3", "--duration", "1", "--idle-secs", "0.1"])
        .args(["--events-per-min", "120"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "rooms");
    assert_eq!(v["join"]["ok"], 3);
    assert!(v["machine"]["cpus"].as_u64().unwrap() >= 1);
    app.server.shutdown().await;
}

/// The reference server as its own process, as `rooms --reference` starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_server_process() {
    let l = launch::spawn_reference(std::path::Path::new(env!("CARGO_BIN_EXE_haven-load")), None).await.unwrap();
    let p = RoomsParams { rooms: 1, participants: 3, duration_secs: 1.0, source_ips: None, ..tiny_rooms() };
    let r = rooms::run(&l.target, &p).await.unwrap();
    l.stop().await;
    assert_eq!(r.join.ok, 3);
    assert!(r.events_completed > 0, "{r:#?}");
    assert!(r.server_proc.is_some(), "pid known");
}

/// One speaker and three listeners for two seconds: what the audio smoke tests run.
fn three_listeners() -> haven_load::scenarios::audio::AudioParams {
    haven_load::scenarios::audio::AudioParams {
        listeners: 3,
        duration: std::time::Duration::from_secs(2),
        concurrency: 3,
        burst: 1,
        meetings: 1,
        publishing: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_in_process() {
    use haven_load::scenarios::audio;
    let app = launch::in_process_haven().await.unwrap();
    let p = three_listeners();
    let r = audio::run(&app.target, &p).await.unwrap();
    assert_eq!(r.listeners_receiving, 3, "{r:#?}");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.packets_sent > 0 && r.packets_received > 0, "{r:#?}");
    // The server forwards each sent packet to every listener: forwarded ≈ sent × listeners, up to
    // packets in flight at the window's edges (a few per listener), and every listener hears it.
    let expected = r.packets_sent * 3;
    let slack = expected / 10 + 3 * 5;
    assert!(
        r.packets_forwarded.abs_diff(expected) <= slack,
        "forwarded {} vs sent × 3 = {expected}: {r:#?}",
        r.packets_forwarded
    );
    assert!(r.packets_received.abs_diff(expected) <= slack, "received {} vs {expected}: {r:#?}", r.packets_received);
    assert_eq!(r.listeners_heard, 3, "{r:#?}");
    assert!(r.min_received_per_listener * 3 >= r.packets_sent * 2, "every listener hears most of it: {r:#?}");
    let text = report::human(&Machine::describe("test".into()), &Output::Audio(r));
    assert!(text.contains("forwarded per second"), "{text}");
    app.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_with_silent_publishers_in_process() {
    use haven_load::scenarios::audio;
    let app = launch::in_process_haven().await.unwrap();
    let sfu = app.server.app.sfu.clone().unwrap();
    let p = audio::AudioParams { publishing: 2, ..three_listeners() };
    let target = app.target.clone();
    let run = tokio::spawn(async move { audio::run(&target, &p).await });
    // The server holds a track from the speaker and one from each of the two silent publishers
    // while the run is on (polled until then: the run ends a couple of seconds after everyone hears).
    let mut most = 0;
    while !run.is_finished() {
        if let Some(s) = sfu.stats().await {
            most = most.max(s.tracks_in);
        }
        if most >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = run.await.unwrap().unwrap();
    assert_eq!(most, 3, "one speaker and two publishing listeners: {r:#?}");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.listeners_heard, 3, "publishing listeners hear the speaker too: {r:#?}");
    // The silent tracks carry nothing: what is forwarded is the speaker's, to the three listeners.
    let expected = r.packets_sent * 3;
    let slack = expected / 10 + 3 * 5;
    assert!(r.packets_forwarded.abs_diff(expected) <= slack, "forwarded {} vs {expected}: {r:#?}", r.packets_forwarded);
    app.server.shutdown().await;
}

#[tokio::test]
async fn audio_against_the_janus_reference() {
    use haven_load::scenarios::janus;
    if let Some(why) = janus::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let j = janus::start(None).await.unwrap();
    let p = three_listeners();
    let r = janus::run(&j, &p).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.listeners_heard, 3, "{r:#?}");
    let expected = r.packets_sent * 3;
    assert!(r.packets_received.abs_diff(expected) <= expected / 10 + 15, "{r:#?}");
    assert!(r.received_per_server_core_second.is_some(), "{r:#?}");
}

#[tokio::test]
async fn webhooks_in_process() {
    let app = launch::in_process_haven().await.unwrap();
    let p = haven_load::scenarios::webhooks::WebhooksParams { meetings: 2, participants: 3, join_concurrency: 4 };
    let r = haven_load::scenarios::webhooks::run(&app.target, &p).await.unwrap();
    assert_eq!(r.without_endpoint.results, 6);
    assert_eq!(r.with_endpoint.events_received, 6);
    assert_eq!(r.with_endpoint.duplicates, 0);
    assert_eq!(r.with_endpoint.delivery.unwrap().count, 6);
}
