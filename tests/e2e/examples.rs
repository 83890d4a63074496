//! The shared examples load and behave as their comments say.

use std::path::Path;

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
