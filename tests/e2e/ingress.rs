//! Kubernetes Ingresses served as ingress-nginx serves them, end to end on real sockets:
//! the canary annotations with the cases of ingress-nginx's own e2e suite
//! (kubernetes/ingress-nginx `test/e2e/annotations/canary.go`), the annotations people
//! depend on most, path types and host servers, class selection, and a Rollout split
//! through its stable Ingress (`trafficRouting.nginx`).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use weir_fixtures::echo::{EchoBackend, EchoContext};

use crate::kit::*;
use crate::rollout::post;

/// A Proxy with one plain listener `web` on port 0 that serves the Ingresses of class
/// `nginx` besides `weir`.
fn edge(extra_listeners: &str) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  debugHeaders: true\n  ingressClassNames: [nginx]\n  listeners:\n    - {{name: web, address: \"127.0.0.1:0\"}}\n{extra_listeners}  admin: {{address: \"127.0.0.1:0\"}}\n"
    )
}

/// A Kubernetes Service `name` (port 80 named `http`) with one EndpointSlice on `addr`.
fn kube_service(name: &str, addr: SocketAddr) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
endpoints: [{{addresses: ["{ip}"]}}]
ports: [{{name: http, port: {port}}}]
"#,
        ip = addr.ip(),
        port = addr.port()
    )
}

/// An Ingress `name` of class nginx for `host` and `/` (Prefix) to `service`, with
/// `annotations` (YAML map lines, indented by four spaces).
fn ingress(name: &str, host: &str, service: &str, annotations: &str) -> String {
    format!(
        r#"---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  annotations:
    kubernetes.io/ingress.class: nginx
{annotations}spec:
  rules:
    - host: {host}
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {{service: {{name: {service}, port: {{number: 80}}}}}}
"#
    )
}

