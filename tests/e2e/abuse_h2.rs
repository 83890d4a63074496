//! HTTP/2 abuse on real sockets, with raw frames written by hand over h2c (prior
//! knowledge: the listener serves HTTP/2 to a client that opens with the preface).
//! Rapid reset (CVE-2023-44487), a CONTINUATION flood (CVE-2024-27316 class), and PING
//! and SETTINGS floods whose acknowledgements are never read. Each is counted where it
//! matters: the streams weir took in (its GOAWAY's last stream id), the bytes it
//! accepted, the requests the upstream saw, the process's memory, and whether another
//! client is still served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::kit::*;

/// The tests here run one at a time: each reads the process's memory, which the others'
/// floods would grow.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const CANCEL: u32 = 0x8;

/// The largest frame payload weir's HTTP/2 server takes (hyper's default
/// SETTINGS_MAX_FRAME_SIZE, the protocol's minimum).
const MAX_FRAME: usize = 16_384;

/// One frame: 9 bytes of header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    push_frame(&mut f, kind, flags, stream, payload);
    f
}

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A request head in HPACK, by hand: `:method GET` (static index 2), `:scheme http`
/// (6), then `:authority a` and `:path` as literals without indexing (name indexes 1
/// and 4), lengths below 127 and no Huffman coding.
fn hpack_get(path: &str) -> Vec<u8> {
    assert!(path.len() < 127);
    let mut b = vec![0x82, 0x86, 0x01, 0x01, b'a', 0x04, path.len() as u8];
    b.extend_from_slice(path.as_bytes());
    b
}

/// The client preface and an empty SETTINGS frame.
fn opening() -> Vec<u8> {
    let mut b = PREFACE.to_vec();
    push_frame(&mut b, SETTINGS, 0, 0, &[]);
    b
}

/// A TCP connection with small kernel buffers on the client side (64 KiB asked, which
/// Linux doubles), so that what the client has written is close to what weir's side
/// took in.
async fn connect_small(addr: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.set_send_buffer_size(64 * 1024).unwrap();
    s.set_recv_buffer_size(64 * 1024).unwrap();
    s.connect(addr).await.unwrap()
}

