//! weir's rollout control loop: the Argo Rollouts canary and blue-green strategies, run
//! against the proxy's own measurements.
//!
//! Place in the data flow: the binary hands the controller each new config model and
//! gives it two narrow ports ([`ports::MetricsSource`] to read the data plane's windows,
//! [`ports::TrafficRouter`] to set weights through the proxy's single writer). The pure
//! core ([`analysis`], [`engine`]) turns (state, spec, observations, now) into a new state
//! and actions; the thin async shell ([`controller`]) owns clocks, timers, providers and
//! persistence. In cluster mode ([`cluster`]) several replicas share one rollout state
//! through etcd.

pub mod analysis;
pub mod api;
mod clock;
pub mod cluster;
pub mod controller;
pub mod engine;
pub(crate) mod eval;
pub mod judge;
pub mod ports;
pub mod providers;
pub mod replica;
pub(crate) mod resolve;
pub mod sim;
pub mod state;
pub mod store;

pub use controller::{
    ActionError, Clock, Controller, ControllerHandle, ControllerOptions, EventStream, LoopStats,
};
pub use engine::{Action, Refusal, TrafficPlan};
pub use ports::{MetricsSource, Sample, Served, Tally, TrafficRouter};
pub mod notify;