/// The canary annotations, one per line.
fn canary(pairs: &[(&str, &str)]) -> String {
    let mut s = "    nginx.ingress.kubernetes.io/canary: \"true\"\n".to_owned();
    for (k, v) in pairs {
        s.push_str(&format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"));
    }
    s
}

/// Which backend answered a GET with these headers.
async fn who(addr: SocketAddr, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = get_with(&client(), addr, host, "/", headers).await;
    (r.status, r.header("x-backend").unwrap_or("").to_owned())
}

/// ingress-nginx's canary rules, case by case as its e2e suite checks them: header
/// (no value: `always`/`never`; a value; a pattern; the value over the pattern), cookie,
/// header over cookie, weight 0 and 100, weight with a total, header `never` over weight
/// 100; and a canary that only applies where a main Ingress has the same host and path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_annotations_follow_ingress_nginx() {
    let main = backend("main").await;
    let can = backend("canary").await;
    let cases: &[(&str, Vec<(&str, &str)>)] = &[
        ("header.test", vec![("canary-by-header", "CanaryByHeader")]),
        (
            "value.test",
            vec![
                ("canary-by-header", "CanaryByHeader"),
                ("canary-by-header-value", "DoCanary"),
            ],
        ),
        (
            "pattern.test",
            vec![
                ("canary-by-header", "CanaryByHeader"),
                ("canary-by-header-pattern", "^Do[A-Z][a-z]+y$"),
            ],
        ),
        (
            "value-pattern.test",
            vec![
                ("canary-by-header", "CanaryByHeader"),
                ("canary-by-header-value", "DoCanary"),
                ("canary-by-header-pattern", "^Do[A-Z][a-z]+y$"),
            ],
        ),
        (
            "value-cookie.test",
            vec![
                ("canary-by-header", "CanaryByHeader"),
                ("canary-by-header-value", "DoCanary"),
                ("canary-by-cookie", "CanaryByCookie"),
            ],
        ),
        ("cookie.test", vec![("canary-by-cookie", "CanaryByCookie")]),
        ("weight0.test", vec![("canary-weight", "0")]),
        ("weight100.test", vec![("canary-weight", "100")]),
        (
            "total.test",
            vec![("canary-weight", "1000"), ("canary-weight-total", "1000")],
        ),
        (
            "header-weight.test",
            vec![
                ("canary-by-header", "CanaryByHeader"),
                ("canary-weight", "100"),
            ],
        ),
    ];
    let mut yaml = edge("");
    yaml.push_str(&kube_service("main", main.addr()));
    yaml.push_str(&kube_service("canary", can.addr()));
    for (i, (host, ann)) in cases.iter().enumerate() {
        yaml.push_str(&ingress(&format!("main-{i}"), host, "main", ""));
        yaml.push_str(&ingress(
            &format!("canary-{i}"),
            host,
            "canary",
            &canary(ann),
        ));
    }
    // A canary for a host no main Ingress serves: not a server of its own.
    yaml.push_str(&ingress(
        "lonely-canary",
        "lonely.test",
        "canary",
        &canary(&[("canary-weight", "100")]),
    ));
    let w = Weir::start(&yaml).await;
    let web = w.web();
    let h = "canarybyheader";
    let c = "cookie";
    let want = [
        // Header without a value: always and never decide; another value falls through
        // (to weight 0).
        ("header.test", vec![(h, "always")], "canary"),
        ("header.test", vec![(h, "never")], "main"),
        ("header.test", vec![(h, "badheadervalue")], "main"),
        ("header.test", vec![], "main"),
        // Header with a value: only that value; `always` means nothing then.
        ("value.test", vec![(h, "DoCanary")], "canary"),
        ("value.test", vec![(h, "always")], "main"),
        ("value.test", vec![(h, "never")], "main"),
        ("value.test", vec![(h, "otherheadervalue")], "main"),
        // Header with a pattern.
        ("pattern.test", vec![(h, "DoCanary")], "canary"),
        ("pattern.test", vec![(h, "DoOtherCanary")], "main"),
        ("pattern.test", vec![(h, "always")], "main"),
        // The value wins over the pattern: the pattern is not used.
        ("value-pattern.test", vec![(h, "DoCanary")], "canary"),
        ("value-pattern.test", vec![(h, "DoAnything")], "main"),
        // The header before the cookie.
        (
            "value-cookie.test",
            vec![(h, "DoCanary"), (c, "CanaryByCookie=never")],
            "canary",
        ),
        (
            "value-cookie.test",
            vec![(h, "otherheadervalue"), (c, "CanaryByCookie=always")],
            "canary",
        ),
        (
            "value-cookie.test",
            vec![(h, "otherheadervalue"), (c, "CanaryByCookie=never")],
            "main",
        ),
        // The cookie: always and never, among other cookies; another value falls through.
        (
            "cookie.test",
            vec![(c, "a=b; CanaryByCookie=always")],
            "canary",
        ),
        (
            "cookie.test",
            vec![(c, "CanaryByCookie=never; x=y")],
            "main",
        ),
        (
            "cookie.test",
            vec![(c, "CanaryByCookie=badcookievalue")],
            "main",
        ),
        ("cookie.test", vec![(c, "NotCanaryByCookie=always")], "main"),
        ("weight0.test", vec![], "main"),
        ("weight100.test", vec![], "canary"),
        ("total.test", vec![], "canary"),
        // `never` stops the request before the weight.
        ("header-weight.test", vec![(h, "never")], "main"),
        ("header-weight.test", vec![], "canary"),
    ];
    for (host, headers, backend) in want {
        for _ in 0..3 {
            assert_eq!(
                who(web, host, &headers).await,
                (200, backend.to_owned()),
                "{host} with {headers:?}"
            );
        }
    }
    // A canary alone is no server: 404, as ingress-nginx answers.
    assert_eq!(get(web, "lonely.test", "/").await.status, 404);
    assert!(w.shutdown().await);
}

/// `canary-weight` uses weir's exact split: at 20 of 100, every 100 consecutive
/// requests give the canary 20, within one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_weight_is_an_exact_share() {
    let main = backend("main").await;
    let can = backend("canary").await;
    let mut yaml = edge("");
    yaml.push_str(&kube_service("main", main.addr()));
    yaml.push_str(&kube_service("canary", can.addr()));
    yaml.push_str(&ingress("app", "app.test", "main", ""));
    yaml.push_str(&ingress(
        "app-canary",
        "app.test",
        "canary",
        &canary(&[("canary-weight", "20")]),
    ));
    let w = Weir::start(&yaml).await;
    let got = drive(w.web(), "app.test", 4, 1000).await;
    assert!(got.iter().all(|(s, _, _)| *s == 200));
    let mut seq: Vec<(u64, bool)> = got
        .iter()
        .map(|(_, s, b)| (s.expect("x-weir-split-seq"), b == "canary"))
        .collect();
    seq.sort();
    let canary: Vec<bool> = seq.iter().map(|(_, c)| *c).collect();
    assert_eq!(canary.iter().filter(|c| **c).count(), 200);
    assert!(worst_deviation(&canary, 0.2, 100) <= 1.0);
    assert!(w.shutdown().await);
}

