//! The rackd stand-in, as MAAS's `ClusterClientService` (src/provisioningserver/rpc/
//! clusterservice.py, canonical/maas 3.4 to master; facts only):
//!
//! - On a timer it fetches `<maas_url>/rpc/` for every `maas_url` of rackd.conf at once (5 s
//!   timeout each; `_build_rpc_info_urls`, `_parallel_fetch_rpc_info`, `_fetch_rpc_info`) and
//!   keeps the answer with the most event-loops. A 502 or 503 means "not advertising yet"
//!   (`{"eventloops": None}`); a refused connection or any other failure is logged and changes
//!   nothing: the connections it holds stay. When rackd.conf's URLs give nothing, the URLs of
//!   the saved state (`rpc.state`: `http://<address>:5240/MAAS` per connected region address,
//!   `_update_saved_rpc_info_state`) are tried.
//! - It connects to every advertised event-loop it holds no connection to, trying its
//!   addresses in turn (`_update_connections`, `_calculate_work`, `_make_connections`: all
//!   event-loops at once, each TCP connect up to 30 s, `TCP6ClientEndpoint`'s default), drops
//!   connections to event-loops no longer advertised, authenticates the region and registers
//!   (`ClusterClient.performHandshake`).
//! - The timer runs every second for the first 30 s and while it has no connection or the
//!   region advertises none, every 5 s while some event-loops lack a connection, every 30 s
//!   when it is fully connected (`_calculate_interval`); a lost connection brings it back to
//!   one second at once (`remove_connection`).
//! - Every 30 s each connection is pinged; one that does not answer in 10 s is dropped
//!   (`ClusterClientCheckerService`).
//! - Its service monitor (`ServiceMonitorService`, src/provisioningserver/rackdservices/
//!   service_monitor_service.py: every 30 s, once it holds a connection to a region) makes
//!   sure the rack's always-on services run (src/provisioningserver/service_monitor.py):
//!   `http` (MAAS's nginx: snap pebble service `http`, deb maas-http.service) and, 3.5+,
//!   `agent` (maas-agent, [`crate::agent`]: a process of its own, pebble's `agent`, deb
//!   maas-agent.service). On a region+rack host that is the same nginx regiond starts.
//! - Its HTTP service (`RackHTTPService`, src/provisioningserver/rackdservices/http.py: every
//!   5 s while it knows no region, every 30 s once it does) renders rackd.nginx.conf
//!   ([`crate::nginx::rack_conf`]) into the directory nginx includes `*.nginx.conf` from, with
//!   one address per connected region (`_genRegionIps`: the lowest of each region's
//!   connections), and reloads nginx when it changed (`service_monitor.reloadService("http")`).
//!
//! What tests read: `/var/log/maas/rackd-standin.log`, JSON lines with `ts`, `unix`,
//! `hostname`, `event` and `ok`:
//! `rpc-info` (`url`, `status`, `error`, `eventloops`), `connected` (`eventloop`, `region`,
//! `address`, `port`, `system_id`, `url`), `connect-failed` (`eventloop`, `address`, `port`,
//! `error`, `refused` when the region refused the secret), `disconnected` (`eventloop`,
//! `region`, `error`), `connections` after every update (`ok` = at least one, `regions`,
//! `connections`, `url` = the maas_url that answered this time or null), `dhcp` when what the
//! regions pushed changes (`region`, `dhcp`, `dhcp_serving`), `agent` when one of the agent's
//! connections changes (`temporal`, `internal`).

use crate::conf::{self, ConfFile};
use crate::http;
use crate::paths::{self, Flavor};
use crate::rpc;
use crate::util;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `ClusterClientService.INTERVAL_LOW`, `_MID`, `_HIGH`.
pub const INTERVAL_LOW: Duration = Duration::from_secs(1);
/// See [`INTERVAL_LOW`].
pub const INTERVAL_MID: Duration = Duration::from_secs(5);
/// See [`INTERVAL_LOW`].
pub const INTERVAL_HIGH: Duration = Duration::from_secs(30);
/// How long the fetch of `/MAAS/rpc/` may take (`_fetch_rpc_info`: `callLater(5, d.cancel)`).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A TCP connect to an event-loop (`TCP6ClientEndpoint`'s default timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// `ClusterClientCheckerService`: ping interval and timeout.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// See [`PING_INTERVAL`].
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The host's IPv4 addresses with prefix length (not loopback), as `ip` reports them
/// (test override: `MAAS_STANDIN_INTERFACES=10.77.0.5/24,...`).
pub fn interfaces() -> Vec<String> {
    if let Ok(list) = std::env::var("MAAS_STANDIN_INTERFACES") {
        return list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
    }
    let Ok(out) = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
    else {
        return vec![];
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.find(|w| *w == "inet")?;
            it.next().map(str::to_string)
        })
        .filter(|a| !a.starts_with("127."))
        .collect()
}

