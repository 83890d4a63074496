//! TLS: several certificates chosen by SNI, h2 and http/1.1 by ALPN, certificates
//! reloaded when their files change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::kit::*;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A leaf for `name`: (cert PEM, key PEM, cert DER).
    fn leaf(&self, name: &str) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }

    fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    }
}

/// Connects with SNI `name`; returns the served leaf, the ALPN protocol, and the
/// response to GET / (over h2 or http/1.1 as negotiated).
async fn fetch(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> (CertificateDer<'static>, Option<Vec<u8>>, u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = connector
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].clone();
    let alpn = session.alpn_protocol().map(|p| p.to_vec());
    let io = TokioIo::new(tls);
    let req = http::Request::builder()
        .uri(format!("https://{name}/"))
        .header(http::header::HOST, name)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut().remove(http::header::HOST);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let mut req = req;
        *req.uri_mut() = "/".parse().unwrap();
        send.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let backend = resp
        .headers()
        .get("x-backend")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let _ = resp.into_body().collect().await;
    (leaf, alpn, status, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_alpn_and_certificate_reload() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = Ca::new();
    let (a_pem, a_key, a_der) = ca.leaf("a.example.com");
    let (b_pem, b_key, b_der) = ca.leaf("b.example.com");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    for (f, c) in [
        ("a.pem", &a_pem),
        ("a-key.pem", &a_key),
        ("b.pem", &b_pem),
        ("b-key.pem", &b_key),
    ] {
        std::fs::write(dir.path().join("certs").join(f), c).unwrap();
    }
    let back_a = backend("site-a").await;
    let back_b = backend("site-b").await;
    let yaml = format!(
        "apiVersion: weir.dev/v1alpha1\nkind: Proxy\nmetadata: {{name: edge}}\nspec:\n  listeners:\n    - name: websecure\n      address: 127.0.0.1:0\n      tls:\n        certificates:\n          - {{certFile: certs/a.pem, keyFile: certs/a-key.pem}}\n          - {{certFile: certs/b.pem, keyFile: certs/b-key.pem}}\n  admin: {{address: \"127.0.0.1:0\"}}\n  routes:\n    - name: a\n      match: {{host: a.example.com}}\n      backends: [{{service: site-a}}]\n    - name: b\n      match: {{host: b.example.com}}\n      backends: [{{service: site-b}}]\n{}{}",
        service("site-a", &[back_a.addr()]),
        service("site-b", &[back_b.addr()])
    );
    let weir = Weir::start_in(dir, "weir.yaml", &yaml).await;
    let addr = weir.app().listener("websecure").unwrap();

    // SNI picks the certificate; h2 over ALPN.
    let h2 = ca.client_config(&[b"h2", b"http/1.1"]);
    let (leaf, alpn, status, who) = fetch(addr, h2.clone(), "a.example.com").await;
    assert_eq!(leaf, a_der);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!((status, who.as_str()), (200, "site-a"));
    let (leaf, alpn, status, who) = fetch(addr, h2.clone(), "b.example.com").await;
    assert_eq!(leaf, b_der);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!((status, who.as_str()), (200, "site-b"));

    // http/1.1 over ALPN.
    let h1 = ca.client_config(&[b"http/1.1"]);
    let (leaf, alpn, status, who) = fetch(addr, h1, "b.example.com").await;
    assert_eq!(leaf, b_der);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!((status, who.as_str()), (200, "site-b"));

    // A renewed certificate for a.example.com is served once its files change.
    let (a2_pem, a2_key, a2_der) = ca.leaf("a.example.com");
    let certs = weir.dir.path().join("certs");
    std::fs::write(certs.join("a-key.pem.new"), a2_key).unwrap();
    std::fs::write(certs.join("a.pem.new"), a2_pem).unwrap();
    std::fs::rename(certs.join("a-key.pem.new"), certs.join("a-key.pem")).unwrap();
    std::fs::rename(certs.join("a.pem.new"), certs.join("a.pem")).unwrap();
    let mut served = None;
    for _ in 0..500 {
        let (leaf, _, _, _) = fetch(addr, h2.clone(), "a.example.com").await;
        if leaf == a2_der {
            served = Some(leaf);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(served, Some(a2_der), "the renewed certificate is served");
    weir.shutdown().await;
}

/// h2c with prior knowledge on a plain listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge() {
    let b = backend("b").await;
    let yaml = proxy(&split_route("app", &[("b", 100.0)]), "") + &service("b", &[b.addr()]);
    let weir = Weir::start(&yaml).await;
    let tcp = tokio::net::TcpStream::connect(weir.web()).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = http::Request::builder()
            .uri("http://app.test/x")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.headers()["x-backend"], "b");
        let _ = resp.into_body().collect().await;
    }
    assert_eq!(b.hits(), 3);
    weir.shutdown().await;
}
