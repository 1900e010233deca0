//! The `cluster` scenario, tiny: three node processes of the debug binary (`target/debug/haven`,
//! which `cargo test --workspace` builds) on this machine's Redis and a fresh PostgreSQL database
//! (`HAVEN_TEST_REDIS`, `HAVEN_TEST_PG`; `scripts/test` provides both). It checks that the harness
//! works end to end (joins through owners and proxies, the kill, everyone back with their seat),
//! never a time.

use haven_load::report::{self, Machine, Output};
use haven_load::scenarios::cluster::{self, Backoff, ClusterParams};
use std::time::Duration;

/// `target/debug/haven`, beside this test's `deps` folder.
fn haven_debug_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|deps| deps.parent()).unwrap().join("haven");
    assert!(bin.exists(), "{} is missing: run `cargo test --workspace` (it builds the server)", bin.display());
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_one_killed_everyone_back_with_their_seat() {
    let (pg, redis) = cluster::default_services();
    let c = cluster::spawn_cluster(&haven_debug_binary(), 3, None, &pg, &redis).await.unwrap();
    let p = ClusterParams {
        participants: 18,
        meetings: 3,
        join_concurrency: 6,
        // Retry often: this checks the harness, not how patient a client is.
        backoff: Backoff::Fixed(Duration::from_millis(200)),
        back_within: Duration::from_secs(45),
        probes: 6,
        source_ips: None,
    };
    let started = std::time::Instant::now();
    let r = cluster::run(&c.target, &p).await;
    eprintln!("scenario took {:?}", started.elapsed());
    c.stop().await;
    eprintln!("stopped after {:?}", started.elapsed());
    let r = r.unwrap();
    assert_eq!((r.join.ok, r.join.failed), (18, 0), "{r:#?}");
    assert_eq!(r.join.first.count, 3, "one first join per meeting");
    assert!(r.join.direct.count > 0 && r.join.proxied.count > 0, "joins through owners and through proxies: {r:#?}");
    assert_eq!(r.join.direct.count + r.join.proxied.count, 15);
    assert_eq!((r.join.probe_direct.count, r.join.probe_proxied.count), (3, 3), "{r:#?}");
    assert!(r.meetings_moved > 0 && r.in_moved_meetings > 0, "the killed node owned meetings: {r:#?}");
    assert_eq!(r.affected, r.in_moved_meetings + r.through_killed_node);
    assert_eq!(r.kept_seat, r.affected, "everyone back with the same participant id: {r:#?}");
    assert_eq!((r.new_seat, r.not_back, r.unexpected_drops), (0, 0, 0), "{r:#?}");
    assert_eq!(r.back.count, r.affected as u64);
    assert_eq!(r.errors_total, 0, "{:?}", r.errors);
    // Every meeting lives on a live node afterwards.
    let after: u64 =
        r.nodes.iter().filter(|n| !n.killed).map(|n| n.meetings_after.expect("readyz of a live node")).sum();
    assert_eq!(after, 3, "{:#?}", r.nodes);
    assert_eq!(r.nodes.iter().filter(|n| n.killed).count(), 1);
    let text = report::human(&Machine::describe("test".into()), &Output::Cluster(Box::new(r)));
    assert!(text.contains("back with their seats"), "{text}");
    eprintln!("{text}");
}

/// The binary against a running cluster: `--targets` with the nodes' pids, the cluster's name and
/// Redis, JSON out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_against_running_nodes_with_targets() {
    let (pg, redis) = cluster::default_services();
    let c = cluster::spawn_cluster(&haven_debug_binary(), 3, None, &pg, &redis).await.unwrap();
    let t = &c.target;
    let urls: Vec<String> = t.nodes.iter().map(|n| format!("http://{}", n.addr)).collect();
    let pids: Vec<String> = t.nodes.iter().map(|n| n.pid.unwrap().to_string()).collect();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_haven-load"))
        .args(["--targets", &urls.join(","), "--target-pids", &pids.join(",")])
        .args(["--api-key", &t.api_key, "--program-secret", &t.secret, "--program-id", &t.program_id])
        .args(["--cluster-name", &t.name, "--redis-url", &t.redis_url, "--json"])
        .args(["cluster", "--participants", "9", "--meetings", "3", "--retry-ms", "200", "--back-within", "45"])
        .args(["--probes", "2"])
        .output()
        .await
        .unwrap();
    c.stop().await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "cluster");
    assert_eq!(v["join"]["ok"], 9, "{v:#}");
    assert!(v["affected"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(v["kept_seat"], v["affected"], "{v:#}");
    assert_eq!(v["errors_total"], 0, "{v:#}");
}
