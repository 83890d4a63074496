//! Listening sockets handed to weir by whoever started it: systemd socket activation, or
//! any supervisor that speaks its protocol (`LISTEN_FDS` sockets from fd 3 on, with an
//! optional `LISTEN_PID`). With them, a restart or an upgrade never closes the port: the
//! kernel queues new connections while no weir accepts, and the next weir answers them.
//!
//! A configured address takes the inherited socket bound to that very address; others
//! are bound as usual. Sockets no listener claims stay open, unused, for the life of the
//! process (a reload may still claim them).
//!
//! The protocol's parsing and the fd checks are the `listenfd` crate's; what is ours is
//! matching the sockets to listeners by address.

use std::net::SocketAddr;
use std::sync::Mutex;

static INHERITED: Mutex<Vec<(SocketAddr, std::net::TcpListener)>> = Mutex::new(Vec::new());

/// Takes over the listening TCP sockets passed in the environment, and clears the
/// environment variables that passed them (so that processes weir starts do not see
/// them). Call it once, first thing in `main`, before any thread starts: it edits the
/// environment. Returns the addresses taken over; sockets that are not TCP listeners are
/// left alone and said.
pub fn inherit_from_env() -> Vec<SocketAddr> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut taken = Vec::new();
    let mut inherited = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..fds.len() {
        match fds.take_tcp_listener(i) {
            Ok(Some(l)) => match l.local_addr() {
                Ok(addr) => {
                    taken.push(addr);
                    inherited.push((addr, l));
                }
                Err(e) => eprintln!("weir: inherited socket {i} has no address ({e}); ignored"),
            },
            Ok(None) => {}
            Err(e) => eprintln!(
                "weir: inherited fd {} is not a TCP listener ({e}); ignored",
                i + 3
            ),
        }
    }
    taken
}

/// The inherited socket bound to `addr`, if one was passed and no listener has it yet.
pub(crate) fn take(addr: SocketAddr) -> Option<std::net::TcpListener> {
    let mut inherited = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
    let i = inherited.iter().position(|(a, _)| *a == addr)?;
    Some(inherited.swap_remove(i).1)
}
