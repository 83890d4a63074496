//! `weir-bench` is the fake backend and load generator that weir's tests, benchmarks and demo
//! share.
//!
//! - [`backend`]: [`FakeBackend`], a cheap HTTP/1.1 (and h2c prior-knowledge) server whose
//!   status, error rate, latency distribution and body size ([`Behavior`]) can be switched
//!   while it runs, and which echoes upgraded (WebSocket-style) connections.
//! - [`load`]: [`load::run`], a keep-alive HTTP/1.1 load generator with closed-loop and
//!   open-loop (fixed rate, coordinated-omission aware) modes that reports counts by status
//!   and by backend, a latency histogram and, optionally, the exact sequence of backends that
//!   answered; [`worst_window_deviation`] turns that sequence into a split-precision figure,
//!   and [`split_order`] puts it back in weir's split order first.
//! - [`scenarios`]: the `weir-bench split|reload|memory|micro|blast|false-rollbacks|control-loop`
//!   benchmarks, which start a weir binary (or run its pieces in-process) and report.
//!
//! Apart from [`scenarios`], nothing here holds process-global state or binds a socket other
//! than `127.0.0.1:0` or a listener that the caller passes in, so any number of backends and
//! load runs can share a process (and a Tokio runtime) with the code under test.

pub mod backend;
pub mod load;
mod rng;
pub mod scenarios;

pub use backend::{Behavior, CONTROL_PATH, FakeBackend, Latency, X_BACKEND};
pub use load::{
    LoadSpec, Mode, Report, SplitOrder, Summary, X_WEIR_SPLIT_SEQ, run, split_order,
    worst_window_deviation,
};