/// A GET to the echo backend through weir: status, the echoed JSON (or Null), headers.
async fn echo(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value, http::HeaderMap) {
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(http::header::HOST, host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    let resp = c.request(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        headers,
    )
}

/// An Ingress of class nginx with `annotations` and `paths` (YAML list items under
/// `paths:`, indented by ten spaces), for `host` (none: every host).
fn ingress_paths(name: &str, host: Option<&str>, annotations: &str, paths: &str) -> String {
    let host = host.map_or(String::new(), |h| format!("\n      host: {h}"));
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations:\n    weir.test/note: \"-\"\n{annotations}spec:\n  ingressClassName: nginx\n  rules:\n    - http:\n        paths:\n{paths}{host}\n"
    )
}

/// A path item to Service `svc`.
fn path(p: &str, ty: &str, svc: &str) -> String {
    format!(
        "          - {{path: \"{p}\", pathType: {ty}, backend: {{service: {{name: {svc}, port: {{name: http}}}}}}}}\n"
    )
}

/// The annotations people depend on, each on a host of its own, answered as
/// ingress-nginx answers: rewrite-target with capture groups, use-regex order,
/// app-root, ssl-redirect and force-ssl-redirect, permanent and temporal redirects,
/// proxy-body-size, upstream-vhost, x-forwarded-prefix, CORS, source ranges; a snippet
/// refused (the Ingress not served); path types; a host without the path asked for
/// answering 404 rather than falling through to a rule without a host; the Ingress
/// written first keeping a path two Ingresses claim; and Ingresses of a class weir does
/// not serve left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_behave_as_in_ingress_nginx() {
    let pod = EchoBackend::start(EchoContext {
        pod: "echo".into(),
        ..EchoContext::default()
    })
    .await
    .unwrap();
    let other = backend("other").await;
    let a = |k: &str, v: &str| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n");
    let mut yaml = edge("");
    yaml.push_str(&kube_service("echo", pod.http_addr()));
    yaml.push_str(&kube_service("other", other.addr()));
    let ing = |name: &str, host: &str, ann: String, paths: String| {
        ingress_paths(name, Some(host), &ann, &paths)
    };
    yaml.push_str(&ing(
        "rewrite",
        "rewrite.test",
        a("rewrite-target", "/$2"),
        path("/something(/|$)(.*)", "ImplementationSpecific", "echo"),
    ));
    yaml.push_str(&ing(
        "regex",
        "regex.test",
        a("use-regex", "true"),
        path("/api/v[0-9]+", "ImplementationSpecific", "other") + &path("/api", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "approot",
        "approot.test",
        a("app-root", "/app1"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "force",
        "force.test",
        a("force-ssl-redirect", "true"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "moved",
        "moved.test",
        a("permanent-redirect", "https://www.example.com/new"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "moved308",
        "moved308.test",
        a("permanent-redirect", "https://www.example.com/") + &a("permanent-redirect-code", "308"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "temp",
        "temp.test",
        a("temporal-redirect", "https://temp.example.com/"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "body",
        "body.test",
        a("proxy-body-size", "1k"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "vhost",
        "vhost.test",
        a("upstream-vhost", "internal.example.com") + &a("x-forwarded-prefix", "/shop"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "slow",
        "slow.test",
        a("proxy-read-timeout", "1"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "cors",
        "cors.test",
        a("enable-cors", "true")
            + &a("cors-allow-origin", "https://app.example.com")
            + &a("cors-max-age", "600"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "allowed",
        "allowed.test",
        a("whitelist-source-range", "127.0.0.0/8"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "walled",
        "walled.test",
        a("whitelist-source-range", "10.0.0.0/8, 192.168.0.0/16"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "denied",
        "denied.test",
        a("denylist-source-range", "127.0.0.1/32"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "snippet",
        "snippet.test",
        a("configuration-snippet", "more_set_headers \\\"X: y\\\";"),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "types",
        "types.test",
        String::new(),
        path("/exact", "Exact", "echo")
            + &path("/prefix/", "Prefix", "echo")
            + &path("/specific", "ImplementationSpecific", "other"),
    ));
    // The Ingress written first keeps the path both claim.
    yaml.push_str(&ing(
        "first",
        "dup.test",
        String::new(),
        path("/", "Prefix", "echo"),
    ));
    yaml.push_str(&ing(
        "second",
        "dup.test",
        String::new(),
        path("/", "Prefix", "other"),
    ));
    // A rule without a host takes hosts no rule names, not paths another host lacks.
    yaml.push_str(&ingress_paths(
        "catchall",
        None,
        "",
        &path("/", "Prefix", "other"),
    ));
    // Another controller's Ingress.
    yaml.push_str(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: theirs}\nspec:\n  ingressClassName: traefik\n  rules:\n    - host: theirs.test\n      http:\n        paths:\n          - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}\n",
    );
    let w = Weir::start(&yaml).await;
    let web = w.web();

    // rewrite-target: the whole path becomes /$2, the query kept.
    for (asked, sent) in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new?x=1", "/new?x=1"),
        ("/SOMETHING/new", "/new"),
    ] {
        let (s, e, _) = echo(web, "GET", "rewrite.test", asked, &[], b"").await;
        assert_eq!((s, e["path"].as_str()), (200, Some(sent)), "{asked}");
    }
    // use-regex: the longer expression first; case-insensitive, anchored at the start.
    let (s, _, h) = echo(web, "GET", "regex.test", "/API/V2/x", &[], b"").await;
    assert_eq!(
        (s, h.get("x-backend").map(|v| v.to_str().unwrap())),
        (200, Some("other"))
    );
    let (s, e, _) = echo(web, "GET", "regex.test", "/api/x", &[], b"").await;
    assert_eq!((s, e["path"].as_str()), (200, Some("/api/x")));
    // app-root: / only, on the port the request came in on.
    let (s, _, h) = echo(web, "GET", "approot.test", "/", &[], b"").await;
    let app1 = format!("http://approot.test:{}/app1", web.port());
    assert_eq!((s, h["location"].to_str().unwrap()), (302, app1.as_str()));
    let (s, e, _) = echo(web, "GET", "approot.test", "/other", &[], b"").await;
    assert_eq!((s, e["path"].as_str()), (200, Some("/other")));
    // force-ssl-redirect: 308 to https, path and query kept.
    let (s, _, h) = echo(web, "GET", "force.test", "/a?b=c", &[], b"").await;
    assert_eq!(s, 308);
    assert_eq!(h["location"], "https://force.test/a?b=c");
    // Permanent and temporal redirects: the URL as written.
    for (host, code, loc) in [
        ("moved.test", 301, "https://www.example.com/new"),
        ("moved308.test", 308, "https://www.example.com/"),
        ("temp.test", 302, "https://temp.example.com/"),
    ] {
        let (s, _, h) = echo(web, "GET", host, "/x?y=z", &[], b"").await;
        assert_eq!((s, h["location"].to_str().unwrap()), (code, loc), "{host}");
    }
    // proxy-body-size 1k: 1024 bytes pass, 1025 get 413.
    let (s, _, _) = echo(web, "POST", "body.test", "/", &[], &[b'x'; 1024]).await;
    assert_eq!(s, 200);
    let (s, _, _) = echo(web, "POST", "body.test", "/", &[], &[b'x'; 1025]).await;
    assert_eq!(s, 413);
    // proxy-read-timeout 1: a backend 3 s late is a 504 after one.
    let (s, _, _) = echo(web, "GET", "slow.test", "/?delay=3s", &[], b"").await;
    assert_eq!(s, 504);
    let (s, _, _) = echo(web, "GET", "slow.test", "/?delay=10ms", &[], b"").await;
    assert_eq!(s, 200);
    // A body without a length is counted as it comes: 413 once past the limit (over
    // HTTP/1.1 chunked, and over HTTP/2), and nothing past it goes upstream.
    assert_eq!(chunked_post(web, "body.test", 2).await, 200);
    assert_eq!(chunked_post(web, "body.test", 3).await, 413);
    assert_eq!(h2_post(web, "body.test", 2).await, 200);
    assert_eq!(h2_post(web, "body.test", 3).await, 413);
    // upstream-vhost and x-forwarded-prefix.
    let (s, e, _) = echo(web, "GET", "vhost.test", "/", &[], b"").await;
    assert_eq!(s, 200);
    assert_eq!(e["host"], "internal.example.com");
    assert_eq!(e["headers"]["X-Forwarded-Prefix"][0], "/shop");
    // CORS: a preflight answered by weir; a real request gets the headers.
    let pre = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "PUT"),
    ];
    let (s, e, h) = echo(web, "OPTIONS", "cors.test", "/", &pre, b"").await;
    assert_eq!(s, 200);
    assert_eq!(e, Value::Null, "a preflight does not go upstream");
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    let (s, _, h) = echo(web, "GET", "cors.test", "/", &pre[..1], b"").await;
    assert_eq!(s, 200);
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    let (_, _, h) = echo(
        web,
        "GET",
        "cors.test",
        "/",
        &[("origin", "https://evil.example")],
        b"",
    )
    .await;
    assert!(h.get("access-control-allow-origin").is_none());
    // Source ranges, from 127.0.0.1.
    assert_eq!(echo(web, "GET", "allowed.test", "/", &[], b"").await.0, 200);
    assert_eq!(echo(web, "GET", "walled.test", "/", &[], b"").await.0, 403);
    assert_eq!(echo(web, "GET", "denied.test", "/", &[], b"").await.0, 403);
    // A snippet: the Ingress is not served; its host falls to the rule without a host.
    let (s, _, h) = echo(web, "GET", "snippet.test", "/", &[], b"").await;
    assert_eq!((s, h["x-backend"].to_str().unwrap()), (200, "other"));
    // Path types.
    for (p, want) in [
        ("/exact", Some("echo")),
        ("/exact/", None),
        ("/prefix", Some("echo")),
        ("/prefix/a", Some("echo")),
        ("/prefixes", None),
        ("/specific", Some("other")),
        ("/specifically", Some("other")),
    ] {
        let (s, _, h) = echo(web, "GET", "types.test", p, &[], b"").await;
        match want {
            // The echo pod sends no x-backend.
            Some(b) => assert_eq!(
                (
                    s,
                    h.get("x-backend").map_or("echo", |v| v.to_str().unwrap())
                ),
                (200, b),
                "{p}"
            ),
            // The host has rules: a path it lacks is 404, not the rule without a host.
            None => assert_eq!(s, 404, "{p}"),
        }
    }
    let (s, _, h) = echo(web, "GET", "dup.test", "/", &[], b"").await;
    assert_eq!(
        (s, h.get("x-backend")),
        (200, None),
        "the first Ingress keeps the path"
    );
    let (s, _, h) = echo(web, "GET", "nobody.test", "/", &[], b"").await;
    assert_eq!((s, h["x-backend"].to_str().unwrap()), (200, "other"));
    let (s, _, h) = echo(web, "GET", "theirs.test", "/", &[], b"").await;
    assert_eq!(
        (s, h["x-backend"].to_str().unwrap()),
        (200, "other"),
        "class traefik is not served"
    );
    assert!(w.shutdown().await);
}

/// Without a Proxy document, a config of Ingresses alone is valid and served on :80
/// (and :443 when an Ingress has TLS); `weir check` reports what it does not honour.
#[test]
fn ingress_reports_name_what_is_not_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ingress.yaml");
    let mut yaml = String::new();
    yaml.push_str(&kube_service("web", "127.0.0.1:9".parse().unwrap()));
    yaml.push_str(&ingress(
        "web",
        "www.test",
        "web",
        "    nginx.ingress.kubernetes.io/affinity: cookie\n    nginx.ingress.kubernetes.io/proxy-buffering: \"on\"\n",
    ));
    yaml.push_str(&ingress(
        "snip",
        "snip.test",
        "web",
        "    nginx.ingress.kubernetes.io/server-snippet: \"return 200;\"\n",
    ));
    // Class weir: served without a Proxy document listing other classes.
    let yaml = yaml.replace("ingress.class: nginx", "ingress.class: weir");
    std::fs::write(&file, yaml.trim_start_matches("---\n")).unwrap();
    let model = weir_config::load(&file).expect("valid");
    let names: Vec<&str> = model
        .proxy
        .listeners
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(names, ["ingress-http"]);
    assert_eq!(model.proxy.listeners[0].address.port(), 80);
    let said = |needle: &str| model.notices.iter().any(|n| n.to_string().contains(needle));
    assert!(said("nginx.ingress.kubernetes.io/affinity is not honoured"));
    assert!(said(
        "nginx.ingress.kubernetes.io/proxy-buffering is not needed"
    ));
    assert!(said(
        "nginx.ingress.kubernetes.io/server-snippet is refused"
    ));
    assert!(
        model.proxy.routes.iter().all(|r| !r.name.contains("snip")),
        "a refused Ingress is not served"
    );
}

/// A Rollout with `trafficRouting.nginx.stableIngress` is split on that Ingress by its
/// steps, with `additionalIngressAnnotations` (canary-by-header) applied while there is
/// a canary; no canary Ingress is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_splits_its_stable_ingress() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let config = |image: &str| {
        format!(
            r#"{edge}---
apiVersion: weir.dev/v1alpha1
kind: Service
metadata: {{name: app}}
spec:
  endpoints:
    - {{address: "{a1}", image: "app:v1"}}
    - {{address: "{a2}", image: "app:v2"}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: app}}
spec:
  ingressClassName: nginx
  rules:
    - host: app.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: app-stable, port: {{number: 80}}}}}}}}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: app}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: "{image}"}}]}}
  strategy:
    canary:
      canaryService: app-canary
      stableService: app-stable
      trafficRouting:
        nginx:
          stableIngress: app
          additionalIngressAnnotations:
            canary-by-header: X-Canary
      steps:
        - setWeight: 20
        - pause: {{}}
