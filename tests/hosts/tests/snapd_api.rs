//! snapd's REST API on /run/snapd.socket in a host: what it says about the snaps the host's
//! `snap` installed, in snapd's shapes, spoken to over HTTP on the unix socket.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// A snap with a daemon, offered on two channels.
fn catalog(prefix: &str) -> PathBuf {
    let dir = PathBuf::from("/tmp/hosts-catalogs").join(prefix);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("snap.lmapi.daemon.service"),
        "[Service]\nExecStart=/bin/sleep 1000\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    let snap = json!({
        "name": "lmapi", "kind": "snap",
        "files": [{"src": dir.join("snap.lmapi.daemon.service").display().to_string(),
                   "dst": "/etc/systemd/system/snap.lmapi.daemon.service", "mode": "0644"}],
        "enable": ["snap.lmapi.daemon.service"],
        "channels": {
            "latest/stable": {"version": "3.6.1", "revision": "41"},
            "3.8/edge": {"version": "3.8.0~beta1", "revision": "57"}
        }
    });
    std::fs::write(dir.join("lmapi.json"), snap.to_string()).unwrap();
    dir
}

/// One HTTP/1.1 exchange on an open connection: status code and JSON body.
fn exchange(c: &mut BufReader<UnixStream>, method: &str, path: &str, close: bool) -> (u16, Value) {
    send(c, method, path, close, "")
}

