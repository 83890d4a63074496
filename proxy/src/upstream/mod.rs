//! The upstream side: a keep-alive pool of raw HTTP/1.1 connections per endpoint
//! ([`pool`]), the client that speaks over them (response heads, the body pump with its
//! pace, the retry of a stale pooled connection: [`client`]), HTTP/2 with prior knowledge
//! for the endpoints that ask for it ([`h2c`]), and mirror copies ([`mirror`]).

pub(crate) mod client;
pub(crate) mod h2c;
mod health;
pub(crate) mod mirror;
mod pool;

pub use pool::{
    BASE_EJECTION, EJECT_AFTER, EndpointPool, Health, MAX_EJECTION, PoolSettings, UpConn,
    Upstreams, clock_ms,
};