"#,
            edge = edge(""),
            a1 = v1.addr(),
            a2 = v2.addr(),
        )
    };
    let w = Weir::start(&config("app:v1")).await;
    let web = w.web();
    assert_eq!(who(web, "app.test", &[]).await, (200, "v1".into()));
    // No canary yet: the header has nowhere else to go.
    assert_eq!(
        who(web, "app.test", &[("x-canary", "always")]).await,
        (200, "v1".into())
    );
    w.write_config(&config("app:v2"));
    eventually(
        "the rollout reaches setWeight 20",
        std::time::Duration::from_secs(10),
        || async {
            let r = get(w.admin(), "127.0.0.1", "/api/v1/rollouts/app").await;
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            v["phase"] == "Paused" && v["currentStepIndex"] == 1
        },
    )
    .await;
    let got = drive(web, "app.test", 2, 200).await;
    let to_v2 = got
        .iter()
        .filter(|(s, _, b)| *s == 200 && b == "v2")
        .count();
    assert!(
        (39..=41).contains(&to_v2),
        "{to_v2} of 200 went to the canary"
    );
    assert_eq!(
        who(web, "app.test", &[("x-canary", "always")]).await,
        (200, "v2".into())
    );
    assert_eq!(
        who(web, "app.test", &[("x-canary", "never")]).await,
        (200, "v1".into())
    );
    post(w.admin(), "/api/v1/rollouts/app/promote?full=true").await;
    eventually("promoted", std::time::Duration::from_secs(10), || async {
        who(web, "app.test", &[]).await == (200, "v2".into())
    })
    .await;
    assert!(w.shutdown().await);
}

