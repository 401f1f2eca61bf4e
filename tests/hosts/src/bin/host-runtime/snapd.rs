//! snapd's REST API on `/run/snapd.socket`, served by the host's init over the records the
//! `snap` stand-in keeps, for what reads snapd's API instead of running `snap` (Canonical's
//! snap library: `SnapCache` lists `GET /v2/snaps`, looks up a snap it lacks with
//! `GET /v2/find?name=`, reads a snap's services from `GET /v2/apps`, and sets configuration
//! with `PUT /v2/snaps/<name>/conf`, waiting on `GET /v2/changes/<id>`). It installs, refreshes
//! and removes through the CLI, so those writes are refused here.
//!
//! Sources (github.com/canonical/snapd): the envelope is daemon/response.go `respJSON`
//! (`type`, `status-code`, `status` = Go's `http.StatusText`, `result`, `sources` on find
//! answers: daemon/api_find.go `findResponse`); errors are daemon/errors.go `apiError.JSON`
//! (`errorResult`: `message` always, `kind` and `value` when set); the kinds are
//! client/errors.go's.

use crate::catalog::{self, Record};
use crate::sup::Sup;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;

/// snapd's socket (dirs.SnapdSocket), 0666 as data/systemd/snapd.socket's `SocketMode=`:
/// any user may ask, as the API's read access allows.
pub const SOCKET: &str = "/run/snapd.socket";

/// Binds the socket and answers on it in the background.
pub fn start(sup: Arc<Sup>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(SOCKET);
    let l = UnixListener::bind(SOCKET)?;
    std::fs::set_permissions(SOCKET, std::fs::Permissions::from_mode(0o666))?;
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let s = sup.clone();
            std::thread::spawn(move || connection(&s, c));
        }
    });
    Ok(())
}

/// HTTP/1.1 requests, one after another, until the client closes or asks to
/// (Python's urllib sends `Connection: close`).
fn connection(sup: &Arc<Sup>, c: UnixStream) {
    let mut rd = BufReader::new(&c);
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            if rd.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                } else if k == "connection" && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut body = vec![0; length];
        if rd.read_exact(&mut body).is_err() {
            return;
        }
        let (status, v) = answer(sup, &method, &target, &body);
        let text = v.to_string();
        let mut w = &c;
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            status_text(status),
            text.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if w.write_all(head.as_bytes()).is_err() || w.write_all(text.as_bytes()).is_err() {
            return;
        }
        if close {
            return;
        }
    }
}

/// Go's `http.StatusText` for the codes answered here.
fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    }
}

fn sync(result: Value) -> (u16, Value) {
    (
        200,
        json!({"type": "sync", "status-code": 200, "status": "OK", "result": result}),
    )
}

/// A find answer (`findResponse`): sync, with where the results came from.
fn found(result: Value, source: &str) -> (u16, Value) {
    let (code, mut v) = sync(result);
    v["sources"] = json!([source]);
    (code, v)
}

fn error(status: u16, message: &str, kind: &str, value: Option<&str>) -> (u16, Value) {
    let mut result = json!({"message": message});
    if !kind.is_empty() {
        result["kind"] = json!(kind);
    }
    if let Some(v) = value {
        result["value"] = json!(v);
    }
    (
        status,
        json!({"type": "error", "status-code": status, "status": status_text(status), "result": result}),
    )
}

fn query<'a>(q: &'a str, key: &str) -> Option<&'a str> {
    q.split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Percent-decoding of a query value (`+` is a space, as Go's url.ParseQuery reads it).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// strutil.CommaSeparatedList: split on commas, spaces trimmed, empties dropped.
fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

fn answer(sup: &Arc<Sup>, method: &str, target: &str, body: &[u8]) -> (u16, Value) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    if let Some(name) = path
        .strip_prefix("/v2/snaps/")
        .and_then(|p| p.strip_suffix("/conf"))
    {
        if method == "PUT" {
            return set_conf(name, body);
        }
    }
    if let Some(id) = path.strip_prefix("/v2/changes/") {
        if method == "GET" {
            return change(id);
        }
    }
    if method != "GET" {
        // gorilla/mux answers a route without that method's handler with 405; install,
        // refresh and remove are the CLI's here.
        return error(
            405,
            &format!("method {method} not supported by the local model's snapd"),
            "",
            None,
        );
    }
    let snaps = || -> Vec<Record> {
        catalog::records()
            .into_iter()
            .filter(|r| r.kind == "snap")
            .collect()
    };
    match path {
        // daemon/api_snaps.go `getSnapsInfo`: every installed snap (`snaps=` narrows to those
        // names), each as `mapLocal` makes it, from source "local".
        "/v2/snaps" => {
            let wanted = query(q, "snaps").map(|s| comma_list(&unescape(s)));
            let list: Vec<Value> = snaps()
                .iter()
                .filter(|r| wanted.as_ref().is_none_or(|w| w.contains(&r.name)))
                .map(|r| local(sup, r))
                .collect();
            found(Value::Array(list), "local")
        }
        // daemon/api_find.go `findOne` (`name=` without a trailing `*`): the store's snap as
        // `mapRemote` makes it, or 404 snap-not-found with store.ErrSnapNotFound's message.
        "/v2/find" => {
            let Some(name) = query(q, "name").map(unescape) else {
                return error(
                    400,
                    "the local model's snapd only answers find?name=",
                    "",
                    None,
                );
            };
            match catalog::lookup_kind(&name, "snap").and_then(Result::ok) {
                Some(e) => found(json!([remote(&e)]), "store"),
                None => error(404, "snap not found", "snap-not-found", Some(&name)),
            }
        }
        // daemon/api_apps.go `getAppsInfo` / `appInfosFor`.
        "/v2/apps" => apps(sup, &snaps(), q),
        _ => match path.strip_prefix("/v2/snaps/") {
            // daemon/api_snaps.go `getSnapInfo`: one installed snap, or `SnapNotFound` with
            // daemon/snap.go's errNoSnap ("snap not installed").
            Some(name) if !name.is_empty() && !name.contains('/') => {
                match snaps().iter().find(|r| r.name == name) {
                    Some(r) => sync(local(sup, r)),
                    None => error(404, "snap not installed", "snap-not-found", Some(name)),
                }
            }
            _ => error(404, "not found", "", None),
        },
    }
}