/// `_calculate_interval`: how long until the next update.
pub fn calculate_interval(
    running: Duration,
    eventloops: Option<usize>,
    connections: usize,
) -> Duration {
    if running < INTERVAL_HIGH {
        return INTERVAL_LOW;
    }
    match eventloops {
        None | Some(0) => INTERVAL_LOW,
        Some(_) if connections == 0 => INTERVAL_LOW,
        Some(n) if connections < n => INTERVAL_MID,
        Some(_) => INTERVAL_HIGH,
    }
}

/// `<maas_url>/rpc/` (`_build_rpc_info_urls`: the URL's path with `/rpc/` appended).
pub fn rpc_info_url(maas_url: &str) -> String {
    format!("{}/rpc/", maas_url.trim_end_matches('/'))
}

/// Event-loop name → its `[address, port]` endpoints, as `/MAAS/rpc/` lists them.
pub type EventLoops = BTreeMap<String, Vec<(String, u16)>>;

/// What the fetches gave: the event-loops (if any) and the `maas_url` that gave them; or the
/// first failure (HTTP status, reason).
type FetchResult = Result<(Option<EventLoops>, Option<String>), (Option<u16>, String)>;

/// One fetch's outcome.
#[derive(Debug)]
enum Fetched {
    /// The event-loops (name → addresses), or `None` when the region answered 502/503.
    Answer(Option<EventLoops>),
    /// Connection refused, timeout, a body that is not the document...
    Failed(Option<u16>, String),
}

fn fetch(maas_url: &str) -> Fetched {
    match http::request("GET", &rpc_info_url(maas_url), &[], None, FETCH_TIMEOUT) {
        Ok(r) if r.status == 502 || r.status == 503 => Fetched::Answer(None),
        Ok(r) => {
            let parsed = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| {
                if v["eventloops"].is_null() {
                    return Some(None);
                }
                let m = v["eventloops"].as_object()?;
                let mut out = BTreeMap::new();
                for (name, eps) in m {
                    let eps = eps
                        .as_array()?
                        .iter()
                        .filter_map(|e| Some((e[0].as_str()?.to_string(), e[1].as_u64()? as u16)))
                        .collect();
                    out.insert(name.clone(), eps);
                }
                Some(Some(out))
            });
            match parsed {
                Some(loops) => Fetched::Answer(loops),
                None => Fetched::Failed(
                    Some(r.status),
                    format!("not an RPC info document (HTTP {})", r.status),
                ),
            }
        }
        Err(e) => Fetched::Failed(None, format!("{e:#}")),
    }
}

