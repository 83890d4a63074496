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
//!   to every request on the client, streams included. So there are two clients over
//!   separate connections: [`Etcd::unary`] with the deadline (also sent to etcd as the gRPC
//!   deadline, a little longer than ours, so the server drops abandoned work), and
//!   [`Etcd::streaming`] without one, for watches and lease keepalive streams, whose opening
//!   alone is bounded here.
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
//! The balanced channel keeps trying a dead member until it returns; callers retry on their
//! next tick rather than here, so a call's cost stays bounded by its deadline.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, GetOptions, KeyValue, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    Txn, TxnResponse, WatchOptions, WatchStream,
};

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

/// The etcd client pair (see the [module docs](self)). Cheap to clone: clones share the
/// connections.
#[derive(Clone)]
pub struct Etcd {
    unary: Client,
    streaming: Client,
    call_timeout: Duration,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    /// Builds both clients. Connections are made lazily, on first use, so this succeeds
    /// while etcd is down.
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
        let unary = Client::connect(&options.endpoints, Some(unary)).await?;
        let streaming = Client::connect(&options.endpoints, Some(base)).await?;
        Ok(Etcd {
            unary,
            streaming,
            call_timeout: options.call_timeout,
        })
    }

    /// The deadline of every unary call.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The client with the call deadline, for a unary request this type does not wrap. Wrap
    /// the call in [`bounded`](Self::bounded) too.
    pub fn unary(&self) -> Client {
        self.unary.clone()
    }

    /// The client without a deadline, for streams and blocking calls.
    pub fn streaming(&self) -> Client {
        self.streaming.clone()
    }

    /// Runs one etcd call under the call deadline.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] when the deadline passes, else the call's own error.
    pub async fn bounded<T>(
        &self,
        call: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result.map_err(ClusterError::from),
            Err(_) => Err(ClusterError::Timeout(self.call_timeout)),
        }
    }

    /// A linearizable read of one key.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
    pub async fn get(&self, key: &str) -> Result<Read> {
        let mut client = self.unary.clone();
        let response = self.bounded(client.get(key, None)).await?;
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
        let mut client = self.unary.clone();
        let response = self
            .bounded(client.get(prefix, Some(GetOptions::new().with_prefix())))
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
        let mut client = self.unary.clone();
        let options = lease.map(|id| PutOptions::new().with_lease(id));
        let response = self.bounded(client.put(key, value, options)).await?;
        revision_of(response.header())
    }

    /// Deletes `key`; returns the store's revision after it.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
    pub async fn delete(&self, key: &str) -> Result<i64> {
        let mut client = self.unary.clone();
        let response = self.bounded(client.delete(key, None)).await?;
        revision_of(response.header())
    }

    /// Runs a transaction.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] (it may or may not have been applied) or
    /// [`ClusterError::Etcd`].
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let mut client = self.unary.clone();
        self.bounded(client.txn(txn)).await
    }

    /// Compacts the history up to `revision` and waits until it is applied on the member
    /// that answers (physical compaction). Older revisions can no longer be read or watched.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`] (for a revision already compacted).
    pub async fn compact(&self, revision: i64) -> Result<()> {
        let mut client = self.unary.clone();
        let options = etcd_client::CompactionOptions::new().with_physical();
        self.bounded(client.compact(revision, Some(options)))
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
        let mut client = self.unary.clone();
        let response = self.bounded(client.lease_grant(ttl, None)).await?;
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
        let mut client = self.unary.clone();
        self.bounded(client.lease_revoke(id)).await.map(drop)
    }

    /// The lease's remaining TTL in seconds as etcd sees it, or `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
    pub async fn lease_ttl(&self, id: i64) -> Result<Option<i64>> {
        let mut client = self.unary.clone();
        let response = self.bounded(client.lease_time_to_live(id, None)).await?;
        Ok((response.ttl() > 0).then_some(response.ttl()))
    }

    /// Opens a keepalive stream for a lease on the streaming client. Opening sends one
    /// keepalive and waits for its answer, within the call deadline.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`], or [`ClusterError::Etcd`] (`lease not found` when the lease
    /// is gone: see [`ClusterError::is_lease_not_found`]).
    pub(crate) async fn lease_keep_alive(
        &self,
        id: i64,
    ) -> Result<(LeaseKeeper, LeaseKeepAliveStream)> {
        let mut client = self.streaming.clone();
        self.bounded(client.lease_keep_alive(id)).await
    }

    /// Opens a watch stream on the streaming client, within the call deadline.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`].
    pub(crate) async fn watch(&self, key: &str, options: WatchOptions) -> Result<WatchStream> {
        let mut client = self.streaming.clone();
        self.bounded(client.watch(key, Some(options))).await
    }
}

/// The revision in a response header, which etcd always sends.
pub(crate) fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Result<i64> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or(ClusterError::Protocol("a response without its header"))
}