/// Changes made through the API, by id ("1", "2", ...): each is done when it is answered.
static CHANGES: std::sync::Mutex<Vec<Value>> = std::sync::Mutex::new(Vec::new());

/// An async answer for a change that is already done (`AsyncResponse(nil, id)`).
fn done(kind: &str, summary: String) -> (u16, Value) {
    let now = crate::snap::unix_to_rfc3339(crate::snap::now_unix());
    let mut changes = CHANGES.lock().unwrap_or_else(|e| e.into_inner());
    let id = (changes.len() + 1).to_string();
    // client/change.go `Change`: tasks and err are omitempty; the times are set once ready.
    changes.push(json!({
        "id": id, "kind": kind, "summary": summary, "status": "Done", "ready": true,
        "spawn-time": now, "ready-time": now,
    }));
    (
        202,
        json!({"type": "async", "status-code": 202, "status": "Accepted", "result": null, "change": id}),
    )
}

/// daemon/api_general.go `getChange`: the change, or 404 "cannot find change with id".
fn change(id: &str) -> (u16, Value) {
    let changes = CHANGES.lock().unwrap_or_else(|e| e.into_inner());
    match id
        .parse::<usize>()
        .ok()
        .and_then(|n| changes.get(n.wrapping_sub(1)))
    {
        Some(c) => sync(c.clone()),
        None => error(404, &format!("cannot find change with id {id:?}"), "", None),
    }
}

/// daemon/api_snap_conf.go `setSnapConf`: the body is a JSON object of values (null unsets),
/// applied as a `configure-snap` change; a snap that is not installed is `SnapNotFound` with
/// snap.NotInstalledError's message. The snap has no configure hook to run here.
fn set_conf(name: &str, body: &[u8]) -> (u16, Value) {
    let values: serde_json::Map<String, Value> = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                400,
                &format!("cannot decode request body into patch values: {e}"),
                "",
                None,
            )
        }
    };
    let Some(mut r) = crate::snap::installed(name) else {
        return error(
            404,
            &format!("snap {name:?} is not installed"),
            "snap-not-found",
            Some(name),
        );
    };
    crate::snap::apply_patch(
        &mut r.config,
        values.into_iter().map(|(k, v)| (k, Some(v))).collect(),
    );
    if let Err(e) = catalog::save(&r) {
        return error(500, &e, "", None);
    }
    done(
        "configure-snap",
        format!("Change configuration of {name:?} snap"),
    )
}

fn revision(r: &Record) -> String {
    if r.revision.is_empty() {
        "1".into()
    } else {
        r.revision.clone()
    }
}

/// An installed snap as daemon/snap.go `mapLocal` over client/clientutil/snapinfo.go
/// `ClientSnapFromSnapInfo` gives it (client/packages.go `Snap` for the names; fields without
/// omitempty are always there). What the local model does not know is what a local, unasserted
/// snap has: no id, no publisher, confinement strict (the default when snap.yaml names none),
/// grade stable, type app.
fn local(sup: &Arc<Sup>, r: &Record) -> Value {
    let ch = r.channel.clone().unwrap_or_else(|| "latest/stable".into());
    let rev = revision(r);
    let mut v = json!({
        "id": "",
        "summary": "",
        "description": "",
        "name": r.name,
        "developer": "",
        // Active: the current revision is the one mounted (`snapst.Active`); the stand-in
        // has no disabled snaps.
        "status": "active",
        "type": "app",
        "version": r.version,
        // The channel this revision came from, and the one the snap follows.
        "channel": ch,
        "tracking-channel": ch,
        "ignore-validation": false,
        "revision": rev,
        "confinement": "strict",
        "grade": "stable",
        "private": false,
        "devmode": false,
        "jailmode": false,
        "contact": "",
        // snap.MountFile: dirs.SnapBlobDir/<name>_<revision>.snap.
        "mounted-from": format!("/var/lib/snapd/snaps/{}_{rev}.snap", r.name),
    });
    let apps = app_infos(sup, &r.name);
    if !apps.is_empty() {
        v["apps"] = Value::Array(apps);
    }
    v
}

