//! End-to-end tests of weir: real sockets on 127.0.0.1:0, weir started in-process (or as
//! the real binary where signals and exit codes matter), fake backends from weir-bench.

mod kit;

mod abuse;
mod abuse_h2;
mod access_log;
mod affinity;
mod cluster;
mod crash;
mod dashboard;
mod demo;
mod errors;
mod examples;
mod first_errors;
mod gateway_canary;
mod gateway_conformance;
mod h1;
mod h2c_upstream;
mod ingress;
mod judge;
mod limits;
mod no_watch;
mod notify;
mod outlier;
mod prometheus;
mod reload;
mod restart;
mod rollout;
mod route_deadline;
mod shutdown;
mod split;
mod tls;
mod upgrade;
