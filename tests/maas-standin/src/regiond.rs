//! The regiond stand-in: HTTP on its worker sockets behind nginx (5240); a heartbeat row about
//! twice a second; the PostgreSQL listener's connection, held and re-made as MAAS's
//! `PostgresListenerService` does; reconnection when the database moves (settings change in
//! `regiond.conf`) or fails over (only a writable primary is accepted).

use crate::conf::{ConfFile, DbSettings};
use crate::db;
use crate::http;
use crate::paths::Flavor;
use crate::services;
use crate::util;
use anyhow::{Context, Result};
use postgres::Client;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the region writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// A heartbeat older than this means the database is not working for this region.
pub const DB_STALE: Duration = Duration::from_secs(3);
/// How long one heartbeat may take before it is left to finish on its own and the next one
/// goes on another connection. A real regiond serves requests from a pool of threads, each with
/// its own connection: one stuck on a vanished host (a query in flight waits for TCP's
/// retransmissions, which MAAS puts no limit on) does not stop the others. The stand-in's one
/// health signal would otherwise wait for that one query.
pub const DB_DEADLINE: Duration = Duration::from_secs(3);
/// Heartbeats left waiting at most; while that many are, none is started (a regiond's thread
/// pool is finite too).
const BEATS_WAITING: usize = 8;
/// How long the listener waits before it connects again, after a lost connection
/// (`PostgresListenerService.connectionLost`: `reactor.callLater(3, self.tryConnection)`) and
/// after a failed attempt (`tryConnection`'s `eb_connect`: `deferLater(reactor, 3, connect)`),
/// src/maasserver/listener.py, 3.4 to master.
pub const LISTENER_RECONNECT: Duration = Duration::from_secs(3);
/// How often the held listener connection is looked at for a settings change (a poll of the
/// socket, so it costs the database nothing and keeps the connection idle for its keepalive).
const LISTENER_POLL: Duration = Duration::from_millis(500);
/// Idle API connections kept for reuse.
const API_POOL: usize = 4;

/// The ports of a region host: the API (nginx), the internal API (nginx's stream server) and
/// Temporal (test override: `MAAS_STANDIN_PORTS=api,internal,temporal`). regiond itself
/// listens on none of them: only on its worker sockets behind nginx.
pub fn ports() -> Vec<u16> {
    std::env::var("MAAS_STANDIN_PORTS")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect::<Vec<u16>>()
        })
        .filter(|v| v.len() >= 3)
        .unwrap_or_else(|| vec![5240, 5242, 5271])
        .into_iter()
        .take(3)
        .collect()
}

/// How often regiond's service monitor makes sure the services it owns run
/// (`ServiceMonitorService.check_interval`, src/maasserver/regiondservices/service_monitor_service.py).
pub const SERVICE_MONITOR: Duration = Duration::from_secs(30);

/// How often a region refreshes its RPC endpoints in the database (`IPCMasterService.UPDATE_INTERVAL`,
/// src/maasserver/ipc.py).
pub const RPC_ENDPOINTS_UPDATE: Duration = Duration::from_secs(60);

/// A running region's shared state.
pub struct Region {
    /// Snap or deb: which files it reads.
    pub flavor: Flavor,
    /// The host name it reports.
    pub hostname: String,
    /// Its system id (`maas_id`).
    pub system_id: String,
    /// The MAAS version it is (the snap's revision or the debs').
    pub version: String,
    settings: Mutex<(DbSettings, String)>,
    generation: AtomicU64,
    api_pool: Mutex<Vec<(u64, Client)>>,
    last_ok: Mutex<Option<Instant>>,
    last_error: Mutex<String>,
    started: std::sync::atomic::AtomicBool,
    listening: std::sync::atomic::AtomicBool,
}

