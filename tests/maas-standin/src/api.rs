//! regiond's HTTP API: the MAAS 2.0 API calls the charms make (OAuth PLAINTEXT like the
//! `maas` CLI), `/MAAS/rpc/` (where racks learn the regions' RPC endpoints), and a few loopback-only
//! endpoints for tests.
//!
//! | method, path under `/MAAS/` | what |
//! |---|---|
//! | GET `api/2.0/version/` | anonymous; names the host (`hostname`) |
//! | GET `r/...` | the UI entry page (200); nginx answers `/` and `/MAAS/` itself (301 to `/MAAS/r/`) |
//! | GET `api/2.0/users/?op=whoami`, GET `api/2.0/users/` | the caller; users |
//! | GET `api/2.0/regioncontrollers/`, `api/2.0/rackcontrollers/` | controllers |
//! | GET `api/2.0/subnets/` | subnets learnt from racks |
//! | GET/PUT `api/2.0/fabrics/{f}/vlans/{vid}/` | VLAN, DHCP primary/secondary |
//! | GET/POST `api/2.0/ipranges/` | IP ranges |
//! | GET `api/2.0/maas/?op=get_config&name=`, POST `api/2.0/maas/` `op=set_config` | settings |
//! | GET `rpc/` | the regions' RPC endpoints (`eventloops`), anonymous (views/rpc.py `info`) |
//! | GET `metrics` | the cluster statistics when `prometheus_enabled` is on, anonymous (metrics.rs `stats_response`) |
//! | GET `standin/health` | 200 when the database works (`listener`: whether the listener holds its connection), else 503 |
//! | POST `standin/createadmin`, GET `standin/apikey?username=`, GET `standin/rack-events`, GET `standin/heartbeats` | loopback only, for tests |
//!
//! Anything under `/MAAS/` answers 503 while the region has no working database.

use crate::db;
use crate::http::{Request, Response};
use crate::regiond::Region;
use crate::util;
use serde_json::{json, Value};

/// Routes one request.
pub fn handle(region: &Region, req: Request) -> Response {
    let Some(path) = req.path.strip_prefix("/MAAS/") else {
        if req.path == "/" || req.path == "/MAAS" {
            return Response::text(200, "MAAS stand-in: see /MAAS/api/2.0/version/\n");
        }
        return Response::text(404, "Not Found\n");
    };
    let path = path.to_string();
    if !region.db_ok() {
        return Response::json(
            503,
            &json!({"error": "Database is unavailable", "detail": region.db_error(), "hostname": region.hostname}),
        );
    }
    let result = route(region, &req, &path);
    match result {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn error_response(e: &anyhow::Error) -> Response {
    if let Some(i) = e.downcast_ref::<db::Invalid>() {
        return Response::text(400, i.0.clone());
    }
    if let Some(r) = e.downcast_ref::<db::Raised>() {
        return Response::text(400, r.message.clone());
    }
    if let Some(n) = e.downcast_ref::<db::NotFound>() {
        return Response::text(404, n.0.clone());
    }
    // An error the server reported (bad SQL, constraint) is a bug here, not an outage.
    let server_said = e
        .downcast_ref::<postgres::Error>()
        .is_some_and(|p| p.as_db_error().is_some());
    if server_said {
        return Response::json(
            500,
            &json!({"error": "Internal server error", "detail": format!("{e:#}")}),
        );
    }
    Response::json(
        503,
        &json!({"error": "Database is unavailable", "detail": format!("{e:#}")}),
    )
}

fn ok(v: Value) -> anyhow::Result<Response> {
    Ok(Response::json(200, &v))
}

fn route(region: &Region, req: &Request, path: &str) -> anyhow::Result<Response> {
    let m = req.method.as_str();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match (m, segs.as_slice()) {
        ("GET", ["api", "2.0", "version"]) => {
            let deployment = region.with_db(db::deployment_version)?;
            ok(version(region, deployment))
        }
        // The UI's entry page, for load balancers that check it.
        ("GET", [""] | ["r", ..]) => Ok(Response {
            status: 200,
            content_type: "text/html; charset=utf-8".into(),
            body: format!("<!doctype html><title>MAAS stand-in</title><p>MAAS stand-in (not MAAS) on {}</p>\n", region.hostname).into_bytes(),
        }),
        ("GET", ["standin", "health"]) => ok(json!({"hostname": region.hostname, "database": "ok", "listener": region.listening()})),
        // Public, as MAAS's AccessMiddleware lists `rpc-info` (src/maasserver/middleware.py).
        ("GET", ["rpc"]) => ok(region.with_db(db::rpc_eventloops)?),
        // Public too (middleware.py lists `reverse("metrics")`), and exactly `metrics`
        // (urls.py `path("metrics", prometheus_stats_handler)`).
        ("GET", ["metrics"]) if path == "metrics" => region.with_db(crate::metrics::stats_response),
        (_, ["standin", ..]) => loopback_only(region, req, &segs[1..]),
        (_, ["api", "2.0", rest @ ..]) => {
            let user = match authenticate(region, req)? {
                Some(u) => u,
                None => return Ok(Response::text(401, "Authorization Error: 'Expired timestamp' or invalid credentials\n")),
            };
            api(region, req, &user, rest)
        }
        _ => Ok(Response::text(404, "Not Found\n")),
    }
}

/// The MAAS version of the debs (the snap's is its channel's, `snapinfo::version`).
pub const VERSION: &str = "3.6.3";

/// The version document. `version` is the deployment's, not the answering region's
/// (`api/version.py` `read`: `str(get_maas_version())`, so "None" before any controller
/// reported one); `hostname` tells tests which region answered.
pub fn version(region: &Region, deployment: Option<String>) -> Value {
    json!({
        "capabilities": ["networks-management", "static-ipaddresses", "ipv6-deployment-ubuntu",
                         "devices-management", "storage-deployment-ubuntu", "network-deployment-ubuntu"],
        "version": deployment.unwrap_or_else(|| "None".to_string()),
        "subversion": "maas-standin",
        "hostname": region.hostname,
        "system_id": region.system_id,
        "standin": true,
    })
}

fn oauth_params(header: &str) -> Vec<(String, String)> {
    let body = header.trim().strip_prefix("OAuth").unwrap_or("");
    body.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            Some((
                k.trim().to_string(),
                util::percent_decode(v.trim().trim_matches('"'), false),
            ))
        })
        .collect()
}