/// `_parallel_fetch_rpc_info`: every URL at once; the answer with the most event-loops wins;
/// with none, the first error; with only empty answers, `None`.
fn fetch_all(urls: &[String]) -> FetchResult {
    let results: Vec<(String, Fetched)> = std::thread::scope(|s| {
        let hs: Vec<_> = urls
            .iter()
            .map(|u| s.spawn(move || (u.clone(), fetch(u))))
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut best: Option<(usize, EventLoops, String)> = None;
    let mut first_err = None;
    for (url, f) in results {
        match f {
            Fetched::Answer(Some(loops)) if !loops.is_empty() => {
                if best.as_ref().is_none_or(|b| loops.len() > b.0) {
                    best = Some((loops.len(), loops, url));
                }
            }
            Fetched::Answer(_) => {}
            Fetched::Failed(status, e) => {
                if first_err.is_none() {
                    first_err = Some((status, e));
                }
            }
        }
    }
    match (best, first_err) {
        (Some((_, loops, url)), _) => Ok((Some(loops), Some(url))),
        (None, Some(e)) => Err(e),
        (None, None) => Ok((None, None)),
    }
}

/// One held connection to a region event-loop.
struct Conn {
    id: u64,
    address: (String, u16),
    region: String,
    writer: Mutex<TcpStream>,
    last_pong: Mutex<Instant>,
    /// When the outstanding Ping was sent: its answer's latency is recorded.
    ping_sent: Mutex<Option<Instant>>,
}

/// The rack's client service.
pub struct Service {
    flavor: Flavor,
    hostname: String,
    conns: Mutex<BTreeMap<String, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Set when a connection is lost: the timer goes back to one second at once.
    reset: AtomicBool,
    dhcp_logged: Mutex<Option<(Value, bool)>>,
    rpc_state: Mutex<Option<BTreeSet<String>>>,
    started: Instant,
}

/// Appends one record to the rack's log.
pub(crate) fn log(event: &str, ok: bool, fields: Value) {
    let mut rec = json!({"ts": util::now_rfc3339(), "unix": util::now_unix(),
        "hostname": util::hostname(), "event": event, "ok": ok});
    if let (Some(r), Value::Object(f)) = (rec.as_object_mut(), fields) {
        r.extend(f);
    }
    append_record(&paths::rackd_log(), &rec);
}

/// Appends `rec` as one JSON line: one write(2) per record, under one lock. `writeln!` on a
/// File issues a write per formatting piece, and the connection threads' pieces interleaved
/// into broken lines (a record went missing for the rpc test on CI).
fn append_record(path: &std::path::Path, rec: &Value) {
    static WRITER: Mutex<()> = Mutex::new(());
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let line = format!("{rec}\n");
    let _one_at_a_time = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The saved state file (`get_maas_data_path("rpc.state")`: `$MAAS_DATA`, the directory of
/// `maas_id`).
pub fn rpc_state_path(flavor: Flavor) -> std::path::PathBuf {
    flavor
        .maas_id()
        .parent()
        .map(|d| d.join("rpc.state"))
        .unwrap_or_else(|| paths::p("/var/lib/maas/rpc.state"))
}

/// Reads one JSON line, within `timeout`.
fn read_reply(reader: &mut BufReader<TcpStream>, timeout: Duration) -> anyhow::Result<Value> {
    reader.get_ref().set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        anyhow::bail!("connection closed by the region");
    }
    Ok(serde_json::from_str(line.trim())?)
}

impl Service {
    fn new(flavor: Flavor) -> Service {
        Service {
            flavor,
            hostname: util::hostname(),
            conns: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            reset: AtomicBool::new(false),
            dhcp_logged: Mutex::new(None),
            rpc_state: Mutex::new(None),
            started: Instant::now(),
        }
    }

    fn connections(&self) -> BTreeMap<String, Arc<Conn>> {
        self.conns.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// `_update_saved_rpc_info_state`: one `http://<address>:5240/MAAS` line per connected
    /// region address, rewritten only when that set changes.
    fn save_rpc_state(&self) {
        let addrs: BTreeSet<String> = self
            .connections()
            .values()
            .map(|c| c.address.0.clone())
            .collect();
        let Ok(mut cur) = self.rpc_state.lock() else {
            return;
        };
        if cur.as_ref() == Some(&addrs) {
            return;
        }
        let port = crate::nginx::http_port();
        let text: String = addrs
            .iter()
            .map(|a| {
                let host = if a.contains(':') {
                    format!("[{a}]")
                } else {
                    a.clone()
                };
                format!("http://{host}:{port}/MAAS\n")
            })
            .collect();
        if util::write_file(&rpc_state_path(self.flavor), text.as_bytes(), 0o644, None).is_ok() {
            *cur = Some(addrs);
        }
    }

    fn saved_urls(&self) -> Vec<String> {
        std::fs::read_to_string(rpc_state_path(self.flavor))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// `_doUpdate`: fetch the event-loops, then connect and drop. Returns how many event-loops
    /// the region advertised (`None`: none known).
    fn update(self: &Arc<Self>) -> Option<usize> {
        let conf = ConfFile::load(&self.flavor.rackd_conf()).unwrap_or_default();
        let urls = conf.maas_urls();
        let mut answered: Option<String> = None;
        let outcome = if urls.is_empty() {
            Err((None, "rackd.conf has no maas_url".to_string()))
        } else {
            let first = fetch_all(&urls);
            match first {
                Ok((Some(l), u)) => Ok((Some(l), u)),
                other => {
                    // `_get_rpc_info`: the saved state's URLs when rackd.conf's gave nothing;
                    // rackd.conf's error stands if they give nothing either.
                    let saved = self.saved_urls();
                    match (saved.is_empty(), other) {
                        (false, other) => match fetch_all(&saved) {
                            Ok((Some(l), u)) => Ok((Some(l), u)),
                            _ => other,
                        },
                        (true, other) => other,
                    }
                }
            }
        };
        let eventloops = match outcome {
            Ok((Some(loops), url)) => {
                log(
                    "rpc-info",
                    true,
                    json!({"url": url, "status": 200, "eventloops": loops.len()}),
                );
                answered = url;
                Some(loops)
            }
            Ok((None, _)) => {
                log(
                    "rpc-info",
                    false,
                    json!({"url": urls.first(), "error": format!(
                        "Region is not advertising RPC endpoints. (While requesting RPC info at {})",
                        urls.iter().map(|u| rpc_info_url(u)).collect::<Vec<_>>().join(", "))}),
                );
                None
            }
            Err((status, e)) => {
                log(
                    "rpc-info",
                    false,
                    json!({"url": urls.first(), "status": status, "error": format!(
                        "Region not available: {e} (While requesting RPC info at {}).",
                        urls.iter().map(|u| rpc_info_url(u)).collect::<Vec<_>>().join(", "))}),
                );
                None
            }
        };
        let n = eventloops.as_ref().map(|l| l.len());
        if let Some(loops) = eventloops {
            self.update_connections(&loops, answered.as_deref().unwrap_or(""));
        }
        let conns = self.connections();
        let regions: BTreeSet<&str> = conns.values().map(|c| c.region.as_str()).collect();
        log(
            "connections",
            !conns.is_empty(),
            json!({"url": answered, "regions": regions,
                   "connections": conns.iter().map(|(e, c)| json!({"eventloop": e, "address": c.address.0, "port": c.address.1})).collect::<Vec<_>>()}),
        );
        n
    }

    /// `_calculate_work` and `_make_connections`.
    fn update_connections(self: &Arc<Self>, loops: &EventLoops, url: &str) {
        let held = self.connections();
        let mut connect = vec![];
        for (name, addrs) in loops {
            match held.get(name) {
                Some(c) if addrs.contains(&c.address) => {}
                Some(c) => {
                    self.drop_conn(name, c, "its address is no longer advertised");
                    connect.push((name.clone(), addrs.clone()));
                }
                None => connect.push((name.clone(), addrs.clone())),
            }
        }
        for (name, c) in &held {
            if !loops.contains_key(name) {
                self.drop_conn(name, c, "the event-loop is no longer advertised");
            }
        }
        std::thread::scope(|s| {
            for (name, addrs) in &connect {
                let me = self.clone();
                s.spawn(move || {
                    for addr in addrs {
                        match me.connect(name, addr, url) {
                            Ok(()) => break,
                            Err((refused, e)) => log(
                                "connect-failed",
                                false,
                                json!({"eventloop": name, "address": addr.0, "port": addr.1,
                                       "error": format!("{e:#}"), "refused": refused}),
                            ),
                        }
                    }
                });
            }
        });
    }

    fn drop_conn(&self, name: &str, c: &Conn, why: &str) {
        eprintln!("rackd: dropping connection to event-loop {name}: {why}");
        if let Ok(w) = c.writer.lock() {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Connects to one event-loop address, authenticates the region and registers; on
    /// success the connection is held and served by its own thread. `Err((refused, why))`.
    fn connect(
        self: &Arc<Self>,
        name: &str,
        addr: &(String, u16),
        url: &str,
    ) -> Result<(), (bool, anyhow::Error)> {
        let fail = |e: anyhow::Error| (false, e);
        let sa: SocketAddr = (addr.0.as_str(), addr.1)
            .to_socket_addrs()
            .map_err(|e| fail(e.into()))?
            .next()
            .ok_or_else(|| fail(anyhow::anyhow!("no address for {}", addr.0)))?;
        let stream =
            TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT).map_err(|e| fail(e.into()))?;
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone().map_err(|e| fail(e.into()))?;
        let mut reader = BufReader::new(stream);
        let Some(secret) = conf::read_secret(self.flavor) else {
            return Err((false, anyhow::anyhow!("no shared secret installed")));
        };
        let w = Mutex::new(writer);
        let message = util::random_hex(32);
        rpc::send(&w, &json!({"cmd": "Authenticate", "message": message}))
            .map_err(|e| fail(e.into()))?;
        let auth = read_reply(&mut reader, PING_TIMEOUT).map_err(fail)?;
        let salt = auth["salt"].as_str().unwrap_or("");
        if auth["digest"].as_str() != Some(rpc::digest(&secret, &message, salt).as_str()) {
            return Err((
                true,
                anyhow::anyhow!("Event-loop '{name}' FAILED authentication; dropping connection."),
            ));
        }
        let system_id = util::read_trimmed(&self.flavor.maas_id()).unwrap_or_default();
        rpc::send(
            &w,
            &json!({"cmd": "RegisterRackController", "system_id": system_id,
                    "hostname": self.hostname, "interfaces": interfaces(), "url": url,
                    "version": crate::snapinfo::version(self.flavor),
                    "proof": util::rack_proof(&secret, &self.hostname)}),
        )
        .map_err(|e| fail(e.into()))?;
        let reg = read_reply(&mut reader, PING_TIMEOUT).map_err(fail)?;
        if let Some(err) = reg["error"].as_str() {
            return Err((
                true,
                anyhow::anyhow!(
                    "Rack controller REJECTED by the region (via {name}): {err}: {}",
                    reg["reason"].as_str().unwrap_or("")
                ),
            ));
        }
        let sid = reg["system_id"].as_str().unwrap_or("").to_string();
        if !sid.is_empty() && system_id != sid {
            let _ = util::write_file(
                &self.flavor.maas_id(),
                format!("{sid}\n").as_bytes(),
                0o644,
                None,
            );
        }
        if let Some(uuid) = reg["uuid"].as_str() {
            // `registerRackWithRegion`: `set_global_labels(maas_uuid=...)`.
            crate::metrics::global().set_maas_uuid(uuid, "rack");
        }
        let region = reg["region"].as_str().unwrap_or("").to_string();
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            address: addr.clone(),
            region: region.clone(),
            writer: w,
            last_pong: Mutex::new(Instant::now()),
            ping_sent: Mutex::new(None),
        });
        if let Ok(mut m) = self.conns.lock() {
            m.insert(name.to_string(), conn.clone());
        }
        log(
            "connected",
            true,
            json!({"eventloop": name, "region": region, "address": addr.0, "port": addr.1,
                   "system_id": sid, "url": url}),
        );
        eprintln!(
            "rackd: Rack controller '{sid}' registered (via {name}) with MAAS version {}.",
            reg["version"].as_str().unwrap_or("")
        );
        self.save_rpc_state();
        let me = self.clone();
        let name = name.to_string();
        std::thread::spawn(move || me.serve(name, conn, reader));
        Ok(())
    }

    /// Reads what the region sends on one connection until it closes: pongs and pushed
    /// DHCP configuration. Then forgets the connection (`remove_connection`).
    fn serve(self: Arc<Self>, name: String, conn: Arc<Conn>, mut reader: BufReader<TcpStream>) {
        let _ = reader.get_ref().set_read_timeout(None);
        let mut line = String::new();
        let why = loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break "connection closed by the region".to_string(),
                Err(e) => break e.to_string(),
                Ok(_) => {}
            }
            let Ok(msg) = serde_json::from_str::<Value>(line.trim()) else {
                continue;
            };
            if msg["pong"] == true {
                if let Ok(mut t) = conn.last_pong.lock() {
                    *t = Instant::now();
                }
                // `Common.__call__` records a call's latency when it succeeds (a callback, no
                // errback), labelled with the command's name.
                if let Some(sent) = conn.ping_sent.lock().ok().and_then(|mut s| s.take()) {
                    crate::metrics::global().observe(
                        "maas_rack_region_rpc_call_latency",
                        &[("call", "Ping")],
                        sent.elapsed().as_secs_f64(),
                    );
                }
            } else if msg["cmd"] == "ConfigureDHCP" {
                self.configure_dhcp(&msg);
            }
        };
        let removed = self
            .conns
            .lock()
            .map(|mut m| {
                if m.get(&name).is_some_and(|c| c.id == conn.id) {
                    m.remove(&name);
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if removed {
            log(
                "disconnected",
                false,
                json!({"eventloop": name, "region": conn.region, "address": conn.address.0,
                       "port": conn.address.1, "error": why}),
            );
            self.save_rpc_state();
            self.reset.store(true, Ordering::SeqCst);
        }
    }

    fn configure_dhcp(&self, msg: &Value) {
        let serving = crate::dhcpd::apply(self.flavor, &msg["dhcp"]);
        let now = (msg["dhcp"].clone(), serving);
        let Ok(mut last) = self.dhcp_logged.lock() else {
            return;
        };
        if last.as_ref() != Some(&now) {
            log(
                "dhcp",
                true,
                json!({"region": msg["region"], "dhcp": msg["dhcp"], "dhcp_serving": serving}),
            );
            *last = Some(now);
        }
    }

    /// `ClusterClientCheckerService`: ping every connection; drop the ones silent for
    /// [`PING_TIMEOUT`].
    fn checker(self: Arc<Self>) {
        loop {
            std::thread::sleep(PING_INTERVAL);
            let sent = Instant::now();
            let conns = self.connections();
            for c in conns.values() {
                if let Ok(mut s) = c.ping_sent.lock() {
                    *s = Some(Instant::now());
                }
                let _ = rpc::send(&c.writer, &json!({"cmd": "Ping"}));
            }
            std::thread::sleep(PING_TIMEOUT);
            for (name, c) in &conns {
                let answered = c.last_pong.lock().map(|t| *t >= sent).unwrap_or(false);
                if !answered {
                    eprintln!("rackd: Failure on ping dropping connection to event-loop: {name}");
                    self.drop_conn(name, c, "no answer to ping");
                }
            }
        }
    }
}

/// `RackHTTPService.INTERVAL_LOW`, `INTERVAL_HIGH`.
pub const HTTP_INTERVAL_LOW: Duration = Duration::from_secs(5);
/// See [`HTTP_INTERVAL_LOW`].
pub const HTTP_INTERVAL_HIGH: Duration = Duration::from_secs(30);
/// `ServiceMonitorService.check_interval` (the rack's).
pub const SERVICE_MONITOR: Duration = Duration::from_secs(30);

/// `_genRegionIps`: per region (the event-loop name before its `:`), the lowest address of
/// its connections; an IPv4-mapped address as IPv4, IPv6 in brackets.
pub fn region_ips<'a>(conns: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut per: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (eventloop, addr) in conns {
        let region = eventloop.split(':').next().unwrap_or(eventloop);
        per.entry(region).or_default().insert(addr);
    }
    per.values()
        .filter_map(|a| a.iter().next())
        .map(|a| match a.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => format!("[{v6}]"),
            },
            _ => a.to_string(),
        })
        .collect()
}

impl Service {
    /// `RackHTTPService`: renders rackd.nginx.conf for the regions connected now, reloading
    /// nginx when it changed; forever.
    fn http_service(self: Arc<Self>, f: crate::snapinfo::Features) {
        let mut applied: Option<Vec<String>> = None;
        loop {
            let conns = self.connections();
            let mut ips = region_ips(
                conns
                    .iter()
                    .map(|(name, c)| (name.as_str(), c.address.0.as_str())),
            );
            ips.sort();
            if applied.as_ref() != Some(&ips) {
                match crate::nginx::render_rack(self.flavor, &ips, f) {
                    Ok(changed) => {
                        if changed {
                            crate::nginx::reload(self.flavor);
                        }
                        applied = Some(ips.clone());
                    }
                    Err(e) => eprintln!("rackd: Failed to update HTTP configuration: {e:#}"),
                }
            }
            std::thread::sleep(if ips.is_empty() {
                HTTP_INTERVAL_LOW
            } else {
                HTTP_INTERVAL_HIGH
            });
        }
    }
}

/// The rack's service monitor: `http`, and `agent` from 3.5, started as the packaging starts
/// them (pebble for the snap, systemctl for the debs).
fn ensure_services(flavor: Flavor, f: crate::snapinfo::Features) {
    let mut names = vec!["http"];
    if f.apiserver_and_temporal {
        names.push("agent");
    }
    match flavor {
        Flavor::Snap => {
            if let Err(e) = crate::pebble::request_start(&names) {
                eprintln!("rackd: service monitor: {e:#}");
            }
        }
        Flavor::Deb => {
            for n in names {
                crate::services::systemctl("start", &format!("maas-{n}.service"));
            }
        }
    }
}

/// Runs rackd forever.
pub fn run(flavor: Flavor) -> anyhow::Result<()> {
    util::set_comm("rackd");
    crate::metrics::configure(flavor);
    let svc = Arc::new(Service::new(flavor));
    // rackd's HTTP site (5249: `/metrics`, also `/boot` and `/log`, which the stand-in lacks)
    // starts with rackd, before any region is reached.
    crate::metrics::serve("rackd", crate::metrics::ports().1, None);
    let f = crate::snapinfo::features(flavor);
    {
        let s = svc.clone();
        std::thread::spawn(move || s.checker());
    }
    {
        let s = svc.clone();
        std::thread::spawn(move || s.http_service(f));
    }
    let mut was_connected: Option<bool> = None;
    let mut monitored: Option<Instant> = None;
    loop {
        let n = svc.update();
        let conns = svc.connections().len();
        // `monitorServices` only with a connection to report to (`_getConnection`).
        if conns > 0 && monitored.is_none_or(|t| t.elapsed() >= SERVICE_MONITOR) {
            ensure_services(flavor, f);
            monitored = Some(Instant::now());
        }
        if was_connected != Some(conns > 0) {
            eprintln!(
                "rackd: {}",
                if conns > 0 {
                    format!("connected to {conns} event-loop(s)")
                } else {
                    "no connection to a region".into()
                }
            );
            was_connected = Some(conns > 0);
        }
        let interval = calculate_interval(svc.started.elapsed(), n, conns);
        let until = Instant::now() + interval;
        while Instant::now() < until && !svc.reset.swap(false, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_by_many_threads_stay_whole_lines() {
        let dir = std::env::temp_dir().join(format!("rackd-log-{}", std::process::id()));
        let path = dir.join("rackd-standin.log");
        let _ = std::fs::remove_file(&path);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let rec = json!({"event": "connected", "thread": t, "i": i,
                            "pad": "x".repeat(64 * (i % 5))});
                        append_record(&path, &rec);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut seen = BTreeSet::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            seen.insert((v["thread"].as_u64().unwrap(), v["i"].as_u64().unwrap()));
        }
        assert_eq!(seen.len(), 8 * 200, "every record is one whole line");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn interval_follows_cluster_client_service() {
        let long = Duration::from_secs(60);
        assert_eq!(
            calculate_interval(Duration::from_secs(5), Some(4), 4),
            INTERVAL_LOW,
            "just started"
        );
        assert_eq!(calculate_interval(long, None, 3), INTERVAL_LOW);
        assert_eq!(calculate_interval(long, Some(0), 0), INTERVAL_LOW);
        assert_eq!(calculate_interval(long, Some(4), 0), INTERVAL_LOW);
        assert_eq!(calculate_interval(long, Some(4), 2), INTERVAL_MID);
        assert_eq!(calculate_interval(long, Some(4), 4), INTERVAL_HIGH);
    }

    /// `_genRegionIps`: one address per region, the lowest of its connections.
    #[test]
    fn region_ips_are_one_per_region_the_lowest_address() {
        let ips = region_ips([
            ("region-a:pid=10", "10.0.0.2"),
            ("region-a:pid=11", "10.0.0.1"),
            ("region-b:pid=20", "::ffff:10.0.0.3"),
            ("region-c:pid=30", "fd00::5"),
        ]);
        assert_eq!(ips, ["10.0.0.1", "10.0.0.3", "[fd00::5]"]);
        assert!(region_ips([]).is_empty());
    }

    #[test]
    fn rpc_info_url_appends_rpc_to_the_path() {
        assert_eq!(
            rpc_info_url("http://10.0.0.1:5240/MAAS"),
            "http://10.0.0.1:5240/MAAS/rpc/"
        );
        assert_eq!(
            rpc_info_url("http://10.0.0.1:5240/MAAS/"),
            "http://10.0.0.1:5240/MAAS/rpc/"
        );
    }
}
