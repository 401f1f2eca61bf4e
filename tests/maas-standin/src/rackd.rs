//! The rackd stand-in: every 500 ms it registers with the region through the configured
//! `maas_url` (proving it holds the shared secret), and appends the outcome to a JSON-lines log
//! (`/var/log/maas/rackd-standin.log`) so tests can see when a rack lost and regained its region.

use crate::conf::{self, ConfFile};
use crate::http;
use crate::paths::{self, Flavor};
use crate::util;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

/// How often the rack polls its region.
pub const POLL: Duration = Duration::from_millis(500);

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

/// The registration URL for a `maas_url`.
pub fn register_url(maas_url: &str) -> String {
    format!("{}/rpc/standin-register/", maas_url.trim_end_matches('/'))
}

/// One poll: tries every configured URL in turn and returns the log record.
pub fn poll_once(flavor: Flavor, hostname: &str, ifaces: &[String]) -> Value {
    let conf = ConfFile::load(&flavor.rackd_conf()).unwrap_or_default();
    let urls = conf.maas_urls();
    let base = json!({"ts": util::now_rfc3339(), "unix": util::now_unix(), "hostname": hostname});
    let fail = |url: Option<&str>, status: Option<u16>, err: String| {
        let mut v = base.clone();
        v["ok"] = json!(false);
        v["url"] = json!(url);
        v["status"] = json!(status);
        v["error"] = json!(err);
        v
    };
    if urls.is_empty() {
        return fail(None, None, "rackd.conf has no maas_url".into());
    }
    let Some(secret) = conf::read_secret(flavor) else {
        return fail(
            urls.first().map(String::as_str),
            None,
            "no shared secret installed".into(),
        );
    };
    let body = json!({"hostname": hostname, "proof": util::rack_proof(&secret, hostname), "interfaces": ifaces});
    let mut last = fail(None, None, "no URL tried".into());
    for url in &urls {
        let r = http::request(
            "POST",
            &register_url(url),
            &[],
            Some(("application/json", body.to_string().into_bytes())),
            Duration::from_secs(2),
        );
        match r {
            Ok(resp) if resp.status == 200 => {
                let v: Value = serde_json::from_str(&resp.body).unwrap_or(Value::Null);
                let sid = v["system_id"].as_str().unwrap_or("").to_string();
                if !sid.is_empty()
                    && util::read_trimmed(&flavor.maas_id()).as_deref() != Some(sid.as_str())
                {
                    let _ = util::write_file(
                        &flavor.maas_id(),
                        format!("{sid}\n").as_bytes(),
                        0o644,
                        None,
                    );
                }
                let serving = crate::dhcpd::apply(flavor, &v["dhcp"]);
                let mut rec = base.clone();
                rec["ok"] = json!(true);
                rec["url"] = json!(url);
                rec["status"] = json!(200);
                rec["region"] = v["region"].clone();
                rec["system_id"] = json!(sid);
                rec["dhcp"] = v["dhcp"].clone();
                rec["dhcp_serving"] = json!(serving);
                return rec;
            }
            Ok(resp) => {
                let reason = serde_json::from_str::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| resp.body.trim().to_string());
                last = fail(Some(url), Some(resp.status), reason);
                if resp.status == 403 {
                    last["refused"] = json!(true);
                }
            }
            Err(e) => last = fail(Some(url), None, format!("{e:#}")),
        }
    }
    last
}

fn append(rec: &Value) {
    let path = paths::rackd_log();
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = writeln!(f, "{rec}");
    }
}

/// Runs rackd forever.
pub fn run(flavor: Flavor) -> anyhow::Result<()> {
    util::set_comm("rackd");
    let hostname = util::hostname();
    let mut ifaces = interfaces();
    let mut ifaces_at = Instant::now();
    let mut was_ok: Option<bool> = None;
    loop {
        let started = Instant::now();
        if ifaces_at.elapsed() > Duration::from_secs(10) {
            ifaces = interfaces();
            ifaces_at = Instant::now();
        }
        let rec = poll_once(flavor, &hostname, &ifaces);
        let ok = rec["ok"].as_bool().unwrap_or(false);
        if was_ok != Some(ok) {
            eprintln!(
                "rackd: {}",
                if ok {
                    "connected to region".to_string()
                } else {
                    format!("region unreachable: {}", rec["error"])
                }
            );
            was_ok = Some(ok);
        }
        append(&rec);
        std::thread::sleep(POLL.saturating_sub(started.elapsed()));
    }
}
