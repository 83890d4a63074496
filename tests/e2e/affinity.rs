//! Sticky canary with an honest weight (`sessionAffinity`): a user stays on one revision
//! across requests, the share of users on the canary is its weight, raising the weight
//! only moves users from stable to canary, an abort sends everyone to stable at once, and
//! the bucket of a user is a fixed function of their id (every replica agrees).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use weir_config::model::Weight;
use weir_proxy::routing::affinity;

use crate::kit::*;
use crate::rollout::{post, rollout_config};

const STEPS: &str = "    canary:
      canaryService: app-canary
      stableService: app-stable
      steps:
        - setWeight: 20
        - pause: {}
        - setWeight: 50
        - pause: {}";

fn config(image: &str, v1: SocketAddr, v2: SocketAddr, affinity: &str) -> String {
    rollout_config(image, STEPS, &[(v1, "app:v1"), (v2, "app:v2")]).replace(
        "      rollout: app\n",
        &format!("      rollout: app\n      sessionAffinity: {affinity}\n"),
    )
}

async fn state(admin: SocketAddr) -> Value {
    serde_json::from_slice(&get(admin, "127.0.0.1", "/api/v1/rollouts/app").await.body)
        .unwrap_or_default()
}

async fn paused_at(admin: SocketAddr, weight: f64) {
    eventually(
        &format!("paused at {weight}%"),
        Duration::from_secs(10),
        || async {
            let s = state(admin).await;
            s["phase"] == "Paused" && s["canaryWeight"].as_f64() == Some(weight)
        },
    )
    .await;
}

/// GET / with `headers`: (backend, the affinity cookie set, if any).
async fn visit(web: SocketAddr, headers: &[(&str, &str)]) -> (String, Option<String>) {
    let r = get_with(&client(), web, "app.test", "/", headers).await;
    assert_eq!(r.status, 200);
    let cookie = r
        .header("set-cookie")
        .map(|c| c.split(';').next().unwrap().to_owned());
    (r.header("x-backend").unwrap_or("").to_owned(), cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_keeps_each_user_on_one_revision_and_the_weight_counts_users() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let aff = "{cookieName: weir-canary, maxAge: 3600}";
    let w = Weir::start(&config("app:v1", v1.addr(), v2.addr(), aff)).await;
    let (web, admin) = (w.web(), w.admin());
    w.write_config(&config("app:v2", v1.addr(), v2.addr(), aff));
    paused_at(admin, 20.0).await;

    // 1,000 new users: each gets a cookie; about 20% of them land on the canary.
    let mut users: Vec<(String, String)> = Vec::new();
    for _ in 0..1000 {
        let (b, cookie) = visit(web, &[]).await;
        let cookie = cookie.expect("a new user gets the affinity cookie");
        assert!(cookie.starts_with("weir-canary="));
        users.push((cookie, b));
    }
    let on_canary = users.iter().filter(|(_, b)| b == "v2").count();
    // Binomial(1000, 0.2): 200 ± 12.6; ±5 standard deviations.
    assert!(
        (137..=263).contains(&on_canary),
        "{on_canary} of 1000 users"
    );
    // Each user stays where they landed, and gets no new cookie.
    for (cookie, b) in users.iter().step_by(10) {
        for _ in 0..3 {
            assert_eq!(visit(web, &[("cookie", cookie)]).await, (b.clone(), None));
        }
    }

    // 50%: users only move from stable to canary.
    post(admin, "/api/v1/rollouts/app/promote").await;
    paused_at(admin, 50.0).await;
    let mut now_canary = 0;
    for (cookie, before) in &users {
        let (after, _) = visit(web, &[("cookie", cookie)]).await;
        assert!(
            !(before == "v2" && after == "v1"),
            "a canary user went back to stable"
        );
        now_canary += usize::from(after == "v2");
    }
    assert!(
        (420..=580).contains(&now_canary),
        "{now_canary} of 1000 users"
    );

    // An abort: everyone on stable at once, cookie or not.
    post(admin, "/api/v1/rollouts/app/abort").await;
    eventually("aborted", Duration::from_secs(10), || async {
        state(admin).await["aborted"] == true
    })
    .await;
    for (cookie, _) in users.iter().step_by(5) {
        assert_eq!(visit(web, &[("cookie", cookie)]).await.0, "v1");
    }
    assert!(w.shutdown().await);
}

/// With `header: x-user-id`, the revision of each user is the fixed function of their id
/// that any replica computes; requests without the header are split by the weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_header_picks_the_revision_every_replica_picks() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let aff = "{header: X-User-Id}";
    let w = Weir::start(&config("app:v1", v1.addr(), v2.addr(), aff)).await;
    let (web, admin) = (w.web(), w.admin());
    w.write_config(&config("app:v2", v1.addr(), v2.addr(), aff));
    paused_at(admin, 20.0).await;
    let weights = [
        Weight::from_basis_points(8000),
        Weight::from_basis_points(2000),
    ];
    let mut seen = BTreeMap::new();
    for i in 0..300 {
        let id = format!("user-{i}");
        let want = if affinity::leg(&weights, affinity::hash(id.as_bytes())) == 1 {
            "v2"
        } else {
            "v1"
        };
        let (got, cookie) = visit(web, &[("x-user-id", &id)]).await;
        assert_eq!((got.as_str(), cookie), (want, None), "{id}");
        *seen.entry(want).or_insert(0) += 1;
    }
    assert!(seen.get("v2").copied().unwrap_or(0) > 20, "{seen:?}");
    // Without the header: the exact split, 20 of every 100.
    let mut canary = 0;
    for _ in 0..100 {
        canary += usize::from(visit(web, &[]).await.0 == "v2");
    }
    assert!((19..=21).contains(&canary), "{canary}");
    assert!(w.shutdown().await);
}
