//! Cluster mode's foundation: N weir replicas coordinated through etcd (issue 14).
//!
//! Several weir processes behind an L4 balancer must behave as one: one leader runs the
//! control loop, every replica applies the weights of one committed status, and a leader
//! that was deposed, frozen or cut off can never overwrite its successor's status. weir does
//! not build a consensus of its own for this: etcd (3.4 and later) already gives leases,
//! atomic compare-and-swap transactions and resumable watches. This module is the thin,
//! careful layer over the `etcd-client` crate that the controller builds on; it knows
//! nothing of rollouts and moves bytes and JSON under key names that [`Keys`] builds.
//!
//! Each part is in its own file:
//! - [`etcd`]: [`Etcd`], the client with the hygiene that the lab found necessary (HTTP/2
//!   keepalive of at least 6 s, a 1 s deadline on every unary call, a second client without
//!   deadline for streams, `require_leader`, one pinned member at a time with failover).
//! - [`session`]: [`Session`], one lease per replica (TTL 3 s, renewed every 1 s) kept alive
//!   by a loop that re-opens its stream, with a local monotonic deadline after which the
//!   holder must consider itself suspended ([`SessionState`]).
//! - [`election`]: [`campaign`] for leadership on the session's lease, which gives a
//!   [`Leadership`] fencing token; [`leader`] and [`LeaderObserver`] to see who leads.
//! - [`status`]: [`FencedWrite`], a write that succeeds only while its writer still leads
//!   and nobody else wrote in between, and says which of the two failed
//!   ([`WriteOutcome`]).
//! - [`watch`]: [`PrefixWatch`], a watch of a key prefix that survives member crashes (it
//!   resumes at the next revision), compactions (it re-reads the prefix) and notices when
//!   etcd has gone quiet ([`WatchHealth::stale`]).
//! - [`members`]: replica registration under the session's lease, and the member list.
//!
//! Errors are [`ClusterError`]s; nothing here panics on what etcd or another replica wrote.
//! Background loops (the session's keepalive, watches, the leader observer) are Tokio tasks
//! that stop when their handle is dropped.
//!
//! ../shared/cluster-notes.md has the measured facts behind every number here.

pub mod election;
pub mod error;
pub mod etcd;
pub mod keys;
pub mod link;
pub mod members;
pub mod session;
pub mod status;
pub mod watch;

pub use election::{LeaderInfo, LeaderObserver, Leadership, campaign, leader, resign};
pub use error::ClusterError;
pub use etcd::{Etcd, EtcdOptions, Kv, Listing, Read};
pub use keys::Keys;
pub use link::{ClusterReport, EtcdLink, MemberReport};
pub use members::{InvalidMember, Member, MemberInfo, MemberList};
pub use session::{Session, SessionOptions, SessionState};
pub use status::{FencedWrite, WriteOutcome};
pub use watch::{Change, PrefixWatch, StartAt, WatchHealth, WatchUpdate};

/// The `etcd-client` crate this module is built on, for callers that need a request this
/// module does not wrap (through [`Etcd::call`]).
pub use etcd_client;
