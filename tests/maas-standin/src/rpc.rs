//! Region–rack RPC: each regiond worker's RPC listener on 5250-5259 and the connection a rack
//! holds to it.
//!
//! Where MAAS does it (canonical/maas 3.4 to master, facts only):
//! - Every regiond worker process runs a `RegionService` (src/maasserver/rpc/regionservice.py)
//!   that binds the first free port of `range(5250, 5260)` (`TCP6ServerEndpoint`, all
//!   addresses; `_bindFirst`) and publishes it to the master (`rpcPublish`), which records it
//!   as the process's endpoints on one source address per subnet of the host
//!   (src/maasserver/ipc.py `registerWorkerRPC`, `_getListenAddresses`; loopback only when the
//!   host has no other address), refreshed every 60 s (`UPDATE_INTERVAL`; `_update` deletes
//!   other regions' processes not refreshed for 90 s).
//! - `GET /MAAS/rpc/` (src/maasserver/views/rpc.py `info`) lists them per process; a rack
//!   connects to each process it does not hold a connection to (src/provisioningserver/rpc/
//!   clusterservice.py `ClusterClientService._update_connections`), authenticates the region
//!   with the shared secret (`ClusterClient.authenticateRegion`: a random message, the region
//!   answers salt and digest), registers (`registerRackWithRegion`:
//!   `RegisterRackController`, which gives the rack its system id), and keeps the connection;
//!   `ClusterClientCheckerService` pings every connection every 30 s (10 s timeout) and drops
//!   the ones that do not answer. The region pushes configuration (DHCP) down the connection.
//!
//! The stand-in's wire format is its own (JSON lines, not AMP); the region authenticates the
//! rack with a proof of the secret in the registration instead of calling back `Authenticate`.

use crate::db;
use crate::regiond::Region;
use crate::util;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The ports a regiond worker tries in turn (`range(5250, 5260)`; test override:
/// `MAAS_STANDIN_RPC_PORTS=p1,p2,...`).
pub fn ports() -> Vec<u16> {
    std::env::var("MAAS_STANDIN_RPC_PORTS")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect::<Vec<u16>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| (5250..5260).collect())
}

/// The digest that proves knowledge of the shared secret for `message` and `salt`
/// (MAAS: `calculate_digest`, HMAC-SHA256, src/provisioningserver/security.py).
pub fn digest(secret: &str, message: &str, salt: &str) -> String {
    util::sha256_hex(format!("maas-standin-rpc\n{}\n{message}\n{salt}", secret.trim()).as_bytes())
}

