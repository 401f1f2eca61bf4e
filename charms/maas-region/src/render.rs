//! Pure rendering: haproxy.cfg, the database URI, the MAAS URL and the ports to open. No I/O.

use charm_lib::Port;

/// One region behind haproxy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    /// A stable server name (the unit name with `/` replaced), e.g. `maas-region-0`.
    pub name: String,
    /// The address haproxy connects to.
    pub address: String,
}

impl Backend {
    /// A backend for a unit (`maas-region/0`) at `address`.
    pub fn for_unit(unit: &str, address: &str) -> Backend {
        Backend {
            name: unit.replace('/', "-"),
            address: address.to_string(),
        }
    }
}

/// What haproxy forwards, beyond port 80.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HaproxyOptions {
    /// 443 → 5443 (TCP passthrough) when MAAS serves TLS.
    pub tls: bool,
    /// The unit is leaving: no [`VIP_READY_PORT`] listener, so the VIP's check fails here
    /// while haproxy goes on serving.
    pub draining: bool,
}

/// haproxy's own listener on 127.0.0.1 that the VIP's check connects to ([`vip_check`]).
/// A leaving region renders haproxy without it: keepalived's check fails, the instance goes
/// to FAULT and sends a priority-0 advert, and a backup takes the VIP at once, while this
/// haproxy still answers whoever reaches it meanwhile. Stopping haproxy instead would move
/// the VIP only after a failed check, with every request in between refused.
pub const VIP_READY_PORT: u16 = 8406;

/// The regions a rendered haproxy.cfg balances port 80 over (its 5240 servers): what a
/// leaving unit keeps, since its own view of the peers empties as it departs from each.
pub fn haproxy_backends(cfg: &str) -> Vec<Backend> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in cfg.lines() {
        if !l.starts_with(' ') {
            inside = l.trim() == "backend maas_http";
            continue;
        }
        let mut words = l.split_whitespace();
        if !inside || words.next() != Some("server") {
            continue;
        }
        let (Some(name), Some(target)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(addr) = target.strip_suffix(":5240") else {
            continue;
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        out.push(Backend {
            name: name.to_string(),
            address: addr.to_string(),
        });
    }
    out
}

/// Health checks of every region: every 2 s, every 500 ms once one failed (so a dead region
/// is out of the hash within about 2 s of its first failed check), up after 2 passes.
pub const SERVER_CHECK: &str = "check inter 2s fastinter 500ms rise 2 fall 3";

/// Server timeout: MAAS documents 90 s; long API calls (image uploads, big queries) need more,
/// so the modern charm's 900 s is used.
pub const SERVER_TIMEOUT: &str = "900s";

fn address_for_server(a: &str) -> String {
    if a.contains(':') && !a.starts_with('[') {
        format!("[{a}]")
    } else {
        a.to_string()
    }
}

fn servers(out: &mut String, backends: &[Backend], port: u16, check: &str) {
    let mut sorted = backends.to_vec();
    sorted.sort();
    sorted.dedup();
    for b in &sorted {
        out.push_str(&format!(
            "    server {} {}:{port} {check}\n",
            b.name,
            address_for_server(&b.address)
        ));
    }
}

/// The URL users reach MAAS's HTTPS on, given the (http) MAAS URL: haproxy's 443 on the
/// same host, or MAAS's own TLS port on a region without haproxy.
pub fn https_url(maas_url: &str, haproxy: bool) -> String {
    let rest = maas_url.split_once("://").map_or(maas_url, |(_, r)| r);
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    };
    if haproxy {
        format!("https://{host}/{path}")
    } else {
        format!("https://{host}:5443/{path}")
    }
}

/// The health check of a region, on 5240 whether or not TLS is on: `GET /MAAS/rpc/` is
/// answered by regiond itself from its database (canonical/maas `src/maasserver/views/rpc.py`
/// `info`) and stays on http with TLS on (`regiond.nginx.conf.template`, the http server
/// that keeps rpc, metadata, enlistment and images), where every other `/MAAS` path answers
/// 301 to https. nginx holds 5240 and 5443 while regiond is down, so a TCP check would not
/// see a dead region.
pub const HEALTH_PATH: &str = "/MAAS/rpc/";

