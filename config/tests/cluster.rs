//! `spec.cluster` on the Proxy: what it becomes, and its errors at file, line and field.

#[allow(dead_code)]
mod gateway_support;

use gateway_support::*;
use weir_config::model::ClusterSettings;

fn proxy(cluster: &str) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  listeners: [{{name: web, address: \"127.0.0.1:8080\"}}]\n  cluster:\n    {cluster}\n"
    )
}

#[test]
fn cluster_settings() {
    let c = |y: &str| ok(&proxy(y)).proxy.cluster.clone();
    assert_eq!(
        c(
            "etcd: {endpoints: [\"http://127.0.0.1:2379\", \"http://127.0.0.1:22379/\", \"etcd-3:32379\"]}"
        ),
        Some(ClusterSettings {
            endpoints: vec![
                "127.0.0.1:2379".into(),
                "127.0.0.1:22379".into(),
                "etcd-3:32379".into()
            ],
            prefix: "/weir".into(),
        })
    );
    assert_eq!(
        c("etcd: {endpoints: [\"http://10.0.0.1:2379\"], prefix: /edge/eu/}")
            .unwrap()
            .prefix,
        "/edge/eu"
    );
    let without = "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {name: edge}\nspec:\n  listeners: [{name: web, address: \"127.0.0.1:8080\"}]\n";
    assert_eq!(ok(without).proxy.cluster, None);
}

#[test]
fn cluster_errors_name_line_and_field() {
    at(&issues(&proxy("{}")), 6, "spec.cluster.etcd", "is required");
    at(
        &issues(&proxy("etcd: {endpoints: []}")),
        7,
        "spec.cluster.etcd.endpoints",
        "names no etcd member",
    );
    at(
        &issues(&proxy("etcd: {endpoints: [\"https://127.0.0.1:2379\"]}")),
        7,
        "spec.cluster.etcd.endpoints[0]",
        "TLS to etcd is not supported",
    );
    at(
        &issues(&proxy("etcd: {endpoints: [\"http://127.0.0.1\"]}")),
        7,
        "spec.cluster.etcd.endpoints[0]",
        "is not an etcd client URL",
    );
    at(
        &issues(&proxy(
            "etcd: {endpoints: [\"127.0.0.1:2379\"], prefix: weir}",
        )),
        7,
        "spec.cluster.etcd.prefix",
        "starts with /",
    );
    at(
        &issues(&proxy(
            "etcd: {endpoints: [\"127.0.0.1:2379\"], leader: me}",
        )),
        7,
        "spec.cluster.etcd.leader",
        "unknown field",
    );
}
