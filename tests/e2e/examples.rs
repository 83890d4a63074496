//! The shared examples load and behave as their comments say.

use std::path::Path;
use std::time::Duration;

use crate::kit::*;

fn example(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// static-split.yaml: "90% to static-v1, 10% to static-v2, exact in every window of 100
/// requests". Its fixed ports are swapped for ephemeral ones; nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_split_example() {
    let v1 = backend("static-v1").await;
    let v2 = backend("static-v2").await;
    let yaml = example("static-split.yaml")
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:9101", &v1.addr().to_string())
        .replace("127.0.0.1:9102", &v2.addr().to_string())
        .replace(
            "spec:\n  listeners:",
            "spec:\n  debugHeaders: true\n  listeners:",
        );
    let weir = Weir::start(&yaml).await;
    let mut results = drive(weir.web(), "example.test", 64, 3000).await;
    assert!(results.iter().all(|r| r.0 == 200));
    results.sort_by_key(|r| r.1.unwrap());
    let is_v2: Vec<bool> = results.iter().map(|r| r.2 == "static-v2").collect();
    assert!(worst_deviation(&is_v2, 0.1, 100) <= 1.0);
    assert_eq!(is_v2.iter().filter(|b| **b).count(), 300);
    // Every window of 100 holds exactly 10: 0.1·100 is whole, so "within one" is exact here.
    assert!(worst_deviation(&is_v2, 0.1, 100) < 1.0);
    weir.shutdown().await;
}

/// quickstart.yaml: "edit the Rollout's image to my-app:v2.0.0 and save: the canary
/// begins", measured by the proxy itself. Time is compressed (the pauses and intervals
/// are shortened) and load is driven; nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_example() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let yaml = example("quickstart.yaml")
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:9001", &v1.addr().to_string())
        .replace("127.0.0.1:9002", &v2.addr().to_string())
        .replace("duration: 10s", "duration: 1s")
        .replace("interval: 2s", "interval: 500ms");
    let weir = Weir::start(&yaml).await;
    let st = || {
        let a = weir.admin();
        async move {
            serde_json::from_slice::<serde_json::Value>(
                &get(a, "127.0.0.1", "/api/v1/rollouts/my-app").await.body,
            )
            .unwrap()
        }
    };
    eventually("v1 is stable at once", Duration::from_secs(5), || async {
        st().await["phase"] == "Healthy"
    })
    .await;
    // Host: my-app-canary and my-app-stable reach the revisions directly.
    assert_eq!(
        get(weir.web(), "my-app-stable", "/")
            .await
            .header("x-backend"),
        Some("v1")
    );
    let (stop, load) = crate::rollout::load(weir.web(), 200.0);
    let i = yaml.find("kind: Rollout").unwrap();
    let edited = format!(
        "{}{}",
        &yaml[..i],
        yaml[i..].replacen("image: my-app:v1.0.0", "image: my-app:v2.0.0", 1)
    );
    weir.write_config(&edited);
    eventually(
        "the canary begins at 5%",
        Duration::from_secs(10),
        || async { st().await["canaryWeight"] == 5.0 },
    )
    .await;
    assert_eq!(
        get(weir.web(), "my-app-canary", "/")
            .await
            .header("x-backend"),
        Some("v2")
    );
    eventually("promoted", Duration::from_secs(60), || async {
        let s = st().await;
        s["phase"] == "Healthy" && s["stableRevision"] == "my-app:v2.0.0"
    })
    .await;
    stop.cancel();
    let report = load.await.unwrap();
    assert!(
        report.by_status.keys().all(|s| *s == 200),
        "{:?}",
        report.by_status
    );
    weir.shutdown().await;
}

/// cluster.yaml: a replica of a cluster, here alone with a one-member etcd, leads and
/// runs the rollout's first step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_example() {
    let Some(bin) = weir_fixtures::require_etcd() else {
        return;
    };
    let etcd = weir_fixtures::EtcdCluster::start(&bin, 1)
        .await
        .expect("etcd starts");
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let endpoints = format!("endpoints: [\"{}\"]", etcd.endpoints()[0]);
    let yaml = example("cluster.yaml")
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("0.0.0.0:9901", "127.0.0.1:0")
        .replace(
            "endpoints: [\"http://10.0.0.11:2379\", \"http://10.0.0.12:2379\", \"http://10.0.0.13:2379\"]",
            &endpoints,
        )
        .replace("10.0.1.21:8080", &v1.addr().to_string())
        .replace("10.0.1.22:8080", &v2.addr().to_string());
    assert!(yaml.contains(&endpoints));
    // First sight of my-app:v1 (stable at once), then the update to my-app:v2.
    let weir =
        Weir::start(&yaml.replace("image: \"my-app:v2\"}]}", "image: \"my-app:v1\"}]}")).await;
    eventually("the replica leads", Duration::from_secs(10), || async {
        let r = get(weir.admin(), "127.0.0.1", "/api/v1/cluster").await;
        serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(|c| {
            c["leading"] == true && c["members"].as_array().is_some_and(|m| m.len() == 1)
        })
    })
    .await;
    eventually("my-app:v1 is stable", Duration::from_secs(10), || async {
        let r = get(weir.admin(), "127.0.0.1", "/api/v1/rollouts/my-app").await;
        serde_json::from_slice::<serde_json::Value>(&r.body)
            .is_ok_and(|s| s["stableRevision"] == "my-app:v1")
    })
    .await;
    weir.write_config(&yaml);
    eventually("my-app is at 10%", Duration::from_secs(10), || async {
        let r = get(weir.admin(), "127.0.0.1", "/api/v1/rollouts/my-app").await;
        serde_json::from_slice::<serde_json::Value>(&r.body)
            .is_ok_and(|s| s["canaryWeight"] == 10.0)
    })
    .await;
    weir.shutdown().await;
}