impl Region {
    /// Loads the configuration of `flavor` and picks (or keeps) the system id.
    pub fn new(flavor: Flavor) -> Result<Region> {
        let conf = ConfFile::load(&flavor.regiond_conf())?;
        let system_id = match util::read_trimmed(&flavor.maas_id()) {
            Some(id) => id,
            None => {
                let id = util::system_id();
                util::write_file(&flavor.maas_id(), format!("{id}\n").as_bytes(), 0o644, None)?;
                id
            }
        };
        Ok(Region {
            flavor,
            hostname: util::hostname(),
            system_id,
            version: crate::snapinfo::version(flavor),
            settings: Mutex::new((conf.db(), conf.get_or_default("maas_url"))),
            generation: AtomicU64::new(0),
            api_pool: Mutex::new(Vec::new()),
            last_ok: Mutex::new(None),
            last_error: Mutex::new("not connected yet".into()),
            started: std::sync::atomic::AtomicBool::new(false),
            listening: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether a heartbeat went through recently: the stand-in's one sign that requests reach
    /// the database. The listener is not part of it: a real regiond whose listener is
    /// reconnecting goes on answering requests on their own connections.
    pub fn db_ok(&self) -> bool {
        self.last_ok
            .lock()
            .map(|t| t.is_some_and(|t| t.elapsed() < DB_STALE))
            .unwrap_or(false)
    }

    /// Whether the listener holds its connection (`PostgresListenerService.connected`).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Why the database is not working, for 503 bodies.
    pub fn db_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// The URL this region was configured with.
    pub fn maas_url(&self) -> String {
        self.settings
            .lock()
            .map(|s| s.1.clone())
            .unwrap_or_default()
    }

    fn db_settings(&self) -> DbSettings {
        self.settings
            .lock()
            .map(|s| s.0.clone())
            .unwrap_or_default()
    }

    /// Runs `f` on a database connection from a small pool, connecting if none is idle. No lock
    /// is held while `f` runs, so one request stuck on a frozen database cannot block the
    /// others; a failed connection is dropped, so the next request reconnects (possibly to a
    /// new primary).
    pub fn with_db<T>(&self, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let gen = self.generation.load(Ordering::SeqCst);
        let idle = {
            let mut pool = self
                .api_pool
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned lock"))?;
            pool.retain(|(g, c)| *g == gen && !c.is_closed());
            pool.pop()
        };
        let mut client = match idle {
            Some((_, c)) => c,
            None => db::connect(&self.db_settings(), "maas-standin-regiond-api")?,
        };
        let r = f(&mut client);
        let reusable = match &r {
            Ok(_) => true,
            Err(e) => {
                e.downcast_ref::<db::Invalid>().is_some()
                    || e.downcast_ref::<db::NotFound>().is_some()
            }
        };
        if reusable && !client.is_closed() {
            if let Ok(mut pool) = self.api_pool.lock() {
                if pool.len() < API_POOL {
                    pool.push((gen, client));
                }
            }
        }
        r
    }

    /// Re-reads regiond.conf; a change of database settings makes every connection reconnect.
    fn reload(&self) -> bool {
        let Ok(conf) = ConfFile::load(&self.flavor.regiond_conf()) else {
            return false;
        };
        let new = (conf.db(), conf.get_or_default("maas_url"));
        let Ok(mut cur) = self.settings.lock() else {
            return false;
        };
        if cur.0 != new.0 {
            *cur = new;
            self.generation.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        cur.1 = new.1;
        false
    }

    fn set_status(&self, ok: bool, err: &str) {
        if ok {
            if let Ok(mut t) = self.last_ok.lock() {
                *t = Some(Instant::now());
            }
        } else if let Ok(mut e) = self.last_error.lock() {
            if *e != err {
                eprintln!("regiond: database: {err}");
            }
            *e = err.to_string();
        }
    }

    /// regiond's start-up against its database, as `start_up` and `inner_start_up` in
    /// src/maasserver/start_up.py (3.4 to master): the shared secret is read from the
    /// database or created there (`security.get_shared_secret`: 16 random bytes, hex, under a
    /// region-wide lock), the region is registered (`get_or_create_running_controller`; here
    /// its heartbeat row), `maas_uuid` is written (`ensure_uuid_in_config`), and last the
    /// secret goes to its file (`MAAS_SHARED_SECRET.set`, 0640, `FileBackedValue` in
    /// src/provisioningserver/utils/env.py). Until then a freshly initialised host has no
    /// secret file: `maas init` deletes it and `dbupgrade` does not write it.
    fn start_up(&self, c: &mut Client) -> Result<()> {
        let shared = db::shared_secret(c, &util::random_hex(32))?;
        db::heartbeat(
            c,
            &self.hostname,
            &self.system_id,
            &self.maas_url(),
            &self.version,
        )?;
        let uuid = db::maas_uuid(c)?;
        if util::read_trimmed(&self.flavor.maas_uuid()).as_deref() != Some(uuid.as_str()) {
            util::write_file(
                &self.flavor.maas_uuid(),
                format!("{uuid}\n").as_bytes(),
                0o644,
                None,
            )?;
        }
        if crate::conf::read_secret(self.flavor).as_deref() != Some(shared.as_str()) {
            crate::conf::write_secret(self.flavor, &shared)?;
        }
        Ok(())
    }

    /// Connects the listener (and, the first time, runs the start-up against the database).
    fn listen(&self) -> Result<Client> {
        let mut c = db::connect(&self.db_settings(), "maas-standin-regiond")?;
        if !self.started.load(Ordering::SeqCst) {
            if db::needs_init(&mut c)? {
                anyhow::bail!(
                    "the database has no MAAS tables (run `maas init` or `maas-region dbupgrade`)"
                );
            }
            self.start_up(&mut c)?;
            self.started.store(true, Ordering::SeqCst);
            eprintln!("regiond: connected to the database; start-up done");
        }
        // MAAS listens on its `sys_*` channels and one per model action; the stand-in sends no
        // notifications, the connection is held for its life alone.
        c.batch_execute("LISTEN sys_standin")?;
        Ok(c)
    }

    /// The listener, as `PostgresListenerService` (src/maasserver/listener.py): a connection
    /// held idle for notifications, so a dead database host is noticed only through the TCP
    /// keepalive of regiond.conf (or an error on the socket); after a loss or a failed
    /// attempt it connects again [`LISTENER_RECONNECT`] later. Never returns.
    pub fn listener_loop(self: Arc<Self>) {
        loop {
            let gen = self.generation.load(Ordering::SeqCst);
            let mut client = match self.listen() {
                Ok(c) => c,
                Err(e) => {
                    let msg = format!("Unable to connect to database: {e:#}");
                    eprintln!("regiond: listener: {msg}");
                    self.listening.store(false, Ordering::SeqCst);
                    std::thread::sleep(LISTENER_RECONNECT);
                    continue;
                }
            };
            eprintln!("regiond: listener: Listening for database notifications.");
            self.listening.store(true, Ordering::SeqCst);
            let lost = loop {
                let polled = postgres::fallible_iterator::FallibleIterator::next(
                    &mut client.notifications().timeout_iter(LISTENER_POLL),
                );
                match polled {
                    Ok(Some(_)) => {}
                    Ok(None) if client.is_closed() => break "Connection closed.".to_string(),
                    Ok(None) if self.generation.load(Ordering::SeqCst) != gen => {
                        break "the database settings changed".to_string()
                    }
                    Ok(None) => {}
                    Err(e) => break format!("Connection lost: {e:#}"),
                }
            };
            drop(client);
            eprintln!("regiond: listener: {lost}");
            self.listening.store(false, Ordering::SeqCst);
            std::thread::sleep(LISTENER_RECONNECT);
        }
    }

    /// One heartbeat through the request connections ([`Region::with_db`]).
    fn beat(&self, prune: bool) -> Result<()> {
        self.with_db(|c| {
            db::heartbeat(
                c,
                &self.hostname,
                &self.system_id,
                &self.maas_url(),
                &self.version,
            )?;
            if prune {
                db::prune_heartbeats(c)?;
            }
            Ok(())
        })
    }

    /// The heartbeat loop: never returns. Each beat runs on its own thread, as a request on one
    /// of regiond's threads; one that misses [`DB_DEADLINE`] counts as failed and is left to
    /// end when TCP gives up on its connection, which is not put back in the pool.
    pub fn heartbeat_loop(self: Arc<Self>) {
        let mut ticks: u64 = 0;
        let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        loop {
            let started = Instant::now();
            if self.reload() {
                eprintln!("regiond: database settings changed; reconnecting");
            }
            if waiting.load(Ordering::SeqCst) >= BEATS_WAITING {
                self.set_status(false, "the database did not answer in time");
            } else if self.started.load(Ordering::SeqCst) {
                let prune = ticks.checked_rem(120) == Some(0);
                let (tx, rx) = std::sync::mpsc::channel();
                let me = self.clone();
                let w = waiting.clone();
                w.fetch_add(1, Ordering::SeqCst);
                let spawned = std::thread::Builder::new()
                    .name("heartbeat-beat".into())
                    .spawn(move || {
                        let r = me.beat(prune);
                        w.fetch_sub(1, Ordering::SeqCst);
                        let _ = tx.send(r);
                    });
                if spawned.is_err() {
                    waiting.fetch_sub(1, Ordering::SeqCst);
                }
                match spawned
                    .map_err(anyhow::Error::from)
                    .and_then(|_| rx.recv_timeout(DB_DEADLINE).map_err(anyhow::Error::from))
                {
                    Ok(Ok(())) => self.set_status(true, ""),
                    Ok(Err(e)) => self.set_status(false, &format!("{e:#}")),
                    Err(_) => self.set_status(false, "the database did not answer in time"),
                }
                ticks += 1;
            }
            std::thread::sleep(HEARTBEAT.saturating_sub(started.elapsed()));
        }
    }
}

/// The services regiond's service monitor keeps running (src/maasserver/service_monitor.py:
/// `HTTPService` `reverse_proxy` → snap `http` / deb `maas-http`; `TemporalService` → snap
/// `temporal` / deb `maas-temporal`; both `AlwaysOnService`, started by regiond, not at boot).
fn ensure_services(flavor: Flavor, f: crate::snapinfo::Features) {
    let mut names = vec!["http"];
    if f.apiserver_and_temporal {
        names.push("temporal");
    }
    match flavor {
        Flavor::Snap => {
            if let Err(e) = crate::pebble::request_start(&names) {
                eprintln!("regiond: service monitor: {e:#}");
            }
        }
        Flavor::Deb => {
            for n in names {
                services::systemctl("start", &format!("maas-{n}.service"));
            }
        }
    }
}

/// One request through the worker's Django stack, timed and measured as
/// `PrometheusRequestMetricsMiddleware` does (src/maasserver/prometheus/middleware.py): the
/// `op` of the form or else the query, the status, the body's length. MAAS names the path by
/// its URL pattern where one resolves; the stand-in's paths carry no ids it would collapse,
/// except the VLAN ones, which it keeps as they came.
fn observed(region: &Region, req: http::Request) -> http::Response {
    let method = req.method.clone();
    let path = req.path.clone();
    // Django's `QueryDict.get` takes a key's last value; the form's `op` wins over the query's.
    let op = req
        .params()
        .into_iter()
        .rev()
        .find(|(k, _)| k == "op")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let started = Instant::now();
    let resp = crate::api::handle(region, req);
    let latency = started.elapsed().as_secs_f64();
    let status = resp.status.to_string();
    let labels = [
        ("method", method.as_str()),
        ("path", path.as_str()),
        ("status", status.as_str()),
        ("op", op.as_str()),
    ];
    let m = crate::metrics::global();
    m.observe("maas_http_request_latency", &labels, latency);
    m.observe("maas_http_response_size", &labels, resp.body.len() as f64);
    resp
}

static TERMINATING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_terminate(_: libc::c_int) {
    TERMINATING.store(true, Ordering::SeqCst);
}

/// A stopping regiond deletes its processes and so its RPC endpoints before it exits
/// (`IPCMasterService.stopService`), so racks stop being sent to it; a killed one leaves them
/// until another region drops them ([`db::RPC_ENDPOINT_REMOVE_SECS`]). The database gets two
/// seconds: a stop must not hang on a database that is gone.
fn exit_cleanly_on_sigterm(region: Arc<Region>) {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_terminate as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGINT,
            on_terminate as *const () as libc::sighandler_t,
        );
    }
    std::thread::spawn(move || loop {
        if TERMINATING.load(Ordering::SeqCst) {
            let (tx, rx) = std::sync::mpsc::channel();
            let r = region.clone();
            std::thread::spawn(move || {
                let _ = tx.send(r.with_db(|c| db::delete_rpc_endpoints(c, &r.system_id)));
            });
            match rx.recv_timeout(Duration::from_secs(2)) {
                Ok(Ok(())) => eprintln!("regiond: stopping; RPC endpoints withdrawn"),
                Ok(Err(e)) => eprintln!("regiond: stopping; RPC endpoints left: {e:#}"),
                Err(_) => eprintln!("regiond: stopping; the database did not answer in time"),
            }
            std::process::exit(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    });
}

/// Runs regiond: never returns unless a worker socket cannot be bound.
///
/// As MAAS's regiond (src/maasserver/eventloop.py `MAASServices.startService`): `start_up`
/// against the database first (retried until it succeeds), then the services: the web workers
/// on their Unix sockets (`num_workers`, `<REGIOND_SOCKET_PATH>.<N>`), `RegionHTTPService`
/// (renders nginx's configuration and reloads it; again whenever the TLS settings change,
/// which MAAS learns through the `sys_reverse_proxy` notify and the stand-in by reading them
/// every second), `RegionTemporalService` (renders Temporal's configuration) and the service
/// monitor (starts nginx and Temporal, every 30 s). Until then nothing of this host answers on
/// 5240; once nginx runs it outlives regiond, and while regiond is down it answers 502.
pub fn run(flavor: Flavor) -> Result<()> {
    util::set_comm("regiond");
    crate::metrics::configure(flavor);
    let region = Arc::new(Region::new(flavor)?);
    exit_cleanly_on_sigterm(region.clone());
    let features = crate::snapinfo::features(flavor);
    eprintln!(
        "regiond: {} ({}) starting up",
        region.hostname, region.system_id
    );
    let hb = region.clone();
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || hb.heartbeat_loop())?;
    let listener = region.clone();
    std::thread::Builder::new()
        .name("listener".into())
        .spawn(move || listener.listener_loop())?;
    while !region.started.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let workers: usize = ConfFile::load(&flavor.regiond_conf())
        .map(|c| c.get_or_default("num_workers"))
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(4)
        .max(1);
    let handler: http::Handler = {
        let r = region.clone();
        Arc::new(move |req| observed(&r, req))
    };
    // The master process's prometheus-exporter service starts once `prepare` (start-up against
    // the database) is done, with the installation's UUID as `maas_id` (`_set_globals`).
    match region.with_db(db::maas_uuid) {
        Ok(uuid) => crate::metrics::global().set_maas_uuid(&uuid, "region"),
        Err(e) => eprintln!("regiond: reading maas_uuid: {e:#}"),
    }
    let endpoints: crate::metrics::Endpoints = {
        let r = region.clone();
        Arc::new(move || r.with_db(db::metrics_endpoints))
    };
    crate::metrics::serve("regiond", crate::metrics::ports().0, Some(endpoints));
    let base = flavor.worker_socket_base();
    if let Some(d) = base.parent() {
        std::fs::create_dir_all(d)?;
    }
    for w in 1..=workers {
        let path = std::path::PathBuf::from(format!("{}.{w}", base.display()));
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        let h = handler.clone();
        std::thread::spawn(move || http::serve_unix(l, h));
    }
    eprintln!(
        "regiond: start-up done; {workers} workers on {}.N",
        base.display()
    );
    // Each worker's RegionService binds the first free port of 5250-5259 and publishes it
    // (regionservice.py `RegionService.startService`). The stand-in's workers are threads, so
    // a worker's `pid` is its thread id: unique on the host, as a worker process's pid is.
    let mut rpc_processes: Vec<(i32, u16)> = vec![];
    for _ in 1..=workers {
        match crate::rpc::bind_first() {
            Ok((l, port)) => {
                let (tx, rx) = std::sync::mpsc::channel();
                let r = region.clone();
                std::thread::spawn(move || {
                    // SAFETY: gettid has no preconditions.
                    let _ = tx.send(unsafe { libc::gettid() });
                    crate::rpc::serve(r, l)
                });
                if let Ok(tid) = rx.recv() {
                    rpc_processes.push((tid, port));
                }
            }
            Err(e) => eprintln!("regiond: {e:#}"),
        }
    }
    let rpc_addresses = crate::rpc::advertised_addresses();
    eprintln!(
        "regiond: RPC on ports {:?} of {:?}",
        rpc_processes.iter().map(|p| p.1).collect::<Vec<_>>(),
        rpc_addresses
    );
    let mut rendered: Option<Option<crate::nginx::Tls>> = None;
    let mut monitored: Option<Instant> = None;
    let mut advertised: Option<Instant> = None;
    loop {
        if advertised.is_none_or(|t| t.elapsed() >= RPC_ENDPOINTS_UPDATE) {
            let r = region.with_db(|c| {
                db::set_rpc_endpoints(
                    c,
                    &region.system_id,
                    &region.hostname,
                    &rpc_processes,
                    &rpc_addresses,
                )
            });
            match r {
                Ok(()) => advertised = Some(Instant::now()),
                Err(e) => eprintln!("regiond: recording RPC endpoints: {e:#}"),
            }
        }
        if let Ok(tls) = region.with_db(db::tls_config) {
            if rendered.as_ref() != Some(&tls) {
                match crate::nginx::render(flavor, tls.as_ref(), workers, features) {
                    Ok(_) => {
                        crate::nginx::reload(flavor);
                        eprintln!(
                            "regiond: nginx configured ({})",
                            match &tls {
                                Some(t) => format!("TLS on {}", t.port),
                                None => "no TLS".into(),
                            }
                        );
                        rendered = Some(tls);
                    }
                    Err(e) => eprintln!("regiond: rendering nginx's configuration: {e:#}"),
                }
            }
        }
        if rendered.is_some() && monitored.is_none_or(|t| t.elapsed() >= SERVICE_MONITOR) {
            if monitored.is_none() && features.apiserver_and_temporal {
                let url = region.maas_url();
                let host = http::parse_url(&url)
                    .map(|u| u.host)
                    .unwrap_or_else(|_| region.hostname.clone());
                if let Err(e) = crate::temporal::render(flavor, &host) {
                    eprintln!("regiond: rendering Temporal's configuration: {e:#}");
                }
            }
            ensure_services(flavor, features);
            monitored = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
