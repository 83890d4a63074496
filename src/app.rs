//! Starting and stopping weir: bind, build, spawn, drain.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_config::Model;
use weir_config::watch::{ConfigWatcher, ReloadStats};
use weir_control::cluster::EtcdLink;
use weir_control::{Controller, ControllerHandle, ControllerOptions};
use weir_proxy::admin::Admin;
use weir_proxy::{Proxy, ProxyOptions};

use crate::wiring::{ProxyMetrics, ProxyRouter, RolloutsApi};

/// How to run.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The config file or folder.
    pub config: PathBuf,
    /// Where rollout state is kept.
    pub state_dir: PathBuf,
    /// Worker threads (stats shards).
    pub workers: usize,
    /// Record measurements.
    pub measure: bool,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Watch the config files and reload on change.
    pub watch: bool,
    /// This replica's name in a cluster.
    pub node: String,
}

/// The host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), the default node name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "weir".to_owned())
}

/// Why weir could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An address could not be bound.
    #[error("cannot listen on {address} ({what}): {}{hint}", plain(source))]
    Bind {
        /// Which listener.
        what: String,
        /// Its address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// The data plane could not be built.
    #[error(transparent)]
    Build(#[from] weir_proxy::error::BuildError),
    /// A bound socket has no local address (the OS refused to say).
    #[error("cannot read a bound socket's address: {0}")]
    Address(#[source] std::io::Error),
    /// A metric collector could not be registered (two with one name: a bug).
    #[error("cannot register the metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Cluster mode cannot start (a node name that cannot be a key).
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] weir_control::cluster::ClusterError),
    /// The rollout state folder cannot be used.
    #[error("cannot use the state folder {}: {source}", dir.display())]
    StateDir {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A running weir.
pub struct App {
    /// The data plane.
    pub proxy: Arc<Proxy>,
    /// The current config model.
    pub model: watch::Receiver<Arc<Model>>,
    /// Keeps the model channel open for the App's life, whatever becomes of the watcher
    /// (its closing would stop the control loop).
    _models: watch::Sender<Arc<Model>>,
    /// Each client listener's name and bound address (they move when a reload moves
    /// them).
    listeners: Arc<std::sync::Mutex<Vec<(String, SocketAddr)>>>,
    /// The admin listener's bound address (a reload may move it).
    admin: Arc<std::sync::Mutex<SocketAddr>>,
    /// Notify to reload the config now (SIGHUP).
    pub reload: Arc<Notify>,
    /// Reload outcomes.
    pub reload_stats: Arc<ReloadStats>,
    /// The control loop.
    pub controller: ControllerHandle,
    /// Cluster mode: this replica's link to the others.
    pub cluster: Option<Arc<EtcdLink>>,
    accept: CancellationToken,
    background: CancellationToken,
    tasks: TaskTracker,
    grace: Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("listeners", &self.listeners)
            .field("admin", &self.admin())
            .finish_non_exhaustive()
    }
}

/// The client listeners being served: a reload that adds, moves or removes one binds
/// the new address first (on failure the old one keeps serving), then stops accepting on
/// the old; connections already open carry on until they close.
struct Listeners {
    proxy: Arc<Proxy>,
    accept: CancellationToken,
    tasks: TaskTracker,
    /// Name -> (configured address, bound address, stop accepting).
    bound: BTreeMap<String, (SocketAddr, SocketAddr, CancellationToken)>,
    /// What `App::listeners` shows.
    shown: Arc<std::sync::Mutex<Vec<(String, SocketAddr)>>>,
    /// The admin server, its (configured address, stop accepting), and what `App::admin`
    /// shows.
    admin: Option<(Arc<Admin>, SocketAddr, CancellationToken)>,
    admin_shown: Arc<std::sync::Mutex<SocketAddr>>,
    background: CancellationToken,
}

impl Listeners {
    fn serve(&mut self, name: String, configured: SocketAddr, listener: TcpListener) {
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        let token = self.accept.child_token();
        if let Some((_, _, old)) = self
            .bound
            .insert(name.clone(), (configured, addr, token.clone()))
        {
            old.cancel();
        }
        let proxy = self.proxy.clone();
        self.tasks
            .spawn(async move { proxy.serve_listener(&name, listener, token).await });
    }

    fn serve_admin(&mut self, server: Arc<Admin>, configured: SocketAddr, listener: TcpListener) {
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        let token = self.background.child_token();
        if let Some((_, _, old)) = self
            .admin
            .replace((server.clone(), configured, token.clone()))
        {
            old.cancel();
        }
        *self.admin_shown.lock().unwrap_or_else(|e| e.into_inner()) = addr;
        self.tasks.spawn(server.serve(listener, token));
    }

    async fn reconcile(&mut self, model: &Model) {
        if let Some((server, configured, old_token)) = self.admin.clone()
            && configured != model.proxy.admin
        {
            let new = model.proxy.admin;
            let mut bound = bind("admin", new);
            // The same port on another address (127.0.0.1:P to 0.0.0.0:P): the kernel
            // refuses while the old socket listens, so the old one lets go first, and
            // comes back if the new one still cannot be bound.
            if is_in_use(&bound) && configured.port() == new.port() {
                old_token.cancel();
                bound = bind_retrying("admin", new).await;
                if bound.is_err()
                    && let Ok(back) = bind_retrying("admin", configured).await
                {
                    self.serve_admin(server.clone(), configured, back);
                }
            }
            match bound {
                Ok(listener) => {
                    self.serve_admin(server, new, listener);
                    tracing::info!("admin listener moved from {configured} to {new}");
                }
                Err(e) => tracing::error!("{e}; the admin listener keeps serving on {configured}"),
            }
        }
        let mut released = false;
        self.bound.retain(|name, (_, addr, token)| {
            let kept = model.proxy.listeners.iter().any(|l| &l.name == name);
            if !kept {
                token.cancel();
                released = true;
                tracing::info!(listener = %name, "listener removed: no longer accepting on {addr}");
            }
            kept
        });
        for l in &model.proxy.listeners {
            let old = self.bound.get(&l.name).map(|(c, a, _)| (*c, *a));
            if old.is_some_and(|(configured, _)| configured == l.address) {
                continue;
            }
            // A listener renamed on the same address finds it held until the old one's
            // task has let go of it (at once, once it runs): a few short retries.
            let what = format!("listener {}", l.name);
            let mut bound = if released {
                bind_retrying(&what, l.address).await
            } else {
                bind(&what, l.address)
            };
            // The same port on another address: as for the admin listener above.
            if is_in_use(&bound)
                && let Some((configured, was)) = old
                && configured.port() == l.address.port()
                && let Some((_, _, token)) = self.bound.get(&l.name)
            {
                token.cancel();
                bound = bind_retrying(&what, l.address).await;
                if bound.is_err()
                    && let Ok(back) = bind_retrying(&what, was).await
                {
                    self.serve(l.name.clone(), configured, back);
                }
            }
            match bound {
                Ok(listener) => {
                    self.serve(l.name.clone(), l.address, listener);
                    if let Some((_, was)) = old {
                        tracing::info!(listener = %l.name, "moved from {was} to {}", l.address);
                    }
                }
                Err(e) => match old {
                    Some((_, was)) => {
                        tracing::error!("{e}; it keeps serving on {was}");
                    }
                    None => tracing::error!("{e}; it is not served"),
                },
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let list = self
            .bound
            .iter()
            .map(|(n, (_, a, _))| (n.clone(), *a))
            .collect();
        *self.shown.lock().unwrap_or_else(|e| e.into_inner()) = list;
    }
}

/// Whether binding failed because the address is in use.
fn is_in_use(r: &Result<TcpListener, StartError>) -> bool {
    matches!(r, Err(e) if e.in_use())
}

impl StartError {
    fn in_use(&self) -> bool {
        matches!(self, StartError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
    }
}

/// Binds `addr`, retrying for up to a second while a listener that was just told to stop
/// still holds it (its task lets go as soon as it runs).
async fn bind_retrying(what: &str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let mut tries = 0;
    loop {
        match bind(what, addr) {
            Err(e) if tries < 20 && e.in_use() => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// An OS error without its " (os error N)" suffix, lower-case: "address already in use".
fn plain(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s);
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// Binds `addr` with SO_REUSEADDR and a deep backlog, or takes the socket bound to it
/// that weir was started with ([`crate::sockets`]).
/// The longest `App::start` waits for the control loop's first turn before serving.
const FIRST_TURN_WAIT: Duration = Duration::from_secs(10);

fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let err = |source: std::io::Error| {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                ": another process has this port; stop it or choose another address in the config"
            }
            std::io::ErrorKind::PermissionDenied => {
                ": ports below 1024 need privileges; use a higher port or grant CAP_NET_BIND_SERVICE"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                ": this machine has no such address; use 0.0.0.0 or one of its own addresses"
            }
            _ => "",
        };
        StartError::Bind {
            what: what.to_owned(),
            address: addr,
            source,
            hint,
        }
    };
    if let Some(inherited) = crate::sockets::take(addr) {
        inherited.set_nonblocking(true).map_err(err)?;
        return TcpListener::from_std(inherited).map_err(err);
    }
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

impl App {
    /// Binds every listener, then starts serving. Nothing is served unless everything
    /// could be bound.
    ///
    /// # Errors
    /// A listener cannot be bound, or the data plane cannot be built.
    pub async fn start(model: Model, opts: &ServeOptions) -> Result<App, StartError> {
        let model = Arc::new(model);
        let mut bound = Vec::new();
        for l in &model.proxy.listeners {
            bound.push((
                l.name.clone(),
                bind(&format!("listener {}", l.name), l.address)?,
            ));
        }
        let admin_listener = bind("admin", model.proxy.admin)?;
        let admin = admin_listener.local_addr().map_err(StartError::Address)?;

        let (proxy, updater) = Proxy::new(
            model.clone(),
            ProxyOptions {
                worker_threads: opts.workers,
                measure: opts.measure,
                max_open_files: rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .ok()
                    .map(|(soft, _)| soft)
                    .filter(|n| *n != rlimit::INFINITY),
            },
        )?;
        let proxy = Arc::new(proxy);
        let registry = prometheus::Registry::new();
        let reload_stats = Arc::new(ReloadStats::default());
        proxy.register_metrics(&registry, reload_stats.clone())?;

        let accept = CancellationToken::new();
        let background = CancellationToken::new();
        let tasks = TaskTracker::new();

        tasks.spawn(updater.run(background.clone()));
        {
            let proxy = proxy.clone();
            let token = background.clone();
            tasks.spawn(async move { proxy.maintenance(token).await });
        }

        let mut listeners = Vec::new();
        for (name, listener) in &bound {
            let addr = listener.local_addr().map_err(StartError::Address)?;
            listeners.push((name.clone(), addr));
        }

        // Config: the watcher publishes good models; a bridge hands them to the updater.
        let (tx, rx) = watch::channel(model.clone());

        // The control loop, reaching the proxy through the two ports.
        let proxy_url = listeners.iter().find_map(|(name, addr)| {
            let plain = model
                .proxy
                .listeners
                .iter()
                .any(|l| &l.name == name && l.tls.is_none());
            plain.then(|| format!("http://{addr}"))
        });
        let cluster = match &model.proxy.cluster {
            Some(c) => {
                let link = EtcdLink::start(&c.endpoints, &c.prefix, &opts.node, admin)?;
                tracing::info!(node = %opts.node, "cluster mode: replicas meet through etcd at {}", c.endpoints.join(", "));
                Some(link)
            }
            None => None,
        };
        let metrics: Arc<dyn weir_control::MetricsSource> = match &cluster {
            Some(link) => Arc::new(crate::cluster::ClusterMetrics::start(
                ProxyMetrics(proxy.clone()),
                link.clone(),
                rx.clone(),
                background.clone(),
            )),
            None => Arc::new(ProxyMetrics(proxy.clone())),
        };
        let (controller, handle) = Controller::new(
            rx.clone(),
            metrics,
            Arc::new(ProxyRouter(proxy.clone())),
            ControllerOptions {
                state_dir: Some(opts.state_dir.clone()),
                proxy_url,
                cluster: cluster
                    .clone()
                    .map(|l| l as Arc<dyn weir_control::replica::ClusterLink>),
            },
        )
        .map_err(|source| StartError::StateDir {
            dir: opts.state_dir.clone(),
            source,
        })?;
        // The notifier subscribes before the control loop starts, so that it hears the
        // first turn's events (an initial deploy completes a rollout too).
        let notify_stats = Arc::new(weir_control::notify::NotifyStats::default());
        let notifier = weir_control::notify::Notifier::new(
            rx.clone(),
            handle.subscribe(),
            notify_stats.clone(),
        );
        tasks.spawn(controller.run(background.clone()));
        tasks.spawn(notifier.run(background.clone()));
        // Serve once the control loop's first turn has routed every Rollout (its saved
        // state, or its first revision): until then a Rollout's routes answer 503 "no
        // revision yet", and a restart under load would fail requests. Connections that
        // come meanwhile wait in the listen backlog. The control loop answers only
        // between turns, so any answer means the first turn, traffic included, is done.
        if tokio::time::timeout(FIRST_TURN_WAIT, handle.list())
            .await
            .is_err()
        {
            tracing::warn!(
                "the control loop's first turn took over {}s; serving without waiting for it",
                FIRST_TURN_WAIT.as_secs()
            );
        }
        let mut serving = Listeners {
            proxy: proxy.clone(),
            accept: accept.clone(),
            tasks: tasks.clone(),
            bound: BTreeMap::new(),
            shown: Arc::new(std::sync::Mutex::new(Vec::new())),
            admin: None,
            admin_shown: Arc::new(std::sync::Mutex::new(admin)),
            background: background.clone(),
        };
        for ((name, listener), l) in bound.into_iter().zip(&model.proxy.listeners) {
            serving.serve(name, l.address, listener);
        }
        serving.publish();
        let listeners = serving.shown.clone();
        registry.register(Box::new(crate::wiring::NotifyCollector::new(notify_stats)))?;
        registry.register(Box::new(crate::wiring::ControlCollector::new(
            handle.stats.clone(),
        )))?;
        if let Some(link) = &cluster {
            registry.register(Box::new(crate::wiring::ClusterCollector::new(link.clone())))?;
        }

        let admin_server = Arc::new(Admin::new(
            proxy.clone(),
            registry,
            Some(Arc::new(RolloutsApi {
                handle: handle.clone(),
                models: tx.subscribe(),
                cluster: cluster.clone(),
                proxy: proxy.clone(),
            })),
        ));
        serving.serve_admin(admin_server, model.proxy.admin, admin_listener);
        let admin = serving.admin_shown.clone();
        let models = tx.clone();
        let watcher = ConfigWatcher::new(opts.config.clone(), tx, reload_stats.clone());
        let reload = watcher.trigger();
        {
            // The watcher owns the sender of the models: it lives as long as weir, watching
            // the files or (with --no-watch) waiting for SIGHUP only. Were it dropped, the
            // model channel would close and the control loop with it.
            let token = background.clone();
            let watch_files = opts.watch;
            tasks.spawn(async move {
                if watch_files {
                    if let Err(e) = watcher.run(token).await {
                        tracing::error!("cannot watch the configuration for changes: {e}");
                    }
                    return;
                }
                let trigger = watcher.trigger();
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = trigger.notified() => {
                            watcher.reload_async().await;
                        }
                    }
                }
            });
        }
        {
            let mut rx = rx.clone();
            let updater = proxy.updater.clone();
            let token = background.clone();
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        r = rx.changed() => if r.is_err() { return },
                    }
                    let m = rx.borrow_and_update().clone();
                    updater.set_model(m.clone());
                    // Listeners move once the new table (with their TLS and routes) is
                    // in place, so that a new listener never serves by the old one.
                    updater.flush().await;
                    serving.reconcile(&m).await;
                }
            });
        }

        Ok(App {
            proxy,
            _models: models,
            model: rx,
            listeners,
            admin,
            reload,
            reload_stats,
            controller: handle,
            cluster,
            accept,
            background,
            tasks,
            grace: opts.shutdown_grace,
        })
    }

    /// The bound address of the listener named `name`.
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.listeners()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }

    /// The admin listener's bound address.
    pub fn admin(&self) -> SocketAddr {
        *self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each client listener's name and bound address.
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, then
    /// stops everything. True when every request finished in time.
    pub async fn shutdown(self) -> bool {
        self.accept.cancel();
        // First of all, a replica leaves its cluster: if it led, another takes over at
        // once, while this one finishes the requests in flight with the weights it has.
        if let Some(c) = &self.cluster {
            c.leave().await;
        }
        let drained = self.proxy.drain(self.grace).await;
        if !drained {
            tracing::warn!(
                "shutdown grace period of {:?} ended with requests still in flight",
                self.grace
            );
        }
        self.background.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
        drained
    }
}
