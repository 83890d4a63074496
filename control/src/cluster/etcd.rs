//! The etcd client with the hygiene that cluster mode needs.
//!
//! `etcd-client` is a thin layer over gRPC, and its defaults are wrong for a process that
//! must notice trouble within a second or two (cluster-notes §1.6, all measured against
//! etcd 3.4):
//!
//! - **No deadline by default.** A read routed to a partitioned member hung for ~7 s (etcd's
//!   own request timeout) and stalled the leader loop for 12 s. Every unary call made here
//!   is bounded by [`EtcdOptions::call_timeout`] (1 s), and fails with
//!   [`ClusterError::Timeout`] after it.
//! - **A client-wide timeout also cuts long calls.** `ConnectOptions::with_timeout` applies
//!   to every request on the client, streams included. So each member has two clients over
//!   separate connections: one with the deadline for unary calls (also sent to etcd as the
//!   gRPC deadline, a little longer than ours, so the server drops abandoned work), and one
//!   without, for watches and lease keepalive streams, whose opening alone is bounded here.
//! - **HTTP/2 pings too often kill streams.** etcd enforces `--grpc-keepalive-min-time`
//!   (5 s): a client pinging every second had its idle watches closed after 4 s. The
//!   interval is at least 6 s ([`MIN_KEEPALIVE_INTERVAL`]); pings only run while streams
//!   are open.
//! - **A member without a raft leader keeps streams open and silent.** Both clients send
//!   `require_leader`, so such a member refuses requests and cancels streams (after three
//!   election timeouts) with `etcdserver: no leader`, and the caller tries again, usually
//!   on another member. The price: while etcd has no quorum even serializable reads fail,
//!   which is what cluster mode wants (it must not act on what it cannot confirm).
//!
//! - **The crate's balanced channel keeps choosing a dead or frozen member.** Given every
//!   endpoint, it spreads calls over all of them and never sets a bad one aside: in the lab
//!   requests kept going to a killed member until it came back, and here, with one member
//!   frozen (`SIGSTOP`), two calls in three waited out their deadline. So each member gets
//!   its own clients, and calls go to one *pinned* member, as etcd's Go client does. A call
//!   that fails because of the member (it timed out, refused the connection, has no raft
//!   leader, broke the stream) moves the pin to the next member; one that certainly did not
//!   reach etcd (connection refused, `no leader`) is tried again on the next member at once,
//!   within the same deadline. A write that timed out is never retried here: its outcome is
//!   unknown (a frozen member can apply it when it thaws), and the caller must read before
//!   deciding again. Streams that go bad are reported back (`Etcd::demote`) by the loops
//!   that own them, which then re-open on the next member.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, GetOptions, KeyValue, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    Txn, TxnResponse, WatchOptions, WatchStream,
};

use tokio::time::Instant;

use super::error::{ClusterError, Result};

/// The deadline of every unary call by default.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long connecting to one member may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The HTTP/2 keepalive ping interval by default.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection is dropped, by default.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest HTTP/2 keepalive interval allowed: etcd closes connections that ping more
/// often than every 5 s (`--grpc-keepalive-min-time`), and 1 s of margin covers timer jitter.
pub const MIN_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(6);

/// How to reach etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs of the members (`http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// The deadline of every unary call (1 s by default).
    pub call_timeout: Duration,
    /// How long connecting to one member may take (1 s by default).
    pub connect_timeout: Duration,
    /// The HTTP/2 keepalive ping interval (10 s by default; at least 6 s).
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered (5 s by default).
    pub keepalive_timeout: Duration,
}