/// 443 → every region's 5443, TLS passed through (MAAS's nginx terminates it with the one
/// certificate every region serves), checked with the same HTTP check on 5240 as port 80.
fn tls_service(out: &mut String, backends: &[Backend]) {
    out.push_str(&format!(
        "\nfrontend maas_https\n    bind *:443\n    mode tcp\n    option tcplog\n    default_backend maas_https\n\nbackend maas_https\n    mode tcp\n    balance source\n    hash-type consistent\n    option httpchk GET {HEALTH_PATH}\n    http-check expect status 200\n"
    ));
    servers(out, backends, 5443, &format!("{SERVER_CHECK} port 5240"));
}

/// haproxy.cfg for the regions in `backends` (this unit included). Port 80 goes to every
/// region's 5240 in HTTP mode with source hashing, so a client keeps its region (MAAS's UI
/// websocket and sessions) while regions come and go with minimal reshuffling.
///
/// A region whose host is gone drops connection attempts silently. `timeout connect 1s` (the
/// regions share a LAN with haproxy) with `option redispatch 1` (every retry may pick another
/// region, not only the last) moves a request hashed to that region to a live one within about
/// a second, before the client gives up (rackd polls with a 2 s timeout) and before the health
/// checks have taken the region out. A GET (or HEAD) whose region died while answering it
/// (`empty-response`), or answered 503 (a regiond just restarted, its database connection not
/// up yet) or 502 (MAAS's nginx owns 5240 since MAAS 3.2 and answers 502 while regiond behind
/// it is down: `regiond.nginx.conf.template`), is retried on another region too; other methods
/// are not, since MAAS may have applied them.
pub fn haproxy_cfg(backends: &[Backend], opts: HaproxyOptions) -> String {
    let mut out = String::from(
        "# Rendered by the maas-region charm: changes here are overwritten.\n\
global\n\
    log /dev/log local0\n\
    maxconn 8192\n\
    user haproxy\n\
    group haproxy\n\
    daemon\n\
\n\
defaults\n\
    log global\n\
    option dontlognull\n\
    retries 3\n\
    option redispatch 1\n\
    timeout connect 1s\n\
    timeout client 900s\n\
    timeout check 5s\n\
    timeout tunnel 1h\n",
    );
    out.push_str(&format!("    timeout server {SERVER_TIMEOUT}\n"));
    out.push_str(
        "\nfrontend maas_http\n    bind *:80\n    mode http\n    option httplog\n    option http-server-close\n    option forwardfor\n    default_backend maas_http\n\n\
backend maas_http\n    mode http\n    balance source\n    hash-type consistent\n    retry-on conn-failure empty-response 502 503\n    http-request disable-l7-retry unless METH_GET\n",
    );
    out.push_str(&format!(
        "    option httpchk GET {HEALTH_PATH}\n    http-check expect status 200\n"
    ));
    if opts.tls {
        // MAAS's nginx sends http users to `https://$host:5443`: through the VIP that is the
        // holder's own 5443, past haproxy; 443 here is the balanced door to the same place.
        out.push_str(
            "    http-response replace-header Location ^https://([^/]+):5443(.*)$ https://\\1\\2\n",
        );
    }
    servers(&mut out, backends, 5240, SERVER_CHECK);
    if opts.tls {
        tls_service(&mut out, backends);
    }
    if !opts.draining {
        out.push_str(&format!(
            "\nfrontend vip_ready\n    bind 127.0.0.1:{VIP_READY_PORT}\n    mode http\n    no log\n    http-request return status 200\n"
        ));
    }
    // haproxy's built-in Prometheus exporter, for the collector on this machine only (cos-agent
    // scrapes it: crate::cos).
    out.push_str(&format!(
        "\nfrontend prometheus\n    bind 127.0.0.1:{HAPROXY_METRICS_PORT}\n    mode http\n    no log\n    http-request use-service prometheus-exporter if {{ path /metrics }}\n"
    ));
    out
}

/// Where haproxy's Prometheus exporter listens, on 127.0.0.1 (the port haproxy's docs use).
pub const HAPROXY_METRICS_PORT: u16 = 8405;

/// RFC 3986 percent-encoding of a URI userinfo part, so any password survives the URI.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `postgres://user:pass@host:port/name` as `maas init region --database-uri` takes it.
pub fn database_uri(user: &str, password: &str, host: &str, port: u16, name: &str) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!(
        "postgres://{}:{}@{host}:{port}/{name}",
        percent_encode(user),
        percent_encode(password)
    )
}