/// One exchange with a JSON request body.
fn send(
    c: &mut BufReader<UnixStream>,
    method: &str,
    path: &str,
    close: bool,
    body: &str,
) -> (u16, Value) {
    let conn = if close { "Connection: close\r\n" } else { "" };
    write!(
        c.get_mut(),
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n{conn}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut status = String::new();
    c.read_line(&mut status).unwrap();
    let code: u16 = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut len = 0;
    loop {
        let mut h = String::new();
        c.read_line(&mut h).unwrap();
        if h.trim_end().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    c.read_exact(&mut body).unwrap();
    (code, serde_json::from_slice(&body).unwrap())
}

fn put(h: &hosts::Host, path: &str, body: &str) -> (u16, Value) {
    let s = UnixStream::connect(h.path("/run/snapd.socket")).expect("snapd socket");
    send(&mut BufReader::new(s), "PUT", path, true, body)
}

fn get(h: &hosts::Host, method: &str, path: &str) -> (u16, Value) {
    let s = UnixStream::connect(h.path("/run/snapd.socket")).expect("snapd socket");
    exchange(&mut BufReader::new(s), method, path, true)
}

#[test]
fn snapd_socket_answers_for_the_snaps_snap_installed() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hsnapd", 65, Some(catalog("hsnapd")));
    let a = t.add("snapd1");

    // Anyone may read snapd's API: the socket is 0666, as snapd.socket's SocketMode.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a.path("/run/snapd.socket"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666);

    assert_eq!(
        get(&a, "GET", "/v2/snaps"),
        (
            200,
            json!({"type": "sync", "status-code": 200, "status": "OK", "result": [], "sources": ["local"]})
        )
    );
    assert_eq!(
        get(&a, "GET", "/v2/snaps/lmapi"),
        (
            404,
            json!({"type": "error", "status-code": 404, "status": "Not Found",
                   "result": {"message": "snap not installed", "kind": "snap-not-found", "value": "lmapi"}})
        )
    );
    // Not installed, the store has it: find answers with the default channel's offer.
    let (code, v) = get(&a, "GET", "/v2/find?name=lmapi");
    assert_eq!(code, 200);
    assert_eq!(v["sources"], json!(["store"]));
    assert_eq!(v["result"][0]["status"], "available");
    assert_eq!(v["result"][0]["revision"], "41");
    assert_eq!(v["result"][0]["channel"], "latest/stable");
    let (code, v) = get(&a, "GET", "/v2/find?name=nosuchsnap");
    assert_eq!(
        (code, &v["result"]),
        (
            404,
            &json!({"message": "snap not found", "kind": "snap-not-found", "value": "nosuchsnap"})
        )
    );

    // The channel in quotes, as Canonical's snap library passes it, through no shell.
    let o = a
        .command("snap")
        .args(["install", "lmapi", "--channel=\"3.8/edge\""])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let (code, v) = get(&a, "GET", "/v2/snaps");
    assert_eq!(code, 200);
    let list = v["result"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    let s = &list[0];
    assert_eq!(s["name"], "lmapi");
    assert_eq!(s["version"], "3.8.0~beta1");
    assert_eq!(
        s["revision"], "57",
        "a revision is a JSON string, as snap.Revision marshals"
    );
    assert_eq!(s["channel"], "3.8/edge");
    assert_eq!(s["tracking-channel"], "3.8/edge");
    assert_eq!(s["status"], "active");
    assert_eq!(s["confinement"], "strict");
    assert_eq!(s["mounted-from"], "/var/lib/snapd/snaps/lmapi_57.snap");
    assert_eq!(
        s["apps"],
        json!([{"snap": "lmapi", "name": "daemon", "daemon": "simple", "daemon-scope": "system",
                "enabled": true, "active": true}])
    );
    let (code, one) = get(&a, "GET", "/v2/snaps/lmapi");
    assert_eq!((code, &one["result"]), (200, s));
    assert_eq!(one["type"], "sync");

    // What the CLI does shows in the API: a stopped service is not active (omitempty).
    sh(&a, "snap stop lmapi");
    let (code, v) = get(&a, "GET", "/v2/apps?names=lmapi&select=service");
    assert_eq!(
        (code, &v["result"]),
        (
            200,
            &json!([{"snap": "lmapi", "name": "daemon", "daemon": "simple",
                     "daemon-scope": "system", "enabled": true}])
        )
    );
    let (code, v) = get(&a, "GET", "/v2/apps?names=lmapi.nope");
    assert_eq!(
        (code, &v["result"]),
        (
            404,
            &json!({"message": "snap \"lmapi\" has no app \"nope\"", "kind": "app-not-found"})
        )
    );
    let (code, v) = get(&a, "GET", "/v2/apps?names=other");
    assert_eq!(
        (code, v["result"]["kind"].as_str()),
        (404, Some("snap-not-found"))
    );

    sh(&a, "snap refresh lmapi --channel=latest/stable");
    let (_, v) = get(&a, "GET", "/v2/snaps/lmapi");
    assert_eq!(
        (&v["result"]["channel"], &v["result"]["revision"]),
        (&json!("latest/stable"), &json!("41"))
    );

    // Writes are the CLI's: the API refuses them rather than pretending.
    assert_eq!(get(&a, "POST", "/v2/snaps/lmapi").0, 405);

    // Two requests on one connection (HTTP/1.1 keep-alive), as snapd's Go client makes them.
    let s = UnixStream::connect(a.path("/run/snapd.socket")).unwrap();
    let mut c = BufReader::new(s);
    assert_eq!(exchange(&mut c, "GET", "/v2/snaps/lmapi", false).0, 200);
    assert_eq!(exchange(&mut c, "GET", "/v2/snaps/nosuch", true).0, 404);

    // Configuration through the API is a change, done when answered; `snap get` sees it,
    // typed (a number prints as JSON, a string as itself), and null unsets.
    sh(&a, "snap set lmapi keep=1 drop=x");
    let (code, v) = put(
        &a,
        "/v2/snaps/lmapi/conf",
        r#"{"mode": "region", "port": 5240, "drop": null}"#,
    );
    assert_eq!(code, 202, "{v}");
    assert_eq!(
        (&v["type"], &v["status"], &v["result"]),
        (&json!("async"), &json!("Accepted"), &Value::Null)
    );
    let id = v["change"].as_str().unwrap().to_string();
    let (code, c) = get(&a, "GET", &format!("/v2/changes/{id}"));
    assert_eq!(code, 200);
    assert_eq!(
        (
            &c["result"]["id"],
            &c["result"]["kind"],
            &c["result"]["summary"],
            &c["result"]["status"],
            &c["result"]["ready"]
        ),
        (
            &json!(id),
            &json!("configure-snap"),
            &json!("Change configuration of \"lmapi\" snap"),
            &json!("Done"),
            &json!(true)
        )
    );
    assert_eq!(sh(&a, "snap get lmapi mode"), "region");
    assert_eq!(sh(&a, "snap get -t lmapi mode"), "\"region\"");
    assert_eq!(sh(&a, "snap get lmapi port"), "5240");
    assert_eq!(
        serde_json::from_str::<Value>(&sh(&a, "snap get -d lmapi")).unwrap(),
        json!({"keep": 1, "mode": "region", "port": 5240})
    );
    assert_eq!(
        put(&a, "/v2/snaps/nosuch/conf", "{}").1["result"],
        json!({"message": "snap \"nosuch\" is not installed", "kind": "snap-not-found", "value": "nosuch"})
    );
    assert_eq!(put(&a, "/v2/snaps/lmapi/conf", "[1]").0, 400);
    assert_eq!(
        get(&a, "GET", "/v2/changes/999"),
        (
            404,
            json!({"type": "error", "status-code": 404, "status": "Not Found",
                     "result": {"message": "cannot find change with id \"999\""}})
        )
    );

    sh(&a, "snap remove lmapi");
    assert_eq!(get(&a, "GET", "/v2/snaps").1["result"], json!([]));
    t.destroy();
}