/// An Ingress's `tls` Secret is served by SNI on the Proxy's TLS listener, and plain HTTP
/// to its host redirects there (308, `ssl-redirect`), unless the Ingress turns that off;
/// a host without TLS is served on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_secrets_by_sni_and_ssl_redirect() {
    use crate::gateway_conformance::{tls_client, tls_secret};
    let pod = EchoBackend::start(EchoContext {
        pod: "echo".into(),
        ..EchoContext::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The listener's own certificate, for names no Secret claims.
    let own = rcgen::generate_simple_self_signed(vec!["default.test".to_owned()]).unwrap();
    std::fs::write(dir.path().join("default.pem"), own.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("default-key.pem"),
        own.signing_key.serialize_pem(),
    )
    .unwrap();
    let (secret, ca) = tls_secret("default", "secure-tls", &["secure.test"]);
    let mut yaml = edge(
        "    - {name: websecure, address: \"127.0.0.1:0\", tls: {certificates: [{certFile: default.pem, keyFile: default-key.pem}]}}\n",
    );
    yaml.push_str(&kube_service("echo", pod.http_addr()));
    yaml.push_str("---\n");
    yaml.push_str(&secret);
    let tls = |name: &str, host: &str, ann: &str| {
        format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{ann}}}\nspec:\n  ingressClassName: nginx\n  tls: [{{hosts: [{host}], secretName: secure-tls}}]\n  rules:\n    - host: {host}\n      http:\n        paths:\n          - {{path: /, pathType: Prefix, backend: {{service: {{name: echo, port: {{number: 80}}}}}}}}\n"
        )
    };
    yaml.push_str(&tls("secure", "secure.test", ""));
    yaml.push_str(&tls(
        "lax",
        "lax.test",
        "nginx.ingress.kubernetes.io/ssl-redirect: \"false\"",
    ));
    yaml.push_str(&ingress("plain", "plain.test", "echo", ""));
    let w = Weir::start_in(dir, "weir.yaml", &yaml).await;
    let web = w.web();
    let secure = w.app().listener("websecure").expect("websecure");

    let (s, _, h) = echo(web, "GET", "secure.test", "/a?b=1", &[], b"").await;
    assert_eq!(
        (s, h["location"].to_str().unwrap()),
        (308, "https://secure.test/a?b=1")
    );
    assert_eq!(echo(web, "GET", "lax.test", "/", &[], b"").await.0, 200);
    assert_eq!(echo(web, "GET", "plain.test", "/", &[], b"").await.0, 200);

    // Over TLS with SNI secure.test: the Secret's certificate (the client trusts only its
    // CA), and the request served.
    let tcp = tokio::net::TcpStream::connect(secure).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls_client(&ca))
        .connect(
            rustls::pki_types::ServerName::try_from("secure.test").unwrap(),
            tcp,
        )
        .await
        .expect("the Secret's certificate for secure.test");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/over-tls")
        .header(http::header::HOST, "secure.test")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["path"], "/over-tls");
    // Another name gets the listener's own certificate, which that CA did not sign.
    let tcp = tokio::net::TcpStream::connect(secure).await.unwrap();
    let other = tokio_rustls::TlsConnector::from(tls_client(&ca))
        .connect(
            rustls::pki_types::ServerName::try_from("default.test").unwrap(),
            tcp,
        )
        .await;
    assert!(other.is_err(), "default.test is not served the Secret");
    assert!(w.shutdown().await);
}