/// A snap the store offers (`mapRemote`): status available, its default channel's version
/// and revision (the store answers for latest/stable when no channel is asked for).
fn remote(e: &catalog::Entry) -> Value {
    let (version, rev, ch) = match e.channels.get("latest/stable") {
        Some(o) => (o.version.clone(), o.revision.clone(), "latest/stable"),
        None => match e.channels.iter().next() {
            Some((c, o)) => (o.version.clone(), o.revision.clone(), c.as_str()),
            None => (
                e.version.clone().unwrap_or_else(|| "1.0".into()),
                "1".into(),
                "latest/stable",
            ),
        },
    };
    json!({
        "id": "", "summary": "", "description": "", "name": e.name, "developer": "",
        "status": "available", "type": "app", "version": version, "channel": ch,
        "ignore-validation": false, "revision": rev, "confinement": "strict",
        "grade": "stable", "private": false, "devmode": false, "jailmode": false,
        "contact": "",
    })
}

/// A snap's services as client/apps.go `AppInfo` with the status decorator's `enabled` and
/// `active` (both omitempty: false is left out), `daemon` the service's type.
fn app_infos(sup: &Arc<Sup>, snap: &str) -> Vec<Value> {
    crate::snap::snap_units(snap)
        .iter()
        .map(|u| {
            let app = u
                .trim_start_matches(&format!("snap.{snap}."))
                .trim_end_matches(".service");
            let info = sup.info(u);
            let enabled = crate::ctl::run(sup, &["is-enabled".into(), u.clone()], true).code == 0;
            let mut a =
                json!({"snap": snap, "name": app, "daemon": info.kind, "daemon-scope": "system"});
            if enabled {
                a["enabled"] = json!(true);
            }
            if info.active == "active" || info.active == "reloading" {
                a["active"] = json!(true);
            }
            a
        })
        .collect()
}

fn apps(sup: &Arc<Sup>, snaps: &[Record], q: &str) -> (u16, Value) {
    let what = match query(q, "select") {
        None | Some("") => "app",
        Some("service") => "service",
        Some(other) => {
            return error(
                400,
                &format!("invalid select parameter: {:?}", unescape(other)),
                "",
                None,
            )
        }
    };
    let requested = query(q, "names")
        .map(|s| comma_list(&unescape(s)))
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut found: Vec<String> = Vec::new();
    for r in snaps {
        let snap_wanted = requested.iter().any(|n| n == &r.name);
        let picked: Vec<_> = requested
            .iter()
            .filter(|n| n.split_once('.').is_some_and(|(s, _)| s == r.name))
            .collect();
        if !requested.is_empty() && !snap_wanted && picked.is_empty() {
            continue;
        }
        // Every app here is a service, so both selections see the same list.
        let list = app_infos(sup, &r.name);
        if list.is_empty() && snap_wanted {
            return error(
                404,
                &format!("snap {:?} has no {what}s", r.name),
                "app-not-found",
                None,
            );
        }
        if snap_wanted || requested.is_empty() {
            found.push(r.name.clone());
        }
        for a in list {
            let full = format!("{}.{}", r.name, a["name"].as_str().unwrap_or(""));
            if snap_wanted || requested.is_empty() || requested.contains(&full) {
                found.push(full);
                out.push(a);
            }
        }
    }
    for k in &requested {
        if found.contains(k) {
            continue;
        }
        return match k.split_once('.') {
            None => error(
                404,
                &format!("snap {k:?} not found"),
                "snap-not-found",
                Some(k),
            ),
            Some((s, a)) => error(
                404,
                &format!("snap {s:?} has no {what} {a:?}"),
                "app-not-found",
                None,
            ),
        };
    }
    sync(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_snapds_shape() {
        let (code, v) = error(404, "snap not installed", "snap-not-found", Some("maas"));
        assert_eq!(code, 404);
        assert_eq!(
            v,
            json!({"type": "error", "status-code": 404, "status": "Not Found",
                   "result": {"message": "snap not installed", "kind": "snap-not-found", "value": "maas"}})
        );
        // `kind` and `value` are omitempty, `message` is not.
        let (_, v) = error(405, "", "", None);
        assert_eq!(v["result"], json!({"message": ""}));
    }

    #[test]
    fn query_values() {
        assert_eq!(
            query("names=maas&select=service", "select"),
            Some("service")
        );
        assert_eq!(query("select", "select"), Some(""));
        assert_eq!(query("a=1", "select"), None);
        assert_eq!(unescape("maas%2Cpostgresql+x%"), "maas,postgresql x%");
        assert_eq!(comma_list(" a, ,b "), ["a", "b"]);
    }
}