impl EtcdOptions {
    /// The defaults, for these endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
        }
    }

    fn check(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(ClusterError::InvalidOption {
                what: "endpoints",
                hint: "at least one etcd client URL".into(),
            });
        }
        if self.keepalive_interval < MIN_KEEPALIVE_INTERVAL {
            return Err(ClusterError::InvalidOption {
                what: "keepalive_interval",
                hint: format!(
                    "at least {MIN_KEEPALIVE_INTERVAL:?} (etcd closes connections that ping more often than every 5 s), not {:?}",
                    self.keepalive_interval
                ),
            });
        }
        for (what, value) in [
            ("call_timeout", self.call_timeout),
            ("connect_timeout", self.connect_timeout),
            ("keepalive_timeout", self.keepalive_timeout),
        ] {
            if value.is_zero() {
                return Err(ClusterError::InvalidOption {
                    what,
                    hint: "more than zero".into(),
                });
            }
        }
        Ok(())
    }
}

/// One key as etcd stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    /// The key (bytes that are not UTF-8 are replaced by U+FFFD; every key built by
    /// [`Keys`](super::Keys) is ASCII).
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The revision that created the key (since it last did not exist).
    pub create_revision: i64,
    /// The revision of the key's last change.
    pub mod_revision: i64,
    /// How many times the key was written since it was created (1 for a new key).
    pub version: i64,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

impl From<&KeyValue> for Kv {
    fn from(kv: &KeyValue) -> Self {
        Kv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
        }
    }
}

/// One key read at a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The store's revision when it was read: every change up to it is reflected.
    pub revision: i64,
    /// The key, or `None` when it does not exist.
    pub kv: Option<Kv>,
}

/// The keys under a prefix, read at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The store's revision when it was read.
    pub revision: i64,
    /// The keys, sorted by key.
    pub kvs: Vec<Kv>,
}

/// One member's pair of clients.
struct Member {
    url: String,
    /// With the call deadline, for unary calls.
    unary: Client,
    /// Without a deadline, for streams.
    streaming: Client,
}

/// The members and the pin.
struct Inner {
    members: Vec<Member>,
    /// The member calls go to.
    pinned: AtomicUsize,
    call_timeout: Duration,
}

/// The etcd client (see the [module docs](self)). Cheap to clone: clones share the
/// connections and the pin.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("pinned", &self.pinned_url())
            .field("call_timeout", &self.inner.call_timeout)
            .finish_non_exhaustive()
    }
}

/// gRPC status codes that say the member, not the request, is at fault.
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const DEADLINE_EXCEEDED: i32 = 4;
const UNAVAILABLE: i32 = 14;

/// Whether the request certainly did not reach etcd's state machine: the connection was
/// refused, or the member refused it for want of a raft leader. Safe to send elsewhere.
fn never_sent(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            i32::from(status.code()) == UNAVAILABLE
                && (message.contains("tcp connect error")
                    || message.contains("no leader")
                    || message.contains("error trying to connect"))
        }
        _ => false,
    }
}

/// Whether the member, not the request, is at fault: the next call goes elsewhere.
fn member_fault(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => matches!(
            i32::from(status.code()),
            CANCELLED | UNKNOWN | DEADLINE_EXCEEDED | UNAVAILABLE
        ),
        _ => false,
    }
}

impl Etcd {
    /// Builds the clients, one pair per member. Connections are made lazily, on first use,
    /// so this succeeds while etcd is down.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidOption`] for options out of range, [`ClusterError::Etcd`] for
    /// an endpoint that is not a URL (or is `https`: TLS is not built in yet).
    pub async fn connect(options: &EtcdOptions) -> Result<Etcd> {
        options.check()?;
        let base = ConnectOptions::new()
            .with_keep_alive(options.keepalive_interval, options.keepalive_timeout)
            .with_connect_timeout(options.connect_timeout)
            .with_require_leader(true);
        // The gRPC deadline goes to etcd too; ours fires first and is the one callers see.
        let unary = base
            .clone()
            .with_timeout(options.call_timeout + Duration::from_millis(250));
        let mut members = Vec::with_capacity(options.endpoints.len());
        for url in &options.endpoints {
            members.push(Member {
                url: url.clone(),
                unary: Client::connect([url], Some(unary.clone())).await?,
                streaming: Client::connect([url], Some(base.clone())).await?,
            });
        }
        // Replicas start on different members, so that their load is spread.
        let first = {
            use std::hash::BuildHasher;
            let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
            usize::try_from(seed % members.len() as u64).unwrap_or(0)
        };
        Ok(Etcd {
            inner: Arc::new(Inner {
                members,
                pinned: AtomicUsize::new(first),
                call_timeout: options.call_timeout,
            }),
        })
    }