fn authenticate(region: &Region, req: &Request) -> anyhow::Result<Option<String>> {
    let Some(h) = req.header("authorization") else {
        return Ok(None);
    };
    let p = oauth_params(h);
    let get = |k: &str| {
        p.iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let token = get("oauth_token");
    let sig = get("oauth_signature");
    let secret = sig.strip_prefix('&').unwrap_or(&sig).to_string();
    if token.is_empty() {
        return Ok(None);
    }
    Ok(region
        .with_db(|c| db::authenticate(c, &token, &secret))?
        .map(|(u, _)| u))
}

fn api(region: &Region, req: &Request, user: &str, rest: &[&str]) -> anyhow::Result<Response> {
    let m = req.method.as_str();
    let op = req.param("op").unwrap_or_default();
    let params: Vec<(String, String)> = req
        .params()
        .into_iter()
        .filter(|(k, _)| k != "op")
        .collect();
    match (m, rest, op.as_str()) {
        ("GET", ["users"], "whoami") => {
            ok(json!({"username": user, "is_superuser": true, "is_local": true}))
        }
        ("GET", ["users"], "") => ok(region.with_db(db::users)?),
        ("GET", ["regioncontrollers"], "") => ok(region.with_db(db::regions)?),
        ("GET", ["rackcontrollers"], "") => ok(region.with_db(db::racks)?),
        ("GET", ["subnets"], "") => ok(region.with_db(db::subnets)?),
        ("GET" | "PUT", ["fabrics", f, "vlans", v], "") => {
            let (Ok(f), Ok(v)) = (f.parse::<i32>(), v.parse::<i32>()) else {
                return Ok(Response::text(404, "No VLAN matches the given query.\n"));
            };
            if m == "GET" {
                ok(region.with_db(|c| db::vlan(c, f, v))?)
            } else {
                ok(region.with_db(|c| db::vlan_update(c, f, v, &params))?)
            }
        }
        ("GET", ["ipranges"], "") => ok(region.with_db(db::ipranges)?),
        ("POST", ["ipranges"], "") => ok(region.with_db(|c| db::iprange_create(c, &params))?),
        ("GET", ["maas"], "get_config") => {
            let name = req.param("name").unwrap_or_default();
            ok(region.with_db(|c| db::get_config(c, &name))?)
        }
        ("POST", ["maas"], "set_config") => {
            let name = req.param("name").unwrap_or_default();
            let value = req.param("value").unwrap_or_default();
            region.with_db(|c| db::set_config(c, &name, &value))?;
            Ok(Response::text(200, "OK"))
        }
        _ => Ok(Response::text(
            404,
            format!(
                "Unknown API endpoint: {} /MAAS/api/2.0/{}/ op={op}\n",
                m,
                rest.join("/")
            ),
        )),
    }
}

fn loopback_only(region: &Region, req: &Request, segs: &[&str]) -> anyhow::Result<Response> {
    if !req.peer.ip().is_loopback() {
        return Ok(Response::text(
            403,
            "test endpoints answer on loopback only\n",
        ));
    }
    match (req.method.as_str(), segs) {
        ("POST", ["createadmin"]) => {
            let g = |k: &str| req.param(k).unwrap_or_default();
            let ssh = req.param("ssh_import").filter(|s| !s.is_empty());
            region.with_db(|c| {
                db::create_admin(
                    c,
                    &g("username"),
                    &g("password"),
                    &g("email"),
                    ssh.as_deref(),
                )
            })?;
            ok(json!({"created": g("username")}))
        }
        ("GET", ["apikey"]) => {
            let user = req.param("username").unwrap_or_default();
            ok(json!(region.with_db(|c| db::api_keys(c, &user))?))
        }
        ("GET", ["rack-events"]) => ok(region.with_db(db::rack_events)?),
        ("GET", ["heartbeats"]) => ok(region.with_db(|c| db::recent_heartbeats(c, 50))?),
        _ => Ok(Response::text(404, "Not Found\n")),
    }
}