fn ingress_example() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ingress-canary.yaml");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// examples/ingress-canary.yaml loads with no warning, and its Ingress path is the
/// Rollout's.
#[test]
fn the_ingress_canary_example_loads() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ingress-canary.yaml");
    let m = weir_config::load(&p).unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<&str> = m
        .notices
        .iter()
        .filter(|n| n.warning)
        .map(|n| n.message.as_str())
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    let rollout: Vec<&str> = m
        .proxy
        .routes
        .iter()
        .filter(|r| r.target == weir_config::model::RouteTarget::Rollout("my-app".into()))
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(rollout, ["default/my-app/my-app.example.com/"]);
}

/// examples/ingress-canary.yaml: "edit the Rollout's image to my-app:v2.0.0 and save: the
/// canary begins". Fixed addresses are swapped for free ones, time is compressed and load
/// is driven; nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_canary_example_runs() {
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;
    use weir_fixtures::load::{LoadSpec, Mode, run};
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let yaml = ingress_example()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:9001", &v1.addr().to_string())
        .replace("127.0.0.1:9002", &v2.addr().to_string())
        .replace("duration: 10s", "duration: 1s")
        .replace("interval: 2s", "interval: 500ms");
    let w = Weir::start(&yaml).await;
    let web = w.web();
    let st = || {
        let a = w.admin();
        async move {
            serde_json::from_slice::<Value>(
                &get(a, "127.0.0.1", "/api/v1/rollouts/my-app").await.body,
            )
            .unwrap_or_default()
        }
    };
    let host = "my-app.example.com";
    eventually("v1 is stable at once", Duration::from_secs(5), || async {
        st().await["phase"] == "Healthy"
    })
    .await;
    assert_eq!(get(web, host, "/").await.header("x-backend"), Some("v1"));
    let stop = CancellationToken::new();
    let spec = LoadSpec {
        connections: 4,
        mode: Mode::Open { rate: 200.0 },
        duration: Duration::from_secs(600),
        host: host.into(),
        ..LoadSpec::new(web)
    };
    let load = tokio::spawn(run(spec, stop.clone()));
    let i = yaml.find("kind: Rollout").unwrap();
    let edited = format!(
        "{}{}",
        &yaml[..i],
        yaml[i..].replacen("image: my-app:v1.0.0", "image: my-app:v2.0.0", 1)
    );
    w.write_config(&edited);
    eventually(
        "the canary begins at 10%",
        Duration::from_secs(10),
        || async { st().await["canaryWeight"] == 10.0 },
    )
    .await;
    let c = client();
    let r = get_with(&c, web, host, "/", &[("X-Canary", "always")]).await;
    assert_eq!(r.header("x-backend"), Some("v2"));
    let r = get_with(&c, web, host, "/", &[("X-Canary", "never")]).await;
    assert_eq!(r.header("x-backend"), Some("v1"));
    eventually("promoted", Duration::from_secs(30), || async {
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
    assert!(report.by_backend.get("v2").copied().unwrap_or(0) > 0);
    assert_eq!(get(web, host, "/").await.header("x-backend"), Some("v2"));
    assert!(w.shutdown().await);
}

/// `backend-protocol: GRPC`: the Ingress's backend is spoken to over HTTP/2 (h2c), whatever
/// the client speaks; without the annotation, an h2c-only backend cannot answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_protocol_grpc_speaks_h2c() {
    let grpc = weir_fixtures::h2c::H2cBackend::start("grpc").await.unwrap();
    let mut yaml = edge("");
    yaml.push_str(&kube_service("grpc", grpc.addr()));
    yaml.push_str(&ingress(
        "grpc",
        "grpc.test",
        "grpc",
        "    nginx.ingress.kubernetes.io/backend-protocol: GRPC\n    nginx.ingress.kubernetes.io/proxy-body-size: 1k\n",
    ));
    yaml.push_str(&ingress("plain", "plain.test", "grpc", ""));
    let w = Weir::start(&yaml).await;
    let (s, e, h) = echo(w.web(), "GET", "grpc.test", "/hello", &[], b"").await;
    assert_eq!((s, h["x-backend"].to_str().unwrap()), (200, "grpc"));
    assert_eq!(e["version"], "HTTP/2.0");
    assert_eq!(e["path"], "/hello");
    assert_eq!(
        echo(w.web(), "GET", "plain.test", "/", &[], b"").await.0,
        502
    );
    assert!(w.shutdown().await);
}