/// This process's resident memory, in bytes (weir runs in it).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Samples [`rss`] every 10 ms until dropped; `peak` is the highest seen.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssPeak {
    fn start() -> RssPeak {
        let peak = Arc::new(AtomicU64::new(rss()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        RssPeak { peak, stop }
    }

    fn peak(&self) -> u64 {
        let now = rss();
        self.peak.fetch_max(now, Ordering::Relaxed).max(now)
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An upstream that answers every request head with `200 ok` and keeps each request
/// line it read: counting here is the point.
struct Counting {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Counting {
    async fn start() -> Counting {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let l2 = lines.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let lines = l2.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 16384];
                    loop {
                        // Request heads only: every request here is bodiless.
                        while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&got[..end]).into_owned();
                            got.drain(..end + 4);
                            let line = head.lines().next().unwrap_or("").to_owned();
                            lines.lock().unwrap().push(line);
                            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        Counting { addr, lines }
    }

    /// How many requests for `path` the upstream has read.
    fn count(&self, path: &str) -> usize {
        let prefix = format!("GET {path} ");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }
}

async fn weir_to(upstream: SocketAddr, extra: &str) -> Weir {
    Weir::start(
        &(proxy(&split_route("app", &[("up", 100.0)]), extra) + &service("up", &[upstream])),
    )
    .await
}

/// A well-behaved HTTP/2 client (hyper, h2c with prior knowledge) on its own connection.
async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// GET `path` on `send`; the status (0 when the request failed).
async fn h2_get(
    send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    path: &str,
) -> u16 {
    let req = http::Request::builder()
        .uri(format!("http://a{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let fut = async {
        send.ready().await.ok()?;
        let resp = send.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.ok()?;
        Some(status)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Both a fresh HTTP/2 connection and a fresh HTTP/1.1 one are answered 200.
async fn others_are_served(addr: SocketAddr, when: &str) {
    let mut h2 = h2_client(addr).await;
    assert_eq!(h2_get(&mut h2, "/ok").await, 200, "HTTP/2, {when}");
    assert_eq!(get(addr, "a", "/ok").await.status, 200, "HTTP/1.1, {when}");
}

/// One frame from the server, or None at its end (EOF).
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<(u8, u8, u32, Vec<u8>)>> {
    let mut head = [0u8; 9];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[3], head[4], stream, payload)))
}

/// How the server ended an attack connection, as the client read it.
#[derive(Debug, Default)]
struct Ending {
    /// GOAWAY: (last stream id, error code, debug data).
    goaway: Option<(u32, u32, String)>,
    /// The server closed the connection (EOF or reset).
    closed: bool,
    /// How it closed: "eof" or the read error.
    how: String,
    /// Frames read of each type (by type number, up to 9).
    frames: [usize; 10],
}

/// Reads the server's frames until it closes the connection or `within` passes; sets
/// `cut` once the server has sent GOAWAY or closed.
async fn read_ending<R: AsyncRead + Unpin>(
    mut r: R,
    cut: Arc<AtomicBool>,
    within: Duration,
) -> Ending {
    let mut end = Ending::default();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, read_frame(&mut r)).await {
            Err(_) => break,
            Ok(Ok(Some((kind, _flags, _stream, payload)))) => {
                end.frames[(kind as usize).min(9)] += 1;
                if kind == GOAWAY && payload.len() >= 8 {
                    let last = u32::from_be_bytes(payload[0..4].try_into().unwrap()) & 0x7fff_ffff;
                    let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                    let debug = String::from_utf8_lossy(&payload[8..]).into_owned();
                    end.goaway = Some((last, code, debug));
                    cut.store(true, Ordering::SeqCst);
                }
            }
            Ok(Ok(None)) => {
                end.closed = true;
                end.how = "eof".into();
                break;
            }
            Ok(Err(e)) => {
                end.closed = true;
                end.how = e.to_string();
                break;
            }
        }
    }
    cut.store(true, Ordering::SeqCst);
    end
}

// ---- Rapid reset ----

/// Pairs of HEADERS and RST_STREAM(CANCEL) a rapid-reset connection may write at most.
const RESET_PAIRS: usize = 20_000;

/// One rapid-reset connection: what the client wrote and how it ended.
#[derive(Debug)]
struct RapidReset {
    /// HEADERS+RST_STREAM pairs written whole before the client saw the cut.
    pairs_written: usize,
    ending: Ending,
}

impl RapidReset {
    /// Streams weir processed on this connection, by its GOAWAY's last stream id.
    fn processed(&self) -> Option<usize> {
        self.ending
            .goaway
            .as_ref()
            .map(|(last, _, _)| (*last as usize).div_ceil(2))
    }
}

/// Opens streams on one connection and cancels each at once, as fast as the socket
/// takes them, until weir cuts the connection or [`RESET_PAIRS`] are written.
async fn rapid_reset(addr: SocketAddr) -> RapidReset {
    let s = connect_small(addr).await;
    let (r, mut w) = s.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(read_ending(r, cut.clone(), Duration::from_secs(5)));
    let head = hpack_get("/rr");
    let rst = CANCEL.to_be_bytes();
    let mut pairs_written = 0;
    let mut buf = opening();
    const BATCH: usize = 200;
    while pairs_written < RESET_PAIRS && !cut.load(Ordering::SeqCst) {
        for i in pairs_written..pairs_written + BATCH {
            let id = 2 * i as u32 + 1;
            push_frame(&mut buf, HEADERS, END_STREAM | END_HEADERS, id, &head);
            push_frame(&mut buf, RST_STREAM, 0, id, &rst);
        }
        if w.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
        pairs_written += BATCH;
    }
    let ending = reader.await.unwrap();
    drop(w);
    RapidReset {
        pairs_written,
        ending,
    }
}

/// Rapid reset (CVE-2023-44487): streams opened and cancelled at once, by the thousand,
/// on one connection. weir ends each such connection with GOAWAY
/// (ENHANCE_YOUR_CALM, from h2's limit of 20 streams reset before they are accepted)
/// after a bounded number of streams, the upstream sees only a small fraction of the
/// streams opened, and a well-behaved client on another connection is served 200
/// throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_cut_off() {
    let _serial = SERIAL.lock().await;
    let up = Counting::start().await;
    let weir = weir_to(up.addr, "").await;
    let w = weir.web();
    others_are_served(w, "before the attack").await;

    // A well-behaved client keeps one HTTP/2 connection and asks over it, and over
    // fresh HTTP/1.1 connections, all along.
    let attacking = Arc::new(AtomicBool::new(true));
    let served_during = Arc::new(AtomicUsize::new(0));
    let normal = {
        let (attacking, served_during) = (attacking.clone(), served_during.clone());
        tokio::spawn(async move {
            let mut send = h2_client(w).await;
            let mut statuses = Vec::new();
            while attacking.load(Ordering::SeqCst) {
                let a = h2_get(&mut send, "/ok").await;
                let b = get(w, "a", "/ok").await.status;
                if attacking.load(Ordering::SeqCst) {
                    served_during.fetch_add(1, Ordering::SeqCst);
                }
                statuses.push((a, b));
            }
            statuses.push((
                h2_get(&mut send, "/ok").await,
                get(w, "a", "/ok").await.status,
            ));
            statuses
        })
    };

    // Attack connections one after another: at least 3, and on until the other client
    // has been served a few times meanwhile (at most 30).
    let mut attacks = Vec::new();
    while attacks.len() < 3 || (served_during.load(Ordering::SeqCst) < 3 && attacks.len() < 30) {
        attacks.push(rapid_reset(w).await);
    }
    attacking.store(false, Ordering::SeqCst);
    let statuses = normal.await.unwrap();

    let opened: usize = attacks.iter().map(|a| a.pairs_written).sum();
    let processed: Vec<Option<usize>> = attacks.iter().map(RapidReset::processed).collect();
    let reached = up.count("/rr");
    eprintln!(
        "rapid reset: {} connections, pairs written per connection {:?}, streams processed \
         per connection (GOAWAY last id) {:?}, GOAWAYs {:?}, upstream saw {reached} of {opened} \
         opened; other client served {} times during",
        attacks.len(),
        attacks.iter().map(|a| a.pairs_written).collect::<Vec<_>>(),
        processed,
        attacks
            .iter()
            .map(|a| a.ending.goaway.clone())
            .collect::<Vec<_>>(),
        served_during.load(Ordering::SeqCst),
    );
    for a in &attacks {
        // Cut: GOAWAY, then the close.
        assert!(
            a.ending.closed,
            "weir kept a rapid-reset connection open: {a:?}"
        );
        let Some((_, code, _)) = &a.ending.goaway else {
            panic!("no GOAWAY on a rapid-reset connection: {a:?}");
        };
        assert_eq!(*code, 0xb, "GOAWAY(ENHANCE_YOUR_CALM): {a:?}");
        assert!(
            a.pairs_written < RESET_PAIRS,
            "the client wrote all {RESET_PAIRS} pairs before it saw the cut: {a:?}"
        );
        // Within a bounded number of resets: h2 allows 20 streams reset before they are
        // accepted (observed: cut at the 21st); 200 leaves room for streams hyper accepts
        // between two reads, and is 1% of the pairs the client would send.
        let processed = a.processed().unwrap();
        assert!(
            processed <= 200,
            "weir processed {processed} streams before the GOAWAY: {a:?}"
        );
    }
    // The upstream saw far fewer requests than streams were opened: at most those weir
    // processed, and at most a tenth of those opened.
    let processed: usize = processed.iter().map(|p| p.unwrap_or(0)).sum();
    assert!(
        reached <= processed,
        "the upstream saw {reached} requests, weir processed {processed} streams"
    );
    assert!(
        reached * 10 <= opened,
        "the upstream saw {reached} of {opened} streams opened"
    );
    // The other client was served 200 throughout, and still is.
    assert!(
        served_during.load(Ordering::SeqCst) >= 3,
        "the other client was served only {} times in {} attack connections",
        served_during.load(Ordering::SeqCst),
        attacks.len()
    );
    assert!(
        statuses.iter().all(|&(a, b)| a == 200 && b == 200),
        "{statuses:?}"
    );
    others_are_served(w, "after the attack").await;
    weir.shutdown().await;
}