/// Binds the first free port of [`ports`] (`RegionService._bindFirst`): on `MAAS_STANDIN_BIND`
/// when a test pins the address, else on every address (`::`, or `0.0.0.0` without IPv6).
pub fn bind_first() -> anyhow::Result<(TcpListener, u16)> {
    let bind = std::env::var("MAAS_STANDIN_BIND")
        .ok()
        .filter(|s| !s.is_empty());
    let mut last = None;
    for port in ports() {
        let r = match &bind {
            Some(a) => TcpListener::bind((a.as_str(), port)),
            None if std::path::Path::new("/proc/net/if_inet6").exists() => {
                TcpListener::bind(("::", port))
            }
            None => TcpListener::bind(("0.0.0.0", port)),
        };
        match r {
            Ok(l) => return Ok((l, port)),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "RegionServer endpoint failed to listen: no free port in {:?}: {}",
        ports(),
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// The addresses a region advertises its RPC ports on: one per subnet of the host, loopback
/// only when there is no other (`_getListenAddresses`, `get_all_interface_source_addresses`);
/// the one address a test pins with `MAAS_STANDIN_BIND`.
pub fn advertised_addresses() -> Vec<String> {
    if let Ok(a) = std::env::var("MAAS_STANDIN_BIND") {
        if !a.is_empty() {
            return vec![a];
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = vec![];
    for iface in crate::rackd::interfaces() {
        let Some(net) = db::network_of(&iface) else {
            continue;
        };
        if seen.insert(net) {
            if let Some((ip, _)) = iface.split_once('/') {
                out.push(ip.to_string());
            }
        }
    }
    if out.is_empty() {
        out.push("127.0.0.1".into());
    }
    out
}

/// Writes one JSON line.
pub fn send(w: &Mutex<TcpStream>, v: &Value) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    let mut s = w.lock().map_err(|_| std::io::Error::other("poisoned"))?;
    s.write_all(line.as_bytes())
}

/// Serves one worker's RPC listener: a thread per connection.
pub fn serve(region: Arc<Region>, listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(s) = conn else { continue };
        let r = region.clone();
        std::thread::spawn(move || {
            let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            if let Err(e) = connection(r, s) {
                eprintln!("regiond: rpc connection from {peer}: {e:#}");
            }
        });
    }
}

/// One rack's connection: answers its calls; once it registered, pushes its DHCP
/// configuration whenever that changes (checked every second).
fn connection(region: Arc<Region>, stream: TcpStream) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let writer = Arc::new(Mutex::new(stream.try_clone()?));
    let closed = Arc::new(AtomicBool::new(false));
    let registered: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let pusher = {
        let (region, writer, closed, registered) = (
            region.clone(),
            writer.clone(),
            closed.clone(),
            registered.clone(),
        );
        std::thread::spawn(move || {
            let mut pushed: Option<Value> = None;
            while !closed.load(Ordering::SeqCst) {
                let sid = registered.lock().ok().and_then(|g| g.clone());
                if let Some(sid) = sid {
                    if let Ok(dhcp) = region.with_db(|c| db::dhcp_roles(c, &sid)) {
                        if pushed.as_ref() != Some(&dhcp) {
                            let msg = json!({"cmd": "ConfigureDHCP", "region": region.hostname, "dhcp": dhcp});
                            if send(&writer, &msg).is_err() {
                                break;
                            }
                            pushed = Some(dhcp);
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let result = (|| -> anyhow::Result<()> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let req: Value = serde_json::from_str(line.trim())?;
            let reply = match req["cmd"].as_str().unwrap_or("") {
                "Authenticate" => {
                    let secret = region.with_db(db::read_shared_secret)?.unwrap_or_default();
                    let salt = util::random_hex(32);
                    let message = req["message"].as_str().unwrap_or("");
                    json!({"salt": salt, "digest": digest(&secret, message, &salt)})
                }
                "RegisterRackController" => register(&region, &req, &registered)?,
                "Ping" => json!({"pong": true}),
                other => json!({"error": format!("UnhandledCommand: {other}")}),
            };
            send(&writer, &reply)?;
        }
    })();
    closed.store(true, Ordering::SeqCst);
    let _ = pusher.join();
    result
}

/// `RegisterRackController`: a rack that proves the secret gets its system id (kept across
/// registrations) and its DHCP roles; any other is refused (`CannotRegisterRackController`).
fn register(
    region: &Region,
    req: &Value,
    registered: &Mutex<Option<String>>,
) -> anyhow::Result<Value> {
    let hostname = req["hostname"].as_str().unwrap_or("").to_string();
    let proof = req["proof"].as_str().unwrap_or("");
    let interfaces: Vec<String> = req["interfaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    region.with_db(|c| {
        let secret = db::read_shared_secret(c)?.unwrap_or_default();
        if hostname.is_empty() || secret.is_empty() || util::rack_proof(&secret, &hostname) != proof
        {
            db::rack_event(
                c,
                &hostname,
                false,
                "invalid shared secret",
                &region.hostname,
            )?;
            return Ok(json!({"error": "CannotRegisterRackController",
                "reason": "the shared secret does not match", "region": region.hostname}));
        }
        // region.py RegisterRackController: `version` is optional
        let version = req["version"].as_str();
        let reg = db::rack_seen(c, &hostname, &region.hostname, &interfaces, version)?;
        db::rack_event(c, &hostname, true, "registered", &region.hostname)?;
        if let Ok(mut g) = registered.lock() {
            *g = Some(reg.system_id.clone());
        }
        Ok(json!({
            "system_id": reg.system_id, "region": region.hostname,
            "region_system_id": region.system_id, "uuid": db::maas_uuid(c)?,
            "version": region.version,
        }))
    })
}