    /// The deadline of every unary call.
    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    /// The URL of the member calls go to now.
    pub fn pinned_url(&self) -> &str {
        let i = self.pinned();
        &self.inner.members[i].url
    }

    fn pinned(&self) -> usize {
        self.inner.pinned.load(Ordering::Relaxed) % self.inner.members.len()
    }

    /// Moves the pin off `member` (to the next one) if it is still there: that member failed
    /// a call or a stream. Streams' owners call this when their stream goes bad.
    pub(crate) fn demote(&self, member: usize) {
        let n = self.inner.members.len();
        let next = (member + 1) % n;
        if n > 1
            && self
                .inner
                .pinned
                .compare_exchange(member, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::info!(
                from = %self.inner.members[member].url,
                to = %self.inner.members[next].url,
                "etcd: moving to another member"
            );
        }
    }

    /// Runs one unary call under the call deadline, on the pinned member, moving on to the
    /// next member when this one fails (see the [module docs](self)). `call` gets a client
    /// with the deadline set, and may be invoked once per member.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] when the deadline passes, else the call's own error.
    pub async fn call<T, F>(&self, mut call: impl FnMut(Client) -> F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.inner.call_timeout;
        let n = self.inner.members.len();
        let first = self.pinned();
        let mut last = None;
        for attempt in 0..n {
            let member = (first + attempt) % n;
            let client = self.inner.members[member].unary.clone();
            match tokio::time::timeout_at(deadline, call(client)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => {
                    if !member_fault(&e) {
                        return Err(e.into());
                    }
                    self.demote(member);
                    if !never_sent(&e) || Instant::now() >= deadline {
                        return Err(e.into());
                    }
                    last = Some(e);
                }
                Err(_) => {
                    self.demote(member);
                    return Err(ClusterError::Timeout(self.inner.call_timeout));
                }
            }
        }
        Err(last.map_or(
            ClusterError::Timeout(self.inner.call_timeout),
            ClusterError::from,
        ))
    }