/// regiond.conf (`existing`, `None` when there is none yet) with the database keepalive of
/// [`crate::maas::DB_KEEPALIVE`], every other key kept as it was; `None` when it already has
/// them, so a second write never happens (and never restarts regiond). A file that is not a
/// YAML mapping is an error naming it: MAAS could not read it either.
pub fn regiond_conf_with_keepalive(existing: Option<&str>) -> Result<Option<String>, String> {
    let mut map = match existing.map(serde_yaml::from_str::<serde_yaml::Value>) {
        None => serde_yaml::Mapping::new(),
        Some(Ok(serde_yaml::Value::Mapping(m))) => m,
        Some(Ok(serde_yaml::Value::Null)) => serde_yaml::Mapping::new(),
        Some(Ok(_)) => return Err("regiond.conf is not a YAML mapping".into()),
        Some(Err(e)) => return Err(format!("regiond.conf is not YAML: {e}")),
    };
    let mut changed = false;
    for (key, value) in crate::maas::DB_KEEPALIVE {
        let wanted = serde_yaml::Value::from(u64::from(value));
        // MAAS's Int validator takes "3" as 3: a value already right is left alone.
        let same = match map.get(key) {
            Some(serde_yaml::Value::Number(n)) => n.as_u64() == Some(value.into()),
            Some(serde_yaml::Value::String(s)) => s.trim().parse::<u32>().ok() == Some(value),
            _ => false,
        };
        if !same {
            map.insert(key.into(), wanted);
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    serde_yaml::to_string(&map)
        .map(Some)
        .map_err(|e| format!("rendering regiond.conf: {e}"))
}

/// Where the URL comes from, for status messages and the README.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// The `maas-url` option.
    Config,
    /// The keepalived-vip subordinate's VIP.
    Vip,
    /// The leader's own address.
    Leader,
}

/// The MAAS URL the leader decides: the option, else the VIP, else its own address on 5240.
pub fn maas_url(
    configured: Option<&str>,
    vip: Option<&str>,
    own_address: Option<&str>,
) -> Option<(String, UrlSource)> {
    let host = |a: &str| {
        if a.contains(':') {
            format!("[{a}]")
        } else {
            a.to_string()
        }
    };
    if let Some(u) = configured {
        return Some((u.to_string(), UrlSource::Config));
    }
    if let Some(v) = vip {
        return Some((format!("http://{}/MAAS", host(v)), UrlSource::Vip));
    }
    own_address.map(|a| (format!("http://{}:5240/MAAS", host(a)), UrlSource::Leader))
}

/// What a rack controller serves beyond a region's ports, opened when this unit's MAAS runs
/// the rack too (`region+rack`): DHCP 67/udp (src/provisioningserver/service_monitor.py
/// `DHCPv4Service`), TFTP 69/udp (src/provisioningserver/rackdservices/tftp.py), rack HTTP
/// 5248/tcp (MAAS's docs, "Controller port settings"; rackd.nginx.conf.template) and rackd's
/// HTTP service 5249/tcp (src/provisioningserver/plugin.py `_makeHTTPService`). The rest of
/// maas-rack's list (53, 123, 323, 5240-5247, 8000) is in the region's already, as the same
/// ranges, so nothing overlaps.
pub const RACK_EXTRA_PORTS: [Port; 4] = [
    Port::Udp(67),
    Port::Udp(69),
    Port::Tcp(5248),
    Port::Tcp(5249),
];

/// The ports a region needs (MAAS's list for region mode) plus haproxy's, and a rack's when the
/// unit's MAAS runs one (`rack`: snap mode region+rack).
pub fn ports(haproxy: bool, tls: bool, rack: bool) -> Vec<Port> {
    let mut p = vec![
        Port::Tcp(53),
        Port::Udp(53),
        Port::Udp(123),
        Port::Udp(323),
        Port::Tcp(3128),
        Port::Tcp(5239),
        Port::Tcp(5240),
        Port::TcpRange(5241, 5247),
        Port::UdpRange(5241, 5247),
        Port::TcpRange(5250, 5274),
        Port::TcpRange(5280, 5284),
        Port::Tcp(8000),
    ];
    if rack {
        p.extend(RACK_EXTRA_PORTS);
    }
    if tls {
        p.push(Port::Tcp(5443));
    }
    if haproxy {
        p.push(Port::Tcp(80));
        if tls {
            p.push(Port::Tcp(443));
        }
    }
    p.sort();
    p
}

/// What the VIP subordinate must check on the holder: haproxy (when it runs) and named, and
/// the ports a MAAS 3.5+ rack agent reaches on the `maas_url` host, which is the VIP
/// ([`crate::maas::agent_ports`]): the holder's own listeners serve them, bound to every
/// address (Temporal's frontend, `bindOnIP: "0.0.0.0"` on 5271 in MAAS's
/// src/maasserver/templates/temporal/production.yaml.template; nginx's stream server on 5242,
/// src/maasserver/templates/http/regiond.nginx.stream.conf.template), so haproxy cannot front
/// them and the VIP must sit where they answer.
pub fn vip_check(haproxy: bool, agent_ports: &[u16]) -> String {
    let mut checks: Vec<String> = Vec::new();
    if haproxy {
        // haproxy's own listener rather than its process: a leaving region closes it while
        // haproxy goes on serving ([`VIP_READY_PORT`]).
        checks.push(format!("tcp:{VIP_READY_PORT}"));
    }
    checks.push("process:named".into());
    checks.extend(agent_ports.iter().map(|p| format!("tcp:{p}")));
    checks.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn regions(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend::for_unit(&format!("maas-region/{i}"), &format!("10.0.0.{}", 10 + i)))
            .collect()
    }

    /// Runs the real `haproxy -c` on a rendered file; a warning counts as a refusal.
    fn haproxy_accepts(cfg: &str) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!(
            "maas-region-render-{}-{}",
            std::process::id(),
            cfg.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "haproxy-{:x}.cfg",
            cfg.bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
        ));
        std::fs::write(&path, cfg).unwrap();
        let out = Command::new("haproxy")
            .args(["-c", "-f"])
            .arg(&path)
            .output()
            .expect("haproxy is installed on the build machine");
        let _ = std::fs::remove_file(&path);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && !text.contains("WARNING") {
            Ok(())
        } else {
            Err(text)
        }
    }

    fn servers_of(cfg: &str, backend: &str) -> Vec<String> {
        let mut inside = false;
        let mut out = vec![];
        for l in cfg.lines() {
            if l.starts_with("backend ") {
                inside = l == format!("backend {backend}");
            } else if inside && l.trim_start().starts_with("server ") {
                out.push(l.trim().to_string());
            }
        }
        out
    }

    /// A leaving region keeps serving port 80 (and 443) over the regions it had, without the
    /// listener the VIP's check connects to; the servers read back are the ones rendered.
    #[test]
    fn a_draining_haproxy_serves_without_the_vip_ready_listener() {
        for tls in [false, true] {
            let serving = haproxy_cfg(
                &regions(3),
                HaproxyOptions {
                    tls,
                    draining: false,
                },
            );
            let draining = haproxy_cfg(
                &regions(2),
                HaproxyOptions {
                    tls,
                    draining: true,
                },
            );
            assert!(serving.contains("\nfrontend vip_ready\n    bind 127.0.0.1:8406\n"));
            assert!(!draining.contains("vip_ready") && !draining.contains("8406"));
            assert!(draining.contains("frontend maas_http\n    bind *:80\n"));
            assert_eq!(draining.contains("bind *:443"), tls);
            haproxy_accepts(&serving).unwrap();
            haproxy_accepts(&draining).unwrap();
            assert_eq!(haproxy_backends(&serving), regions(3));
            assert_eq!(haproxy_backends(&draining), regions(2));
        }
        let v6 = vec![Backend::for_unit("maas-region/4", "fd00::14")];
        assert_eq!(
            haproxy_backends(&haproxy_cfg(&v6, HaproxyOptions::default())),
            v6
        );
        assert!(haproxy_backends("garbage\n").is_empty());
    }

    /// A region whose host vanished must not hold a client's requests until the health checks
    /// notice: connect attempts give up within a second and every retry may go elsewhere.
    #[test]
    fn a_request_to_a_vanished_region_moves_to_another_within_a_second() {
        let cfg = haproxy_cfg(&regions(3), HaproxyOptions::default());
        let defaults = cfg
            .split("\ndefaults\n")
            .nth(1)
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap();
        assert!(
            defaults.lines().any(|l| l.trim() == "option redispatch 1"),
            "{defaults}"
        );
        assert!(
            defaults.lines().any(|l| l.trim() == "timeout connect 1s"),
            "{defaults}"
        );
        assert!(
            defaults.lines().any(|l| l.trim() == "retries 3"),
            "{defaults}"
        );
        for l in cfg
            .lines()
            .filter(|l| l.trim_start().starts_with("server "))
        {
            assert!(
                l.ends_with(" check inter 2s fastinter 500ms rise 2 fall 3"),
                "{l}"
            );
        }
        // haproxy -c runs on this very file in one_two_and_three_regions_pass_haproxy_check (a
        // second check here would race it for the same temporary file name).
    }

    /// A GET in flight on a region that dies, or that a region refuses with 503, is retried
    /// elsewhere; a POST is never replayed.
    #[test]
    fn only_reads_are_retried_after_a_region_died_mid_request() {
        let cfg = haproxy_cfg(&regions(2), HaproxyOptions::default());
        let backend = cfg.split("\nbackend maas_http\n").nth(1).unwrap();
        assert!(
            backend
                .lines()
                .any(|l| l.trim() == "retry-on conn-failure empty-response 502 503"),
            "{backend}"
        );
        assert!(
            backend
                .lines()
                .any(|l| l.trim() == "http-request disable-l7-retry unless METH_GET"),
            "{backend}"
        );
    }

    #[test]
    fn one_two_and_three_regions_pass_haproxy_check() {
        for n in 1..=3 {
            for opts in [
                HaproxyOptions::default(),
                HaproxyOptions {
                    tls: true,
                    ..Default::default()
                },
            ] {
                let cfg = haproxy_cfg(&regions(n), opts);
                haproxy_accepts(&cfg).unwrap_or_else(|e| {
                    panic!("{n} regions, {opts:?}: haproxy -c refused:\n{e}\n{cfg}")
                });
                let http = servers_of(&cfg, "maas_http");
                assert_eq!(http.len(), n, "{cfg}");
                for i in 0..n {
                    assert!(http.contains(&format!("server maas-region-{i} 10.0.0.{}:5240 check inter 2s fastinter 500ms rise 2 fall 3", 10 + i)), "{http:?}");
                }
            }
        }
    }

    #[test]
    fn the_prometheus_exporter_listens_on_loopback_only() {
        let cfg = haproxy_cfg(
            &[Backend::for_unit("maas-region/0", "10.0.0.10")],
            HaproxyOptions::default(),
        );
        let fe = cfg
            .split("\nfrontend prometheus\n")
            .nth(1)
            .expect("a prometheus frontend");
        assert!(fe.starts_with("    bind 127.0.0.1:8405\n"), "{fe}");
        assert!(
            fe.contains("http-request use-service prometheus-exporter if { path /metrics }"),
            "{fe}"
        );
    }

    #[test]
    fn http_frontend_balances_by_source_with_consistent_hashing_and_long_timeout() {
        let cfg = haproxy_cfg(&regions(2), HaproxyOptions::default());
        assert!(cfg.contains("bind *:80"));
        let backend = cfg.split("\nbackend maas_http\n").nth(1).unwrap();
        assert!(backend.contains("mode http\n    balance source\n    hash-type consistent\n"));
        assert!(backend.contains("option httpchk GET /MAAS/rpc/"));
        let secs: u32 = SERVER_TIMEOUT.trim_end_matches('s').parse().unwrap();
        assert!(secs >= 90);
        assert!(cfg.contains(&format!("timeout server {SERVER_TIMEOUT}")));
    }

    #[test]
    fn tls_adds_a_tcp_frontend_only_when_asked_and_agent_ports_are_never_forwarded() {
        let plain = haproxy_cfg(&regions(3), HaproxyOptions::default());
        assert!(!plain.contains(":443") && !plain.contains("5443"));
        let tls = haproxy_cfg(
            &regions(3),
            HaproxyOptions {
                tls: true,
                ..Default::default()
            },
        );
        assert!(tls.contains("bind *:443"));
        assert_eq!(servers_of(&tls, "maas_https").len(), 3);
        assert!(servers_of(&tls, "maas_https")[0].contains(":5443 "));
        // MAAS's own listeners hold 5242 and 5271 on every address of a region host: haproxy
        // could not bind them (see vip_check).
        for cfg in [&plain, &tls] {
            assert!(!cfg.contains("5242") && !cfg.contains("5271"), "{cfg}");
        }
    }

    #[test]
    fn the_https_url_keeps_host_and_path_and_picks_the_door() {
        assert_eq!(
            https_url("http://10.0.0.100/MAAS", true),
            "https://10.0.0.100/MAAS"
        );
        assert_eq!(
            https_url("http://10.0.0.5:5240/MAAS", false),
            "https://10.0.0.5:5443/MAAS"
        );
        assert_eq!(
            https_url("http://[fd00::1]:5240/MAAS", true),
            "https://[fd00::1]/MAAS"
        );
        assert_eq!(
            https_url("http://[fd00::1]/MAAS", false),
            "https://[fd00::1]:5443/MAAS"
        );
    }

    #[test]
    fn with_tls_both_doors_check_regiond_on_the_path_that_stays_http() {
        let tls = haproxy_cfg(
            &regions(2),
            HaproxyOptions {
                tls: true,
                ..Default::default()
            },
        );
        let https = tls.split("\nbackend maas_https\n").nth(1).unwrap();
        assert!(https.contains("option httpchk GET /MAAS/rpc/"), "{https}");
        for s in servers_of(&tls, "maas_https") {
            assert!(s.contains(":5443 ") && s.ends_with(" port 5240"), "{s}");
        }
        let http = tls.split("\nbackend maas_http\n").nth(1).unwrap();
        assert!(
            http.contains("http-response replace-header Location"),
            "{http}"
        );
        let plain = haproxy_cfg(&regions(2), HaproxyOptions::default());
        assert!(!plain.contains("replace-header"), "{plain}");
    }

    /// The rule as haproxy reads it (the e2e sees it applied: region_rack's TLS step).
    #[test]
    fn the_redirect_to_5443_is_rewritten_to_the_balanced_443() {
        let Some(rewrite) = haproxy_cfg(
            &regions(1),
            HaproxyOptions {
                tls: true,
                ..Default::default()
            },
        )
        .lines()
        .find(|l| l.contains("replace-header Location"))
        .map(str::to_string) else {
            panic!("no rewrite");
        };
        let words: Vec<&str> = rewrite.split_whitespace().collect();
        assert_eq!(words[words.len() - 2], "^https://([^/]+):5443(.*)$");
        assert_eq!(words[words.len() - 1], "https://\\1\\2");
    }

    #[test]
    fn the_check_itself_catches_a_broken_file() {
        assert!(haproxy_accepts(
            "frontend x\n    bind :80\n    mode http\n    default_backend nope\n"
        )
        .is_err());
    }

    #[test]
    fn servers_are_sorted_and_unique_so_the_file_is_stable() {
        let mut r = regions(3);
        r.reverse();
        r.push(r[0].clone());
        assert_eq!(
            haproxy_cfg(&r, HaproxyOptions::default()),
            haproxy_cfg(&regions(3), HaproxyOptions::default())
        );
    }

    #[test]
    fn ipv6_backends_are_bracketed() {
        let cfg = haproxy_cfg(
            &[Backend::for_unit("maas-region/0", "fd00::10")],
            HaproxyOptions::default(),
        );
        assert!(cfg.contains("server maas-region-0 [fd00::10]:5240 check"));
        haproxy_accepts(&cfg).unwrap();
    }

    #[test]
    fn database_uri_encodes_credentials() {
        assert_eq!(
            database_uri("maas", "p@ss:w/rd", "10.0.0.5", 5432, "maas"),
            "postgres://maas:p%40ss%3Aw%2Frd@10.0.0.5:5432/maas"
        );
        assert_eq!(
            database_uri("u", "p", "fd00::5", 5433, "db"),
            "postgres://u:p@[fd00::5]:5433/db"
        );
    }

    #[test]
    fn url_prefers_config_then_vip_then_own_address() {
        assert_eq!(
            maas_url(Some("http://m/MAAS"), Some("10.0.0.100"), Some("10.0.0.10")),
            Some(("http://m/MAAS".into(), UrlSource::Config))
        );
        assert_eq!(
            maas_url(None, Some("10.0.0.100"), Some("10.0.0.10")),
            Some(("http://10.0.0.100/MAAS".into(), UrlSource::Vip))
        );
        assert_eq!(
            maas_url(None, None, Some("10.0.0.10")),
            Some(("http://10.0.0.10:5240/MAAS".into(), UrlSource::Leader))
        );
        assert_eq!(maas_url(None, None, None), None);
    }

    #[test]
    fn ports_follow_haproxy_and_tls() {
        let p = ports(true, false, false);
        assert!(
            p.contains(&Port::Tcp(80))
                && p.contains(&Port::Tcp(5240))
                && p.contains(&Port::TcpRange(5250, 5274))
        );
        assert!(!p.contains(&Port::Tcp(443)) && !p.contains(&Port::Tcp(5443)));
        assert!(!p.contains(&Port::Udp(67)), "no rack, no DHCP");
        let p = ports(true, true, false);
        assert!(p.contains(&Port::Tcp(443)) && p.contains(&Port::Tcp(5443)));
        assert!(!ports(false, true, false).contains(&Port::Tcp(80)));
        // region+rack: a rack's ports too, and no two ranges overlap (Juju refuses that).
        let p = ports(true, false, true);
        for want in [
            Port::Udp(67),
            Port::Udp(69),
            Port::Tcp(5248),
            Port::Tcp(5249),
            Port::Udp(53),
            Port::Udp(123),
            Port::Udp(323),
            Port::Tcp(8000),
        ] {
            assert!(p.contains(&want), "{want}");
        }
        let span = |p: &Port| match *p {
            Port::Tcp(x) => (true, x, x),
            Port::Udp(x) => (false, x, x),
            Port::TcpRange(x, y) => (true, x, y),
            Port::UdpRange(x, y) => (false, x, y),
            Port::Icmp => (false, 0, 0),
        };
        for (i, a) in p.iter().enumerate() {
            for b in &p[i + 1..] {
                let ((ta, a0, a1), (tb, b0, b1)) = (span(a), span(b));
                assert!(ta != tb || a1 < b0 || b1 < a0, "{a} overlaps {b}");
            }
        }
        assert_eq!(vip_check(true, &[]), "tcp:8406,process:named");
        assert_eq!(vip_check(false, &[]), "process:named");
        assert_eq!(
            vip_check(true, &[5271, 5242]),
            "tcp:8406,process:named,tcp:5271,tcp:5242"
        );
    }

    #[test]
    fn keepalive_keys_join_regiond_conf_once_and_keep_everything_else() {
        let maas = "database_host: 10.0.0.5\ndatabase_pass: 'p: w'\nmaas_url: http://v/MAAS\n";
        let once = regiond_conf_with_keepalive(Some(maas)).unwrap().unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&once).unwrap();
        assert_eq!(v["database_pass"], "p: w");
        assert_eq!(v["maas_url"], "http://v/MAAS");
        assert_eq!(v["database_keepalive_idle"], 3);
        assert_eq!(v["database_keepalive_interval"], 1);
        assert_eq!(v["database_keepalive_count"], 3);
        assert_eq!(regiond_conf_with_keepalive(Some(&once)), Ok(None));
        // Before `maas init`: a file with only these keys, which init then keeps.
        let fresh = regiond_conf_with_keepalive(None).unwrap().unwrap();
        assert_eq!(regiond_conf_with_keepalive(Some(&fresh)), Ok(None));
        // Another value (an operator's, MAAS's default) is replaced; a string MAAS reads as the
        // same number is not.
        let other = once.replace("database_keepalive_idle: 3", "database_keepalive_idle: 15");
        assert!(regiond_conf_with_keepalive(Some(&other)).unwrap().is_some());
        let quoted = once.replace(
            "database_keepalive_count: 3",
            "database_keepalive_count: '3'",
        );
        assert_eq!(regiond_conf_with_keepalive(Some(&quoted)), Ok(None));
        assert!(regiond_conf_with_keepalive(Some("- a\n"))
            .unwrap_err()
            .contains("regiond.conf"));
    }
}