// ---- CONTINUATION flood ----

/// A header block of endless `x-flood` headers, in frames of [`MAX_FRAME`] bytes: each
/// header is a literal without indexing of 128 bytes, so every frame holds 128 whole
/// headers and every frame's payload is the same.
fn flood_block() -> Vec<u8> {
    let mut unit = vec![0x00, 7];
    unit.extend_from_slice(b"x-flood");
    unit.push(118);
    unit.extend_from_slice(&[b'f'; 118]);
    assert_eq!(unit.len(), 128);
    unit.repeat(MAX_FRAME / 128)
}

/// CONTINUATION flood (CVE-2024-27316 class): HEADERS without END_HEADERS, then
/// CONTINUATION frames that never end the block, up to 64 MiB. weir closes the
/// connection after a few frames (h2's GOAWAY on too many CONTINUATION frames, or on a
/// header list past `maxHeaderBytes`): the bytes it accepted are bounded by a few times
/// the header limit plus what the kernel's socket buffers hold, its memory does not
/// grow with the flood, nothing reaches the upstream, and others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    let _serial = SERIAL.lock().await;
    const MAX_HEADER_BYTES: usize = 8192;
    const TOTAL: usize = 64 << 20;
    let up = Counting::start().await;
    let weir = weir_to(
        up.addr,
        &format!("  limits: {{maxHeaderBytes: {MAX_HEADER_BYTES}}}\n"),
    )
    .await;
    let w = weir.web();
    others_are_served(w, "before the flood").await;
    let before = rss();
    let peak = RssPeak::start();

    let s = connect_small(w).await;
    let (r, mut wr) = s.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(read_ending(r, cut.clone(), Duration::from_secs(8)));
    let mut first = opening();
    push_frame(&mut first, HEADERS, END_STREAM, 1, &hpack_get("/flood"));
    // One CONTINUATION frame per write, so that `written` counts what the socket took
    // to within a frame.
    let continuation = frame(CONTINUATION, 0, 1, &flood_block());
    let mut written = 0usize;
    let mut write_error = None;
    match wr.write_all(&first).await {
        Ok(()) => written += first.len(),
        Err(e) => write_error = Some(e.to_string()),
    }
    let writing = async {
        while write_error.is_none() && written < TOTAL && !cut.load(Ordering::SeqCst) {
            match wr.write_all(&continuation).await {
                Ok(()) => written += continuation.len(),
                Err(e) => write_error = Some(e.to_string()),
            }
        }
    };
    // Bounded: a weir that took everything would have the 64 MiB in well under this.
    let _ = tokio::time::timeout(Duration::from_secs(8), writing).await;
    let ending = reader.await.unwrap();
    let grown = peak.peak().saturating_sub(before);
    drop(wr);
    eprintln!(
        "CONTINUATION flood: {written} bytes written ({} frames) before the cut, write error \
         {write_error:?}, ending {ending:?}, RSS before {before}, peak growth {grown}",
        written / (9 + MAX_FRAME),
    );

    assert!(
        ending.closed,
        "weir kept the connection open after {written} bytes: {ending:?}"
    );
    if let Some((last, code, debug)) = &ending.goaway {
        // A connection error: ENHANCE_YOUR_CALM, COMPRESSION_ERROR or PROTOCOL_ERROR.
        assert!([0x1, 0x9, 0xb].contains(code), "GOAWAY {code:#x} {debug:?}");
        assert_eq!(*last, 0, "the flooded stream was never processed");
    }
    // h2 takes at most max(5, 1.25 × maxHeaderBytes / 16 KiB) CONTINUATION frames
    // after HEADERS (here 5, ~80 KiB): the bound allows 8 × maxHeaderBytes beyond
    // 6 frames, plus 1 MiB for the kernel's buffers on loopback (the client's send
    // buffer is pinned at 128 KiB; weir's receive buffer starts at 128 KiB and grows
    // only as fast as weir reads). A weir that took the block whole gets 64 MiB.
    let bound = 8 * MAX_HEADER_BYTES + 6 * (9 + MAX_FRAME) + (1 << 20);
    assert!(
        written <= bound,
        "weir accepted {written} bytes of one header block (bound {bound})"
    );
    assert!(
        grown <= 64 << 20,
        "the process grew by {grown} bytes during the flood"
    );
    assert_eq!(
        up.count("/flood"),
        0,
        "the flooded request never went upstream"
    );
    others_are_served(w, "after the flood").await;
    weir.shutdown().await;
}