    /// Opens a stream on the pinned member's client without deadline (trying the next
    /// members within one call deadline); returns it with the member's index, for `demote`
    /// when the stream goes bad.
    async fn open<T, F>(&self, mut open: impl FnMut(Client) -> F) -> Result<(T, usize)>
    where
        F: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.inner.call_timeout;
        let n = self.inner.members.len();
        let first = self.pinned();
        let mut last = ClusterError::Timeout(self.inner.call_timeout);
        for attempt in 0..n {
            let member = (first + attempt) % n;
            let client = self.inner.members[member].streaming.clone();
            match tokio::time::timeout_at(deadline, open(client)).await {
                Ok(Ok(stream)) => return Ok((stream, member)),
                Ok(Err(e)) => {
                    let e = ClusterError::from(e);
                    // A lease that does not exist is not the member's fault.
                    if e.is_lease_not_found() {
                        return Err(e);
                    }
                    self.demote(member);
                    last = e;
                }
                Err(_) => {
                    self.demote(member);
                    return Err(ClusterError::Timeout(self.inner.call_timeout));
                }
            }
        }
        Err(last)
    }

    /// A linearizable read of one key.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
    pub async fn get(&self, key: &str) -> Result<Read> {
        let response = self
            .call(|mut client| async move { client.get(key, None).await })
            .await?;
        Ok(Read {
            revision: revision_of(response.header())?,
            kv: response.kvs().first().map(Kv::from),
        })
    }

    /// A linearizable read of every key under `prefix`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
    pub async fn get_prefix(&self, prefix: &str) -> Result<Listing> {
        let response = self
            .call(|mut client| async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await?;
        Ok(Listing {
            revision: revision_of(response.header())?,
            kvs: response.kvs().iter().map(Kv::from).collect(),
        })
    }

    /// Writes `value` at `key`, attached to `lease` when given; returns the write's revision.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] (the write may or may not have happened) or
    /// [`ClusterError::Etcd`] (for instance when the lease does not exist).
    pub async fn put(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        lease: Option<i64>,
    ) -> Result<i64> {
        let value: Vec<u8> = value.into();
        let response = self
            .call(|mut client| {
                let (value, options) = (
                    value.clone(),
                    lease.map(|id| PutOptions::new().with_lease(id)),
                );
                async move { client.put(key, value, options).await }
            })
            .await?;
        revision_of(response.header())
    }

    /// Deletes `key`; returns the store's revision after it.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
    pub async fn delete(&self, key: &str) -> Result<i64> {
        let response = self
            .call(|mut client| async move { client.delete(key, None).await })
            .await?;
        revision_of(response.header())
    }

    /// Runs a transaction.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] (it may or may not have been applied) or
    /// [`ClusterError::Etcd`].
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.call(|mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await
    }

    /// Compacts the history up to `revision` and waits until it is applied on the member
    /// that answers (physical compaction). Older revisions can no longer be read or watched.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`] (for a revision already compacted).
    pub async fn compact(&self, revision: i64) -> Result<()> {
        self.call(|mut client| async move {
            let options = etcd_client::CompactionOptions::new().with_physical();
            client.compact(revision, Some(options)).await
        })
        .await
        .map(drop)
    }

    /// Grants a lease of `ttl` whole seconds; returns its id and the TTL etcd granted (etcd
    /// raises a TTL below its minimum, 1.5 election timeouts).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
    pub async fn lease_grant(&self, ttl: i64) -> Result<(i64, i64)> {
        let response = self
            .call(|mut client| async move { client.lease_grant(ttl, None).await })
            .await?;
        if !response.error().is_empty() {
            return Err(ClusterError::Etcd(etcd_client::Error::InvalidArgs(
                response.error().to_owned(),
            )));
        }
        Ok((response.id(), response.ttl()))
    }

    /// Revokes a lease: every key attached to it is deleted at once.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`] (also when the lease is gone).
    pub async fn lease_revoke(&self, id: i64) -> Result<()> {
        self.call(|mut client| async move { client.lease_revoke(id).await })
            .await
            .map(drop)
    }

    /// The lease's remaining TTL in seconds as etcd sees it, or `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
    pub async fn lease_ttl(&self, id: i64) -> Result<Option<i64>> {
        let response = self
            .call(|mut client| async move { client.lease_time_to_live(id, None).await })
            .await?;
        Ok((response.ttl() > 0).then_some(response.ttl()))
    }

    /// Opens a keepalive stream for a lease. Opening sends one keepalive and waits for its
    /// answer, within the call deadline. Returns the member's index too.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`], or [`ClusterError::Etcd`] (`lease not found` when the lease
    /// is gone: see [`ClusterError::is_lease_not_found`]).
    pub(crate) async fn lease_keep_alive(
        &self,
        id: i64,
    ) -> Result<((LeaseKeeper, LeaseKeepAliveStream), usize)> {
        self.open(|mut client| async move { client.lease_keep_alive(id).await })
            .await
    }

    /// Opens a watch stream, within the call deadline. Returns the member's index too.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
    pub(crate) async fn watch(
        &self,
        key: &str,
        options: WatchOptions,
    ) -> Result<(WatchStream, usize)> {
        self.open(|mut client| {
            let options = options.clone();
            async move { client.watch(key, Some(options)).await }
        })
        .await
    }
}

/// The revision in a response header, which etcd always sends.
pub(crate) fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Result<i64> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or(ClusterError::Protocol("a response without its header"))
}