/// POSTs `chunks` chunks of 512 bytes, chunked, over HTTP/1.1; the response's status.
async fn chunked_post(addr: SocketAddr, host: &str, chunks: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes();
    for _ in 0..chunks {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'x'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a response head");
        got.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&got);
    line[9..12].parse().unwrap()
}

/// POSTs `chunks` DATA frames of 512 bytes (no content-length) over HTTP/2 with prior
/// knowledge; the response's status.
async fn h2_post(addr: SocketAddr, host: &str, chunks: usize) -> u16 {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let frames: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = (0..chunks)
        .map(|_| Ok(hyper::body::Frame::data(Bytes::from(vec![b'x'; 512]))))
        .collect();
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{host}/"))
        .body(body)
        .unwrap();
    send.send_request(req).await.unwrap().status().as_u16()
}

/// Editing the Ingresses applies at once, as in ingress-nginx's "mainline/canary ingress
/// is modified" cases: the canary's weight raised, its header changed, the main Ingress's
/// backend changed; a second canary on the same path is not applied (one per path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_ingresses_apply_and_one_canary_per_path() {
    use std::time::Duration;
    let main = backend("main").await;
    let other = backend("other").await;
    let can = backend("canary").await;
    let second = backend("second").await;
    let config = |main_svc: &str, ann: &[(&str, &str)]| {
        let mut yaml = edge("");
        for (n, b) in [
            ("main", &main),
            ("other", &other),
            ("canary", &can),
            ("second", &second),
        ] {
            yaml.push_str(&kube_service(n, b.addr()));
        }
        yaml.push_str(&ingress("app", "app.test", main_svc, ""));
        yaml.push_str(&ingress("app-canary", "app.test", "canary", &canary(ann)));
        yaml.push_str(&ingress(
            "app-second",
            "app.test",
            "second",
            &canary(&[("canary-weight", "100")]),
        ));
        yaml
    };
    let w = Weir::start(&config("main", &[("canary-by-header", "X-A")])).await;
    let web = w.web();
    assert_eq!(who(web, "app.test", &[]).await.1, "main");
    assert_eq!(who(web, "app.test", &[("x-a", "always")]).await.1, "canary");
    // The second canary (weight 100) is not applied: never "second".
    for _ in 0..20 {
        assert_ne!(who(web, "app.test", &[]).await.1, "second");
    }
    w.write_config(&config(
        "main",
        &[("canary-by-header", "X-B"), ("canary-weight", "100")],
    ));
    eventually(
        "the canary's weight is 100",
        Duration::from_secs(5),
        || async { who(web, "app.test", &[]).await.1 == "canary" },
    )
    .await;
    assert_eq!(who(web, "app.test", &[("x-b", "never")]).await.1, "main");
    assert_eq!(who(web, "app.test", &[("x-a", "never")]).await.1, "canary");
    w.write_config(&config("other", &[("canary-by-header", "X-B")]));
    eventually(
        "the main Ingress's new backend",
        Duration::from_secs(5),
        || async { who(web, "app.test", &[]).await.1 == "other" },
    )
    .await;
    assert_eq!(who(web, "app.test", &[("x-b", "always")]).await.1, "canary");
    assert!(w.shutdown().await);
}