// ---- PING and SETTINGS floods ----

/// The kernel's queues of the TCP socket from `local` to `remote`, from /proc/net/tcp:
/// (bytes written to it and not yet acknowledged by the peer, bytes received and not
/// yet read).
fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> (usize, usize) {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(_) => unreachable!("127.0.0.1 only"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(1) != Some(&local.as_str()) || f.get(2) != Some(&remote.as_str()) {
                return None;
            }
            let (tx, rx) = f[4].split_once(':')?;
            Some((
                usize::from_str_radix(tx, 16).ok()?,
                usize::from_str_radix(rx, 16).ok()?,
            ))
        })
        .unwrap_or_else(|| panic!("no socket {local} -> {remote} in /proc/net/tcp"))
}

/// What a flood of one frame, written and never acknowledged, came to.
#[derive(Debug)]
struct Flood {
    /// Bytes of flood frames the client wrote before weir stopped taking them or closed.
    written: usize,
    /// The write error, when weir closed the connection.
    closed: Option<String>,
    /// When weir stalled the flood instead: the bytes its process read (written, less
    /// what waits in the client's send queue and in weir's receive queue), and the
    /// bytes of answers it wrote that wait in the kernel (its send queue and the
    /// client's receive queue, never read).
    stalled: Option<(usize, usize)>,
    /// The connection, still open when weir applied backpressure.
    stream: Option<TcpStream>,
}

