//! The real `weir` binary as a child process, on listening sockets the test binds on
//! `127.0.0.1:0` and hands over as systemd socket activation would (`LISTEN_FDS`): no
//! port is picked, freed and hoped for, and a weir started again on the same sockets
//! finds the connections that arrived while none was running.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::process::Command;

use command_fds::{CommandFdExt, FdMapping};

/// The binary under test.
pub const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// A client listener and an admin listener, bound by the test.
pub struct Sockets {
    pub web: TcpListener,
    pub admin: TcpListener,
}

impl Sockets {
    /// Two fresh sockets on 127.0.0.1, already listening.
    pub fn bind() -> Sockets {
        Sockets {
            web: TcpListener::bind("127.0.0.1:0").expect("bind web"),
            admin: TcpListener::bind("127.0.0.1:0").expect("bind admin"),
        }
    }

    pub fn web_addr(&self) -> SocketAddr {
        self.web.local_addr().expect("web address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("admin address")
    }

    /// Makes `cmd` start with these sockets as fds 3 and 4 and `LISTEN_FDS=2`; weir
    /// takes each for the listener configured on its address.
    pub fn pass_to<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        let fd = |l: &TcpListener| OwnedFd::from(l.try_clone().expect("dup socket"));
        cmd.fd_mappings(vec![
            FdMapping {
                parent_fd: fd(&self.web),
                child_fd: 3,
            },
            FdMapping {
                parent_fd: fd(&self.admin),
                child_fd: 4,
            },
        ])
        .expect("distinct fds")
        .env("LISTEN_FDS", "2")
        .env_remove("LISTEN_PID")
    }
}

/// A test that needs `tool` goes on only where it is installed: on a laptop without it
/// the test says so and passes; under `CI=true` (where `.ci/run` installs it) a missing
/// tool fails the test.
pub fn require(tool: &str, path: Option<String>, install: &str) -> Option<String> {
    if path.is_some() {
        return path;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{tool} is not installed, and CI=true: CI must install it ({install})");
    }
    eprintln!("skipped: {tool} is not installed ({install})");
    None
}

/// Starts a server that takes a port number, not a socket (Prometheus, chromedriver):
/// `command(port)` on a port that was free a moment ago, again on another if the server
/// exits at once because something took the port in between. Returns the child and its
/// port once the port accepts connections.
pub async fn spawn_on_a_port(
    what: &str,
    mut command: impl FnMut(u16) -> Command,
) -> (std::process::Child, u16) {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a port")
            .port();
        let mut child = command(port)
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break; // it could not bind: try another port
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return (child, port);
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "{what} did not listen on {port} within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    panic!("{what} exited at start on five ports in a row");
}
