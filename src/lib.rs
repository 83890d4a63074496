//! The `weir` binary's wiring, as a library so that the end-to-end tests can start the
//! whole thing in-process on `127.0.0.1:0`.
//!
//! [`app`] binds the listeners, builds the data plane ([`weir_proxy`]), starts the config
//! watcher ([`weir_config::watch`]) and the background tasks, and drains them on
//! shutdown; [`sockets`] takes over listening sockets passed by systemd or a supervisor.
//! [`cli`] is the command line. No domain logic lives here.

pub mod app;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod demo;
pub mod sockets;
pub mod wiring;