/// Writes the preface, then `unit` again and again (never reading what weir answers)
/// until `total` bytes, a write error (weir closed), or a write that cannot complete
/// for a second (weir stopped reading: backpressure).
async fn flood(addr: SocketAddr, unit: &[u8], total: usize) -> Flood {
    let mut s = connect_small(addr).await;
    let opening = opening();
    s.write_all(&opening).await.unwrap();
    let batch = unit.repeat(65_536 / unit.len());
    let mut written = 0;
    let mut closed = None;
    while written < total {
        let at = written % batch.len();
        match tokio::time::timeout(Duration::from_secs(1), s.write(&batch[at..])).await {
            Err(_) => break,
            Ok(Ok(0)) => {
                closed = Some("write returned 0".into());
                break;
            }
            Ok(Err(e)) => {
                closed = Some(e.to_string());
                break;
            }
            Ok(Ok(n)) => written += n,
        }
    }
    let stalled = closed.is_none().then(|| {
        let (client, server) = (s.local_addr().unwrap(), s.peer_addr().unwrap());
        let (client_tx, client_rx) = tcp_queues(client, server);
        let (server_tx, server_rx) = tcp_queues(server, client);
        let read = (opening.len() + written).saturating_sub(client_tx + server_rx);
        (read, server_tx + client_rx)
    });
    Flood {
        written,
        closed,
        stalled,
        stream: Some(s),
    }
}

/// PING and SETTINGS floods whose ACKs are never read: each frame asks weir for an
/// answer, and h2 reads the next frame only once the last answer is buffered, so a
/// client that does not read stalls its own flood (or is disconnected). Bounded: the
/// flood cannot be pushed whole, what weir's process has read is accounted for by the
/// answers waiting in the kernel (within 1 MiB), the process's memory does not grow
/// with it, and others are served while the flooding connections are held open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_settings_floods_are_bounded() {
    let _serial = SERIAL.lock().await;
    const TOTAL: usize = 64 << 20;
    let up = Counting::start().await;
    let weir = weir_to(up.addr, "").await;
    let w = weir.web();
    others_are_served(w, "before the floods").await;
    let before = rss();
    let peak = RssPeak::start();

    // PING: 17 bytes, answered by a PING ACK of 17 bytes.
    let ping = (frame(PING, 0, 0, b"floodfld"), 17);
    // SETTINGS_INITIAL_WINDOW_SIZE = 65535 (its default), 15 bytes: a valid change each
    // time, answered by an empty SETTINGS ACK of 9 bytes.
    let settings = (
        frame(SETTINGS, 0, 0, &[0x00, 0x04, 0x00, 0x00, 0xff, 0xff]),
        9,
    );
    let mut held = Vec::new();
    for (name, (unit, answer)) in [("PING", ping), ("SETTINGS", settings)] {
        let f = flood(w, &unit, TOTAL).await;
        let grown = peak.peak().saturating_sub(before);
        eprintln!(
            "{name} flood: {} bytes written ({} frames), closed {:?}, (read by weir, answers \
             waiting in the kernel) {:?}, peak RSS growth {grown}",
            f.written,
            f.written / unit.len(),
            f.closed,
            f.stalled,
        );
        assert!(
            f.written < TOTAL,
            "{name} flood: weir took all {TOTAL} bytes without the client reading an ACK"
        );
        if let Some((read, answers)) = f.stalled {
            // Each frame weir has read is answered, the answers waiting in the kernel;
            // what weir holds beyond them (read, not yet answered) is small.
            let answered = answers / answer * unit.len();
            assert!(
                read <= answered + (1 << 20),
                "{name} flood: weir read {read} bytes, answered {answered} of them"
            );
        }
        assert!(
            grown <= 64 << 20,
            "{name} flood: the process grew by {grown} bytes"
        );
        others_are_served(w, &format!("while a {name} flood is held")).await;
        held.extend(f.stream);
    }
    drop(held);
    others_are_served(w, "after the floods").await;
    assert_eq!(
        up.count("/ok"),
        8,
        "only the other clients' requests went upstream"
    );
    weir.shutdown().await;
}
